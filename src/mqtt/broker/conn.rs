//! One client connection of the embedded broker: CONNECT (checked against the broker's users),
//! then packets until DISCONNECT, a protocol error, a keep-alive timeout or a takeover.
//!
//! Owns: reading a packet only after its declared size passed `max_packet` and a share of the
//! broker-wide inbound byte budget was granted; the per-connection publish rate (a token bucket:
//! over it, the connection is read more slowly, so TCP pushes back on the client); QoS 1/2
//! acknowledgements; the last will; the writer task. Must never: buffer a packet before its size
//! is checked, route anything before a successful CONNECT, or log a password.

use super::router::{ConnId, Mailbox, Out, Retain};
use super::topic::{valid_filter, valid_topic};
use super::Shared;
use crate::auth::ct_eq;
use bytes::{BufMut, BytesMut};
use rumqttc::{
    ConnAck, Connect, ConnectReturnCode, Packet, Protocol, PubAck, PubComp, PubRec, Publish, QoS, SubAck,
    SubscribeReasonCode, UnsubAck,
};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Replies and deliveries waiting for one connection's writer (also bounded in bytes).
const MAILBOX: usize = 256;
/// QoS 2 packet ids received and not yet released; more is a misbehaving client.
const MAX_QOS2_PENDING: usize = 64;
/// Longest client id accepted.
const MAX_CLIENT_ID: usize = 128;

/// Why reading a packet failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The socket failed or closed.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The declared remaining length is over the limit: the packet is not read.
    #[error("packet of {0} bytes is over the broker's limit")]
    TooBig(usize),
    /// The bytes are not an MQTT 3.1.1 packet.
    #[error("malformed packet: {0:?}")]
    Malformed(rumqttc::Error),
}

/// Read one packet: the fixed header first, then — once `remaining_len ≤ max` and the budget
/// granted `frame_len` bytes — the rest. The permit is held while the packet is handled.
pub async fn read_packet<R: AsyncRead + Unpin>(
    rd: &mut R,
    max: usize,
    budget: &Arc<Semaphore>,
) -> Result<(Packet, OwnedSemaphorePermit), ReadError> {
    let mut head = [0u8; 5];
    head[0] = rd.read_u8().await?;
    let (mut len, mut n) = (0usize, 1usize);
    loop {
        let b = rd.read_u8().await?;
        head[n] = b;
        len |= usize::from(b & 0x7f) << (7 * (n - 1));
        n += 1;
        if b & 0x80 == 0 {
            break;
        }
        if n == 5 {
            return Err(ReadError::Malformed(rumqttc::Error::MalformedRemainingLength));
        }
    }
    if len > max {
        return Err(ReadError::TooBig(len));
    }
    let frame = n + len;
    let permits = u32::try_from(frame).unwrap_or(u32::MAX);
    let permit =
        budget.clone().acquire_many_owned(permits).await.map_err(|_| std::io::Error::other("broker stopping"))?;
    let mut buf = BytesMut::with_capacity(frame);
    buf.put_slice(&head[..n]);
    buf.resize(frame, 0);
    rd.read_exact(&mut buf[n..]).await?;
    let packet = Packet::read(&mut buf, max).map_err(ReadError::Malformed)?;
    Ok((packet, permit))
}

/// A token bucket for one connection's publishes (messages and bytes).
struct Bucket {
    msgs: f64,
    bytes: f64,
    at: Instant,
}

impl Bucket {
    /// How long to wait before a publish of `size` bytes may be handled (and take it).
    fn take(&mut self, size: usize, l: &super::Limits, now: Instant) -> Duration {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.msgs = (self.msgs + dt * l.publish_per_s).min(l.publish_burst);
        self.bytes = (self.bytes + dt * l.bytes_per_s).min(l.bytes_burst);
        self.msgs -= 1.0;
        self.bytes -= size as f64;
        let wait = (-self.msgs / l.publish_per_s).max(-self.bytes / l.bytes_per_s).max(0.0);
        Duration::from_secs_f64(wait)
    }
}

/// Serve one accepted connection until it ends.
pub(super) async fn serve(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(4096, rd);
    let l = &shared.limits;
    let first = tokio::time::timeout(l.connect_timeout, read_packet(&mut rd, l.max_packet, &shared.inbound)).await;
    let connect = match first {
        Ok(Ok((Packet::Connect(c), _))) => c,
        Ok(Ok(_)) => return log::debug!("MQTT {peer}: first packet is not CONNECT"),
        Ok(Err(e)) => return log::debug!("MQTT {peer}: {e}"),
        Err(_) => return log::debug!("MQTT {peer}: no CONNECT within {:?}", l.connect_timeout),
    };
    let code = check_connect(&connect, &shared.users);
    if code != ConnectReturnCode::Success {
        let who = connect.login.as_ref().map(|l| l.username.as_str()).unwrap_or("(anonymous)");
        log::warn!("MQTT {peer}: connection of user {who:?} refused: {code:?}");
        let _ = write(&mut wr, &Packet::ConnAck(ConnAck::new(code, false)), l.max_packet).await;
        return;
    }
    let client_id = match connect.client_id.is_empty() {
        true => format!("anonymous-{}", shared.next_anon.fetch_add(1, Ordering::Relaxed)),
        false => connect.client_id.clone(),
    };
    let (tx, rx) = mpsc::channel(MAILBOX);
    let mailbox = Mailbox { tx, queued: Arc::default(), kicked: Arc::default() };
    let id = shared.router().connect(client_id.clone(), mailbox.clone());
    log::debug!("MQTT {peer}: {client_id:?} connected");
    let _ = mailbox.tx.send(Out::Reply(Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false)))).await;
    let writer = tokio::spawn(write_loop(wr, rx, mailbox.queued.clone(), shared.queued_total.clone(), l.max_packet));
    let keep_alive = match connect.keep_alive {
        0 => None,
        s => Some(Duration::from_millis(u64::from(s) * 1500)),
    };
    let clean = tokio::select! {
        clean = session(&mut rd, id, &mailbox, keep_alive, &shared, peer) => clean,
        _ = mailbox.kicked.notified() => {
            log::info!("MQTT {peer}: client id {client_id:?} taken over by a new connection");
            true
        }
    };
    shared.router().disconnect(id);
    if !clean {
        if let Some(w) = connect.last_will.filter(|w| valid_topic(&w.topic)) {
            let mut p = Publish::from_bytes(w.topic, w.qos, w.message);
            p.retain = w.retain;
            shared.router().publish(&p);
        }
    }
    drop(mailbox);
    let _ = writer.await;
}

/// Whether this CONNECT may go on: protocol 3.1.1, a usable client id, and the credentials of
/// one of `users` (any client when `users` is empty: the broker is on loopback).
fn check_connect(c: &Connect, users: &[(String, String)]) -> ConnectReturnCode {
    if c.protocol != Protocol::V4 {
        return ConnectReturnCode::RefusedProtocolVersion;
    }
    if c.client_id.len() > MAX_CLIENT_ID || (c.client_id.is_empty() && !c.clean_session) {
        return ConnectReturnCode::BadClientId;
    }
    if users.is_empty() {
        return ConnectReturnCode::Success;
    }
    let Some(login) = &c.login else { return ConnectReturnCode::NotAuthorized };
    // Every user is compared, so the time taken does not tell which name exists.
    let ok = users.iter().fold(false, |ok, (u, p)| (ct_eq(u, &login.username) & ct_eq(p, &login.password)) | ok);
    match ok {
        true => ConnectReturnCode::Success,
        false => ConnectReturnCode::BadUserNamePassword,
    }
}

/// Packets after CONNECT; returns whether the client said DISCONNECT (no last will then).
async fn session<R: AsyncRead + Unpin>(
    rd: &mut R,
    id: ConnId,
    mailbox: &Mailbox,
    keep_alive: Option<Duration>,
    shared: &Shared,
    peer: SocketAddr,
) -> bool {
    let l = &shared.limits;
    let mut bucket = Bucket { msgs: l.publish_burst, bytes: l.bytes_burst, at: Instant::now() };
    let mut qos2: HashSet<u16> = HashSet::new();
    loop {
        let read = read_packet(rd, l.max_packet, &shared.inbound);
        let got = match keep_alive {
            Some(k) => match tokio::time::timeout(k, read).await {
                Ok(r) => r,
                Err(_) => {
                    log::info!("MQTT {peer}: keep-alive expired");
                    return false;
                }
            },
            None => read.await,
        };
        let (packet, _permit) = match got {
            Ok(p) => p,
            Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return false,
            Err(e) => {
                log::info!("MQTT {peer}: closing: {e}");
                return false;
            }
        };
        let reply = match packet {
            Packet::Publish(p) => {
                if !valid_topic(&p.topic) {
                    log::info!("MQTT {peer}: closing: publish to an invalid topic");
                    return false;
                }
                let wait = bucket.take(p.payload.len() + p.topic.len(), l, Instant::now());
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                if p.qos == QoS::ExactlyOnce && !qos2.insert(p.pkid) {
                    // A duplicate of a QoS 2 message not yet released: answer, do not route again.
                    Some(Packet::PubRec(PubRec::new(p.pkid)))
                } else {
                    if qos2.len() > MAX_QOS2_PENDING {
                        log::info!("MQTT {peer}: closing: too many unreleased QoS 2 messages");
                        return false;
                    }
                    if shared.router().publish(&p) == Retain::Refused {
                        shared.warn_retained(&p.topic);
                    }
                    match p.qos {
                        QoS::AtMostOnce => None,
                        QoS::AtLeastOnce => Some(Packet::PubAck(PubAck::new(p.pkid))),
                        QoS::ExactlyOnce => Some(Packet::PubRec(PubRec::new(p.pkid))),
                    }
                }
            }
            Packet::PubRel(r) => {
                qos2.remove(&r.pkid);
                Some(Packet::PubComp(PubComp::new(r.pkid)))
            }
            Packet::Subscribe(s) => {
                let filters: Vec<(String, QoS)> = s.filters.iter().map(|f| (f.path.clone(), f.qos)).collect();
                let valid: Vec<bool> = filters.iter().map(|(f, _)| valid_filter(f)).collect();
                let ok: Vec<(String, QoS)> =
                    filters.iter().zip(&valid).filter(|(_, v)| **v).map(|(f, _)| f.clone()).collect();
                let (granted, retained) = shared.router().subscribe(id, &ok);
                let mut granted = granted.into_iter();
                let codes = valid
                    .iter()
                    .map(|v| match v.then(|| granted.next().flatten()).flatten() {
                        Some(q) => SubscribeReasonCode::Success(q),
                        None => SubscribeReasonCode::Failure,
                    })
                    .collect();
                if mailbox.tx.send(Out::Reply(Packet::SubAck(SubAck::new(s.pkid, codes)))).await.is_err() {
                    return false;
                }
                // Retained messages after the SUBACK, at this client's pace (charged nothing:
                // they share the retained store's payloads).
                for p in retained {
                    if mailbox.tx.send(Out::Deliver(p, 0)).await.is_err() {
                        return false;
                    }
                }
                None
            }
            Packet::Unsubscribe(u) => {
                shared.router().unsubscribe(id, &u.topics);
                Some(Packet::UnsubAck(UnsubAck::new(u.pkid)))
            }
            Packet::PingReq => Some(Packet::PingResp),
            Packet::Disconnect => return true,
            // Acknowledgements of our deliveries: nothing is kept for them (no resend).
            Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubComp(_) => None,
            other => {
                log::info!("MQTT {peer}: closing: unexpected {:?} packet", std::mem::discriminant(&other));
                return false;
            }
        };
        if let Some(r) = reply {
            if mailbox.tx.send(Out::Reply(r)).await.is_err() {
                return false; // the writer stopped: the socket is gone
            }
        }
    }
}

/// Write replies and deliveries until the mailbox closes or the socket fails.
async fn write_loop(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Out>,
    queued: Arc<AtomicUsize>,
    queued_total: Arc<AtomicUsize>,
    max: usize,
) {
    let mut pkid: u16 = 0;
    let mut failed = false;
    while let Some(out) = rx.recv().await {
        let packet = match out {
            Out::Reply(p) => p,
            Out::Deliver(mut p, cost) => {
                queued.fetch_sub(cost, Ordering::Relaxed);
                queued_total.fetch_sub(cost, Ordering::Relaxed);
                if p.qos != QoS::AtMostOnce {
                    pkid = pkid.checked_add(1).unwrap_or(1);
                    p.pkid = pkid;
                }
                Packet::Publish(p)
            }
        };
        if !failed && write(&mut wr, &packet, max).await.is_err() {
            // Keep draining (the counters above must come back down), write no more.
            failed = true;
            let _ = wr.shutdown().await;
        }
    }
    let _ = wr.shutdown().await;
}

async fn write(wr: &mut OwnedWriteHalf, p: &Packet, max: usize) -> std::io::Result<()> {
    let mut buf = BytesMut::with_capacity(p.size() + 5);
    p.write(&mut buf, max + 5).map_err(|e| std::io::Error::other(format!("{e:?}")))?;
    wr.write_all(&buf).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_declared_size_over_the_limit_is_refused_before_it_is_read() {
        let budget = Arc::new(Semaphore::new(1 << 20));
        // PUBLISH, remaining length 300 000 (varint e0 a7 12), and no body at all.
        let mut bytes: &[u8] = &[0x30, 0xe0, 0xa7, 0x12];
        match read_packet(&mut bytes, 256 * 1024, &budget).await {
            Err(ReadError::TooBig(300_000)) => {}
            other => panic!("{:?}", other.map(|(p, _)| p)),
        }
        // A fifth length byte is malformed.
        let mut bytes: &[u8] = &[0x30, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert!(matches!(read_packet(&mut bytes, usize::MAX, &budget).await, Err(ReadError::Malformed(_))));
        // A good one round-trips and holds its bytes of the budget until dropped.
        let mut buf = BytesMut::new();
        Packet::Publish(Publish::new("a/b", QoS::AtMostOnce, "hi")).write(&mut buf, 100).unwrap();
        let (p, permit) = read_packet(&mut &buf[..], 100, &budget).await.unwrap();
        assert!(matches!(p, Packet::Publish(ref p) if p.topic == "a/b" && &p.payload[..] == b"hi"));
        assert_eq!(budget.available_permits(), (1 << 20) - buf.len());
        drop(permit);
        assert_eq!(budget.available_permits(), 1 << 20);
    }

    #[test]
    fn credentials_and_protocol_are_checked() {
        let users = vec![("sensor".to_string(), "door-secret".to_string())];
        let mut c = Connect::new("c1");
        assert_eq!(check_connect(&c, &users), ConnectReturnCode::NotAuthorized);
        assert_eq!(check_connect(&c, &[]), ConnectReturnCode::Success);
        c.set_login("sensor", "wrong");
        assert_eq!(check_connect(&c, &users), ConnectReturnCode::BadUserNamePassword);
        c.set_login("sensor", "door-secret");
        assert_eq!(check_connect(&c, &users), ConnectReturnCode::Success);
        c.protocol = Protocol::V5;
        assert_eq!(check_connect(&c, &users), ConnectReturnCode::RefusedProtocolVersion);
        let mut c = Connect::new("");
        c.clean_session = false;
        assert_eq!(check_connect(&c, &[]), ConnectReturnCode::BadClientId);
    }

    #[test]
    fn the_bucket_slows_a_flood_down() {
        let l = super::super::Limits { publish_per_s: 10.0, publish_burst: 2.0, ..Default::default() };
        let t0 = Instant::now();
        let mut b = Bucket { msgs: l.publish_burst, bytes: l.bytes_burst, at: t0 };
        assert!(b.take(10, &l, t0).is_zero());
        assert!(b.take(10, &l, t0).is_zero());
        let close = |w: Duration, s: f64| (w.as_secs_f64() - s).abs() < 1e-6;
        assert!(close(b.take(10, &l, t0), 0.1), "the third waits for one token at 10/s");
        // Half a second later five tokens came back, one of them owed.
        assert!(b.take(10, &l, t0 + Duration::from_millis(500)).is_zero());
        // A payload over the byte burst waits for its bytes.
        let w = b.take(l.bytes_burst as usize * 2, &l, t0 + Duration::from_millis(500));
        assert!(close(w, (l.bytes_burst + 10.0) / l.bytes_per_s), "{w:?}");
    }
}
