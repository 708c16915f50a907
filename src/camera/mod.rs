//! One camera: the capture thread, the frame ring, the encode thread and the pre-roll buffer,
//! wired together, plus the live preview's frame tap and [`Preview`] (which outlive
//! start/stop, so MJPEG viewers stay connected across a restart), with start/stop/restart and a
//! [`CameraInfo`] snapshot for the API.
//!
//! Stop order: stop capture, close the ring, let the encoder drain (EOS), join both threads
//! (and the sound's, [`crate::audio`], which the same stop token ends).
//! `start`/`stop` block while threads are joined: call them off the async runtime.

pub mod registry;

use crate::audio::AudioSource;
use crate::capture::phone::PhoneFeed;
use crate::capture::{Capture, SoundEvent, SoundTap};
use crate::clip::recorder::RecorderInput;
use crate::clip::state::Limits;
use crate::config::SourceConfig;
use crate::config::{AudioKind, CameraConfig, Config, SourceKind};
use crate::encode::{Encoder, EncoderConfig, PassStage};
use crate::live::hls::Hls;
use crate::live::mjpeg::{Preview, PreviewSettings};
use crate::live::substream::{Substream, SubstreamReader};
use crate::preroll::PreRoll;
use crate::ring::FrameRing;
use crate::shutdown::StopToken;
use crate::status::{CameraState, CameraStatus};
use crate::tap::FrameTap;
use crate::time::SystemClock;
use serde::Serialize;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A configured camera and its running stages.
pub struct Camera {
    cfg: CameraConfig,
    auto_encoders: Vec<String>,
    /// Shared status (HTTP, MQTT, watchdog read it).
    pub status: Arc<CameraStatus>,
    /// The encoded-frame buffer (clips and live views read it).
    pub preroll: Arc<PreRoll>,
    /// The live MJPEG preview (viewers, snapshots).
    pub preview: Preview,
    /// The live HLS stream (packager runs only while someone watches).
    pub hls: Arc<Hls>,
    /// A browser camera's incoming chunks (`source.kind = "browser"` only).
    pub feed: Option<Arc<PhoneFeed>>,
    tap: Arc<FrameTap>,
    ring: Arc<FrameRing>,
    run: Mutex<Option<Running>>,
}

struct Running {
    stop: StopToken,
    capture: JoinHandle<()>,
    encode: JoinHandle<()>,
    audio: Option<JoinHandle<()>>,
}

/// `/api/cameras` entry `audio`: the camera's sound, when it has some configured.
#[derive(Debug, Clone, Serialize)]
pub struct AudioInfo {
    /// `alsa`, `source` or `test`.
    pub kind: crate::config::AudioKind,
    /// `aac` once a frame came.
    pub codec: Option<String>,
    /// Samples per second of the AAC stream, once known.
    pub rate: Option<u32>,
    /// Channels, once known.
    pub channels: Option<u16>,
    /// AAC encoder in use (`passthrough` for a camera's own AAC).
    pub encoder: String,
    /// AAC frames into the pre-roll.
    pub frames: u64,
    /// Whether sound came in the last 2 s.
    pub live: bool,
    /// The most recent failure of the sound (the camera records video meanwhile).
    pub last_error: Option<String>,
}

/// `/api/cameras` entry.
#[derive(Debug, Clone, Serialize)]
pub struct CameraInfo {
    /// Camera id.
    pub id: String,
    /// State now.
    pub state: CameraState,
    /// Source description.
    pub source: String,
    /// The preview's substream (`preview_url`), redacted as `source`; absent without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview_source: Option<String>,
    /// Encoder element in use (or configured, before the first build).
    pub encoder: String,
    /// Width the source delivers (configured until known).
    pub width: u32,
    /// Height the source delivers.
    pub height: u32,
    /// Frame rate the source delivers.
    pub fps: u32,
    /// Pixel format the source delivers (`MJPG`, `YUYV`, `NV12`, `YU12`), once known.
    pub format: Option<String>,
    /// Seconds of encoded video held in RAM.
    pub buffered_s: f64,
    /// Bytes of encoded video held in RAM.
    pub buffered_bytes: usize,
    /// Hard cap on `buffered_bytes`.
    pub buffer_cap_bytes: usize,
    /// Frames from the source.
    pub frames_captured: u64,
    /// Frames lost: skipped by the source plus dropped by the ring when the encoder lagged.
    pub frames_dropped: u64,
    /// Access units from the encoder.
    pub frames_encoded: u64,
    /// Capture to encoded frame, ms (smoothed); `null` for a camera passed through (no encoder)
    /// or before the first frame.
    pub encode_latency_ms: Option<f64>,
    /// Seconds the camera keeps before a trigger.
    pub pre_s: f64,
    /// Most recent error, kept after recovery.
    pub last_error: Option<String>,
    /// MJPEG viewers connected now.
    pub viewers: usize,
    /// Preview JPEGs encoded from raw frames (total).
    pub jpeg_encodes: u64,
    /// Preview JPEG encodes per second (last 2 s).
    pub jpeg_encodes_per_s: f64,
    /// Camera JPEGs passed through to viewers without decoding (total).
    pub jpeg_passthrough: u64,
    /// WebRTC (WHEP) sessions now (connecting or playing).
    pub webrtc_viewers: usize,
    /// HLS clients: distinct addresses with a request in the last 10 s.
    pub hls_clients: usize,
    /// Whether the HLS packager runs (it stops 30 s after the last request).
    pub hls_active: bool,
    /// `h264` once the stream is known.
    pub codec: Option<String>,
    /// H.264 profile from the camera's SPS (pass-through only): `main`, `high`, ...
    pub profile: Option<String>,
    /// H.264 level from the camera's SPS (pass-through only): `4.0`, `3.1`, ...
    pub level: Option<String>,
    /// Seconds between keyframes: measured on a passed-through camera, configured otherwise.
    pub gop_s: Option<f64>,
    /// The camera's sound; absent when it has none configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio: Option<AudioInfo>,
    /// Whether a clip is being written now (the web app's REC indicator). Set by
    /// [`registry::CameraEntry::info`], which knows the recorder; `false` from [`Camera::info`].
    pub recording: bool,
}

/// The preview's substream (`preview_url`), opened with the capture code the main source uses:
/// H.264 access units (decoded by the preview) or camera JPEGs (passed through).
fn substream(src: SourceConfig) -> Substream {
    let shown = src.describe();
    let open = move || -> Result<SubstreamReader, String> {
        let mut source = crate::capture::open(&src, None).map_err(|e| crate::status::error_chain(&e))?;
        Ok(Box::new(move |wait| source.next_frame(wait).map_err(|e| crate::status::error_chain(&e))))
    };
    Substream { shown, open: Arc::new(open) }
}

impl Camera {
    /// A camera from its config; nothing runs until [`start`](Self::start).
    pub fn new(cfg: CameraConfig, config: &Config) -> Self {
        let hold = Duration::from_secs_f64(cfg.pre_s + cfg.keyframe_interval_s);
        let preroll = Arc::new(PreRoll::new(hold, cfg.preroll_cap_bytes()));
        let status = Arc::new(CameraStatus::default());
        let tap = Arc::new(FrameTap::default());
        let settings = PreviewSettings {
            width: cfg.preview_width,
            fps: cfg.preview_fps,
            encoder: cfg.preview_encoder.clone(),
            substream: cfg.preview_source().map(substream),
        };
        Camera {
            ring: Arc::new(FrameRing::new(cfg.ring_frames)),
            auto_encoders: config.auto_encoders.clone(),
            preview: Preview::new(&cfg.id, settings, tap.clone(), preroll.clone(), status.clone()),
            hls: Arc::new(Hls::new(&cfg.id, preroll.clone(), status.clone(), cfg.keyframe_interval_s)),
            feed: (cfg.source.kind == SourceKind::Browser).then(|| Arc::new(PhoneFeed::new(&cfg.id))),
            tap,
            status,
            preroll,
            cfg,
            run: Mutex::new(None),
        }
    }

    /// Camera id.
    pub fn id(&self) -> &str {
        &self.cfg.id
    }

    /// Whether a browser feeds it (it runs only while a phone is connected).
    pub fn is_phone(&self) -> bool {
        self.feed.is_some()
    }

    /// Its configuration.
    pub fn config(&self) -> &CameraConfig {
        &self.cfg
    }

    /// Start capture and encode threads (no-op if running).
    pub fn start(&self) -> std::io::Result<()> {
        let mut run = self.run.lock().unwrap_or_else(|p| p.into_inner());
        if run.is_some() {
            return Ok(());
        }
        self.status.set_started();
        self.ring.reopen();
        let stop = StopToken::new();
        let enc_cfg = EncoderConfig {
            id: self.cfg.id.clone(),
            encoder: self.cfg.encoder.clone(),
            auto_encoders: self.auto_encoders.clone(),
            bitrate_kbps: self.cfg.bitrate_kbps,
            keyframe_interval_s: self.cfg.keyframe_interval_s,
            wait_for_room: self.is_phone(),
            pre_s: self.cfg.pre_s,
            preroll_cap_bytes: self.cfg.preroll_cap_bytes(),
        };
        // A camera's own H.264 goes into the pre-roll from the capture thread.
        let bypass = PassStage::applies(&enc_cfg).then(|| {
            let mut stage = PassStage::new(&enc_cfg, self.preroll.clone(), self.status.clone(), stop.clone());
            Box::new(move |frame| stage.offer(frame)) as crate::capture::Bypass
        });
        let capture =
            Capture::new(&self.cfg.id, self.cfg.source.clone(), self.ring.clone(), self.status.clone(), stop.clone())
                .with_tap(self.tap.clone())
                .with_feed(self.feed.clone())
                .with_bypass(bypass)
                .with_sound(self.sound_tap())
                .spawn()?;
        let encode =
            match Encoder::new(enc_cfg, self.ring.clone(), self.preroll.clone(), self.status.clone(), stop.clone())
                .spawn()
            {
                Ok(e) => e,
                Err(e) => {
                    // No thread may outlive a failed start (nothing else could stop it).
                    stop.stop();
                    let _ = capture.join();
                    self.ring.close();
                    self.ring.clear();
                    self.status.set_stopped();
                    return Err(e);
                }
            };
        let audio = match &self.cfg.audio {
            // The camera's own sound comes with its stream (the capture's sound tap).
            Some(a) if self.sound_from_stream() && a.kind == AudioKind::Source => None,
            Some(a) => {
                let source =
                    AudioSource::new(&self.cfg.id, a.clone(), self.preroll.clone(), self.status.clone(), stop.clone());
                // A thread that cannot start leaves the camera without sound, not without video.
                source.spawn().unwrap_or_else(|e| {
                    self.status.audio.failed(format!("cannot start the audio thread: {e}"));
                    None
                })
            }
            None => None,
        };
        *run = Some(Running { stop, capture, encode, audio });
        Ok(())
    }

    /// Whether this camera's own sound can come with its stream (RTSP and phone cameras).
    fn sound_from_stream(&self) -> bool {
        matches!(self.cfg.source.kind, SourceKind::Rtsp | SourceKind::Browser)
    }

    /// Where an RTSP or phone camera's own sound goes (`audio = { kind = "source" }`): AAC frames into
    /// the pre-roll, what it is and what went wrong into the camera's audio status.
    fn sound_tap(&self) -> Option<SoundTap> {
        let cfg = self.cfg.audio.as_ref().filter(|a| a.kind == AudioKind::Source && self.sound_from_stream())?;
        // The encoder only matters for G.711/Opus; AAC passes through without one.
        let encoder = crate::audio::resolve_encoder(cfg, crate::gst::element_exists).unwrap_or_default();
        let (preroll, status) = (self.preroll.clone(), self.status.clone());
        Some(SoundTap {
            encode: crate::audio::encode_chain(cfg, if encoder.is_empty() { "voaacenc" } else { &encoder }),
            primed: crate::audio::priming(&encoder),
            encoder,
            deliver: std::sync::Arc::new(move |event| match event {
                SoundEvent::Frame(a) => {
                    if preroll.push_audio(a) {
                        status.audio.frame();
                    }
                }
                SoundEvent::Format(f, made_by) => {
                    status.audio.set_format(f);
                    status.audio.set_encoder(&made_by);
                }
                SoundEvent::Failed(e) => status.audio.failed(e),
            }),
        })
    }

    /// Stop capture, drain the encoder (EOS), join both threads. Blocks.
    pub fn stop(&self) {
        let running = self.run.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(r) = running {
            r.stop.stop();
            let _ = r.capture.join();
            self.ring.close();
            let _ = r.encode.join();
            if let Some(a) = r.audio {
                let _ = a.join();
            }
            self.ring.clear();
        }
        self.status.set_stopped();
    }

    /// Stop then start.
    pub fn restart(&self) -> std::io::Result<()> {
        self.stop();
        self.start()
    }

    /// Ask the encoder for a keyframe on the next frame.
    pub fn force_keyframe(&self) {
        self.status.request_keyframe();
    }

    /// What this camera's clip recorder reads: its limits, the pre-roll, the status (state,
    /// format, keyframe request) and the clock.
    pub fn recorder_input(&self) -> RecorderInput {
        let c = &self.cfg;
        RecorderInput {
            camera: c.id.clone(),
            limits: Limits {
                pre: Duration::from_secs_f64(c.pre_s),
                post: Duration::from_secs_f64(c.post_s),
                max_clip: Duration::from_secs_f64(c.max_clip_s),
            },
            bitrate_kbps: c.bitrate_kbps,
            preroll: self.preroll.clone(),
            status: self.status.clone(),
            phone: self.is_phone(),
            clock: Arc::new(SystemClock),
        }
    }

    /// What this camera's continuous recorder reads, when `continuous` is on: its settings,
    /// the pre-roll and the status, with `store` and `stats`.
    pub fn record_input(
        &self,
        store: Arc<dyn crate::record::SegmentStore>,
        stats: Arc<crate::record::RecordStats>,
    ) -> Option<crate::record::RecordInput> {
        let cfg = self.cfg.continuous.clone().filter(|c| c.enabled)?;
        Some(crate::record::RecordInput {
            camera: self.cfg.id.clone(),
            cfg,
            preroll: self.preroll.clone(),
            status: self.status.clone(),
            store,
            stats,
        })
    }

    /// Snapshot for the API.
    pub fn info(&self) -> CameraInfo {
        let s = &self.status;
        let pre = self.preroll.stats();
        let fmt = s.format();
        let encoder = s.encoder();
        let live = self.preview.stats();
        let stream = s.stream();
        CameraInfo {
            codec: stream.codec,
            profile: stream.profile,
            level: stream.level,
            gop_s: stream.gop_s,
            id: self.cfg.id.clone(),
            state: s.state(),
            source: self.cfg.source.describe(),
            preview_source: self.cfg.preview_source().map(|s| s.describe()),
            encoder: if encoder.is_empty() { self.cfg.encoder.clone() } else { encoder },
            width: fmt.map(|f| f.width).or(self.cfg.source.width).unwrap_or(0),
            height: fmt.map(|f| f.height).or(self.cfg.source.height).unwrap_or(0),
            fps: fmt.map(|f| f.fps).or(self.cfg.source.fps).unwrap_or(0),
            format: fmt.map(|f| f.pixel.to_string()),
            buffered_s: (pre.buffered.as_secs_f64() * 1000.0).round() / 1000.0,
            buffered_bytes: pre.bytes,
            buffer_cap_bytes: self.cfg.preroll_cap_bytes(),
            frames_captured: s.frames_captured.load(Ordering::Relaxed),
            frames_dropped: s.frames_dropped_source.load(Ordering::Relaxed)
                + self.ring.dropped()
                + s.frames_dropped_encoder.load(Ordering::Relaxed),
            frames_encoded: s.frames_encoded.load(Ordering::Relaxed),
            encode_latency_ms: Some(s.encode_latency_us.load(Ordering::Relaxed))
                .filter(|us| *us > 0)
                .map(|us| us as f64 / 1000.0),
            pre_s: self.cfg.pre_s,
            last_error: s.last_error(),
            viewers: live.viewers,
            jpeg_encodes: live.jpeg_encodes,
            jpeg_encodes_per_s: live.jpeg_encodes_per_s,
            jpeg_passthrough: live.jpeg_passthrough,
            webrtc_viewers: s.webrtc_viewers.load(Ordering::Relaxed),
            hls_clients: self.hls.clients(),
            hls_active: self.hls.active(),
            recording: false,
            audio: self.cfg.audio.as_ref().map(|a| {
                let au = &s.audio;
                let fmt = au.format();
                AudioInfo {
                    kind: a.kind,
                    codec: fmt.as_ref().map(|_| "aac".to_owned()),
                    rate: fmt.as_ref().map(|f| f.rate),
                    channels: fmt.as_ref().map(|f| f.channels),
                    encoder: au.encoder(),
                    frames: au.frames.load(Ordering::Relaxed),
                    live: au.live(Duration::from_secs(2)),
                    last_error: au.last_error(),
                }
            }),
        }
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        self.stop();
    }
}
