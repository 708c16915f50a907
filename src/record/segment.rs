//! One segment file of a continuous recording, as it is written: created at its first flush
//! (so the sound of its first seconds has arrived), then appended fragment by fragment —
//! a fragment holds the frames since the last flush (it may end mid-GOP: fragments need not
//! start on keyframes; the segment does) — each `fdatasync`ed; closed by indexing it.
//!
//! The file is left fragmented (no `moov` rewrite at the end: nothing is written twice), which
//! ffmpeg and HLS (the init segment by byte range, then the fragments) play as it is. Its path
//! is its final one from the start: a file that is not in the index is a segment cut off by a
//! crash, repaired at start-up ([`super::recovery`]).

use crate::frame::{AudioFrame, EncodedFrame};
use crate::mp4::av::AvFragments;
use crate::segment_meta::{segment_rel_path, SegmentMeta};
use crate::storage::{create_dir_durable, fsync_dir, Storage};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// An open segment file.
pub struct Segment {
    file: std::fs::File,
    abs: PathBuf,
    av: AvFragments,
    meta: SegmentMeta,
    /// Capture time of the first frame (the segment's start on the camera's clock).
    pub first_pts: Duration,
}

/// What one flush cost (for the metrics).
pub struct Flushed {
    /// Bytes appended.
    pub bytes: u64,
    /// Time spent in `write` + `fdatasync`.
    pub took: Duration,
}

impl Segment {
    /// Create the file for the segment starting with keyframe `gop[0]` (`start_ms`: its wall
    /// time; `place`: where it lies in its hour, its first `tfdt`), with the sound collected so
    /// far, and write its init segment (not synced yet: the first fragment's sync covers it).
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        storage: &Storage,
        camera: &str,
        gop: &[EncodedFrame],
        audio: &mut Vec<AudioFrame>,
        size: (u32, u32),
        start_ms: i64,
        place: Duration,
        gap_before: Option<String>,
    ) -> Result<Segment, String> {
        let first = gop.first().ok_or("empty segment")?;
        let mut av = AvFragments::start(first, first.pts, size.0, size.1, audio).map_err(|e| e.to_string())?;
        av.place_at(place);
        let rel = segment_rel_path(camera, start_ms);
        let abs = storage.abs(&rel).ok_or_else(|| format!("bad segment path {rel}"))?;
        let dir = abs.parent().ok_or("segment path has no directory")?;
        // A new hour (or day, or camera): its entries in the parents must survive a power cut.
        create_dir_durable(dir, 3).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let init = av.mp4().init_segment();
        let created = (|| {
            storage.injected_fault(&abs)?;
            let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&abs)?;
            file.write_all(&init)?;
            Ok::<_, std::io::Error>(file)
        })();
        let file = created.map_err(|e| {
            let _ = std::fs::remove_file(&abs);
            format!("cannot write {}: {e}", abs.display())
        })?;
        fsync_dir(dir);
        let meta = SegmentMeta {
            camera: camera.into(),
            start_ms,
            end_ms: start_ms,
            path: rel,
            bytes: init.len() as u64,
            init_bytes: init.len() as u64,
            frames: 0,
            sound: av.has_sound(),
            gap_before,
        };
        Ok(Segment { file, abs, av, meta, first_pts: first.pts })
    }

    /// Append `frames` (since the last flush) as one fragment with their sound, and sync.
    /// `next_pts`: the next frame's time (the last one's duration); `last`: the segment's end.
    pub fn flush(
        &mut self,
        storage: &Storage,
        frames: &[EncodedFrame],
        audio: &mut Vec<AudioFrame>,
        next_pts: Option<Duration>,
        last: bool,
    ) -> Result<Flushed, String> {
        if frames.is_empty() {
            return Ok(Flushed { bytes: 0, took: Duration::ZERO });
        }
        let frag = self.av.fragment(frames, audio, next_pts, last);
        let t = Instant::now();
        let wrote = storage
            .injected_fault(&self.abs)
            .and_then(|()| self.file.write_all(&frag))
            .and_then(|()| self.file.sync_data());
        wrote.map_err(|e| format!("write {}: {e}", self.abs.display()))?;
        self.meta.bytes += frag.len() as u64;
        self.meta.frames += frames.len() as u64;
        self.meta.end_ms = self.meta.start_ms + self.av.presented().as_millis() as i64;
        Ok(Flushed { bytes: frag.len() as u64, took: t.elapsed() })
    }

    /// Video time written so far.
    pub fn written(&self) -> Duration {
        self.av.presented()
    }

    /// The segment as the index will know it.
    pub fn meta(&self) -> &SegmentMeta {
        &self.meta
    }

    /// A segment that never got a fragment (it failed before): remove its file.
    pub fn discard(self) {
        drop(self.file);
        let _ = std::fs::remove_file(&self.abs);
        if let Some(dir) = self.abs.parent() {
            fsync_dir(dir);
        }
    }

    /// The finished segment's entry (everything written is synced already). A segment without
    /// a frame is removed instead (`None`).
    pub fn close(self) -> Option<SegmentMeta> {
        if self.meta.frames == 0 {
            self.discard();
            return None;
        }
        Some(self.meta)
    }
}
