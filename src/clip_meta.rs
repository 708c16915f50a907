//! What a saved clip is: [`ClipMeta`] (the index entry and the `/api/clips/{id}` body),
//! [`ClipSource`], the [`ClipSidecar`] written beside a clip while it is recorded, the
//! [`ClipEvent`]s the recorder announces, and clip ids ([`new_clip_id`], [`valid_clip_id`]).
//!
//! A leaf: the index, storage, the recorder, uploads, MQTT and HTTP all speak it; it imports
//! only [`crate::time`]. Must never do I/O.

use serde::{Deserialize, Serialize};

/// How a clip came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClipSource {
    /// MQTT or HTTP trigger.
    Trigger,
    /// `record/start` … `record/stop`.
    Manual,
    /// A browser upload.
    Upload,
}

/// Clip metadata: the index entry and the `/api/clips/{id}` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipMeta {
    /// Time-sortable id (see [`new_clip_id`]).
    pub id: String,
    /// Camera id.
    pub camera: String,
    /// Label of the first trigger, if any.
    pub label: Option<String>,
    /// First trigger's id.
    pub trigger_id: Option<String>,
    /// The triggers that opened or extended this clip: the first
    /// [`MAX_TRIGGER_IDS`](crate::clip_meta::MAX_TRIGGER_IDS) of them (a flood is counted in
    /// `trigger_count`, not stored).
    #[serde(default)]
    pub trigger_ids: Vec<String>,
    /// How many triggers opened or extended this clip (all of them).
    #[serde(default)]
    pub trigger_count: u64,
    /// Wall-clock time of the first trigger (RFC 3339).
    pub trigger_at: String,
    /// Wall-clock time of the first presented frame (RFC 3339).
    pub start_at: String,
    /// Wall-clock time of the end (RFC 3339).
    pub end_at: String,
    /// `start_at` as Unix milliseconds (for filtering and retention).
    pub start_ms: i64,
    /// Presented duration in seconds (after the edit list).
    pub duration_s: f64,
    /// Seconds actually kept before the trigger (less than asked right after start-up).
    pub pre_s_actual: f64,
    /// File size in bytes.
    pub size_bytes: u64,
    /// Frames in the file (including the lead-in before the edit point).
    pub frames: u64,
    /// How it came to be.
    pub source: ClipSource,
    /// File path relative to the storage directory: `clips/{camera}/{YYYY-MM-DD}/{id}.mp4`.
    pub path: String,
    /// Pinned clips are never removed by retention.
    #[serde(default)]
    pub pinned: bool,
    /// Recovered after a crash: plays up to its last complete fragment.
    #[serde(default)]
    pub partial: bool,
    /// Uploads: the device or user that sent the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The clip this one continues: the camera changed its stream (resolution, profile) while
    /// the earlier one was recording, and one MP4 holds one stream format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continues: Option<String>,
    /// Exported and its video deleted here (`[export] delete_local`): the video is served from
    /// the bucket, the poster stays. Present only when true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub remote_only: bool,
}

impl ClipMeta {
    /// The bytes the clip takes on this disk (0 once only the bucket has its video).
    pub fn local_bytes(&self) -> u64 {
        if self.remote_only {
            0
        } else {
            self.size_bytes
        }
    }
}

/// Events the recorder announces (MQTT publishes them).
#[derive(Debug, Clone)]
pub enum ClipEvent {
    /// A camera started or stopped writing a clip.
    Recording {
        /// Camera id.
        camera: String,
        /// Whether a clip is being written now.
        on: bool,
    },
    /// A clip was saved and indexed.
    Saved(Box<ClipMeta>),
    /// A clip could not be saved.
    Failed {
        /// Camera id.
        camera: String,
        /// Clip id.
        clip_id: String,
        /// Why.
        error: String,
    },
    /// A clip's export ended: every object in the bucket (`error` none), or given up.
    Exported {
        /// Camera id.
        camera: String,
        /// Clip id.
        clip_id: String,
        /// The object keys (video, poster, metadata).
        keys: Vec<String>,
        /// Bytes of all objects.
        bytes: u64,
        /// Why it was given up.
        error: Option<String>,
    },
    /// An alert of the box or of a camera was raised or cleared (`monitor`).
    Alert {
        /// `kind` or `kind/camera` (`temperature`, `camera_failed/cam0`).
        key: String,
        /// Raised (true) or cleared.
        active: bool,
        /// False when the alert was only seen for the first time (not raised): its state is
        /// published (MQTT's retained topic) but nothing happened.
        changed: bool,
        /// The alert as `/api/health/system` shows it.
        json: Box<serde_json::Value>,
    },
}

/// The JSON of an [`ClipEvent::Exported`] (MQTT `{base}/{camera}/export`, SSE `export`):
/// `{"event_type":"export_done"|"export_failed","camera","clip_id","keys","bytes","error"?}`;
/// `null` for any other event.
pub fn export_json(ev: &ClipEvent) -> serde_json::Value {
    let ClipEvent::Exported { camera, clip_id, keys, bytes, error } = ev else { return serde_json::Value::Null };
    let mut v = serde_json::json!({
        "event_type": if error.is_none() { "export_done" } else { "export_failed" },
        "camera": camera, "clip_id": clip_id, "keys": keys, "bytes": bytes,
    });
    if let (Some(e), Some(m)) = (error, v.as_object_mut()) {
        m.insert("error".into(), serde_json::Value::String(e.clone()));
    }
    v
}

/// A time-sortable, URL-safe clip id: `YYYYMMDDTHHMMSSmmmZ-` + 6 hex digits of a per-process
/// counter mixed with the pid, e.g. `20261122T012301123Z-00a3f1`.
pub fn new_clip_id(now_ms: i64) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let salt = (std::process::id().wrapping_mul(2654435761) ^ n.wrapping_mul(40503)) & 0xffffff;
    let ts = jiff::Timestamp::from_millisecond(now_ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    format!("{}-{salt:06x}", ts.strftime("%Y%m%dT%H%M%S%3fZ"))
}

/// Whether `id` has the shape [`new_clip_id`] makes (and so is safe in a path).
pub fn valid_clip_id(id: &str) -> bool {
    let b = id.as_bytes();
    b.len() == 26
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..18].iter().all(u8::is_ascii_digit)
        && b[18] == b'Z'
        && b[19] == b'-'
        && b[20..].iter().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
}

/// What is written beside a clip while it is recorded (`{id}.json`), so a crash loses no labels;
/// an upload's finished clip has one too (with `device`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClipSidecar {
    /// Clip id.
    pub id: String,
    /// Camera id.
    pub camera: String,
    /// Trigger or manual.
    pub source: ClipSource,
    /// First trigger's label.
    pub label: Option<String>,
    /// Trigger ids known when the clip opened (at most [`MAX_TRIGGER_IDS`]).
    pub trigger_ids: Vec<String>,
    /// Triggers on the clip, when more than its ids (a flood); 0: as many as the ids.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub trigger_count: u64,
    /// Wall-clock ms of the first trigger.
    pub trigger_ms: i64,
    /// Wall-clock ms of the first presented frame.
    pub start_ms: i64,
    /// Seconds before the trigger.
    pub pre_s_actual: f64,
    /// Uploads: the device that sent it (absent in recorder sidecars).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The clip this one continues ([`ClipMeta::continues`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continues: Option<String>,
}

/// The most trigger ids a clip keeps: a trigger flood (thousands a second) extends the clip and
/// is counted, but does not grow its metadata without bound.
pub const MAX_TRIGGER_IDS: usize = 64;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What a clip's file says of itself: measured by its writer, or scanned at recovery.
#[derive(Debug, Clone)]
pub struct ClipFile {
    /// Path relative to the storage directory ([`clip_rel_path`]).
    pub path: String,
    /// Presented duration (after the edit list).
    pub duration: std::time::Duration,
    /// File size in bytes.
    pub size_bytes: u64,
    /// Samples in the file (including the lead-in before the edit point).
    pub frames: u64,
    /// Recovered after a crash: plays up to its last complete fragment.
    pub partial: bool,
}

impl ClipSidecar {
    /// The index entry of the clip this sidecar describes, once its file is known: the one
    /// place a [`ClipMeta`] is made (recorder, recovery, uploads). Seconds are rounded to ms.
    pub fn into_meta(self, file: ClipFile) -> ClipMeta {
        let round_ms = |s: f64| (s * 1000.0).round() / 1000.0;
        ClipMeta {
            trigger_id: self.trigger_ids.first().cloned(),
            trigger_at: crate::time::rfc3339_ms(self.trigger_ms),
            start_at: crate::time::rfc3339_ms(self.start_ms),
            end_at: crate::time::rfc3339_ms(self.start_ms + file.duration.as_millis() as i64),
            start_ms: self.start_ms,
            duration_s: round_ms(file.duration.as_secs_f64()),
            pre_s_actual: round_ms(self.pre_s_actual),
            size_bytes: file.size_bytes,
            frames: file.frames,
            source: self.source,
            path: file.path,
            pinned: false,
            partial: file.partial,
            id: self.id,
            camera: self.camera,
            label: self.label,
            trigger_count: self.trigger_count.max(self.trigger_ids.len() as u64),
            trigger_ids: self.trigger_ids,
            device: self.device,
            continues: self.continues,
            remote_only: false,
        }
    }
}

/// Relative path of a clip under the storage directory: `clips/{camera}/{YYYY-MM-DD}/{id}.mp4`
/// (UTC date of `start_ms`).
pub fn clip_rel_path(camera: &str, id: &str, start_ms: i64) -> String {
    let ts = jiff::Timestamp::from_millisecond(start_ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    format!("clips/{camera}/{}/{id}.mp4", ts.strftime("%Y-%m-%d"))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn ids_sort_by_time_and_validate() {
        let a = new_clip_id(1_795_000_000_000);
        let b = new_clip_id(1_795_000_000_001);
        assert!(a < b, "{a} {b}");
        assert!(valid_clip_id(&a), "{a}");
        assert!(!valid_clip_id("../../etc/passwd"));
        assert!(!valid_clip_id("%2e%2e"));
        assert!(!valid_clip_id(&"a".repeat(300)));
    }
}
