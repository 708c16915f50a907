//! Continuous recording end to end, with the real encoder and ffmpeg: a `test` camera (frames
//! stamped with their sequence number) recording in 2 s segments gives segment files that
//! follow each other frame for frame (the last frame of one and the first of the next are
//! consecutive), each playable, indexed one entry per segment with the recording's start said
//! as a gap, and index == files; retention by age and by size removes the oldest segments and
//! never an event clip.

mod common;

use common::*;
use hindsight::config::{ByteSize, ContinuousConfig};
use hindsight::index::Index;
use hindsight::segment_meta::SegmentMeta;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

const W: usize = 320;
const H: usize = 240;
const FPS: u32 = 30;

fn recording_camera(segment_s: u32, flush_s: f64) -> hindsight::config::CameraConfig {
    let mut cam = test_camera("cam0", W as u32, H as u32, FPS, 1.0);
    cam.keyframe_interval_s = 1.0;
    cam.continuous = Some(ContinuousConfig { segment_s, flush_s, ..ContinuousConfig::default() });
    cam
}

/// ffprobe's format start time and duration in seconds. For a segment, whose timestamps start
/// at its place in the hour, ffprobe's duration runs from 0 to its last timestamp: the
/// segment lasts duration − start.
fn ffprobe_span(path: &Path) -> (f64, f64) {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=start_time,duration", "-of", "default=nw=1:nk=1"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(out.status.success() && out.stderr.is_empty(), "ffprobe: {}", String::from_utf8_lossy(&out.stderr));
    let v: Vec<f64> = String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect();
    assert_eq!(v.len(), 2, "{v:?}");
    (v[0], v[1])
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
    let cfg = config(dir.path(), vec![recording_camera(2, 0.5)]);
    let storage = cfg.storage.path.clone();
    let d = start(cfg).await;
    let entry = d.registry.get("cam0").unwrap();
    assert!(entry.continuous.is_some(), "continuous recording runs");
    let stats = entry.record_stats.clone();
    // The entry holds the clip store (and the index open) until dropped.
    drop(entry);
    wait_for("3 segments", Duration::from_secs(60), || stats.segments.load(Ordering::Relaxed) >= 3).await;
    hour_playlist_plays_end_to_end(d.http_addr).await;
    d.shutdown().await;

    let index = Index::open(&storage.join("index")).unwrap();
    let segs: Vec<SegmentMeta> = index.all_segments().unwrap();
    assert!(segs.len() >= 4, "3 segments and the one closed at shutdown: {segs:#?}");
    assert_eq!(segs[0].gap_before.as_deref(), Some("recording started"));
    assert!(segs[1..].iter().all(|s| s.gap_before.is_none()), "{segs:#?}");
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
        assert!((start * 1000.0 - (s.start_ms.rem_euclid(3_600_000)) as f64).abs() <= 2.0, "{start} s: {s:?}");
        let probed = ((end - start) * 1000.0).round() as i64;
        assert!((probed - len_ms).abs() <= frame_ms, "ffprobe {probed} ms, index {len_ms} ms: {s:?}");
        if i > 0 {
            let prev = &segs[i - 1];
            assert!((s.start_ms - prev.end_ms).abs() <= 2, "no gap on the timeline: {prev:?} → {s:?}");
        }
        if i + 1 < segs.len() {
            assert!((1900..=2100).contains(&len_ms), "a 2 s segment (cut at a keyframe, 1 s GOP): {s:?}");
        }
    }
    assert!(stats.flushes.load(Ordering::Relaxed) >= 4 * 3, "about one flush per 0.5 s");
    let lens: Vec<String> = segs.iter().map(|s| format!("{} ms/{} frames", s.end_ms - s.start_ms, s.frames)).collect();
    println!("SEGMENTS {} ({}), last frame {last_seq:?}", segs.len(), lens.join(", "));
}

/// The listing says what was recorded; ffmpeg reads the hour's VOD playlist (segments by byte
/// range) end to end: every frame once, in order, for as long as the segments last.
async fn hour_playlist_plays_end_to_end(addr: std::net::SocketAddr) {
    let (status, l) = get_json(addr, "/api/cameras/cam0/recordings").await;
    assert_eq!(status, 200, "{l}");
    let segs = l["segments"].as_array().unwrap();
    assert!(segs.len() >= 3, "{l}");
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
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "in order, none missing: {seqs:?}");
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
