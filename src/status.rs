//! What a camera reports about itself: state, last error, negotiated format and counters.
//!
//! Written by the capture and encode threads (atomics, short locks), read by HTTP, MQTT and the
//! systemd watchdog. Owns no thread.

use crate::frame::{AudioFormat, VideoFormat};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// A camera's state as shown on the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CameraState {
    /// Opening the source or building the encoder; no encoded frame yet.
    Starting,
    /// Frames are captured and encoded.
    Running,
    /// The source or the encoder failed; retrying with back-off (see `last_error`).
    Failed,
    /// Stopped on request.
    Stopped,
}

/// Shared, lock-light status of one camera.
#[derive(Default)]
pub struct CameraStatus {
    /// Frames delivered by the source.
    pub frames_captured: AtomicU64,
    /// Frames the source itself skipped (V4L2 sequence gaps).
    pub frames_dropped_source: AtomicU64,
    /// Frames dropped before the encoder because it was behind (its input queue was full).
    pub frames_dropped_encoder: AtomicU64,
    /// Access units produced by the encoder.
    pub frames_encoded: AtomicU64,
    /// Monotonic ms of the last captured frame (0: never).
    pub last_capture_ms: AtomicU64,
    /// Monotonic ms of the last encoded frame (0: never).
    pub last_encode_ms: AtomicU64,
    /// Capture to encoded access unit, µs, smoothed over ~8 frames (0: not measured: no frame
    /// yet, or a camera's own H.264 passed through without an encoder).
    pub encode_latency_us: AtomicU64,
    /// Set by the API to request an IDR frame at the next opportunity.
    pub force_keyframe: AtomicBool,
    /// Monotonic ms of the last `set_started` (0: never), for the start-up grace.
    pub started_ms: AtomicU64,
    /// WebRTC (WHEP) sessions of this camera now, set by `live::webrtc`.
    pub webrtc_viewers: AtomicUsize,
    stopped: AtomicBool,
    capture_ok: AtomicBool,
    encode_ok: AtomicBool,
    errors: Mutex<Errors>,
    format: Mutex<Option<VideoFormat>>,
    encoder: Mutex<String>,
    stream: Mutex<StreamInfo>,
    /// The camera's sound (its own thread; its failures never fail the camera).
    pub audio: AudioStatus,
}

/// What a camera's sound reports: written by its audio thread, read by the API.
#[derive(Default)]
pub struct AudioStatus {
    /// AAC frames into the pre-roll.
    pub frames: AtomicU64,
    /// Monotonic ms of the last AAC frame (0: never).
    pub last_frame_ms: AtomicU64,
    format: Mutex<Option<AudioFormat>>,
    encoder: Mutex<String>,
    error: Mutex<Option<String>>,
}

impl AudioStatus {
    /// The stream now (rate, channels, AudioSpecificConfig), once a frame came.
    pub fn format(&self) -> Option<AudioFormat> {
        self.format.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    /// Record the stream's format.
    pub fn set_format(&self, f: AudioFormat) {
        *self.format.lock().unwrap_or_else(|p| p.into_inner()) = Some(f);
    }
    /// AAC encoder element in use, or `passthrough`.
    pub fn encoder(&self) -> String {
        self.encoder.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    /// Record the encoder in use.
    pub fn set_encoder(&self, e: &str) {
        *self.encoder.lock().unwrap_or_else(|p| p.into_inner()) = e.into();
    }
    /// The most recent failure of the sound (kept after recovery).
    pub fn last_error(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    /// The sound failed; it is retried, video goes on.
    pub fn failed(&self, msg: String) {
        log::warn!("audio failed: {msg}");
        *self.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(msg);
    }
    /// An AAC frame went into the pre-roll.
    pub fn frame(&self) {
        self.frames.fetch_add(1, Ordering::Relaxed);
        self.last_frame_ms.store(crate::time::mono_ms(), Ordering::Relaxed);
    }
    /// Whether a frame came within `window`.
    pub fn live(&self, window: Duration) -> bool {
        let last = self.last_frame_ms.load(Ordering::Relaxed);
        last != 0 && crate::time::mono_ms().saturating_sub(last) <= window.as_millis() as u64
    }
}

/// What the H.264 in the pre-roll is: the camera's own (passed through) or hindsight's encoder's.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StreamInfo {
    /// `h264` once a frame has been seen.
    pub codec: Option<String>,
    /// `main`, `high`, `constrained-baseline`, ... from the SPS.
    pub profile: Option<String>,
    /// `4.0`, `3.1`, ... from the SPS.
    pub level: Option<String>,
    /// Measured seconds between keyframes (the last GOP).
    pub gop_s: Option<f64>,
}

#[derive(Default)]
struct Errors {
    capture: Option<String>,
    encode: Option<String>,
    last: Option<String>,
}

impl CameraStatus {
    fn errors(&self) -> std::sync::MutexGuard<'_, Errors> {
        self.errors.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ask the encoder for an IDR frame at the next opportunity (a clip or a live viewer
    /// starting); the encoder clears it.
    pub fn request_keyframe(&self) {
        self.force_keyframe.store(true, Ordering::Relaxed);
    }

    /// The state now.
    pub fn state(&self) -> CameraState {
        if self.stopped.load(Ordering::SeqCst) {
            return CameraState::Stopped;
        }
        let e = self.errors();
        if e.capture.is_some() || e.encode.is_some() {
            CameraState::Failed
        } else if self.capture_ok.load(Ordering::SeqCst) && self.encode_ok.load(Ordering::SeqCst) {
            CameraState::Running
        } else {
            CameraState::Starting
        }
    }

    /// The most recent error (kept after recovery, for the operator).
    pub fn last_error(&self) -> Option<String> {
        self.errors().last.clone()
    }

    /// The source failed; it will be retried.
    pub fn capture_failed(&self, err: &dyn std::error::Error) {
        let msg = error_chain(err);
        log::warn!("capture failed: {msg}");
        self.capture_ok.store(false, Ordering::SeqCst);
        let mut e = self.errors();
        e.capture = Some(msg.clone());
        e.last = Some(msg);
    }

    /// A frame was captured: the source works.
    pub fn frame_captured(&self) {
        self.frames_captured.fetch_add(1, Ordering::Relaxed);
        self.last_capture_ms.store(crate::time::mono_ms(), Ordering::Relaxed);
        if !self.capture_ok.load(Ordering::Relaxed) {
            self.capture_ok.store(true, Ordering::SeqCst);
            self.errors().capture = None;
        }
    }

    /// The encoder failed; it will be rebuilt.
    pub fn encode_failed(&self, err: &dyn std::error::Error) {
        let msg = error_chain(err);
        log::warn!("encoder failed: {msg}");
        self.encode_ok.store(false, Ordering::SeqCst);
        let mut e = self.errors();
        e.encode = Some(msg.clone());
        e.last = Some(msg);
    }

    /// An access unit came out of the encoder: it works.
    pub fn frame_encoded(&self) {
        self.frame_encoded_at(crate::time::mono_now());
    }

    /// [`Self::frame_encoded`] at `now` (CLOCK_MONOTONIC).
    fn frame_encoded_at(&self, now: Duration) {
        self.frames_encoded.fetch_add(1, Ordering::Relaxed);
        self.last_encode_ms.store(now.as_millis() as u64, Ordering::Relaxed);
        if !self.encode_ok.load(Ordering::Relaxed) {
            self.encode_ok.store(true, Ordering::SeqCst);
            self.errors().encode = None;
        }
    }

    /// An access unit captured at `captured` (CLOCK_MONOTONIC: its PTS) came out of the encoder:
    /// [`Self::frame_encoded`] and the encoder's latency from one clock read. One writer (the
    /// encoder's appsink thread).
    pub fn frame_encoded_from(&self, captured: Duration) {
        let now = crate::time::mono_now();
        self.frame_encoded_at(now);
        let us = now.saturating_sub(captured).as_micros().min(u128::from(u32::MAX)) as u64;
        let old = self.encode_latency_us.load(Ordering::Relaxed);
        let new = if old == 0 { us.max(1) } else { (old * 7 + us) / 8 };
        self.encode_latency_us.store(new.max(1), Ordering::Relaxed);
    }

    /// Mark started (after `start`/`restart`): clears the stage flags, keeps counters.
    pub fn set_started(&self) {
        self.started_ms.store(crate::time::mono_ms(), Ordering::Relaxed);
        self.stopped.store(false, Ordering::SeqCst);
        self.capture_ok.store(false, Ordering::SeqCst);
        self.encode_ok.store(false, Ordering::SeqCst);
        let mut e = self.errors();
        e.capture = None;
        e.encode = None;
    }

    /// Mark stopped on request.
    pub fn set_stopped(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.capture_ok.store(false, Ordering::SeqCst);
        self.encode_ok.store(false, Ordering::SeqCst);
    }

    /// Record the format the source actually delivers.
    pub fn set_format(&self, f: VideoFormat) {
        *self.format.lock().unwrap_or_else(|p| p.into_inner()) = Some(f);
    }

    /// The format the source delivers, once known.
    pub fn format(&self) -> Option<VideoFormat> {
        *self.format.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record the encoder element in use.
    pub fn set_encoder(&self, name: &str) {
        *self.encoder.lock().unwrap_or_else(|p| p.into_inner()) = name.to_string();
    }

    /// The encoder element in use (empty before the first build).
    pub fn encoder(&self) -> String {
        self.encoder.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Record what the stream is (codec, profile, level, GOP).
    pub fn set_stream(&self, info: StreamInfo) {
        *self.stream.lock().unwrap_or_else(|p| p.into_inner()) = info;
    }

    /// What the stream is, as far as known.
    pub fn stream(&self) -> StreamInfo {
        self.stream.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether both capture and encode produced a frame within `window` (systemd watchdog).
    pub fn progressing(&self, window: Duration) -> bool {
        let now = crate::time::mono_ms();
        let w = window.as_millis() as u64;
        let fresh = |t: u64| t != 0 && now.saturating_sub(t) <= w;
        fresh(self.last_capture_ms.load(Ordering::Relaxed)) && fresh(self.last_encode_ms.load(Ordering::Relaxed))
    }

    /// Whether the camera was (re)started within `grace`: a source that is still opening (a
    /// phone that connected but has not sent its first chunk, a slow sensor) is not a hang yet.
    pub fn starting_within(&self, grace: Duration) -> bool {
        let t = self.started_ms.load(Ordering::Relaxed);
        t != 0 && crate::time::mono_ms().saturating_sub(t) <= grace.as_millis() as u64
    }
}

/// An error and all its causes, `outer: inner: innermost`.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(c) = cur {
        let cs = c.to_string();
        if !s.contains(&cs) {
            s.push_str(": ");
            s.push_str(&cs);
        }
        cur = c.source();
    }
    crate::redact::redact(&s).into_owned()
}
