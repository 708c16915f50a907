//! The MQTT stage: triggers in, status and clip events out (docs/API.md, "MQTT").
//!
//! [`Mqtt::new`] decides where to connect: `mqtt.url` (client only; `mqtt://`, `mqtts://` with
//! the system CA roots or `mqtt.ca_file`), or else the embedded broker on `mqtt.listen`
//! ([`broker`]); if that port is already taken (a developer's mosquitto), it connects to the broker
//! there as a client. [`Mqtt::run`] then runs two futures in one task, joined by bounded channels:
//!
//! - the network loop (here): polls rumqttc's event loop, passes trigger publishes on, announces
//!   each (re)connection, and after an error sleeps with [`Backoff`] (log once per outage) before
//!   polling again, which reconnects. It never awaits the session, so it cannot deadlock on it.
//! - the session ([`session`]): answers triggers and on/off commands, publishes `status`,
//!   `state`, `recording`, `clip`, `last_clip`, `health`, snapshots and Home Assistant's
//!   discovery configs ([`discovery`]), and re-publishes everything retained after each
//!   reconnection.
//!
//! Owns the MQTT connection and the embedded broker. Must never: panic or `unwrap` on anything
//! from the network, block the async reactor (the trigger target is called on the blocking pool),
//! let a slow or absent broker block triggers or grow memory (bounded channels; state updates are
//! dropped when full), or keep running after stop: on stop it publishes `offline` (retained),
//! disconnects cleanly and stops the embedded broker.

pub mod broker;
pub mod discovery;
mod session;
pub mod topics;

use crate::config::MqttConfig;
use crate::shutdown::{Backoff, StopToken};
use crate::status::error_chain;
use crate::trigger::TriggerTarget;
use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS, Transport};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use topics::Topics;

/// Requests (publish, subscribe) queued towards the broker; beyond this, state updates are dropped.
const REQUEST_CAPACITY: usize = 64;
/// Trigger messages received but not yet answered; beyond this, new ones are dropped (logged).
const INCOMING_CAPACITY: usize = 64;
/// Keep-alive: the broker publishes our last will about 1.5 × this after we vanish.
const KEEP_ALIVE: Duration = Duration::from_secs(30);
/// How long stop waits for `offline` and DISCONNECT to go out.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

/// Why the MQTT stage could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// `mqtt.url` is not usable.
    #[error("mqtt.url {url:?}: {why}")]
    BadUrl {
        /// The configured URL.
        url: String,
        /// What is wrong.
        why: String,
    },
    /// `mqtt.listen` is not an address:port.
    #[error("mqtt.listen {0:?} is not an address:port such as \"127.0.0.1:1883\"")]
    BadListen(String),
    /// The embedded broker could not be started.
    #[error("embedded MQTT broker on {addr}")]
    Broker {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// TLS for `mqtts://` could not be set up.
    #[error("TLS for MQTT: {0}")]
    Tls(String),
}

/// Where to connect, from `mqtt.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BrokerUrl {
    tls: bool,
    host: String,
    port: u16,
}

/// Parse `mqtt://host[:port]`, `mqtts://host[:port]` (also `tcp://`, `ssl://`; IPv6 in brackets).
fn parse_url(url: &str) -> Result<BrokerUrl, String> {
    let (scheme, rest) = url.split_once("://").ok_or("must look like mqtt://host:1883 or mqtts://host:8883")?;
    let tls = match scheme {
        "mqtt" | "tcp" => false,
        "mqtts" | "ssl" => true,
        _ => return Err(format!("unknown scheme {scheme:?}: use mqtt:// or mqtts://")),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#', '@']) {
        return Err("only host and port belong in the URL (credentials go in mqtt.username and mqtt.password)".into());
    }
    let default_port = if tls { 8883 } else { 1883 };
    let (host, port) = if rest.starts_with('[') {
        let end = rest.find(']').ok_or("unclosed '[' in IPv6 address")?;
        let host = &rest[..=end];
        match &rest[end + 1..] {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':').ok_or("expected :port after ]")?)),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    let port = match port {
        None => default_port,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or(format!("port {p:?} is not 1..=65535"))?,
    };
    if host.is_empty() || host == "[]" {
        return Err("no host".into());
    }
    Ok(BrokerUrl { tls, host: host.to_string(), port })
}

/// rustls with the system's CA certificates, or those in `ca_file` (PEM) if given.
fn tls_transport(ca_file: Option<&Path>) -> Result<Transport, MqttError> {
    use rumqttc::tokio_rustls::rustls;
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = match ca_file {
        Some(path) => CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| MqttError::Tls(format!("mqtt.ca_file {}: {e}", path.display())))?,
        None => {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                log::warn!("loading system CA certificates: {e}");
            }
            found.certs
        }
    };
    let (added, ignored) = roots.add_parsable_certificates(certs);
    if ignored > 0 {
        log::warn!("{ignored} CA certificates could not be parsed and are ignored");
    }
    if added == 0 {
        return Err(MqttError::Tls(match ca_file {
            Some(p) => format!("mqtt.ca_file {}: no certificate in it", p.display()),
            None => "no system CA certificates found (install ca-certificates, or set mqtt.ca_file)".into(),
        }));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| MqttError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(Arc::new(config))))
}

/// Client id: `hindsight-` + the base topic, MQTT 3.1.1's safe 23 characters at most.
fn client_id(base_topic: &str) -> String {
    let s: String = format!("hindsight-{base_topic}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' })
        .collect();
    s.chars().take(23).collect()
}

/// The MQTT stage: see the module docs.
pub struct Mqtt {
    target: Arc<dyn TriggerTarget>,
    topics: Topics,
    options: MqttOptions,
    url: String,
    broker: Option<broker::EmbeddedBroker>,
    ha: Option<session::Ha>,
}

impl Mqtt {
    /// Decide where to connect and, without `mqtt.url`, start the embedded broker (or find the
    /// port taken and plan to use the broker there). Does not connect yet. Blocks only for the
    /// embedded broker's thread start and bind (well under a millisecond).
    ///
    /// `public_url` (`http.public_url`) makes absolute links for Home Assistant.
    pub fn new(cfg: &MqttConfig, target: Arc<dyn TriggerTarget>, public_url: Option<&str>) -> Result<Self, MqttError> {
        let topics = Topics::new(&cfg.base_topic);
        let ha = cfg.discovery.then(|| session::Ha {
            discovery: discovery::Discovery::new(
                &cfg.discovery_prefix,
                &cfg.base_topic,
                env!("CARGO_PKG_VERSION"),
                public_url,
            ),
            snapshot_every: (cfg.snapshot_interval_s > 0)
                .then(|| Duration::from_secs(u64::from(cfg.snapshot_interval_s))),
        });
        let (host, port, transport, url, embedded) = match &cfg.url {
            Some(u) => {
                let b = parse_url(u).map_err(|why| MqttError::BadUrl { url: u.clone(), why })?;
                let transport = match b.tls {
                    true => tls_transport(cfg.ca_file.as_deref())?,
                    false => Transport::Tcp,
                };
                let url = format!("{}://{}:{}", if b.tls { "mqtts" } else { "mqtt" }, b.host, b.port);
                (b.host, b.port, transport, url, None)
            }
            None => {
                let listen: SocketAddr = cfg.listen.parse().map_err(|_| MqttError::BadListen(cfg.listen.clone()))?;
                let settings = broker::Settings {
                    users: cfg.broker_users(),
                    own_prefixes: vec![format!("{}/", cfg.base_topic), "homeassistant/".into()],
                    limits: broker::Limits::default(),
                };
                let started =
                    broker::start(listen, settings).map_err(|source| MqttError::Broker { addr: listen, source })?;
                let (addr, embedded) = match started {
                    broker::Start::Started(b) => (broker::local_client_addr(b.addr()), Some(b)),
                    broker::Start::PortTaken => {
                        log::info!("MQTT port {listen} is already taken (another broker?): using it as a client");
                        (broker::local_client_addr(listen), None)
                    }
                };
                let host = match addr {
                    SocketAddr::V4(a) => a.ip().to_string(),
                    SocketAddr::V6(a) => format!("[{}]", a.ip()),
                };
                (host, addr.port(), Transport::Tcp, format!("mqtt://{addr}"), embedded)
            }
        };
        let mut options = MqttOptions::new(client_id(&cfg.base_topic), host, port);
        options
            .set_transport(transport)
            .set_keep_alive(KEEP_ALIVE)
            .set_clean_session(true)
            .set_max_packet_size(256 * 1024, 256 * 1024)
            .set_last_will(LastWill::new(topics.status(), "offline", QoS::AtLeastOnce, true));
        if let Some(user) = &cfg.username {
            options.set_credentials(user.clone(), cfg.password.clone().unwrap_or_default());
        }
        Ok(Mqtt { target, topics, options, url, broker: embedded, ha })
    }

    /// The broker actually used, e.g. `mqtt://127.0.0.1:1883` (for logs and tests).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether the embedded broker runs (false: `mqtt.url` is set, or the port was taken).
    pub fn embedded(&self) -> bool {
        self.broker.is_some()
    }

    /// Run until `stop`; then publish `offline` (retained), disconnect, stop the embedded broker.
    pub async fn run(self, stop: StopToken) {
        let Mqtt { target, topics, options, url, broker, ha } = self;
        log::info!(
            "MQTT: connecting to {url} as {:?}, topics under {}/",
            options.client_id(),
            topics.status().trim_end_matches("/status")
        );
        let (client, eventloop) = AsyncClient::new(options, REQUEST_CAPACITY);
        let (link_tx, link_rx) = watch::channel(Link::default());
        let (in_tx, in_rx) = mpsc::channel(INCOMING_CAPACITY);
        let (drain_tx, drain_rx) = watch::channel(false);
        let session = session::Session::new(target, topics, client, ha);
        tokio::join!(
            network_loop(eventloop, &url, link_tx, in_tx, drain_rx),
            session.run(link_rx, in_rx, stop, drain_tx),
        );
        if let Some(b) = broker {
            // Joining the broker thread blocks briefly: keep it off the reactor.
            let _ = tokio::task::spawn_blocking(move || b.stop()).await;
        }
        log::info!("MQTT stopped");
    }
}

/// The connection as the session sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Link {
    /// Connected now.
    up: bool,
    /// Counts connections (ConnAcks) since start.
    generation: u64,
}

/// A publish on one of our trigger topics.
#[derive(Debug)]
struct Incoming {
    topic: String,
    payload: bytes::Bytes,
    retain: bool,
}

/// Poll rumqttc until the session asks to drain; see the module docs.
async fn network_loop(
    mut eventloop: EventLoop,
    url: &str,
    link: watch::Sender<Link>,
    incoming: mpsc::Sender<Incoming>,
    mut drain: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::default();
    let mut draining = false;
    let drain_deadline = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(drain_deadline);
    let mut outage_logged = false;
    loop {
        let up = link.borrow().up;
        let event = tokio::select! {
            e = eventloop.poll() => e,
            _ = drain.wait_for(|d| *d), if !draining => {
                if !up {
                    return;
                }
                draining = true;
                drain_deadline.as_mut().reset(tokio::time::Instant::now() + DRAIN_TIMEOUT);
                continue;
            }
            _ = &mut drain_deadline, if draining => {
                log::warn!("MQTT: disconnect from {url} timed out");
                return;
            }
        };
        match event {
            // rumqttc turns a refusing ConnAck into an error: this one is a success.
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff.reset();
                outage_logged = false;
                let generation = link.borrow().generation + 1;
                log::info!("MQTT connected to {url}{}", if generation > 1 { " (again)" } else { "" });
                link.send_replace(Link { up: true, generation });
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let msg = Incoming { topic: p.topic, payload: p.payload, retain: p.retain };
                if let Err(e) = incoming.try_send(msg) {
                    let topic = match e {
                        mpsc::error::TrySendError::Full(m) | mpsc::error::TrySendError::Closed(m) => m.topic,
                    };
                    log::warn!("MQTT: {INCOMING_CAPACITY} triggers already waiting, dropping one on {topic}");
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) if draining => return,
            Ok(_) => {}
            Err(e) => {
                if draining {
                    return;
                }
                if up {
                    link.send_modify(|l| l.up = false);
                }
                if !outage_logged {
                    log::warn!(
                        "MQTT connection to {url} {}: {}; retrying with back-off",
                        if up { "lost" } else { "failed" },
                        error_chain(&e)
                    );
                    outage_logged = true;
                } else {
                    log::debug!("MQTT connection to {url} still failing: {}", error_chain(&e));
                }
                let delay = backoff.next_delay();
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = drain.wait_for(|d| *d) => return,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let ok = |u: &str| parse_url(u).unwrap();
        assert_eq!(ok("mqtt://h:1"), BrokerUrl { tls: false, host: "h".into(), port: 1 });
        assert_eq!(ok("mqtts://broker.lan"), BrokerUrl { tls: true, host: "broker.lan".into(), port: 8883 });
        assert_eq!(ok("tcp://10.0.0.2/"), BrokerUrl { tls: false, host: "10.0.0.2".into(), port: 1883 });
        assert_eq!(ok("ssl://[::1]:8884"), BrokerUrl { tls: true, host: "[::1]".into(), port: 8884 });
        for bad in [
            "http://x",
            "mqtt://",
            "mqtt://:1883",
            "mqtt://h:0",
            "mqtt://h:x",
            "mqtt://u:p@h",
            "mqtt://h/x",
            "[::1",
            "mqtt://[::1",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn client_ids_are_short_and_safe() {
        assert_eq!(client_id("hindsight"), "hindsight-hindsight");
        let id = client_id("home/very/long/base/topic");
        assert!(id.len() <= 23 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{id}");
    }
}
