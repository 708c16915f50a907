//! Resumable uploads (tus 1.0): the registry of uploads in progress, their files under
//! `{storage.path}/uploads/`, expiry of abandoned ones, the early type check, and the hand-off
//! to [`finalize`] which turns a finished file into a clip.
//!
//! The HTTP side (headers, streaming the PATCH body) is `web::uploads`; this module owns the
//! state. Each upload is `{id}.bin` (the bytes) plus `{id}.json` (length, name, device; written
//! once at creation, atomically), so a restart keeps unfinished uploads: they resume at the `.bin`'s length,
//! and one that had every byte is finalized at start. Anything else left in the directory
//! (a finalize's temporary files, a `.bin` without its `.json`) is removed at start. An idle
//! daemon writes nothing: the expiry sweep runs only while unfinished uploads exist.
//!
//! Locks: one `std::sync::Mutex` over the map, never held across an `.await` or a file
//! operation.

pub mod finalize;

use crate::clip::store::ClipStore;
use crate::clip_meta::{new_clip_id, ClipFile, ClipSidecar, ClipSource};
use crate::config::{Config, UploadsConfig};
use crate::storage::{Storage, StorageError};
use crate::time::{rfc3339_ms, wall_now_ms};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// How many bytes the early type check looks at.
pub const TYPEFIND_BYTES: u64 = 64 * 1024;
/// Finished (done/failed) uploads kept for `GET /api/uploads`.
const KEEP_FINISHED: usize = 100;

/// What can go wrong with an upload.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// No such upload (never created, terminated or expired).
    #[error("no upload {0:?} (finished, terminated or expired)")]
    NotFound(String),
    /// Uploads are switched off in the config.
    #[error("uploads are disabled (uploads.enabled = false)")]
    Disabled,
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// `Upload-Length` over `uploads.max_bytes`, or more bytes than announced.
    #[error("{0}")]
    TooLarge(String),
    /// Wrong offset, or the upload is not accepting bytes now.
    #[error("{0}")]
    Conflict(String),
    /// The chunk's checksum does not match.
    #[error("checksum mismatch: {0}")]
    Checksum(String),
    /// Not a video container.
    #[error("not a video file (found: {0})")]
    NotVideo(String),
    /// Storage refuses (full, missing mount) or failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A file operation failed.
    #[error("upload {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> UploadError + '_ {
    move |source| UploadError::Io { path: path.to_path_buf(), source }
}

/// Where an upload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UploadState {
    /// Accepting bytes.
    Uploading,
    /// Every byte is here; remuxing/transcoding in the background.
    Processing,
    /// Indexed as clip `clip_id`.
    Done,
    /// Could not be made into a clip (`error` says why); nothing indexed.
    Failed,
}

/// `GET /api/uploads/{id}/status` and the entries of `GET /api/uploads`.
#[derive(Debug, Clone, Serialize)]
pub struct UploadStatus {
    /// Upload id (16 hex digits).
    pub id: String,
    /// `filename` metadata.
    pub filename: String,
    /// `device` metadata (default `browser`).
    pub device: String,
    /// Bytes received.
    pub offset: u64,
    /// `Upload-Length`.
    pub length: u64,
    /// Where it is.
    pub state: UploadState,
    /// The clip, once done.
    pub clip_id: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// When an unfinished upload will be deleted unless more bytes arrive (RFC 3339).
    pub expires_at: Option<String>,
}

/// `{id}.json` in the uploads directory: what a restart needs to take an upload up again (not a
/// clip's [`crate::clip_meta::ClipSidecar`], which is written beside the finished clip).
#[derive(Debug, Serialize, Deserialize)]
struct UploadSidecar {
    filename: String,
    device: String,
    length: u64,
    created_ms: i64,
}

struct Entry {
    status: UploadStatus,
    created_ms: i64,
    /// Wall-clock ms of the last byte received (or creation).
    last_ms: i64,
    /// A PATCH is streaming into the file now.
    busy: bool,
    /// The first bytes were checked to be a video container.
    typefound: bool,
}

/// Metadata from `Upload-Metadata`.
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    /// `filename`.
    pub filename: Option<String>,
    /// `filetype` (informational).
    pub filetype: Option<String>,
    /// `device`.
    pub device: Option<String>,
}

/// Parse tus `Upload-Metadata`: `key base64,key2 base64` (a key may have no value).
pub fn parse_metadata(h: &str) -> Result<Metadata, UploadError> {
    use base64::Engine;
    let mut m = Metadata::default();
    for pair in h.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once(' ').unwrap_or((pair, ""));
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v.trim())
            .map_err(|_| UploadError::BadRequest(format!("Upload-Metadata: value of {k:?} is not base64")))?;
        let v = String::from_utf8(bytes)
            .map_err(|_| UploadError::BadRequest(format!("Upload-Metadata: value of {k:?} is not UTF-8")))?;
        match k {
            "filename" | "name" => m.filename = Some(v),
            "filetype" | "type" => m.filetype = Some(v),
            "device" => m.device = Some(v),
            _ => {}
        }
    }
    Ok(m)
}

/// A device name: 1..=64 characters, no control characters, trimmed.
pub fn valid_device_name(name: &str) -> bool {
    let n = name.chars().count();
    (1..=64).contains(&n) && !name.chars().any(char::is_control) && name.trim() == name
}

fn clean_filename(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let s: String = base.chars().filter(|c| !c.is_control()).take(200).collect();
    s.trim().to_string()
}

/// Whether `id` has the shape of an upload id (and so is safe in a path).
pub fn valid_upload_id(id: &str) -> bool {
    id.len() == 16 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn new_upload_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_i64(wall_now_ms());
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

/// All uploads of this daemon.
pub struct Uploads {
    cfg: UploadsConfig,
    auto_encoders: Vec<String>,
    store: Arc<ClipStore>,
    dir: PathBuf,
    entries: Mutex<HashMap<String, Entry>>,
    /// The expiry sweep is running (guarded by `entries`' lock for start/stop decisions).
    sweeping: std::sync::atomic::AtomicBool,
    /// Held while one upload is remuxed or transcoded: finalizing runs one at a time, so ten
    /// finished uploads do not start ten encoders next to the cameras'.
    finalizing: Mutex<()>,
    /// PATCH bodies streaming at once (each holds a writer thread): more get 503.
    pub patch_slots: Arc<tokio::sync::Semaphore>,
}

/// How many PATCH bodies may stream at once (a phone sends one at a time per upload).
pub const MAX_PATCHES: usize = 8;

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

    /// Read the uploads directory: returns how many uploads wait for bytes and the ids of those
    /// that have all of them.
    fn restore(&self) -> (usize, Vec<String>) {
        let Ok(rd) = std::fs::read_dir(&self.dir) else { return (0, Vec::new()) };
        let files: Vec<PathBuf> = rd.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect();
        let mut kept = std::collections::HashSet::new();
        let (mut waiting, mut complete) = (0, Vec::new());
        let now = wall_now_ms();
        for p in &files {
            let Some(id) = p.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            let bin = self.file(id);
            let sidecar: Option<UploadSidecar> =
                std::fs::read(p).ok().and_then(|b| serde_json::from_slice(&b).ok()).filter(|_| valid_upload_id(id));
            let (Some(sc), Ok(m)) = (sidecar, std::fs::metadata(&bin)) else { continue };
            // Finalized before the stop, but not cleaned up: the clip exists (recovery indexes
            // it if the index missed it); making it again would give a second clip.
            let marker = self.done_marker(id);
            if let Ok(rel) = std::fs::read_to_string(&marker) {
                if self.store.storage.abs(rel.trim()).is_some_and(|p| p.exists()) {
                    log::info!("upload {id}: already became the clip at {}; removing its files", rel.trim());
                    continue;
                }
                remove_quietly(&marker);
            }
            let offset = m.len().min(sc.length);
            let state = UploadState::Uploading;
            let status = UploadStatus {
                id: id.to_string(),
                filename: sc.filename,
                device: sc.device,
                offset,
                length: sc.length,
                state,
                clip_id: None,
                error: None,
                created_at: rfc3339_ms(sc.created_ms),
                expires_at: None,
            };
            log::info!("upload {id}: taken up after restart at {offset} of {} bytes", sc.length);
            if offset == sc.length {
                complete.push(id.to_string());
            } else {
                waiting += 1;
            }
            // The type check runs again at the next PATCH (typefound = false).
            self.lock().insert(
                id.to_string(),
                Entry { status, created_ms: sc.created_ms, last_ms: now, busy: false, typefound: false },
            );
            kept.insert(bin);
            kept.insert(p.clone());
        }
        for p in files.iter().filter(|p| !kept.contains(*p)) {
            match std::fs::remove_file(p) {
                Ok(()) => log::warn!("uploads: removed {} left by a previous run", p.display()),
                Err(err) => log::warn!("uploads: cannot remove {}: {err}", p.display()),
            }
        }
        (waiting, complete)
    }

    /// Delete upload `id`'s files (bytes, sidecar, done marker).
    fn remove_files(&self, id: &str) {
        remove_quietly(&self.file(id));
        remove_quietly(&self.dir.join(format!("{id}.json")));
        remove_quietly(&self.done_marker(id));
    }

    /// `{id}.done`: written (holding the clip's path) just before finalize moves the clip into
    /// place; removed with the upload's other files once the clip is indexed.
    fn done_marker(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.done"))
    }

    /// The `[uploads]` config.
    pub fn config(&self) -> &UploadsConfig {
        &self.cfg
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn expire_ms(&self) -> i64 {
        (self.cfg.expire_h * 3_600_000.0) as i64
    }

    /// The file of upload `id` (id already validated).
    pub fn file(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.bin"))
    }

    fn snapshot(&self, e: &Entry) -> UploadStatus {
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

    /// Create an upload of `length` bytes: checks the size limit and the disk (retention may
    /// free room first), creates the empty file. Blocking.
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
        self.check_space(length)?;
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
        let e = Entry { status, created_ms: now, last_ms: now, busy: false, typefound: false };
        let snap = self.snapshot(&e);
        g.insert(id, e);
        Ok(snap)
    }

    /// Retention makes room for the clip, then the filesystem must hold the upload and its
    /// remuxed copy on top of the storage reserve (`storage.min_free_percent`).
    fn check_space(&self, length: u64) -> Result<(), UploadError> {
        let storage: &Storage = &self.store.storage;
        let index = self.store.index()?;
        // The upload and its remuxed copy, both.
        storage.make_room(&index, length.saturating_mul(2), wall_now_ms())?;
        if let Some(fs) = storage.fs_stats() {
            let reserve = (fs.total_bytes as u128 * storage.config().min_free_percent as u128 / 100) as u64;
            let needed = length.saturating_mul(2).saturating_add(reserve);
            if fs.free_bytes < needed {
                return Err(StorageError::Full { needed, free: fs.free_bytes }.into());
            }
        }
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

    /// Remux or transcode, poster, index. Blocking (runs on the upload's own thread).
    fn make_clip(&self, id: &str) -> Result<String, String> {
        let (filename, device, length) = {
            let g = self.lock();
            let e = g.get(id).ok_or("upload vanished")?;
            (e.status.filename.clone(), e.status.device.clone(), e.status.length)
        };
        let input = self.file(id);
        let tmp = self.dir.join(format!("{id}.out.mp4"));
        let tmp_jpg = tmp.with_extension("jpg");
        let result = self.make_clip_files(id, &input, &tmp, &tmp_jpg, &filename, &device, length);
        remove_quietly(&tmp);
        remove_quietly(&tmp_jpg);
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn make_clip_files(
        &self,
        id: &str,
        input: &Path,
        tmp: &Path,
        tmp_jpg: &Path,
        filename: &str,
        device: &str,
        length: u64,
    ) -> Result<String, String> {
        let timeout = std::time::Duration::from_secs(600 + length / 1_000_000);
        let out = finalize::to_mp4(input, tmp, &self.auto_encoders, timeout).map_err(|e| e.to_string())?;
        let jpeg = crate::clip::poster::jpeg_from_file(tmp)
            .map_err(|e| format!("the video cannot be decoded (no poster frame): {e}"))?;
        std::fs::write(tmp_jpg, jpeg).map_err(|e| format!("poster: {e}"))?;
        let now = wall_now_ms();
        let clip_id = new_clip_id(now);
        let rel = crate::clip_meta::clip_rel_path(crate::config::UPLOAD_CAMERA, &clip_id, now);
        let storage = &self.store.storage;
        let dest = storage.abs(&rel).ok_or("clip path outside storage")?;
        let dest_dir = dest.parent().ok_or("clip path has no directory")?.to_path_buf();
        std::fs::create_dir_all(&dest_dir).map_err(|e| format!("{}: {e}", dest_dir.display()))?;
        let size = std::fs::metadata(tmp).map_err(|e| e.to_string())?.len();
        std::fs::File::open(tmp).and_then(|f| f.sync_all()).map_err(|e| format!("fsync: {e}"))?;
        // Crash safety, before the clip appears: its sidecar (so recovery indexes a clip the
        // index never got as an upload, with its device) and this upload's marker naming it (so
        // a restart does not finalize the same bytes into a second clip).
        let sidecar = ClipSidecar {
            id: clip_id.clone(),
            camera: crate::config::UPLOAD_CAMERA.into(),
            source: ClipSource::Upload,
            label: Some(filename.to_string()),
            trigger_ids: Vec::new(),
            trigger_ms: now,
            start_ms: now,
            pre_s_actual: 0.0,
            device: Some(device.to_string()),
        };
        let json = serde_json::to_vec(&sidecar).map_err(|e| format!("sidecar: {e}"))?;
        crate::storage::write_private(&dest.with_extension("json"), &json, 0o644)
            .map_err(|e| format!("sidecar: {e}"))?;
        let marker = self.done_marker(id);
        crate::storage::write_private(&marker, rel.as_bytes(), 0o644).map_err(|e| format!("marker: {e}"))?;
        std::fs::rename(tmp_jpg, dest.with_extension("jpg")).map_err(|e| format!("poster: {e}"))?;
        std::fs::rename(tmp, &dest).map_err(|e| format!("{}: {e}", dest.display()))?;
        std::fs::File::open(&dest_dir).and_then(|d| d.sync_all()).map_err(|e| format!("fsync dir: {e}"))?;
        let file = ClipFile {
            path: rel,
            duration: std::time::Duration::from_secs_f64(out.duration_s.max(0.0)),
            size_bytes: size,
            frames: out.frames,
            partial: false,
        };
        let meta = sidecar.into_meta(file);
        let indexed =
            self.store.index().map_err(|e| e.to_string()).and_then(|i| i.insert(&meta).map_err(|e| e.to_string()));
        if let Err(e) = indexed {
            remove_quietly(&dest);
            remove_quietly(&dest.with_extension("jpg"));
            remove_quietly(&dest.with_extension("json"));
            return Err(format!("cannot index the clip: {e}"));
        }
        remove_quietly(&dest.with_extension("json"));
        log::info!(
            "upload → clip {clip_id}: {} ({} frames, {:.3} s, {size} bytes)",
            if out.remuxed { "remuxed" } else { "transcoded" },
            out.frames,
            out.duration_s
        );
        Ok(clip_id)
    }

    /// Start the expiry sweep unless it runs. Call from the async runtime.
    pub fn ensure_sweeper(self: &Arc<Self>) {
        use std::sync::atomic::Ordering;
        let _g = self.lock();
        if self.sweeping.swap(true, Ordering::SeqCst) {
            return;
        }
        // A weak reference: the sweep must not keep the uploads (and the clip index) alive
        // after the daemon has stopped.
        tokio::spawn(Self::sweep(Arc::downgrade(self)));
    }

    /// While unfinished uploads exist: sleep until the earliest expires, delete expired ones.
    async fn sweep(weak: std::sync::Weak<Self>) {
        use std::sync::atomic::Ordering;
        loop {
            let Some(me) = weak.upgrade() else { return };
            let (expired, next) = {
                let mut g = me.lock();
                let now = wall_now_ms();
                let limit = me.expire_ms();
                let expired: Vec<String> = g
                    .iter()
                    .filter(|(_, e)| e.status.state == UploadState::Uploading && !e.busy && now - e.last_ms >= limit)
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in &expired {
                    g.remove(k);
                }
                let next = g
                    .values()
                    .filter(|e| e.status.state == UploadState::Uploading)
                    .map(|e| if e.busy { now + 1000 } else { e.last_ms + limit })
                    .min();
                if next.is_none() {
                    me.sweeping.store(false, Ordering::SeqCst);
                }
                (expired, next)
            };
            for id in expired {
                log::info!("upload {id} expired (no bytes for uploads.expire_h = {} h)", me.cfg.expire_h);
                let me = me.clone();
                let _ = tokio::task::spawn_blocking(move || me.remove_files(&id)).await;
            }
            drop(me);
            let Some(next) = next else { return };
            let wait = (next - wall_now_ms()).clamp(10, 3_600_000) as u64;
            tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
        }
    }

    /// Fail the upload as not a video: forget it and delete its file. Blocking (one unlink).
    pub fn reject(&self, id: &str) {
        self.lock().remove(id);
        self.remove_files(id);
    }
}

fn remove_quietly(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => log::warn!("cannot remove {}: {e}", path.display()),
    }
}

/// What the first bytes of `path` are (GStreamer typefind on up to [`TYPEFIND_BYTES`]):
/// `Ok(())` for a video container, else [`UploadError::NotVideo`] naming what was found. Blocking.
pub fn typefind(path: &Path) -> Result<(), UploadError> {
    use std::io::Read;
    let mut data = Vec::with_capacity(TYPEFIND_BYTES as usize);
    std::fs::File::open(path).and_then(|f| f.take(TYPEFIND_BYTES).read_to_end(&mut data)).map_err(io_err(path))?;
    crate::gst::init().map_err(|e| UploadError::BadRequest(e.to_string()))?;
    let found = gstreamer_base::functions::type_find_helper_for_data(None::<&gstreamer::Object>, &data)
        .ok()
        .and_then(|(caps, _)| caps.structure(0).map(|s| s.name().to_string()));
    match found {
        Some(name) if is_video_type(&name) => Ok(()),
        Some(name) => Err(UploadError::NotVideo(name)),
        None => Err(UploadError::NotVideo("unknown data".into())),
    }
}

fn is_video_type(name: &str) -> bool {
    name.starts_with("video/") || name == "application/x-3gp" || name == "application/mxf"
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn metadata_parses() {
        let m = parse_metadata("filename ZG9nLm1wNA==,filetype dmlkZW8vbXA0,device cGhvbmU=,empty").unwrap();
        assert_eq!(m.filename.as_deref(), Some("dog.mp4"));
        assert_eq!(m.filetype.as_deref(), Some("video/mp4"));
        assert_eq!(m.device.as_deref(), Some("phone"));
        assert!(parse_metadata("filename !!!").is_err());
        assert!(valid_upload_id("0123456789abcdef"));
        assert!(!valid_upload_id("../../etc/passwd"));
        assert!(valid_device_name("Anna's phone"));
        assert!(!valid_device_name(" x"));
        assert!(!valid_device_name(""));
        assert_eq!(clean_filename("C:\\x\\a.mp4"), "a.mp4");
    }

    #[test]
    fn config_errors_name_the_key() {
        let cam = "[[camera]]\nid = \"c\"\nsource = { kind = \"test\", width = 64, height = 48, fps = 5 }\n";
        let ok = Config::from_toml(&format!("[uploads]\nexpire_h = 0.001\nmax_bytes = \"1GiB\"\n{cam}"), "f").unwrap();
        assert_eq!(ok.uploads.max_bytes.0, 1 << 30);
        assert!(ok.uploads.enabled);
        assert_eq!(Config::from_toml(cam, "f").unwrap().uploads.max_bytes.0, 4 << 30);
        for (text, key) in [
            ("[uploads]\nexpire_h = 0\n", "uploads.expire_h"),
            ("[uploads]\nexpire_h = -1.5\n", "uploads.expire_h"),
            ("[uploads]\nmax_bytes = \"12\"\n", "uploads.max_bytes"),
            ("[uploads]\nmax_bytes = \"lots\"\n", "uploads.max_bytes"),
            ("[uploads]\nenable = true\n", "uploads"),
        ] {
            let errs = Config::from_toml(&format!("{text}{cam}"), "f").unwrap_err();
            assert!(errs.0.iter().any(|e| e.key.starts_with(key)), "{text}: {errs:?}");
        }
    }
}
