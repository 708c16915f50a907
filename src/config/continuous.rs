//! `continuous = { ... }` of a camera: 24/7 recording into hourly folders of segments
//! ([`ContinuousConfig`]), opt-in per camera.
//!
//! Data only: [`super::validate`] checks the values.

use super::ByteSize;
use serde::{Deserialize, Serialize};

/// `continuous = { enabled = true, segment_s = 60, retention_days = 7, max_bytes = "200GiB" }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContinuousConfig {
    /// Whether the camera records all the time (the table's presence alone turns it on).
    #[serde(default = "super::default_true")]
    pub enabled: bool,
    /// Length of one segment file, in seconds (cut at the first keyframe after it; never across
    /// an hour). 2..=600.
    #[serde(default = "default_segment_s")]
    pub segment_s: u32,
    /// Recordings older than this many days are deleted (1..=3650).
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// This camera's recordings are kept under this size (oldest deleted first); none: only
    /// age and the storage's free space limit them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<ByteSize>,
    /// Durability: how many seconds of recording a power cut may lose (0.5..=60). Frames wait
    /// in RAM until they span this long, then go out as one fragment and one `fdatasync`.
    /// Fewer syncs, fewer bytes written to a flash card.
    #[serde(default = "default_flush_s")]
    pub flush_s: f64,
}

fn default_segment_s() -> u32 {
    60
}
fn default_retention_days() -> u32 {
    7
}
/// 5 s: each `fdatasync` costs the filesystem ~24 KiB of journal and metadata (ext4), so at
/// 2 Mbit/s a 5 s flush writes 1.02 × the video, 2 s 1.05 ×, 1 s 1.10 × (scripts/bench-continuous).
fn default_flush_s() -> f64 {
    5.0
}

impl Default for ContinuousConfig {
    fn default() -> Self {
        ContinuousConfig {
            enabled: true,
            segment_s: default_segment_s(),
            retention_days: default_retention_days(),
            max_bytes: None,
            flush_s: default_flush_s(),
        }
    }
}

impl ContinuousConfig {
    /// What is wrong with the values: (key under `continuous.`, message).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if !(2..=600).contains(&self.segment_s) {
            out.push(("segment_s", format!("{} must be 2..=600 seconds", self.segment_s)));
        }
        if !(1..=3650).contains(&self.retention_days) {
            out.push(("retention_days", format!("{} must be 1..=3650 days", self.retention_days)));
        }
        if !(0.5..=60.0).contains(&self.flush_s) {
            out.push(("flush_s", format!("{} must be 0.5..=60 seconds", self.flush_s)));
        }
        if self.max_bytes.is_some_and(|b| b.0 < 64 << 20) {
            out.push(("max_bytes", "must be at least 64MiB (or absent)".into()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_limits() {
        let c: ContinuousConfig = toml::from_str("").unwrap();
        assert_eq!(c, ContinuousConfig::default());
        assert!(c.problems().is_empty());
        let bad = ContinuousConfig { segment_s: 1, retention_days: 0, flush_s: 0.1, max_bytes: Some(ByteSize(1)), ..c };
        let keys: Vec<_> = bad.problems().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["segment_s", "retention_days", "flush_s", "max_bytes"]);
        assert!(toml::from_str::<ContinuousConfig>("segments = 3").is_err(), "unknown keys are refused");
    }
}
