//! The `export` tree of the index: the export queue, one entry per clip id (the value is the
//! exporter's own JSON, opaque here), the `export_pending` set (clips whose export is not
//! finished: retention deletes them last) and the time export was first turned on (clips saved
//! since then are exported even if their event was missed). Every write is flushed before it
//! returns, so an entry survives a crash or a power cut the moment its caller goes on. An entry
//! goes with its clip ([`Index::remove`]).

use super::{Index, IndexError};

const EXPORT_SINCE_KEY: &str = "export_since";

impl Index {
    /// Insert or replace `clip_id`'s export entry, `pending` while its export is not finished;
    /// durable on return.
    pub fn export_put(&self, clip_id: &str, value: &[u8], pending: bool) -> Result<(), IndexError> {
        self.export.insert(clip_id.as_bytes(), value)?;
        if pending {
            self.export_pending.insert(clip_id.as_bytes(), &[])?;
        } else {
            self.export_pending.remove(clip_id.as_bytes())?;
        }
        self.db.flush()?;
        Ok(())
    }

    /// `clip_id`'s export entry.
    pub fn export_get(&self, clip_id: &str) -> Result<Option<Vec<u8>>, IndexError> {
        Ok(self.export.get(clip_id.as_bytes())?.map(|v| v.to_vec()))
    }

    /// Every export entry, oldest clip first (clip ids sort by time).
    pub fn export_all(&self) -> Result<Vec<(String, Vec<u8>)>, IndexError> {
        let mut out = Vec::new();
        for kv in self.export.iter() {
            let (k, v) = kv?;
            out.push((String::from_utf8_lossy(&k).into_owned(), v.to_vec()));
        }
        Ok(out)
    }

    /// The clips whose export is not finished.
    pub fn export_pending_ids(&self) -> Result<std::collections::HashSet<String>, IndexError> {
        let mut out = std::collections::HashSet::new();
        for k in self.export_pending.iter().keys() {
            out.insert(String::from_utf8_lossy(&k?).into_owned());
        }
        Ok(out)
    }

    /// Remove `clip_id`'s export entry; durable on return.
    pub fn export_remove(&self, clip_id: &str) -> Result<(), IndexError> {
        self.export.remove(clip_id.as_bytes())?;
        self.export_pending.remove(clip_id.as_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    /// When export was first turned on (Unix ms), recorded as `now_ms` the first time this is
    /// asked; durable on return.
    pub fn export_since(&self, now_ms: i64) -> Result<i64, IndexError> {
        if let Some(v) = self.meta.get(EXPORT_SINCE_KEY)? {
            if let Ok(b) = <[u8; 8]>::try_from(v.as_ref()) {
                return Ok(i64::from_be_bytes(b));
            }
        }
        self.meta.insert(EXPORT_SINCE_KEY, &now_ms.to_be_bytes())?;
        self.db.flush()?;
        Ok(now_ms)
    }
}
