//! The clip index: every sled access in the daemon lives here.
//!
//! Owns the sled database under the storage directory: a `clips` tree (clip id → [`ClipMeta`]
//! as JSON), two secondary trees `by_camera` (`"{camera}\0{id}"` → empty) and `by_label`
//! (`"{lowercased label}\0{id}"` → empty) kept consistent with it by sled transactions, and a
//! `meta` tree holding [`SCHEMA_VERSION`]. Every write is flushed before it returns: a clip is
//! indexed only after its file is fsynced, and the index entry must be as durable as the file.
//!
//! Must never touch clip files (that is [`crate::storage`]), never panic on what it reads from
//! disk (a broken entry is an [`IndexError::Corrupt`] or is skipped with a warning when listing),
//! and never open a database written with another schema version.

use crate::clip::{valid_clip_id, ClipMeta};
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
    value
        .map(|v| {
            v.parse::<jiff::Timestamp>().map(|t| t.as_millisecond()).map_err(|e| {
                IndexError::BadQuery(format!("{name}: {v:?} is not an RFC 3339 time like 2026-01-31T12:00:00Z ({e})"))
            })
        })
        .transpose()
}

impl Index {
    /// Open (or create) the database in `dir`; refuse one written with another schema version.
    pub fn open(dir: &Path) -> Result<Index, IndexError> {
        let db = sled::Config::new().path(dir).cache_capacity(16 << 20).open()?;
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
        Ok(Index {
            clips: db.open_tree("clips")?,
            by_camera: db.open_tree("by_camera")?,
            by_label: db.open_tree("by_label")?,
            db,
        })
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
        let label = non_empty(&q.label).map(str::to_lowercase);
        let needle = non_empty(&q.q).map(str::to_lowercase);
        let matches = |m: &ClipMeta| {
            camera.is_none_or(|c| m.camera == c)
                && label.as_deref().is_none_or(|l| m.label.as_deref().map(str::to_lowercase).as_deref() == Some(l))
                && since.is_none_or(|s| m.start_ms >= s)
                && until.is_none_or(|u| m.start_ms <= u)
                && needle.as_deref().is_none_or(|n| {
                    m.id.to_lowercase().contains(n)
                        || m.camera.to_lowercase().contains(n)
                        || m.label.as_deref().is_some_and(|l| l.to_lowercase().contains(n))
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::clip::{new_clip_id, rfc3339, ClipSource};

    /// A clip starting at `ms`, with an id made at `ms`.
    pub(crate) fn clip(ms: i64, camera: &str, label: Option<&str>, size: u64) -> ClipMeta {
        let id = new_clip_id(ms);
        ClipMeta {
            path: crate::storage::Storage::clip_rel_path(camera, &id, ms),
            id,
            camera: camera.into(),
            label: label.map(Into::into),
            trigger_id: None,
            trigger_ids: vec![],
            trigger_at: rfc3339(ms),
            start_at: rfc3339(ms),
            end_at: rfc3339(ms + 60_000),
            start_ms: ms,
            duration_s: 60.0,
            pre_s_actual: 30.0,
            size_bytes: size,
            frames: 1800,
            source: ClipSource::Trigger,
            pinned: false,
            partial: false,
        }
    }

    const T0: i64 = 1_795_000_000_000;

    fn ids(p: &ClipPage) -> Vec<&str> {
        p.clips.iter().map(|m| m.id.as_str()).collect()
    }

    fn query(f: impl FnOnce(&mut ClipQuery)) -> ClipQuery {
        let mut q = ClipQuery::default();
        f(&mut q);
        q
    }

    #[test]
    fn insert_get_remove_pin() {
        let dir = tempfile::tempdir().unwrap();
        let idx = Index::open(dir.path()).unwrap();
        let a = clip(T0, "front", Some("Doorbell"), 100);
        idx.insert(&a).unwrap();
        assert_eq!(idx.get(&a.id).unwrap().as_ref(), Some(&a));
        assert_eq!(idx.len(), 1);
        assert!(idx.set_pinned(&a.id, true).unwrap().unwrap().pinned);
        assert!(idx.get(&a.id).unwrap().unwrap().pinned);
        // Re-insert under another camera/label moves the secondary entries.
        let mut b = a.clone();
        b.camera = "back".into();
        b.label = Some("car".into());
        idx.insert(&b).unwrap();
        assert!(idx.list(&query(|q| q.camera = Some("front".into()))).unwrap().clips.is_empty());
        assert!(idx.list(&query(|q| q.label = Some("doorbell".into()))).unwrap().clips.is_empty());
        assert_eq!(idx.list(&query(|q| q.label = Some("CAR".into()))).unwrap().clips.len(), 1);
        assert_eq!(idx.remove(&a.id).unwrap(), Some(b));
        assert_eq!(idx.remove(&a.id).unwrap(), None);
        assert_eq!(idx.get(&a.id).unwrap(), None);
        assert!(idx.by_camera.is_empty() && idx.by_label.is_empty());
        let mut bad = a.clone();
        bad.id = "../../etc/passwd".into();
        assert!(matches!(idx.insert(&bad), Err(IndexError::InvalidId(_))));
    }

    #[test]
    fn list_filters() {
        let dir = tempfile::tempdir().unwrap();
        let idx = Index::open(dir.path()).unwrap();
        let clips = [
            clip(T0, "front", Some("Doorbell"), 1),
            clip(T0 + 60_000, "back", Some("motion"), 1),
            clip(T0 + 120_000, "front", None, 1),
            clip(T0 + 180_000, "front", Some("doorbell"), 1),
            clip(T0 + 240_000, "garage", Some("car door"), 1),
        ];
        for c in &clips {
            idx.insert(c).unwrap();
        }
        let l = |q: ClipQuery| idx.list(&q).unwrap();
        let all = l(ClipQuery::default());
        assert_eq!(ids(&all), clips.iter().rev().map(|c| c.id.as_str()).collect::<Vec<_>>());
        assert_eq!(all.next_cursor, None);
        let front = l(query(|q| q.camera = Some("front".into())));
        assert_eq!(ids(&front), [&clips[3].id, &clips[2].id, &clips[0].id]);
        let bell = l(query(|q| q.label = Some("DOORBELL".into())));
        assert_eq!(ids(&bell), [&clips[3].id, &clips[0].id]);
        let both = l(query(|q| {
            q.camera = Some("back".into());
            q.label = Some("doorbell".into())
        }));
        assert!(both.clips.is_empty());
        let window = l(query(|q| {
            q.since = Some(rfc3339(T0 + 60_000));
            q.until = Some(rfc3339(T0 + 180_000));
        }));
        assert_eq!(ids(&window), [&clips[3].id, &clips[2].id, &clips[1].id]);
        let door = l(query(|q| q.q = Some("DOOR".into())));
        assert_eq!(ids(&door), [&clips[4].id, &clips[3].id, &clips[0].id]);
        let gar = l(query(|q| q.q = Some("arag".into())));
        assert_eq!(ids(&gar), [&clips[4].id]);
        let by_id = l(query(|q| q.q = Some(clips[1].id[..18].to_string())));
        assert_eq!(ids(&by_id), [&clips[1].id]);
        let empty = l(query(|q| q.camera = Some(String::new())));
        assert_eq!(empty.clips.len(), 5, "empty parameters count as absent");
    }

    #[test]
    fn pagination_three_pages() {
        let dir = tempfile::tempdir().unwrap();
        let idx = Index::open(dir.path()).unwrap();
        let mut want = Vec::new();
        for i in 0..25 {
            let cam = if i % 2 == 0 { "front" } else { "back" };
            let c = clip(T0 + i * 1000, cam, Some("x"), 1);
            idx.insert(&c).unwrap();
            want.push(c.id);
        }
        want.reverse();
        for filter in [None, Some("front")] {
            let expect: Vec<&String> =
                want.iter().filter(|id| filter.is_none() || idx.get(id).unwrap().unwrap().camera == "front").collect();
            let (mut got, mut cursor, mut pages) = (Vec::new(), None, 0);
            loop {
                let page = idx
                    .list(&query(|q| {
                        q.camera = filter.map(Into::into);
                        q.limit = Some(if filter.is_some() { 5 } else { 10 });
                        q.cursor = cursor.clone();
                    }))
                    .unwrap();
                let mut sorted = ids(&page);
                sorted.sort_by(|a, b| b.cmp(a));
                assert_eq!(sorted, ids(&page), "each page newest first");
                got.extend(page.clips.iter().map(|m| m.id.clone()));
                pages += 1;
                match page.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            assert_eq!(pages, 3);
            assert_eq!(got.iter().collect::<Vec<_>>(), expect, "no duplicates, no gaps");
        }
        // Exactly a full last page: no cursor pointing at an empty page.
        let p = idx.list(&query(|q| q.limit = Some(25))).unwrap();
        assert_eq!((p.clips.len(), p.next_cursor), (25, None));
    }

    #[test]
    fn bad_queries() {
        let dir = tempfile::tempdir().unwrap();
        let idx = Index::open(dir.path()).unwrap();
        let bad = |q: ClipQuery, name: &str| match idx.list(&q) {
            Err(IndexError::BadQuery(m)) => assert!(m.starts_with(name), "{m}"),
            other => panic!("{name}: {other:?}"),
        };
        bad(query(|q| q.since = Some("yesterday".into())), "since");
        bad(query(|q| q.until = Some("2026-13-01T00:00:00Z".into())), "until");
        bad(query(|q| q.limit = Some(0)), "limit");
        bad(query(|q| q.limit = Some(501)), "limit");
        bad(query(|q| q.cursor = Some("../x".into())), "cursor");
        assert!(idx.list(&query(|q| q.limit = Some(500))).is_ok());
    }

    #[test]
    fn reopen_keeps_data_and_refuses_other_schema() {
        let dir = tempfile::tempdir().unwrap();
        let a = clip(T0, "front", Some("bell"), 7);
        {
            let idx = Index::open(dir.path()).unwrap();
            idx.insert(&a).unwrap();
        }
        {
            let idx = Index::open(dir.path()).unwrap();
            assert_eq!(idx.all().unwrap(), vec![a.clone()]);
            assert_eq!(idx.list(&query(|q| q.label = Some("bell".into()))).unwrap().clips.len(), 1);
            let meta = idx.db.open_tree("meta").unwrap();
            assert_eq!(meta.get(SCHEMA_KEY).unwrap().unwrap().as_ref(), 1u32.to_be_bytes());
            meta.insert(SCHEMA_KEY, &2u32.to_be_bytes()).unwrap();
            idx.db.flush().unwrap();
        }
        match Index::open(dir.path()) {
            Err(IndexError::SchemaMismatch { found: 2, expected: 1 }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn corrupt_entry_is_reported_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let idx = Index::open(dir.path()).unwrap();
        let a = clip(T0, "front", None, 1);
        let b = clip(T0 + 1, "front", None, 1);
        idx.insert(&a).unwrap();
        idx.insert(&b).unwrap();
        idx.clips.insert(a.id.as_bytes(), &b"{not json"[..]).unwrap();
        assert!(matches!(idx.get(&a.id), Err(IndexError::Corrupt { .. })));
        assert_eq!(idx.all().unwrap(), vec![b.clone()]);
        assert_eq!(idx.list(&ClipQuery::default()).unwrap().clips, vec![b.clone()]);
        assert_eq!(idx.remove(&a.id).unwrap(), None);
        assert_eq!(idx.len(), 1);
        assert_eq!(idx.by_camera.len(), 1);
    }
}
