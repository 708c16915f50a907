//! A continuous recording's segment as the index keeps it ([`SegmentMeta`]), and where its file
//! lives: `recordings/{camera}/{YYYY-MM-DD}/{HH}/{HHMMSS}-{mmm}.mp4` (UTC of its first frame),
//! so an hour is one folder and a segment's path says when it starts.
//!
//! Data only: written by the recording stage (`record`), read by the index, storage and web.

use serde::{Deserialize, Serialize};

/// One segment of a camera's continuous recording: a fragmented MP4 (init segment, then one
/// fragment per GOP, starting on a keyframe).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentMeta {
    /// The camera.
    pub camera: String,
    /// Unix ms of its first frame.
    pub start_ms: i64,
    /// Unix ms of its last frame's end.
    pub end_ms: i64,
    /// Path under the storage directory ([`segment_rel_path`]).
    pub path: String,
    /// File size.
    pub bytes: u64,
    /// Bytes of its init segment (`ftyp` + `moov`) at the start of the file; fragments follow.
    pub init_bytes: u64,
    /// Video frames.
    pub frames: u64,
    /// Whether it has the camera's sound as a second track.
    #[serde(default)]
    pub sound: bool,
    /// Why the recording before it stopped (a gap on the timeline): `camera failed`, `camera
    /// stopped`, `daemon restarted`, `writer fell behind`, `stream changed`, `storage failed`;
    /// `None` when it follows the previous segment without a gap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap_before: Option<String>,
}

impl SegmentMeta {
    /// The index key: `{camera}\0{start_ms}` with the time zero-padded, so keys sort by camera,
    /// then time.
    pub fn key(&self) -> Vec<u8> {
        segment_key(&self.camera, self.start_ms)
    }
}

/// The index key of `camera`'s segment starting at `start_ms` (see [`SegmentMeta::key`]).
pub fn segment_key(camera: &str, start_ms: i64) -> Vec<u8> {
    format!("{camera}\0{:016}", start_ms.max(0)).into_bytes()
}

/// Relative path of the segment of `camera` starting at `start_ms` (UTC).
pub fn segment_rel_path(camera: &str, start_ms: i64) -> String {
    let ts = jiff::Timestamp::from_millisecond(start_ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    format!("recordings/{camera}/{}{:03}.mp4", ts.strftime("%Y-%m-%d/%H/%H%M%S-"), start_ms.rem_euclid(1000))
}

/// The camera and start (Unix ms) a segment's relative path names; `None` for anything that is
/// not a segment path (start-up recovery walks the folders with this).
pub fn parse_segment_path(rel: &str) -> Option<(String, i64)> {
    let rest = rel.strip_prefix("recordings/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    let [camera, day, hour, file] = parts.as_slice() else { return None };
    let stem = file.strip_suffix(".mp4")?;
    let (hms, ms) = stem.split_once('-')?;
    let ok = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if !ok(hms, 6) || !ok(ms, 3) || !hms.starts_with(hour) || !camera_id_shape(camera) {
        return None;
    }
    let stamp = format!("{day}T{}:{}:{}.{ms}Z", &hms[..2], &hms[2..4], &hms[4..]);
    let t: jiff::Timestamp = stamp.parse().ok()?;
    Some((camera.to_string(), t.as_millisecond()))
}

/// The shape of a camera id, `[a-z0-9_-]{1,32}` (a path component: the config's rule,
/// `config::valid_camera_id`, is this and not a reserved id).
pub fn camera_id_shape(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_the_hour_and_parse_back() {
        // 2026-12-06T23:59:58.042Z
        let t = 1_796_601_598_042;
        let p = segment_rel_path("door", t);
        assert_eq!(p, "recordings/door/2026-12-06/23/235958-042.mp4");
        assert_eq!(parse_segment_path(&p), Some(("door".into(), t)));
        for bad in [
            "recordings/door/2026-12-06/23/235958-042.mp4.part",
            "recordings/door/2026-12-06/22/235958-042.mp4",
            "recordings/../2026-12-06/23/235958-042.mp4",
            "clips/door/2026-12-06/23/235958-042.mp4",
            "recordings/door/2026-13-06/23/235958-042.mp4",
        ] {
            assert_eq!(parse_segment_path(bad), None, "{bad}");
        }
        assert!(segment_key("door", 5) < segment_key("door", 40) && segment_key("door", 40) < segment_key("doors", 1));
    }
}
