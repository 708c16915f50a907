//! The hand-off of a complete upload to [`super::finalize`]: room on disk for the copy
//! (retention), remux or transcode into a temporary MP4, the poster, then (crash-safe) the clip's sidecar, this upload's `{id}.done`
//! marker, the move into the clip store, and the index entry.
//!
//! Blocking: runs on the upload's own finalize thread, one upload at a time. Must never leave a
//! clip in the store that is neither indexed nor recoverable, and never index one twice.

use super::{finalize, remove_quietly, Uploads};
use crate::clip_meta::{new_clip_id, ClipFile, ClipSidecar, ClipSource};
use crate::time::wall_now_ms;
use std::path::Path;

impl Uploads {
    /// Remux or transcode, poster, index. Blocking (runs on the upload's own thread).
    pub(super) fn make_clip(&self, id: &str) -> Result<String, String> {
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
        // Room for the remuxed copy (about the upload's size), now that every byte is here.
        self.make_room_for(length).map_err(|e| e.to_string())?;
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
            trigger_count: 0,
            trigger_ms: now,
            start_ms: now,
            pre_s_actual: 0.0,
            device: Some(device.to_string()),
            continues: None,
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
            "upload → clip {clip_id}: {} ({} frames, {:.3} s, {size} bytes; sound: {})",
            if out.remuxed { "remuxed" } else { "transcoded" },
            out.frames,
            out.duration_s,
            out.sound.as_deref().unwrap_or("none")
        );
        Ok(clip_id)
    }
}
