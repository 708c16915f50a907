//! The session half of the MQTT stage: everything we say on the broker and every trigger we
//! answer, over one rumqttc client handle.
//!
//! Owns: re-subscribing and re-publishing retained topics after each (re)connection (`status`
//! `online` only after the subscriptions, so `online` means triggers are heard), the periodic
//! `state` check, clip and recording events, trigger answers, and `offline` + DISCONNECT on stop.
//!
//! Trigger messages are answered one at a time in arrival order; `TriggerTarget::trigger` (it
//! takes locks) runs on tokio's blocking pool via `spawn_blocking`. `camera_state` and
//! `camera_ids` are called on the reactor and must stay cheap (atomics, short locks).
//!
//! Must never: block on a full request queue without bound (answers and events wait at most
//! [`PUBLISH_WAIT`] or until stop; `state` updates are dropped when the queue is full and retried
//! at the next check), publish `state` while disconnected (it would only pile up stale copies),
//! or act on a retained trigger (a stale one replayed at subscription time).

use super::topics::{self, Topics};
use super::{Incoming, Link};
use crate::clip_meta::ClipEvent;
use crate::shutdown::StopToken;
use crate::trigger::TriggerTarget;
use rumqttc::{AsyncClient, ClientError, QoS};
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, watch};

/// How often camera states are compared with what was last published.
const STATE_CHECK: Duration = Duration::from_secs(2);
/// A camera's state is re-published at least this often (counters ride along).
const STATE_EVERY: Duration = Duration::from_secs(30);
/// Longest wait for room in the request queue for an answer, an event or a subscription.
pub(super) const PUBLISH_WAIT: Duration = Duration::from_secs(5);

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
    up: bool,
}

impl Session {
    pub(super) fn new(target: Arc<dyn TriggerTarget>, topics: Topics, client: AsyncClient) -> Self {
        let events = Some(target.subscribe_events());
        Session { target, topics, client, events, states: HashMap::new(), recording: HashMap::new(), up: false }
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
                Some(msg) = incoming.recv() => self.on_trigger(msg, &stop).await,
                ev = next_event(&mut self.events) => self.on_event(ev, &stop).await,
                _ = tick.tick() => {
                    if self.up {
                        self.publish_states(false);
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
        for filter in self.topics.trigger_filters() {
            let sub = self.client.subscribe(filter.clone(), QoS::AtLeastOnce);
            self.wait(&format!("subscribe {filter}"), sub, stop).await;
        }
        self.publish(self.topics.status(), true, b"online".to_vec(), stop).await;
        let recording: Vec<(String, bool)> = self.recording.iter().map(|(c, on)| (c.clone(), *on)).collect();
        for (camera, on) in recording {
            self.publish_recording(&camera, on, stop).await;
        }
        self.states.clear();
        self.publish_states(true);
    }

    /// Answer one trigger message (see [`topics::answer_trigger`]).
    async fn on_trigger(&mut self, msg: Incoming, stop: &StopToken) {
        let Some(which) = self.topics.parse_trigger(&msg.topic) else {
            log::debug!("MQTT: ignoring a publish on {:?}", msg.topic);
            return;
        };
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
                let url = self.target.clip_url(&meta.id);
                let topic = self.topics.camera(&meta.camera, "clip");
                self.publish(topic, false, topics::clip_json(&meta, &url), stop).await;
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
