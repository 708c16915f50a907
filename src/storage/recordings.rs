//! Retention of continuous recordings, tiered below the clips': a camera's segments go by its
//! own `continuous` limits (age, size), and all cameras' segments, oldest first, give way for
//! free space **before** any clip does — they are removed while the free space is under
//! `min_free_percent + 1` %, a point above the clips' own limit, and [`Storage::make_room`]
//! removes them first when a clip needs room. So a busy week of 24/7 recording never evicts a
//! pinned or recent event clip. Each camera's newest segment stays whatever the limits say (it is
//! the recording's present).
//!
//! Removing a segment: its file first, then its index entry, then its hour and day folders
//! once empty ([`Storage::remove_segment`]); a segment whose file cannot be removed keeps its
//! entry (index == files) and is skipped.

use super::{fsync_dir, DeletionReason, FsStats, Storage, StorageError};
use crate::index::Index;
use crate::segment_meta::SegmentMeta;
use serde::Serialize;
use std::collections::HashMap;

/// One camera's own recording limits (its `continuous` settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordingLimits {
    /// Segments that ended longer ago than this many days go (needs a trusted clock).
    pub retention_days: u32,
    /// The camera's segments together stay under this many bytes.
    pub max_bytes: Option<u64>,
}

/// A recording segment retention would remove, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedSegmentDeletion {
    /// The segment.
    pub segment: SegmentMeta,
    /// `age`, `size` or `free_space`.
    pub reason: DeletionReason,
}

impl Storage {
    /// Bytes the filesystem keeps free for clips: recordings leave one more percent.
    fn recordings_reserve(&self, fs: &FsStats) -> u64 {
        (fs.total_bytes as u128 * (u128::from(self.cfg.min_free_percent) + 1) / 100) as u64
    }

    /// The segments retention removes now, given `incoming` bytes about to be written: per
    /// camera of `limits`, those older than its `retention_days` (with a trusted clock), then
    /// its oldest while its segments exceed its `max_bytes`; then of every camera, oldest
    /// first, while the free space (after those) minus `incoming` is under
    /// `min_free_percent + 1` %. Never a camera's newest segment.
    pub fn recordings_plan(
        &self,
        index: &Index,
        limits: &HashMap<String, RecordingLimits>,
        incoming: u64,
        now_ms: i64,
    ) -> Result<Vec<PlannedSegmentDeletion>, StorageError> {
        let fs = self.fs_stats();
        let short = fs.is_some_and(|fs| fs.free_bytes.saturating_sub(incoming) < self.recordings_reserve(&fs));
        // Free space short: every camera's segments; else only those of the cameras with limits
        // (a clip's make_room with room enough reads nothing).
        let mut segs = if short {
            index.all_segments()?
        } else {
            let mut cameras: Vec<&String> = limits.keys().collect();
            cameras.sort();
            let mut segs = Vec::new();
            for c in cameras {
                segs.extend(index.camera_segments(c)?);
            }
            segs
        };
        // Each camera's newest segment is kept: `segs` is ordered by camera, then time.
        let newest: Vec<bool> =
            (0..segs.len()).map(|i| segs.get(i + 1).is_none_or(|n| n.camera != segs[i].camera)).collect();
        let mut planned: Vec<Option<DeletionReason>> = vec![None; segs.len()];
        let trusted = crate::time::wall_clock_trusted(now_ms);
        let mut freed = 0u64;
        for (camera, l) in limits {
            let mine: Vec<usize> = (0..segs.len()).filter(|&i| &segs[i].camera == camera && !newest[i]).collect();
            let mut total: u64 = segs.iter().filter(|s| &s.camera == camera).map(|s| s.bytes).sum();
            let oldest_allowed = now_ms.saturating_sub(i64::from(l.retention_days) * 86_400_000);
            for i in mine {
                let reason = if trusted && segs[i].end_ms < oldest_allowed {
                    DeletionReason::Age
                } else if l.max_bytes.is_some_and(|m| total > m) {
                    DeletionReason::Size
                } else {
                    break;
                };
                planned[i] = Some(reason);
                total = total.saturating_sub(segs[i].bytes);
                freed += segs[i].bytes;
            }
        }
        if let Some(fs) = fs.filter(|_| short) {
            let reserve = self.recordings_reserve(&fs);
            let mut order: Vec<usize> = (0..segs.len()).filter(|&i| planned[i].is_none() && !newest[i]).collect();
            order.sort_by_key(|&i| segs[i].start_ms);
            for i in order {
                if fs.free_bytes.saturating_add(freed).saturating_sub(incoming) >= reserve {
                    break;
                }
                planned[i] = Some(DeletionReason::FreeSpace);
                freed += segs[i].bytes;
            }
        }
        let mut out: Vec<PlannedSegmentDeletion> = segs
            .drain(..)
            .zip(planned)
            .filter_map(|(segment, reason)| reason.map(|reason| PlannedSegmentDeletion { segment, reason }))
            .collect();
        out.sort_by_key(|p| p.segment.start_ms);
        Ok(out)
    }

    /// Remove the planned segments ([`Self::remove_segment`]); returns those removed.
    pub fn apply_recordings_plan(&self, index: &Index, plan: &[PlannedSegmentDeletion]) -> Vec<PlannedSegmentDeletion> {
        let mut removed = Vec::new();
        for p in plan {
            if self.remove_segment(index, &p.segment) {
                log::info!("recording {} removed ({:?})", p.segment.path, p.reason);
                removed.push(p.clone());
            }
        }
        removed
    }

    /// Remove a segment's file, then its index entry, then its hour and day folders once
    /// empty. False (entry kept) when the file cannot be removed.
    pub fn remove_segment(&self, index: &Index, s: &SegmentMeta) -> bool {
        let Some(abs) = self.abs(&s.path) else { return false };
        match std::fs::remove_file(&abs) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                log::warn!("recording {}: cannot remove: {e}", s.path);
                return false;
            }
        }
        let _ = index.remove_segment(&s.camera, s.start_ms);
        for dir in abs.ancestors().skip(1).take(2) {
            if std::fs::remove_dir(dir).is_err() {
                break;
            }
        }
        if let Some(dir) = abs.ancestors().find(|d| d.exists()) {
            fsync_dir(dir);
        }
        true
    }
}
