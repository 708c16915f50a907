//! Start-up recovery: takes up the uploads a previous run left in `{storage.path}/uploads/`
//! (each a `{id}.bin` with its `{id}.json`), resuming them at the `.bin`'s length, and removes
//! every other file there. An upload whose `{id}.done` marker names an existing clip is not
//! made again. Reads only the small sidecars (a `.bin` of gigabytes costs nothing here).
//!
//! Must never finalize or delete an upload that can still be taken up, and never speak HTTP.

use super::{remove_quietly, valid_upload_id, UploadEntry, UploadSidecar, UploadState, UploadStatus, Uploads};
use crate::clip::recovery::read_small;
use crate::time::{rfc3339_ms, wall_now_ms};
use std::path::PathBuf;

impl Uploads {
    /// Read the uploads directory: returns how many uploads wait for bytes and the ids of those
    /// that have all of them.
    pub(super) fn restore(&self) -> (usize, Vec<String>) {
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
                read_small(p).and_then(|b| serde_json::from_slice(&b).ok()).filter(|_| valid_upload_id(id));
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
                UploadEntry { status, created_ms: sc.created_ms, last_ms: now, busy: false, typefound: false },
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
}
