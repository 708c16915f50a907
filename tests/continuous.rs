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
        let probed = (ffprobe_duration(&file) * 1000.0) as i64;
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
