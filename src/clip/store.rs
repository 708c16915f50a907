//! The clip store: storage directory plus the sled index, opened on first use.
//!
//! Opening is lazy so that with `require_mount = true` and the disk missing, nothing is
//! created on the SD card: every use retries, and the first successful open runs
//! [`super::recovery::reconcile`] before anything else touches the index.

use super::recovery;
use crate::index::Index;
use crate::storage::{Storage, StorageError};
use std::sync::Mutex;

/// Storage and index, shared by recorders and HTTP handlers.
pub struct ClipStore {
    /// Paths, usage, retention.
    pub storage: Storage,
    index: Mutex<Option<Index>>,
}

impl ClipStore {
    /// A store over `storage`; nothing is opened yet.
    pub fn new(storage: Storage) -> Self {
        ClipStore { storage, index: Mutex::new(None) }
    }

    /// The index, opening it (and reconciling files with it) on first use. Blocking.
    pub fn index(&self) -> Result<Index, StorageError> {
        let mut guard = self.index.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = guard.as_ref() {
            return Ok(i.clone());
        }
        self.storage.check_writable()?;
        let root = self.storage.root().to_path_buf();
        std::fs::create_dir_all(&root).map_err(|e| StorageError::Io { path: root.clone(), source: e })?;
        let index = Index::open(&root.join("index"))?;
        let report = recovery::reconcile(&self.storage, &index);
        log::info!(
            "clip store {}: {} clips; recovered {}, orphans indexed {}, quarantined {}, stale entries removed {}",
            root.display(),
            index.len(),
            report.recovered.len(),
            report.indexed_orphans.len(),
            report.quarantined.len(),
            report.removed_entries.len()
        );
        *guard = Some(index.clone());
        Ok(index)
    }
}
