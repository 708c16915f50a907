//! The `segments` tree of the index: one entry per continuous-recording segment
//! ([`SegmentMeta`]), keyed `{camera}\0{start_ms:016}` so a camera's segments are one ordered
//! range. Every write is flushed before it returns (a segment is indexed after its file is
//! synced, never before).

use super::{Index, IndexError};
use crate::segment_meta::{segment_key, SegmentMeta};

/// Longest segment (`continuous.segment_s` ≤ 600) plus a GOP: how far before a range's start
/// a segment that overlaps it can begin.
const LONGEST_SEGMENT_MS: i64 = 660_000;

fn decode(key: &[u8], value: &[u8]) -> Result<SegmentMeta, IndexError> {
    serde_json::from_slice(value)
        .map_err(|e| IndexError::Corrupt { key: String::from_utf8_lossy(key).into_owned(), message: e.to_string() })
}

impl Index {
    /// Insert or replace a segment; durable on return.
    pub fn insert_segment(&self, meta: &SegmentMeta) -> Result<(), IndexError> {
        let value = serde_json::to_vec(meta)
            .map_err(|e| IndexError::Corrupt { key: meta.path.clone(), message: format!("cannot encode: {e}") })?;
        self.segments.insert(meta.key(), value)?;
        self.db.flush()?;
        Ok(())
    }

    /// Remove a camera's segment starting at `start_ms`; durable on return.
    pub fn remove_segment(&self, camera: &str, start_ms: i64) -> Result<Option<SegmentMeta>, IndexError> {
        let key = segment_key(camera, start_ms);
        let old = self.segments.remove(&key)?;
        self.db.flush()?;
        Ok(old.and_then(|v| decode(&key, &v).ok()))
    }

    /// `camera`'s segments that overlap `[from_ms, to_ms)`, oldest first, at most `limit`.
    /// Corrupt entries are skipped with a warning.
    pub fn segments(
        &self,
        camera: &str,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<SegmentMeta>, IndexError> {
        let lo = segment_key(camera, from_ms.saturating_sub(LONGEST_SEGMENT_MS));
        let hi = segment_key(camera, to_ms);
        let mut out = Vec::new();
        for kv in self.segments.range(lo..hi) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = kv?;
            match decode(&k, &v) {
                Ok(m) if m.end_ms > from_ms && m.start_ms < to_ms => out.push(m),
                Ok(_) => {}
                Err(e) => log::warn!("{e}; skipped"),
            }
        }
        Ok(out)
    }

    /// Every segment of `camera`, oldest first (retention, recovery).
    pub fn camera_segments(&self, camera: &str) -> Result<Vec<SegmentMeta>, IndexError> {
        self.segments(camera, 0, i64::MAX / 2, usize::MAX)
    }

    /// Every segment of every camera, by camera then time.
    pub fn all_segments(&self) -> Result<Vec<SegmentMeta>, IndexError> {
        let mut out = Vec::with_capacity(self.segments.len());
        for kv in self.segments.iter() {
            let (k, v) = kv?;
            match decode(&k, &v) {
                Ok(m) => out.push(m),
                Err(e) => log::warn!("{e}; skipped"),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(camera: &str, start_ms: i64, len_ms: i64) -> SegmentMeta {
        SegmentMeta {
            camera: camera.into(),
            start_ms,
            end_ms: start_ms + len_ms,
            path: crate::segment_meta::segment_rel_path(camera, start_ms),
            bytes: 1000,
            init_bytes: 700,
            frames: 30,
            sound: false,
            gap_before: None,
        }
    }

    #[test]
    fn segments_are_found_by_overlap_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let t = 1_796_601_000_000;
        {
            let index = Index::open(dir.path()).unwrap();
            for i in 0..5 {
                index.insert_segment(&seg("door", t + i * 60_000, 60_000)).unwrap();
            }
            index.insert_segment(&seg("doors", t, 60_000)).unwrap();
            index.insert_segment(&seg("do", t + 90_000, 60_000)).unwrap();
        }
        let index = Index::open(dir.path()).unwrap();
        let starts = |v: Vec<SegmentMeta>| v.iter().map(|s| (s.start_ms - t) / 1000).collect::<Vec<_>>();
        // [90 s, 150 s) overlaps the segments starting at 60 s and 120 s, of door only.
        assert_eq!(starts(index.segments("door", t + 90_000, t + 150_000, 10).unwrap()), [60, 120]);
        assert_eq!(starts(index.segments("door", t + 90_000, t + 150_000, 1).unwrap()), [60]);
        assert_eq!(starts(index.segments("door", t - 5_000, t, 10).unwrap()), Vec::<i64>::new());
        assert_eq!(index.camera_segments("door").unwrap().len(), 5);
        assert_eq!(index.all_segments().unwrap().len(), 7);
        let gone = index.remove_segment("door", t + 60_000).unwrap();
        assert_eq!(gone.map(|s| s.start_ms), Some(t + 60_000));
        assert_eq!(starts(index.segments("door", t, t + 300_000, 10).unwrap()), [0, 120, 180, 240]);
        assert!(index.is_empty(), "segments are not clips");
    }
}
