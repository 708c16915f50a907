//! The MJPEG preview of one camera: one latest-JPEG channel that every viewer reads.
//!
//! A [`Viewer`] (an MJPEG stream or a snapshot request) is an RAII guard: while at least one
//! exists, a thread `preview-{id}` takes the newest raw frame from the [`FrameTap`] at most
//! `preview_fps` times a second and either passes it through (the camera already delivers
//! JPEG: no decode, no encode) or encodes it once with GStreamer ([`JpegEncoder`]) — once per
//! frame for all viewers. A camera that sends H.264 is decoded from the pre-roll instead
//! ([`H264Feed`]): from its newest keyframe, so the first picture comes at once. The JPEG goes
//! into a `tokio::sync::watch` slot: a viewer that reads slowly simply gets the newest JPEG
//! when it is ready for one, so memory never grows with slow or stalled clients. When no live JPEG came for over a second (camera failed, stopped or
//! unplugged, or the JPEG encoder broke), a "NO SIGNAL" still is published once a second;
//! viewers stay connected and see live frames again when the camera recovers (ustreamer's
//! behaviour). With no viewer left, the thread lingers briefly, then drops its pipeline, stops
//! the tap and exits.
//!
//! Must never block capture or the async runtime, never buffer more than one JPEG per camera
//! (plus what each connection is writing), and never encode while nobody watches.

use super::h264_feed::{keyframes_suffice, H264Feed};
use super::jpeg::{self, Jpeg, JpegEncoder};
use super::substream::{Substream, SubstreamState};
use crate::frame::{Frame, PixelFormat};
use crate::preroll::PreRoll;
use crate::shutdown::Backoff;
use crate::status::{error_chain, CameraState, CameraStatus};
use crate::tap::FrameTap;
use crate::time::mono_ms;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Most concurrent MJPEG viewers per camera; more are answered 503.
pub const MAX_VIEWERS: usize = 128;
/// How long the preview thread stays up after the last viewer left (a reconnecting phone or a
/// second snapshot does not rebuild the pipeline).
const LINGER: Duration = Duration::from_secs(2);
/// "NO SIGNAL" is shown after this long without a live JPEG (at least), and repeated this often.
const NO_SIGNAL_AFTER: Duration = Duration::from_secs(1);
const NO_SIGNAL_EVERY: Duration = Duration::from_secs(1);
/// A published JPEG younger than this answers a snapshot at once.
const FRESH: Duration = Duration::from_secs(1);
/// Window of the `jpeg_encodes_per_s` rate.
const RATE_WINDOW: Duration = Duration::from_secs(2);

/// Preview settings from the camera's config.
#[derive(Debug, Clone)]
pub struct PreviewSettings {
    /// Largest preview width for encoded frames (height keeps the aspect ratio).
    pub width: u32,
    /// Most JPEGs per second sent to viewers.
    pub fps: u32,
    /// JPEG encoder element (`jpegenc`, or a hardware one such as `v4l2jpegenc`).
    pub encoder: String,
    /// The camera's substream (`preview_url`): read instead of the main stream while watched.
    pub substream: Option<Substream>,
}

/// What the latest-JPEG channel holds.
#[derive(Debug, Clone)]
pub enum LatestJpeg {
    /// Nothing yet (or the preview is idle).
    Empty,
    /// The newest JPEG.
    Frame(Jpeg),
    /// The daemon is shutting down: streams end.
    Closed,
}

/// Why a viewer cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    /// `MAX_VIEWERS` are already watching.
    #[error("camera {id} already has {max} live viewers; close one and retry")]
    TooManyViewers {
        /// Camera id.
        id: String,
        /// The limit.
        max: usize,
    },
    /// No frame to show (camera failed, stopped, or still starting).
    #[error("camera {id} has no frame to show: {why}")]
    NoFrame {
        /// Camera id.
        id: String,
        /// State and last error, or what timed out.
        why: String,
    },
    /// The daemon is shutting down.
    #[error("the live view of camera {0} is shutting down")]
    Closed(String),
    /// The preview thread could not be started.
    #[error("cannot start the preview thread of camera {id}")]
    Spawn {
        /// Camera id.
        id: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Counters for `/api/cameras/{id}`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PreviewStats {
    /// MJPEG streams connected now.
    pub viewers: usize,
    /// JPEGs encoded from raw frames since start.
    pub jpeg_encodes: u64,
    /// Encodes per second over the last two seconds.
    pub jpeg_encodes_per_s: f64,
    /// Camera JPEGs passed through unchanged since start.
    pub jpeg_passthrough: u64,
}

/// A camera's MJPEG preview (a cheap handle).
#[derive(Clone)]
pub struct Preview {
    shared: Arc<Shared>,
}

struct Shared {
    id: String,
    settings: PreviewSettings,
    tap: Arc<FrameTap>,
    /// The encoded frames, decoded for the preview when the camera itself sends H.264.
    preroll: Arc<PreRoll>,
    status: Arc<CameraStatus>,
    out: watch::Sender<LatestJpeg>,
    viewers: AtomicUsize,
    /// Viewers plus snapshot requests: the thread runs while this is > 0 (and lingers).
    demand: AtomicUsize,
    /// Whether a preview thread is running; starting and exiting decide under this lock.
    running: Mutex<bool>,
    closed: AtomicBool,
    encodes: AtomicU64,
    passthrough: AtomicU64,
    /// Times of recent encodes (bounded) for the rate.
    recent: Mutex<VecDeque<Instant>>,
    /// When the last live JPEG was published.
    last_live: Mutex<Option<Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Preview {
    /// A preview reading `tap` (or `preroll`, for a camera that sends H.264); no thread runs
    /// until someone watches.
    pub fn new(
        id: &str,
        settings: PreviewSettings,
        tap: Arc<FrameTap>,
        preroll: Arc<PreRoll>,
        status: Arc<CameraStatus>,
    ) -> Self {
        Preview {
            shared: Arc::new(Shared {
                id: id.into(),
                settings,
                tap,
                preroll,
                status,
                out: watch::channel(LatestJpeg::Empty).0,
                viewers: AtomicUsize::new(0),
                demand: AtomicUsize::new(0),
                running: Mutex::new(false),
                closed: AtomicBool::new(false),
                encodes: AtomicU64::new(0),
                passthrough: AtomicU64::new(0),
                recent: Mutex::new(VecDeque::with_capacity(64)),
                last_live: Mutex::new(None),
            }),
        }
    }

    /// Connect an MJPEG viewer (counted in `viewers`); the preview runs while it lives.
    pub fn watch(&self) -> Result<Viewer, PreviewError> {
        let s = &self.shared;
        if s.viewers.fetch_add(1, Ordering::SeqCst) >= MAX_VIEWERS {
            s.viewers.fetch_sub(1, Ordering::SeqCst);
            return Err(PreviewError::TooManyViewers { id: s.id.clone(), max: MAX_VIEWERS });
        }
        self.attach(true)
    }

    fn attach(&self, counted: bool) -> Result<Viewer, PreviewError> {
        let s = &self.shared;
        s.demand.fetch_add(1, Ordering::SeqCst);
        let mut rx = s.out.subscribe();
        // A fresh JPEG goes out at once: a new viewer does not wait for the next frame.
        if matches!(&*rx.borrow(), LatestJpeg::Frame(j) if j.at.elapsed() < FRESH) {
            rx.mark_changed();
        }
        let viewer = Viewer { shared: s.clone(), rx, counted };
        if s.closed.load(Ordering::SeqCst) {
            return Err(PreviewError::Closed(s.id.clone()));
        }
        Shared::ensure_thread(s)?;
        Ok(viewer)
    }

    /// The newest live JPEG: a fresh one at once, else one encoded for this request (waiting up
    /// to `wait`). Fails at once when the camera has captured nothing for two seconds.
    pub async fn snapshot(&self, wait: Duration) -> Result<Jpeg, PreviewError> {
        let s = &self.shared;
        if let LatestJpeg::Frame(j) = &*s.out.borrow() {
            if j.live && j.at.elapsed() < FRESH {
                return Ok(j.clone());
            }
        }
        let last = s.status.last_capture_ms.load(Ordering::Relaxed);
        let now = mono_ms();
        if last == 0 || now.saturating_sub(last) > 2000 {
            let state = serde_json::to_value(s.status.state()).ok().and_then(|v| v.as_str().map(String::from));
            let why = match s.status.last_error() {
                Some(e) => format!("camera is {} ({e})", state.unwrap_or_default()),
                None => format!("camera is {} and has not delivered a frame yet", state.unwrap_or_default()),
            };
            return Err(PreviewError::NoFrame { id: s.id.clone(), why });
        }
        let mut viewer = self.attach(false)?;
        let live = async {
            while let Some(j) = viewer.next().await {
                if j.live {
                    return Some(j);
                }
            }
            None
        };
        match tokio::time::timeout(wait, live).await {
            Ok(Some(j)) => Ok(j),
            Ok(None) => Err(PreviewError::Closed(s.id.clone())),
            Err(_) => Err(PreviewError::NoFrame { id: s.id.clone(), why: format!("no JPEG within {wait:?}") }),
        }
    }

    /// End every stream and stop the thread (daemon shutdown); later viewers are refused.
    pub fn close(&self) {
        let s = &self.shared;
        s.closed.store(true, Ordering::SeqCst);
        s.out.send_replace(LatestJpeg::Closed);
    }

    /// Counters for the API.
    pub fn stats(&self) -> PreviewStats {
        let s = &self.shared;
        PreviewStats {
            viewers: s.viewers.load(Ordering::Relaxed),
            jpeg_encodes: s.encodes.load(Ordering::Relaxed),
            jpeg_encodes_per_s: (s.rate() * 10.0).round() / 10.0,
            jpeg_passthrough: s.passthrough.load(Ordering::Relaxed),
        }
    }

    /// Whether the preview thread is running (tests, diagnostics).
    pub fn running(&self) -> bool {
        *lock(&self.shared.running)
    }
}

/// One connected viewer or snapshot request; dropping it disconnects.
pub struct Viewer {
    shared: Arc<Shared>,
    rx: watch::Receiver<LatestJpeg>,
    counted: bool,
}

impl Viewer {
    /// The next JPEG (skipping any the viewer was too slow for); `None` when the live view
    /// closes.
    pub async fn next(&mut self) -> Option<Jpeg> {
        loop {
            self.rx.changed().await.ok()?;
            let latest = self.rx.borrow_and_update().clone();
            match latest {
                LatestJpeg::Frame(j) => return Some(j),
                LatestJpeg::Closed => return None,
                LatestJpeg::Empty => {}
            }
        }
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        if self.counted {
            self.shared.viewers.fetch_sub(1, Ordering::SeqCst);
        }
        self.shared.demand.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Shared {
    fn ensure_thread(this: &Arc<Self>) -> Result<(), PreviewError> {
        let mut running = lock(&this.running);
        if *running {
            return Ok(());
        }
        this.tap.set_wanted(true);
        let me = this.clone();
        match std::thread::Builder::new().name(format!("preview-{}", this.id)).spawn(move || me.run()) {
            Ok(_) => {
                *running = true;
                Ok(())
            }
            Err(e) => {
                this.tap.set_wanted(false);
                Err(PreviewError::Spawn { id: this.id.clone(), source: e })
            }
        }
    }

    /// Exit decision, under the `running` lock: with no demand (or closed) stop the tap, drop
    /// the held JPEG and mark the thread gone.
    fn try_finish(&self) -> bool {
        let mut running = lock(&self.running);
        if self.demand.load(Ordering::SeqCst) > 0 && !self.closed.load(Ordering::SeqCst) {
            return false;
        }
        self.tap.set_wanted(false);
        self.out.send_if_modified(|v| {
            if matches!(v, LatestJpeg::Frame(_)) {
                *v = LatestJpeg::Empty;
            }
            false
        });
        *running = false;
        true
    }

    fn publish(&self, j: Jpeg) {
        self.out.send_if_modified(|v| {
            if matches!(v, LatestJpeg::Closed) {
                return false;
            }
            *v = LatestJpeg::Frame(j);
            true
        });
    }

    /// A camera frame as JPEG: passed through (`encoded = false`) or from the encoder.
    fn publish_live(&self, data: Bytes, (width, height): (u32, u32), encoded: bool) {
        let now = Instant::now();
        if encoded {
            self.encodes.fetch_add(1, Ordering::Relaxed);
            let mut r = lock(&self.recent);
            if r.len() >= 512 {
                r.pop_front();
            }
            r.push_back(now);
        } else {
            self.passthrough.fetch_add(1, Ordering::Relaxed);
        }
        *lock(&self.last_live) = Some(now);
        self.publish(Jpeg { data, width, height, live: true, at: now });
    }

    fn rate(&self) -> f64 {
        let mut r = lock(&self.recent);
        while r.front().is_some_and(|t| t.elapsed() > RATE_WINDOW) {
            r.pop_front();
        }
        r.len() as f64 / RATE_WINDOW.as_secs_f64()
    }

    /// The size live JPEGs have (or would have) now, for the "NO SIGNAL" still.
    fn frame_size(&self) -> (u32, u32) {
        let w = self.settings.width;
        match self.status.format() {
            Some(f) if f.pixel == PixelFormat::Mjpeg => (f.width, f.height),
            Some(f) => jpeg::preview_size(f.width, f.height, w),
            None => jpeg::preview_size(w, w * 9 / 16, w),
        }
    }

    /// The preview thread: [`run_once`](Self::run_once) until it ends normally; a panic inside
    /// GStreamer bindings is logged and the loop restarts after a second (viewers stay).
    fn run(self: Arc<Self>) {
        log::info!("camera {}: live preview started", self.id);
        while std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_once())).is_err() {
            log::error!("camera {}: live preview panicked; restarting it", self.id);
            std::thread::sleep(Duration::from_secs(1));
        }
        log::info!("camera {}: live preview stopped", self.id);
    }

    fn run_once(self: &Arc<Self>) {
        let fps = self.settings.fps.max(1);
        let period = Duration::from_secs_f64(1.0 / fps as f64);
        let mut w = Work::new();
        let mut feed = H264Feed::default();
        let mut sub = self.settings.substream.clone().map(|s| SubstreamState::new(s, &self.id));
        let started = Instant::now();
        let mut version = 0;
        let mut idle_since: Option<Instant> = None;
        loop {
            if self.closed.load(Ordering::SeqCst) {
                self.try_finish();
                break;
            }
            if self.demand.load(Ordering::SeqCst) == 0 {
                if idle_since.get_or_insert_with(Instant::now).elapsed() >= LINGER && self.try_finish() {
                    break;
                }
            } else {
                idle_since = None;
            }
            match (sub.as_mut(), self.status.format().filter(|f| f.pixel == PixelFormat::H264)) {
                // A stopped camera shows NO SIGNAL, substream or not.
                (Some(s), _) if self.status.state() == CameraState::Stopped => {
                    s.close();
                    std::thread::sleep(Duration::from_millis(100));
                }
                (Some(s), _) => {
                    if let Some(frame) = s.next(Duration::from_millis(100)) {
                        // H.264 needs every access unit (videorate in the pipeline keeps `fps`);
                        // JPEGs are taken at the preview rate.
                        if frame.format.pixel == PixelFormat::H264 || w.due(frame.captured, period) {
                            self.handle(self, frame, &mut w);
                        }
                    }
                }
                (None, Some(format)) => {
                    // Every access unit in order (videorate in the pipeline keeps `fps`).
                    let key_only = keyframes_suffice(fps, self.status.stream().gop_s);
                    if let Some(frame) = feed.next(&self.preroll, format, Duration::from_millis(100), key_only) {
                        self.handle(self, frame, &mut w);
                    }
                }
                (None, None) => {
                    feed.reset();
                    if let Some((v, frame)) = self.tap.wait_newer(version, Duration::from_millis(100)) {
                        version = v;
                        if w.due(frame.captured, period) {
                            self.handle(self, frame, &mut w);
                        }
                    }
                }
            }
            if let Some(e) = w.encoder.as_ref().and_then(|e| e.poll_error()) {
                w.encoder = None;
                self.encoder_failed(&e, &mut w);
            }
            // NO SIGNAL after max(1 s, 2.5 frame periods) without a live JPEG, then once a second.
            let src_fps = self.status.format().map(|f| f.fps).filter(|&f| f > 0).unwrap_or(fps).min(fps);
            let quiet_limit = NO_SIGNAL_AFTER.max(Duration::from_secs_f64(2.5 / src_fps as f64));
            let quiet = lock(&self.last_live).map_or(started.elapsed(), |t| t.elapsed()).min(started.elapsed());
            if quiet >= quiet_limit && w.last_no_signal.is_none_or(|t| t.elapsed() >= NO_SIGNAL_EVERY) {
                w.last_no_signal = Some(Instant::now());
                if let Some(j) = self.no_signal(&mut w) {
                    self.publish(j);
                }
            }
        }
    }

    fn handle(&self, me: &Arc<Self>, frame: Frame, w: &mut Work) {
        let size = (frame.format.width, frame.format.height);
        if frame.format.pixel == PixelFormat::Mjpeg {
            // The camera's own JPEG: no decode, no encode.
            self.publish_live(frame.data, size, false);
            return;
        }
        if w.encoder.as_ref().is_some_and(|e| e.format != frame.format) {
            w.encoder = None;
        }
        if w.encoder.is_none() {
            if w.retry_at.is_some_and(|t| Instant::now() < t) {
                return;
            }
            let sink = me.clone();
            let (width, encoder, fps) = (self.settings.width, &self.settings.encoder, self.settings.fps);
            match JpegEncoder::new(frame.format, width, encoder, fps, move |data, size| {
                sink.publish_live(data, size, true)
            }) {
                Ok(e) => {
                    log::info!(
                        "camera {}: preview {}x{} → {}x{} with {} at ≤ {} fps",
                        self.id,
                        size.0,
                        size.1,
                        e.size.0,
                        e.size.1,
                        self.settings.encoder,
                        self.settings.fps
                    );
                    w.encoder = Some(e);
                }
                Err(e) => return self.encoder_failed(&e, w),
            }
        }
        if let Some(enc) = w.encoder.as_mut() {
            match enc.push(&frame) {
                Ok(_) => {
                    w.retry_at = None;
                    w.backoff.reset();
                }
                Err(e) => {
                    w.encoder = None;
                    self.encoder_failed(&e, w);
                }
            }
        }
    }

    fn encoder_failed(&self, e: &dyn std::error::Error, w: &mut Work) {
        let d = w.backoff.next_delay();
        log::warn!("camera {}: preview JPEG encoder failed: {}; retrying in {d:?}", self.id, error_chain(e));
        w.retry_at = Some(Instant::now() + d);
    }

    fn no_signal(&self, w: &mut Work) -> Option<Jpeg> {
        let size = self.frame_size();
        if w.no_signal.as_ref().is_none_or(|(s, _)| *s != size) {
            let rendered = jpeg::render_no_signal(size.0, size.1)
                .map_err(|e| log::warn!("camera {}: cannot render the NO SIGNAL frame: {}", self.id, error_chain(&e)))
                .ok();
            w.no_signal = Some((size, rendered));
        }
        let data = w.no_signal.as_ref()?.1.clone()?;
        Some(Jpeg { data, width: size.0, height: size.1, live: false, at: Instant::now() })
    }
}

/// The preview thread's working state.
struct Work {
    encoder: Option<JpegEncoder>,
    retry_at: Option<Instant>,
    backoff: Backoff,
    /// Capture time from which the next frame may go out (rate limit).
    next_due: Option<Duration>,
    /// The rendered still for a size (`None` if rendering failed; not retried for that size).
    no_signal: Option<((u32, u32), Option<Bytes>)>,
    last_no_signal: Option<Instant>,
}

impl Work {
    fn new() -> Self {
        Work {
            encoder: None,
            retry_at: None,
            backoff: Backoff::default(),
            next_due: None,
            no_signal: None,
            last_no_signal: None,
        }
    }

    /// Rate limit on the capture clock: at most one frame per `period`, with a quarter period
    /// of tolerance so a 15 fps source gives a 10 fps preview exactly, not 7.5.
    fn due(&mut self, captured: Duration, period: Duration) -> bool {
        if let Some(due) = self.next_due {
            if captured + 2 * period < due {
                // The capture clock went back (a source reopened with its own timebase): restart.
                self.next_due = None;
            } else if captured + period / 4 < due {
                return false;
            }
        }
        self.next_due = Some(match self.next_due {
            Some(d) if captured < d + period => d + period,
            _ => captured + period,
        });
        true
    }
}

#[cfg(test)]
#[path = "mjpeg_tests.rs"]
mod tests;
