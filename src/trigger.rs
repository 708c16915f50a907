//! Triggers as they arrive over MQTT or HTTP: parsing and checking the payload, the answers
//! (accepted with ids, or rejected with why) that go back on `trigger/result` or as HTTP status,
//! and the per-source rate limit ([`RateLimiter`], a token bucket per HTTP client address or
//! MQTT topic).
//!
//! Pure: no clock (the time is passed in), no I/O. Never panics on input.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

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
    /// Too many triggers from this source (`triggers.rate_per_min`, `triggers.burst`).
    RateLimited,
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

/// At most this many sources are remembered; past it, idle ones (bucket full again) go first,
/// then the longest unheard.
pub const MAX_SOURCES: usize = 1024;

/// A token bucket per trigger source: `burst` triggers at once, refilled at `rate_per_min`.
/// Memory is bounded by [`MAX_SOURCES`] buckets.
#[derive(Debug)]
pub struct RateLimiter {
    burst: f64,
    per_s: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Duration,
}

impl RateLimiter {
    /// `burst` triggers at once per source, then `rate_per_min` a minute; `rate_per_min` 0 = no
    /// limit.
    pub fn new(rate_per_min: u32, burst: u32) -> Self {
        RateLimiter {
            burst: f64::from(burst.max(1)),
            per_s: f64::from(rate_per_min) / 60.0,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take one trigger for `source` at `now` (monotonic). `Err(wait)`: refused; a token is
    /// there again after `wait`.
    pub fn admit(&self, source: &str, now: Duration) -> Result<(), Duration> {
        if self.per_s <= 0.0 {
            return Ok(());
        }
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if !map.contains_key(source) && map.len() >= MAX_SOURCES {
            self.evict(&mut map, now);
        }
        let b = map.entry(source.to_string()).or_insert(Bucket { tokens: self.burst, at: now });
        b.tokens = self.refilled(b, now);
        b.at = b.at.max(now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / self.per_s))
        }
    }

    /// Sources remembered now.
    pub fn sources(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn refilled(&self, b: &Bucket, now: Duration) -> f64 {
        (b.tokens + now.saturating_sub(b.at).as_secs_f64() * self.per_s).min(self.burst)
    }

    /// Make room for one more source: drop every bucket that is full again (forgetting it
    /// changes nothing), or else the fullest one (forgetting it gives away the fewest
    /// triggers: a flooding source, its bucket empty, is never the one forgotten).
    fn evict(&self, map: &mut HashMap<String, Bucket>, now: Duration) {
        map.retain(|_, b| self.refilled(b, now) < self.burst);
        if map.len() >= MAX_SOURCES {
            let fullest = map.iter().max_by(|a, b| self.refilled(a.1, now).total_cmp(&self.refilled(b.1, now)));
            if let Some(k) = fullest.map(|(k, _)| k.clone()) {
                map.remove(&k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_gets_its_burst_then_the_sustained_rate_and_others_are_not_affected() {
        let s = Duration::from_secs_f64;
        let l = RateLimiter::new(60, 10);
        for _ in 0..10 {
            assert_eq!(l.admit("http:10.0.0.1", s(100.0)), Ok(()));
        }
        assert_eq!(l.admit("http:10.0.0.1", s(100.0)), Err(s(1.0)), "past the burst: wait for one token");
        assert_eq!(l.admit("http:10.0.0.1", s(100.5)), Err(s(0.5)));
        assert_eq!(l.admit("mqtt:cam0", s(100.5)), Ok(()), "another source has its own bucket");
        assert_eq!(l.admit("http:10.0.0.1", s(101.0)), Ok(()), "one a second sustained");
        assert!(l.admit("http:10.0.0.1", s(101.0)).is_err());
        // After 10 s unheard the burst is back, never more.
        for _ in 0..10 {
            assert_eq!(l.admit("http:10.0.0.1", s(200.0)), Ok(()));
        }
        assert!(l.admit("http:10.0.0.1", s(200.0)).is_err());
        // A clock that steps back gives nothing.
        assert!(l.admit("http:10.0.0.1", s(150.0)).is_err());
        // 0 = no limit.
        let free = RateLimiter::new(0, 1);
        assert!((0..1000).all(|_| free.admit("x", s(1.0)).is_ok()));
        assert_eq!(free.sources(), 0);
    }

    #[test]
    fn the_bucket_map_is_bounded_and_keeps_limiting_the_busy_source() {
        let s = Duration::from_secs_f64;
        let l = RateLimiter::new(60, 2);
        // A busy source spends its burst.
        assert!(l.admit("busy", s(10.0)).is_ok() && l.admit("busy", s(10.0)).is_ok());
        assert!(l.admit("busy", s(10.0)).is_err());
        // 5000 other sources, each heard once, over time: memory stays bounded.
        for i in 0..5000 {
            let _ = l.admit(&format!("http:10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255), s(10.0 + i as f64 * 1e-4));
            assert!(l.sources() <= MAX_SOURCES);
        }
        assert!(l.admit("busy", s(10.6)).is_err(), "the flooding source is still limited");
        // Idle buckets (full again) go first: 3 s later every one-shot source is full again.
        assert!(l.admit("late", s(13.0)).is_ok());
        assert!(l.sources() <= 2, "idle sources forgotten: {}", l.sources());
    }

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
    /// Take one trigger message from `source` under the rate limit; `Err(wait)`: refuse it.
    fn admit(&self, _source: &str) -> Result<(), Duration> {
        Ok(())
    }
    /// `hindsight/{camera}/state` payload: state and counters as JSON.
    fn camera_state(&self, camera: &str) -> Option<serde_json::Value>;
    /// Clip and recording events.
    fn subscribe_events(&self) -> tokio::sync::broadcast::Receiver<crate::clip_meta::ClipEvent>;
    /// URL path of a clip's video (`/api/clips/{id}/video.mp4`).
    fn clip_url(&self, clip_id: &str) -> String {
        format!("/api/clips/{clip_id}/video.mp4")
    }
    /// Start (`on`) or stop a camera (Home Assistant's switch); `Err`: why not, for the log.
    fn power(self: std::sync::Arc<Self>, camera: String, on: bool) -> Job<()> {
        let _ = (camera, on);
        Box::pin(async { Err("cameras cannot be switched here".to_string()) })
    }
    /// A JPEG of the camera's live picture (Home Assistant's camera entity).
    fn snapshot(self: std::sync::Arc<Self>, camera: String) -> Job<bytes::Bytes> {
        let _ = camera;
        Box::pin(async { Err("no snapshots here".to_string()) })
    }
    /// `{base_topic}/health` payload: the `/api/health` body. Cheap (one `statvfs`).
    fn health(&self) -> Option<serde_json::Value> {
        None
    }
    /// Every alert seen (raised or not) as `(key, JSON)`: MQTT's retained `{base}/alert/{key}`.
    fn alerts(&self) -> Vec<(String, serde_json::Value)> {
        Vec::new()
    }
    /// The camera's newest saved clip, if the index is open or on disk. Blocks (the index).
    fn last_clip(&self, _camera: &str) -> Option<crate::clip_meta::ClipMeta> {
        None
    }
}

/// What [`TriggerTarget::power`] and [`TriggerTarget::snapshot`] return: a future that owns
/// what it needs, so the MQTT session can run it aside.
pub type Job<T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, String>> + Send + 'static>>;
