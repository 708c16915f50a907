//! Tests of [`super::export::plan`] with real x264 video and real AAC in segment files cut by
//! [`super::av::AvFragments`] (as the continuous recorder cuts them), the exported bytes
//! assembled from the plan's head and ranges and checked by ffmpeg: the frames presented are
//! exactly those of the range, bit for bit the original stream's (frame MD5s), the sound
//! starts and ends with them; a segment in another format ends the export; a range with no
//! frame gives none. Owns no production code; writes only in temp dirs.

use super::av::AvFragments;
use super::export::{plan, ExportPlan, Source};
use super::tests::{encoded, one_keyframe};
use super::tests_audio::aac;
use crate::frame::{AudioFormat, AudioFrame, EncodedFrame};
use std::process::Command;
use std::time::Duration;

const FRAME: Duration = Duration::from_nanos(33_333_333);
const TICKS_PER_S: u64 = 90_000;

fn frame(i: usize, data: &[u8], key: bool) -> EncodedFrame {
    let pts = FRAME * i as u32;
    EncodedFrame {
        data: bytes::Bytes::from(data.to_vec()),
        pts,
        dts: pts,
        duration: FRAME,
        keyframe: key,
        seq: i as u64,
    }
}

/// All of the test stream's AAC frames, 1024 samples apart from 0.
fn sound() -> Vec<AudioFrame> {
    let (frames, config) = aac();
    let format = AudioFormat { config: bytes::Bytes::from(config.clone()), rate: 48_000, channels: 1 };
    frames
        .iter()
        .enumerate()
        .map(|(k, d)| AudioFrame {
            data: bytes::Bytes::from(d.clone()),
            pts: Duration::from_nanos(k as u64 * 1024 * 1_000_000_000 / 48_000),
            duration: Duration::from_nanos(1024 * 1_000_000_000 / 48_000),
            format: format.clone(),
        })
        .collect()
}

/// A segment file of `frames` (starting with a keyframe), one fragment per GOP, with the
/// sound of `audio` that plays from its first frame to its end.
fn segment(frames: &[EncodedFrame], audio: &[AudioFrame], next: Option<Duration>) -> Vec<u8> {
    let end = next.unwrap_or(frames.last().unwrap().pts + FRAME);
    let mut audio: Vec<AudioFrame> =
        audio.iter().filter(|a| a.pts + a.duration > frames[0].pts && a.pts < end).cloned().collect();
    let mut av = AvFragments::start(&frames[0], frames[0].pts, 320, 240, &mut audio).unwrap();
    let mut out = av.mp4().init_segment();
    let gops: Vec<&[EncodedFrame]> = frames.chunk_by(|_, b| !b.keyframe).collect();
    for (i, gop) in gops.iter().enumerate() {
        let last = i + 1 == gops.len();
        let next_pts = gops.get(i + 1).map(|g| g[0].pts).or(next);
        out.extend(av.fragment(gop, &mut audio, next_pts, last));
    }
    out
}

/// The exported file, assembled as the web layer streams it.
fn assemble(p: &ExportPlan, files: &[&[u8]]) -> Vec<u8> {
    let mut out = p.head.clone();
    for &(src, at, len) in &p.ranges {
        out.extend_from_slice(&files[src][at as usize..(at + len) as usize]);
    }
    assert_eq!(out.len() as u64, p.len);
    out
}

/// MD5s of the video frames ffmpeg presents from `path` (after edit lists).
fn frame_md5s(path: &std::path::Path, format: Option<&str>) -> Vec<String> {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error"]);
    if let Some(f) = format {
        cmd.args(["-f", f]);
    }
    let out = cmd.arg("-i").arg(path).args(["-map", "0:v", "-f", "framemd5", "-"]).output().unwrap();
    assert!(out.status.success() && out.stderr.is_empty(), "ffmpeg: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.rsplit(',').next().unwrap().trim().to_string())
        .collect()
}

/// (start, duration) of each stream, per ffprobe.
fn stream_times(path: &std::path::Path) -> Vec<(String, f64, f64)> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-of", "json", "-show_entries", "stream=codec_type,start_time,duration"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success() && out.stderr.is_empty(), "ffprobe: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let num = |s: &serde_json::Value, k: &str| s[k].as_str().unwrap().parse::<f64>().unwrap();
    v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["codec_type"].as_str().unwrap().to_string(), num(s, "start_time"), num(s, "duration")))
        .collect()
}

#[test]
fn an_export_across_two_segments_presents_exactly_the_ranges_frames_with_their_sound() {
    let aus = encoded();
    let frames: Vec<EncodedFrame> = aus.iter().enumerate().map(|(i, (d, k))| frame(i, d, *k)).collect();
    let audio = sound();
    // Segment A: frames 0..60 (two GOPs, 0–2 s); segment B: frames 60..90 (2–3 s).
    let a = segment(&frames[..60], &audio, Some(frames[60].pts));
    let b = segment(&frames[60..], &audio, None);
    let sources = [Source { file: &a, start: 0 }, Source { file: &b, start: 2 * TICKS_PER_S }];
    // 0.5 s → 2.5 s: frame 15 (middle at 0.517 s) to frame 74 (middle at 2.483 s).
    let p = plan(&sources, TICKS_PER_S / 2, 5 * TICKS_PER_S / 2).unwrap().expect("frames in range");
    assert_eq!((p.frames, p.sources_used, p.sound), (60, 2, true));
    assert!(p.first.abs_diff(15 * 3000) <= 1, "first frame at {}", p.first);
    let file = assemble(&p, &[&a, &b]);

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("export.mp4");
    std::fs::write(&out, &file).unwrap();
    let raw = dir.path().join("stream.h264");
    std::fs::write(&raw, aus.iter().flat_map(|(d, _)| d.iter().copied()).collect::<Vec<u8>>()).unwrap();
    let original = frame_md5s(&raw, Some("h264"));
    assert_eq!(original.len(), 90);
    let exported = frame_md5s(&out, None);
    assert_eq!(exported.len(), 60, "60 frames presented");
    assert_eq!(exported, original[15..75], "frames 15..75 of the stream, in order");

    let streams = stream_times(&out);
    let (kind, v_start, v_dur) = &streams[0];
    assert_eq!(kind, "video");
    assert!(v_start.abs() < 0.001 && (v_dur - 2.0).abs() < 0.034, "video {v_start}+{v_dur}");
    let (kind, a_start, a_dur) = &streams[1];
    assert_eq!(kind, "audio");
    let aac_frame = 1024.0 / 48_000.0;
    assert!(a_start.abs() < 0.001, "sound starts with the first frame: {a_start}");
    assert!(
        (a_start + a_dur - (v_start + v_dur)).abs() <= aac_frame / 2.0 + 0.001,
        "sound ends with the video: {a_dur} vs {v_dur}"
    );
}

#[test]
fn a_segment_in_another_format_ends_the_export_and_an_empty_range_gives_nothing() {
    let aus = encoded();
    let frames: Vec<EncodedFrame> = aus.iter().enumerate().map(|(i, (d, k))| frame(i, d, *k)).collect();
    let a = segment(&frames[..60], &[], Some(frames[60].pts));
    let other = one_keyframe("I420", 640, 480, "", "profile=main");
    let b = segment(&[frame(60, &other, true)], &[], None);
    let sources = [Source { file: &a, start: 0 }, Source { file: &b, start: 2 * TICKS_PER_S }];
    let p = plan(&sources, 0, 3 * TICKS_PER_S).unwrap().unwrap();
    assert_eq!((p.sources_used, p.frames, p.sound), (1, 60, false));
    assert!(p.ranges.iter().all(|r| r.0 == 0));

    // Nothing recorded in 10–12 s.
    assert!(plan(&sources, 10 * TICKS_PER_S, 12 * TICKS_PER_S).unwrap().is_none());
}
