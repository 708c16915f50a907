//! The `export` tree of the index: the export queue, one entry per clip id (the value is the
//! exporter's own JSON, opaque here). Every write is flushed before it returns, so an entry
//! survives a crash or a power cut the moment its caller goes on.

use super::{Index, IndexError};

impl Index {
    /// Insert or replace `clip_id`'s export entry; durable on return.
    pub fn export_put(&self, clip_id: &str, value: &[u8]) -> Result<(), IndexError> {
        self.export.insert(clip_id.as_bytes(), value)?;
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

    /// Remove `clip_id`'s export entry; durable on return.
    pub fn export_remove(&self, clip_id: &str) -> Result<(), IndexError> {
        self.export.remove(clip_id.as_bytes())?;
        self.db.flush()?;
        Ok(())
    }
}
