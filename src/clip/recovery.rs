//! Start-up reconciliation of clip files and the index, after a crash or power cut:
//!
//! - `{id}.mp4.part` (a clip cut off mid-write): truncated to its last complete fragment and
//!   finalized into a regular MP4 ([`mp4::finalize_from_file`], [`mp4::apply_finalize`]),
//!   renamed to `.mp4` and indexed with `partial = true`. One cut off while it was being
//!   finalized (its regular `moov` is complete) only gets its pending box-type flips done and
//!   is indexed with `partial = false`. Unrecoverable ones (no complete init segment or no
//!   fragment) are moved to `quarantine/`.
//! - `{id}.mp4` without an index entry (crash between rename and index): pending flips
//!   completed (if any), indexed.
//! - index entries whose file is gone: removed. Leftover `{id}.json` sidecars: removed.
//!
//! Runs once, before the recorders start, on a blocking thread. Logs everything it does. Reads
//! a clip through an [`mp4::FileView`] (box headers and the small boxes, never the media data),
//! so a clip or stray file of gigabytes costs no more memory than a small one; a sidecar larger
//! than [`MAX_SIDECAR`] is ignored unread.

use super::recorder::fsync_dir;
use crate::clip_meta::{valid_clip_id, ClipFile, ClipMeta, ClipSidecar, ClipSource};
use crate::index::Index;
use crate::mp4::{self, Bytes};
use crate::storage::Storage;
use std::path::Path;

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
    /// Indexed clips whose torn (empty) poster was made again.
    pub posters: Vec<String>,
}

/// Bring files and index into agreement (see the module docs).
pub fn reconcile(storage: &Storage, index: &Index) -> ReconcileReport {
    let mut report = ReconcileReport::default();
    let clips_dir = storage.root().join("clips");
    for path in crate::storage::files_at_depth(&clips_dir, 2) {
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
            if !valid_clip_id(id) {
                continue;
            }
            if matches!(index.get(id), Ok(Some(_))) {
                // A poster torn by a power cut (zero bytes) is made again from the clip.
                let poster = path.with_extension("jpg");
                if std::fs::metadata(&poster).is_ok_and(|m| m.len() == 0) {
                    remake_poster(&path, &poster, id);
                    report.posters.push(id.to_string());
                }
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
    let files = crate::storage::files_at_depth(&clips_dir, 2);
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

/// Make `poster` from the clip at `path` (atomic, fsynced); an empty one that cannot be made is
/// removed, so it is not tried at every start.
fn remake_poster(path: &Path, poster: &Path, id: &str) {
    match super::poster::jpeg_from_file(path) {
        Ok(jpeg) => {
            if let Err(e) = crate::storage::write_private(poster, &jpeg, 0o644) {
                log::warn!("clip {id}: poster not written: {e}");
            }
        }
        Err(e) => {
            log::warn!("clip {id}: no poster: {e}");
            if std::fs::metadata(poster).is_ok_and(|m| m.len() == 0) {
                let _ = std::fs::remove_file(poster);
            }
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
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(part).map_err(|e| e.to_string())?;
    let mut view = mp4::FileView::read(&mut f).map_err(|e| e.to_string())?;
    let scan = mp4::scan(&view).map_err(|e| e.to_string())?;
    if scan.fragments == 0 {
        return Err("no complete fragment".into());
    }
    // Not finalized: the torn tail (maybe a torn moov append) goes, then the whole plan.
    // Finalized (crash during or after the flips): only the pending flips.
    view.truncate(scan.valid_len);
    let plan = mp4::finalize_from_file(&view).map_err(|e| e.to_string())?;
    drop(view);
    f.set_len(scan.valid_len).map_err(|e| e.to_string())?;
    match plan {
        Some(plan) => mp4::apply_finalize(&mut f, &plan).map(drop),
        None => f.sync_all(),
    }
    .map_err(|e| e.to_string())?;
    drop(f);
    let done = part.with_extension("");
    std::fs::rename(part, &done).map_err(|e| e.to_string())?;
    if let Some(d) = done.parent() {
        fsync_dir(d);
    }
    // A finalized `.part` was complete: the crash came after the last frame was written.
    index_orphan(storage, index, &done, id, !scan.finalized)
}

/// Index a complete `.mp4` from what the file and its sidecar say.
fn index_orphan(storage: &Storage, index: &Index, path: &Path, id: &str, partial: bool) -> Result<ClipMeta, String> {
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(path).map_err(|e| e.to_string())?;
    let view = mp4::FileView::read(&mut f).map_err(|e| e.to_string())?;
    let scan = mp4::scan(&view).map_err(|e| e.to_string())?;
    let size_bytes = view.size() as u64;
    drop(view);
    if scan.finalized && !scan.pending_flips.is_empty() {
        let flips = mp4::Finalize { moov: Vec::new(), flips: scan.pending_flips.clone() };
        mp4::apply_finalize(&mut f, &flips).map_err(|e| e.to_string())?;
        log::warn!("clip {id}: completed {} pending box-type flips", flips.flips.len());
    }
    drop(f);
    let side: Option<ClipSidecar> =
        read_small(&path.with_extension("json")).and_then(|b| serde_json::from_slice(&b).ok());
    let rel = path.strip_prefix(storage.root()).map_err(|_| "clip outside storage")?.to_string_lossy().into_owned();
    let camera = side
        .as_ref()
        .map(|s| s.camera.clone())
        .or_else(|| Path::new(&rel).components().nth(1).map(|c| c.as_os_str().to_string_lossy().into_owned()));
    let start_ms = side.as_ref().map(|s| s.start_ms).unwrap_or_else(|| id_ms(id));
    let presented = scan.media_duration.saturating_sub(scan.edit_media_time) as f64 / mp4::TIMESCALE as f64;
    let side = side.unwrap_or_else(|| ClipSidecar {
        id: id.into(),
        camera: camera.unwrap_or_default(),
        source: ClipSource::Trigger,
        label: None,
        trigger_ids: Vec::new(),
        trigger_count: 0,
        trigger_ms: start_ms,
        start_ms,
        pre_s_actual: 0.0,
        device: None,
        continues: None,
    });
    let file = ClipFile {
        path: rel,
        duration: std::time::Duration::from_secs_f64(presented),
        size_bytes,
        frames: scan.samples,
        partial,
    };
    let meta = ClipSidecar { id: id.into(), start_ms, ..side }.into_meta(file);
    // The writer never got to the poster: make it from the file (best effort; the clip plays
    // without it).
    let poster = path.with_extension("jpg");
    if std::fs::metadata(&poster).map_or(true, |m| m.len() == 0) {
        remake_poster(path, &poster, id);
    }
    index.insert(&meta).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(path.with_extension("json"));
    Ok(meta)
}

/// Largest clip sidecar read: the writer's are a few KiB.
pub const MAX_SIDECAR: u64 = 1 << 20;

/// The bytes of a small file: `None` if it is missing, unreadable or larger than
/// [`MAX_SIDECAR`] (not read then).
pub fn read_small(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(path).ok()?;
    let mut out = Vec::new();
    f.take(MAX_SIDECAR + 1).read_to_end(&mut out).ok()?;
    (out.len() as u64 <= MAX_SIDECAR).then_some(out)
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
    use super::*;
    use crate::config::StorageConfig;

    #[test]
    fn id_time_round_trips() {
        let ms = 1_795_000_123_456;
        assert_eq!(super::id_ms(&crate::clip_meta::new_clip_id(ms)), ms);
    }

    /// A fragmented clip of `gops` GOPs of 10 synthetic AUs (lead-in 3 frames) and its writer.
    fn fragmented(gops: usize) -> (mp4::FragmentedMp4, Vec<u8>) {
        let sps_pps = [0, 0, 0, 1, 0x67, 0x4d, 0x40, 0x1e, 0x96, 0, 0, 0, 1, 0x68, 0xee, 0x3c, 0x80];
        let key: Vec<u8> = [&sps_pps[..], &[0, 0, 0, 1, 0x65, 0x88, 0x84]].concat();
        let delta = [0, 0, 0, 1, 0x41, 0x9a, 0x02];
        let mut w = mp4::FragmentedMp4::new(&key, 320, 240, 3 * 3000).unwrap();
        let mut file = w.init_segment();
        for _ in 0..gops {
            let gop: Vec<mp4::Sample> = (0..10)
                .map(|i| mp4::Sample { data: if i == 0 { &key } else { &delta }, duration: 3000, keyframe: i == 0 })
                .collect();
            file.extend(w.fragment(&gop));
        }
        (w, file)
    }

    #[test]
    fn parts_are_truncated_finalized_or_completed() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::new(&StorageConfig { path: dir.path().join("data"), ..StorageConfig::default() });
        let index = Index::open(&dir.path().join("index")).unwrap();
        let ms = 1_795_000_000_000;
        let (torn_id, flips_id) = (crate::clip_meta::new_clip_id(ms), crate::clip_meta::new_clip_id(ms + 1));
        let path = |id: &str| storage.abs(&crate::clip_meta::clip_rel_path("front", id, ms)).unwrap();
        std::fs::create_dir_all(path(&torn_id).parent().unwrap()).unwrap();
        // Crashed while writing fragment 3 of 3.
        let (two, two_file) = fragmented(2);
        let (_, three_file) = fragmented(3);
        std::fs::write(path(&torn_id).with_extension("mp4.part"), &three_file[..three_file.len() - 5]).unwrap();
        // Crashed during finalization, after the moov and one flip.
        let (w, mut crashed) = fragmented(3);
        let plan = w.finalize();
        crashed.extend(&plan.moov);
        crashed[plan.flips[0] as usize..plan.flips[0] as usize + 4].copy_from_slice(b"free");
        std::fs::write(path(&flips_id).with_extension("mp4.part"), &crashed).unwrap();

        let report = reconcile(&storage, &index);
        assert_eq!(report.recovered.len(), 2, "{report:?}");
        assert!(report.quarantined.is_empty(), "{report:?}");

        let torn = std::fs::read(path(&torn_id)).unwrap();
        let mut want = two_file.clone();
        want.extend(&two.finalize().moov);
        for at in two.finalize().flips {
            want[at as usize..at as usize + 4].copy_from_slice(b"free");
        }
        assert!(torn == want, "recovered = truncated + finalized");
        let meta = index.get(&torn_id).unwrap().unwrap();
        assert_eq!((meta.frames, meta.partial, meta.size_bytes), (20, true, torn.len() as u64));
        assert!((meta.duration_s - 17.0 / 30.0).abs() < 1e-3, "{}", meta.duration_s);

        let done = std::fs::read(path(&flips_id)).unwrap();
        let s = mp4::scan(&done).unwrap();
        assert!(s.finalized && s.pending_flips.is_empty(), "{s:?}");
        assert_eq!(done.len(), crashed.len());
        let meta = index.get(&flips_id).unwrap().unwrap();
        assert_eq!((meta.frames, meta.partial, meta.size_bytes), (30, false, done.len() as u64));
        assert!(!path(&flips_id).with_extension("mp4.part").exists());
    }
}
