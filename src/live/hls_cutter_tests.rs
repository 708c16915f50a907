//! Tests of the HLS cutter with synthetic H.264 access units on simulated capture time:
//! segments per GOP, ~200 ms parts, exact `tfdt` continuity, forced cuts of long GOPs, gaps,
//! waiting for the first keyframe and parameter-set changes.

use super::*;
use crate::live::hls_playlist::Fetch;
use crate::time::ticks;

const SPS: [u8; 9] = [0x67, 0x4d, 0x40, 0x1e, 0x96, 0x54, 0x0a, 0x0f, 0xd8];
const SPS2: [u8; 9] = [0x67, 0x4d, 0x40, 0x28, 0x96, 0x54, 0x0a, 0x0f, 0xd8];
const PPS: [u8; 4] = [0x68, 0xee, 0x3c, 0x80];
const BASE: Duration = Duration::from_secs(1000);
const WALL0: i64 = 1_700_000_000_000;

fn wall(pts: Duration) -> i64 {
    WALL0 + ((pts - BASE).as_nanos() as i64 + 500_000) / 1_000_000
}

/// Frame `i` of a 30 fps stream (PTS on the nanosecond, as a capture clock gives it).
fn frame_at(pts: Duration, i: u64, key: bool, sps: &[u8]) -> EncodedFrame {
    let mut data = Vec::new();
    if key {
        data.extend([0, 0, 0, 1]);
        data.extend(sps);
        data.extend([0, 0, 0, 1]);
        data.extend(PPS);
        data.extend([0, 0, 0, 1, 0x65, 0x88, i as u8]);
    } else {
        data.extend([0, 0, 0, 1, 0x41, 0x9a, i as u8]);
    }
    EncodedFrame {
        data: Bytes::from(data),
        pts,
        dts: pts,
        duration: Duration::from_nanos(33_333_333),
        keyframe: key,
        seq: i,
    }
}

fn frame(i: u64, gop: u64) -> EncodedFrame {
    frame_at(BASE + Duration::from_nanos(i * 33_333_333), i, i.is_multiple_of(gop), &SPS)
}

fn setup() -> (Cutter, PlaylistWindow) {
    let cfg = CutConfig::new(1.0, 30);
    let w = PlaylistWindow::new(cfg.window(10, 1 << 24), 0);
    (Cutter::new(cfg, 320, 240), w)
}

fn be32(d: &[u8], at: usize) -> u64 {
    u64::from(u32::from_be_bytes(d[at..at + 4].try_into().unwrap()))
}

/// (tfdt, sum of sample durations, samples, first sample flags) of a chunk from the writer
/// (fixed layout: moof, mfhd, traf, tfhd without optional fields, tfdt v1, trun).
fn chunk(d: &[u8]) -> (u64, u64, u64, u64) {
    assert_eq!(&d[4..8], b"moof");
    let tfdt = u64::from_be_bytes(d[60..68].try_into().unwrap());
    assert_eq!(&d[72..76], b"trun");
    let n = be32(d, 80);
    let sum = (0..n).map(|i| be32(d, 88 + 12 * i as usize)).sum();
    (tfdt, sum, n, be32(d, 96))
}

fn parts_of(pl: &str) -> Vec<(u64, u64, bool)> {
    pl.lines()
        .filter_map(|l| l.strip_prefix("#EXT-X-PART:"))
        .map(|l| {
            let uri = l.split("URI=\"part").nth(1).unwrap().split(".m4s").next().unwrap();
            let (m, p) = uri.split_once('.').unwrap();
            (m.parse().unwrap(), p.parse().unwrap(), l.contains("INDEPENDENT=YES"))
        })
        .collect()
}

#[test]
fn config_for_common_rates() {
    let c = CutConfig::new(1.0, 30);
    assert_eq!(c.target_duration, 1);
    assert_eq!(c.part_target, Duration::from_millis(250));
    assert!(c.part_min > Duration::from_millis(180) && c.part_min < Duration::from_millis(190), "{c:?}");
    assert_eq!(c.segment_max, Duration::from_millis(1500));
    assert_eq!(CutConfig::new(2.5, 25).target_duration, 3);
    let slow = CutConfig::new(1.0, 2); // 500 ms frames: one frame per part
    assert_eq!(slow.part_target, Duration::from_millis(625));
    assert_eq!(slow.part_min, Duration::from_millis(500));
    assert_eq!(CutConfig::new(1.0, 0), c, "unknown rate is taken as 30");
}

#[test]
fn steady_stream_gives_one_segment_per_gop_and_continuous_parts() {
    let (mut c, mut w) = setup();
    for i in 0..=94 {
        c.push(frame(i, 30), &mut w, &wall);
    }
    let pl = w.playlist().unwrap();
    // Three complete 1 s segments; the fourth (frames 90..) has no complete part yet.
    let extinf: Vec<f64> = pl
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .map(|l| l.trim_end_matches(',').parse().unwrap())
        .collect();
    assert_eq!(extinf.len(), 3, "{pl}");
    for d in &extinf {
        assert!((d - 1.0).abs() < 0.001, "{pl}");
    }
    assert!(pl.contains("#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:21.000Z\n"), "{pl}");
    assert!(pl.ends_with("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part3.0.m4s\"\n"), "{pl}");
    let parts = parts_of(&pl);
    assert_eq!(parts.len(), 15, "5 parts of 6 frames per segment: {pl}");
    for (m, p, ind) in &parts {
        assert_eq!(*ind, *p == 0, "part {m}.{p}: only the keyframe part is independent");
    }
    for l in pl.lines().filter(|l| l.starts_with("#EXT-X-PART:")) {
        assert!(l.starts_with("#EXT-X-PART:DURATION=0.2000") || l.starts_with("#EXT-X-PART:DURATION=0.1999"), "{l}");
    }
    // Every part's tfdt is where the previous one ended; the first is frame 0's capture time.
    let mut next = ticks(BASE);
    let mut frames = 0;
    for (m, p, _) in parts {
        let Fetch::Ready(d) = w.part(m, p) else { panic!("part {m}.{p} missing") };
        let (tfdt, sum, n, flags) = chunk(&d);
        assert_eq!(tfdt, next, "part {m}.{p}");
        assert_eq!(flags, if p == 0 { 0x0200_0000 } else { 0x0101_0000 });
        next = tfdt + sum;
        frames += n;
    }
    assert_eq!(frames, 90);
    assert_eq!(next, ticks(BASE + Duration::from_nanos(90 * 33_333_333)));
    // The whole segment is its parts back to back.
    let Fetch::Ready(seg) = w.segment(1) else { panic!() };
    let Fetch::Ready(p0) = w.part(1, 0) else { panic!() };
    assert_eq!(&seg[..p0.len()], &p0[..]);
    // Two more frames complete part 3.0 (6 frames held before frame 96 arrives).
    c.push(frame(95, 30), &mut w, &wall);
    c.push(frame(96, 30), &mut w, &wall);
    assert!(matches!(w.part(3, 0), Fetch::Ready(_)));
    assert_eq!(w.part(3, 1), Fetch::Pending);
}

#[test]
fn waits_for_the_first_keyframe() {
    let (mut c, mut w) = setup();
    for i in 1..30 {
        c.push(frame(i, 30), &mut w, &wall);
    }
    assert_eq!(w.playlist(), None);
    assert_eq!(w.init(None), None);
    for i in 30..=37 {
        c.push(frame(i, 30), &mut w, &wall);
    }
    let pl = w.playlist().unwrap();
    assert!(pl.contains("#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:21.000Z\n#EXT-X-PART:"), "{pl}");
    assert!(w.init(None).is_some());
}

#[test]
fn a_gop_longer_than_the_target_is_cut_below_target_plus_half() {
    let (mut c, mut w) = setup();
    for i in 0..=100 {
        c.push(frame(i, 1000), &mut w, &wall); // one keyframe, then 3.3 s without
    }
    let pl = w.playlist().unwrap();
    let extinf: Vec<f64> = pl
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .map(|l| l.trim_end_matches(',').parse().unwrap())
        .collect();
    assert_eq!(extinf.len(), 2, "{pl}");
    for d in extinf {
        assert!(d < 1.5 && d > 1.3, "{pl}");
    }
    // Only the first part of segment 0 holds a keyframe (segment 0 is now too far back to
    // have its parts listed).
    let Fetch::Ready(first) = w.part(0, 0) else { panic!() };
    assert_eq!(chunk(&first).3, 0x0200_0000);
    let parts = parts_of(&pl);
    assert!(parts.iter().all(|p| p.0 > 0 && !p.2), "no other part starts with a keyframe: {pl}");
}

#[test]
fn a_gap_ends_the_segment_and_marks_a_discontinuity() {
    let (mut c, mut w) = setup();
    for i in 0..45 {
        c.push(frame(i, 30), &mut w, &wall);
    }
    // The camera restarts: 5 s later, a keyframe.
    let later = BASE + Duration::from_secs(6);
    for i in 0..10 {
        c.push(frame_at(later + Duration::from_nanos(i * 33_333_333), 1000 + i, i == 0, &SPS), &mut w, &wall);
    }
    let pl = w.playlist().unwrap();
    assert!(pl.contains("seg1.m4s\n#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:26.000Z\n"), "{pl}");
    // Segment 1 holds frames 30..=44, the last one with its nominal duration.
    let Fetch::Ready(d) = w.segment(1) else { panic!() };
    let mut at = 0;
    let mut frames = 0;
    while at < d.len() {
        let moof = be32(&d, at) as usize;
        frames += chunk(&d[at..]).2;
        at += moof + be32(&d, at + moof) as usize;
    }
    assert_eq!(frames, 15);
    assert!(pl.contains("#EXTINF:0.49999,\n") || pl.contains("#EXTINF:0.50000,\n"), "{pl}");
}

#[test]
fn lagging_reader_resumes_at_a_keyframe_after_a_discontinuity() {
    let (mut c, mut w) = setup();
    for i in 0..40 {
        c.push(frame(i, 30), &mut w, &wall);
    }
    c.gap(&mut w);
    for i in 41..60 {
        c.push(frame(i, 30), &mut w, &wall); // not keyframes: dropped
    }
    assert_eq!(w.segment(2), Fetch::Unknown);
    for i in 60..70 {
        c.push(frame(i, 30), &mut w, &wall);
    }
    let pl = w.playlist().unwrap();
    assert!(pl.contains("seg1.m4s\n#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:22.000Z\n"), "{pl}");
}

#[test]
fn new_parameter_sets_start_a_new_init() {
    let (mut c, mut w) = setup();
    for i in 0..40 {
        c.push(frame(i, 30), &mut w, &wall);
    }
    let first = w.init(None).unwrap();
    for i in 40..70 {
        let pts = BASE + Duration::from_nanos(i * 33_333_333);
        c.push(frame_at(pts, i, i == 60, &SPS2), &mut w, &wall);
    }
    let pl = w.playlist().unwrap();
    assert!(pl.contains("seg1.m4s\n#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init.mp4?v=1\"\n"), "{pl}");
    assert_ne!(w.init(Some(1)).unwrap(), first);
    assert_eq!(w.init(Some(0)).unwrap(), first);
}
