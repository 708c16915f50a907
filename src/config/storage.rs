//! `[storage]`: where clips and the index live and how long they are kept ([`StorageConfig`]).
//!
//! Data only: must never touch the disk (that is `crate::storage`).

use super::ByteSize;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `[storage]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Directory for clips and the index. Nothing is written here while idle.
    #[serde(default = "default_storage_path")]
    pub path: PathBuf,
    /// Retention by total size of clips.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: ByteSize,
    /// Retention by free space on the storage filesystem, in percent.
    #[serde(default = "default_min_free_percent")]
    pub min_free_percent: u32,
    /// Retention by age, in days (0 keeps clips forever).
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// Refuse to write clips when `path` is not on its own mounted filesystem, so a missing USB
    /// disk never fills the SD card.
    #[serde(default)]
    pub require_mount: bool,
}

fn default_storage_path() -> PathBuf {
    PathBuf::from("./hindsight-data")
}
fn default_max_bytes() -> ByteSize {
    ByteSize(16 << 30)
}
fn default_min_free_percent() -> u32 {
    10
}
fn default_retention_days() -> u32 {
    30
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            path: default_storage_path(),
            max_bytes: default_max_bytes(),
            min_free_percent: default_min_free_percent(),
            retention_days: default_retention_days(),
            require_mount: false,
        }
    }
}
