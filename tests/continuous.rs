//! Continuous recording end to end, with the real encoder and ffmpeg: a `test` camera (frames
//! stamped with their sequence number, the `test` tone as its sound) recording two minutes in
//! 10 s segments gives segment files that follow each other frame for frame (the last frame of
//! one and the first of the next are consecutive), each playable, indexed one entry per segment
//! with the recording's start said as a gap, and index == files; ffmpeg reads the hour's
//! playlist end to end; an export of 7.3 s across two segments is exactly the frames of the
//! range, from the right one, with its sound; a trigger meanwhile makes its event clip and a
//! mark on the timeline; deleting a range removes its segments; retention by age and by size
//! removes the oldest segments and never an event clip.

mod common;

use common::*;
use hindsight::config::{AudioConfig, AudioKind, ByteSize, ContinuousConfig};
use hindsight::index::Index;
use hindsight::segment_meta::SegmentMeta;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

const W: usize = 320;
const H: usize = 240;
const FPS: u32 = 30;
// 5 s segments: 12 of them (the boundaries under test) in a minute of CI time.
const SEGMENT_S: u32 = 5;

fn recording_camera(segment_s: u32, flush_s: f64) -> hindsight::config::CameraConfig {
    let mut cam = test_camera("cam0", W as u32, H as u32, FPS, 1.0);
    cam.keyframe_interval_s = 1.0;
    cam.continuous = Some(ContinuousConfig { segment_s, flush_s, ..ContinuousConfig::default() });
    cam
}

/// The first video timestamp of a file and the end of its last frame, in seconds (ffprobe's
/// packets). A segment's timestamps start at its place in the hour.
fn ffprobe_span(path: &Path) -> (f64, f64) {
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v",
            "-show_entries",
            "packet=pts_time,duration_time",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(out.status.success() && out.stderr.is_empty(), "ffprobe: {}", String::from_utf8_lossy(&out.stderr));
    let packets: Vec<(f64, f64)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut it = l.trim().trim_end_matches(',').split(',').map(|x| x.parse::<f64>().ok());
            Some((it.next()??, it.next()??))
        })
        .collect();
    assert!(!packets.is_empty(), "no video packets in {}", path.display());
    let start = packets.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let end = packets.iter().map(|p| p.0 + p.1).fold(f64::NEG_INFINITY, f64::max);
    (start, end)
}

/// Relative paths of the files under `storage/recordings`.
fn recording_files(storage: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![storage.join("recordings")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(storage).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_follow_each_other_frame_for_frame() {
    let dir = tempfile::tempdir().unwrap();
    let mut cam = recording_camera(SEGMENT_S, 0.5);
    cam.audio = Some(AudioConfig::of_kind(AudioKind::Test));
    let cfg = config(dir.path(), vec![cam]);
    let storage = cfg.storage.path.clone();
    let d = start(cfg).await;
    let entry = d.registry.get("cam0").unwrap();
    assert!(entry.continuous.is_some(), "continuous recording runs");
    let stats = entry.record_stats.clone();
    // The entry holds the clip store (and the index open) until dropped.
    drop(entry);
    wait_for("30 s", Duration::from_secs(120), || stats.segments.load(Ordering::Relaxed) >= 6).await;
    // A trigger while recording: its clip is saved as ever, and marked on the timeline.
    let (status, t) = post_json(d.http_addr, "/api/cameras/cam0/trigger").await;
    assert_eq!(status, 202, "{t}");
    let clip = t["clip_id"].as_str().expect("a clip id").to_string();
    wait_for("a minute", Duration::from_secs(120), || stats.segments.load(Ordering::Relaxed) >= 12).await;
    let saved = wait_clip(d.http_addr, &clip, Duration::from_secs(60)).await;
    assert_eq!((saved["camera"].as_str(), saved["source"].as_str()), (Some("cam0"), Some("trigger")), "{saved}");
    metrics_say_what_was_recorded(d.http_addr).await;
    hour_playlist_plays_end_to_end(d.http_addr, &clip).await;
    export_is_frame_exact(d.http_addr, &storage).await;
    let removed = delete_removes_segments(d.http_addr, &storage).await;
    d.shutdown().await;

    let index = Index::open(&storage.join("index")).unwrap();
    let segs: Vec<SegmentMeta> = index.all_segments().unwrap();
    assert!(segs.len() + removed >= 13, "12 segments and the one closed at shutdown: {segs:#?}");
    assert!(
        segs.iter().all(|s| s.gap_before.is_none()),
        "the first ones (the recording's start) were deleted: {segs:#?}"
    );
    // index == files
    let mut indexed: Vec<String> = segs.iter().map(|s| s.path.clone()).collect();
    indexed.sort();
    assert_eq!(indexed, recording_files(&storage));

    let mut last_seq: Option<u64> = None;
    let frame_ms = 1000 / i64::from(FPS) + 1;
    for (i, s) in segs.iter().enumerate() {
        let file = storage.join(&s.path);
        assert_eq!(std::fs::metadata(&file).unwrap().len(), s.bytes, "{s:?}");
        let seqs = decode_seqs(&file, W, H);
        assert_eq!(seqs.len() as u64, s.frames, "{s:?}");
        let seqs: Vec<u64> = seqs.into_iter().map(|q| q.expect("every frame carries its number")).collect();
        // Consecutive across the boundary: no frame lost or doubled between segments.
        if let Some(prev) = last_seq {
            assert_eq!(seqs[0], prev + 1, "segment {i} starts right after segment {}", i - 1);
        }
        last_seq = seqs.last().copied();
        let len_ms = s.end_ms - s.start_ms;
        // The file lies on its hour's timeline: its first timestamp is its place in the hour.
        let (start, end) = ffprobe_span(&file);
        // (Within the CLOCK_REALTIME drift against CLOCK_MONOTONIC since the hour's first
        // segment: the place comes from the hour's anchor, start_ms from the wall clock now.)
        assert!((start * 1000.0 - (s.start_ms.rem_euclid(3_600_000)) as f64).abs() <= 50.0, "{start} s: {s:?}");
        let probed = ((end - start) * 1000.0).round() as i64;
        assert!((probed - len_ms).abs() <= frame_ms, "ffprobe {probed} ms, index {len_ms} ms: {s:?}");
        if i > 0 {
            let prev = &segs[i - 1];
            assert!((s.start_ms - prev.end_ms).abs() <= 2, "no gap on the timeline: {prev:?} → {s:?}");
        }
        // Cut at the first keyframe after segment_s (1 s GOP), or at the hour's end.
        let hour = |ms: i64| ms.div_euclid(3_600_000);
        if i + 1 < segs.len() && hour(s.start_ms) == hour(segs[i + 1].start_ms) {
            let want = i64::from(SEGMENT_S) * 1000;
            assert!((want - 100..=want + 100).contains(&len_ms), "a {SEGMENT_S} s segment: {s:?}");
        }
    }
    assert!(stats.flushes.load(Ordering::Relaxed) >= 90, "about one flush per 0.5 s for a minute");
    let lens: Vec<String> = segs.iter().map(|s| format!("{} ms/{} frames", s.end_ms - s.start_ms, s.frames)).collect();
    println!("SEGMENTS {} ({}), last frame {last_seq:?}", segs.len(), lens.join(", "));
}

/// The listing says what was recorded; ffmpeg reads the hour's VOD playlist (segments by byte
/// range) end to end: every frame once, in order, for as long as the segments last.
async fn hour_playlist_plays_end_to_end(addr: std::net::SocketAddr, clip: &str) {
    let (status, l) = get_json(addr, "/api/cameras/cam0/recordings").await;
    assert_eq!(status, 200, "{l}");
    let segs = l["segments"].as_array().unwrap();
    assert!(segs.len() >= 12, "{l}");
    let events = l["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "the trigger is marked: {l}");
    assert_eq!((events[0]["clip"].as_str(), events[0]["source"].as_str()), (Some(clip), Some("trigger")), "{l}");
    let gaps = l["gaps"].as_array().unwrap();
    assert_eq!(gaps[0]["reason"], "recording started", "{l}");
    assert!(gaps.len() <= 2, "a gap before the recording and after it (the open segment): {l}");
    let playlist = l["playlists"][0].as_str().unwrap().to_string();
    let url = format!("http://{addr}{playlist}");
    let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
    assert!(text.contains("#EXT-X-PLAYLIST-TYPE:VOD") && text.ends_with("#EXT-X-ENDLIST\n"), "{text}");
    let listed = text.matches("#EXTINF:").count();
    let hour = playlist.split('/').nth(6).unwrap().to_string();
    let in_hour: Vec<&serde_json::Value> =
        segs.iter().filter(|s| s["start"].as_str().unwrap()[11..13] == hour).collect();
    assert_eq!(listed, in_hour.len(), "{text}");
    let frames: u64 = in_hour.iter().map(|s| s["frames"].as_u64().unwrap()).sum();
    let secs: f64 = in_hour.iter().map(|s| s["duration_s"].as_f64().unwrap()).sum();
    let decoded = tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-i", &url, "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "gray", "-"])
            .output()
            .unwrap();
        assert!(out.status.success() && out.stderr.is_empty(), "ffmpeg: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
            .chunks_exact(W * H)
            .map(|f| hindsight::capture::test_pattern::read_seq(f, W, H, W))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert_eq!(decoded.len() as u64, frames, "every frame of the hour's segments");
    let seqs: Vec<u64> = decoded.into_iter().map(|q| q.expect("numbered frames")).collect();
    let breaks: Vec<&[u64]> = seqs.windows(2).filter(|w| w[1] != w[0] + 1).collect();
    assert!(breaks.is_empty(), "in order, none missing: breaks {breaks:?} in {} frames of {playlist}", seqs.len());
    let ffprobe = ffprobe_duration(Path::new(&format!("http://{addr}{playlist}")));
    assert!((ffprobe - secs).abs() <= 1.0 / f64::from(FPS) + 0.001, "ffprobe {ffprobe} s, segments {secs} s");
    println!("HOUR-PLAYLIST {listed} segments, {frames} frames, {secs:.3} s (ffprobe {ffprobe:.3} s)");
    // Bad requests.
    assert_eq!(get_json(addr, "/api/cameras/nope/recordings").await.0, 404);
    assert_eq!(get_json(addr, "/api/cameras/cam0/recordings?from=yesterday").await.0, 400);
    assert_eq!(
        get_json(addr, "/api/cameras/cam0/recordings?from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z").await.0,
        400
    );
    assert_eq!(get_json(addr, "/api/cameras/cam0/recordings/2026-12-06/25/playlist.m3u8").await.0, 400);
    assert_eq!(get_json(addr, "/api/cameras/cam0/recordings/2000-01-01/00/playlist.m3u8").await.0, 404);
    assert_eq!(get_json(addr, "/api/cameras/cam0/recordings/segments/12.mp4").await.0, 404);
}

/// `/metrics` carries the recording's counters: segments, bytes, flushes and their latency,
/// the oldest recording.
async fn metrics_say_what_was_recorded(addr: std::net::SocketAddr) {
    let text = reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap();
    let value = |name: &str| -> f64 {
        let prefix = format!("hindsight_{name}{{camera=\"cam0\"}} ");
        let line = text.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no {prefix} in {text}"));
        line[prefix.len()..].parse().unwrap()
    };
    assert!(value("recording_segments_total") >= 12.0);
    let bytes = value("recording_bytes_written_total");
    assert!(bytes > 100_000.0, "{bytes}");
    let flushes = value("recording_flushes_total");
    assert!(flushes >= 90.0, "a minute at about one flush per 0.5 s: {flushes}");
    let flush_s = value("recording_flush_seconds_total");
    assert!(flush_s > 0.0, "{flush_s}");
    assert!(value("recording_last_flush_seconds") > 0.0);
    assert_eq!(value("recording_errors_total"), 0.0);
    let oldest = value("recording_oldest_timestamp_seconds");
    let now = hindsight::time::wall_now_ms() as f64 / 1e3;
    assert!((now - 100.0..now - 50.0).contains(&oldest), "the recording began about a minute ago: {oldest} vs {now}");
    println!(
        "METRICS {bytes} bytes, {flushes} flushes, mean flush {:.2} ms, oldest {:.0} s ago",
        flush_s / flushes * 1e3,
        now - oldest
    );
}

/// Wall times (Unix ms, fractional: the segment's start plus each frame's offset in the file)
/// and numbers of the frames of a listed segment.
fn frames_of(storage: &Path, seg: &serde_json::Value) -> Vec<(f64, u64)> {
    let start_ms: i64 =
        seg["url"].as_str().unwrap().rsplit('/').next().unwrap().trim_end_matches(".mp4").parse().unwrap();
    let file = storage.join(hindsight::segment_meta::segment_rel_path("cam0", start_ms));
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v", "-show_entries", "packet=pts_time", "-of", "csv=p=0"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut pts: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse::<f64>().ok())
        .collect();
    pts.sort_by(f64::total_cmp);
    let first = pts[0];
    let seqs: Vec<u64> = decode_seqs(&file, W, H).into_iter().map(|q| q.expect("numbered")).collect();
    assert_eq!(pts.len(), seqs.len(), "{}", file.display());
    pts.into_iter().map(|t| start_ms as f64 + (t - first) * 1000.0).zip(seqs).collect()
}

/// Export 7.3 s around the boundary between two segments: the file holds exactly the frames
/// whose middles lie in the range (7.3 s × fps ± 1), the first being the right one, and its
/// sound starts and ends with them. Bad requests are refused with a reason.
async fn export_is_frame_exact(addr: std::net::SocketAddr, storage: &Path) {
    let (_, l) = get_json(addr, "/api/cameras/cam0/recordings").await;
    let segs = l["segments"].as_array().unwrap();
    let (a, b) = (&segs[3], &segs[4]);
    let boundary = hindsight::time::parse_rfc3339_ms("end", a["end"].as_str().unwrap()).unwrap();
    let (from, to) = (boundary - 3650, boundary + 3650);
    let frame = 1000.0 / f64::from(FPS);
    let mut frames = frames_of(storage, a);
    frames.extend(frames_of(storage, b));
    let want: Vec<u64> = frames
        .iter()
        .filter(|(t, _)| t + frame / 2.0 >= from as f64 && t + frame / 2.0 < to as f64)
        .map(|f| f.1)
        .collect();
    assert!(want.len().abs_diff(219) <= 1, "7.3 s × 30 fps: {} frames", want.len());

    let url = format!(
        "http://{addr}/api/cameras/cam0/recordings/export.mp4?from={}&to={}",
        hindsight::time::rfc3339_ms(from),
        hindsight::time::rfc3339_ms(to)
    );
    let resp = reqwest::get(&url).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "video/mp4");
    let said: usize = resp.headers()["x-hindsight-frames"].to_str().unwrap().parse().unwrap();
    let said_start = resp.headers()["x-hindsight-start"].to_str().unwrap().to_string();
    let body = resp.bytes().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.mp4");
    std::fs::write(&file, &body).unwrap();
    let got: Vec<u64> = decode_seqs(&file, W, H).into_iter().map(|q| q.expect("numbered")).collect();
    let near: Vec<&(f64, u64)> = frames.iter().filter(|(t, _)| (t - from as f64).abs() < 60.0).collect();
    assert_eq!(
        got[..3],
        want[..3],
        "the export starts at the range's first frame: from {from}, export says {said_start}, frames near: {near:?}; segments {a} {b}"
    );
    assert_eq!(got, want, "the export is the range's frames");
    assert_eq!(said, want.len());
    let streams = common::av::streams(&file);
    assert_eq!(streams.len(), 2, "video and sound: {streams:?}");
    let (v, snd) = (&streams[0], &streams[1]);
    assert_eq!((v.1.as_str(), snd.1.as_str()), ("h264", "aac"), "{streams:?}");
    let aac_frame = 1024.0 / 48_000.0;
    assert!(snd.2.abs() <= aac_frame, "the sound starts with the picture: {streams:?}");
    assert!(((snd.2 + snd.3) - (v.2 + v.3)).abs() <= aac_frame / 2.0 + 0.001, "and ends with it: {streams:?}");
    println!(
        "EXPORT 7.3 s across segments: {} frames (want {}), first #{}, {} bytes, sound {:.3}+{:.3} s, video {:.3}+{:.3} s",
        got.len(),
        want.len(),
        got[0],
        body.len(),
        snd.2,
        snd.3,
        v.2,
        v.3
    );

    // Bad requests.
    let q = |f: &str, t: &str| format!("/api/cameras/cam0/recordings/export.mp4?from={f}&to={t}");
    assert_eq!(get_json(addr, "/api/cameras/cam0/recordings/export.mp4").await.0, 400, "from and to are required");
    assert_eq!(get_json(addr, &q("2026-01-01T00:00:00Z", "2026-01-01T02:00:00Z")).await.0, 400, "at most an hour");
    assert_eq!(get_json(addr, &q("2000-01-01T00:00:00Z", "2000-01-01T00:10:00Z")).await.0, 404, "nothing recorded");
    assert_eq!(get_json(addr, "/api/cameras/nope/recordings/export.mp4").await.0, 404);
}

/// `DELETE` a range: the segments overlapping it are gone, files and entries; returns how many.
async fn delete_removes_segments(addr: std::net::SocketAddr, storage: &Path) -> usize {
    let (_, l) = get_json(addr, "/api/cameras/cam0/recordings").await;
    let segs = l["segments"].as_array().unwrap();
    let before = recording_files(storage).len();
    // The first two segments: from before the first to the middle of the second.
    let start = hindsight::time::parse_rfc3339_ms("start", segs[0]["start"].as_str().unwrap()).unwrap();
    let mid = hindsight::time::parse_rfc3339_ms("start", segs[1]["start"].as_str().unwrap()).unwrap() + 1000;
    let path = format!(
        "/api/cameras/cam0/recordings?from={}&to={}",
        hindsight::time::rfc3339_ms(start - 60_000),
        hindsight::time::rfc3339_ms(mid)
    );
    let resp = reqwest::Client::new().delete(format!("http://{addr}{path}")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let d: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(d["removed"], 2, "{d}");
    assert_eq!(recording_files(storage).len(), before - 2);
    let (_, after) = get_json(addr, "/api/cameras/cam0/recordings").await;
    assert_eq!(after["segments"][0]["start"], segs[2]["start"], "{after}");
    let bad = reqwest::Client::new().delete(format!("http://{addr}/api/cameras/cam0/recordings")).send().await.unwrap();
    assert_eq!(bad.status(), 400, "a delete names its range");
    2
}

#[test]
fn retention_removes_the_oldest_segments_by_age_then_size_and_never_a_clip() {
    use hindsight::record::recovery::enforce_retention_at;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), vec![recording_camera(60, 2.0)]);
    let storage = hindsight::storage::Storage::new(&cfg.storage);
    let index = Index::open(&cfg.storage.path.join("index")).unwrap();
    let day = 86_400_000;
    let now = 1_796_601_000_000;
    // Ten one-hour segments of 10 MB each, the oldest 9 days old, then one per day.
    let mut segs = Vec::new();
    for i in 0..10i64 {
        let start = now - (9 - i) * day - 3_600_000;
        let path = hindsight::segment_meta::segment_rel_path("cam0", start);
        let abs = storage.abs(&path).unwrap();
        std::fs::create_dir_all(abs.parent().unwrap()).unwrap();
        std::fs::write(&abs, b"segment").unwrap();
        let s = SegmentMeta {
            camera: "cam0".into(),
            start_ms: start,
            end_ms: start + 3_600_000,
            path,
            bytes: 10_000_000,
            init_bytes: 700,
            frames: 108_000,
            sound: false,
            gap_before: None,
        };
        index.insert_segment(&s).unwrap();
        segs.push(s);
    }
    // An event clip from the oldest day stays whatever recordings do.
    let clip = dir.path().join("storage/clips/cam0/old.mp4");
    std::fs::create_dir_all(clip.parent().unwrap()).unwrap();
    std::fs::write(&clip, b"clip").unwrap();

    let mut c = ContinuousConfig { retention_days: 7, ..ContinuousConfig::default() };
    let gone = enforce_retention_at(&storage, &index, "cam0", &c, now);
    let why: Vec<_> = gone.iter().map(|(s, w)| ((now - s.end_ms) / day, *w)).collect();
    assert_eq!(why, [(9, "age"), (8, "age")], "ended more than 7 days ago, oldest first");
    c.max_bytes = Some(ByteSize(50_000_000));
    let gone = enforce_retention_at(&storage, &index, "cam0", &c, now);
    assert_eq!(gone.len(), 3, "80 MB → 50 MB: the three oldest");
    assert!(gone.iter().all(|(_, w)| *w == "size"));
    let left = index.all_segments().unwrap();
    assert_eq!(left.first().map(|s| s.start_ms), Some(segs[5].start_ms));
    let mut files: Vec<String> = left.iter().map(|s| s.path.clone()).collect();
    files.sort();
    assert_eq!(files, recording_files(&cfg.storage.path), "index == files");
    assert!(clip.exists(), "event clips are not recordings");
    // The newest segment stays even over every limit.
    c.max_bytes = Some(ByteSize(64 << 20));
    c.retention_days = 1;
    enforce_retention_at(&storage, &index, "cam0", &c, now + 30 * day);
    assert_eq!(index.all_segments().unwrap().len(), 1);
}
