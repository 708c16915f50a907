//! The embedded broker's routing table: who is connected, who subscribed to what, and the
//! retained messages — every part of it bounded by [`Limits`].
//!
//! Owns: client-id takeover, subscriptions (at most `max_subscriptions` per connection and
//! `max_subscriptions_total` in all), the retained store (two pools: the daemon's own topic
//! prefixes and everything else, each with a byte and a topic cap, so LAN clients cannot crowd out the daemon's state), and delivery into
//! each connection's bounded mailbox (a subscriber that lags past `queue_bytes`, or the broker
//! past `queued_total`, misses messages instead of growing memory). Must never block (it runs
//! under a `std` mutex) or hold a payload twice (payloads are shared `Bytes`).

use super::topic::matches;
use super::Limits;
use rumqttc::{Packet, Publish, QoS};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, Notify};

/// One connection's number, unique for the broker's life.
pub type ConnId = u64;

/// What a connection's writer is given.
pub enum Out {
    /// A message routed to the connection; `usize` is what it was charged in queued bytes.
    Deliver(Publish, usize),
    /// A protocol answer of the connection's own (CONNACK, PUBACK, SUBACK, PINGRESP, …).
    Reply(Packet),
}

/// A connection's bounded inbox, as the router sees it.
#[derive(Clone)]
pub struct Mailbox {
    /// Messages and replies for the writer.
    pub tx: mpsc::Sender<Out>,
    /// Bytes of delivered messages queued and not yet written.
    pub queued: Arc<AtomicUsize>,
    /// Notified when another connection takes over this one's client id.
    pub kicked: Arc<Notify>,
}

struct Conn {
    client_id: String,
    mailbox: Mailbox,
    subs: Vec<(String, QoS)>,
}

#[derive(Default, Clone, Copy)]
struct Pool {
    bytes: usize,
    topics: usize,
}

/// What happened to a PUBLISH's retain request.
#[derive(Debug, PartialEq, Eq)]
pub enum Retain {
    /// Not a retained message.
    No,
    /// Stored (or, with an empty payload, cleared).
    Stored,
    /// Over the pool's limits: not stored, and the topic's older retained message dropped too
    /// (a stale state is worse than none).
    Refused,
}

/// The routing table; see the module docs.
pub struct Router {
    limits: Limits,
    own_prefixes: Vec<String>,
    next_id: ConnId,
    conns: HashMap<ConnId, Conn>,
    by_client: HashMap<String, ConnId>,
    retained: BTreeMap<String, (QoS, bytes::Bytes)>,
    pools: [Pool; 2],
    /// Bytes queued in all mailboxes together.
    queued_total: Arc<AtomicUsize>,
    /// Deliveries dropped for a full mailbox, since start.
    pub dropped: u64,
}

impl Router {
    /// An empty table. Topics under `own_prefixes` (e.g. `hindsight/`) use the first retained
    /// pool, every other topic the second.
    pub fn new(limits: Limits, own_prefixes: Vec<String>) -> Router {
        Router {
            limits,
            own_prefixes,
            next_id: 1,
            conns: HashMap::new(),
            by_client: HashMap::new(),
            retained: BTreeMap::new(),
            pools: [Pool::default(); 2],
            queued_total: Arc::new(AtomicUsize::new(0)),
            dropped: 0,
        }
    }

    /// The counter of bytes queued in all mailboxes (the writers decrement it).
    pub fn queued_total(&self) -> Arc<AtomicUsize> {
        self.queued_total.clone()
    }

    /// Register a connection under `client_id`; an older connection with the same id is
    /// removed and notified (it closes itself).
    pub fn connect(&mut self, client_id: String, mailbox: Mailbox) -> ConnId {
        if let Some(old) = self.by_client.remove(&client_id) {
            if let Some(c) = self.conns.remove(&old) {
                c.mailbox.kicked.notify_one();
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.by_client.insert(client_id.clone(), id);
        self.conns.insert(id, Conn { client_id, mailbox, subs: Vec::new() });
        id
    }

    /// Forget a connection (no-op if it was taken over already).
    pub fn disconnect(&mut self, id: ConnId) {
        if let Some(c) = self.conns.remove(&id) {
            if self.by_client.get(&c.client_id) == Some(&id) {
                self.by_client.remove(&c.client_id);
            }
        }
    }

    /// Connections now.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Subscribe `id` to valid `filters`; returns the granted QoS per filter (`None`: refused,
    /// over `max_subscriptions`, or the broker over `max_subscriptions_total`) and the retained messages that match, for the connection to send
    /// after its SUBACK (with back-pressure, never dropped: they share the store's payloads).
    pub fn subscribe(&mut self, id: ConnId, filters: &[(String, QoS)]) -> (Vec<Option<QoS>>, Vec<Publish>) {
        let max = self.limits.max_subscriptions;
        let mut total: usize = self.conns.values().map(|c| c.subs.len()).sum();
        let Some(conn) = self.conns.get_mut(&id) else { return (vec![None; filters.len()], Vec::new()) };
        let mut granted = Vec::with_capacity(filters.len());
        let mut new = Vec::new();
        for (filter, qos) in filters {
            let qos = if *qos == QoS::AtMostOnce { QoS::AtMostOnce } else { QoS::AtLeastOnce };
            if let Some(s) = conn.subs.iter_mut().find(|(f, _)| f == filter) {
                s.1 = qos;
            } else if conn.subs.len() >= max || total >= self.limits.max_subscriptions_total {
                granted.push(None);
                continue;
            } else {
                conn.subs.push((filter.clone(), qos));
                total += 1;
            }
            granted.push(Some(qos));
            new.push((filter.clone(), qos));
        }
        let retained = self
            .retained
            .iter()
            .filter_map(|(topic, (pqos, payload))| {
                let q = new.iter().filter(|(f, _)| matches(topic, f)).map(|(_, q)| *q).max_by_key(|q| *q as u8)?;
                let mut p = Publish::from_bytes(topic.clone(), min_qos(*pqos, q), payload.clone());
                p.retain = true;
                Some(p)
            })
            .collect();
        (granted, retained)
    }

    /// Remove `id`'s subscriptions to `filters`.
    pub fn unsubscribe(&mut self, id: ConnId, filters: &[String]) {
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.subs.retain(|(f, _)| !filters.contains(f));
        }
    }

    /// Route a PUBLISH (valid topic) to every matching subscriber, once each at the lower of the
    /// message's and the subscription's QoS; store or clear it if it is retained.
    pub fn publish(&mut self, p: &Publish) -> Retain {
        let retain = if p.retain { self.retain(p) } else { Retain::No };
        let targets: Vec<(Mailbox, QoS)> = self
            .conns
            .values()
            .filter_map(|c| {
                let q =
                    c.subs.iter().filter(|(f, _)| matches(&p.topic, f)).map(|(_, q)| *q).max_by_key(|q| *q as u8)?;
                Some((c.mailbox.clone(), q))
            })
            .collect();
        for (mailbox, q) in targets {
            let out = Publish::from_bytes(p.topic.clone(), min_qos(p.qos, q), p.payload.clone());
            self.deliver(&mailbox, out);
        }
        retain
    }

    fn retain(&mut self, p: &Publish) -> Retain {
        let pool = usize::from(!self.own_prefixes.iter().any(|pre| p.topic.starts_with(pre.as_str())));
        let cost = |topic: &str, payload: &[u8]| topic.len() + payload.len();
        if let Some((_, old)) = self.retained.remove(&p.topic) {
            self.pools[pool].bytes -= cost(&p.topic, &old);
            self.pools[pool].topics -= 1;
        }
        if p.payload.is_empty() {
            return Retain::Stored;
        }
        let (max_bytes, max_topics) = match pool {
            0 => (self.limits.retained_own_bytes, self.limits.retained_own_topics),
            _ => (self.limits.retained_bytes, self.limits.retained_topics),
        };
        let c = cost(&p.topic, &p.payload);
        let Pool { bytes, topics } = self.pools[pool];
        if bytes + c > max_bytes || topics + 1 > max_topics {
            return Retain::Refused;
        }
        self.pools[pool] = Pool { bytes: bytes + c, topics: topics + 1 };
        self.retained.insert(p.topic.clone(), (p.qos, p.payload.clone()));
        Retain::Stored
    }

    fn deliver(&mut self, mailbox: &Mailbox, p: Publish) {
        let cost = p.topic.len() + p.payload.len() + 16;
        let mine = mailbox.queued.load(Ordering::Relaxed);
        let all = self.queued_total.load(Ordering::Relaxed);
        if mine + cost > self.limits.queue_bytes || all + cost > self.limits.queued_total {
            self.dropped += 1;
            return;
        }
        match mailbox.tx.try_send(Out::Deliver(p, cost)) {
            Ok(()) => {
                mailbox.queued.fetch_add(cost, Ordering::Relaxed);
                self.queued_total.fetch_add(cost, Ordering::Relaxed);
            }
            Err(_) => self.dropped += 1,
        }
    }

    /// Retained bytes and topics in (own pool, other pool).
    pub fn retained_usage(&self) -> [(usize, usize); 2] {
        self.pools.map(|p| (p.bytes, p.topics))
    }
}

fn min_qos(a: QoS, b: QoS) -> QoS {
    let rank = |q: QoS| q as u8;
    if rank(a) <= rank(b) {
        a
    } else {
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            retained_bytes: 1000,
            retained_topics: 3,
            retained_own_bytes: 1000,
            retained_own_topics: 10,
            queue_bytes: 600,
            queued_total: 10_000,
            max_subscriptions: 2,
            ..Limits::default()
        }
    }

    fn mailbox() -> (Mailbox, mpsc::Receiver<Out>) {
        let (tx, rx) = mpsc::channel(64);
        (Mailbox { tx, queued: Arc::default(), kicked: Arc::default() }, rx)
    }

    fn retained(topic: &str, n: usize) -> Publish {
        let mut p = Publish::new(topic, QoS::AtMostOnce, vec![b'x'; n]);
        p.retain = true;
        p
    }

    #[test]
    fn retained_pools_are_capped_and_own_topics_keep_their_room() {
        let mut r = Router::new(limits(), vec!["hindsight/".into()]);
        for i in 0..3 {
            assert_eq!(r.publish(&retained(&format!("junk/{i}"), 100)), Retain::Stored);
        }
        // The fourth topic is over the topic cap; a big payload is over the byte cap.
        assert_eq!(r.publish(&retained("junk/3", 10)), Retain::Refused);
        assert_eq!(r.publish(&retained("junk/0", 2000)), Retain::Refused);
        assert_eq!(r.retained_usage()[1].1, 2, "the refused replacement dropped the stale value");
        // The daemon's own pool is untouched by the junk.
        assert_eq!(r.publish(&retained("hindsight/cam/state", 500)), Retain::Stored);
        // Clearing frees the room.
        assert_eq!(r.publish(&retained("junk/1", 0)), Retain::Stored);
        assert_eq!(r.publish(&retained("junk/9", 100)), Retain::Stored);
        assert_eq!(r.retained_usage(), [(519, 1), (2 * 106, 2)]);
    }

    #[test]
    fn a_lagging_subscriber_misses_messages_instead_of_growing() {
        let mut r = Router::new(limits(), vec![]);
        let (mb, mut rx) = mailbox();
        let id = r.connect("c".into(), mb.clone());
        assert_eq!(r.subscribe(id, &[("a/#".into(), QoS::AtLeastOnce)]).0, vec![Some(QoS::AtLeastOnce)]);
        for _ in 0..10 {
            r.publish(&Publish::new("a/b", QoS::AtLeastOnce, vec![0u8; 100]));
        }
        // 600 bytes of queue hold 5 messages of 100 + topic + overhead; the rest are dropped.
        assert_eq!(r.dropped, 5);
        assert_eq!(mb.queued.load(Ordering::Relaxed), 5 * 119);
        let mut n = 0;
        while let Ok(Out::Deliver(p, _)) = rx.try_recv() {
            assert_eq!(p.qos, QoS::AtLeastOnce);
            n += 1;
        }
        assert_eq!(n, 5);
    }

    #[test]
    fn subscriptions_are_capped_takeover_kicks_and_retained_replay() {
        let mut r = Router::new(limits(), vec![]);
        r.publish(&retained("t/1", 5));
        let (mb, _rx) = mailbox();
        let id = r.connect("c".into(), mb.clone());
        let (got, replay) = r.subscribe(
            id,
            &[("t/+".into(), QoS::ExactlyOnce), ("x".into(), QoS::AtMostOnce), ("y".into(), QoS::AtMostOnce)],
        );
        assert_eq!(got, vec![Some(QoS::AtLeastOnce), Some(QoS::AtMostOnce), None]);
        assert!(matches!(&replay[..], [p] if p.retain && p.topic == "t/1" && p.qos == QoS::AtMostOnce), "{replay:?}");
        let (mb2, _rx2) = mailbox();
        let id2 = r.connect("c".into(), mb2);
        assert_ne!(id, id2);
        assert_eq!(r.connections(), 1);
        // The old connection was told to close (a stored permit).
        let kicked = mb.kicked.notified();
        futures_util::FutureExt::now_or_never(kicked).expect("kicked");
        r.disconnect(id); // the old one leaving does not remove the new one
        assert_eq!(r.connections(), 1);
    }

    /// Home Assistant 2026.11's subscriptions at start-up (its `discovery.py`): two filters for
    /// each of its 32 discovery components, two for device discovery, then one per entity
    /// state topic. All granted under the default limits; the broker-wide cap holds.
    #[test]
    fn home_assistant_s_filters_are_all_granted_and_the_total_is_capped() {
        let components = [
            "alarm_control_panel",
            "binary_sensor",
            "button",
            "camera",
            "climate",
            "cover",
            "device_automation",
            "device_tracker",
            "event",
            "fan",
            "humidifier",
            "image",
            "lawn_mower",
            "light",
            "lock",
            "notify",
            "number",
            "scene",
            "select",
            "sensor",
            "siren",
            "switch",
            "tag",
            "text",
            "update",
            "vacuum",
            "valve",
            "water_heater",
            "conversation",
            "ai_task",
            "datetime",
            "date",
        ];
        let mut filters: Vec<(String, QoS)> = Vec::new();
        for c in components {
            filters.push((format!("homeassistant/{c}/+/config"), QoS::AtLeastOnce));
            filters.push((format!("homeassistant/{c}/+/+/config"), QoS::AtLeastOnce));
        }
        filters.push(("homeassistant/device/+/config".into(), QoS::AtLeastOnce));
        filters.push(("homeassistant/device/+/+/config".into(), QoS::AtLeastOnce));
        for e in ["state", "recording", "last_clip", "clip", "snapshot"] {
            filters.push((format!("hindsight/cam0/{e}"), QoS::AtLeastOnce));
        }
        filters.push(("hindsight/health".into(), QoS::AtLeastOnce));
        filters.push(("hindsight/status".into(), QoS::AtLeastOnce));
        let mut r = Router::new(Limits::default(), vec![]);
        let (mb, _rx) = mailbox();
        let ha = r.connect("homeassistant".into(), mb);
        let (got, _) = r.subscribe(ha, &filters);
        assert_eq!(filters.len(), 73);
        assert!(
            got.iter().all(|g| g.is_some()),
            "refused: {:?}",
            filters.iter().zip(&got).filter(|(_, g)| g.is_none()).collect::<Vec<_>>()
        );

        let mut r =
            Router::new(Limits { max_subscriptions: 3, max_subscriptions_total: 5, ..Limits::default() }, vec![]);
        let many: Vec<(String, QoS)> = (0..4).map(|i| (format!("t/{i}"), QoS::AtMostOnce)).collect();
        let (a, b) = (r.connect("a".into(), mailbox().0), r.connect("b".into(), mailbox().0));
        assert_eq!(r.subscribe(a, &many).0.iter().filter(|g| g.is_some()).count(), 3, "per connection");
        assert_eq!(r.subscribe(b, &many).0.iter().filter(|g| g.is_some()).count(), 2, "broker-wide");
        // Re-subscribing a held filter is no new subscription.
        assert_eq!(r.subscribe(a, &many[..1]).0, vec![Some(QoS::AtMostOnce)]);
    }
}
