//! The clip index: every sled access in the daemon lives here.
//!
//! Owns the sled database under the storage directory: a `clips` tree (clip id → [`ClipMeta`]
//! as JSON), two secondary trees `by_camera` (`"{camera}\0{id}"` → empty) and `by_label`
//! (`"{lowercased label}\0{id}"` → empty) kept consistent with it by sled transactions, and a
//! `meta` tree holding [`SCHEMA_VERSION`]; continuous recording's `segments` tree (one entry
//! per segment file, not per frame: `index/segments.rs`). Every write is flushed before it returns: a clip is
//! indexed only after its file is fsynced, and the index entry must be as durable as the file.
//!
//! Must never touch clip files (that is [`crate::storage`]), never panic on what it reads from
//! disk (a broken entry is an [`IndexError::Corrupt`] or is skipped with a warning when listing),
//! and never open a database written with another schema version.

use crate::clip_meta::{valid_clip_id, ClipMeta};
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;
use std::path::Path;

/// The on-disk layout version this code reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

const SCHEMA_KEY: &str = "schema_version";
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

/// What can go wrong with the index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// sled failed (I/O, lock held by another process, corrupted log).
    #[error("clip index: {0}")]
    Sled(#[from] sled::Error),
    /// An entry could not be decoded.
    #[error("clip index: entry {key:?} is corrupt: {message}")]
    Corrupt {
        /// The key of the broken entry.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// The database was written by a different version of hindsight.
    #[error("clip index: schema version {found} found, this build reads version {expected}")]
    SchemaMismatch {
        /// Version stored in the database.
        found: u32,
        /// [`SCHEMA_VERSION`].
        expected: u32,
    },
    /// A [`ClipQuery`] parameter is invalid (the HTTP layer answers 400 with this message).
    #[error("{0}")]
    BadQuery(String),
    /// A clip to insert has an id that is not time-sortable / path-safe.
    #[error("clip index: invalid clip id {0:?}")]
    InvalidId(String),
}

/// `GET /api/clips` query parameters. Empty strings count as absent.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ClipQuery {
    /// Only this camera.
    pub camera: Option<String>,
    /// RFC 3339: only clips with `start_ms` at or after this instant.
    pub since: Option<String>,
    /// RFC 3339: only clips with `start_ms` at or before this instant.
    pub until: Option<String>,
    /// Exact label, case-insensitive.
    pub label: Option<String>,
    /// Case-insensitive substring of label, camera or id.
    pub q: Option<String>,
    /// Only clips from this source (`trigger`, `manual`, `upload`).
    pub source: Option<String>,
    /// Only uploads from this device (exact name).
    pub device: Option<String>,
    /// Page size, 1..=500 (default 50).
    pub limit: Option<usize>,
    /// The last id of the previous page: results are strictly older.
    pub cursor: Option<String>,
}

/// One page of clips, newest first.
#[derive(Debug, Serialize)]
pub struct ClipPage {
    /// The clips of this page.
    pub clips: Vec<ClipMeta>,
    /// Pass as `cursor` to get the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// The clip index. Cheap to clone: all clones share one database.
#[derive(Clone)]
pub struct Index {
    db: sled::Db,
    clips: sled::Tree,
    by_camera: sled::Tree,
    by_label: sled::Tree,
    /// Continuous recording: `{camera}\0{start_ms:016}` → [`crate::segment_meta::SegmentMeta`]
    /// as JSON (`index/segments.rs`).
    segments: sled::Tree,
    /// The export queue: clip id → the exporter's entry as JSON (`index/export.rs`).
    export: sled::Tree,
    /// Clip ids whose export is not finished (retention deletes them last).
    export_pending: sled::Tree,
    /// Schema version and small settings (`export_since`).
    meta: sled::Tree,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index").field("clips", &self.clips.len()).finish()
    }
}

fn secondary_key(prefix: &str, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 1 + id.len());
    k.extend_from_slice(prefix.as_bytes());
    k.push(0);
    k.extend_from_slice(id.as_bytes());
    k
}

fn label_key(meta: &ClipMeta) -> Option<Vec<u8>> {
    meta.label.as_deref().map(|l| secondary_key(&l.to_lowercase(), &meta.id))
}

fn decode(key: &[u8], value: &[u8]) -> Result<ClipMeta, IndexError> {
    serde_json::from_slice(value)
        .map_err(|e| IndexError::Corrupt { key: String::from_utf8_lossy(key).into_owned(), message: e.to_string() })
}

fn encode(meta: &ClipMeta) -> Result<Vec<u8>, IndexError> {
    serde_json::to_vec(meta)
        .map_err(|e| IndexError::Corrupt { key: meta.id.clone(), message: format!("cannot encode: {e}") })
}

fn flatten<T>(r: Result<T, TransactionError<IndexError>>) -> Result<T, IndexError> {
    r.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => IndexError::Sled(e),
    })
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

fn parse_time(name: &str, value: Option<&str>) -> Result<Option<i64>, IndexError> {
    value.map(|v| crate::time::parse_rfc3339_ms(name, v).map_err(IndexError::BadQuery)).transpose()
}

impl Index {
    /// Open (or create) the database in `dir`; refuse one written with another schema version.
    pub fn open(dir: &Path) -> Result<Index, IndexError> {
        // No background flusher: every change is flushed explicitly, and an idle daemon must
        // not write to the SD card at all.
        let db = sled::Config::new().path(dir).cache_capacity(2 << 20).flush_every_ms(None).open()?;
        let meta = db.open_tree("meta")?;
        match meta.get(SCHEMA_KEY)? {
            None => {
                meta.insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())?;
                db.flush()?;
            }
            Some(v) => {
                let bytes: [u8; 4] = v.as_ref().try_into().map_err(|_| IndexError::Corrupt {
                    key: SCHEMA_KEY.into(),
                    message: format!("expected 4 bytes, found {}", v.len()),
                })?;
                let found = u32::from_be_bytes(bytes);
                if found != SCHEMA_VERSION {
                    return Err(IndexError::SchemaMismatch { found, expected: SCHEMA_VERSION });
                }
            }
        }
        let index = Index {
            clips: db.open_tree("clips")?,
            by_camera: db.open_tree("by_camera")?,
            by_label: db.open_tree("by_label")?,
            segments: db.open_tree("segments")?,
            export: db.open_tree("export")?,
            export_pending: db.open_tree("export_pending")?,
            meta,
            db,
        };
        // Opening trees writes their metadata: make that durable now, not later while idle.
        index.db.flush()?;
        Ok(index)
    }

    /// Insert or replace a clip, with its secondary entries, atomically; durable on return.
    pub fn insert(&self, meta: &ClipMeta) -> Result<(), IndexError> {
        if !valid_clip_id(&meta.id) {
            return Err(IndexError::InvalidId(meta.id.clone()));
        }
        let value = encode(meta)?;
        let cam_key = secondary_key(&meta.camera, &meta.id);
        let lbl_key = label_key(meta);
        flatten((&self.clips, &self.by_camera, &self.by_label).transaction(|(c, bc, bl)| {
            if let Some(old) = c.insert(meta.id.as_bytes(), value.as_slice())? {
                // Replacing: drop the old secondary entries (camera or label may differ).
                if let Ok(old) = serde_json::from_slice::<ClipMeta>(&old) {
                    bc.remove(secondary_key(&old.camera, &old.id))?;
                    if let Some(k) = label_key(&old) {
                        bl.remove(k)?;
                    }
                }
            }
            bc.insert(cam_key.as_slice(), &[])?;
            if let Some(k) = &lbl_key {
                bl.insert(k.as_slice(), &[])?;
            }
            Ok::<_, ConflictableTransactionError<IndexError>>(())
        }))?;
        self.db.flush()?;
        Ok(())
    }

    /// The clip with this id.
    pub fn get(&self, id: &str) -> Result<Option<ClipMeta>, IndexError> {
        match self.clips.get(id.as_bytes())? {
            Some(v) => decode(id.as_bytes(), &v).map(Some),
            None => Ok(None),
        }
    }

    /// Remove a clip and its secondary entries; durable on return. A corrupt entry is purged
    /// (with its secondary entries found by scanning) and reported as `None`.
    pub fn remove(&self, id: &str) -> Result<Option<ClipMeta>, IndexError> {
        let removed = flatten((&self.clips, &self.by_camera, &self.by_label).transaction(|(c, bc, bl)| {
            let Some(old) = c.remove(id.as_bytes())? else {
                return Ok(None);
            };
            match serde_json::from_slice::<ClipMeta>(&old) {
                Ok(old) => {
                    bc.remove(secondary_key(&old.camera, &old.id))?;
                    if let Some(k) = label_key(&old) {
                        bl.remove(k)?;
                    }
                    Ok(Some(Some(old)))
                }
                Err(_) => Ok(Some(None)),
            }
        }))?;
        // Its export entry goes with it (the exporter drops a queued clip that is gone).
        self.export.remove(id.as_bytes())?;
        self.export_pending.remove(id.as_bytes())?;
        let removed = match removed {
            None => None,
            Some(Some(meta)) => Some(meta),
            Some(None) => {
                log::warn!("clip index: removed corrupt entry {id:?}");
                let suffix = secondary_key("", id);
                for tree in [&self.by_camera, &self.by_label] {
                    for key in tree.iter().keys() {
                        let key = key?;
                        if key.ends_with(&suffix) {
                            tree.remove(key)?;
                        }
                    }
                }
                None
            }
        };
        self.db.flush()?;
        Ok(removed)
    }

    /// Pin or unpin a clip (pinned clips are never removed by retention); durable on return.
    pub fn set_pinned(&self, id: &str, pinned: bool) -> Result<Option<ClipMeta>, IndexError> {
        let updated = flatten(self.clips.transaction(|c| {
            let Some(old) = c.get(id.as_bytes())? else {
                return Ok(None);
            };
            let mut meta = decode(id.as_bytes(), &old).map_err(ConflictableTransactionError::Abort)?;
            meta.pinned = pinned;
            let value = encode(&meta).map_err(ConflictableTransactionError::Abort)?;
            c.insert(id.as_bytes(), value)?;
            Ok(Some(meta))
        }))?;
        self.db.flush()?;
        Ok(updated)
    }

    /// One page of clips matching `q`, newest first.
    pub fn list(&self, q: &ClipQuery) -> Result<ClipPage, IndexError> {
        let limit = match q.limit {
            None => DEFAULT_LIMIT,
            Some(n) if (1..=MAX_LIMIT).contains(&n) => n,
            Some(n) => return Err(IndexError::BadQuery(format!("limit: {n} is out of range 1..={MAX_LIMIT}"))),
        };
        let since = parse_time("since", non_empty(&q.since))?;
        let until = parse_time("until", non_empty(&q.until))?;
        let cursor = non_empty(&q.cursor);
        if let Some(c) = cursor {
            if !valid_clip_id(c) {
                return Err(IndexError::BadQuery(format!("cursor: {c:?} is not a clip id")));
            }
        }
        let camera = non_empty(&q.camera);
        let source = match non_empty(&q.source) {
            None => None,
            Some("trigger") => Some(crate::clip_meta::ClipSource::Trigger),
            Some("manual") => Some(crate::clip_meta::ClipSource::Manual),
            Some("upload") => Some(crate::clip_meta::ClipSource::Upload),
            Some(other) => {
                return Err(IndexError::BadQuery(format!("source: {other:?} is not one of trigger, manual, upload")))
            }
        };
        let device = non_empty(&q.device);
        let label = non_empty(&q.label).map(str::to_lowercase);
        let needle = non_empty(&q.q).map(str::to_lowercase);
        let matches = |m: &ClipMeta| {
            camera.is_none_or(|c| m.camera == c)
                && source.is_none_or(|s| m.source == s)
                && device.is_none_or(|d| m.device.as_deref() == Some(d))
                && label.as_deref().is_none_or(|l| m.label.as_deref().map(str::to_lowercase).as_deref() == Some(l))
                && since.is_none_or(|s| m.start_ms >= s)
                && until.is_none_or(|u| m.start_ms <= u)
                && needle.as_deref().is_none_or(|n| {
                    m.id.to_lowercase().contains(n)
                        || m.camera.to_lowercase().contains(n)
                        || m.label.as_deref().is_some_and(|l| l.to_lowercase().contains(n))
                        || m.device.as_deref().is_some_and(|d| d.to_lowercase().contains(n))
                })
        };

        // Candidate ids newest first: from a secondary tree when it narrows the scan.
        let ids: Box<dyn Iterator<Item = sled::Result<sled::IVec>>> = match (camera, label.as_deref()) {
            (Some(c), _) => self.secondary_ids(&self.by_camera, c, cursor),
            (None, Some(l)) => self.secondary_ids(&self.by_label, l, cursor),
            (None, None) => match cursor {
                Some(c) => Box::new(self.clips.range(..c.as_bytes()).rev().map(|kv| kv.map(|(k, _)| k))),
                None => Box::new(self.clips.iter().rev().map(|kv| kv.map(|(k, _)| k))),
            },
        };

        let mut clips = Vec::with_capacity(limit.min(64));
        let mut more = false;
        for id in ids {
            let id = id?;
            let Some(value) = self.clips.get(&id)? else {
                log::warn!("clip index: secondary entry for missing clip {:?}", String::from_utf8_lossy(&id));
                continue;
            };
            let meta = match decode(&id, &value) {
                Ok(m) => m,
                Err(e) => {
                    log::warn!("{e}; skipped");
                    continue;
                }
            };
            if !matches(&meta) {
                continue;
            }
            if clips.len() == limit {
                more = true;
                break;
            }
            clips.push(meta);
        }
        let next_cursor = if more { clips.last().map(|m: &ClipMeta| m.id.clone()) } else { None };
        Ok(ClipPage { clips, next_cursor })
    }

    /// Ids under `"{prefix}\0"` in `tree`, newest first, strictly older than `cursor`.
    fn secondary_ids(
        &self,
        tree: &sled::Tree,
        prefix: &str,
        cursor: Option<&str>,
    ) -> Box<dyn Iterator<Item = sled::Result<sled::IVec>>> {
        let start = secondary_key(prefix, "");
        let end = match cursor {
            Some(c) => secondary_key(prefix, c),
            None => {
                let mut e = start.clone();
                if let Some(last) = e.last_mut() {
                    *last = 1; // "{prefix}\x01": just past every "{prefix}\0..." key
                }
                e
            }
        };
        let plen = start.len();
        Box::new(tree.range(start..end).rev().filter_map(move |kv| match kv.map(|(k, _)| k) {
            Err(e) => Some(Err(e)),
            Ok(k) => {
                // Exact prefix match only: a prefix containing NUL could otherwise alias.
                let id = &k[plen..];
                std::str::from_utf8(id)
                    .ok()
                    .filter(|id| valid_clip_id(id))
                    .map(|id| Ok(sled::IVec::from(id.as_bytes())))
            }
        }))
    }

    /// Every clip, oldest first. Corrupt entries are skipped with a warning, so one broken
    /// entry never stops retention.
    pub fn all(&self) -> Result<Vec<ClipMeta>, IndexError> {
        let mut out = Vec::with_capacity(self.clips.len());
        for kv in self.clips.iter() {
            let (k, v) = kv?;
            match decode(&k, &v) {
                Ok(m) => out.push(m),
                Err(e) => log::warn!("{e}; skipped"),
            }
        }
        Ok(out)
    }

    /// Number of clips.
    pub fn len(&self) -> usize {
        self.clips.len()
    }

    /// Whether the index holds no clips.
    pub fn is_empty(&self) -> bool {
        self.clips.is_empty()
    }
}

mod export;
mod segments;

#[cfg(test)]
pub(crate) mod tests;
