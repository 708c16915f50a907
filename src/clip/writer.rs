//! The clip file of one clip (a child of [`super`], on its writer thread): creates the sidecar
//! and the `.part` file, appends one fragment per GOP (each `fdatasync`ed), finalizes it into a
//! regular MP4 and indexes it — or, when storage fails, removes what was written.
//!
//! Sound: the AAC frames the recorder collected go into the same fragments (track 2), each
//! fragment taking those that start before its video ends ([`mp4::av::AvFragments`] cuts the
//! fragments; this file writes them); a clip with no sound yet when its file is created (at its
//! first GOP's end) has no track.
//!
//! Must never leave a failed clip where the index or start-up recovery would take it for a clip,
//! and never remove a clip once its file is complete (renamed to `.mp4`).

use super::*;
use crate::mp4::av::AvFragments;

/// Write the frames in `gop` as one fragment, with the sound in `audio` that starts before its
/// end (taken out of `audio`); `next_pts` gives the last frame's duration. `clip`: the clip as
/// the machine holds it, or held it when it closed. `last`: the clip's final fragment.
#[allow(clippy::too_many_arguments)]
pub(super) fn flush(
    shared: &Shared,
    id: &str,
    w: &mut Option<Writer>,
    gop: &mut Vec<EncodedFrame>,
    audio: &mut Vec<AudioFrame>,
    next_pts: Option<Duration>,
    clip: &OpenClip,
    last: bool,
) -> Result<(), String> {
    let start = clip.start;
    if gop.is_empty() {
        return Ok(());
    }
    if w.is_none() {
        // T − pre may fall after the last frame of the GOP that precedes it: then that GOP
        // would be all lead-in; start the file at the next keyframe instead.
        if !gop.iter().any(|f| f.pts + f.duration / 2 >= start) && next_pts.is_some() {
            gop.clear();
            return Ok(());
        }
        *w = Some(Writer::create(shared, id, gop, audio, clip)?);
    }
    let Some(writer) = w.as_mut() else { return Ok(()) };
    writer.write_fragment(&shared.store.storage, gop, audio, next_pts, last)?;
    gop.clear();
    Ok(())
}

/// An open `.part` file.
pub(super) struct Writer {
    file: std::fs::File,
    part: PathBuf,
    rel: String,
    av: AvFragments,
    poster: Vec<u8>,
    sidecar: ClipSidecar,
}

impl Writer {
    pub(super) fn create(
        shared: &Shared,
        id: &str,
        gop: &[EncodedFrame],
        audio: &mut Vec<AudioFrame>,
        clip: &OpenClip,
    ) -> Result<Self, String> {
        let start = clip.start;
        let first = &gop[0];
        // The first presented frame: the first at or after T − pre (start lies in this GOP).
        let presented = gop.iter().find(|f| f.pts + f.duration / 2 >= start).map(|f| f.pts).unwrap_or(first.pts);
        log::debug!(
            "clip {id}: start {:?}, first frame {:?} (+{:?}), presented {:?}, {} frames in first GOP",
            start,
            first.pts,
            first.duration,
            presented,
            gop.len()
        );
        let fmt = shared.input.status.format();
        let (w, h) = fmt.map(|f| (f.width, f.height)).unwrap_or((0, 0));
        let av = AvFragments::start(first, presented, w, h, audio).map_err(|e| e.to_string())?;
        // The triggers known now (the machine's, while the clip is open there).
        let (first_at, label, trigger_ids, source, continues) = {
            let m = lock(&shared.machine);
            let o = m.get(id).unwrap_or(clip);
            (
                o.first_at,
                o.triggers.first().and_then(|t| t.label.clone()),
                o.triggers.iter().map(|t| t.id.clone()).collect(),
                o.source,
                o.continues.clone(),
            )
        };
        let start_ms = shared.input.clock.wall_ms(presented);
        let rel = crate::clip_meta::clip_rel_path(&shared.input.camera, id, start_ms);
        let abs = shared.store.storage.abs(&rel).ok_or_else(|| format!("bad clip path {rel}"))?;
        let dir = abs.parent().ok_or("clip path has no directory")?;
        // A new date (or camera) directory: its entry in the parent must survive a power cut.
        crate::storage::create_dir_durable(dir, 2).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let sidecar = ClipSidecar {
            id: id.into(),
            camera: shared.input.camera.clone(),
            source,
            label,
            trigger_ids,
            trigger_count: 0,
            trigger_ms: shared.input.clock.wall_ms(first_at),
            start_ms,
            pre_s_actual: first_at.saturating_sub(presented).as_secs_f64(),
            device: None,
            continues,
        };
        let side = abs.with_extension("json");
        if let Ok(json) = serde_json::to_vec(&sidecar) {
            crate::storage::write_private(&side, &json, 0o644)
                .map_err(|e| format!("cannot write {}: {e}", side.display()))?;
        }
        let part = abs.with_extension("mp4.part");
        let created = (|| {
            shared.store.storage.injected_fault(&part)?;
            let mut file = std::fs::File::create(&part)?;
            file.write_all(&av.mp4().init_segment())?;
            Ok::<_, std::io::Error>(file)
        })();
        let file = created.map_err(|e| {
            remove_quietly(&part);
            remove_quietly(&side);
            format!("cannot write {}: {e}", part.display())
        })?;
        fsync_dir(dir);
        Ok(Writer { file, part, rel, av, poster: first.data.to_vec(), sidecar })
    }

    fn write_fragment(
        &mut self,
        storage: &crate::storage::Storage,
        gop: &[EncodedFrame],
        audio: &mut Vec<AudioFrame>,
        next_pts: Option<Duration>,
        last: bool,
    ) -> Result<(), String> {
        let frag = self.av.fragment(gop, audio, next_pts, last);
        storage.injected_fault(&self.part).map_err(|e| format!("write {}: {e}", self.part.display()))?;
        self.file.write_all(&frag).map_err(|e| format!("write {}: {e}", self.part.display()))?;
        self.file.sync_data().map_err(|e| format!("fsync {}: {e}", self.part.display()))?;
        Ok(())
    }

    pub(super) fn finish(mut self, shared: &Shared, closed: &OpenClip) -> Result<ClipMeta, String> {
        // Regular MP4 in place (append moov, sync, retype init moov + moofs as `free`, sync):
        // players then apply the edit list as a trim. A crash here is completed by recovery.
        let plan = self.av.mp4().finalize();
        let final_path = self.part.with_extension("");
        let finalized = shared
            .store
            .storage
            .injected_fault(&self.part)
            .and_then(|()| mp4::apply_finalize(&mut self.file, &plan))
            .and_then(|size| std::fs::rename(&self.part, &final_path).map(|()| size));
        let size = match finalized {
            Ok(size) => size,
            Err(e) => {
                let e = format!("finishing {}: {e}", self.part.display());
                self.discard();
                return Err(e);
            }
        };
        let expected = self.av.mp4().bytes_written() + plan.moov.len() as u64;
        if size != expected {
            log::warn!("clip {}: finalized file is {size} bytes, expected {expected}", self.sidecar.id);
        }
        if let Some(dir) = final_path.parent() {
            fsync_dir(dir);
        }
        match crate::clip::poster::jpeg_from_keyframe(&self.poster) {
            Ok(jpeg) => {
                // Atomic and fsynced: a power cut leaves the old poster or the new, never a torn one.
                if let Err(e) = crate::storage::write_private(&final_path.with_extension("jpg"), &jpeg, 0o644) {
                    log::warn!("clip {}: poster not written: {e}", self.sidecar.id);
                }
            }
            Err(e) => log::warn!("clip {}: no poster: {e}", self.sidecar.id),
        }
        let presented = self.av.presented();
        let sidecar = ClipSidecar {
            trigger_ids: closed.triggers.iter().map(|t| t.id.clone()).collect(),
            trigger_count: closed.trigger_count,
            source: closed.source,
            ..self.sidecar
        };
        let file = ClipFile {
            path: self.rel,
            duration: presented,
            size_bytes: size,
            frames: self.av.mp4().sample_count(),
            partial: false,
        };
        let meta = sidecar.into_meta(file);
        // The file is complete from here on: an index error leaves it for recovery to index.
        shared.store.index().map_err(|e| format!("index: {e}"))?.insert(&meta).map_err(|e| format!("index: {e}"))?;
        let _ = std::fs::remove_file(final_path.with_extension("json"));
        Ok(meta)
    }
}

impl Writer {
    /// A failed clip: remove its `.part` file and sidecar, so neither the index nor recovery
    /// ever shows it as a clip.
    pub(super) fn discard(self) {
        drop(self.file);
        remove_quietly(&self.part);
        remove_quietly(&self.part.with_extension("").with_extension("json"));
        if let Some(dir) = self.part.parent() {
            fsync_dir(dir);
        }
    }
}

/// Remove a failed clip's file; a file that cannot be removed is logged and left.
fn remove_quietly(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => log::warn!("cannot remove {} of a failed clip: {e}", path.display()),
    }
}

pub use crate::storage::fsync_dir;
