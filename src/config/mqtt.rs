//! `[mqtt]`: the broker to use or the embedded one to run, and the topic prefix
//! ([`MqttConfig`]).
//!
//! Data only: must never connect to a broker.

use super::default_true;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `[mqtt]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// MQTT triggers and events on or off (off: HTTP triggers only).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Broker URL (`mqtt://host:1883`, `mqtts://host:8883`). Unset: the embedded broker on
    /// `listen` (or, if that port is taken, the broker already there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Address of the embedded broker when `url` is unset. Port 0 picks a free port.
    #[serde(default = "default_mqtt_listen")]
    pub listen: String,
    /// Topic prefix.
    #[serde(default = "default_base_topic")]
    pub base_topic: String,
    /// Broker user name (hindsight's own login; the embedded broker accepts it too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Broker password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// More logins the embedded broker accepts (sensors, Home Assistant), besides
    /// `username`/`password`. Off loopback the embedded broker needs at least one login.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<MqttUser>,
    /// For `mqtts://`: PEM file of the CA certificates to trust instead of the system's (a
    /// private CA, e.g. a self-made one for mosquitto).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Home Assistant MQTT discovery: a device per camera (and one for the appliance) appears
    /// in Home Assistant by itself.
    #[serde(default = "default_true")]
    pub discovery: bool,
    /// Home Assistant's discovery prefix (its MQTT integration's setting).
    #[serde(default = "default_discovery_prefix")]
    pub discovery_prefix: String,
    /// Seconds between camera snapshots on `{base_topic}/{camera}/snapshot` (Home Assistant's
    /// camera entity); 0: only after each clip and when Home Assistant starts.
    #[serde(default = "default_snapshot_interval_s")]
    pub snapshot_interval_s: u32,
}

/// `[[mqtt.users]]`: one login of the embedded broker.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttUser {
    /// User name.
    pub username: String,
    /// Password (at least 8 characters).
    pub password: String,
}

impl std::fmt::Debug for MqttUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttUser").field("username", &self.username).field("password", &"***").finish()
    }
}

impl MqttConfig {
    /// Every login the embedded broker accepts: `username`/`password`, then `users`.
    pub fn broker_users(&self) -> Vec<(String, String)> {
        let own = self.username.as_ref().map(|u| (u.clone(), self.password.clone().unwrap_or_default()));
        own.into_iter().chain(self.users.iter().map(|u| (u.username.clone(), u.password.clone()))).collect()
    }
}

fn default_base_topic() -> String {
    "hindsight".into()
}
fn default_discovery_prefix() -> String {
    "homeassistant".into()
}
fn default_snapshot_interval_s() -> u32 {
    10
}
fn default_mqtt_listen() -> String {
    "127.0.0.1:1883".into()
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            enabled: true,
            url: None,
            listen: default_mqtt_listen(),
            base_topic: default_base_topic(),
            username: None,
            password: None,
            users: Vec::new(),
            ca_file: None,
            discovery: true,
            discovery_prefix: default_discovery_prefix(),
            snapshot_interval_s: default_snapshot_interval_s(),
        }
    }
}
