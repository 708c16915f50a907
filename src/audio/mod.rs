//! A camera's sound: an ALSA microphone or the test beep, encoded to AAC-LC once by GStreamer
//! and pushed into the camera's pre-roll beside its video, each frame dated by its first
//! sample's capture time on CLOCK_MONOTONIC (the clock video frames are dated by).
//!
//! One thread per camera with sound. It never fails the camera: a microphone that is unplugged
//! or stalls is reported in the camera's `audio.last_error` and reopened with back-off while
//! video goes on (clips made meanwhile have no sound, or sound from where it came back).
//!
//! Timing: the pipeline runs on GStreamer's system clock (CLOCK_MONOTONIC; never an ALSA
//! device's own clock), so a buffer's capture time is the pipeline's base time plus its
//! running time. The `test` kind's beeps ([`beep`]) are generated on whole seconds of the
//! monotonic clock, where the `test` video source flashes.
//!
//! Priming: an AAC encoder's first frame decodes to silence it adds in front (its delay), so
//! frame k decodes to the sound captured `priming` samples before the timestamp GStreamer
//! gives it. Each frame is dated by the capture time of the sound it decodes to (timestamp −
//! [`priming`]), so clips and live HLS play sound and picture together without edit lists
//! that players treat differently. Measured here with a beep on a known sample, decoded by
//! avdec_aac: avenc_aac 1024 samples (21.3 ms at 48 kHz), voaacenc 1600 (33.3 ms).
//!
//! Must never block the pre-roll beyond a push, and never log per frame.

use crate::config::{AudioConfig, AudioKind, AUTO_AAC_ENCODERS};
use crate::frame::{AudioFormat, AudioFrame};
use crate::gst::{element_exists, running_time, GstError, Pipeline, AAC_FRAMES};
use crate::preroll::PreRoll;
use crate::shutdown::{Backoff, StopToken};
use crate::status::CameraStatus;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// No sound for this long: the source is taken for gone and reopened.
const STALL: Duration = Duration::from_secs(3);

/// The audio stage of one camera.
pub struct AudioSource {
    camera: String,
    cfg: AudioConfig,
    preroll: Arc<PreRoll>,
    status: Arc<CameraStatus>,
    stop: StopToken,
}

/// Samples an AAC frame from `encoder` decodes later than its timestamp says (see the module
/// doc). fdkaacenc (not in Debian) is taken at libfdk-aac's documented AAC-LC delay, 2048;
/// other encoders at AAC's usual 1024.
pub fn priming(encoder: &str) -> u64 {
    match encoder {
        "voaacenc" => 1600,
        "fdkaacenc" => 2048,
        _ => 1024,
    }
}

/// The AAC encoder to use: the configured one if installed, or the first of
/// [`AUTO_AAC_ENCODERS`] that is.
pub fn resolve_encoder(cfg: &AudioConfig, exists: impl Fn(&str) -> bool) -> Result<String, String> {
    if cfg.encoder != "auto" {
        return if exists(&cfg.encoder) {
            Ok(cfg.encoder.clone())
        } else {
            Err(format!("AAC encoder {} is not installed (see `hindsight probe`)", cfg.encoder))
        };
    }
    AUTO_AAC_ENCODERS.iter().find(|e| exists(e)).map(|e| e.to_string()).ok_or_else(|| {
        format!(
            "no AAC encoder is installed (one of {}: gstreamer1.0-libav, -plugins-bad)",
            AUTO_AAC_ENCODERS.join(", ")
        )
    })
}

/// The source part of the pipeline for `cfg` (None: `source`, read by the camera's capture).
pub fn source_element(cfg: &AudioConfig) -> Option<String> {
    match cfg.kind {
        // A 1 kHz beep of 100 ms at every whole second of the clock ([`beep`]).
        AudioKind::Test => Some(beep::element()),
        // The pipeline clock stays the system clock: the device's own would date frames on
        // another timeline than the video's.
        AudioKind::Alsa => {
            let device = cfg.device.as_deref().unwrap_or("default");
            Some(format!("alsasrc device=\"{device}\" provide-clock=false buffer-time=200000 latency-time=10000"))
        }
        AudioKind::Source => None,
    }
}

/// Raw sound to AAC frames as `cfg` says, with `encoder`: convert, resample, encode, parse
/// (also what a network camera's decoded G.711/Opus goes through).
pub fn encode_chain(cfg: &AudioConfig, encoder: &str) -> String {
    format!(
        "audioconvert ! audioresample ! audio/x-raw,rate={rate},channels={ch} \
         ! {encoder} bitrate={bps} ! {AAC_FRAMES}",
        rate = cfg.rate,
        ch = cfg.channels,
        bps = u64::from(cfg.bitrate_kbps) * 1000,
    )
}

/// The pipeline from `source` to raw AAC frames in an appsink named `sink`.
pub fn description(source: &str, cfg: &AudioConfig, encoder: &str) -> String {
    format!(
        "{source} ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=500000000 leaky=downstream \
         ! {} ! appsink name=sink sync=false max-buffers=64 drop=true",
        encode_chain(cfg, encoder)
    )
}

/// What the caps of raw AAC say (`codec_data`, rate, channels).
pub fn format_of(caps: &gst::CapsRef) -> Option<AudioFormat> {
    let f = crate::gst::aac_format(caps)?;
    // aacparse sets rate and channels; else they come from the AudioSpecificConfig.
    let parsed = crate::mp4::AudioConfig::parse(&f.config)?;
    Some(AudioFormat {
        rate: if f.rate == 0 { parsed.rate } else { f.rate },
        channels: if f.channels == 0 { parsed.channels } else { f.channels },
        ..f
    })
}

impl AudioSource {
    /// The sound of `camera` as `cfg` says, into `preroll`, until `stop`.
    pub fn new(
        camera: &str,
        cfg: AudioConfig,
        preroll: Arc<PreRoll>,
        status: Arc<CameraStatus>,
        stop: StopToken,
    ) -> Self {
        AudioSource { camera: camera.into(), cfg, preroll, status, stop }
    }

    /// Start the thread (none for `kind = "source"`: an RTSP or phone camera's sound comes with
    /// its stream, through the capture's sound tap; the camera never starts this for those).
    pub fn spawn(self) -> std::io::Result<Option<JoinHandle<()>>> {
        if source_element(&self.cfg).is_none() {
            // Only reachable for a source that brings no sound (validation refuses the config).
            self.status.audio.failed("this camera's source brings no sound of its own (kind = \"source\")".into());
            return Ok(None);
        }
        let name = format!("audio-{}", self.camera);
        std::thread::Builder::new().name(name).spawn(move || self.run()).map(Some)
    }

    fn run(self) {
        let mut backoff = Backoff::default();
        while !self.stop.is_stopped() {
            let started = std::time::Instant::now();
            let err = match self.open() {
                Ok((p, encoder)) => self.pump(&p, priming(&encoder)),
                Err(e) => e,
            };
            if self.stop.is_stopped() {
                break;
            }
            if started.elapsed() > Duration::from_secs(30) {
                backoff.reset();
            }
            self.status.audio.failed(format!("{} (retrying)", err));
            if self.stop.sleep(backoff.next_delay()) {
                break;
            }
        }
    }

    /// The playing pipeline and the name of its AAC encoder.
    fn open(&self) -> Result<(Pipeline, String), String> {
        let source = source_element(&self.cfg).ok_or("no audio source element")?;
        let kind = source.split_whitespace().next().unwrap_or_default().to_owned();
        if !element_exists(&kind) {
            let package = if kind == "alsasrc" { "gstreamer1.0-alsa" } else { "gstreamer1.0-plugins-base" };
            return Err(format!("GStreamer element {kind} is not installed ({package})"));
        }
        let encoder = resolve_encoder(&self.cfg, element_exists)?;
        let p = Pipeline::parse(&description(&source, &self.cfg, &encoder)).map_err(|e| e.to_string())?;
        let clock = gst::SystemClock::obtain();
        p.inner().use_clock(Some(&clock));
        if self.cfg.kind == AudioKind::Test {
            // Running time = the clock: the generated sound is dated by the clock itself.
            p.inner().set_start_time(gst::ClockTime::NONE);
            p.inner().set_base_time(gst::ClockTime::ZERO);
        }
        p.play().map_err(|e| e.to_string())?;
        self.status.audio.set_encoder(&encoder);
        log::info!("camera {}: audio from {kind}, AAC by {encoder}", self.camera);
        Ok((p, encoder))
    }

    /// Pull AAC frames (their encoder primes `primed` samples) until the pipeline fails, stalls, or `stop`; returns why it ended.
    fn pump(&self, p: &Pipeline, primed: u64) -> String {
        let sink = match p.by_name::<gst_app::AppSink>("sink") {
            Ok(s) => s,
            Err(e) => return e.to_string(),
        };
        let mut format: Option<(gst::Caps, AudioFormat)> = None;
        let mut quiet = Duration::ZERO;
        let mut beeper =
            p.by_name::<gst_app::AppSrc>("beep").ok().map(|src| beep::Beeper::new(src, crate::time::mono_now()));
        while !self.stop.is_stopped() {
            let wait = match beeper.as_mut().map(|b| b.feed(crate::time::mono_now())) {
                Some(Ok(next)) => next.clamp(Duration::from_millis(1), Duration::from_millis(10)),
                Some(Err(e)) => return e,
                None => Duration::from_millis(250),
            };
            if let Some(e) = p.poll_error() {
                return match e {
                    GstError::Eos => "the audio source ended".into(),
                    e => e.to_string(),
                };
            }
            let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_nseconds(wait.as_nanos() as u64)) else {
                quiet += wait;
                if quiet >= STALL {
                    return format!("no sound for {} s", STALL.as_secs());
                }
                continue;
            };
            quiet = Duration::ZERO;
            let (Some(buffer), Some(caps)) = (sample.buffer(), sample.caps()) else { continue };
            if format.as_ref().is_none_or(|(c, _)| c.as_ref() != caps) {
                match format_of(caps) {
                    Some(f) => {
                        self.status.audio.set_format(f.clone());
                        format = Some((caps.to_owned(), f));
                    }
                    None => return format!("the AAC encoder gave caps without a usable codec_data: {caps}"),
                }
            }
            let Some((_, fmt)) = &format else { continue };
            // Capture time = base time + running time − the encoder's priming; a frame dated
            // before the start has no running time and is dropped.
            let (Some(rt), Some(base)) = (running_time(sample.segment(), buffer.pts()), p.inner().base_time()) else {
                continue;
            };
            let Some(pts) = base.nseconds().checked_add(rt.nseconds()).map(Duration::from_nanos) else { continue };
            if pts > crate::time::mono_now() + Duration::from_secs(10) {
                continue; // a timestamp from before the start, wrapped around
            }
            let pts = pts.saturating_sub(crate::time::of_samples(primed, fmt.rate));
            let duration = buffer.duration().map_or(crate::time::of_samples(1024, fmt.rate), |d| d.into());
            let Some(data) = crate::gst::sample_bytes(&sample) else { continue };
            let frame = AudioFrame { data, pts, duration, format: fmt.clone() };
            if self.preroll.push_audio(frame) {
                self.status.audio.frame();
            }
        }
        String::new()
    }
}

pub mod beep;
#[cfg(test)]
mod tests;
