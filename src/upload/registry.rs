//! The registry of uploads: creating one (size limit, the limits on uploads in progress, its
//! files), room on disk for bytes as they arrive, the PATCH
//! bookkeeping (offset, busy, type check), status and listing, termination, and the hand-off of
//! a complete upload to its finalize thread.
//!
//! Locks: the map's `std::sync::Mutex` ([`Uploads::lock`]) is never held across an `.await` or
//! a file operation. Must never write an upload's bytes (that is `web::uploads`) nor speak HTTP.

use super::{
    clean_filename, io_err, new_upload_id, remove_quietly, valid_device_name, Metadata, UploadEntry, UploadError,
    UploadSidecar, UploadState, UploadStatus, Uploads, KEEP_FINISHED, MAX_PATCHES, TYPEFIND_BYTES,
};
use crate::clip::store::ClipStore;
use crate::config::{Config, UploadsConfig};
use crate::storage::StorageError;
use crate::time::{rfc3339_ms, wall_now_ms};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

impl Uploads {
    /// The registry for `config`: takes up the uploads a previous run left unfinished (see the
    /// module docs) and removes every other file in the uploads directory. Call inside the
    /// tokio runtime (the expiry sweep and finalize threads may start).
    pub fn new(config: &Config, store: Arc<ClipStore>) -> Arc<Uploads> {
        let dir = config.storage.path.join("uploads");
        let me = Arc::new(Uploads {
            cfg: config.uploads.clone(),
            auto_encoders: config.auto_encoders.clone(),
            store,
            dir,
            entries: Mutex::new(HashMap::new()),
            sweeping: std::sync::atomic::AtomicBool::new(false),
            finalizing: Mutex::new(()),
            patch_slots: Arc::new(tokio::sync::Semaphore::new(MAX_PATCHES)),
        });
        let (waiting, complete) = me.restore();
        for id in &complete {
            me.finish(id);
        }
        if waiting > 0 && tokio::runtime::Handle::try_current().is_ok() {
            me.ensure_sweeper();
        }
        me
    }

    /// Delete upload `id`'s files (bytes, sidecar, done marker).
    pub(super) fn remove_files(&self, id: &str) {
        remove_quietly(&self.file(id));
        remove_quietly(&self.dir.join(format!("{id}.json")));
        remove_quietly(&self.done_marker(id));
    }

    /// `{id}.done`: written (holding the clip's path) just before finalize moves the clip into
    /// place; removed with the upload's other files once the clip is indexed.
    pub(super) fn done_marker(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.done"))
    }

    /// The `[uploads]` config.
    pub fn config(&self) -> &UploadsConfig {
        &self.cfg
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, UploadEntry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn expire_ms(&self) -> i64 {
        (self.cfg.expire_h * 3_600_000.0) as i64
    }

    /// The file of upload `id` (id already validated).
    pub fn file(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.bin"))
    }

    fn snapshot(&self, e: &UploadEntry) -> UploadStatus {
        let mut s = e.status.clone();
        s.expires_at = (s.state == UploadState::Uploading).then(|| rfc3339_ms(e.last_ms + self.expire_ms()));
        s
    }

    /// When the unfinished upload `id` expires (Unix ms).
    pub fn expires_ms(&self, id: &str) -> Option<i64> {
        let g = self.lock();
        let e = g.get(id)?;
        (e.status.state == UploadState::Uploading).then_some(e.last_ms + self.expire_ms())
    }

    /// Create an upload of `length` bytes: checks the size limit, the limits on uploads in
    /// progress (`uploads.max_in_progress`, `uploads.max_uploads`) and that storage is
    /// writable, creates the empty file. Deletes no clip: room is made as bytes arrive
    /// ([`make_room_for`](Self::make_room_for)). Blocking.
    pub fn create(&self, length: u64, meta: Metadata) -> Result<UploadStatus, UploadError> {
        if !self.cfg.enabled {
            return Err(UploadError::Disabled);
        }
        if length > self.cfg.max_bytes.0 {
            return Err(UploadError::TooLarge(format!(
                "Upload-Length {length} is over the limit of {} bytes (uploads.max_bytes = {})",
                self.cfg.max_bytes.0, self.cfg.max_bytes
            )));
        }
        let device = meta.device.unwrap_or_else(|| "browser".into());
        if !valid_device_name(&device) {
            return Err(UploadError::BadRequest(format!(
                "device {device:?}: must be 1..=64 characters without control characters or outer spaces"
            )));
        }
        let id = new_upload_id();
        let filename = meta.filename.as_deref().map(clean_filename).filter(|f| !f.is_empty());
        let filename = filename.unwrap_or_else(|| format!("upload-{id}"));
        // Never deletes a clip here (the bytes may never come), but an upload larger than the
        // whole storage budget can never be kept.
        let storage = &self.store.storage;
        storage.check_writable()?;
        let budget = storage.config().max_bytes.0;
        if length > budget {
            return Err(StorageError::Full { needed: length, free: budget }.into());
        }
        self.in_progress_check(&self.lock(), length)?;
        std::fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        let path = self.file(&id);
        std::fs::File::create(&path).map_err(io_err(&path))?;
        let now = wall_now_ms();
        let sidecar = UploadSidecar { filename: filename.clone(), device: device.clone(), length, created_ms: now };
        let side = self.dir.join(format!("{id}.json"));
        let json = serde_json::to_vec(&sidecar).map_err(|e| UploadError::BadRequest(e.to_string()))?;
        // Atomic (temporary file, fsync, rename, directory fsync): a torn sidecar would orphan
        // the upload's bytes at the next start.
        if let Err(e) = crate::storage::write_private(&side, &json, 0o640) {
            remove_quietly(&path);
            return Err(io_err(&side)(e));
        }
        let status = UploadStatus {
            id: id.clone(),
            filename,
            device,
            offset: 0,
            length,
            state: UploadState::Uploading,
            clip_id: None,
            error: None,
            created_at: rfc3339_ms(now),
            expires_at: None,
        };
        let mut g = self.lock();
        // Checked again with the insert, under one lock: creations racing each other.
        if let Err(e) = self.in_progress_check(&g, length) {
            drop(g);
            remove_quietly(&path);
            remove_quietly(&side);
            return Err(e);
        }
        let e = UploadEntry { status, created_ms: now, last_ms: now, busy: false, typefound: false };
        let snap = self.snapshot(&e);
        g.insert(id, e);
        Ok(snap)
    }

    /// Whether one more upload of `length` bytes fits the limits on uploads in progress
    /// (uploading or processing: their files are on disk).
    fn in_progress_check(&self, g: &HashMap<String, UploadEntry>, length: u64) -> Result<(), UploadError> {
        let active = g.values().filter(|e| matches!(e.status.state, UploadState::Uploading | UploadState::Processing));
        let (count, bytes) = active.fold((0u32, 0u64), |(n, b), e| (n + 1, b.saturating_add(e.status.length)));
        if count >= self.cfg.max_uploads {
            return Err(UploadError::Busy(format!(
                "{count} uploads are in progress already (uploads.max_uploads = {}); finish or delete one first",
                self.cfg.max_uploads
            )));
        }
        let max = self.cfg.max_in_progress();
        if bytes.saturating_add(length) > max {
            return Err(UploadError::Busy(format!(
                "uploads in progress hold {bytes} bytes; {length} more is over uploads.max_in_progress \
                 ({max} bytes); finish or delete one first"
            )));
        }
        Ok(())
    }

    /// Room for `incoming` more bytes of an upload, as they arrive (a PATCH's next bytes, a
    /// finalize's copy): retention deletes the oldest clips if the storage budget
    /// (`storage.max_bytes`, which counts `uploads/`) or the free-space reserve needs it, else
    /// [`StorageError::Full`]. Blocking.
    pub fn make_room_for(&self, incoming: u64) -> Result<(), UploadError> {
        let index = self.store.index()?;
        self.store.storage.make_room(&index, incoming, wall_now_ms())?;
        Ok(())
    }

    /// Status of one upload.
    pub fn status(&self, id: &str) -> Option<UploadStatus> {
        self.lock().get(id).map(|e| self.snapshot(e))
    }

    /// Every upload known, newest first.
    pub fn list(&self) -> Vec<UploadStatus> {
        let g = self.lock();
        let mut v: Vec<(i64, UploadStatus)> = g.values().map(|e| (e.created_ms, self.snapshot(e))).collect();
        v.sort_by(|a, b| b.0.cmp(&a.0));
        v.into_iter().map(|(_, s)| s).collect()
    }

    /// Start a PATCH at `offset`: the upload must be accepting bytes at exactly that offset
    /// and no other PATCH may be streaming. Returns the file and the bytes still expected.
    pub fn begin_patch(&self, id: &str, offset: u64) -> Result<(PathBuf, u64), UploadError> {
        let mut g = self.lock();
        let e = g.get_mut(id).ok_or_else(|| UploadError::NotFound(id.into()))?;
        if e.status.state != UploadState::Uploading {
            return Err(UploadError::Conflict(format!("upload {id} is complete (state {:?})", e.status.state)));
        }
        if e.busy {
            return Err(UploadError::Conflict(format!("another PATCH is still writing to upload {id}")));
        }
        if offset != e.status.offset {
            return Err(UploadError::Conflict(format!(
                "Upload-Offset {offset} does not match the upload's offset {}",
                e.status.offset
            )));
        }
        e.busy = true;
        e.last_ms = wall_now_ms();
        Ok((self.file(id), e.status.length - e.status.offset))
    }

    /// End a PATCH's write: the upload now holds `offset` bytes. Returns whether it still
    /// exists (it may have been terminated meanwhile), whether the type check is due, and whether
    /// it is complete. While either follow-up is due the upload stays busy (no other PATCH can
    /// start, a second "complete" cannot finalize it twice) until [`settled`](Self::settled).
    pub fn end_patch(&self, id: &str, offset: u64) -> Option<(bool, bool)> {
        let mut g = self.lock();
        let e = g.get_mut(id)?;
        e.status.offset = offset;
        e.last_ms = wall_now_ms();
        let complete = offset == e.status.length;
        let typefind_due = !e.typefound && (offset >= TYPEFIND_BYTES || complete);
        e.busy = typefind_due || complete;
        Some((typefind_due, complete))
    }

    /// The follow-up of [`end_patch`](Self::end_patch) is done: the upload takes PATCHes again
    /// (if it still accepts bytes).
    pub fn settled(&self, id: &str) {
        if let Some(e) = self.lock().get_mut(id) {
            e.busy = false;
        }
    }

    /// The type check passed.
    pub fn set_typefound(&self, id: &str) {
        if let Some(e) = self.lock().get_mut(id) {
            e.typefound = true;
        }
    }

    /// Terminate: forget the upload and delete its file. Blocking (one unlink).
    pub fn terminate(&self, id: &str) -> Result<(), UploadError> {
        let removed = {
            let mut g = self.lock();
            match g.get(id) {
                None => return Err(UploadError::NotFound(id.into())),
                Some(e) if e.status.state == UploadState::Processing => {
                    return Err(UploadError::Conflict(format!("upload {id} is being processed")))
                }
                Some(_) => g.remove(id),
            }
        };
        if removed.is_some() {
            self.remove_files(id);
        }
        Ok(())
    }

    /// Every byte is here: hand the file to a background thread that makes it a clip.
    pub fn finish(self: &Arc<Self>, id: &str) {
        {
            let mut g = self.lock();
            // Only once: from Uploading, with every byte.
            let Some(e) = g.get_mut(id) else { return };
            if e.status.state != UploadState::Uploading || e.status.offset != e.status.length {
                return;
            }
            e.status.state = UploadState::Processing;
            e.busy = false;
        }
        let me = self.clone();
        let id2 = id.to_string();
        let spawned = std::thread::Builder::new().name(format!("upload-{}", &id[..8])).spawn(move || {
            let result = {
                let _one_at_a_time = me.finalizing.lock().unwrap_or_else(|p| p.into_inner());
                me.make_clip(&id2)
            };
            me.finished(&id2, result);
        });
        if let Err(e) = spawned {
            self.finished(id, Err(format!("cannot start the finalize thread: {e}")));
        }
    }

    fn finished(&self, id: &str, result: Result<String, String>) {
        self.remove_files(id);
        let mut g = self.lock();
        if let Some(e) = g.get_mut(id) {
            match result {
                Ok(clip) => {
                    log::info!("upload {id}: clip {clip} from {:?} ({} bytes)", e.status.filename, e.status.length);
                    e.status.state = UploadState::Done;
                    e.status.clip_id = Some(clip);
                }
                Err(err) => {
                    log::warn!("upload {id} ({:?}) failed: {err}", e.status.filename);
                    e.status.state = UploadState::Failed;
                    e.status.error = Some(err);
                }
            }
        }
        // Bounded memory: forget the oldest finished uploads.
        let mut finished: Vec<(i64, String)> = g
            .iter()
            .filter(|(_, e)| matches!(e.status.state, UploadState::Done | UploadState::Failed))
            .map(|(k, e)| (e.created_ms, k.clone()))
            .collect();
        if finished.len() > KEEP_FINISHED {
            finished.sort();
            for (_, k) in &finished[..finished.len() - KEEP_FINISHED] {
                g.remove(k);
            }
        }
    }

    /// Fail the upload as not a video: forget it and delete its file. Blocking (one unlink).
    pub fn reject(&self, id: &str) {
        self.lock().remove(id);
        self.remove_files(id);
    }
}
