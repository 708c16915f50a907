//! The session half of the MQTT stage: everything we say on the broker and every trigger we
//! answer, over one rumqttc client handle.
//!
//! Owns: re-subscribing and re-publishing retained topics after each (re)connection (`status`
//! `online` only after the subscriptions, so `online` means triggers are heard), the periodic
//! `state` and `health` check, clip and recording events, trigger answers, cameras switched on
//! and off (`{base}/{camera}/power/set`), and `offline` + DISCONNECT on stop. With Home
//! Assistant discovery ([`super::discovery`]): the device configs (again when Home Assistant
//! announces itself on `{prefix}/status`, and when cameras come or go), the clearing of configs
//! of cameras no longer configured (read back from the broker's retained messages: nothing to
//! keep on disk), and snapshots, taken aside one camera at a time.
//!
//! Trigger messages are answered one at a time in arrival order; `TriggerTarget::trigger` (it
//! takes locks) runs on tokio's blocking pool via `spawn_blocking`. `camera_state` and
//! `camera_ids` are called on the reactor and must stay cheap (atomics, short locks).
//!
//! Must never: block on a full request queue without bound (answers and events wait at most
//! [`PUBLISH_WAIT`] or until stop; `state` updates are dropped when the queue is full and retried
//! at the next check), publish `state` while disconnected (it would only pile up stale copies),
//! or act on a retained trigger (a stale one replayed at subscription time).

use super::discovery::Discovery;
use super::topics::{self, Topics};
use super::{Incoming, Link};
use crate::clip_meta::ClipEvent;
use crate::shutdown::StopToken;
use crate::trigger::TriggerTarget;
use rumqttc::{AsyncClient, ClientError, QoS};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, watch};

/// How often camera states are compared with what was last published.
const STATE_CHECK: Duration = Duration::from_secs(2);
/// A camera's state is re-published at least this often (counters ride along).
const STATE_EVERY: Duration = Duration::from_secs(30);
/// Longest wait for room in the request queue for an answer, an event or a subscription.
pub(super) const PUBLISH_WAIT: Duration = Duration::from_secs(5);
/// Largest snapshot published: under the 256 KiB packet limit of the embedded broker and of
/// hindsight's own client (a bigger packet would cost the connection).
const MAX_SNAPSHOT: usize = 240 * 1024;

/// Home Assistant discovery: what to announce, and how often snapshots go out.
pub(super) struct Ha {
    pub(super) discovery: Discovery,
    /// `None`: snapshots only after clips and Home Assistant's start.
    pub(super) snapshot_every: Option<Duration>,
}

/// See the module docs.
pub(super) struct Session {
    target: Arc<dyn TriggerTarget>,
    topics: Topics,
    client: AsyncClient,
    events: Option<broadcast::Receiver<ClipEvent>>,
    /// Per camera: the significant part of the last published state, and when.
    states: HashMap<String, (Value, Instant)>,
    /// Per camera: the last recording flag, re-published after reconnects.
    recording: HashMap<String, bool>,
    /// Per camera: the last `last_clip` payload (from the index at the first connection).
    last_clips: HashMap<String, Vec<u8>>,
    /// Each alert's last state, by key, republished (retained) on every connection.
    alerts: HashMap<String, Vec<u8>>,
    last_clips_loaded: bool,
    /// The significant part of the last published health, and when.
    health: Option<(Value, Instant)>,
    ha: Option<Ha>,
    /// Cameras whose discovery config went out on this connection.
    announced: BTreeSet<String>,
    last_snapshots: Instant,
    /// A snapshot round is under way (one at a time).
    snapping: Arc<AtomicBool>,
    up: bool,
}

impl Session {
    pub(super) fn new(target: Arc<dyn TriggerTarget>, topics: Topics, client: AsyncClient, ha: Option<Ha>) -> Self {
        let events = Some(target.subscribe_events());
        Session {
            target,
            topics,
            client,
            events,
            states: HashMap::new(),
            recording: HashMap::new(),
            last_clips: HashMap::new(),
            alerts: HashMap::new(),
            last_clips_loaded: false,
            health: None,
            ha,
            announced: BTreeSet::new(),
            last_snapshots: Instant::now(),
            snapping: Arc::new(AtomicBool::new(false)),
            up: false,
        }
    }

    /// Serve until `stop`, then queue `offline` and DISCONNECT and tell the network loop to drain.
    pub(super) async fn run(
        mut self,
        mut link: watch::Receiver<Link>,
        mut incoming: mpsc::Receiver<Incoming>,
        stop: StopToken,
        drain: watch::Sender<bool>,
    ) {
        let mut tick = tokio::time::interval(STATE_CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut generation = 0;
        loop {
            tokio::select! {
                biased;
                _ = stop.stopped() => break,
                changed = link.changed() => {
                    if changed.is_err() {
                        break; // the network loop ended
                    }
                    let l = *link.borrow_and_update();
                    self.up = l.up;
                    if l.up && l.generation != generation {
                        generation = l.generation;
                        self.on_connect(&stop).await;
                    }
                }
                Some(msg) = incoming.recv() => self.on_message(msg, &stop).await,
                ev = next_event(&mut self.events) => self.on_event(ev, &stop).await,
                _ = tick.tick() => {
                    if self.up {
                        self.publish_states(false);
                        self.publish_health(false);
                        self.on_tick_ha(&stop).await;
                    }
                }
            }
        }
        if link.borrow().up {
            let offline = self.client.publish(self.topics.status(), QoS::AtLeastOnce, true, "offline");
            if tokio::time::timeout(Duration::from_secs(1), offline).await.is_err() {
                log::warn!("MQTT: request queue full at stop, offline left to the last will");
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), self.client.disconnect()).await;
        }
        drain.send_replace(true);
    }

    /// After each ConnAck: subscribe, then `online`, then everything retained.
    async fn on_connect(&mut self, stop: &StopToken) {
        let mut filters: Vec<String> = self.topics.trigger_filters().into();
        filters.push(self.topics.power_filter());
        if let Some(ha) = &self.ha {
            filters.push(ha.discovery.ha_status_topic());
            filters.push(ha.discovery.camera_filter());
        }
        for filter in filters {
            let sub = self.client.subscribe(filter.clone(), QoS::AtLeastOnce);
            self.wait(&format!("subscribe {filter}"), sub, stop).await;
        }
        self.publish(self.topics.status(), true, b"online".to_vec(), stop).await;
        for camera in self.target.camera_ids() {
            self.recording.entry(camera).or_insert(false);
        }
        let recording: Vec<(String, bool)> = self.recording.iter().map(|(c, on)| (c.clone(), *on)).collect();
        for (camera, on) in recording {
            self.publish_recording(&camera, on, stop).await;
        }
        if !self.last_clips_loaded {
            self.last_clips_loaded = true;
            let target = self.target.clone();
            let found = tokio::task::spawn_blocking(move || {
                let ids = target.camera_ids();
                ids.into_iter().filter_map(|c| target.last_clip(&c).map(|m| (c, m))).collect::<Vec<_>>()
            });
            for (camera, meta) in found.await.unwrap_or_default() {
                let body = self.clip_body(&meta);
                self.last_clips.entry(camera).or_insert(body);
            }
        }
        let last: Vec<(String, Vec<u8>)> = self.last_clips.iter().map(|(c, b)| (c.clone(), b.clone())).collect();
        for (camera, body) in last {
            self.publish(self.topics.camera(&camera, "last_clip"), true, body, stop).await;
        }
        for (key, json) in self.target.alerts() {
            self.alerts.entry(key).or_insert_with(|| json.to_string().into_bytes());
        }
        let alerts: Vec<(String, Vec<u8>)> = self.alerts.iter().map(|(k, b)| (k.clone(), b.clone())).collect();
        for (key, body) in alerts {
            self.publish(self.topics.alert(&key), true, body, stop).await;
        }
        self.states.clear();
        self.publish_states(true);
        self.health = None;
        self.publish_health(true);
        self.announced.clear();
        self.announce(stop).await;
        self.snapshots(self.target.camera_ids());
    }

    /// Dispatch one publish from the broker.
    async fn on_message(&mut self, msg: Incoming, stop: &StopToken) {
        if let Some(which) = self.topics.parse_trigger(&msg.topic) {
            return self.on_trigger(which, msg, stop).await;
        }
        if let Some(camera) = self.topics.parse_power(&msg.topic) {
            return self.on_power(camera.to_string(), &msg);
        }
        let Some(ha) = &self.ha else {
            log::debug!("MQTT: ignoring a publish on {:?}", msg.topic);
            return;
        };
        if msg.topic == ha.discovery.ha_status_topic() {
            if &msg.payload[..] == b"online" {
                log::info!("MQTT: Home Assistant (re)started: announcing the cameras again");
                self.announced.clear();
                self.announce(stop).await;
                self.snapshots(self.target.camera_ids());
            }
        } else if let Some(camera) = ha.discovery.camera_of(&msg.topic) {
            // A config of ours for a camera no longer configured (read back retained): clear it,
            // which removes its device and entities from Home Assistant.
            if !msg.payload.is_empty() && !self.target.camera_ids().iter().any(|c| c == camera) {
                log::info!("MQTT: camera {camera} is gone from the config: removing it from Home Assistant");
                let topic = msg.topic.clone();
                self.publish(topic, true, Vec::new(), stop).await;
            }
        } else {
            log::debug!("MQTT: ignoring a publish on {:?}", msg.topic);
        }
    }

    /// `ON`/`OFF` on `{base}/{camera}/power/set`: start or stop the camera, aside (stopping
    /// joins threads); its `state` shows the result at the next check.
    fn on_power(&self, camera: String, msg: &Incoming) {
        if msg.retain {
            log::warn!("MQTT: ignoring a retained command on {} (publish it without the retain flag)", msg.topic);
            return;
        }
        let on = match msg.payload.trim_ascii() {
            p if p.eq_ignore_ascii_case(b"ON") => true,
            p if p.eq_ignore_ascii_case(b"OFF") => false,
            p => {
                let shown: String = String::from_utf8_lossy(p).chars().take(32).collect();
                log::warn!("MQTT: {} takes ON or OFF, not {shown:?}", msg.topic);
                return;
            }
        };
        if !self.target.camera_ids().iter().any(|c| *c == camera) {
            log::warn!("MQTT: {} names no camera", msg.topic);
            return;
        }
        let target = self.target.clone();
        tokio::spawn(async move {
            match target.power(camera.clone(), on).await {
                Ok(()) => log::info!("MQTT: camera {camera} switched {}", if on { "on" } else { "off" }),
                Err(e) => log::warn!("MQTT: camera {camera} not switched {}: {e}", if on { "on" } else { "off" }),
            }
        });
    }

    /// Publish the discovery configs (retained): the appliance's once per connection, each
    /// camera's not yet announced, and an empty one for a camera that went (a phone camera
    /// forgotten).
    async fn announce(&mut self, stop: &StopToken) {
        let Some(ha) = &self.ha else { return };
        let d = ha.discovery.clone();
        let cameras: BTreeSet<String> = self.target.camera_ids().into_iter().collect();
        if self.announced.is_empty() {
            self.publish(d.appliance_topic(), true, d.appliance().to_string().into_bytes(), stop).await;
        }
        let gone: Vec<String> = self.announced.difference(&cameras).cloned().collect();
        for camera in gone {
            self.publish(d.camera_topic(&camera), true, Vec::new(), stop).await;
            self.announced.remove(&camera);
        }
        for camera in cameras {
            if !self.announced.contains(&camera) {
                self.publish(d.camera_topic(&camera), true, d.camera(&camera).to_string().into_bytes(), stop).await;
                self.announced.insert(camera);
            }
        }
    }

    /// Every check: cameras that came or went, and snapshots when due.
    async fn on_tick_ha(&mut self, stop: &StopToken) {
        let Some(ha) = &self.ha else { return };
        let due = ha.snapshot_every.is_some_and(|every| self.last_snapshots.elapsed() >= every);
        let cameras: BTreeSet<String> = self.target.camera_ids().into_iter().collect();
        if cameras != self.announced {
            self.announce(stop).await;
        }
        if due {
            self.snapshots(cameras.into_iter().collect());
        }
    }

    /// Take `cameras`' snapshots aside and publish them (QoS 0, not retained); skipped while a
    /// round is under way. A stopped camera has none (logged at debug level).
    fn snapshots(&mut self, cameras: Vec<String>) {
        if self.ha.is_none() || self.snapping.swap(true, Ordering::AcqRel) {
            return;
        }
        self.last_snapshots = Instant::now();
        let (target, client, topics, busy) =
            (self.target.clone(), self.client.clone(), self.topics.clone(), self.snapping.clone());
        tokio::spawn(async move {
            for camera in cameras {
                match target.clone().snapshot(camera.clone()).await {
                    Ok(jpeg) if jpeg.len() <= MAX_SNAPSHOT => {
                        let topic = topics.camera(&camera, "snapshot");
                        if let Err(e) = client.try_publish(topic, QoS::AtMostOnce, false, jpeg.to_vec()) {
                            log::debug!("MQTT: snapshot of {camera} not queued: {e}");
                        }
                    }
                    Ok(jpeg) => log::warn!(
                        "MQTT: snapshot of {camera} is {} KiB, over the {} KiB an MQTT message may carry: not sent",
                        jpeg.len() / 1024,
                        MAX_SNAPSHOT / 1024
                    ),
                    Err(e) => log::debug!("MQTT: no snapshot of {camera}: {e}"),
                }
            }
            busy.store(false, Ordering::Release);
        });
    }

    /// Publish `{base}/health` (retained) if it changed, is due, or `force`; never waits.
    fn publish_health(&mut self, force: bool) {
        let Some(health) = self.target.health() else { return };
        let sig = topics::significant(&health);
        let due = force || self.health.as_ref().is_none_or(|(last, at)| *last != sig || at.elapsed() >= STATE_EVERY);
        if !due {
            return;
        }
        match self.client.try_publish(self.topics.health(), QoS::AtLeastOnce, true, health.to_string()) {
            Ok(()) => self.health = Some((sig, Instant::now())),
            Err(e) => log::debug!("MQTT: health not queued ({e}); retrying later"),
        }
    }

    fn clip_body(&self, meta: &crate::clip_meta::ClipMeta) -> Vec<u8> {
        let url = self.target.clip_url(&meta.id);
        let web_url = match &self.ha {
            Some(ha) => ha.discovery.web_url(&url),
            None => url.clone(),
        };
        topics::clip_json(meta, &url, &web_url)
    }

    /// Answer one trigger message (see [`topics::answer_trigger`]).
    async fn on_trigger(&mut self, which: topics::TriggerTopic, msg: Incoming, stop: &StopToken) {
        if msg.retain {
            log::warn!(
                "MQTT: ignoring a retained trigger on {} (replayed from the broker; publish triggers without the retain flag)",
                msg.topic
            );
            return;
        }
        let (target, topics) = (self.target.clone(), self.topics.clone());
        let job = tokio::task::spawn_blocking(move || topics::answer_trigger(&*target, &topics, &which, &msg.payload));
        let results = tokio::select! {
            r = job => match r {
                Ok(results) => results,
                Err(e) => {
                    log::error!("MQTT: trigger on {} failed inside the recorder: {e}", msg.topic);
                    return;
                }
            },
            _ = stop.stopped() => return,
        };
        for (topic, body) in results {
            self.publish(topic, false, body, stop).await;
        }
    }

    async fn on_event(&mut self, ev: Result<ClipEvent, broadcast::error::RecvError>, stop: &StopToken) {
        match ev {
            Ok(ClipEvent::Recording { camera, on }) => {
                self.recording.insert(camera.clone(), on);
                self.publish_recording(&camera, on, stop).await;
            }
            Ok(ClipEvent::Saved(meta)) => {
                let body = self.clip_body(&meta);
                let topic = self.topics.camera(&meta.camera, "clip");
                self.publish(topic, false, body.clone(), stop).await;
                let topic = self.topics.camera(&meta.camera, "last_clip");
                self.publish(topic, true, body.clone(), stop).await;
                self.last_clips.insert(meta.camera.clone(), body);
                self.snapshots(vec![meta.camera.clone()]);
            }
            Ok(ev @ ClipEvent::Exported { .. }) => {
                let ClipEvent::Exported { camera, .. } = &ev else { return };
                let topic = self.topics.camera(camera, "export");
                self.publish(topic, false, crate::clip_meta::export_json(&ev).to_string().into_bytes(), stop).await;
            }
            Ok(ClipEvent::Alert { key, json, changed, .. }) => {
                let body = json.to_string().into_bytes();
                self.alerts.insert(key.clone(), body.clone());
                self.publish(self.topics.alert(&key), true, body.clone(), stop).await;
                if changed {
                    self.publish(self.topics.alert(""), false, body, stop).await;
                    // The health body lists the raised alerts.
                    self.publish_health(true);
                }
            }
            Ok(ClipEvent::Failed { camera, clip_id, error }) => {
                log::warn!("clip {clip_id} on {camera} failed: {error}");
                let topic = self.topics.camera(&camera, "clip");
                self.publish(topic, false, topics::clip_failed_json(&camera, &clip_id, &error), stop).await;
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                log::warn!("MQTT: fell behind the clip events, skipped {n}");
            }
            Err(broadcast::error::RecvError::Closed) => {
                log::info!("MQTT: clip events ended");
                self.events = None;
            }
        }
    }

    async fn publish_recording(&self, camera: &str, on: bool, stop: &StopToken) {
        let body = if on { b"ON".to_vec() } else { b"OFF".to_vec() };
        self.publish(self.topics.camera(camera, "recording"), true, body, stop).await;
    }

    /// Publish each camera's `state` (retained) if it changed, is due, or `force`. Never waits:
    /// when the request queue is full the update is dropped and retried at the next check.
    fn publish_states(&mut self, force: bool) {
        for camera in self.target.camera_ids() {
            let Some(state) = self.target.camera_state(&camera) else { continue };
            let sig = topics::significant(&state);
            let due =
                force || self.states.get(&camera).is_none_or(|(last, at)| *last != sig || at.elapsed() >= STATE_EVERY);
            if !due {
                continue;
            }
            let topic = self.topics.camera(&camera, "state");
            match self.client.try_publish(topic, QoS::AtLeastOnce, true, state.to_string()) {
                Ok(()) => {
                    self.states.insert(camera, (sig, Instant::now()));
                }
                Err(e) => log::debug!("MQTT: state of {camera} not queued ({e}); retrying later"),
            }
        }
    }

    /// Queue a publish (QoS 1), waiting for room at most [`PUBLISH_WAIT`] or until stop.
    async fn publish(&self, topic: String, retain: bool, payload: Vec<u8>, stop: &StopToken) -> bool {
        let what = format!("publish on {topic}");
        let fut = self.client.publish(topic, QoS::AtLeastOnce, retain, payload);
        self.wait(&what, fut, stop).await
    }

    async fn wait(&self, what: &str, fut: impl Future<Output = Result<(), ClientError>>, stop: &StopToken) -> bool {
        tokio::select! {
            r = tokio::time::timeout(PUBLISH_WAIT, fut) => match r {
                Ok(Ok(())) => true,
                Ok(Err(e)) => {
                    log::warn!("MQTT: {what} failed: {e}");
                    false
                }
                Err(_) => {
                    log::warn!("MQTT: request queue full for {PUBLISH_WAIT:?}, dropped {what}");
                    false
                }
            },
            _ = stop.stopped() => false,
        }
    }
}

/// The next clip event; never resolves once the channel has closed.
async fn next_event(rx: &mut Option<broadcast::Receiver<ClipEvent>>) -> Result<ClipEvent, broadcast::error::RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
