//! The embedded MQTT broker used when `mqtt.url` is not set: rumqttd's router and one MQTT 3.1.1
//! listener on `mqtt.listen`, on a thread of their own (`mqtt-broker`) with a current-thread
//! runtime, stopped by [`EmbeddedBroker::stop`] or on drop.
//!
//! Owns: deciding whether the port is free, picking a concrete port for `:0`, the broker's
//! limits (small memory footprint for a Pi Zero), and stopping the listener and its connections.
//! Must never: panic the daemon (rumqttd panics on thread-spawn failure only), touch topics or
//! payloads (that is the client's job in [`super`]), or keep the port bound after `stop`.
//!
//! [`start`] returns once rumqttd listens (or failed to bind), so the first client connection
//! never races it.
//!
//! Limit of rumqttd 0.20 accepted here: its router thread (`router-0`) cannot be stopped and
//! stays idle, blocked on its channel, until the process exits.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};

use crate::status::error_chain;
use rumqttd::protocol::v4::V4;
use rumqttd::{ConnectionSettings, LinkType, Router, RouterConfig, Server, ServerSettings};

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
pub fn start(listen: SocketAddr) -> io::Result<Start> {
    // With port 0 the probed port can be grabbed (e.g. as another socket's ephemeral port)
    // before rumqttd binds it: probe again rather than reporting a "taken" port nobody asked for.
    let tries = if listen.port() == 0 { 5 } else { 1 };
    for _ in 1..tries {
        match start_once(listen)? {
            Start::PortTaken => continue,
            started => return Ok(started),
        }
    }
    start_once(listen)
}

fn start_once(listen: SocketAddr) -> io::Result<Start> {
    // Probe: finds a taken port without starting anything, and turns `:0` into a concrete port
    // (rumqttd binds by itself and cannot tell which port it got).
    let addr = match TcpListener::bind(listen) {
        Ok(l) => l.local_addr()?,
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => return Ok(Start::PortTaken),
        Err(e) => return Err(e),
    };
    let settings = ServerSettings {
        name: "hindsight".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 10_000,
            max_payload_size: 256 * 1024,
            max_inflight_count: 100,
            auth: None,
            external_auth: None,
            // Publishing to a topic nobody subscribed to yet must work (retained state).
            dynamic_filters: true,
        },
    };
    let router = RouterConfig {
        max_connections: 64,
        max_outgoing_packet_count: 200,
        // A commit log per topic: keep each small (the appliance may have 512 MB of RAM).
        max_segment_size: 64 * 1024,
        max_segment_count: 2,
        custom_segment: None,
        initialized_filters: None,
        shared_subscriptions_strategy: Default::default(),
    };
    // rumqttd logs through `tracing`: route it to `log` without its per-packet ERROR spans.
    super::trace_bridge::install();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), io::Error>>();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let thread = std::thread::Builder::new().name("mqtt-broker".into()).spawn(move || {
        let router_tx = Router::new(0, router).spawn();
        let mut server = Server::new(settings, router_tx, V4);
        let mut serve = std::pin::pin!(server.start(LinkType::Remote));
        // The first poll binds the listener (a SocketAddr needs no lookup), then waits in
        // accept: report that, or the bind error, before serving.
        let first = runtime.block_on(async {
            tokio::select! {
                biased;
                r = &mut serve => Some(r),
                _ = std::future::ready(()) => None,
            }
        });
        match first {
            None => {
                let _ = ready_tx.send(Ok(()));
            }
            Some(r) => {
                let e = match r {
                    Ok(()) => io::Error::other("rumqttd stopped at once"),
                    Err(e) => std::error::Error::source(&e)
                        .and_then(|s| s.downcast_ref::<io::Error>())
                        .map(|io| io::Error::new(io.kind(), io.to_string()))
                        .unwrap_or_else(|| io::Error::other(error_chain(&e))),
                };
                let _ = ready_tx.send(Err(e));
                return;
            }
        }
        runtime.block_on(async {
            tokio::select! {
                r = serve => match r {
                    Ok(()) => log::error!("embedded MQTT broker on {addr} stopped by itself"),
                    Err(e) => log::error!("embedded MQTT broker on {addr} failed: {}", error_chain(&e)),
                },
                _ = stop_rx => {}
            }
        });
        // Dropping the runtime here cancels every client connection task.
        drop(runtime);
    })?;
    // Wait (briefly: a thread start and a bind) until rumqttd listens, so the first client
    // connection does not race it.
    match ready_rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) if e.kind() == io::ErrorKind::AddrInUse => {
            let _ = thread.join();
            return Ok(Start::PortTaken); // taken between our probe and rumqttd's bind
        }
        Ok(Err(e)) => {
            let _ = thread.join();
            return Err(e);
        }
        Err(_) => {
            let _ = thread.join();
            return Err(io::Error::other("embedded MQTT broker thread died while starting"));
        }
    }
    log::info!("embedded MQTT broker listening on {addr}");
    Ok(Start::Started(EmbeddedBroker { addr, stop_tx: Some(stop_tx), thread: Some(thread) }))
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
        assert!(matches!(start(taken).unwrap(), Start::PortTaken));

        let b = match start("127.0.0.1:0".parse().unwrap()).unwrap() {
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
