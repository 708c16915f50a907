//! Resumable uploads (tus 1.0): the registry of uploads in progress, their files under
//! `{storage.path}/uploads/`, expiry of abandoned ones, the early type check, and the hand-off
//! to [`finalize`] which turns a finished file into a clip.
//!
//! The HTTP side (headers, reading the PATCH body) is `web::uploads`; this module owns the
//! state and the files ([`body`] writes a PATCH body to disk). Each upload is `{id}.bin` (the
//! bytes) plus `{id}.json` (length, name, device; written once at creation, atomically), so a
//! restart keeps unfinished uploads: they resume at the `.bin`'s length, and one that had
//! every byte is finalized at start. Anything else left in the directory
//! (a finalize's temporary files, a `.bin` without its `.json`) is removed at start. An idle
//! daemon writes nothing: the expiry sweep runs only while unfinished uploads exist.
//!
//! Locks: one `std::sync::Mutex` over the map, never held across an `.await` or a file
//! operation.
//!
//! This file keeps the public types and the [`Uploads`] struct; its methods are in `registry`
//! (the set of uploads in progress), `restore` (start-up recovery), `sweep` (expiry) and
//! `handoff` (a complete upload into a clip through [`finalize`]).

pub mod body;
pub mod finalize;
mod handoff;
mod registry;
mod restore;
mod sweep;

use crate::clip::store::ClipStore;
use crate::config::UploadsConfig;
use crate::storage::StorageError;
use crate::time::wall_now_ms;
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
    /// Uploads in progress are at `uploads.max_uploads` or `uploads.max_in_progress`.
    #[error("{0}")]
    Busy(String),
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

struct UploadEntry {
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
    entries: Mutex<HashMap<String, UploadEntry>>,
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
    use crate::config::Config;
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
        assert_eq!(Config::from_toml(cam, "f").unwrap().uploads.max_in_progress(), 8 << 30, "twice max_bytes");
        for (text, key) in [
            ("[uploads]\nexpire_h = 0\n", "uploads.expire_h"),
            ("[uploads]\nexpire_h = -1.5\n", "uploads.expire_h"),
            ("[uploads]\nmax_bytes = \"12\"\n", "uploads.max_bytes"),
            ("[uploads]\nmax_bytes = \"lots\"\n", "uploads.max_bytes"),
            ("[uploads]\nenable = true\n", "uploads"),
            ("[uploads]\nmax_bytes = \"2GiB\"\nmax_in_progress = \"1GiB\"\n", "uploads.max_in_progress"),
            ("[uploads]\nmax_uploads = 0\n", "uploads.max_uploads"),
        ] {
            let errs = Config::from_toml(&format!("{text}{cam}"), "f").unwrap_err();
            assert!(errs.0.iter().any(|e| e.key.starts_with(key)), "{text}: {errs:?}");
        }
    }
}
