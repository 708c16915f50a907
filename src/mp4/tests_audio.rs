//! Tests of the AAC track: real AAC from GStreamer's `avenc_aac` beside real x264 video,
//! written in fragments, finalized by the writer and rebuilt from the file (recovery), and
//! checked by ffprobe/ffmpeg: two streams, the sound trimmed by its edit list to the video's
//! first presented frame, an empty edit for sound that starts late. Owns no production code;
//! must never write outside a temp dir.

use super::tests::{encoded, FRAME};
use super::*;
use gst::prelude::*;
use gstreamer as gst;
use gstreamer_app as gst_app;
use std::sync::OnceLock;

const RATE: u32 = 48_000;

/// Four seconds of a 440 Hz tone as raw AAC-LC frames (48 kHz mono), and the AudioSpecificConfig.
pub(crate) fn aac() -> &'static (Vec<Vec<u8>>, Vec<u8>) {
    static AAC: OnceLock<(Vec<Vec<u8>>, Vec<u8>)> = OnceLock::new();
    AAC.get_or_init(|| {
        gst::init().unwrap();
        let desc = "audiotestsrc num-buffers=188 samplesperbuffer=1024 freq=440 ! \
            audio/x-raw,rate=48000,channels=1 ! avenc_aac ! aacparse ! \
            audio/mpeg,mpegversion=4,stream-format=raw ! appsink name=sink sync=false";
        let pipeline = gst::parse::launch(desc).unwrap().downcast::<gst::Pipeline>().unwrap();
        let sink = pipeline.by_name("sink").unwrap().downcast::<gst_app::AppSink>().unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        let (mut frames, mut config) = (Vec::new(), Vec::new());
        while let Ok(sample) = sink.pull_sample() {
            if config.is_empty() {
                let caps = sample.caps().unwrap();
                let data = caps.structure(0).unwrap().get::<gst::Buffer>("codec_data").unwrap();
                config = data.map_readable().unwrap().to_vec();
            }
            frames.push(sample.buffer().unwrap().map_readable().unwrap().to_vec());
        }
        pipeline.set_state(gst::State::Null).unwrap();
        assert!(frames.len() >= 185, "encoder produced {} frames", frames.len());
        assert_eq!(aac::AudioConfig::parse(&config).map(|c| (c.rate, c.channels)), Some((RATE, 1)));
        (frames, config)
    })
}

/// The 3 s of video in one fragment per GOP, with the AAC frames that start before each
/// GOP's end (from `first_audio`). Returns the writer and the fragmented file.
fn av_clip(video_edit: u64, audio: AudioTrack, first_audio: usize) -> (FragmentedMp4, Vec<u8>) {
    let aus = encoded();
    let (frames, _) = aac();
    let mut mp4 = FragmentedMp4::new_av(&aus[0].0, 320, 240, video_edit, Some(audio)).unwrap();
    let mut file = mp4.init_segment();
    let mut next_audio = first_audio;
    let mut video_end = 0u64;
    for gop in aus.chunk_by(|_, b| !b.1) {
        let samples: Vec<Sample> = gop.iter().map(|(d, k)| Sample { data: d, duration: FRAME, keyframe: *k }).collect();
        video_end += FRAME as u64 * gop.len() as u64;
        // Sample i of the sound starts at (i − first_audio) × 1024 / 48 kHz of the file.
        let mut audio = Vec::new();
        while next_audio < frames.len()
            && ((next_audio - first_audio) as u64 * 1024) * 90_000 < video_end * u64::from(RATE)
        {
            audio.push(AudioSample { data: &frames[next_audio], duration: 1024 });
            next_audio += 1;
        }
        file.extend(mp4.fragment_av(&samples, &audio));
    }
    assert_eq!(mp4.bytes_written(), file.len() as u64);
    (mp4, file)
}

fn finalized(mp4: &FragmentedMp4, mut file: Vec<u8>) -> Vec<u8> {
    let plan = mp4.finalize();
    file.extend(&plan.moov);
    for &at in &plan.flips {
        file[at as usize..at as usize + 4].copy_from_slice(b"free");
    }
    file
}

struct Stream {
    kind: String,
    codec: String,
    start: f64,
    duration: f64,
    frames: u64,
}

/// ffprobe's streams (decoded frame counts) of `bytes`, after ffmpeg decoded it without error.
fn streams(bytes: &[u8]) -> Vec<Stream> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.mp4");
    std::fs::write(&path, bytes).unwrap();
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-of", "json", "-show_entries"])
        .arg("stream=codec_type,codec_name,start_time,duration,nb_read_frames")
        .arg(&path)
        .output()
        .expect("ffprobe must be installed");
    assert!(out.status.success() && out.stderr.is_empty(), "ffprobe: {}", String::from_utf8_lossy(&out.stderr));
    let dec = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&path)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(dec.status.success() && dec.stderr.is_empty(), "ffmpeg: {}", String::from_utf8_lossy(&dec.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let num = |s: &serde_json::Value, k: &str| s[k].as_str().unwrap_or("nan").parse::<f64>().unwrap_or(f64::NAN);
    v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| Stream {
            kind: s["codec_type"].as_str().unwrap().into(),
            codec: s["codec_name"].as_str().unwrap().into(),
            start: num(s, "start_time"),
            duration: num(s, "duration"),
            frames: s["nb_read_frames"].as_str().unwrap().parse().unwrap(),
        })
        .collect()
}

const AAC_FRAME_S: f64 = 1024.0 / RATE as f64;

#[test]
fn clip_with_sound_has_two_streams_trimmed_to_the_same_start() {
    // The clip presents from video frame 10 (1/3 s in); the sound from the same instant:
    // 16 000 samples into its first frame run.
    let video_edit = 10 * FRAME as u64;
    let (_, config) = aac();
    let track = AudioTrack { config: config.clone(), rate: RATE, channels: 1, delay: 0, edit_media_time: 16_000 };
    let (mp4, file) = av_clip(video_edit, track, 0);
    let (audio_samples, audio_duration) = mp4.audio_written();
    assert_eq!(audio_samples, 141, "frames starting before 3 s");
    let done = finalized(&mp4, file.clone());
    let s = streams(&done);
    assert_eq!(s.len(), 2);
    assert_eq!((s[0].kind.as_str(), s[0].codec.as_str()), ("video", "h264"));
    assert_eq!((s[1].kind.as_str(), s[1].codec.as_str()), ("audio", "aac"));
    assert_eq!(s[0].frames, 80, "the lead-in is not presented");
    let video_s = 80.0 / 30.0;
    assert!((s[0].duration - video_s).abs() < 0.01, "video {}", s[0].duration);
    // Both start at 0; the sound lasts as long as the video, within one AAC frame.
    assert!(s[0].start.abs() < 0.001 && s[1].start.abs() < 0.001, "starts {} {}", s[0].start, s[1].start);
    let presented_audio = (audio_duration - 16_000) as f64 / f64::from(RATE);
    assert!((s[1].duration - presented_audio).abs() < 0.001, "audio {} vs {presented_audio}", s[1].duration);
    assert!((s[1].duration - video_s).abs() <= AAC_FRAME_S, "audio {} vs video {video_s}", s[1].duration);

    // Recovery rebuilds the writer's plan exactly from the file, sound included.
    assert_eq!(finalize_from_file(&file).unwrap(), Some(mp4.finalize()));
    let sc = scan(&done).unwrap();
    assert!(sc.finalized);
    assert_eq!((sc.samples, sc.audio_samples, sc.edit_media_time), (90, 141, video_edit));
}

#[test]
fn sound_that_starts_late_gets_an_empty_edit_and_a_torn_clip_keeps_it() {
    // The first AAC frame starts 200 ms after the first presented frame.
    let (_, config) = aac();
    let track = AudioTrack { config: config.clone(), rate: RATE, channels: 1, delay: 200, edit_media_time: 0 };
    let (mp4, file) = av_clip(0, track, 0);
    let s = streams(&finalized(&mp4, file.clone()));
    assert_eq!(s.len(), 2);
    assert!((s[1].start - 0.2).abs() < 0.002, "audio starts at {}", s[1].start);
    assert!(s[0].start.abs() < 0.001);

    // A crash in the last fragment: the complete fragments keep both tracks.
    let cut = file.len() - 500;
    let sc = scan(&file[..cut]).unwrap();
    assert_eq!((sc.fragments, sc.samples), (2, 60));
    assert!(sc.audio_samples >= 90, "{}", sc.audio_samples);
    let mut torn = file[..sc.valid_len as usize].to_vec();
    let plan = finalize_from_file(&torn).unwrap().unwrap();
    torn.extend(&plan.moov);
    for &at in &plan.flips {
        torn[at as usize..at as usize + 4].copy_from_slice(b"free");
    }
    let s = streams(&torn);
    assert_eq!((s[0].frames, s[1].kind.as_str()), (60, "audio"));
    assert_eq!(s[1].frames, sc.audio_samples);
}

#[test]
fn fragments_carry_one_traf_per_track_and_video_only_files_are_unchanged() {
    let aus = encoded();
    let (frames, config) = aac();
    let samples = [Sample { data: &aus[0].0, duration: FRAME, keyframe: true }];
    let audio = [AudioSample { data: &frames[0], duration: 1024 }, AudioSample { data: &frames[1], duration: 1024 }];
    let track = AudioTrack { config: config.clone(), rate: RATE, channels: 1, delay: 0, edit_media_time: 0 };
    let mut av = FragmentedMp4::new_av(&aus[0].0, 320, 240, 0, Some(track.clone())).unwrap();
    let f = av.fragment_av(&samples, &audio);
    let t = super::tests::tree(&f);
    let paths: Vec<&str> = t.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(paths.iter().filter(|p| **p == "/moof/traf").count(), 2);
    // The audio trun's data offset points just past the video's bytes in the mdat.
    let mdat = super::tests::find(&t, "/mdat");
    assert!(f[mdat.0 + mdat.1 - frames[1].len()..].ends_with(&frames[1]));
    // Sound alone, then the live form with its own decode times.
    assert!(!av.fragment_av(&[], &audio).is_empty());
    assert_eq!(av.audio_written(), (4, 4096));
    let live = av.live_fragment_av(9, [0, 4096], &[], &audio);
    let lt = super::tests::tree(&live);
    let tfdt = super::tests::find(&lt, "/moof/traf/tfdt").0;
    assert_eq!(super::tests::u64_at(&live, tfdt + 12), 4096);
    // A file without a track for sound ignores it; with none given, it is the video-only file.
    let mut plain = FragmentedMp4::new(&aus[0].0, 320, 240, 0).unwrap();
    let mut plain2 = FragmentedMp4::new(&aus[0].0, 320, 240, 0).unwrap();
    assert_eq!(plain.fragment_av(&samples, &audio), plain2.fragment(&samples));
    assert!(!plain.has_audio() && av.has_audio());
    // Bad tracks are refused.
    for bad in [
        AudioTrack { rate: 0, ..track.clone() },
        AudioTrack { rate: 96_000, ..track.clone() },
        AudioTrack { channels: 0, ..track.clone() },
        AudioTrack { config: vec![0x11], ..track.clone() },
    ] {
        assert!(FragmentedMp4::new_av(&aus[0].0, 320, 240, 0, Some(bad)).is_err());
    }
}
