//! Triggers as they arrive over MQTT or HTTP: parsing and checking the payload, and the answers
//! (accepted with ids, or rejected with why) that go back on `trigger/result` or as HTTP status.
//!
//! Pure: no clock, no I/O. Never panics on input.

use serde::{Deserialize, Serialize};

/// A trigger's optional overrides (payload: empty, `ON`, or JSON).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerRequest {
    /// Seconds before the trigger (clamped to what config and buffer allow).
    #[serde(default)]
    pub pre_s: Option<f64>,
    /// Seconds after the trigger (clamped to `max_clip_s`).
    #[serde(default)]
    pub post_s: Option<f64>,
    /// Free text stored with the clip (≤ 64 chars).
    #[serde(default)]
    pub label: Option<String>,
    /// Caller's trigger id, echoed on `trigger/result` (≤ 64 chars of `[A-Za-z0-9_.:-]`).
    #[serde(default)]
    pub id: Option<String>,
}

/// Why a trigger was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectCode {
    /// The payload is not empty, `ON`, or a valid JSON object.
    BadPayload,
    /// pre/post/label/id out of range.
    OutOfRange,
    /// No such camera.
    UnknownCamera,
    /// The camera is stopped.
    CameraStopped,
    /// Storage cannot take a new clip (full and nothing can be freed, or mount missing).
    StorageFull,
    /// The last clip failed writing (a storage I/O error) and storage still fails a test write.
    StorageError,
    /// A manual recording is already running / not running.
    Conflict,
}

/// A refused trigger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct TriggerRejected {
    /// Machine-readable reason.
    pub code: RejectCode,
    /// What is wrong, for humans.
    pub message: String,
    /// The caller's trigger id, if it could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger_id: Option<String>,
}

impl TriggerRejected {
    /// A rejection with `code` and `message`.
    pub fn new(code: RejectCode, message: impl Into<String>) -> Self {
        TriggerRejected { code, message: message.into(), trigger_id: None }
    }
}

/// An accepted trigger.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TriggerAccepted {
    /// The trigger's id (the caller's, or generated).
    pub trigger_id: String,
    /// The clip it opened or extended.
    pub clip_id: String,
    /// Camera id.
    pub camera: String,
    /// Whether it extended a clip already being written.
    pub extended: bool,
    /// Seconds before the trigger the clip will hold (less than asked right after start-up).
    pub pre_s_actual: f64,
    /// Seconds after the (last) trigger.
    pub post_s: f64,
}

const MAX_S: f64 = 3600.0;

/// Parse an MQTT/HTTP payload: empty or `ON` (any case) mean defaults; otherwise a JSON object.
pub fn parse_payload(payload: &[u8]) -> Result<TriggerRequest, TriggerRejected> {
    let text = std::str::from_utf8(payload)
        .map_err(|_| TriggerRejected::new(RejectCode::BadPayload, "payload is not UTF-8 text"))?
        .trim();
    if text.is_empty() || text.eq_ignore_ascii_case("on") {
        return Ok(TriggerRequest::default());
    }
    // Read the caller's id first (best effort) so even a rejection can echo it.
    let echo_id = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(String::from))
        .filter(|id| valid_trigger_id(id));
    if !text.starts_with('{') {
        return Err(TriggerRejected {
            code: RejectCode::BadPayload,
            message: "payload must be empty, ON, or a JSON object like {\"pre_s\":10,\"post_s\":20,\"label\":\"door\"}"
                .into(),
            trigger_id: None,
        });
    }
    let req: TriggerRequest = serde_json::from_str(text).map_err(|e| {
        let what = if text.starts_with('{') {
            format!("bad trigger JSON: {e}")
        } else {
            "payload must be empty, ON, or a JSON object like {\"pre_s\":10,\"post_s\":20,\"label\":\"door\"}"
                .to_string()
        };
        TriggerRejected { code: RejectCode::BadPayload, message: what, trigger_id: echo_id.clone() }
    })?;
    check(&req).map_err(|mut r| {
        r.trigger_id = echo_id;
        r
    })?;
    Ok(req)
}

fn valid_trigger_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
}

/// Range checks on a request (also used for HTTP bodies).
pub fn check(req: &TriggerRequest) -> Result<(), TriggerRejected> {
    let range = |name: &str, v: Option<f64>| match v {
        Some(x) if !x.is_finite() || !(0.0..=MAX_S).contains(&x) => {
            Err(TriggerRejected::new(RejectCode::OutOfRange, format!("{name} must be 0..={MAX_S} seconds, got {x}")))
        }
        _ => Ok(()),
    };
    range("pre_s", req.pre_s)?;
    range("post_s", req.post_s)?;
    if let Some(l) = &req.label {
        if l.chars().count() > 64 || l.chars().any(char::is_control) {
            return Err(TriggerRejected::new(RejectCode::OutOfRange, "label must be at most 64 printable characters"));
        }
    }
    if let Some(id) = &req.id {
        if !valid_trigger_id(id) {
            return Err(TriggerRejected::new(
                RejectCode::OutOfRange,
                "id must be 1..=64 characters of A-Z a-z 0-9 _ . : -",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_empty_on_and_json() {
        assert_eq!(parse_payload(b"").unwrap(), TriggerRequest::default());
        assert_eq!(parse_payload(b" ON ").unwrap(), TriggerRequest::default());
        let r = parse_payload(br#"{"pre_s":5,"post_s":2.5,"label":"door","id":"ha-1"}"#).unwrap();
        assert_eq!(
            (r.pre_s, r.post_s, r.label.as_deref(), r.id.as_deref()),
            (Some(5.0), Some(2.5), Some("door"), Some("ha-1"))
        );
    }

    #[test]
    fn rejects_bad_payloads_with_reasons() {
        let cases: &[(&[u8], RejectCode)] = &[
            (b"not json", RejectCode::BadPayload),
            (b"{\"pre_s\":", RejectCode::BadPayload),
            (br#"{"pre_s":"ten"}"#, RejectCode::BadPayload),
            (br#"{"pre_s":-1}"#, RejectCode::OutOfRange),
            (br#"{"post_s":1e9}"#, RejectCode::OutOfRange),
            (br#"{"colour":"red"}"#, RejectCode::BadPayload),
            (b"[1,2]", RejectCode::BadPayload),
            (b"\xff\xfe", RejectCode::BadPayload),
            (br#"{"id":"has space"}"#, RejectCode::OutOfRange),
        ];
        for (p, code) in cases {
            let e = parse_payload(p).unwrap_err();
            assert_eq!(&e.code, code, "{:?}", String::from_utf8_lossy(p));
            assert!(!e.message.is_empty());
        }
        let e = parse_payload(br#"{"pre_s":-1,"id":"x1"}"#).unwrap_err();
        assert_eq!(e.trigger_id.as_deref(), Some("x1"));
    }
}

/// What the MQTT and HTTP front-ends need from the daemon: implemented by the daemon's clip
/// recorder set, faked in unit tests.
pub trait TriggerTarget: Send + Sync + 'static {
    /// Configured camera ids.
    fn camera_ids(&self) -> Vec<String>;
    /// Trigger a clip on `camera` (T = now).
    fn trigger(&self, camera: &str, req: TriggerRequest) -> Result<TriggerAccepted, TriggerRejected>;
    /// `hindsight/{camera}/state` payload: state and counters as JSON.
    fn camera_state(&self, camera: &str) -> Option<serde_json::Value>;
    /// Clip and recording events.
    fn subscribe_events(&self) -> tokio::sync::broadcast::Receiver<crate::clip_meta::ClipEvent>;
    /// URL path of a clip's video (`/api/clips/{id}/video.mp4`).
    fn clip_url(&self, clip_id: &str) -> String {
        format!("/api/clips/{clip_id}/video.mp4")
    }
}
