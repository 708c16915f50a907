//! The embedded MQTT broker used when `mqtt.url` is not set: a small MQTT 3.1.1 broker of the
//! daemon's own on `mqtt.listen`, on a thread of its own (`mqtt-broker`) with a current-thread
//! runtime, stopped by [`EmbeddedBroker::stop`] or on drop. Packets are parsed and written with
//! rumqttc's codec; routing is [`router`], one connection [`conn`], topics [`topic`].
//!
//! Owns: binding the port (or reporting it taken), the broker's [`Limits`] — packet size,
//! connections (in all and per address), subscriptions, retained bytes and topics, queued bytes,
//! the inbound byte budget and per-connection publish rates — so its memory stays within a few
//! MiB whatever clients send; and its users (credentials checked at CONNECT; `check-config`
//! refuses an off-loopback `mqtt.listen` without them). Must never: panic the daemon, keep a
//! session after its connection (clean sessions only: QoS 1 deliveries are not resent after a
//! reconnect), or keep the port bound after `stop`.
//!
//! Why not rumqttd (used until issue 11): it keeps a commit log per topic and never frees it,
//! has no limit on topics or retained bytes (200 retained 250 KB messages grew the daemon by
//! ~48 MiB, for good), and no way to bound a client's rate; its router thread cannot be stopped.

mod conn;
#[cfg(test)]
mod fuzz_tests;
pub mod router;
pub mod topic;

pub use conn::{read_packet, ReadError};

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Every bound of the broker (the defaults are the appliance's; docs/API.md "MQTT").
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest packet (remaining length), bytes; a bigger one closes the connection unread.
    pub max_packet: usize,
    /// Connections in all; more are closed at once.
    pub max_connections: usize,
    /// Connections from one IP address.
    pub max_connections_per_ip: usize,
    /// Filters one connection may subscribe to (Home Assistant alone asks for ~70: two per
    /// discovery component, then one per entity state topic).
    pub max_subscriptions: usize,
    /// Filters all connections together may hold.
    pub max_subscriptions_total: usize,
    /// Retained messages of topics outside the daemon's own prefixes: bytes (topic + payload).
    pub retained_bytes: usize,
    /// … and topics.
    pub retained_topics: usize,
    /// Retained messages under the daemon's own prefixes (`{base_topic}/`, `homeassistant/`).
    pub retained_own_bytes: usize,
    /// … and topics.
    pub retained_own_topics: usize,
    /// Bytes queued for one subscriber; a slower one misses messages.
    pub queue_bytes: usize,
    /// Bytes queued for all subscribers together.
    pub queued_total: usize,
    /// Bytes of packets being read or handled at once, all connections together.
    pub inbound_bytes: usize,
    /// Publishes per second one connection may send (sustained), and its burst.
    pub publish_per_s: f64,
    /// Burst of publishes.
    pub publish_burst: f64,
    /// Payload bytes per second one connection may send, and its burst (≥ `max_packet`).
    pub bytes_per_s: f64,
    /// Burst of bytes.
    pub bytes_burst: f64,
    /// Time from TCP connect to CONNECT.
    pub connect_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_packet: 256 * 1024,
            max_connections: 64,
            max_connections_per_ip: 16,
            max_subscriptions: 256,
            max_subscriptions_total: 4096,
            retained_bytes: 1024 * 1024,
            retained_topics: 1000,
            retained_own_bytes: 2 * 1024 * 1024,
            retained_own_topics: 1000,
            queue_bytes: 512 * 1024,
            queued_total: 4 * 1024 * 1024,
            inbound_bytes: 4 * 1024 * 1024,
            publish_per_s: 100.0,
            publish_burst: 200.0,
            bytes_per_s: 1024.0 * 1024.0,
            bytes_burst: 1024.0 * 1024.0,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// What the broker is started with.
#[derive(Clone, Default)]
pub struct Settings {
    /// User name and password pairs; empty: anonymous clients (loopback only, by config rule).
    pub users: Vec<(String, String)>,
    /// Topic prefixes whose retained messages use the daemon's own pool (e.g. `hindsight/`).
    pub own_prefixes: Vec<String>,
    /// The bounds.
    pub limits: Limits,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let users: Vec<&str> = self.users.iter().map(|(u, _)| u.as_str()).collect();
        f.debug_struct("Settings").field("users", &users).field("own_prefixes", &self.own_prefixes).finish()
    }
}

/// What the connections share.
pub(crate) struct Shared {
    limits: Limits,
    users: Vec<(String, String)>,
    router: Mutex<router::Router>,
    inbound: Arc<Semaphore>,
    queued_total: Arc<AtomicUsize>,
    next_anon: AtomicU64,
    retained_warned: Mutex<Option<std::time::Instant>>,
}

impl Shared {
    fn new(s: Settings) -> Shared {
        let router = router::Router::new(s.limits.clone(), s.own_prefixes);
        let queued_total = router.queued_total();
        Shared {
            inbound: Arc::new(Semaphore::new(s.limits.inbound_bytes.max(s.limits.max_packet + 5))),
            limits: s.limits,
            users: s.users,
            router: Mutex::new(router),
            queued_total,
            next_anon: AtomicU64::new(1),
            retained_warned: Mutex::new(None),
        }
    }

    fn router(&self) -> MutexGuard<'_, router::Router> {
        self.router.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Log a refused retained message, at most once a minute.
    fn warn_retained(&self, topic: &str) {
        let mut last = self.retained_warned.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
            *last = Some(std::time::Instant::now());
            let usage = self.router().retained_usage();
            log::warn!(
                "embedded MQTT broker: retained message on {topic:?} not kept: over the retained limits \
                 (now {} B in {} topics of the daemon's, {} B in {} others)",
                usage[0].0,
                usage[0].1,
                usage[1].0,
                usage[1].1
            );
        }
    }
}

/// What [`start`] found on the port.
pub enum Start {
    /// Our broker listens there now.
    Started(EmbeddedBroker),
    /// Something already listens there (a developer's mosquitto): use it as a client.
    PortTaken,
}

/// A running embedded broker; stops on [`EmbeddedBroker::stop`] or drop.
pub struct EmbeddedBroker {
    addr: SocketAddr,
    stop_tx: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Start the broker on `listen`, or report that the port is taken. Port 0 picks a free port.
/// Returns once the port is bound, so the first client connection never races it.
pub fn start(listen: SocketAddr, settings: Settings) -> io::Result<Start> {
    let listener = match TcpListener::bind(listen) {
        Ok(l) => l,
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => return Ok(Start::PortTaken),
        Err(e) => return Err(e),
    };
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared::new(settings));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let thread = std::thread::Builder::new().name("mqtt-broker".into()).spawn(move || {
        runtime.block_on(async {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => return log::error!("embedded MQTT broker on {addr}: {e}"),
            };
            tokio::select! {
                _ = accept_loop(listener, shared) => {}
                _ = stop_rx => {}
            }
        });
        // Dropping the runtime here cancels every connection task and closes the listener.
        drop(runtime);
    })?;
    log::info!("embedded MQTT broker listening on {addr}");
    Ok(Start::Started(EmbeddedBroker { addr, stop_tx: Some(stop_tx), thread: Some(thread) }))
}

/// Accept connections within the total and per-address caps; each is served by its own task.
async fn accept_loop(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    let total = Arc::new(Semaphore::new(shared.limits.max_connections));
    let per_ip: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and the like: wait a little instead of spinning.
                log::warn!("embedded MQTT broker: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = total.clone().try_acquire_owned() else {
            log::warn!("embedded MQTT broker: {peer} refused: {} connections", shared.limits.max_connections);
            continue;
        };
        let ip = peer.ip();
        {
            let mut m = per_ip.lock().unwrap_or_else(|p| p.into_inner());
            let n = m.entry(ip).or_insert(0);
            if *n >= shared.limits.max_connections_per_ip {
                log::warn!("embedded MQTT broker: {peer} refused: {n} connections from {ip} already");
                continue;
            }
            *n += 1;
        }
        let (shared, per_ip) = (shared.clone(), per_ip.clone());
        tokio::spawn(async move {
            conn::serve(stream, peer, shared).await;
            let mut m = per_ip.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = m.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&ip);
                }
            }
            drop(slot);
        });
    }
}

impl EmbeddedBroker {
    /// The address it listens on (concrete port, even if `:0` was asked).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop listening and drop every connection; returns when the port is closed.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                log::error!("embedded MQTT broker thread panicked");
            }
            log::info!("embedded MQTT broker on {} stopped", self.addr);
        }
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Where a client on this machine reaches a listener on `addr`: the loopback address for a
/// wildcard (`0.0.0.0`, `::`) listener, else `addr` itself.
pub fn local_client_addr(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port()),
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listeners_are_reached_on_loopback() {
        let a: SocketAddr = "0.0.0.0:1883".parse().unwrap();
        assert_eq!(local_client_addr(a), "127.0.0.1:1883".parse().unwrap());
        let a: SocketAddr = "[::]:1883".parse().unwrap();
        assert_eq!(local_client_addr(a), "[::1]:1883".parse().unwrap());
        let a: SocketAddr = "192.168.1.5:1883".parse().unwrap();
        assert_eq!(local_client_addr(a), a);
    }

    #[test]
    fn taken_port_is_reported_and_free_port_is_stopped_cleanly() {
        let holder = TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = holder.local_addr().unwrap();
        assert!(matches!(start(taken, Settings::default()).unwrap(), Start::PortTaken));

        let b = match start("127.0.0.1:0".parse().unwrap(), Settings::default()).unwrap() {
            Start::Started(b) => b,
            Start::PortTaken => panic!("port 0 cannot be taken"),
        };
        let addr = b.addr();
        assert_ne!(addr.port(), 0);
        b.stop();
        // The port is free again once stop returns.
        TcpListener::bind(addr).expect("port released after stop");
    }
}
