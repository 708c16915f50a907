//! Continuous (24/7) recording, opt-in per camera (`continuous = { ... }`): one thread per
//! such camera (`rec-{id}`) follows the pre-roll as frames arrive — the same encoded frames the
//! clips take, no second encoder — and writes them into segment files
//! (`recordings/{camera}/{YYYY-MM-DD}/{HH}/{HHMMSS}-{mmm}.mp4`, [`segment`]), each starting on
//! a keyframe and cut at the first keyframe after `segment_s`, at the hour, or when the stream
//! changes (new SPS/PPS). One index entry per segment, written when it closes.
//!
//! Durability (`flush_s`): frames wait in RAM until they span `flush_s`, then go out as one
//! fragment and one `fdatasync` — a power cut loses at most that much; `kill -9` loses only
//! what is in RAM (also at most `flush_s`). One sync per `flush_s`, not per frame or GOP, is
//! what keeps the bytes written to the card close to the video's own.
//!
//! Gaps are explicit: the first segment after a stop says why (`gap_before`): the recording
//! (re)started, the camera failed or stopped (no frame for [`STALL`]), the writer fell behind
//! the pre-roll, or storage failed (then nothing is written for [`STORAGE_BACKOFF`]).
//!
//! Must never block the camera (it reads the pre-roll like any reader and skips ahead when
//! late) and never touch event clips.

pub mod recovery;
pub mod segment;

use crate::config::ContinuousConfig;
use crate::frame::{AudioFrame, EncodedFrame};
use crate::index::Index;
use crate::preroll::{Followed, PreRoll};
use crate::shutdown::StopToken;
use crate::status::{CameraState, CameraStatus};
use crate::storage::{Storage, StorageError};
use segment::Segment;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// No frame for this long: the camera is down; the open segment is closed (a gap follows).
pub const STALL: Duration = Duration::from_secs(3);
/// After a storage error, nothing is written for this long (then from the next keyframe).
pub const STORAGE_BACKOFF: Duration = Duration::from_secs(5);
/// Most AAC frames held between flushes (a minute at 48 kHz).
const MAX_PENDING_AUDIO: usize = 2812;

/// Where segments go: the storage directory and the index (opened lazily by the clip store).
pub trait SegmentStore: Send + Sync {
    /// The storage directory.
    fn storage(&self) -> &Storage;
    /// The index (opening it on first use).
    fn index(&self) -> Result<Index, StorageError>;
}

/// Counters for `/metrics` and the API.
#[derive(Default)]
pub struct RecordStats {
    /// Bytes of segment files written (init segments and fragments).
    pub bytes: AtomicU64,
    /// Segments closed and indexed.
    pub segments: AtomicU64,
    /// Flushes (one fragment + one `fdatasync` each).
    pub flushes: AtomicU64,
    /// Sum and last of their durations, in microseconds.
    pub flush_us_total: AtomicU64,
    /// The last flush's duration, in microseconds.
    pub last_flush_us: AtomicU64,
    /// Storage errors.
    pub errors: AtomicU64,
    /// The last storage error, kept after recovery.
    pub last_error: Mutex<Option<String>>,
    /// Unix ms of the oldest indexed segment's start (0: none yet), after each retention pass.
    pub oldest_ms: std::sync::atomic::AtomicI64,
}

/// What a camera's recorder reads.
pub struct RecordInput {
    /// Camera id.
    pub camera: String,
    /// Its `continuous` settings.
    pub cfg: ContinuousConfig,
    /// Its pre-roll (frames and sound).
    pub preroll: Arc<PreRoll>,
    /// Its status (format, state).
    pub status: Arc<CameraStatus>,
    /// Storage and index.
    pub store: Arc<dyn SegmentStore>,
    /// Counters.
    pub stats: Arc<RecordStats>,
}

/// A running continuous recorder; [`stop`](Self::stop) closes the open segment and joins.
pub struct Recorder {
    stop: StopToken,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Recorder {
    /// Start recording `input.camera` on its own thread.
    pub fn spawn(input: RecordInput) -> std::io::Result<Recorder> {
        let stop = StopToken::new();
        let token = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("rec-{}", input.camera))
            .spawn(move || Writer::new(input, token).run())?;
        Ok(Recorder { stop, thread: Mutex::new(Some(thread)) })
    }

    /// Close the open segment (its frames so far are kept) and end the thread. Blocks.
    pub fn stop(&self) {
        self.stop.stop();
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

/// The recorder thread's state.
struct Writer {
    input: RecordInput,
    stop: StopToken,
    /// Frames not written yet (since the last flush), in order.
    pending: Vec<EncodedFrame>,
    /// Sound not written yet.
    audio: Vec<AudioFrame>,
    segment: Option<Segment>,
    /// The keyframe that started the open segment (or the pending frames): its SPS/PPS.
    stream: Option<bytes::Bytes>,
    /// Why the next segment follows a gap.
    gap: Option<String>,
    /// No writing before this (a storage error).
    paused_until: Option<Instant>,
    /// Whether [`recovery::reconcile`] ran (at the first moment the index could be opened).
    reconciled: bool,
    /// The hour being recorded (Unix hours) and the capture time its start maps to: segments
    /// of one hour share it, so their decode times follow each other on the hour's timeline.
    hour_anchor: Option<(i64, Duration)>,
}

impl Writer {
    fn new(input: RecordInput, stop: StopToken) -> Writer {
        Writer {
            input,
            stop,
            pending: Vec::new(),
            audio: Vec::new(),
            segment: None,
            stream: None,
            gap: Some("recording started".into()),
            paused_until: None,
            reconciled: false,
            hour_anchor: None,
        }
    }

    /// Where a segment whose first frame was captured at `pts` (wall time `start_ms`) lies in
    /// its hour: from the hour's anchor, so segments of one hour follow each other exactly.
    fn place(&mut self, pts: Duration, start_ms: i64) -> Duration {
        let hour = start_ms.div_euclid(3_600_000);
        let into_hour = Duration::from_millis((start_ms - hour * 3_600_000) as u64);
        let anchor = match self.hour_anchor {
            Some((h, a)) if h == hour && a <= pts && pts - a < Duration::from_secs(3660) => a,
            _ => {
                let a = pts.saturating_sub(into_hour);
                self.hour_anchor = Some((hour, a));
                a
            }
        };
        pts - anchor
    }

    /// Reconcile the camera's files with the index once, as soon as the index opens. `open`:
    /// the segment being closed now (not a torn one).
    fn reconcile(&mut self, index: &Index, open: Option<&str>) {
        if !self.reconciled {
            recovery::reconcile(self.input.store.storage(), index, &self.input.camera, open);
            self.reconciled = true;
        }
    }

    fn run(mut self) {
        let mut follower = self.input.preroll.follow_live().with_audio();
        if let Ok(index) = self.input.store.index() {
            self.reconcile(&index, None);
        }
        let mut idle = Duration::ZERO;
        while !self.stop.is_stopped() {
            match follower.next_blocking(Duration::from_millis(250)) {
                Followed::Frame(f) => {
                    idle = Duration::ZERO;
                    self.frame(f);
                }
                Followed::Audio(a) => {
                    if self.audio.len() < MAX_PENDING_AUDIO && (self.segment.is_some() || !self.pending.is_empty()) {
                        self.audio.push(a);
                    }
                }
                Followed::Lagged { skipped } => {
                    log::warn!("camera {}: continuous recording fell behind, {skipped} frames lost", self.input.camera);
                    self.close(None, Some("writer fell behind".into()));
                }
                Followed::Timeout => {
                    idle += Duration::from_millis(250);
                    if idle >= STALL && (self.segment.is_some() || !self.pending.is_empty()) {
                        let why = match self.input.status.state() {
                            CameraState::Stopped => "camera stopped",
                            _ => "camera failed",
                        };
                        self.close(None, Some(why.into()));
                    }
                }
            }
        }
        self.close(None, Some("recording stopped".into()));
    }

    /// Take the next frame: cut the segment before a keyframe that ends it; flush when the
    /// frames in RAM span `flush_s`.
    fn frame(&mut self, f: EncodedFrame) {
        if self.paused_until.is_some_and(|t| Instant::now() < t) {
            return;
        }
        self.paused_until = None;
        let open = self.segment.is_some() || !self.pending.is_empty();
        if !open && !f.keyframe {
            return;
        }
        if let Some(changed) = (f.keyframe && open).then(|| self.ends_segment(&f)).flatten() {
            // Before a new stream the last frame lasts its own duration (a reconnection: a gap).
            let next = match self.pending.last() {
                Some(l) if changed => Some(f.pts.min(l.pts + l.duration)),
                _ => Some(f.pts),
            };
            self.close(next, changed.then(|| "stream changed".into()));
        }
        if self.segment.is_none() && self.pending.is_empty() {
            self.stream = Some(f.data.clone());
        }
        self.pending.push(f);
        let flush = Duration::from_secs_f64(self.input.cfg.flush_s);
        let span = match (self.pending.first(), self.pending.last()) {
            (Some(a), Some(b)) => b.pts.saturating_sub(a.pts),
            _ => Duration::ZERO,
        };
        if span >= flush {
            // All but the newest frame, whose duration the next one tells.
            let last = self.pending.pop();
            let next = last.as_ref().map(|l| l.pts);
            self.write(next, false);
            // After a storage error the segment is gone: its next frame starts nothing (the
            // next segment waits for a keyframe).
            if self.segment.is_some() {
                self.pending.extend(last);
            }
        }
    }

    /// Whether keyframe `f` starts a new segment — the segment is `segment_s` long, the hour
    /// changed, or the stream did: `Some(stream changed)`, else `None`.
    fn ends_segment(&self, f: &EncodedFrame) -> Option<bool> {
        let start = match (&self.segment, self.pending.first()) {
            (Some(s), _) => s.first_pts,
            (None, Some(p)) => p.pts,
            (None, None) => return None,
        };
        let long = f.pts.saturating_sub(start) + f.duration / 2 >= Duration::from_secs(self.input.cfg.segment_s.into());
        let hour = |pts| crate::time::wall_ms(pts).div_euclid(3_600_000);
        let changed = self.stream.as_ref().is_some_and(|k| !crate::mp4::h264::same_parameter_sets(k, &f.data));
        (long || hour(f.pts) != hour(start) || changed).then_some(changed)
    }

    /// Write the pending frames as one fragment (creating the segment's file first if needed).
    /// On a storage error the segment is dropped where it is (its synced fragments are
    /// recovered at the next start) and writing pauses.
    fn write(&mut self, next_pts: Option<std::time::Duration>, last: bool) {
        if self.pending.is_empty() {
            return;
        }
        if self.segment.is_none() {
            let size = self.input.status.format().map_or((0, 0), |f| (f.width, f.height));
            let start_ms = crate::time::wall_ms(self.pending[0].pts);
            let place = self.place(self.pending[0].pts, start_ms);
            let storage = self.input.store.storage();
            let camera = &self.input.camera;
            let gap = self.gap.take();
            match Segment::create(storage, camera, &self.pending, &mut self.audio, size, start_ms, place, gap) {
                Ok(s) => self.segment = Some(s),
                Err(e) => return self.failed(e),
            }
        }
        let Some(seg) = self.segment.as_mut() else { return };
        match seg.flush(self.input.store.storage(), &self.pending, &mut self.audio, next_pts, last) {
            Ok(done) => {
                let s = &self.input.stats;
                s.bytes.fetch_add(done.bytes, Ordering::Relaxed);
                s.flushes.fetch_add(1, Ordering::Relaxed);
                let us = done.took.as_micros() as u64;
                s.flush_us_total.fetch_add(us, Ordering::Relaxed);
                s.last_flush_us.store(us, Ordering::Relaxed);
                self.pending.clear();
            }
            Err(e) => self.failed(e),
        }
    }

    /// Close the open segment after writing what is pending (`next_pts`: when the next frame
    /// starts, else the last lasts its own duration), and index it. `gap`: why the next
    /// segment will not follow on.
    fn close(&mut self, next_pts: Option<Duration>, gap: Option<String>) {
        self.write(next_pts, true);
        self.pending.clear();
        self.audio.clear();
        if let Some(seg) = self.segment.take() {
            if let Some(meta) = seg.close() {
                let index = self.input.store.index().map_err(|e| e.to_string());
                if let Ok(i) = &index {
                    self.reconcile(i, Some(&meta.path));
                }
                match index.and_then(|i| {
                    i.insert_segment(&meta).map_err(|e| e.to_string())?;
                    Ok(i)
                }) {
                    Ok(index) => {
                        self.input.stats.segments.fetch_add(1, Ordering::Relaxed);
                        recovery::enforce_retention(
                            self.input.store.storage(),
                            &index,
                            &self.input.camera,
                            &self.input.cfg,
                        );
                        let oldest = index.segments(&self.input.camera, 0, i64::MAX, 1).ok();
                        let oldest = oldest.and_then(|s| s.first().map(|s| s.start_ms)).unwrap_or(0);
                        self.input.stats.oldest_ms.store(oldest, Ordering::Relaxed);
                    }
                    // The file is complete and synced: the next start indexes it.
                    Err(e) => self.failed(format!("index: {e}")),
                }
            }
        }
        // The first cause stands (a storage failure, or the start not yet written).
        self.gap = self.gap.take().or(gap);
    }

    fn failed(&mut self, e: String) {
        log::warn!("camera {}: continuous recording: {e}", self.input.camera);
        self.input.stats.errors.fetch_add(1, Ordering::Relaxed);
        *self.input.stats.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.clone());
        // What is synced of the segment stays on disk for start-up recovery.
        self.segment = None;
        self.pending.clear();
        self.audio.clear();
        self.gap = Some(format!("storage failed: {e}"));
        self.paused_until = Some(Instant::now() + STORAGE_BACKOFF);
    }
}
