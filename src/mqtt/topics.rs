//! The MQTT contract as data: topic names under `base_topic`, which camera a trigger topic
//! addresses, the JSON payloads we publish, and [`answer_trigger`], which turns one incoming
//! trigger message into the result messages to publish.
//!
//! Pure apart from calling the [`TriggerTarget`]: no network, no clock, no async. Must never
//! panic on what arrives from the network (topic or payload).

use crate::clip_meta::ClipMeta;
use crate::config::valid_camera_id;
use crate::trigger::{self, RejectCode, TriggerAccepted, TriggerRejected, TriggerTarget};
use serde_json::{json, Value};

/// Topic names under one base topic.
#[derive(Debug, Clone)]
pub struct Topics {
    base: String,
}

/// Which cameras a trigger message addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TriggerTopic {
    /// `{base}/trigger`: every camera.
    All,
    /// `{base}/{segment}/trigger`: the segment as it arrived (not yet checked).
    Camera(String),
}

impl Topics {
    /// Names under `base` (validated by the config: no wildcards, no leading/trailing `/`).
    pub fn new(base: &str) -> Self {
        Topics { base: base.to_string() }
    }

    /// `{base}/status`: `online` / `offline`, retained; `offline` is the last will.
    pub fn status(&self) -> String {
        format!("{}/status", self.base)
    }

    /// `{base}/{camera}/{leaf}`, e.g. `state`, `recording`, `clip`, `trigger/result`.
    pub fn camera(&self, camera: &str, leaf: &str) -> String {
        format!("{}/{camera}/{leaf}", self.base)
    }

    /// The filters to subscribe: `{base}/+/trigger` and `{base}/trigger`.
    pub fn trigger_filters(&self) -> [String; 2] {
        [format!("{}/+/trigger", self.base), format!("{}/trigger", self.base)]
    }

    /// The filter of the cameras' on/off commands: `{base}/+/power/set`.
    pub fn power_filter(&self) -> String {
        format!("{}/+/power/set", self.base)
    }

    /// The camera segment of a `{base}/{camera}/power/set` topic (not yet checked).
    pub fn parse_power<'a>(&self, topic: &'a str) -> Option<&'a str> {
        let seg = topic.strip_prefix(&self.base)?.strip_prefix('/')?.strip_suffix("/power/set")?;
        (!seg.is_empty() && !seg.contains('/')).then_some(seg)
    }

    /// `{base}/alert/{key}`: one alert's state, retained (`key`: `temperature`,
    /// `camera_failed/cam0`, …); `{base}/alert` (empty `key`): each change as it happens.
    pub fn alert(&self, key: &str) -> String {
        if key.is_empty() {
            format!("{}/alert", self.base)
        } else {
            format!("{}/alert/{key}", self.base)
        }
    }

    /// `{base}/health`: the `/api/health` body, retained.
    pub fn health(&self) -> String {
        format!("{}/health", self.base)
    }

    /// Which cameras `topic` addresses, or `None` if it is not a trigger topic of ours.
    pub fn parse_trigger(&self, topic: &str) -> Option<TriggerTopic> {
        let rest = topic.strip_prefix(&self.base)?.strip_prefix('/')?;
        if rest == "trigger" {
            return Some(TriggerTopic::All);
        }
        let segment = rest.strip_suffix("/trigger")?;
        if segment.is_empty() || segment.contains('/') {
            return None;
        }
        Some(TriggerTopic::Camera(segment.to_string()))
    }
}

/// `trigger/result` payload of an accepted trigger: `{"accepted":true, ...TriggerAccepted}`.
pub fn accepted_json(a: &TriggerAccepted) -> Vec<u8> {
    let mut v = serde_json::to_value(a).unwrap_or_else(|_| json!({}));
    if let Value::Object(m) = &mut v {
        m.insert("accepted".into(), Value::Bool(true));
    }
    v.to_string().into_bytes()
}

/// `trigger/result` payload of a refused trigger:
/// `{"accepted":false,"camera":..,"code":..,"error":..,"trigger_id":..}` (id only if known).
pub fn rejected_json(camera: &str, r: &TriggerRejected) -> Vec<u8> {
    let mut v = json!({
        "accepted": false,
        "camera": camera,
        "code": r.code,
        "error": r.message,
    });
    if let (Some(id), Value::Object(m)) = (&r.trigger_id, &mut v) {
        m.insert("trigger_id".into(), Value::String(id.clone()));
    }
    v.to_string().into_bytes()
}

/// `clip` (and retained `last_clip`) payload of a saved clip: the `/api/clips/{id}` metadata
/// plus `"url"` (the video's path), `"web_url"` (absolute with `http.public_url`, else the
/// path) and `"event_type":"clip_saved"` (Home Assistant's event entity).
pub fn clip_json(meta: &ClipMeta, url: &str, web_url: &str) -> Vec<u8> {
    let mut v = serde_json::to_value(meta).unwrap_or_else(|_| json!({}));
    if let Value::Object(m) = &mut v {
        m.insert("url".into(), Value::String(url.to_string()));
        m.insert("web_url".into(), Value::String(web_url.to_string()));
        m.insert("event_type".into(), Value::String("clip_saved".into()));
    }
    v.to_string().into_bytes()
}

/// `clip` payload of a clip that could not be saved:
/// `{"camera","clip_id","error","event_type":"clip_failed"}`. Consumers tell it from a saved
/// clip by the `error` key (a saved clip never has one).
pub fn clip_failed_json(camera: &str, clip_id: &str, error: &str) -> Vec<u8> {
    json!({ "camera": camera, "clip_id": clip_id, "error": error, "event_type": "clip_failed" })
        .to_string()
        .into_bytes()
}

/// The part of a `state` payload whose change warrants an immediate publish: everything but
/// numbers (counters, buffered seconds, sizes change all the time and ride along with the
/// periodic publish instead).
pub fn significant(v: &Value) -> Value {
    match v {
        Value::Number(_) => Value::Null,
        Value::Array(a) => Value::Array(a.iter().map(significant).collect()),
        Value::Object(m) => {
            Value::Object(m.iter().filter(|(_, v)| !v.is_number()).map(|(k, v)| (k.clone(), significant(v))).collect())
        }
        other => other.clone(),
    }
}

/// Answer one trigger message: parse the payload, call `target.trigger` for each addressed
/// camera, and return `(topic, payload)` results to publish (QoS 1, not retained). Calls into
/// `target`, which may block briefly: run it off the async reactor.
///
/// A topic segment that is not a configured camera is refused with `unknown_camera` on that
/// segment's result topic if it is a valid camera id, and answered nowhere otherwise (logged).
pub fn answer_trigger(
    target: &dyn TriggerTarget,
    topics: &Topics,
    which: &TriggerTopic,
    payload: &[u8],
) -> Vec<(String, Vec<u8>)> {
    let parsed = trigger::parse_payload(payload);
    let cameras = target.camera_ids();
    let addressed: Vec<String> = match which {
        TriggerTopic::All => cameras.clone(),
        TriggerTopic::Camera(seg) if cameras.iter().any(|c| c == seg) => vec![seg.clone()],
        TriggerTopic::Camera(seg) => {
            let id = match &parsed {
                Ok(req) => req.id.clone(),
                Err(r) => r.trigger_id.clone(),
            };
            if !valid_camera_id(seg) {
                log::warn!(
                    "MQTT trigger for {:?}: not a camera id, not answered",
                    seg.chars().take(64).collect::<String>()
                );
                return Vec::new();
            }
            log::warn!("MQTT trigger for unknown camera {seg:?}");
            let r = TriggerRejected {
                code: RejectCode::UnknownCamera,
                message: format!("no camera {seg:?} (cameras: {})", cameras.join(", ")),
                trigger_id: id,
            };
            return vec![(topics.camera(seg, "trigger/result"), rejected_json(seg, &r))];
        }
    };
    // One message is one trigger for the rate limit, whichever cameras it addresses.
    let source = match which {
        TriggerTopic::All => topics.trigger_filters()[1].clone(),
        TriggerTopic::Camera(seg) => topics.camera(seg, "trigger"),
    };
    let parsed = match (parsed, target.admit(&format!("mqtt:{source}"))) {
        (Ok(req), Err(wait)) => Err(TriggerRejected {
            code: RejectCode::RateLimited,
            message: format!(
                "too many triggers on {source} (triggers.rate_per_min): try again in {:.1} s",
                wait.as_secs_f64()
            ),
            trigger_id: req.id,
        }),
        (parsed, _) => parsed,
    };
    addressed
        .into_iter()
        .map(|cam| {
            let body = match &parsed {
                Err(r) => {
                    // A flood is answered, not logged line by line.
                    if r.code == RejectCode::RateLimited {
                        log::debug!("MQTT trigger for {cam} refused: {r}");
                    } else {
                        log::warn!("MQTT trigger for {cam} refused: {r}");
                    }
                    rejected_json(&cam, r)
                }
                Ok(req) => match target.trigger(&cam, req.clone()) {
                    Ok(a) => {
                        log::info!(
                            "MQTT trigger {} on {cam}: clip {}{}",
                            a.trigger_id,
                            a.clip_id,
                            if a.extended { " (extended)" } else { "" }
                        );
                        accepted_json(&a)
                    }
                    Err(mut r) => {
                        if r.trigger_id.is_none() {
                            r.trigger_id = req.id.clone();
                        }
                        log::warn!("MQTT trigger on {cam} refused: {r}");
                        rejected_json(&cam, &r)
                    }
                },
            };
            (topics.camera(&cam, "trigger/result"), body)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trigger::TriggerRequest;
    use std::sync::Mutex;

    struct Fake {
        calls: Mutex<Vec<(String, TriggerRequest)>>,
    }

    impl TriggerTarget for Fake {
        fn camera_ids(&self) -> Vec<String> {
            vec!["cam0".into(), "cam1".into()]
        }
        fn trigger(&self, camera: &str, req: TriggerRequest) -> Result<TriggerAccepted, TriggerRejected> {
            self.calls.lock().unwrap().push((camera.into(), req.clone()));
            if camera == "cam1" {
                return Err(TriggerRejected::new(RejectCode::CameraStopped, "cam1 is stopped"));
            }
            Ok(TriggerAccepted {
                trigger_id: req.id.unwrap_or_else(|| "gen-1".into()),
                clip_id: "20260101T000000000Z-000001".into(),
                camera: camera.into(),
                extended: false,
                pre_s_actual: req.pre_s.unwrap_or(30.0),
                post_s: req.post_s.unwrap_or(30.0),
            })
        }
        fn camera_state(&self, _: &str) -> Option<Value> {
            None
        }
        fn subscribe_events(&self) -> tokio::sync::broadcast::Receiver<crate::clip_meta::ClipEvent> {
            tokio::sync::broadcast::channel(1).1
        }
    }

    fn fake() -> Fake {
        Fake { calls: Mutex::new(Vec::new()) }
    }

    fn parse(p: &[u8]) -> Value {
        serde_json::from_slice(p).unwrap()
    }

    #[test]
    fn trigger_topics_parse() {
        let t = Topics::new("home/hs");
        assert_eq!(t.parse_trigger("home/hs/trigger"), Some(TriggerTopic::All));
        assert_eq!(t.parse_trigger("home/hs/cam0/trigger"), Some(TriggerTopic::Camera("cam0".into())));
        for bad in [
            "home/hs/cam0/trigger/result",
            "home/hs//trigger",
            "home/hsx/trigger",
            "home/hs",
            "",
            "home/hs/a/b/trigger",
        ] {
            assert_eq!(t.parse_trigger(bad), None, "{bad}");
        }
        assert_eq!(t.trigger_filters(), ["home/hs/+/trigger".to_string(), "home/hs/trigger".to_string()]);
        assert_eq!(t.power_filter(), "home/hs/+/power/set");
        assert_eq!(t.parse_power("home/hs/cam0/power/set"), Some("cam0"));
        for bad in ["home/hs/power/set", "home/hs//power/set", "home/hs/a/b/power/set", "home/hs/cam0/power"] {
            assert_eq!(t.parse_power(bad), None, "{bad}");
        }
    }

    #[test]
    fn answers_accept_reject_and_unknown() {
        let (f, t) = (fake(), Topics::new("hindsight"));
        let out = answer_trigger(&f, &t, &TriggerTopic::Camera("cam0".into()), br#"{"pre_s":3,"id":"t1"}"#);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, "hindsight/cam0/trigger/result");
        let v = parse(&out[0].1);
        assert_eq!((v["accepted"].as_bool(), v["trigger_id"].as_str()), (Some(true), Some("t1")));
        assert_eq!(f.calls.lock().unwrap()[0].1.pre_s, Some(3.0));

        let out = answer_trigger(&f, &t, &TriggerTopic::All, b"ON");
        let v: Vec<Value> = out.iter().map(|(_, p)| parse(p)).collect();
        assert_eq!(out.len(), 2);
        assert_eq!(v[0]["accepted"], true);
        assert_eq!((v[1]["accepted"].as_bool(), v[1]["code"].as_str()), (Some(false), Some("camera_stopped")));

        let out = answer_trigger(&f, &t, &TriggerTopic::Camera("nocam".into()), br#"{"id":"x9"}"#);
        assert_eq!(out[0].0, "hindsight/nocam/trigger/result");
        let v = parse(&out[0].1);
        assert_eq!((v["code"].as_str(), v["trigger_id"].as_str()), (Some("unknown_camera"), Some("x9")));

        assert!(answer_trigger(&f, &t, &TriggerTopic::Camera("Bad Cam!".into()), b"").is_empty());
    }

    #[test]
    fn malformed_payloads_are_refused_without_calling_the_target() {
        let (f, t) = (fake(), Topics::new("hindsight"));
        for (p, code) in [
            (&b"not json"[..], "bad_payload"),
            (br#"{"pre_s":"x"}"#, "bad_payload"),
            (br#"{"pre_s":-1}"#, "out_of_range"),
            (b"\xff\x00", "bad_payload"),
        ] {
            let out = answer_trigger(&f, &t, &TriggerTopic::Camera("cam0".into()), p);
            let v = parse(&out[0].1);
            assert_eq!((v["accepted"].as_bool(), v["code"].as_str()), (Some(false), Some(code)));
            assert!(!v["error"].as_str().unwrap_or_default().is_empty());
        }
        assert!(f.calls.lock().unwrap().is_empty());
    }

    #[test]
    fn significant_ignores_counters() {
        let a = json!({"state":"running","frames_captured":10,"nested":{"n":1,"s":"x"}});
        let b = json!({"state":"running","frames_captured":99,"nested":{"n":2,"s":"x"}});
        let c = json!({"state":"failed","frames_captured":99,"nested":{"n":2,"s":"x"}});
        assert_eq!(significant(&a), significant(&b));
        assert_ne!(significant(&b), significant(&c));
    }
}
