//! `[uploads]`: tus uploads at `/api/uploads` — on or off, the size limit, the limits on
//! uploads in progress and the expiry ([`UploadsConfig`]).
//!
//! Data only: must never touch the uploads directory (that is `crate::upload`).

use super::default_true;
use super::ByteSize;
use serde::{Deserialize, Serialize};

/// `[uploads]`: tus uploads at `/api/uploads`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadsConfig {
    /// Accept uploads at all.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Largest file accepted (`Upload-Length`).
    #[serde(default = "default_upload_max_bytes")]
    pub max_bytes: ByteSize,
    /// Most bytes (the sum of their `Upload-Length`s) of all uploads in progress (uploading or
    /// processing) together; unset: twice `max_bytes` (see [`UploadsConfig::max_in_progress`]).
    #[serde(default)]
    pub max_in_progress: Option<ByteSize>,
    /// Most uploads in progress at once.
    #[serde(default = "default_max_uploads")]
    pub max_uploads: u32,
    /// Hours after its last byte that an unfinished upload is deleted (fractions allowed).
    #[serde(default = "default_upload_expire_h")]
    pub expire_h: f64,
}

fn default_upload_max_bytes() -> ByteSize {
    ByteSize(4 << 30)
}
fn default_max_uploads() -> u32 {
    16
}
fn default_upload_expire_h() -> f64 {
    24.0
}

impl Default for UploadsConfig {
    fn default() -> Self {
        UploadsConfig {
            enabled: true,
            max_bytes: default_upload_max_bytes(),
            max_in_progress: None,
            max_uploads: default_max_uploads(),
            expire_h: default_upload_expire_h(),
        }
    }
}

impl UploadsConfig {
    /// `max_in_progress` in bytes: as set, else twice `max_bytes`.
    pub fn max_in_progress(&self) -> u64 {
        self.max_in_progress.map_or(self.max_bytes.0.saturating_mul(2), |b| b.0)
    }

    /// Problems as (key, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.max_bytes.0 < 1024 {
            out.push(("uploads.max_bytes".to_string(), "must be at least 1KiB".to_string()));
        }
        if self.max_in_progress.is_some_and(|b| b.0 < self.max_bytes.0) {
            let msg = format!("must be at least uploads.max_bytes ({})", self.max_bytes);
            out.push(("uploads.max_in_progress".to_string(), msg));
        }
        if !(1..=1000).contains(&self.max_uploads) {
            out.push(("uploads.max_uploads".to_string(), "must be 1..=1000".to_string()));
        }
        if !(self.expire_h.is_finite() && self.expire_h > 0.0 && self.expire_h <= 8760.0) {
            out.push(("uploads.expire_h".to_string(), "must be a number of hours in (0, 8760]".to_string()));
        }
        out
    }
}
