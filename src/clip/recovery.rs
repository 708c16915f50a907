//! Start-up reconciliation of clip files and the index, after a crash or power cut:
//!
//! - `{id}.mp4.part` (a clip cut off mid-write): truncated to its last complete fragment, its
//!   durations patched, fsynced, renamed to `.mp4` and indexed with `partial = true`;
//!   unrecoverable ones (no complete init segment or no fragment) are moved to `quarantine/`.
//! - `{id}.mp4` without an index entry (crash between rename and index): indexed.
//! - index entries whose file is gone: removed. Leftover `{id}.json` sidecars: removed.
//!
//! Runs once, before the recorders start, on a blocking thread. Logs everything it does.

use super::mp4;
use super::recorder::{fsync_dir, Sidecar};
use super::{rfc3339, valid_clip_id, ClipMeta, ClipSource};
use crate::index::Index;
use crate::storage::Storage;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// What reconciliation did.
#[derive(Debug, Default, serde::Serialize)]
pub struct ReconcileReport {
    /// Partial clips made playable and indexed.
    pub recovered: Vec<String>,
    /// Finished but unindexed clips now indexed.
    pub indexed_orphans: Vec<String>,
    /// Files moved to `quarantine/`.
    pub quarantined: Vec<String>,
    /// Index entries removed because their file was missing.
    pub removed_entries: Vec<String>,
}

/// Bring files and index into agreement (see the module docs).
pub fn reconcile(storage: &Storage, index: &Index) -> ReconcileReport {
    let mut report = ReconcileReport::default();
    let clips_dir = storage.root().join("clips");
    let mut files = Vec::new();
    collect(&clips_dir, 0, &mut files);
    for path in files {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
        if let Some(id) = name.strip_suffix(".mp4.part") {
            match recover_part(storage, index, &path, id) {
                Ok(meta) => {
                    log::warn!("recovered partial clip {} ({:.2} s, {} frames)", meta.id, meta.duration_s, meta.frames);
                    report.recovered.push(meta.id);
                }
                Err(e) => {
                    log::warn!("cannot recover {}: {e}; quarantined", path.display());
                    quarantine(storage, &path);
                    report.quarantined.push(name.clone());
                }
            }
        } else if let Some(id) = name.strip_suffix(".mp4") {
            if !valid_clip_id(id) || matches!(index.get(id), Ok(Some(_))) {
                continue;
            }
            match index_orphan(storage, index, &path, id, false) {
                Ok(meta) => {
                    log::warn!("indexed orphan clip {}", meta.id);
                    report.indexed_orphans.push(meta.id);
                }
                Err(e) => {
                    log::warn!("orphan {} unreadable: {e}; quarantined", path.display());
                    quarantine(storage, &path);
                    report.quarantined.push(name.clone());
                }
            }
        }
    }
    // Sidecars of indexed clips (crash after indexing) are no longer needed.
    let mut files = Vec::new();
    collect(&clips_dir, 0, &mut files);
    for path in files.iter().filter(|p| p.extension().is_some_and(|e| e == "json")) {
        let _ = std::fs::remove_file(path);
    }
    match index.all() {
        Ok(all) => {
            for meta in all {
                let exists = storage.abs(&meta.path).is_some_and(|p| p.exists());
                if !exists && index.remove(&meta.id).is_ok() {
                    log::warn!("index entry {} had no file; removed", meta.id);
                    report.removed_entries.push(meta.id);
                }
            }
        }
        Err(e) => log::error!("cannot read the index: {e}"),
    }
    report
}

/// Files under `dir` (clips/{camera}/{date}/file: depth 2).
fn collect(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() && depth < 2 => collect(&p, depth + 1, out),
            Ok(t) if t.is_file() && depth == 2 => out.push(p),
            _ => {}
        }
    }
}

fn quarantine(storage: &Storage, path: &Path) {
    let q = storage.root().join("quarantine");
    if std::fs::create_dir_all(&q).is_ok() {
        if let Some(name) = path.file_name() {
            let _ = std::fs::rename(path, q.join(name));
            fsync_dir(&q);
        }
    }
}

fn recover_part(storage: &Storage, index: &Index, part: &Path, id: &str) -> Result<ClipMeta, String> {
    if !valid_clip_id(id) {
        return Err("not a clip file name".into());
    }
    let bytes = std::fs::read(part).map_err(|e| e.to_string())?;
    let scan = mp4::scan(&bytes).map_err(|e| e.to_string())?;
    if scan.fragments == 0 {
        return Err("no complete fragment".into());
    }
    let patches = mp4::duration_patches(&bytes[..scan.init_len as usize], scan.media_duration).map_err(|e| e.to_string())?;
    drop(bytes);
    let mut f = std::fs::OpenOptions::new().write(true).open(part).map_err(|e| e.to_string())?;
    f.set_len(scan.valid_len).map_err(|e| e.to_string())?;
    for (off, b) in patches {
        f.seek(SeekFrom::Start(off)).map_err(|e| e.to_string())?;
        f.write_all(&b).map_err(|e| e.to_string())?;
    }
    f.sync_all().map_err(|e| e.to_string())?;
    let done = part.with_extension("");
    std::fs::rename(part, &done).map_err(|e| e.to_string())?;
    if let Some(d) = done.parent() {
        fsync_dir(d);
    }
    index_orphan(storage, index, &done, id, true)
}

/// Index a complete `.mp4` from what the file and its sidecar say.
fn index_orphan(storage: &Storage, index: &Index, path: &Path, id: &str, partial: bool) -> Result<ClipMeta, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let scan = mp4::scan(&bytes).map_err(|e| e.to_string())?;
    let side: Option<Sidecar> =
        std::fs::read(path.with_extension("json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let rel = path.strip_prefix(storage.root()).map_err(|_| "clip outside storage")?.to_string_lossy().into_owned();
    let camera = side.as_ref().map(|s| s.camera.clone()).or_else(|| {
        Path::new(&rel).components().nth(1).map(|c| c.as_os_str().to_string_lossy().into_owned())
    });
    let start_ms = side.as_ref().map(|s| s.start_ms).unwrap_or_else(|| id_ms(id));
    let presented = scan.media_duration.saturating_sub(scan.edit_media_time) as f64 / mp4::TIMESCALE as f64;
    let meta = ClipMeta {
        id: id.into(),
        camera: camera.unwrap_or_default(),
        label: side.as_ref().and_then(|s| s.label.clone()),
        trigger_id: side.as_ref().and_then(|s| s.trigger_ids.first().cloned()),
        trigger_ids: side.as_ref().map(|s| s.trigger_ids.clone()).unwrap_or_default(),
        trigger_at: rfc3339(side.as_ref().map(|s| s.trigger_ms).unwrap_or(start_ms)),
        start_at: rfc3339(start_ms),
        end_at: rfc3339(start_ms + (presented * 1000.0) as i64),
        start_ms,
        duration_s: (presented * 1000.0).round() / 1000.0,
        pre_s_actual: side.as_ref().map(|s| (s.pre_s_actual * 1000.0).round() / 1000.0).unwrap_or(0.0),
        size_bytes: bytes.len() as u64,
        frames: scan.samples,
        source: side.as_ref().map(|s| s.source).unwrap_or(ClipSource::Trigger),
        path: rel,
        pinned: false,
        partial,
    };
    index.insert(&meta).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(path.with_extension("json"));
    Ok(meta)
}

/// Unix ms from a clip id's time prefix (`YYYYMMDDTHHMMSSmmmZ`).
fn id_ms(id: &str) -> i64 {
    let s = id.get(..19).unwrap_or("");
    let iso = format!(
        "{}-{}-{}T{}:{}:{}.{}Z",
        s.get(0..4).unwrap_or("1970"),
        s.get(4..6).unwrap_or("01"),
        s.get(6..8).unwrap_or("01"),
        s.get(9..11).unwrap_or("00"),
        s.get(11..13).unwrap_or("00"),
        s.get(13..15).unwrap_or("00"),
        s.get(15..18).unwrap_or("000")
    );
    iso.parse::<jiff::Timestamp>().map(|t| t.as_millisecond()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn id_time_round_trips() {
        let ms = 1_795_000_123_456;
        assert_eq!(super::id_ms(&super::super::new_clip_id(ms)), ms);
    }
}
