//! Capture: one named thread per camera (`capture-{id}`) reading a [`Source`] and pushing
//! [`Frame`]s into the [`FrameRing`].
//!
//! Sources: [`v4l2`] (the v4l crate, MMAP streaming), [`gst`] (any GStreamer source pipeline via
//! appsink), [`network`] (RTSP and HTTP MJPEG cameras, UVC H.264 webcams: GStreamer pipelines
//! that hindsight builds) and [`test_pattern`] (a moving pattern that carries its frame number);
//! [`phone`] feeds a browser's MediaRecorder stream into a GStreamer source, and [`sound`] takes
//! an RTSP or phone camera's own sound as a branch of its pipeline.
//! The loop rebases each source's sequence numbers onto one camera-wide counter (leaving one out
//! at each reopen: frames were lost there), counts the frames the source skipped, and when the
//! source fails (device unplugged, pipeline error) marks the camera failed and reopens it with
//! back-off until it returns or the camera stops.
//!
//! Must never block on the encoder: the ring drops the oldest frame instead.

pub mod check;
pub mod gst;
pub mod network;
pub mod phone;
pub mod sound;
pub mod test_pattern;
pub mod v4l2;

use crate::config::{SourceConfig, SourceKind};
use crate::frame::{AudioFormat, AudioFrame, Frame, VideoFormat};
use crate::gst::GstError;
use crate::ring::FrameRing;
use crate::shutdown::{Backoff, StopToken};
use crate::status::CameraStatus;
use crate::tap::FrameTap;
use phone::PhoneFeed;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Why a source could not deliver frames.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The device could not be opened (missing, busy, permissions).
    #[error("cannot open {device}")]
    Open {
        /// Device path.
        device: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The device offers nothing hindsight can use as configured.
    #[error("{device}: {message}")]
    Format {
        /// Device path.
        device: String,
        /// What was asked and what the driver offers.
        message: String,
    },
    /// Streaming I/O failed (e.g. the device vanished: ENODEV).
    #[error("{device}: capture failed after frame {sequence}")]
    Io {
        /// Device path.
        device: String,
        /// The last good frame's sequence number.
        sequence: u64,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// No frame for too long.
    #[error("{device}: no frame for {seconds} s")]
    Stalled {
        /// Device path or pipeline.
        device: String,
        /// How long.
        seconds: u64,
    },
    /// A GStreamer source pipeline failed.
    #[error("source pipeline failed")]
    Gst(#[from] GstError),
    /// A camera's GStreamer pipeline failed: [`Gst`](Self::Gst) with the camera named.
    #[error("{device}: source pipeline failed")]
    Pipeline {
        /// The source as logs may show it (redacted URL or pipeline).
        device: String,
        /// What GStreamer said.
        #[source]
        source: GstError,
    },
    /// A panic inside a driver binding was caught (the thread lives on).
    #[error("{0}: capture thread panicked; reopening")]
    Panicked(String),
}

impl CaptureError {
    /// The same error naming the source `device` (redacted): a stall or a pipeline error
    /// says which camera it came from, and never the pipeline text with its credentials.
    pub fn naming(self, device: &str) -> CaptureError {
        match self {
            CaptureError::Stalled { seconds, .. } => CaptureError::Stalled { device: device.into(), seconds },
            CaptureError::Gst(source) => CaptureError::Pipeline { device: device.into(), source },
            e => e,
        }
    }
}

/// A frame source. `next_frame` returns `Ok(None)` when nothing arrived within `wait`, so the
/// caller can check for stop requests.
pub trait Source: Send {
    /// The format actually delivered.
    fn format(&self) -> VideoFormat;
    /// The next frame; `seq` is the source's own counter (gaps mean skipped frames).
    fn next_frame(&mut self, wait: Duration) -> Result<Option<Frame>, CaptureError>;
    /// Short description for logs.
    fn describe(&self) -> String;
}

/// A camera's own sound, taken from its stream (`audio = { kind = "source" }`): an RTSP
/// camera's AAC passed through bit for bit, G.711 and Opus decoded and encoded once; a phone's
/// Opus or AAC decoded and encoded once ([`sound`]).
#[derive(Clone)]
pub struct SoundTap {
    /// What decoded sound goes through to become AAC frames (`audio::encode_chain`).
    pub encode: String,
    /// The name of that chain's encoder, and the samples it primes with (`audio::priming`).
    pub encoder: String,
    pub primed: u64,
    /// Where the sound goes, from the pipeline's streaming thread.
    pub deliver: Arc<dyn Fn(SoundEvent) + Send + Sync>,
}

/// What a [`SoundTap`] is told.
pub enum SoundEvent {
    /// The sound's format, and `passthrough` or the encoder making it (on the first frame and
    /// whenever it changes).
    Format(AudioFormat, String),
    /// An AAC frame, dated on the video's capture clock.
    Frame(AudioFrame),
    /// Why there is no sound (the camera sends none, or a kind hindsight cannot take).
    Failed(String),
}

/// Open the source a camera is configured with (`feed`: a browser camera's chunks).
pub fn open(cfg: &SourceConfig, feed: Option<&Arc<PhoneFeed>>) -> Result<Box<dyn Source>, CaptureError> {
    open_with_sound(cfg, feed, None)
}

/// [`open`], with the camera's own sound to `sound` (RTSP and phone cameras; others ignore it).
pub fn open_with_sound(
    cfg: &SourceConfig,
    feed: Option<&Arc<PhoneFeed>>,
    sound: Option<&SoundTap>,
) -> Result<Box<dyn Source>, CaptureError> {
    let w = cfg.width.unwrap_or(1280);
    let h = cfg.height.unwrap_or(720);
    let fps = cfg.fps.unwrap_or(30);
    Ok(match cfg.kind {
        SourceKind::Test => Box::new(test_pattern::TestPattern::new(w, h, fps)),
        SourceKind::Gstreamer => Box::new(gst::GstSource::open(cfg.pipeline.as_deref().unwrap_or(""))?),
        SourceKind::Browser => match feed {
            Some(f) => Box::new(f.open(sound.cloned())?),
            None => {
                return Err(CaptureError::Format {
                    device: "browser".into(),
                    message: "no browser feed attached to this camera".into(),
                })
            }
        },
        SourceKind::Rtsp => {
            let url = cfg.url.as_deref().unwrap_or("");
            let (src, _) = network::open_rtsp_listing(
                url,
                cfg.transport.unwrap_or_default(),
                cfg.tls_fingerprint.as_deref(),
                sound.cloned(),
            )?;
            Box::new(src)
        }
        SourceKind::HttpMjpeg => Box::new(network::open_http_mjpeg(cfg.url.as_deref().unwrap_or(""))?),
        SourceKind::V4l2 if cfg.delivers_h264() => {
            Box::new(network::open_v4l2_h264(cfg.device.as_deref().unwrap_or("/dev/video0"), w, h, fps)?)
        }
        SourceKind::V4l2 => Box::new(v4l2::V4l2Source::open(
            cfg.device.as_deref().unwrap_or("/dev/video0"),
            cfg.format.as_deref().unwrap_or("auto"),
            w,
            h,
            fps,
        )?),
    })
}

/// How long a source may go without a frame before it is reopened.
const STALL: Duration = Duration::from_secs(5);
/// The same for a browser: MediaRecorder may deliver MP4 fragments seconds apart.
const STALL_BROWSER: Duration = Duration::from_secs(20);
/// How long a browser's frame may wait for room in the ring (its stream waits, compressed,
/// in front of the decoder meanwhile) before the oldest frame is dropped.
const RING_WAIT_BROWSER: Duration = Duration::from_millis(500);

/// The capture stage of one camera.
pub struct Capture {
    id: String,
    source: SourceConfig,
    ring: Arc<FrameRing>,
    status: Arc<CameraStatus>,
    stop: StopToken,
    next_seq: u64,
    tap: Option<Arc<FrameTap>>,
    feed: Option<Arc<PhoneFeed>>,
    bypass: Option<Bypass>,
    sound: Option<SoundTap>,
}

/// Takes a frame before the ring (`None`: taken) or gives it back: the camera's pass-through,
/// which stores a camera's H.264 in the pre-roll from this thread.
pub type Bypass = Box<dyn FnMut(Frame) -> Option<Frame> + Send>;

impl Capture {
    /// A capture stage feeding `ring`; nothing runs until [`spawn`](Self::spawn).
    pub fn new(
        id: &str,
        source: SourceConfig,
        ring: Arc<FrameRing>,
        status: Arc<CameraStatus>,
        stop: StopToken,
    ) -> Self {
        Capture {
            id: id.into(),
            source,
            ring,
            status,
            stop,
            next_seq: 0,
            tap: None,
            feed: None,
            bypass: None,
            sound: None,
        }
    }

    /// Also publish every frame into `tap` (the live preview's latest-frame slot).
    pub fn with_tap(mut self, tap: Arc<FrameTap>) -> Self {
        self.tap = Some(tap);
        self
    }

    /// Offer every frame to `bypass` before the ring.
    pub fn with_bypass(mut self, bypass: Option<Bypass>) -> Self {
        self.bypass = bypass;
        self
    }

    /// Take the camera's own sound from its stream into `sound` (RTSP cameras).
    pub fn with_sound(mut self, sound: Option<SoundTap>) -> Self {
        self.sound = sound;
        self
    }

    /// Read a browser's chunks from `feed` (sources of kind `browser`).
    pub fn with_feed(mut self, feed: Option<Arc<PhoneFeed>>) -> Self {
        self.feed = feed;
        self
    }

    /// Run on a thread named `capture-{id}`.
    pub fn spawn(self) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new().name(format!("capture-{}", self.id)).spawn(move || self.run())
    }

    /// Retry [`run_once`](Self::run_once) with back-off until stopped.
    pub fn run(mut self) {
        let mut backoff = Backoff::default();
        while !self.stop.is_stopped() {
            let seq_before = self.next_seq;
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_once()))
                .unwrap_or_else(|_| Err(CaptureError::Panicked(self.source.describe())));
            if self.next_seq > seq_before {
                backoff.reset();
            }
            match result {
                Ok(()) => break,
                Err(e) => {
                    self.status.capture_failed(&e);
                    let delay = backoff.next_delay();
                    log::info!("camera {}: reopening source in {:?}", self.id, delay);
                    self.stop.sleep(delay);
                }
            }
        }
        log::debug!("camera {}: capture stopped", self.id);
    }

    /// Open the source and pump frames until it fails (`Err`) or the camera stops (`Ok`).
    fn run_once(&mut self) -> Result<(), CaptureError> {
        let mut source = open_with_sound(&self.source, self.feed.as_ref(), self.sound.as_ref())?;
        let mut format = source.format();
        log::info!(
            "camera {}: {} delivers {}x{} {} @ {} fps",
            self.id,
            source.describe(),
            format.width,
            format.height,
            format.pixel,
            format.fps
        );
        self.status.set_format(format);
        let mut first_src_seq: Option<u64> = None;
        let mut last_src_seq = 0u64;
        // A reopened source is a discontinuity (the camera went on without us): one sequence
        // number is left out, so the encode stage sees the gap. An H.264 camera may start the new
        // session mid-GOP; with the gap, pass-through waits for its next IDR instead of storing
        // frames that refer to a picture it never got.
        let base = if self.next_seq > 0 { self.next_seq + 1 } else { 0 };
        let mut idle = Duration::ZERO;
        let wait = Duration::from_millis(250);
        let stall = if self.feed.is_some() { STALL_BROWSER } else { STALL };
        while !self.stop.is_stopped() {
            let Some(mut frame) = source.next_frame(wait)? else {
                idle += wait;
                if idle >= stall {
                    return Err(CaptureError::Stalled { device: source.describe(), seconds: idle.as_secs() });
                }
                continue;
            };
            idle = Duration::ZERO;
            let src_seq = frame.seq;
            let first = *first_src_seq.get_or_insert(src_seq);
            if src_seq > last_src_seq + 1 && src_seq != first {
                self.status.frames_dropped_source.fetch_add(src_seq - last_src_seq - 1, Ordering::Relaxed);
            }
            last_src_seq = src_seq;
            frame.seq = base + src_seq.saturating_sub(first);
            self.next_seq = frame.seq + 1;
            if frame.format != format {
                if format.width == 0 {
                    // A browser source learns its format from its first frame.
                    log::info!(
                        "camera {}: stream is {}x{} {} @ {} fps",
                        self.id,
                        frame.format.width,
                        frame.format.height,
                        frame.format.pixel,
                        frame.format.fps
                    );
                    format = frame.format;
                }
                self.status.set_format(frame.format);
            }
            self.status.frame_captured();
            if let Some(tap) = &self.tap {
                tap.publish(&frame);
            }
            let frame = match self.bypass.as_mut() {
                Some(take) => match take(frame) {
                    Some(f) => f,
                    None => continue,
                },
                None => frame,
            };
            if self.feed.is_some() {
                // Chunks arrive in bursts: hold the decoder back rather than drop raw frames.
                self.ring.push_wait(frame, RING_WAIT_BROWSER);
            } else {
                self.ring.push(frame);
            }
        }
        Ok(())
    }
}
