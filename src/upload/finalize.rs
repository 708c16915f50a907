//! A finished upload → a regular MP4 clip, with GStreamer. Blocking; runs on the upload's own
//! thread, never on the async runtime.
//!
//! `filesrc ! parsebin` exposes the file's elementary streams. The first video stream decides:
//! H.264 (from MP4, WebM, Matroska, …) is remuxed without re-encoding (`h264parse ! mp4mux`);
//! anything else (VP8, VP9, …) is decoded and encoded with the first available element of
//! `auto_encoders`, through the same encoder chain as the cameras (`encode::chain`: I420 in,
//! a profile phones can play). Other streams (audio, subtitles) go to `fakesink`. Frames are
//! counted at the muxer's input; the duration is read back from the written file.

use crate::encode::chain::{encoder_chain, resolve, EncodeSettings};
use crate::gst::element_exists;
use gst::prelude::*;
use gstreamer as gst;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why a file could not be made into a clip.
#[derive(Debug, thiserror::Error)]
pub enum FinalizeError {
    /// GStreamer could not be set up.
    #[error("GStreamer: {0}")]
    Setup(String),
    /// The file has no video stream GStreamer can read.
    #[error("no video stream found in the file")]
    NoVideo,
    /// No H.264 encoder to transcode with.
    #[error("cannot transcode {codec}: {message}")]
    NoEncoder {
        /// The video codec found.
        codec: String,
        /// Which encoders were tried.
        message: String,
    },
    /// The file is broken or cannot be decoded.
    #[error("the video cannot be read: {0}")]
    Broken(String),
    /// Took too long.
    #[error("processing took longer than {0:?}")]
    Timeout(Duration),
}

/// What [`to_mp4`] made.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// H.264 kept as it was (else transcoded).
    pub remuxed: bool,
    /// Video frames written.
    pub frames: u64,
    /// Duration of the written file in seconds.
    pub duration_s: f64,
    /// The codec found in the upload (caps name).
    pub codec: String,
}

/// Longest time without a new frame before the file is given up as broken.
const STALL: Duration = Duration::from_secs(20);

#[derive(Default)]
struct Shared {
    video: Option<String>,
    error: Option<String>,
    frames: u64,
}

fn quote(p: &Path) -> String {
    p.display().to_string().replace(['"', '\\'], "")
}

/// Remux or transcode `input` to an MP4 at `output`. Blocking.
pub fn to_mp4(
    input: &Path,
    output: &Path,
    auto_encoders: &[String],
    timeout: Duration,
) -> Result<Outcome, FinalizeError> {
    crate::gst::init().map_err(|e| FinalizeError::Setup(e.to_string()))?;
    let pipeline = gst::Pipeline::new();
    let src = gst::ElementFactory::make("filesrc")
        .property("location", input.display().to_string())
        .build()
        .map_err(|e| FinalizeError::Setup(e.to_string()))?;
    let parse = gst::ElementFactory::make("parsebin").build().map_err(|e| FinalizeError::Setup(e.to_string()))?;
    pipeline.add_many([&src, &parse]).map_err(|e| FinalizeError::Setup(e.to_string()))?;
    src.link(&parse).map_err(|e| FinalizeError::Setup(e.to_string()))?;

    let shared = Arc::new(Mutex::new(Shared::default()));
    let out_loc = quote(output);
    let encoders = auto_encoders.to_vec();
    let weak = pipeline.downgrade();
    let sh = shared.clone();
    parse.connect_pad_added(move |_, pad| {
        let Some(pipeline) = weak.upgrade() else { return };
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let name = caps.structure(0).map(|s| s.name().to_string()).unwrap_or_default();
        let mut s = sh.lock().unwrap_or_else(|p| p.into_inner());
        let result = if name.starts_with("video/") && s.video.is_none() {
            s.video = Some(name.clone());
            drop(s);
            link_video(&pipeline, pad, &name, &out_loc, &encoders, sh.clone())
        } else {
            drop(s);
            link_fakesink(&pipeline, pad)
        };
        if let Err(e) = result {
            let mut s = sh.lock().unwrap_or_else(|p| p.into_inner());
            s.error.get_or_insert(e);
        }
    });

    let bus = pipeline.bus().ok_or_else(|| FinalizeError::Setup("pipeline has no bus".into()))?;
    let stop = |p: &gst::Pipeline| {
        let _ = p.set_state(gst::State::Null);
    };
    if pipeline.set_state(gst::State::Playing).is_err() {
        stop(&pipeline);
        return Err(FinalizeError::Broken(bus_error(&bus).unwrap_or_else(|| "cannot start".into())));
    }
    let deadline = Instant::now() + timeout;
    let (mut last_frames, mut last_change) = (0u64, Instant::now());
    let outcome = loop {
        let (error, frames) = {
            let s = shared.lock().unwrap_or_else(|p| p.into_inner());
            (s.error.clone(), s.frames)
        };
        if let Some(e) = error {
            break Err(e);
        }
        // A demuxer stuck on a broken file posts neither error nor EOS: no new frame for STALL.
        if frames != last_frames {
            (last_frames, last_change) = (frames, Instant::now());
        } else if last_change.elapsed() > STALL {
            break Err(format!("no video frame for {} s after frame {frames} (broken file?)", STALL.as_secs()));
        }
        if Instant::now() > deadline {
            stop(&pipeline);
            return Err(FinalizeError::Timeout(timeout));
        }
        let msg = bus
            .timed_pop_filtered(gst::ClockTime::from_mseconds(200), &[gst::MessageType::Error, gst::MessageType::Eos]);
        match msg.as_ref().map(|m| m.view()) {
            Some(gst::MessageView::Eos(_)) => break Ok(()),
            Some(gst::MessageView::Error(e)) => {
                break Err(format!("{} ({})", e.error(), e.debug().map(|d| d.to_string()).unwrap_or_default()))
            }
            _ => {}
        }
    };
    stop(&pipeline);
    let s = shared.lock().unwrap_or_else(|p| p.into_inner());
    let codec = s.video.clone();
    // A linking problem explains a later bus error ("not-linked"): report it first.
    let outcome = match (&s.error, outcome) {
        (Some(e), Err(_)) => Err(e.clone()),
        (_, o) => o,
    };
    if let Err(e) = outcome {
        return Err(match (&codec, e) {
            (None, e) if e.contains("not-linked") || e.contains("determine type") => FinalizeError::NoVideo,
            (_, e) if e.starts_with("no H.264 encoder") => {
                FinalizeError::NoEncoder { codec: codec.clone().unwrap_or_default(), message: e }
            }
            (_, e) => FinalizeError::Broken(e),
        });
    }
    let Some(codec) = codec else { return Err(FinalizeError::NoVideo) };
    if s.frames == 0 {
        return Err(FinalizeError::Broken("no video frame could be read".into()));
    }
    let duration_s = file_duration(output)?;
    Ok(Outcome { remuxed: codec == "video/x-h264", frames: s.frames, duration_s, codec })
}

fn bus_error(bus: &gst::Bus) -> Option<String> {
    let msg = bus.timed_pop_filtered(gst::ClockTime::from_mseconds(500), &[gst::MessageType::Error])?;
    match msg.view() {
        gst::MessageView::Error(e) => Some(e.error().to_string()),
        _ => None,
    }
}

fn link_video(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    caps_name: &str,
    out_loc: &str,
    encoders: &[String],
    shared: Arc<Mutex<Shared>>,
) -> Result<(), String> {
    let tail = format!(
        "h264parse name=hp ! video/x-h264,stream-format=avc,alignment=au ! mp4mux ! filesink location=\"{out_loc}\""
    );
    let desc = if caps_name == "video/x-h264" {
        tail
    } else {
        let element = resolve("auto", encoders, element_exists).map_err(|e| format!("no H.264 encoder: {e}"))?;
        // Uploads are files, not live: a generous bitrate and a 2 s keyframe period.
        let chain = encoder_chain(&element, &EncodeSettings { bitrate_kbps: 6000, keyframe_frames: 60 });
        format!("videoconvert ! {chain} ! {tail}")
    };
    let bin = gst::parse::bin_from_description(&desc, true).map_err(|e| format!("cannot build `{desc}`: {e}"))?;
    pipeline.add(&bin).map_err(|e| e.to_string())?;
    let hp = bin.by_name("hp").ok_or("no h264parse")?;
    let hp_src = hp.static_pad("src").ok_or("h264parse has no src pad")?;
    hp_src.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        shared.lock().unwrap_or_else(|p| p.into_inner()).frames += 1;
        gst::PadProbeReturn::Ok
    });
    bin.sync_state_with_parent().map_err(|e| e.to_string())?;
    let sink = bin.static_pad("sink").ok_or("bin has no sink pad")?;
    if caps_name == "video/x-h264" {
        pad.link(&sink).map_err(|e| format!("cannot link {caps_name}: {e:?}"))?;
        return Ok(());
    }
    // Anything else is decoded first; decodebin's raw pad appears once it knows the stream.
    let dec = gst::ElementFactory::make("decodebin").build().map_err(|e| e.to_string())?;
    pipeline.add(&dec).map_err(|e| e.to_string())?;
    dec.connect_pad_added(move |_, dpad| {
        let raw = dpad
            .current_caps()
            .unwrap_or_else(|| dpad.query_caps(None))
            .structure(0)
            .is_some_and(|s| s.name().starts_with("video/x-raw"));
        if raw && !sink.is_linked() {
            if let Err(e) = dpad.link(&sink) {
                log::warn!("upload transcode: cannot link the decoder: {e:?}");
            }
        }
    });
    dec.sync_state_with_parent().map_err(|e| e.to_string())?;
    let dsink = dec.static_pad("sink").ok_or("decodebin has no sink pad")?;
    pad.link(&dsink).map_err(|e| format!("cannot link {caps_name} to a decoder: {e:?}"))?;
    Ok(())
}

fn link_fakesink(pipeline: &gst::Pipeline, pad: &gst::Pad) -> Result<(), String> {
    let sink = gst::ElementFactory::make("fakesink")
        .property("sync", false)
        .property("async", false)
        .build()
        .map_err(|e| e.to_string())?;
    pipeline.add(&sink).map_err(|e| e.to_string())?;
    sink.sync_state_with_parent().map_err(|e| e.to_string())?;
    let sp = sink.static_pad("sink").ok_or("fakesink has no pad")?;
    pad.link(&sp).map_err(|e| format!("{e:?}"))?;
    Ok(())
}

/// Duration of an MP4 as its demuxer reports it (reads the `moov`, not the samples).
fn file_duration(path: &Path) -> Result<f64, FinalizeError> {
    let p =
        crate::gst::Pipeline::parse(&format!("filesrc location=\"{}\" ! qtdemux ! fakesink sync=false", quote(path)))
            .map_err(|e| FinalizeError::Broken(e.to_string()))?;
    let raw = p.inner();
    let _ = raw.set_state(gst::State::Paused);
    let (res, _, _) = raw.state(gst::ClockTime::from_seconds(20));
    if res.is_err() {
        return Err(FinalizeError::Broken("the written MP4 cannot be read back".into()));
    }
    let d = raw
        .query_duration::<gst::ClockTime>()
        .ok_or_else(|| FinalizeError::Broken("the written MP4 has no duration".into()))?;
    Ok(d.nseconds() as f64 / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make(dir: &Path, name: &str, desc: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        let cmd = format!("{desc} ! filesink location={}", p.display());
        let st = std::process::Command::new("gst-launch-1.0").arg("-q").args(cmd.split_whitespace()).status();
        assert!(st.is_ok_and(|s| s.success()), "{cmd}");
        p
    }

    #[test]
    fn vp8_is_transcoded_and_h264_remuxed() {
        let dir = tempfile::tempdir().unwrap();
        let enc = vec!["nosuchenc".to_string(), "x264enc".to_string()];
        let webm = make(
            dir.path(),
            "a.webm",
            "videotestsrc num-buffers=20 ! video/x-raw,width=160,height=120,framerate=10/1 ! vp8enc ! webmmux",
        );
        let out = dir.path().join("a.mp4");
        let o = to_mp4(&webm, &out, &enc, Duration::from_secs(60)).unwrap();
        assert!(!o.remuxed);
        assert_eq!(o.codec, "video/x-vp8");
        assert_eq!(o.frames, 20);
        assert!((o.duration_s - 2.0).abs() < 0.05, "{o:?}");
        let mkv = make(
            dir.path(),
            "b.mkv",
            "videotestsrc num-buffers=20 ! video/x-raw,width=160,height=120,framerate=10/1,format=I420 \
             ! x264enc ! h264parse ! matroskamux",
        );
        let o = to_mp4(&mkv, &out, &enc, Duration::from_secs(60)).unwrap();
        assert!(o.remuxed);
        assert_eq!(o.frames, 20);
        // A broken MP4 (valid start, zeros after it: no moov) fails promptly, never hangs.
        let mut bytes = std::fs::read(&mkv).unwrap();
        let mp4 = make(
            dir.path(),
            "c.mp4",
            "videotestsrc num-buffers=90 pattern=snow ! video/x-raw,width=320,height=240,framerate=30/1,format=I420 \
             ! x264enc bitrate=3000 ! h264parse ! mp4mux",
        );
        bytes.clear();
        bytes.extend(std::fs::read(&mp4).unwrap());
        let n = bytes.len();
        bytes[70_000..n].fill(0);
        let broken = dir.path().join("broken.mp4");
        std::fs::write(&broken, &bytes).unwrap();
        let t = Instant::now();
        let r = to_mp4(&broken, &out, &enc, Duration::from_secs(20));
        assert!(r.is_err(), "{r:?}");
        assert!(t.elapsed() < Duration::from_secs(10), "{r:?} after {:?}", t.elapsed());
        let txt = dir.path().join("t.txt");
        std::fs::write(&txt, "hello ".repeat(1000)).unwrap();
        assert!(to_mp4(&txt, &out, &enc, Duration::from_secs(60)).is_err());
    }
}
