//! `[uploads]`: tus uploads at `/api/uploads` — on or off, the size limit and the expiry
//! ([`UploadsConfig`]).
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
    /// Hours after its last byte that an unfinished upload is deleted (fractions allowed).
    #[serde(default = "default_upload_expire_h")]
    pub expire_h: f64,
}

fn default_upload_max_bytes() -> ByteSize {
    ByteSize(4 << 30)
}
fn default_upload_expire_h() -> f64 {
    24.0
}

impl Default for UploadsConfig {
    fn default() -> Self {
        UploadsConfig { enabled: true, max_bytes: default_upload_max_bytes(), expire_h: default_upload_expire_h() }
    }
}

impl UploadsConfig {
    /// Problems as (key, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.max_bytes.0 < 1024 {
            out.push(("uploads.max_bytes".to_string(), "must be at least 1KiB".to_string()));
        }
        if !(self.expire_h.is_finite() && self.expire_h > 0.0 && self.expire_h <= 8760.0) {
            out.push(("uploads.expire_h".to_string(), "must be a number of hours in (0, 8760]".to_string()));
        }
        out
    }
}
