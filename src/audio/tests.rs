//! Tests of the audio stage: pipeline text, encoder choice, and the real `test` source through
//! each installed AAC encoder into a pre-roll (dated on the monotonic clock, beeps on whole seconds), and a
//! missing ALSA plugin reported without stopping anything else.

use super::*;
use crate::frame::EncodedFrame;
use crate::preroll::PreRoll;
use bytes::Bytes;

#[test]
fn encoder_choice_and_pipeline_text() {
    let cfg = AudioConfig::of_kind(AudioKind::Test);
    assert_eq!(resolve_encoder(&cfg, |e| e == "voaacenc").unwrap(), "voaacenc");
    assert_eq!(resolve_encoder(&cfg, |e| e != "voaacenc").unwrap(), "avenc_aac");
    assert_eq!(resolve_encoder(&cfg, |_| true).unwrap(), "voaacenc", "the lighter one first");
    assert!(resolve_encoder(&cfg, |_| false).unwrap_err().contains("no AAC encoder"));
    let named = AudioConfig { encoder: "fdkaacenc".into(), ..cfg.clone() };
    assert!(resolve_encoder(&named, |_| false).unwrap_err().contains("fdkaacenc is not installed"));
    let alsa = AudioConfig { device: Some("hw:1,0".into()), ..AudioConfig::of_kind(AudioKind::Alsa) };
    let src = source_element(&alsa).unwrap();
    assert!(src.starts_with("alsasrc device=\"hw:1,0\" provide-clock=false"), "{src}");
    assert_eq!(source_element(&AudioConfig::of_kind(AudioKind::Source)), None);
    let d = description(&src, &AudioConfig { rate: 16_000, bitrate_kbps: 32, ..alsa }, "avenc_aac");
    assert!(d.contains("audio/x-raw,rate=16000,channels=1 ! avenc_aac bitrate=32000 ! aacparse"), "{d}");
}

fn keyframe() -> EncodedFrame {
    let now = crate::time::mono_now();
    EncodedFrame {
        data: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
        pts: now,
        dts: now,
        duration: Duration::from_millis(40),
        keyframe: true,
        seq: 0,
    }
}

#[test]
fn test_source_dates_aac_frames_on_the_monotonic_clock() {
    crate::gst::init().unwrap();
    // Each encoder `auto` may pick that is installed here (both are on Debian), so each one's
    // priming is checked against what its frames decode to.
    let installed: Vec<&str> = AUTO_AAC_ENCODERS.iter().copied().filter(|e| element_exists(e)).collect();
    assert!(installed.contains(&"voaacenc") && installed.contains(&"avenc_aac"), "{installed:?}");
    for encoder in installed {
        dates_frames_on_the_clock(encoder);
    }
}

fn dates_frames_on_the_clock(encoder: &str) {
    let preroll = Arc::new(PreRoll::new(Duration::from_secs(60), 1 << 24));
    preroll.push(keyframe());
    let status = Arc::new(CameraStatus::default());
    let stop = StopToken::new();
    let cfg = AudioConfig { encoder: encoder.into(), ..AudioConfig::of_kind(AudioKind::Test) };
    let begun = crate::time::mono_now();
    let thread = AudioSource::new("t", cfg, preroll.clone(), status.clone(), stop.clone()).spawn().unwrap().unwrap();
    // Wait (on the stream itself) until two seconds of sound are held.
    let mut follower = preroll.follow_av_from_time(Duration::ZERO, Duration::ZERO);
    let mut frames = Vec::new();
    while frames.len() < 94 {
        match follower.next_blocking(Duration::from_secs(10)) {
            crate::preroll::Followed::Audio(a) => frames.push(a),
            crate::preroll::Followed::Timeout => panic!("no sound: {:?}", status.audio.last_error()),
            _ => {}
        }
    }
    stop.stop();
    thread.join().unwrap();
    assert_eq!(status.audio.encoder(), encoder);
    let f = status.audio.format().unwrap();
    assert_eq!((f.rate, f.channels, &f.config[..2]), (48_000, 1, &[0x11, 0x88][..]));
    // Back to back, 1024 samples apart, from the start (the beep begins on the 10 ms of the
    // clock it starts in, less the priming: the first frame decodes to the encoder's silence).
    let first = frames[0].pts;
    let primed = Duration::from_nanos(priming(encoder) * 1_000_000_000 / 48_000) + Duration::from_millis(10);
    assert!(first + primed >= begun && first <= begun + Duration::from_millis(1100), "{first:?} vs {begun:?}");
    for w in frames.windows(2) {
        let gap = w[1].pts.as_nanos() as i64 - w[0].pts.as_nanos() as i64;
        assert!((gap - 21_333_333).abs() < 1_000_000, "gap {gap} ns");
    }
    assert!(status.audio.last_error().is_none(), "{:?}", status.audio.last_error());
    // Decoded, each beep starts on its whole second of the capture clock (the encoder's
    // priming taken off): back to back, sample i of the stream plays at first + i / rate.
    let pcm = decode(&frames);
    let mut onsets = Vec::new();
    let mut quiet = 0; // an onset follows 300 ms of quiet heard
    for (i, v) in pcm.iter().enumerate() {
        if v.unsigned_abs() > 3000 {
            if quiet > 14_400 {
                onsets.push(first + Duration::from_nanos(i as u64 * 1_000_000_000 / 48_000));
            }
            quiet = 0;
        } else {
            quiet += 1;
        }
    }
    assert!(!onsets.is_empty(), "a beep in two seconds of sound");
    for t in onsets {
        let off = (t.subsec_nanos() as i64 + 500_000_000) % 1_000_000_000 - 500_000_000;
        assert!(off.abs() < 2_000_000, "{encoder}: a beep {:.2} ms off its whole second", off as f64 / 1e6);
    }
}

/// The frames decoded by avdec_aac, in order, as mono S16 samples.
fn decode(frames: &[AudioFrame]) -> Vec<i16> {
    let f = &frames[0].format;
    let p = Pipeline::parse(&format!(
        "appsrc name=src format=time caps=audio/mpeg,mpegversion=4,stream-format=raw,rate={},channels={} \
         ! avdec_aac ! audioconvert ! audio/x-raw,format=S16LE,channels=1 ! appsink name=sink sync=false",
        f.rate, f.channels
    ))
    .unwrap();
    let src = p.by_name::<gst_app::AppSrc>("src").unwrap();
    let mut caps = src.caps().unwrap();
    caps.make_mut().set("codec_data", gst::Buffer::from_slice(f.config.clone()));
    src.set_caps(Some(&caps));
    let sink = p.by_name::<gst_app::AppSink>("sink").unwrap();
    p.play().unwrap();
    for a in frames {
        let mut b = gst::Buffer::from_slice(a.data.clone());
        b.get_mut().unwrap().set_pts(gst::ClockTime::from_nseconds(a.pts.as_nanos() as u64));
        src.push_buffer(b).unwrap();
    }
    src.end_of_stream().unwrap();
    let mut out = Vec::new();
    while let Some(s) = sink.try_pull_sample(gst::ClockTime::from_seconds(5)) {
        let map = s.buffer().unwrap().map_readable().unwrap();
        out.extend(map.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])));
    }
    out
}

#[test]
fn a_missing_alsa_plugin_is_reported_and_retried_until_stopped() {
    crate::gst::init().unwrap();
    // Without ALSA's plugin (here) the element is missing; with it, the device is.
    let preroll = Arc::new(PreRoll::new(Duration::from_secs(60), 1 << 24));
    let status = Arc::new(CameraStatus::default());
    let stop = StopToken::new();
    let cfg = AudioConfig { device: Some("hw:77,0".into()), ..AudioConfig::of_kind(AudioKind::Alsa) };
    let thread = AudioSource::new("t", cfg, preroll, status.clone(), stop.clone()).spawn().unwrap().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while status.audio.last_error().is_none() && std::time::Instant::now() < deadline {
        stop.sleep(Duration::from_millis(50));
    }
    stop.stop();
    thread.join().unwrap();
    let e = status.audio.last_error().expect("an error is reported");
    assert!(e.contains("gstreamer1.0-alsa") || e.contains("hw:77,0") || e.contains("alsasrc"), "{e}");
    assert_eq!(status.audio.frames.load(std::sync::atomic::Ordering::Relaxed), 0);
}
