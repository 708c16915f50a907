//! The recorder of one camera: takes triggers and manual start/stop, drives the
//! [`ClipMachine`], and runs one writer thread per open clip (`clip-{camera}`) that follows the
//! pre-roll buffer from the keyframe at or before T − pre and writes a fragmented MP4 as frames
//! arrive — one fragment per GOP, each `fdatasync`ed — then finalizes it in place into a regular
//! MP4 ([`mp4::apply_finalize`]: append the `moov`, fsync, retype the fragment headers `free`,
//! fsync), renames `{id}.mp4.part` to `{id}.mp4`, fsyncs the directory, writes the poster, and
//! only then indexes the clip.
//!
//! A write error closes the clip as failed (`clip_failed`): what was written of it is removed,
//! and until a test write passes ([`crate::storage::Storage::probe_write`]) triggers are
//! refused with `storage_error` rather than promised a clip that will not exist.
//!
//! A power cut leaves a `.part` file whose complete fragments [`super::recovery`] turns into a
//! playable clip at the next start. Every call here may block (locks, file I/O): the async
//! front-ends call it through `spawn_blocking`.

use super::state::{ClipMachine, Limits, ManualError, OpenClip, Outcome};
use super::store::ClipStore;
use crate::clip_meta::{new_clip_id, ClipEvent, ClipFile, ClipMeta, ClipSidecar};
use crate::frame::{AudioFrame, EncodedFrame};
use crate::mp4;
use crate::preroll::{Followed, PreRoll};
use crate::status::{CameraState, CameraStatus};
use crate::time::Clock;
use crate::trigger::{RejectCode, TriggerAccepted, TriggerRejected, TriggerRequest};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::broadcast;

/// What a recorder needs of its camera, and nothing more (the camera builds it: the recorder
/// never sees the camera's other stages).
pub struct RecorderInput {
    /// Camera id.
    pub camera: String,
    /// Seconds kept before a trigger, after it, and the longest clip.
    pub limits: Limits,
    /// Bitrate the encoder aims at, for the room a new clip needs on storage.
    pub bitrate_kbps: u32,
    /// The encoded frames a clip is written from.
    pub preroll: Arc<PreRoll>,
    /// The camera's status: its state (a stopped camera takes no trigger and ends its clip), the
    /// negotiated format, and the keyframe request ([`CameraStatus::request_keyframe`]).
    pub status: Arc<CameraStatus>,
    /// A phone camera: its frames come in bursts, so a clip waits longer for its end.
    pub phone: bool,
    /// The clocks (simulated in tests).
    pub clock: Arc<dyn Clock>,
}

/// Shared by the recorder and its writer threads.
struct Shared {
    input: RecorderInput,
    machine: Mutex<ClipMachine>,
    store: Arc<ClipStore>,
    events: broadcast::Sender<ClipEvent>,
    /// The storage error the last clip failed with, until a test write passes again.
    fault: Mutex<Option<String>>,
    /// Writers that have not yet indexed (or failed) their clip: the clip is closed to triggers
    /// but its file is still being finished, so the camera still counts as recording.
    finishing: AtomicUsize,
    /// Writer threads by clip id: the open clip's, and any still finishing an older clip. A
    /// writer that splits its clip starts the continuation's writer here.
    writers: Mutex<Vec<WriterThread>>,
}

/// A clip writer thread and the id of its clip.
type WriterThread = (String, JoinHandle<Result<ClipMeta, String>>);

/// One camera's recorder.
pub struct Recorder {
    shared: Arc<Shared>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Recorder {
    /// A recorder for one camera (`input`), writing to and indexing in `store`.
    pub fn new(input: RecorderInput, store: Arc<ClipStore>, events: broadcast::Sender<ClipEvent>) -> Self {
        let limits = input.limits;
        Recorder {
            shared: Arc::new(Shared {
                machine: Mutex::new(ClipMachine::new(limits)),
                input,
                store,
                events,
                fault: Mutex::new(None),
                finishing: AtomicUsize::new(0),
                writers: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Camera id.
    pub fn camera_id(&self) -> &str {
        &self.shared.input.camera
    }

    /// Whether a clip is being written: one is open to triggers, or a closed one is still being
    /// finished (finalized, poster, index). When this turns false, every clip handed out so far
    /// is in the index or has been announced as failed.
    pub fn recording(&self) -> bool {
        self.has_open_clip() || self.shared.finishing.load(Ordering::SeqCst) > 0
    }

    /// Whether a clip is open (a trigger extends it rather than opening a new one).
    fn has_open_clip(&self) -> bool {
        lock(&self.shared.machine).open().is_some()
    }

    fn reject(code: RejectCode, msg: String, req: &TriggerRequest) -> TriggerRejected {
        TriggerRejected { code, message: msg, trigger_id: req.id.clone() }
    }

    /// Make room for a new clip of about `secs` seconds, or refuse.
    fn make_room(&self, secs: f64, req: &TriggerRequest) -> Result<(), TriggerRejected> {
        let estimate = (self.shared.input.bitrate_kbps as f64 * 1000.0 / 8.0 * secs * 1.3) as u64;
        let store = &self.shared.store;
        let fault = lock(&self.shared.fault).clone();
        if let Some(fault) = fault {
            if let Err(e) = store.storage.probe_write() {
                let msg = format!(
                    "cannot save a clip: the last one failed ({fault}) and storage still fails: {}",
                    crate::status::error_chain(&e)
                );
                log::warn!("camera {}: {msg}", self.camera_id());
                return Err(Self::reject(RejectCode::StorageError, msg, req));
            }
            log::info!("camera {}: storage writable again", self.camera_id());
            *lock(&self.shared.fault) = None;
        }
        match store
            .index()
            .and_then(|index| store.storage.make_room(&index, estimate, self.shared.input.clock.wall_now_ms()))
        {
            Ok(report) => {
                if !report.deleted.is_empty() {
                    log::info!(
                        "retention freed {} bytes ({} clips) for a new clip",
                        report.freed_bytes,
                        report.deleted.len()
                    );
                }
                Ok(())
            }
            Err(e) => {
                let msg = format!("cannot save a clip: {}", crate::status::error_chain(&e));
                log::warn!("camera {}: {msg}", self.camera_id());
                Err(Self::reject(RejectCode::StorageFull, msg, req))
            }
        }
    }

    /// A trigger at now.
    pub fn trigger(&self, req: &TriggerRequest) -> Result<TriggerAccepted, TriggerRejected> {
        let cam = &self.shared.input;
        let clock = &cam.clock;
        if cam.status.state() == CameraState::Stopped {
            return Err(Self::reject(RejectCode::CameraStopped, format!("camera {} is stopped", cam.camera), req));
        }
        let trigger_id = req.id.clone().unwrap_or_else(|| format!("t-{}", new_clip_id(clock.wall_now_ms())));
        let opening = !self.has_open_clip();
        if opening {
            let (pre_s, post_s) = (cam.limits.pre.as_secs_f64(), cam.limits.post.as_secs_f64());
            self.make_room(req.pre_s.unwrap_or(pre_s).min(pre_s) + req.post_s.unwrap_or(post_s), req)?;
        }
        let now = clock.mono();
        let oldest = cam.preroll.lock().iter().next().map(|f| f.pts);
        let outcome =
            lock(&self.shared.machine).trigger(now, req, &trigger_id, oldest, || new_clip_id(clock.wall_now_ms()));
        let (clip_id, extended, pre, post) = match outcome {
            Outcome::Opened { clip_id, pre_actual, post } => {
                spawn_writer(&self.shared, &mut lock(&self.shared.writers), &clip_id);
                (clip_id, false, pre_actual, post)
            }
            Outcome::Extended { clip_id, pre_actual, post } => (clip_id, true, pre_actual, post),
        };
        // A keyframe for a new clip only: extending triggers (a flood: thousands a second) would
        // otherwise make every frame an IDR.
        if !extended {
            cam.status.request_keyframe();
        }
        log::info!(
            "camera {}: trigger {trigger_id} {} clip {clip_id} (pre {:.2} s, post {:.2} s)",
            cam.camera,
            if extended { "extends" } else { "opens" },
            pre.as_secs_f64(),
            post.as_secs_f64()
        );
        Ok(TriggerAccepted {
            trigger_id,
            clip_id,
            camera: cam.camera.clone(),
            extended,
            pre_s_actual: (pre.as_secs_f64() * 1000.0).round() / 1000.0,
            post_s: (post.as_secs_f64() * 1000.0).round() / 1000.0,
        })
    }

    /// Start a manual recording; returns the clip id.
    pub fn record_start(&self) -> Result<String, TriggerRejected> {
        let req = TriggerRequest::default();
        let cam = &self.shared.input;
        if cam.status.state() == CameraState::Stopped {
            return Err(Self::reject(
                RejectCode::CameraStopped,
                format!("camera {} is stopped", self.camera_id()),
                &req,
            ));
        }
        if !self.has_open_clip() {
            self.make_room(cam.limits.max_clip.as_secs_f64(), &req)?;
        }
        let now = cam.clock.mono();
        let (id, opened) = {
            let mut m = lock(&self.shared.machine);
            let before = m.open().map(|o| o.clip_id.clone());
            let id = m
                .start_manual(now, || new_clip_id(cam.clock.wall_now_ms()))
                .map_err(|e: ManualError| Self::reject(RejectCode::Conflict, e.to_string(), &req))?;
            let opened = before.as_deref() != Some(id.as_str());
            (id, opened)
        };
        if opened {
            spawn_writer(&self.shared, &mut lock(&self.shared.writers), &id);
            cam.status.request_keyframe();
        }
        Ok(id)
    }

    /// Stop the manual recording and wait until its clip is saved.
    pub fn record_stop(&self) -> Result<ClipMeta, TriggerRejected> {
        let id = lock(&self.shared.machine)
            .stop_manual(self.shared.input.clock.mono())
            .map_err(|e| Self::reject(RejectCode::Conflict, e.to_string(), &TriggerRequest::default()))?;
        self.wait_for(&id)
            .map_err(|e| TriggerRejected::new(RejectCode::StorageFull, format!("clip {id} could not be saved: {e}")))
    }

    /// Wait for the writer of `clip_id` to finish.
    fn wait_for(&self, clip_id: &str) -> Result<ClipMeta, String> {
        let handle = {
            let mut w = lock(&self.shared.writers);
            match w.iter().position(|(id, _)| id == clip_id) {
                Some(i) => w.swap_remove(i).1,
                None => return Err("no writer for this clip".into()),
            }
        };
        handle.join().unwrap_or_else(|_| Err("clip writer panicked".into()))
    }

    /// Shutdown: cut the open clip at now and wait for every writer (bounded by their timeouts),
    /// also a continuation's that a writer starts meanwhile.
    pub fn shutdown(&self) {
        if let Some(id) = lock(&self.shared.machine).cut(self.shared.input.clock.mono()) {
            log::info!("camera {}: cutting clip {id} for shutdown", self.camera_id());
        }
        loop {
            let writers = std::mem::take(&mut *lock(&self.shared.writers));
            if writers.is_empty() {
                break;
            }
            for (id, h) in writers {
                if let Err(e) = h.join().unwrap_or_else(|_| Err("clip writer panicked".into())) {
                    log::warn!("camera {}: clip {id}: {e}", self.camera_id());
                }
            }
        }
    }
}

/// Start the writer thread of clip `clip_id` and list it in `writers` (the caller holds that lock).
fn spawn_writer(shared: &Arc<Shared>, writers: &mut Vec<WriterThread>, clip_id: &str) {
    // Reap finished writers (they ended on their own); one still finishing an older clip
    // (past its hard end, waiting for its last frame) is left to finish.
    writers.retain(|(_, h)| !h.is_finished());
    let camera = shared.input.camera.clone();
    let id = clip_id.to_string();
    let name = format!("clip-{camera}");
    // `recording` turns on with the first writer and off with the last: a continuation's writer
    // starts before the writer of the part it continues ends.
    let first = shared.finishing.fetch_add(1, Ordering::SeqCst) == 0;
    let thread_shared = shared.clone();
    let spawned = std::thread::Builder::new().name(name).spawn(move || {
        let shared = thread_shared;
        let r = write_clip(&shared, &id);
        // Indexed or failed: before the events, so whoever sees them sees `recording` false.
        let last = shared.finishing.fetch_sub(1, Ordering::SeqCst) == 1;
        match &r {
            Ok(meta) => {
                log::info!(
                    "camera {}: clip {} saved: {:.2} s, {} bytes, {} frames",
                    meta.camera,
                    meta.id,
                    meta.duration_s,
                    meta.size_bytes,
                    meta.frames
                );
                let _ = shared.events.send(ClipEvent::Saved(Box::new(meta.clone())));
            }
            Err(e) => {
                log::error!("camera {}: clip {id} failed: {e}", shared.input.camera);
                let _ = shared.events.send(ClipEvent::Failed {
                    camera: shared.input.camera.clone(),
                    clip_id: id.clone(),
                    error: e.clone(),
                });
            }
        }
        // Checked again: a new clip's writer may have started meanwhile (it announced itself).
        if last && shared.finishing.load(Ordering::SeqCst) == 0 {
            let _ = shared.events.send(ClipEvent::Recording { camera: shared.input.camera.clone(), on: false });
        }
        r
    });
    match spawned {
        Ok(h) => {
            writers.push((clip_id.to_string(), h));
            if first {
                let _ = shared.events.send(ClipEvent::Recording { camera, on: true });
            }
        }
        Err(e) => {
            log::error!("cannot spawn clip writer: {e}");
            shared.finishing.fetch_sub(1, Ordering::SeqCst);
            lock(&shared.machine).close_now(clip_id);
        }
    }
}

/// How long past its end a clip waits for a frame that may still come when the camera delivers
/// none, counted on the clip's own timeline (the last frame's time + the time without frames, so
/// a source that runs behind the clock gets its lag on top): a sensor's frames come steadily (a
/// stopped one is cut sooner, by its state) ...
const END_GRACE: Duration = Duration::from_secs(1);
/// ... a phone's come in bursts over Wi-Fi, and a burst delayed by a second is ordinary.
const END_GRACE_PHONE: Duration = Duration::from_secs(3);

/// Why a clip was not saved: storage failed it, or there was nothing to save.
enum WriteError {
    Storage(String),
    Clip(String),
}

impl From<String> for WriteError {
    fn from(e: String) -> Self {
        WriteError::Storage(e)
    }
}

/// Write clip `id` until the machine closes it, then finish it. Runs on the writer thread.
///
/// On failure the clip is closed at once, so no trigger extends a clip that will not exist; what
/// was written of it is removed (a failed clip never reaches the index, now or by recovery);
/// a storage error is kept for [`Recorder::make_room`] to test before the next clip.
fn write_clip(shared: &Arc<Shared>, id: &str) -> Result<ClipMeta, String> {
    let mut w: Option<Writer> = None;
    let result = match (follow_clip(shared, id, &mut w), w) {
        (Ok(closed), Some(w)) => w.finish(shared, &closed).map_err(WriteError::Storage),
        (Ok(_), None) => Err(WriteError::Clip("no frames were written (the buffer was empty)".into())),
        (Err(e), w) => {
            if let Some(w) = w {
                w.discard();
            }
            Err(e)
        }
    };
    match result {
        Ok(meta) => {
            *lock(&shared.fault) = None;
            Ok(meta)
        }
        Err(WriteError::Storage(e)) => {
            *lock(&shared.fault) = Some(e.clone());
            lock(&shared.machine).close_now(id);
            Err(e)
        }
        Err(WriteError::Clip(e)) => {
            lock(&shared.machine).close_now(id);
            Err(e)
        }
    }
}

/// Follow the pre-roll and write clip `id` into `w` until the machine closes it; returns it.
///
/// A keyframe whose SPS/PPS differ from the clip's first (the camera changed resolution or
/// profile) ends the clip at its last frame and opens its continuation from that
/// keyframe ([`ClipMachine::split`]) with a writer of its own: one MP4 track holds one stream.
fn follow_clip(shared: &Arc<Shared>, id: &str, w: &mut Option<Writer>) -> Result<OpenClip, WriteError> {
    let cam = &shared.input;
    // The clip as opened: what its file is dated and labelled by (a clip shorter than the
    // camera's GOP is closed in the machine before its file is created).
    let opened = match lock(&shared.machine).get(id) {
        Some(o) => o.clone(),
        None => return Err(WriteError::Clip("clip closed before it started".into())),
    };
    let start = opened.start;
    let mut follower = cam.preroll.follow_av_from_time(start, AUDIO_LEAD);
    let mut gop: Vec<EncodedFrame> = Vec::new();
    // The sound that arrived and is not written yet, in arrival (= capture) order.
    let mut audio: Vec<AudioFrame> = Vec::new();
    let mut idle = Duration::ZERO;
    // The newest frame's time. A phone dates frames on its own media clock and
    // runs behind by its backlog, so the frames up to the clip's end arrive after the end on the
    // clock: without frames, the clip's timeline goes on from here, not from the clock.
    let mut last_pts: Option<Duration> = None;
    // A keyframe of the stream the clip's file holds (or will hold, while no file is open).
    let mut stream: Option<bytes::Bytes> = None;
    let closed: OpenClip = loop {
        match follower.next_blocking(Duration::from_millis(250)) {
            Followed::Frame(f) => {
                idle = Duration::ZERO;
                last_pts = Some(f.pts);
                if gop.is_empty() && w.is_none() && !f.keyframe {
                    continue;
                }
                // A frame belongs to the clip when its middle lies before the end, as the first
                // one does when its middle lies after the start (writer.rs): each end rounds to
                // the nearest frame, so a clip lasts pre + post within a frame whatever the
                // trigger time's phase against the camera's frames.
                let done = lock(&shared.machine).close_if_done(id, f.pts + f.duration / 2);
                if let Some(c) = done {
                    // The last frame lasts its own duration, not up to the next frame's time: a
                    // frame lost just before the end (a network camera's gap) would otherwise
                    // stretch the clip past its end by up to a frame.
                    let end = gop.last().map_or(f.pts, |l| f.pts.min(l.pts + l.duration));
                    sound_until(&mut follower, &mut audio, end);
                    flush(shared, id, w, &mut gop, &mut audio, Some(end), &c, true)?;
                    break c;
                }
                if f.keyframe {
                    let changed = stream.as_ref().is_some_and(|k| !mp4::h264::same_parameter_sets(k, &f.data));
                    if !gop.is_empty() {
                        // Before a new stream, the last frame lasts its own duration (the change
                        // came with a reconnection: a gap, not a long frame).
                        let next = match gop.last() {
                            Some(l) if changed => f.pts.min(l.pts + l.duration),
                            _ => f.pts,
                        };
                        flush(shared, id, w, &mut gop, &mut audio, Some(next), &opened, false)?;
                    }
                    if changed && w.is_some() {
                        match split(shared, id, f.pts) {
                            Some(part) => break part,
                            None => return Err(WriteError::Clip("clip vanished".into())),
                        }
                    }
                    if changed || stream.is_none() {
                        stream = Some(f.data.clone());
                    }
                }
                gop.push(f);
            }
            Followed::Audio(a) => {
                // Bounded: a GOP's sound, or a minute's before the first keyframe.
                if audio.len() < MAX_PENDING_AUDIO {
                    audio.push(a);
                }
            }
            Followed::Lagged { skipped } => {
                log::warn!("camera {}: clip {id} writer fell behind, {skipped} frames lost", cam.camera);
                gop.clear();
            }
            Followed::Timeout => {
                idle += Duration::from_millis(250);
                // No frames (camera failed or stopping): past the end on the clip's timeline by
                // the grace, or stalled for 10 s, cut.
                let mut m = lock(&shared.machine);
                let grace = if cam.phone { END_GRACE_PHONE } else { END_GRACE };
                let reached = last_pts.map_or_else(|| cam.clock.mono(), |p| p + idle);
                let past_end = m.get(id).is_some_and(|o| reached >= o.effective_end() + grace);
                if past_end || idle >= Duration::from_secs(10) || cam.status.state() == CameraState::Stopped {
                    match m.close_now(id) {
                        Some(c) => {
                            drop(m);
                            log::info!(
                                "camera {}: clip {id} cut: no frame for {:.2} s",
                                cam.camera,
                                idle.as_secs_f64()
                            );
                            flush(shared, id, w, &mut gop, &mut audio, None, &c, true)?;
                            break c;
                        }
                        None => return Err(WriteError::Clip("clip vanished".into())),
                    }
                }
            }
        }
    };
    Ok(closed)
}

/// How far before a clip's first keyframe its sound may have arrived (the video encoder lagging
/// the audio one).
const AUDIO_LEAD: Duration = Duration::from_secs(1);
/// Most AAC frames held between fragments (a minute at 48 kHz).
const MAX_PENDING_AUDIO: usize = 2812;
/// Longest wait at a clip's end for its last sound (the AAC encoder's delay; a phone's sound
/// comes with its next chunk, later on a loaded box).
const SOUND_WAIT: Duration = Duration::from_secs(3);

/// At a clip's end (video up to `end`): collect the sound up to `end` that is still on its way,
/// when there is sound at all; waits at most [`SOUND_WAIT`], so a microphone that stops never
/// holds the clip.
fn sound_until(follower: &mut crate::preroll::Follower, audio: &mut Vec<AudioFrame>, end: Duration) {
    if audio.is_empty() {
        return;
    }
    let deadline = std::time::Instant::now() + SOUND_WAIT;
    while audio.last().is_some_and(|a| a.pts + a.duration < end) {
        let now = std::time::Instant::now();
        if now >= deadline {
            return;
        }
        match follower.next_blocking(deadline - now) {
            Followed::Audio(a) if audio.len() < MAX_PENDING_AUDIO => audio.push(a),
            Followed::Frame(_) | Followed::Audio(_) => {}
            Followed::Lagged { .. } | Followed::Timeout => return,
        }
    }
}

/// Split clip `id` at keyframe time `at` and start the continuation's writer; returns the part
/// before `at` (None: the clip is no longer the machine's). Under the writers' lock, so whoever
/// learns the continuation's id from the machine ([`Recorder::record_stop`]) finds its writer.
fn split(shared: &Arc<Shared>, id: &str, at: Duration) -> Option<OpenClip> {
    let next = new_clip_id(shared.input.clock.wall_now_ms());
    let mut writers = lock(&shared.writers);
    let part = lock(&shared.machine).split(id, next.clone(), at)?;
    log::info!(
        "camera {}: the stream changed format; clip {id} ends and continues as clip {next}",
        shared.input.camera
    );
    spawn_writer(shared, &mut writers, &next);
    Some(part)
}

#[path = "writer.rs"]
mod writer;
pub use writer::fsync_dir;
use writer::{flush, Writer};

#[cfg(test)]
#[path = "recorder_tests.rs"]
mod tests;
