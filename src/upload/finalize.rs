//! A finished upload → a regular MP4 clip, with GStreamer. Blocking; runs on the upload's own
//! thread, never on the async runtime.
//!
//! `filesrc ! parsebin` exposes the file's elementary streams; each is held (a blocking probe)
//! until data reaches one of them (parsebin has then exposed them all), so the muxer gets all its
//! pads before any data. The
//! first video stream decides: H.264 (from MP4, WebM, Matroska, …) is remuxed without
//! re-encoding (`h264parse ! mp4mux`); anything else (VP8, VP9, …) is decoded and encoded with
//! the first available element of `auto_encoders`, through the same encoder chain as the cameras
//! (`encode::chain`: I420 in, a profile phones can play). The first audio stream is kept as the
//! clip's sound: AAC bit for bit, anything else (Opus, MP3, …) decoded and encoded to AAC once
//! (the cameras' encoders, `audio::resolve_encoder`); sound that cannot be taken (no AAC encoder,
//! an undecodable codec) leaves the clip silent, never fails it. Other streams (subtitles, more
//! tracks) go to `fakesink`. Frames are counted at the muxer's input; the duration is read back
//! from the written file.

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
    /// The clip's sound: `passthrough` (AAC kept) or the AAC encoder that made it; `None`
    /// without sound.
    pub sound: Option<String>,
}

/// Longest time without a new frame before the file is given up as broken.
const STALL: Duration = Duration::from_secs(20);

#[derive(Default)]
struct Shared {
    video: Option<String>,
    error: Option<String>,
    frames: u64,
    /// Pads parsebin exposed, held by a blocking probe until it has exposed them all.
    held: Vec<(gst::Pad, Option<gst::PadProbeId>)>,
    /// The held pads were linked (by the first stream whose data reached its probe).
    linked: bool,
    sound: Option<String>,
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
    to_mp4_with(input, output, auto_encoders, encoder_for_sound(), timeout)
}

/// [`to_mp4`] with the AAC encoder for sound that is not AAC given (or why there is none).
fn to_mp4_with(
    input: &Path,
    output: &Path,
    auto_encoders: &[String],
    sound_encoder: Result<String, String>,
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
        // parsebin exposes a file's pads together, then lets data through: the first item on
        // any of them means all are here. Whichever stream gets there first links them all
        // and releases the others; any other stays held until then.
        let (weak, out_loc, encoders, sound_encoder, sh2) =
            (weak.clone(), out_loc.clone(), encoders.clone(), sound_encoder.clone(), sh.clone());
        let probe = pad.add_probe(gst::PadProbeType::BLOCK_DOWNSTREAM, move |me, _| {
            let held = {
                let mut s = sh2.lock().unwrap_or_else(|p| p.into_inner());
                if s.linked {
                    return gst::PadProbeReturn::Ok;
                }
                s.linked = true;
                std::mem::take(&mut s.held)
            };
            if let Some(pipeline) = weak.upgrade() {
                if let Err(e) = link_streams(&pipeline, &held, &out_loc, &encoders, sound_encoder.clone(), &sh2) {
                    sh2.lock().unwrap_or_else(|p| p.into_inner()).error.get_or_insert(e);
                }
            }
            for (pad, probe) in held {
                if let (Some(probe), false) = (probe, &pad == me) {
                    pad.remove_probe(probe);
                }
            }
            gst::PadProbeReturn::Remove
        });
        sh.lock().unwrap_or_else(|p| p.into_inner()).held.push((pad.clone(), probe));
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
    Ok(Outcome { remuxed: codec == "video/x-h264", frames: s.frames, duration_s, codec, sound: s.sound.clone() })
}

fn bus_error(bus: &gst::Bus) -> Option<String> {
    let msg = bus.timed_pop_filtered(gst::ClockTime::from_mseconds(500), &[gst::MessageType::Error])?;
    match msg.view() {
        gst::MessageView::Error(e) => Some(e.error().to_string()),
        _ => None,
    }
}

fn caps_name(pad: &gst::Pad) -> String {
    let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
    caps.structure(0).map(|s| s.name().to_string()).unwrap_or_default()
}

/// Link the exposed streams (all still held, so the muxer gets its pads before any data): the
/// first video and audio into an `mp4mux ! filesink`, anything else (and everything, without
/// video) to `fakesink`.
fn link_streams(
    pipeline: &gst::Pipeline,
    pads: &[(gst::Pad, Option<gst::PadProbeId>)],
    out_loc: &str,
    encoders: &[String],
    sound_encoder: Result<String, String>,
    shared: &Arc<Mutex<Shared>>,
) -> Result<(), String> {
    let video = pads.iter().map(|(p, _)| p).find(|p| caps_name(p).starts_with("video/"));
    let audio = pads.iter().map(|(p, _)| p).find(|p| caps_name(p).starts_with("audio/"));
    let mut mux = None;
    if let Some(pad) = video {
        let name = caps_name(pad);
        shared.lock().unwrap_or_else(|p| p.into_inner()).video = Some(name.clone());
        let m = make("mp4mux")?;
        let file =
            gst::ElementFactory::make("filesink").property("location", out_loc).build().map_err(|e| e.to_string())?;
        pipeline.add_many([&m, &file]).map_err(|e| e.to_string())?;
        m.link(&file).map_err(|e| e.to_string())?;
        file.sync_state_with_parent().map_err(|e| e.to_string())?;
        m.sync_state_with_parent().map_err(|e| e.to_string())?;
        link_video(pipeline, pad, &name, &m, encoders, shared.clone())?;
        mux = Some(m);
    }
    for pad in pads.iter().map(|(p, _)| p).filter(|&p| Some(p) != video) {
        if let Some(m) = mux.as_ref().filter(|_| Some(pad) == audio) {
            match link_sound(pipeline, pad, m, sound_encoder.clone()) {
                Ok(made_by) => {
                    shared.lock().unwrap_or_else(|p| p.into_inner()).sound = Some(made_by);
                    continue;
                }
                // The clip is kept, without sound.
                Err(e) => log::warn!("upload: the sound ({}) is left out: {e}", caps_name(pad)),
            }
        }
        link_fakesink(pipeline, pad)?;
    }
    Ok(())
}

fn make(factory: &str) -> Result<gst::Element, String> {
    gst::ElementFactory::make(factory).build().map_err(|e| format!("{factory}: {e}"))
}

/// The AAC encoder for sound that is not AAC already, as the cameras pick it.
fn encoder_for_sound() -> Result<String, String> {
    let cfg = crate::config::AudioConfig::of_kind(crate::config::AudioKind::Source);
    crate::audio::resolve_encoder(&cfg, element_exists)
}

/// Link an audio stream into `mux`: AAC parsed and kept, anything else decoded and encoded to
/// AAC once with `encoder`. Returns `passthrough` or the encoder's name. On error nothing is
/// left linked to the muxer (its pad is requested last).
fn link_sound(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    mux: &gst::Element,
    encoder: Result<String, String>,
) -> Result<String, String> {
    let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
    let aac = caps
        .structure(0)
        .is_some_and(|s| s.name() == "audio/mpeg" && s.get::<i32>("mpegversion").is_ok_and(|v| v == 4 || v == 2));
    let (desc, made_by) = if aac {
        (format!("{} ! queue", crate::gst::AAC_FRAMES), "passthrough".to_string())
    } else {
        let enc = encoder?;
        // 48 kHz, at most stereo, 128 kbit/s: what a phone's video carries.
        let desc = format!(
            "audioconvert ! audioresample ! audio/x-raw,rate=48000,channels=[1,2] ! {enc} bitrate=128000 ! {} ! queue",
            crate::gst::AAC_FRAMES
        );
        (desc, enc)
    };
    let bin = gst::parse::bin_from_description(&desc, true).map_err(|e| format!("cannot build `{desc}`: {e}"))?;
    let (Some(sink), Some(src)) = (bin.static_pad("sink"), bin.static_pad("src")) else {
        return Err("the sound bin has no pads".into());
    };
    pipeline.add(&bin).map_err(|e| e.to_string())?;
    // Anything but AAC is decoded first; decodebin's raw pad appears once it knows the stream.
    let dec = if aac { None } else { Some(make("decodebin")?) };
    let linked = match &dec {
        None => pad.link(&sink).map(drop).map_err(|e| format!("cannot link the sound: {e:?}")),
        Some(dec) => pipeline.add(dec).map_err(|e| e.to_string()).and_then(|()| {
            link_decoded(dec, sink, "audio/x-raw");
            let dsink = dec.static_pad("sink").ok_or("decodebin has no sink pad")?;
            pad.link(&dsink).map(drop).map_err(|e| format!("cannot link the sound to a decoder: {e:?}"))
        }),
    };
    let to_mux = linked.and_then(|()| {
        let target = mux.request_pad_simple("audio_%u").ok_or("mp4mux gives no audio pad")?;
        src.link(&target).map(drop).map_err(|e| format!("cannot link the sound to the muxer: {e:?}"))
    });
    if let Err(e) = to_mux {
        for el in dec.iter().map(|d| d.upcast_ref::<gst::Element>()).chain([bin.upcast_ref()]) {
            let _ = pipeline.remove(el);
        }
        return Err(e);
    }
    for el in dec.iter().map(|d| d.upcast_ref::<gst::Element>()).chain([bin.upcast_ref()]) {
        el.sync_state_with_parent().map_err(|e| e.to_string())?;
    }
    Ok(made_by)
}

/// Link `dec`'s first pad of `raw` caps (it appears once the decoder knows the stream) to `sink`.
fn link_decoded(dec: &gst::Element, sink: gst::Pad, raw: &'static str) {
    dec.connect_pad_added(move |_, dpad| {
        let is_raw =
            dpad.current_caps().unwrap_or_else(|| dpad.query_caps(None)).structure(0).is_some_and(|s| s.name() == raw);
        if is_raw && !sink.is_linked() {
            if let Err(e) = dpad.link(&sink) {
                log::warn!("upload: cannot link the decoder: {e:?}");
            }
        }
    });
}

fn link_video(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    caps_name: &str,
    mux: &gst::Element,
    encoders: &[String],
    shared: Arc<Mutex<Shared>>,
) -> Result<(), String> {
    // A queue in front of the muxer for each stream: it interleaves them without stalling one.
    let tail = "h264parse name=hp ! video/x-h264,stream-format=avc,alignment=au ! queue".to_string();
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
    let target = mux.request_pad_simple("video_%u").ok_or("mp4mux gives no video pad")?;
    bin.static_pad("src")
        .ok_or("bin has no src pad")?
        .link(&target)
        .map_err(|e| format!("cannot link the video to the muxer: {e:?}"))?;
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
    // Anything else is decoded first.
    let dec = make("decodebin")?;
    pipeline.add(&dec).map_err(|e| e.to_string())?;
    link_decoded(&dec, sink, "video/x-raw");
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
    // Playing, not the pipeline's state: while the muxer's filesink prerolls, the pipeline is
    // paused, and a paused fakesink would hold its stream's first buffer — and with it the
    // demuxer that the muxer waits on.
    sink.set_state(gst::State::Playing).map_err(|e| e.to_string())?;
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

    /// (codec_type, codec_name, duration) of each stream, by ffprobe.
    fn probe(path: &Path) -> Vec<(String, String, f64)> {
        let out = std::process::Command::new("ffprobe")
            .args(["-v", "error", "-of", "csv=p=0", "-show_entries", "stream=codec_type,codec_name,duration"])
            .arg(path)
            .output()
            .unwrap();
        assert!(out.status.success() && out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (f[1].to_string(), f[0].to_string(), f[2].parse().unwrap_or(f64::NAN))
            })
            .collect()
    }

    /// The AAC packets of `path`'s sound, as ffmpeg copies them out.
    fn aac_packets(path: &Path) -> Vec<u8> {
        let out = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(path)
            .args(["-map", "0:a", "-c", "copy", "-f", "data", "-"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    #[test]
    fn an_uploads_sound_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let enc = vec!["x264enc".to_string()];
        let out = dir.path().join("out.mp4");
        let beep = "audiotestsrc num-buffers=94 samplesperbuffer=1024 ! audio/x-raw,rate=48000,channels=2";
        // A phone's MP4: H.264 + AAC, both kept bit for bit.
        let Ok(aac_enc) = encoder_for_sound() else { panic!("no AAC encoder for the test") };
        let mp4 = make(
            dir.path(),
            "phone.mp4",
            &format!(
                "{beep} ! {aac_enc} ! aacparse ! m. videotestsrc num-buffers=60 \
                 ! video/x-raw,width=160,height=120,framerate=30/1,format=I420 ! x264enc ! h264parse ! mp4mux name=m"
            ),
        );
        let o = to_mp4(&mp4, &out, &enc, Duration::from_secs(60)).unwrap();
        assert_eq!((o.remuxed, o.frames, o.sound.as_deref()), (true, 60, Some("passthrough")), "{o:?}");
        let s = probe(&out);
        assert_eq!((s[0].1.as_str(), s[1].1.as_str()), ("h264", "aac"), "{s:?}");
        assert_eq!(aac_packets(&out), aac_packets(&mp4), "AAC packets kept bit for bit");
        // A browser's WebM: VP8 + Opus, both transcoded once (H.264 + AAC) and as long.
        let webm = make(
            dir.path(),
            "rec.webm",
            &format!(
                "{beep} ! opusenc ! m. videotestsrc num-buffers=60 ! video/x-raw,width=160,height=120,framerate=30/1 \
                 ! vp8enc ! webmmux name=m"
            ),
        );
        let o = to_mp4(&webm, &out, &enc, Duration::from_secs(60)).unwrap();
        assert_eq!((o.remuxed, o.sound.as_deref()), (false, Some(aac_enc.as_str())), "{o:?}");
        let s = probe(&out);
        assert_eq!((s[0].1.as_str(), s[1].1.as_str()), ("h264", "aac"), "{s:?}");
        assert!((s[0].2 - 2.0).abs() < 0.05 && (s[1].2 - 2.0).abs() < 0.1, "{s:?}");
        // No AAC encoder: the clip is made, without sound.
        let o = to_mp4_with(&webm, &out, &enc, Err("none (test)".into()), Duration::from_secs(60)).unwrap();
        assert_eq!((o.frames, o.sound), (60, None));
        let s = probe(&out);
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!(s[0].1, "h264");
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
