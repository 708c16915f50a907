//! `[http]`: the web server's address, HTTPS and login settings ([`HttpConfig`], [`Switch`]),
//! and which of them are on for a given `listen` address.
//!
//! Data only: must never bind a socket, read a certificate or touch auth state.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

/// `auto`, `on` or `off`: `http.tls` and `http.auth` (auto: on unless `http.listen` is loopback).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Switch {
    /// On when `http.listen` is not a loopback address.
    #[default]
    Auto,
    /// Always on.
    On,
    /// Always off.
    Off,
}

impl fmt::Display for Switch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Switch::Auto => "auto",
            Switch::On => "on",
            Switch::Off => "off",
        })
    }
}

impl std::str::FromStr for Switch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Switch::Auto),
            "on" => Ok(Switch::On),
            "off" => Ok(Switch::Off),
            _ => Err(format!("{s:?} must be \"auto\", \"on\" or \"off\"")),
        }
    }
}

/// `[http]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address and port to listen on, e.g. `0.0.0.0:8443`. Port 0 picks a free port.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// HTTPS: `auto` (on unless `listen` is loopback), `on`, `off`.
    #[serde(default)]
    pub tls: Switch,
    /// PEM certificate chain to serve; unset: a self-signed one kept in `{state_dir}/tls/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// Optional plain-HTTP address that answers every request with a 308 to the HTTPS origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_listen: Option<String>,
    /// Login: `auto` (on unless `listen` is loopback), `on`, `off` (loopback only).
    #[serde(default)]
    pub auth: Switch,
    /// The login name.
    #[serde(default = "default_username")]
    pub username: String,
    /// The password; unset: a random one generated at first start and logged once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Session cookie lifetime in days.
    #[serde(default = "default_session_days")]
    pub session_days: u32,
    /// Where certificates, sessions and tokens are kept; default `{storage.path}/state`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<PathBuf>,
    /// UDP port of the WebRTC live view, one for every session (0 picks a free one).
    #[serde(default = "default_webrtc_udp")]
    pub webrtc_udp: u16,
    /// WebRTC viewers of one camera at once (503 beyond); 0 turns WebRTC off.
    #[serde(default = "default_webrtc_max_viewers")]
    pub webrtc_max_viewers: usize,
    /// Addresses offered to browsers for WebRTC; empty: every IPv4 address of the interfaces
    /// that are up (set it behind port forwarding, or to leave an interface out).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webrtc_addresses: Vec<std::net::IpAddr>,
    /// The address people open the web app at, e.g. `https://cam.lan:8443` (no path): makes
    /// absolute links for Home Assistant (the device's "visit" link, the last clip's URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
}

fn default_webrtc_udp() -> u16 {
    8189
}
fn default_webrtc_max_viewers() -> usize {
    8
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_username() -> String {
    "admin".into()
}
fn default_session_days() -> u32 {
    30
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_listen(),
            tls: Switch::Auto,
            cert_file: None,
            key_file: None,
            redirect_listen: None,
            auth: Switch::Auto,
            username: default_username(),
            password: None,
            session_days: default_session_days(),
            state_dir: None,
            webrtc_udp: default_webrtc_udp(),
            webrtc_max_viewers: default_webrtc_max_viewers(),
            webrtc_addresses: Vec::new(),
            public_url: None,
        }
    }
}

impl HttpConfig {
    /// Whether `listen` is a loopback address (an unparsable one counts as not loopback).
    pub fn loopback(&self) -> bool {
        self.listen.parse::<std::net::SocketAddr>().is_ok_and(|a| a.ip().is_loopback())
    }

    /// Whether HTTPS is served.
    pub fn tls_enabled(&self) -> bool {
        match self.tls {
            Switch::On => true,
            Switch::Off => false,
            Switch::Auto => !self.loopback(),
        }
    }

    /// Whether requests need a login or a token.
    pub fn auth_enabled(&self) -> bool {
        match self.auth {
            Switch::On => true,
            Switch::Off => false,
            Switch::Auto => !self.loopback(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn http_switches() {
        for (text, sw) in [("auto", Switch::Auto), ("on", Switch::On), ("off", Switch::Off)] {
            assert_eq!(text.parse::<Switch>().unwrap(), sw);
            assert_eq!(sw.to_string(), text);
        }
        assert!("yes".parse::<Switch>().is_err());
        let mut h = HttpConfig::default();
        assert!(!h.tls_enabled() && !h.auth_enabled(), "loopback default: plain HTTP, no login");
        h.listen = "0.0.0.0:8443".into();
        assert!(h.tls_enabled() && h.auth_enabled(), "network: HTTPS and login");
        h.tls = Switch::Off;
        assert!(!h.tls_enabled());
        let c = Config::from_toml(
            "[http]\nlisten = \"[::1]:8080\"\nauth = \"on\"\n[[camera]]\nid = \"a\"\nsource = { kind = \"test\" }\n",
            "t.toml",
        )
        .unwrap();
        assert!(c.http.auth_enabled() && !c.http.tls_enabled());
        assert_eq!(c.state_dir(), c.storage.path.join("state"));
    }
}
