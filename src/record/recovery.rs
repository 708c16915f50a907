//! Keeping a camera's recordings and the index equal, and within their limits.
//!
//! - [`reconcile`] (when the recorder first reaches the index): a segment file the index does
//!   not know was cut off by a crash or a power cut — truncated to its last complete fragment
//!   (the scan reads box headers only) and indexed, or removed when it has none; an entry whose
//!   file is gone is removed. Afterwards index == files.
//! - [`enforce_retention`] (after each segment): the camera's oldest segments go first, for age
//!   (`retention_days`) or size (`max_bytes`), and any camera's oldest while the storage's free
//!   space is under `min_free_percent + 1` % ([`Storage::recordings_plan`], tiered below the
//!   clips'). Event clips are never touched here: recordings make room for themselves.

use crate::config::ContinuousConfig;
use crate::index::Index;
use crate::mp4;
use crate::segment_meta::{parse_segment_path, SegmentMeta};
use crate::storage::{files_at_depth, DeletionReason, RecordingLimits, Storage};
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// What [`reconcile`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Torn segments truncated to their last complete fragment and indexed (relative paths).
    pub recovered: Vec<String>,
    /// Files with no complete fragment, removed.
    pub removed_files: Vec<String>,
    /// Index entries whose file was gone, removed.
    pub removed_entries: Vec<String>,
}

/// Make the index and `camera`'s segment files agree (see the module docs). `open`: the
/// segment being written now (not a torn one), if any.
pub fn reconcile(storage: &Storage, index: &Index, camera: &str, open: Option<&str>) -> Reconciled {
    let mut done = Reconciled::default();
    let known: Vec<SegmentMeta> =
        index.all_segments().unwrap_or_default().into_iter().filter(|s| s.camera == camera).collect();
    let paths: HashSet<&str> = known.iter().map(|s| s.path.as_str()).collect();
    // recordings/{camera}/{day}/{hour}/file
    for file in files_at_depth(&storage.root().join("recordings").join(camera), 2) {
        let Ok(rel) = file.strip_prefix(storage.root()) else { continue };
        let rel = rel.to_string_lossy().into_owned();
        if paths.contains(rel.as_str()) || Some(rel.as_str()) == open {
            continue;
        }
        let Some((cam, start_ms)) = parse_segment_path(&rel) else { continue };
        match repair(&file, &cam, start_ms, &rel) {
            Ok(Some(meta)) => match index.insert_segment(&meta) {
                Ok(()) => done.recovered.push(rel),
                Err(e) => log::warn!("recording {rel}: cannot index: {e}"),
            },
            Ok(None) => {
                if std::fs::remove_file(&file).is_ok() {
                    done.removed_files.push(rel);
                }
            }
            Err(e) => log::warn!("recording {rel}: left as it is: {e}"),
        }
    }
    for s in known {
        let gone = storage.abs(&s.path).is_none_or(|p| !p.exists());
        if gone && index.remove_segment(&s.camera, s.start_ms).is_ok() {
            done.removed_entries.push(s.path);
        }
    }
    if done != Reconciled::default() {
        log::info!(
            "camera {camera}: recordings reconciled: {} torn segment(s) recovered, {} empty removed, {} stale entries removed",
            done.recovered.len(),
            done.removed_files.len(),
            done.removed_entries.len()
        );
    }
    done
}

/// Truncate a torn segment to its last complete fragment; its entry, or `None` if it has no
/// complete fragment.
fn repair(file: &Path, camera: &str, start_ms: i64, rel: &str) -> Result<Option<SegmentMeta>, String> {
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(file).map_err(|e| e.to_string())?;
    let view = mp4::FileView::read(&mut f).map_err(|e| e.to_string())?;
    let scan = mp4::scan(&view).map_err(|e| e.to_string())?;
    drop(view);
    if scan.fragments == 0 {
        return Ok(None);
    }
    f.set_len(scan.valid_len).map_err(|e| e.to_string())?;
    f.sync_all().map_err(|e| e.to_string())?;
    let ms = (u128::from(scan.media_duration) * 1000 / u128::from(mp4::TIMESCALE)) as i64;
    Ok(Some(SegmentMeta {
        camera: camera.into(),
        start_ms,
        end_ms: start_ms + ms,
        path: rel.into(),
        bytes: scan.valid_len,
        init_bytes: scan.init_len,
        frames: scan.samples,
        sound: scan.audio_samples > 0,
        gap_before: None,
    }))
}

/// Delete `camera`'s oldest segments while they break its limits, and any camera's oldest while
/// free space is short ([`Storage::recordings_plan`]).
pub fn enforce_retention(storage: &Storage, index: &Index, camera: &str, cfg: &ContinuousConfig) {
    let now = crate::time::wall_now_ms();
    enforce_retention_at(storage, index, camera, cfg, now);
}

/// [`enforce_retention`] at wall time `now_ms` (tests move the clock). Returns the removed
/// segments with why (`age`, `size`, `free space`).
pub fn enforce_retention_at(
    storage: &Storage,
    index: &Index,
    camera: &str,
    cfg: &ContinuousConfig,
    now_ms: i64,
) -> Vec<(SegmentMeta, &'static str)> {
    let limits = RecordingLimits { retention_days: cfg.retention_days, max_bytes: cfg.max_bytes.map(|m| m.0) };
    let plan = match storage.recordings_plan(index, &HashMap::from([(camera.to_string(), limits)]), 0, now_ms) {
        Ok(plan) => plan,
        Err(e) => {
            log::warn!("camera {camera}: recording retention: {e}");
            return Vec::new();
        }
    };
    storage
        .apply_recordings_plan(index, &plan)
        .into_iter()
        .map(|p| {
            let why = match p.reason {
                DeletionReason::Age => "age",
                DeletionReason::Size => "size",
                DeletionReason::FreeSpace => "free space",
            };
            (p.segment, why)
        })
        .collect()
}
