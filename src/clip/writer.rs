//! The clip file of one clip (a child of [`super`], on its writer thread): creates the sidecar
//! and the `.part` file, appends one fragment per GOP (each `fdatasync`ed), finalizes it into a
//! regular MP4 and indexes it — or, when storage fails, removes what was written.
//!
//! Sound: the AAC frames the recorder collected go into the same fragments (track 2), each
//! fragment taking those that start before its video ends. A frame is written once the next
//! one is known (its duration is the distance between their capture times, in samples, so a
//! gap in the sound stays a gap) or at the clip's end. The track starts with the frame that
//! plays at the clip's first presented frame, trimmed to it by its edit list; sound that
//! begins later gets an empty edit; a clip with no sound yet when its file is created (at its
//! first GOP's end) has no track.
//!
//! Must never leave a failed clip where the index or start-up recovery would take it for a clip,
//! and never remove a clip once its file is complete (renamed to `.mp4`).

use super::*;

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

/// The clip's sound track as it is written.
struct Sound {
    /// Capture time of the track's first sample (its first frame's).
    first_pts: Duration,
    rate: u32,
    config: bytes::Bytes,
}

impl Sound {
    /// The track's sample position of capture time `pts`.
    fn sample_of(&self, pts: Duration) -> u64 {
        crate::time::samples(pts.saturating_sub(self.first_pts), self.rate)
    }

    /// The track for a clip presented from `presented`, from the sound collected so far
    /// (`audio`, in arrival order: the sound up to now); drops what plays before it. None: no
    /// sound yet.
    fn start(audio: &mut Vec<AudioFrame>, presented: Duration) -> Option<(Sound, AudioTrack)> {
        audio.retain(|a| a.pts + a.duration > presented);
        let first = audio.first()?;
        let f = &first.format;
        let sound = Sound { first_pts: first.pts, rate: f.rate, config: f.config.clone() };
        let (delay, edit_media_time) = if first.pts > presented {
            (((first.pts - presented).as_micros() + 500) as u64 / 1000, 0)
        } else {
            (0, crate::time::samples(presented - first.pts, f.rate))
        };
        let track =
            AudioTrack { config: f.config.to_vec(), rate: f.rate, channels: f.channels, delay, edit_media_time };
        Some((sound, track))
    }
}

/// An open `.part` file.
pub(super) struct Writer {
    file: std::fs::File,
    part: PathBuf,
    rel: String,
    mp4: FragmentedMp4,
    first_pts: Duration,
    presented_start: Duration,
    poster: Vec<u8>,
    sidecar: ClipSidecar,
    last_end: Duration,
    /// Capture time of the track's first frame (media time 0 before the edit list).
    origin: Duration,
    sound: Option<Sound>,
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
        let (sound, track) = match Sound::start(audio, presented) {
            Some((s, t)) => (Some(s), Some(t)),
            None => (None, None),
        };
        let mp4 =
            FragmentedMp4::new_av(&first.data, w, h, ticks(presented - first.pts), track).map_err(|e| e.to_string())?;
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
        let new_dir = !dir.exists();
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        if new_dir {
            // A new date (or camera) directory: its entry in the parent must survive a power cut.
            for d in dir.ancestors().skip(1).take(2) {
                fsync_dir(d);
            }
        }
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
            file.write_all(&mp4.init_segment())?;
            Ok::<_, std::io::Error>(file)
        })();
        let file = created.map_err(|e| {
            remove_quietly(&part);
            remove_quietly(&side);
            format!("cannot write {}: {e}", part.display())
        })?;
        fsync_dir(dir);
        Ok(Writer {
            file,
            part,
            rel,
            mp4,
            first_pts: first.pts,
            presented_start: presented,
            poster: first.data.to_vec(),
            sidecar,
            last_end: first.pts,
            origin: first.pts,
            sound,
        })
    }

    /// The AAC frames of `audio` that go into the fragment ending at `end` (removed from it),
    /// with their durations: each written once its successor is known, or at the `last`.
    fn take_sound(&self, audio: &mut Vec<AudioFrame>, end: Duration, last: bool) -> Vec<(AudioFrame, u32)> {
        let Some(sound) = &self.sound else {
            audio.clear();
            return Vec::new();
        };
        // Another stream (the camera's microphone came back differently) is not this track's.
        audio.retain(|a| a.pts >= sound.first_pts && a.format.config == sound.config && a.format.rate == sound.rate);
        let mut n = 0;
        let mut out = Vec::new();
        while n < audio.len() && audio[n].pts < end {
            let at = sound.sample_of(audio[n].pts);
            let duration = match audio.get(n + 1) {
                Some(next) => sound.sample_of(next.pts).saturating_sub(at),
                None if last => crate::time::samples(audio[n].duration, sound.rate),
                None => break,
            };
            out.push((n, duration.clamp(1, u64::from(u32::MAX)) as u32));
            n += 1;
        }
        let taken: Vec<AudioFrame> = audio.drain(..n).collect();
        taken.into_iter().zip(out).map(|(a, (_, d))| (a, d)).collect()
    }

    fn write_fragment(
        &mut self,
        storage: &crate::storage::Storage,
        gop: &[EncodedFrame],
        audio: &mut Vec<AudioFrame>,
        next_pts: Option<Duration>,
        last: bool,
    ) -> Result<(), String> {
        let samples: Vec<Sample> = gop
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let end = gop.get(i + 1).map(|n| n.pts).or(next_pts).unwrap_or(f.pts + f.duration);
                // Counted from the track's origin, not frame by frame: rounding each duration
                // down (33.333 ms = 2999.99 ticks) would drift a minute's clip 20 ms early
                // against its sound and its own edit list.
                let at = |t: Duration| ticks(t.saturating_sub(self.origin));
                let duration = at(end).saturating_sub(at(f.pts)).max(1);
                Sample { data: &f.data, duration: duration.min(u64::from(u32::MAX)) as u32, keyframe: f.keyframe }
            })
            .collect();
        if let Some(last) = gop.last() {
            self.last_end = next_pts.unwrap_or(last.pts + last.duration);
        }
        let end = next_pts.or(gop.last().map(|l| l.pts + l.duration)).unwrap_or(self.last_end);
        let sound = self.take_sound(audio, end, last);
        let audio_samples: Vec<AudioSample> =
            sound.iter().map(|(a, duration)| AudioSample { data: &a.data, duration: *duration }).collect();
        let frag = self.mp4.fragment_av(&samples, &audio_samples);
        storage.injected_fault(&self.part).map_err(|e| format!("write {}: {e}", self.part.display()))?;
        self.file.write_all(&frag).map_err(|e| format!("write {}: {e}", self.part.display()))?;
        self.file.sync_data().map_err(|e| format!("fsync {}: {e}", self.part.display()))?;
        Ok(())
    }

    pub(super) fn finish(mut self, shared: &Shared, closed: &OpenClip) -> Result<ClipMeta, String> {
        // Regular MP4 in place (append moov, sync, retype init moov + moofs as `free`, sync):
        // players then apply the edit list as a trim. A crash here is completed by recovery.
        let plan = self.mp4.finalize();
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
        let expected = self.mp4.bytes_written() + plan.moov.len() as u64;
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
        let _ = self.first_pts;
        let presented = self.last_end.saturating_sub(self.presented_start);
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
            frames: self.mp4.sample_count(),
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

/// fsync a directory so a rename or new file in it survives a power cut.
pub fn fsync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}
