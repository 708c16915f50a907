//! The one serving path for HTTP and HTTPS: our own accept loop over a tokio `TcpListener`,
//! an optional TLS handshake (tokio-rustls), and hyper 0.14 connections (with upgrades, so
//! WebSockets work) running the warp filter. Every request carries the peer address as a
//! [`Peer`] extension, which [`peer`] reads — `warp::addr::remote()` does not work here.
//!
//! A failed or slow handshake (10 s) is logged at debug and dropped; it never stops the accept
//! loop. Bounded: at most [`MAX_CONNECTIONS`] at once (further ones wait in the kernel's
//! backlog), at most [`MAX_PER_ADDRESS`] from one IP address (more are closed at once, so one
//! LAN host holding idle or half-TLS sockets cannot take the slots the phone needs), at most
//! [`MAX_STREAMS`] HTTP/2 streams per connection, and a connection with no request in flight for [`IDLE_TIMEOUT`] is closed (a
//! socket that never sends a whole request, an idle keep-alive), so idle sockets cannot use up
//! the file descriptors that clip writing needs. (hyper 0.14's own header timeout needs its
//! `runtime` feature, which warp does not enable.)
//!
//! On shutdown the listener closes and open connections are asked to finish (keep-alive ends
//! after the current response). A connection with no request in flight — counted from the
//! request's arrival to the end of its response body — closes at once: hyper 0.14's graceful
//! shutdown would otherwise wait for the first request on a connection that never sent one (a
//! browser's spare socket). The rest are awaited for at most [`DRAIN`].

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::rustls;
use warp::hyper::server::conn::Http;
use warp::hyper::service::Service;
use warp::{Filter, Reply};

/// How long a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open connections get to finish after shutdown.
pub const DRAIN: Duration = Duration::from_secs(10);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 256;
/// Connections from one IP address at once; more are closed on accept.
pub const MAX_PER_ADDRESS: usize = 32;
/// Concurrent HTTP/2 streams per connection (SETTINGS_MAX_CONCURRENT_STREAMS).
pub const MAX_STREAMS: u32 = 32;
/// Largest HTTP/2 header list, bytes.
pub const MAX_HEADER_LIST: u32 = 64 * 1024;
/// How long a connection may go without a request in flight (sending headers, or idle between
/// requests) before it is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The peer address of the connection a request came on (a request extension).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// The peer address of the request, under HTTP and HTTPS alike.
pub fn peer() -> impl Filter<Extract = (Option<SocketAddr>,), Error = Infallible> + Clone {
    warp::ext::optional::<Peer>().map(|p: Option<Peer>| p.map(|p| p.0))
}

/// Bind `addr` (synchronously, so errors are immediate) and serve `filter` until `shutdown`
/// resolves, over TLS when `tls` is given. Returns the bound address and the server future.
pub fn serve<F>(
    filter: F,
    addr: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, impl Future<Output = ()> + Send + 'static)>
where
    F: Filter + Clone + Send + Sync + 'static,
    F::Extract: Reply,
{
    let std_listener = std::net::TcpListener::bind(addr)?;
    std_listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(std_listener)?;
    let bound = listener.local_addr()?;
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let fut = async move {
        // false: serving; true: finish gracefully. `kill`: drop whatever is still open.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let (kill_tx, kill_rx) = tokio::sync::watch::channel(false);
        // Every connection task holds a clone; when all are dropped, `recv` answers None.
        let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<()>(1);
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        let per_address = PerAddress::default();
        tokio::pin!(shutdown);
        loop {
            let slot = tokio::select! {
                _ = &mut shutdown => break,
                s = slots.clone().acquire_owned() => match s {
                    Ok(s) => s,
                    Err(_) => break,
                },
            };
            let (stream, remote) = tokio::select! {
                _ = &mut shutdown => break,
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and the like: back off a little, keep serving.
                        log::warn!("HTTP accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let Some(address_slot) = per_address.take(remote.ip()) else {
                log::debug!("HTTP: {remote} closed at once: {MAX_PER_ADDRESS} connections from that address already");
                continue; // drops the stream (closed) and the slot
            };
            let _ = stream.set_nodelay(true);
            let filter = filter.clone();
            let acceptor = acceptor.clone();
            let stop = stop_rx.clone();
            let kill = kill_rx.clone();
            let done = done_tx.clone();
            tokio::spawn(async move {
                match acceptor {
                    Some(acc) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acc.accept(stream)).await {
                        Ok(Ok(tls)) => connection(tls, remote, filter, stop, kill).await,
                        Ok(Err(e)) => log::debug!("TLS handshake with {remote} failed: {e}"),
                        Err(_) => log::debug!("TLS handshake with {remote} timed out"),
                    },
                    None => connection(stream, remote, filter, stop, kill).await,
                }
                drop(address_slot);
                drop(slot);
                drop(done);
            });
        }
        drop(listener);
        let _ = stop_tx.send(true);
        drop(done_tx);
        if tokio::time::timeout(DRAIN, done_rx.recv()).await.is_err() {
            log::warn!("HTTP: connections still open after {DRAIN:?}; closing them");
            // Dropping a connection drops its handler state too (the app state, the index).
            let _ = kill_tx.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(1), done_rx.recv()).await;
        }
    };
    Ok((bound, fut))
}

/// Serve one connection until it ends, or until `stop` (then finish gracefully), or `kill`.
async fn connection<I, F>(
    io: I,
    remote: SocketAddr,
    filter: F,
    mut stop: tokio::sync::watch::Receiver<bool>,
    mut kill: tokio::sync::watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    F: Filter + Clone + Send + Sync + 'static,
    F::Extract: Reply,
{
    let svc = warp::service(filter);
    // (requests in flight until their response body ends, requests ever started) on this connection.
    let (busy_tx, mut busy) = tokio::sync::watch::channel((0usize, 0u64));
    let busy_tx = Arc::new(busy_tx);
    let svc = warp::hyper::service::service_fn(move |mut req: warp::hyper::Request<warp::hyper::Body>| {
        req.extensions_mut().insert(Peer(remote));
        let guard = InFlight::new(busy_tx.clone());
        let mut s = svc.clone();
        let fut = s.call(req);
        async move { fut.await.map(|r| r.map(|body| Counted { body, _guard: guard })) }
    });
    let conn = Http::new()
        .http2_max_concurrent_streams(MAX_STREAMS)
        .http2_max_header_list_size(MAX_HEADER_LIST)
        .serve_connection(io, svc)
        .with_upgrades();
    tokio::pin!(conn);
    let mut watch_idle = busy.clone();
    let idle = async move {
        loop {
            let Ok(v) = watch_idle.wait_for(|v| v.0 == 0).await.map(|v| *v) else { return };
            // Idle since now: a request starting (even one that ends at once) resets the clock.
            if tokio::time::timeout(IDLE_TIMEOUT, watch_idle.wait_for(|n| n.1 != v.1)).await.is_err() {
                return;
            }
        }
    };
    tokio::pin!(idle);
    let mut stopping = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    log::debug!("HTTP connection from {remote}: {e}");
                }
                return;
            }
            changed = stop.changed(), if !stopping => {
                stopping = true;
                if changed.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
            // Stopping and nothing in flight: nothing to finish.
            _ = busy.wait_for(|n| n.0 == 0), if stopping => return,
            _ = &mut idle => {
                log::debug!("HTTP connection from {remote}: idle for {IDLE_TIMEOUT:?}; closing");
                return;
            }
            _ = kill.changed() => return,
        }
    }
}

/// Connections per IP address (IPv4-mapped IPv6 counts as IPv4).
#[derive(Default, Clone)]
struct PerAddress(Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>);

/// One connection counted against its address; uncounted on drop.
struct AddressSlot(PerAddress, std::net::IpAddr);

impl PerAddress {
    fn take(&self, ip: std::net::IpAddr) -> Option<AddressSlot> {
        let ip = ip.to_canonical();
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(ip).or_insert(0);
        if *n >= MAX_PER_ADDRESS {
            return None;
        }
        *n += 1;
        Some(AddressSlot(self.clone(), ip))
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut m = self.0 .0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.1);
            }
        }
    }
}

/// Counts one request in flight for as long as it lives (moved into the response body).
struct InFlight(Arc<tokio::sync::watch::Sender<(usize, u64)>>);

impl InFlight {
    fn new(tx: Arc<tokio::sync::watch::Sender<(usize, u64)>>) -> Self {
        tx.send_modify(|n| {
            n.0 += 1;
            n.1 += 1;
        });
        InFlight(tx)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|n| n.0 = n.0.saturating_sub(1));
    }
}

/// A response body that keeps its request counted in flight until it ends or is dropped.
struct Counted {
    body: warp::hyper::Body,
    _guard: InFlight,
}

impl warp::hyper::body::HttpBody for Counted {
    type Data = warp::hyper::body::Bytes;
    type Error = warp::hyper::Error;

    fn poll_data(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Self::Data, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_data(cx)
    }

    fn poll_trailers(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<Option<warp::http::HeaderMap>, Self::Error>> {
        std::pin::Pin::new(&mut self.body).poll_trailers(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> warp::hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// A plain-HTTP service answering every request with 308 to the same path on the HTTPS port.
pub fn redirect_filter(
    https_port: u16,
    fallback_host: String,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    warp::header::optional::<String>("host")
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .map(move |host: Option<String>, path: warp::path::FullPath, query: String| {
            // Only a well-formed host name or address is echoed into the Location.
            let host = host
                .as_deref()
                .filter(|h| !h.contains('@') && h.parse::<warp::http::uri::Authority>().is_ok_and(|a| a.as_str() == *h))
                .map(strip_port)
                .filter(|h| !h.is_empty())
                .unwrap_or(&fallback_host)
                .to_string();
            let mut loc = format!("https://{host}:{https_port}{}", path.as_str());
            if !query.is_empty() {
                loc.push('?');
                loc.push_str(&query);
            }
            match warp::http::HeaderValue::from_str(&loc) {
                Ok(v) => {
                    let mut r =
                        warp::reply::with_status("", warp::http::StatusCode::PERMANENT_REDIRECT).into_response();
                    r.headers_mut().insert(warp::http::header::LOCATION, v);
                    r
                }
                Err(_) => {
                    warp::reply::with_status("bad Host header", warp::http::StatusCode::BAD_REQUEST).into_response()
                }
            }
        })
}

/// `host:port` → `host`, `[::1]:80` → `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        match host.find(']') {
            Some(i) => &host[..=i],
            None => host,
        }
    } else {
        host.split(':').next().unwrap_or(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// WebSocket upgrades go through the hyper connection, and `peer()` sees the client.
    #[tokio::test]
    async fn websocket_upgrade_and_peer() {
        use futures_util::{SinkExt, StreamExt};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let echo = warp::path!("ws").and(warp::ws()).and(peer()).map(|ws: warp::ws::Ws, p: Option<SocketAddr>| {
            ws.on_upgrade(move |socket| async move {
                let (mut tx, mut rx) = socket.split();
                while let Some(Ok(m)) = rx.next().await {
                    if m.is_text() {
                        let text = format!(
                            "{}|{}",
                            m.to_str().unwrap_or(""),
                            p.map(|p| p.ip().to_string()).unwrap_or_default()
                        );
                        if tx.send(warp::ws::Message::text(text)).await.is_err() {
                            break;
                        }
                    }
                }
            })
        });
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr, fut) = serve(echo, "127.0.0.1:0".parse().unwrap(), None, async move {
            let _ = stop_rx.await;
        })
        .unwrap();
        let server = tokio::spawn(fut);
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await
        .unwrap();
        let mut buf = vec![0u8; 1024];
        let mut got = Vec::new();
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed before the upgrade answer");
            got.extend_from_slice(&buf[..n]);
        }
        assert!(got.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&got));
        // A masked text frame "hi".
        let mask = [1u8, 2, 3, 4];
        let mut frame = vec![0x81, 0x80 | 2];
        frame.extend_from_slice(&mask);
        frame.extend(b"hi".iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        s.write_all(&frame).await.unwrap();
        let mut head = [0u8; 2];
        s.read_exact(&mut head).await.unwrap();
        assert_eq!(head[0], 0x81);
        let mut payload = vec![0u8; (head[1] & 0x7f) as usize];
        s.read_exact(&mut payload).await.unwrap();
        assert_eq!(payload, b"hi|127.0.0.1");
        drop(s);
        let _ = stop_tx.send(());
        tokio::time::timeout(Duration::from_secs(5), server).await.expect("server drains").unwrap();
    }

    #[test]
    fn host_without_port() {
        assert_eq!(strip_port("cam.local:80"), "cam.local");
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
        assert_eq!(strip_port("10.0.0.2"), "10.0.0.2");
    }
}
