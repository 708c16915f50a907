//! Encode: one named thread per camera (`encode-{id}`) that takes raw frames from the
//! [`FrameRing`], pushes them through a GStreamer pipeline (appsrc → decode JPEG if needed →
//! convert → H.264 encoder → `h264parse` → appsink) and appends the access units to the
//! [`PreRoll`] buffer with the frame's capture time as PTS/DTS.
//!
//! The encoder element comes from [`chain::resolve`] (`auto`: the board's list, hardware first).
//! A bus error becomes a typed [`GstError`] with the element path; the pipeline is then torn down
//! and rebuilt with back-off while capture keeps running (the ring drops what it cannot hold).
//! On stop, EOS is sent through the pipeline and waited for so the last frames are flushed.
//! A camera's own H.264 is not encoded: [`PassStage`] stores it, on the capture thread.
//!
//! Must never block the capture thread (the pass-through stage only pauses it with back-off
//! after an error, as the encode thread would) and never write to storage.

pub mod chain;
pub mod passthrough;

use crate::frame::{EncodedFrame, Frame, PixelFormat, VideoFormat};
use crate::gst::{element_exists, running_time, GstError, Pipeline};
use crate::preroll::PreRoll;
use crate::ring::{FrameRing, Pop};
use crate::shutdown::{Backoff, StopToken};
use crate::status::CameraStatus;
use bytes::Bytes;
use gst::prelude::*;
use gstreamer as gst;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Frame rate assumed for a source that announces a variable one (`framerate=0/1`).
const VFR_FPS: u32 = 30;

/// Why the encoder could not run.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// No usable encoder element.
    #[error("{0}")]
    NoEncoder(String),
    /// GStreamer failed (building, or an element error at run time).
    #[error("encoder pipeline failed")]
    Gst(#[from] GstError),
    /// The source's own H.264 cannot be passed through as it is.
    #[error("{0}")]
    Stream(String),
    /// appsrc refused a buffer.
    #[error("encoder refused frame {seq}: {flow:?}")]
    Push {
        /// The frame's sequence number.
        seq: u64,
        /// GStreamer's flow return.
        flow: gst::FlowError,
    },
}

/// Static settings of one camera's encoder.
#[derive(Debug, Clone)]
pub struct EncoderConfig {
    /// Camera id (thread name, logs).
    pub id: String,
    /// `auto` or an element name.
    pub encoder: String,
    /// Candidates for `auto`.
    pub auto_encoders: Vec<String>,
    /// Bitrate in kbit/s.
    pub bitrate_kbps: u32,
    /// Keyframe period in seconds.
    pub keyframe_interval_s: f64,
    /// Wait (up to [`BURST_WAIT`]) for the encoder instead of dropping a frame when it is behind:
    /// for a source whose frames come in bursts it can wait for (a phone's MediaRecorder sends a
    /// second of video at once; its backlog waits compressed in front of the decoder). A camera
    /// that cannot wait keeps `false`: a frame it cannot take now is dropped and counted.
    pub wait_for_room: bool,
    /// Seconds kept before a trigger (pass-through warns when the camera's GOP does not fit).
    pub pre_s: f64,
    /// The pre-roll's byte cap (the same warning).
    pub preroll_cap_bytes: usize,
}

/// How long an encoder fed in bursts may make the capture side wait for room for one frame.
pub const BURST_WAIT: Duration = Duration::from_millis(500);

/// The encode stage of one camera.
pub struct Encoder {
    cfg: EncoderConfig,
    ring: Arc<FrameRing>,
    preroll: Arc<PreRoll>,
    status: Arc<CameraStatus>,
    stop: StopToken,
    /// Capture time that maps to PTS 0 in every pipeline this stage builds.
    base: Option<Duration>,
}

/// A built, playing pipeline for one input format.
struct Active {
    pipeline: Pipeline,
    src: gst_app::AppSrc,
    format: VideoFormat,
    frame_duration: Duration,
    /// (PTS ns, capture sequence) of frames in flight, to label the encoder's output.
    pending: Arc<Mutex<VecDeque<(u64, u64)>>>,
}

impl Encoder {
    /// An encoder stage between `ring` and `preroll`; nothing runs until [`spawn`](Self::spawn).
    pub fn new(
        cfg: EncoderConfig,
        ring: Arc<FrameRing>,
        preroll: Arc<PreRoll>,
        status: Arc<CameraStatus>,
        stop: StopToken,
    ) -> Self {
        Encoder { cfg, ring, preroll, status, stop, base: None }
    }

    /// Run on a thread named `encode-{id}`.
    pub fn spawn(self) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new().name(format!("encode-{}", self.cfg.id)).spawn(move || self.run())
    }

    /// Pull frames until the ring is closed, rebuilding the pipeline with back-off on failure.
    pub fn run(mut self) {
        let mut backoff = Backoff::default();
        let mut active: Option<Active> = None;
        let mut encoded_at_build = 0u64;
        loop {
            let frame = match self.ring.pop(Duration::from_millis(250)) {
                Pop::Closed => break,
                Pop::Timeout => {
                    if let Some(e) = active.as_ref().and_then(|a| a.pipeline.poll_error()) {
                        active = None;
                        self.failed(EncodeError::Gst(e), &mut backoff);
                    }
                    continue;
                }
                Pop::Frame(f) => f,
            };
            if self.cfg.encoder == "passthrough" {
                let e = format!(
                    "encoder = \"passthrough\" needs an H.264 source; this one delivers {}",
                    frame.format.pixel
                );
                self.failed(EncodeError::NoEncoder(e), &mut backoff);
                continue;
            }
            if active.as_ref().is_some_and(|a| a.format != frame.format) {
                log::info!("camera {}: input format changed, rebuilding encoder", self.cfg.id);
                if let Some(a) = active.take() {
                    a.finish();
                }
            }
            if active.is_none() {
                let base = *self.base.get_or_insert(frame.captured);
                match self.build(frame.format, base) {
                    Ok(a) => {
                        active = Some(a);
                        encoded_at_build = self.status.frames_encoded.load(Ordering::Relaxed);
                    }
                    Err(e) => {
                        self.failed(e, &mut backoff);
                        continue;
                    }
                }
            }
            let Some(a) = active.as_ref() else { continue };
            if self.status.force_keyframe.swap(false, Ordering::Relaxed) {
                a.force_keyframe();
            }
            let base = self.base.unwrap_or(frame.captured);
            match a.push(frame, base, self.cfg.wait_for_room) {
                Ok(true) => {}
                Ok(false) => {
                    self.status.frames_dropped_encoder.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    active = None;
                    self.failed(e, &mut backoff);
                    continue;
                }
            }
            if let Some(e) = a.pipeline.poll_error() {
                active = None;
                self.failed(EncodeError::Gst(e), &mut backoff);
                continue;
            }
            if self.status.frames_encoded.load(Ordering::Relaxed) > encoded_at_build {
                backoff.reset();
            }
        }
        if let Some(a) = active {
            a.finish();
        }
        log::debug!("camera {}: encoder stopped", self.cfg.id);
    }

    fn failed(&self, e: EncodeError, backoff: &mut Backoff) {
        failed(&self.cfg.id, &self.status, &self.stop, e, backoff);
    }

    fn build(&self, format: VideoFormat, base: Duration) -> Result<Active, EncodeError> {
        crate::gst::init()?;
        let element = chain::resolve(&self.cfg.encoder, &self.cfg.auto_encoders, element_exists)
            .map_err(EncodeError::NoEncoder)?;
        // A variable-frame-rate source (a phone's MediaRecorder stream may announce 0/1 before
        // the demuxer knows better) gets 30 fps for the keyframe period and frame duration;
        // 1 fps would make every frame a keyframe lasting a second.
        let fps = if format.fps == 0 { VFR_FPS } else { format.fps };
        let settings = chain::EncodeSettings {
            bitrate_kbps: self.cfg.bitrate_kbps,
            keyframe_frames: (self.cfg.keyframe_interval_s * fps as f64).round().max(1.0) as u32,
        };
        let desc =
            chain::pipeline_description(&VideoFormat { fps, ..format }.caps(), format.pixel, &element, &settings);
        log::info!("camera {}: encoder {element}: {desc}", self.cfg.id);
        let pipeline = Pipeline::parse(&desc)?;
        let src: gst_app::AppSrc = pipeline.by_name("src")?;
        let sink: gst_app::AppSink = pipeline.by_name("sink")?;
        let pending = Arc::new(Mutex::new(VecDeque::with_capacity(64)));
        let frame_duration = Duration::from_nanos(1_000_000_000 / fps as u64);
        let out = Output {
            preroll: self.preroll.clone(),
            status: self.status.clone(),
            pending: pending.clone(),
            frame_duration,
            base,
        };
        sink.set_callbacks(gst_app::AppSinkCallbacks::builder().new_sample(move |sink| out.on_sample(sink)).build());
        pipeline.play()?;
        self.status.set_encoder(&element);
        self.status.set_stream(crate::status::StreamInfo {
            codec: Some("h264".into()),
            gop_s: Some(self.cfg.keyframe_interval_s),
            ..Default::default()
        });
        Ok(Active { pipeline, src, format, frame_duration, pending })
    }
}

/// An encode-stage failure: shown in the camera's status, then a back-off pause.
fn failed(id: &str, status: &CameraStatus, stop: &StopToken, e: EncodeError, backoff: &mut Backoff) {
    status.encode_failed(&e);
    let d = backoff.next_delay();
    log::info!("camera {id}: rebuilding encoder in {d:?}");
    stop.sleep(d);
}

/// Pass-through of an H.264 source's access units straight into the pre-roll. The camera runs it
/// on its capture thread ([`PassStage::offer`] as the capture's bypass), so an access unit is
/// not handed to the encode thread on the way (one thread wake-up less per frame: scripts/bench-rtsp
/// measured 0.0007 cores of 0.016). With it installed no H.264 frame reaches the encode thread
/// unless `encoder` names an element (then it is decoded and re-encoded there).
pub struct PassStage {
    id: String,
    preroll: Arc<PreRoll>,
    status: Arc<CameraStatus>,
    stop: StopToken,
    expect: passthrough::Expectations,
    pass: Option<(VideoFormat, passthrough::Passthrough)>,
    backoff: Backoff,
}

impl PassStage {
    /// The pass-through of the camera `cfg` describes.
    pub fn new(cfg: &EncoderConfig, preroll: Arc<PreRoll>, status: Arc<CameraStatus>, stop: StopToken) -> Self {
        let expect = passthrough::Expectations { pre_s: cfg.pre_s, cap_bytes: cfg.preroll_cap_bytes };
        PassStage { id: cfg.id.clone(), preroll, status, stop, expect, pass: None, backoff: Backoff::default() }
    }

    /// Whether `cfg` passes an H.264 source through (`auto` or `passthrough`).
    pub fn applies(cfg: &EncoderConfig) -> bool {
        matches!(cfg.encoder.as_str(), "auto" | "passthrough")
    }

    /// Take `frame` into the pre-roll when it is H.264 (`None`); give any other frame back, for
    /// the encoder.
    pub fn offer(&mut self, frame: Frame) -> Option<Frame> {
        if frame.format.pixel != PixelFormat::H264 {
            self.pass = None;
            return Some(frame);
        }
        // A keyframe request cannot reach the camera; the clip or viewer waits for its next IDR.
        self.status.force_keyframe.store(false, Ordering::Relaxed);
        if self.pass.as_ref().is_some_and(|(f, _)| *f != frame.format) {
            log::info!(
                "camera {}: the stream changed to {}x{}; passing through from its next keyframe",
                self.id,
                frame.format.width,
                frame.format.height
            );
            self.pass = None;
        }
        let format = frame.format;
        let (_, p) = self.pass.get_or_insert_with(|| {
            let p = passthrough::Passthrough::new(&self.id, self.preroll.clone(), self.status.clone(), self.expect);
            (format, p)
        });
        match p.push(frame) {
            Ok(()) => self.backoff.reset(),
            Err(e) => failed(&self.id, &self.status, &self.stop, e, &mut self.backoff),
        }
        None
    }
}

/// The appsink side: runs on GStreamer's streaming thread.
struct Output {
    preroll: Arc<PreRoll>,
    status: Arc<CameraStatus>,
    pending: Arc<Mutex<VecDeque<(u64, u64)>>>,
    frame_duration: Duration,
    /// Capture time of PTS 0.
    base: Duration,
}

impl Output {
    fn on_sample(&self, sink: &gst_app::AppSink) -> Result<gst::FlowSuccess, gst::FlowError> {
        let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
        let segment = sample.segment();
        let Some(buffer) = sample.buffer_owned() else {
            return Ok(gst::FlowSuccess::Ok);
        };
        let Some(rt) = running_time(segment, buffer.pts()) else {
            return Ok(gst::FlowSuccess::Ok);
        };
        let rt_ns = rt.nseconds();
        let dts_ns = running_time(segment, buffer.dts()).map(|d| d.nseconds()).unwrap_or(rt_ns);
        let keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
        let duration = buffer.duration().map(|d| Duration::from_nanos(d.nseconds())).unwrap_or(self.frame_duration);
        let seq = {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            while p.front().is_some_and(|&(pts, _)| pts < rt_ns) {
                p.pop_front();
            }
            match p.front() {
                Some(&(pts, seq)) if pts == rt_ns => {
                    p.pop_front();
                    seq
                }
                // The encoder retimed the frame; keep it, unlabelled.
                _ => u64::MAX,
            }
        };
        let data = match buffer.into_mapped_buffer_readable() {
            Ok(m) => Bytes::from_owner(m),
            Err(_) => return Ok(gst::FlowSuccess::Ok),
        };
        let frame = EncodedFrame {
            data,
            pts: self.base + Duration::from_nanos(rt_ns),
            dts: self.base + Duration::from_nanos(dts_ns.min(rt_ns)),
            duration,
            keyframe,
            seq,
        };
        let captured = frame.pts;
        self.preroll.push(frame);
        self.status.frame_encoded_from(captured);
        Ok(gst::FlowSuccess::Ok)
    }
}

impl Active {
    /// Hand one frame to appsrc; its data is shared, not copied.
    /// Returns `Ok(false)` when the frame was dropped because the encoder is behind.
    fn push(&self, frame: Frame, base: Duration, wait_for_room: bool) -> Result<bool, EncodeError> {
        // appsrc's own queue is unbounded: keep at most three frames waiting inside GStreamer;
        // past that the encoder is behind and the frame is dropped (and counted), like the ring
        // — unless the source can wait: then up to BURST_WAIT for the encoder to catch up (a
        // 2 ms poll, only while behind).
        let limit = 3 * frame.data.len() as u64;
        if self.src.current_level_bytes() > limit {
            if !wait_for_room {
                return Ok(false);
            }
            let deadline = std::time::Instant::now() + BURST_WAIT;
            while self.src.current_level_bytes() > limit {
                if std::time::Instant::now() >= deadline {
                    return Ok(false);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        let pts = frame.captured.saturating_sub(base).as_nanos() as u64;
        {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if p.len() >= 256 {
                p.pop_front();
            }
            p.push_back((pts, frame.seq));
        }
        let mut buffer = gst::Buffer::from_slice(frame.data);
        if let Some(b) = buffer.get_mut() {
            b.set_pts(gst::ClockTime::from_nseconds(pts));
            b.set_duration(gst::ClockTime::from_nseconds(self.frame_duration.as_nanos() as u64));
        }
        self.src.push_buffer(buffer).map(|_| true).map_err(|flow| {
            match self.pipeline.error_within(Duration::from_millis(100)) {
                Some(e) => EncodeError::Gst(e),
                None => EncodeError::Push { seq: frame.seq, flow },
            }
        })
    }

    /// Ask for an IDR (with SPS/PPS) on the next frame; serialized with the buffers.
    fn force_keyframe(&self) {
        let ev = gst_video::DownstreamForceKeyUnitEvent::builder().all_headers(true).build();
        self.src.send_event(ev);
    }

    /// EOS through the pipeline, wait for the last frames, then tear down.
    fn finish(self) {
        let _ = self.src.end_of_stream();
        if let Err(e) = self.pipeline.wait_eos(Duration::from_secs(3)) {
            log::debug!("encoder drain: {e}");
        }
    }
}
