//! Clips: what a saved clip is ([`ClipMeta`]), the pure clip state machine ([`state`]), the
//! fragmented-MP4 writer ([`mp4`]) and the per-camera recorder that follows the pre-roll buffer
//! and writes clips crash-safely ([`recorder`]).
//!
//! A clip starts at the keyframe at or before T − pre and is trimmed to T − pre exactly with an
//! MP4 edit list; it ends at T + post, extended by re-triggers up to `max_clip_s`. It is written
//! as fragments while the post-roll arrives, fsynced (file, then directory) and only then
//! indexed.

pub mod mp4;
pub mod poster;
pub mod recorder;
pub mod recovery;
pub mod state;
pub mod store;

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
    /// Every trigger that opened or extended this clip.
    #[serde(default)]
    pub trigger_ids: Vec<String>,
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

/// RFC 3339 (UTC, milliseconds) for Unix milliseconds.
pub fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map(|t| format!("{t:.3}")).unwrap_or_default()
}

/// Wall-clock now in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
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
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    }
}
