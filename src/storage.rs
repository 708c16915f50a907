//! Clip storage on disk: where clip files live, how full the disk is, and retention.
//!
//! Owns the layout under `storage.path` (`clips/{camera}/{YYYY-MM-DD}/{id}.mp4`, poster
//! `{id}.jpg` beside it), mapping relative clip paths to absolute ones without ever escaping
//! the root, the mount check (`require_mount`), free-space figures (statvfs), and retention by
//! age, total size and free space, which deletes the oldest unpinned clips: file first, then
//! the index entry. The total size that retention holds to `max_bytes` counts the clips and
//! also what lies in `uploads/` (uploads in progress, a finalize's copy) and `quarantine/`. Also [`write_private`], the one crash-safe small-file write (temporary
//! file, fsync, rename, directory fsync) used for state files, markers and sidecars.
//!
//! Must never delete a pinned clip, never touch a path outside the storage root, never create
//! the root when `require_mount` is set (a missing USB disk must not fill the SD card), and
//! never talk to sled directly (that is [`crate::index`]).

use crate::clip_meta::{valid_clip_id, ClipMeta};
use crate::config::StorageConfig;
use crate::index::{Index, IndexError};
use serde::Serialize;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

mod fs;
mod recordings;
pub use fs::{
    create_dir_durable, files_at_depth, fsync_dir, is_mount_point, on_root_filesystem, owner_of_dir, write_private,
};
use fs::{dir_bytes, remove_file_counted, statvfs_stats};
pub use recordings::{PlannedSegmentDeletion, RecordingLimits};

const DAY_MS: i64 = 86_400_000;

/// A clip dated more than this after now is "in the future": one of the clocks was off.
const FUTURE_SLACK_MS: i64 = 5 * 60_000;

/// Set while age retention is skipped on an untrusted clock, so that is logged once.
static AGE_SKIP_LOGGED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether age retention may judge a clip that started at `start_ms` at `now_ms` (a trusted
/// clock): not if it was dated on an untrusted clock (before the floor: recorded before the
/// clock was set, its real age is unknown — a 1970 clip must not be swept away when NTP
/// syncs), nor if it is dated in the future (it is not old, and its date shows that a clock
/// was off).
fn age_known(start_ms: i64, now_ms: i64) -> bool {
    crate::time::wall_clock_trusted(start_ms) && start_ms <= now_ms.saturating_add(FUTURE_SLACK_MS)
}

/// What can go wrong with storage.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A file-system operation failed.
    #[error("storage: {}: {source}", path.display())]
    Io {
        /// The path it failed on.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// `require_mount` is set and the storage directory is not a mounted filesystem.
    #[error(
        "storage: {} is not a mounted filesystem (storage.require_mount is set): is the disk plugged in and mounted?",
        .0.display()
    )]
    MountMissing(PathBuf),
    /// Not enough space even after deleting every clip retention may delete.
    #[error("storage full: {needed} bytes needed, {free} available (pinned clips are never deleted)")]
    Full {
        /// Bytes needed (incoming clip plus the free-space reserve).
        needed: u64,
        /// Bytes available.
        free: u64,
    },
    /// A clip path in the index points outside the storage directory.
    #[error("storage: clip path {0:?} escapes the storage directory")]
    UnsafePath(String),
    /// The clip index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io { path: path.to_path_buf(), source }
}

/// Size and free space of the filesystem holding the storage directory.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FsStats {
    /// Filesystem size in bytes.
    pub total_bytes: u64,
    /// Bytes available to unprivileged users.
    pub free_bytes: u64,
    /// `free_bytes` as a percentage of `total_bytes`.
    pub free_percent: f64,
}

impl FsStats {
    /// Figures from total and free bytes.
    pub fn new(total_bytes: u64, free_bytes: u64) -> FsStats {
        let free_percent = if total_bytes == 0 { 0.0 } else { free_bytes as f64 * 100.0 / total_bytes as f64 };
        FsStats { total_bytes, free_bytes, free_percent }
    }
}

/// Storage figures for `/api/health`, `/metrics` and the web app. `None`: unknown (no statvfs).
#[derive(Debug, Clone, Serialize)]
pub struct StorageUsage {
    /// The storage directory.
    pub path: String,
    /// Number of indexed clips.
    pub clips: usize,
    /// Sum of their sizes.
    pub clip_bytes: u64,
    /// Bytes in `uploads/` (uploads in progress and their remuxed copies): counted toward
    /// `max_bytes` with the clips.
    pub upload_bytes: u64,
    /// Bytes in `quarantine/` (unrecoverable files moved aside at start): counted toward
    /// `max_bytes` with the clips.
    pub quarantine_bytes: u64,
    /// Number of pinned clips.
    pub pinned: usize,
    /// Free bytes on the filesystem.
    pub free_bytes: Option<u64>,
    /// Filesystem size.
    pub total_bytes: Option<u64>,
    /// Free percentage.
    pub free_percent: Option<f64>,
    /// `storage.max_bytes`.
    pub max_bytes: u64,
    /// `storage.min_free_percent`.
    pub min_free_percent: u32,
    /// `storage.retention_days`.
    pub retention_days: u32,
    /// `storage.require_mount`.
    pub require_mount: bool,
    /// Whether the storage directory is a mount point now.
    pub mounted: bool,
}

/// Why retention deletes a clip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeletionReason {
    /// Older than `retention_days`.
    Age,
    /// Clips together exceed `max_bytes`.
    Size,
    /// The filesystem has less than `min_free_percent` free.
    FreeSpace,
}

/// A clip retention would delete, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedDeletion {
    /// The clip.
    pub clip: ClipMeta,
    /// `age`, `size` or `free_space`.
    pub reason: DeletionReason,
}

/// What a cleanup deleted.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CleanupReport {
    /// The deleted clips, oldest first.
    pub deleted: Vec<ClipMeta>,
    /// Bytes of files removed (clips and posters).
    pub freed_bytes: u64,
    /// Clips whose files could not be removed (id, why): skipped and reported, never in the
    /// way of the next ones.
    pub failed: Vec<(String, String)>,
    /// Continuous recording segments removed (they give way before clips), oldest first.
    pub recordings_deleted: Vec<PlannedSegmentDeletion>,
    /// Their bytes.
    pub recordings_freed_bytes: u64,
}

type FsStatsSource = Arc<dyn Fn(&Path) -> Option<FsStats> + Send + Sync>;
type WriteFaultSource = Arc<dyn Fn(&Path) -> Option<std::io::Error> + Send + Sync>;

/// The storage directory and its retention policy.
#[derive(Clone)]
pub struct Storage {
    root: PathBuf,
    cfg: StorageConfig,
    fs_stats_source: Option<FsStatsSource>,
    write_fault: Option<WriteFaultSource>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("root", &self.root)
            .field("cfg", &self.cfg)
            .field("fs_stats_overridden", &self.fs_stats_source.is_some())
            .field("write_fault", &self.write_fault.is_some())
            .finish()
    }
}

impl Storage {
    /// Storage at `cfg.path`. Touches nothing on disk.
    pub fn new(cfg: &StorageConfig) -> Storage {
        Storage { root: cfg.path.clone(), cfg: cfg.clone(), fs_stats_source: None, write_fault: None }
    }

    /// Make writes of clip files fail where `fault` (called with the file's path) returns an
    /// error: a failing disk, for tests and simulations ([`Self::injected_fault`]).
    pub fn with_write_fault(
        mut self,
        fault: impl Fn(&Path) -> Option<std::io::Error> + Send + Sync + 'static,
    ) -> Storage {
        self.write_fault = Some(Arc::new(fault));
        self
    }

    /// The fault [`Self::with_write_fault`] injects into a write of `path`: always `Ok` on a
    /// real system. The clip writer asks before each write.
    pub fn injected_fault(&self, path: &Path) -> std::io::Result<()> {
        match self.write_fault.as_ref().and_then(|f| f(path)) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Whether a file can be written and synced in the storage directory now: a 4 KiB probe file,
    /// created, fsynced and removed. After a clip failed writing, a new clip is promised to a
    /// trigger only once this passes.
    pub fn probe_write(&self) -> Result<(), StorageError> {
        self.check_writable()?;
        let path = self.root.join(".write-probe");
        let written = (|| {
            self.injected_fault(&path)?;
            let mut f = std::fs::File::create(&path)?;
            std::io::Write::write_all(&mut f, &[0u8; 4096])?;
            f.sync_all()
        })();
        let _ = std::fs::remove_file(&path);
        written.map_err(io_err(&path))
    }

    /// Replace statvfs with `source` (called with the root) for tests and simulations.
    pub fn with_fs_stats_override(
        mut self,
        source: impl Fn(&Path) -> Option<FsStats> + Send + Sync + 'static,
    ) -> Storage {
        self.fs_stats_source = Some(Arc::new(source));
        self
    }

    /// The storage directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The configuration this storage applies.
    pub fn config(&self) -> &StorageConfig {
        &self.cfg
    }

    /// `rel` under the root; `None` if it is empty, absolute, or has `..` or other components
    /// that could leave the root.
    pub fn abs(&self, rel: &str) -> Option<PathBuf> {
        let p = Path::new(rel);
        if rel.is_empty() || rel.contains('\0') {
            return None;
        }
        let mut normal = 0;
        for c in p.components() {
            match c {
                Component::Normal(_) => normal += 1,
                Component::CurDir => {}
                Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
            }
        }
        (normal > 0).then(|| self.root.join(p))
    }

    /// With `require_mount`: `MountMissing` unless the root exists and is a mount point now.
    /// Without it: always `Ok`. Creates nothing.
    pub fn check_mounted(&self) -> Result<(), StorageError> {
        if !self.cfg.require_mount {
            return Ok(());
        }
        match is_mount_point(&self.root) {
            Ok(true) => Ok(()),
            Ok(false) => Err(StorageError::MountMissing(self.root.clone())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StorageError::MountMissing(self.root.clone())),
            Err(e) => Err(io_err(&self.root)(e)),
        }
    }

    /// Whether `dir` (state kept beside the clips: `http.state_dir`) may be created and written
    /// now: `MountMissing` when it lies under the root, `require_mount` is set and the root is
    /// not mounted (a new password and certificate must not appear on the SD card). Creates
    /// nothing.
    pub fn check_state_dir(&self, dir: &Path) -> Result<(), StorageError> {
        let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        if absolute(dir).starts_with(absolute(&self.root)) {
            self.check_mounted()
        } else {
            Ok(())
        }
    }

    /// Whether clips may be written now. With `require_mount`, the root must exist and be a
    /// mount point (never created here); without it, the root is created if missing. Either
    /// way the root must be a writable directory.
    pub fn check_writable(&self) -> Result<(), StorageError> {
        let root = &self.root;
        if self.cfg.require_mount {
            self.check_mounted()?;
        } else {
            std::fs::create_dir_all(root).map_err(io_err(root))?;
        }
        let meta = std::fs::metadata(root).map_err(io_err(root))?;
        if !meta.is_dir() {
            return Err(io_err(root)(std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory")));
        }
        nix::unistd::access(root.as_path(), nix::unistd::AccessFlags::W_OK)
            .map_err(|e| io_err(root)(std::io::Error::from(e)))?;
        Ok(())
    }

    /// Size and free space of the filesystem holding the root (or its nearest existing
    /// ancestor); `None` if unknown.
    pub fn fs_stats(&self) -> Option<FsStats> {
        match &self.fs_stats_source {
            Some(source) => source(&self.root),
            None => statvfs_stats(&self.root),
        }
    }

    /// Clip counts, bytes, filesystem figures and the policy.
    pub fn usage(&self, index: &Index) -> Result<StorageUsage, StorageError> {
        let clips = index.all()?;
        let fs = self.fs_stats();
        Ok(StorageUsage {
            path: self.root.display().to_string(),
            clips: clips.len(),
            clip_bytes: clips.iter().map(ClipMeta::local_bytes).sum(),
            upload_bytes: dir_bytes(&self.root.join("uploads")),
            quarantine_bytes: dir_bytes(&self.root.join("quarantine")),
            pinned: clips.iter().filter(|c| c.pinned).count(),
            free_bytes: fs.map(|f| f.free_bytes),
            total_bytes: fs.map(|f| f.total_bytes),
            free_percent: fs.map(|f| f.free_percent),
            max_bytes: self.cfg.max_bytes.0,
            min_free_percent: self.cfg.min_free_percent,
            retention_days: self.cfg.retention_days,
            require_mount: self.cfg.require_mount,
            mounted: is_mount_point(&self.root).unwrap_or(false),
        })
    }

    /// Bytes of the files besides the clips that count toward `max_bytes`: `uploads/` and
    /// `quarantine/`.
    pub fn other_bytes(&self) -> u64 {
        dir_bytes(&self.root.join("uploads")).saturating_add(dir_bytes(&self.root.join("quarantine")))
    }

    /// Bytes the filesystem must keep free: `min_free_percent` of its size.
    fn reserve(&self, fs: &FsStats) -> u64 {
        (fs.total_bytes as u128 * self.cfg.min_free_percent as u128 / 100) as u64
    }

    /// What retention would delete now, oldest first (clips waiting for their export last: not
    /// by age at all), never pinned clips, given `incoming`
    /// bytes about to be written: (a) clips older than `retention_days` (if > 0), (b) while
    /// clips + [`other_bytes`](Self::other_bytes) + incoming exceed `max_bytes`, (c) while free space (after deleting) minus
    /// incoming is under `min_free_percent` of the filesystem.
    ///
    /// (a) needs a clock it can trust: nothing is deleted by age while `now_ms` is before
    /// [`crate::time::WALL_CLOCK_FLOOR_MS`] (logged once), nor a clip dated before it or in the
    /// future. (b) and (c) go by index order and always apply.
    pub fn cleanup_plan(
        &self,
        index: &Index,
        incoming: u64,
        now_ms: i64,
    ) -> Result<Vec<PlannedDeletion>, StorageError> {
        self.cleanup_plan_skipping(index, incoming, now_ms, &std::collections::HashSet::new())
    }

    /// [`cleanup_plan`](Self::cleanup_plan) keeping the clips in `skip` (ones that could not be
    /// deleted: they still take their room, like pinned ones).
    fn cleanup_plan_skipping(
        &self,
        index: &Index,
        incoming: u64,
        now_ms: i64,
        skip: &std::collections::HashSet<String>,
    ) -> Result<Vec<PlannedDeletion>, StorageError> {
        let clips = index.all()?;
        // Clips still waiting for their export: kept by age, deleted last for room.
        let exporting = index.export_pending_ids()?;
        // What counts toward max_bytes: the clips and the uploads and quarantine directories.
        let mut clip_bytes: u64 =
            clips.iter().map(ClipMeta::local_bytes).sum::<u64>().saturating_add(self.other_bytes());
        let mut freed: u64 = 0;
        let mut planned: Vec<Option<DeletionReason>> = vec![None; clips.len()];

        if self.cfg.retention_days > 0 && !crate::time::wall_clock_trusted(now_ms) {
            if !AGE_SKIP_LOGGED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                log::warn!(
                    "retention: the wall clock reads {}, before {}: not set yet (no RTC, no NTP sync?); \
                     no clip is deleted by age (storage.retention_days) until it is; size and free-space \
                     retention still apply",
                    crate::time::rfc3339_ms(now_ms),
                    crate::time::rfc3339_ms(crate::time::WALL_CLOCK_FLOOR_MS)
                );
            }
        } else if self.cfg.retention_days > 0 {
            if AGE_SKIP_LOGGED.swap(false, std::sync::atomic::Ordering::Relaxed) {
                log::info!("retention: the wall clock is set ({}): age retention on", crate::time::rfc3339_ms(now_ms));
            }
            let cutoff = now_ms.saturating_sub(self.cfg.retention_days as i64 * DAY_MS);
            for (i, c) in clips.iter().enumerate() {
                if !c.pinned
                    && !skip.contains(&c.id)
                    && !exporting.contains(&c.id)
                    && age_known(c.start_ms, now_ms)
                    && c.start_ms < cutoff
                {
                    planned[i] = Some(DeletionReason::Age);
                    clip_bytes = clip_bytes.saturating_sub(c.local_bytes());
                    freed = freed.saturating_add(c.local_bytes());
                }
            }
        }

        let fs = self.fs_stats();
        let max = self.cfg.max_bytes.0;
        // Oldest first, clips waiting for their export after all the others.
        let mut order: Vec<usize> = (0..clips.len()).collect();
        order.sort_by_key(|&i| exporting.contains(&clips[i].id));
        for i in order {
            let c = &clips[i];
            // (A clip only in the bucket frees nothing here: it goes by age only.)
            if c.pinned || c.remote_only || planned[i].is_some() || skip.contains(&c.id) {
                continue;
            }
            let reason = if clip_bytes.saturating_add(incoming) > max {
                DeletionReason::Size
            } else if fs
                .is_some_and(|fs| fs.free_bytes.saturating_add(freed).saturating_sub(incoming) < self.reserve(&fs))
            {
                DeletionReason::FreeSpace
            } else {
                break;
            };
            planned[i] = Some(reason);
            clip_bytes = clip_bytes.saturating_sub(c.local_bytes());
            freed = freed.saturating_add(c.local_bytes());
        }

        Ok(clips
            .into_iter()
            .zip(planned)
            .filter_map(|(clip, reason)| reason.map(|reason| PlannedDeletion { clip, reason }))
            .collect())
    }

    /// Remove a clip's file and poster (missing files are fine); bytes removed.
    fn remove_files(&self, meta: &ClipMeta) -> Result<u64, StorageError> {
        let path = self.abs(&meta.path).ok_or_else(|| StorageError::UnsafePath(meta.path.clone()))?;
        let bytes = remove_file_counted(&path)?;
        Ok(bytes + remove_file_counted(&path.with_extension("jpg"))?)
    }

    /// Delete the planned clips: file and poster first, then the index entry, so an entry
    /// never points to a missing file. A clip whose files cannot be removed (an I/O error) is
    /// skipped and reported in `failed` — one undeletable clip must not stop retention; an
    /// index error stops it.
    pub fn apply_cleanup(&self, index: &Index, plan: &[PlannedDeletion]) -> Result<CleanupReport, StorageError> {
        let mut report = CleanupReport::default();
        for p in plan {
            let bytes = match self.remove_files(&p.clip) {
                Ok(b) => b,
                Err(StorageError::UnsafePath(path)) => {
                    log::warn!("retention: clip {} has unsafe path {path:?}; dropping its index entry only", p.clip.id);
                    0
                }
                Err(e) => {
                    let why = crate::status::error_chain(&e);
                    log::error!("retention: cannot delete clip {}: {why}; skipped", p.clip.id);
                    report.failed.push((p.clip.id.clone(), why));
                    continue;
                }
            };
            index.remove(&p.clip.id)?;
            log::info!("retention: deleted clip {} ({} bytes, reason {:?})", p.clip.id, bytes, p.reason);
            report.freed_bytes += bytes;
            report.deleted.push(p.clip.clone());
        }
        Ok(report)
    }

    /// Before writing a clip of about `incoming` bytes: check the storage is writable, apply
    /// retention, and fail with [`StorageError::Full`] if there is still not enough room
    /// (only pinned clips left). The caller refuses the clip and keeps running.
    pub fn make_room(&self, index: &Index, incoming: u64, now_ms: i64) -> Result<CleanupReport, StorageError> {
        self.check_writable()?;
        let before = self.fs_stats();
        // Recordings give way first (tiered retention): down to min_free_percent + 1 %.
        let recordings = self.recordings_plan(index, &std::collections::HashMap::new(), incoming, now_ms)?;
        let recordings = self.apply_recordings_plan(index, &recordings);
        // Plan, delete; when a clip cannot be deleted, plan again without it (each round skips
        // at least one more clip, so this ends).
        let mut skip = std::collections::HashSet::new();
        let mut report = CleanupReport {
            recordings_freed_bytes: recordings.iter().map(|p| p.segment.bytes).sum(),
            recordings_deleted: recordings,
            ..CleanupReport::default()
        };
        loop {
            let plan = self.cleanup_plan_skipping(index, incoming, now_ms, &skip)?;
            let round = self.apply_cleanup(index, &plan)?;
            report.freed_bytes += round.freed_bytes;
            report.deleted.extend(round.deleted);
            if round.failed.is_empty() {
                break;
            }
            skip.extend(round.failed.iter().map(|(id, _)| id.clone()));
            report.failed.extend(round.failed);
        }

        let clip_bytes: u64 =
            index.all()?.iter().map(ClipMeta::local_bytes).sum::<u64>().saturating_add(self.other_bytes());
        let max = self.cfg.max_bytes.0;
        if clip_bytes.saturating_add(incoming) > max {
            return Err(StorageError::Full { needed: incoming, free: max.saturating_sub(clip_bytes) });
        }
        if let Some(after) = self.fs_stats() {
            // Some filesystems (btrfs, files still open by a reader) free blocks lazily: trust
            // the deletions we just made as well as what statvfs says now.
            let freed = report.freed_bytes.saturating_add(report.recordings_freed_bytes);
            let projected = before.map_or(0, |b| b.free_bytes.saturating_add(freed));
            let free = after.free_bytes.max(projected);
            let needed = incoming.saturating_add(self.reserve(&after));
            if free < needed {
                return Err(StorageError::Full { needed, free });
            }
        }
        Ok(report)
    }

    /// Delete one clip by id: file, poster, then index entry. `None` if there is no such clip.
    pub fn delete_clip(&self, index: &Index, id: &str) -> Result<Option<ClipMeta>, StorageError> {
        if !valid_clip_id(id) {
            return Ok(None);
        }
        let Some(meta) = index.get(id)? else {
            return Ok(None);
        };
        self.remove_files(&meta)?;
        Ok(index.remove(id)?.or(Some(meta)))
    }
}

#[cfg(test)]
mod tests;
