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

/// The `traf`s of a chunk: (track id, tfdt, samples, sum of durations).
fn trafs(d: &[u8]) -> Vec<(u64, u64, u64, u64)> {
    let mut out = Vec::new();
    let moof_end = be32(d, 0) as usize;
    let mut at = 8 + be32(d, 8) as usize; // after mfhd
    while at < moof_end {
        let size = be32(d, at) as usize;
        assert_eq!(&d[at + 4..at + 8], b"traf");
        let tfhd = at + 8;
        let track = be32(d, tfhd + 12);
        let tfdt = tfhd + be32(d, tfhd) as usize;
        assert_eq!(&d[tfdt + 4..tfdt + 8], b"tfdt");
        let base = u64::from_be_bytes(d[tfdt + 12..tfdt + 20].try_into().unwrap());
        let trun = tfdt + be32(d, tfdt) as usize;
        assert_eq!(&d[trun + 4..trun + 8], b"trun");
        let flags = be32(d, trun + 8) & 0xff_ffff;
        let n = be32(d, trun + 12);
        let per = 4 * [0x100, 0x200, 0x400, 0x800].iter().filter(|f| flags & **f != 0).count();
        let first = trun + 16 + if flags & 1 != 0 { 4 } else { 0 } + if flags & 4 != 0 { 4 } else { 0 };
        let sum = (0..n as usize).map(|i| be32(d, first + per * i)).sum();
        out.push((track, base, n, sum));
        at += size;
    }
    out
}

/// AAC frame `k` of a 48 kHz stream whose frame 0 was captured at `t0`.
fn aac(t0: Duration, k: u64, config: &[u8]) -> AudioFrame {
    AudioFrame {
        data: Bytes::from(vec![0x21, 0x10, k as u8]),
        pts: t0 + Duration::from_nanos(k * 1024 * 1_000_000_000 / 48_000),
        duration: Duration::from_nanos(21_333_333),
        format: AudioFormat { config: Bytes::copy_from_slice(config), rate: 48_000, channels: 1 },
    }
}

/// Feed 90 frames at 30 fps and the sound from `t0` as it would arrive (~40 ms after its
/// capture time), the sound starting with frame `from`.
fn feed_av(c: &mut Cutter, w: &mut PlaylistWindow, t0: Duration, from: u64) {
    let mut k = 0;
    for i in 0..90 {
        let f = frame(i, 30);
        while i >= from && aac(t0, k, &[0x11, 0x88]).pts + Duration::from_millis(40) <= f.pts {
            c.push_audio(aac(t0, k, &[0x11, 0x88]));
            k += 1;
        }
        c.push(f, w, &wall);
    }
}

#[test]
fn sound_goes_into_the_parts_as_a_second_track_on_capture_time() {
    let (mut c, mut w) = setup();
    // Sound captured from 100 ms before the first keyframe, heard before it.
    let t0 = BASE - Duration::from_millis(100);
    feed_av(&mut c, &mut w, t0, 0);
    let init = w.init(None).unwrap();
    assert!(init.windows(4).any(|b| b == b"mp4a") && init.windows(4).any(|b| b == b"esds"));
    let pl = w.playlist().unwrap();
    let mut next_audio = None;
    let mut audio_frames = 0;
    for (m, p, _) in parts_of(&pl) {
        let Fetch::Ready(d) = w.part(m, p) else { panic!("part {m}.{p} missing") };
        let t = trafs(&d);
        assert_eq!(t[0].0, 1, "video first: {t:?}");
        let Some(&(track, tfdt, n, sum)) = t.get(1) else { continue };
        assert_eq!(track, 2);
        // The sound before the keyframe is dropped; then back to back, in samples.
        let first = next_audio.unwrap_or_else(|| {
            let k0 = (BASE - t0).as_nanos().div_ceil(21_333_334) as u64; // first frame at or after BASE
            crate::time::samples(aac(t0, k0, &[]).pts, 48_000)
        });
        assert_eq!(tfdt, first, "part {m}.{p}");
        assert_eq!(sum, n * 1024);
        next_audio = Some(tfdt + sum);
        audio_frames += n;
    }
    // Three seconds of parts: all the sound that arrived before their ends (~40 ms late).
    assert!((130..=141).contains(&audio_frames), "{audio_frames} AAC frames in 3 s");
}

#[test]
fn sound_heard_after_the_first_keyframe_joins_at_the_next_segment() {
    let (mut c, mut w) = setup();
    feed_av(&mut c, &mut w, BASE + Duration::from_millis(500), 15);
    let pl = w.playlist().unwrap();
    let parts = parts_of(&pl);
    for (m, p, _) in &parts {
        let Fetch::Ready(d) = w.part(*m, *p) else { panic!() };
        let tracks = trafs(&d).len();
        assert_eq!(tracks, if *m == 0 { 1 } else { 2 }, "part {m}.{p}: sound from segment 1 on");
    }
    assert!(w.init(None).unwrap().windows(4).any(|b| b == b"mp4a"), "the new init has the sound's track");
}

#[test]
fn sound_that_stops_leaves_the_init_and_comes_back_with_its_frames() {
    let (mut c, mut w) = setup();
    let t0 = BASE - Duration::from_millis(100);
    // Sound for the first 0.63 s, then a dead microphone until 3.3 s.
    let mut k = 0;
    for i in 0..150 {
        let f = frame(i, 30);
        while aac(t0, k, &[0x11, 0x88]).pts + Duration::from_millis(40) <= f.pts && !(20..100).contains(&i) {
            c.push_audio(aac(t0, k, &[0x11, 0x88]));
            k += 1;
        }
        if i == 20 {
            // Frames captured while it was dead never come.
            k = (BASE + Duration::from_millis(3300) - t0).as_nanos().div_ceil(21_333_334) as u64;
        }
        c.push(f, &mut w, &wall);
    }
    let pl = w.playlist().unwrap();
    let has_sound = |m: u64| {
        let Fetch::Ready(d) = w.part(m, 0) else { panic!("part {m}.0 missing") };
        trafs(&d).len() == 2
    };
    // Segments 1 and 2 still have the track (without samples: the microphone may come back);
    // segment 3 (3–4 s), more than 2 s after the last sound, has none and a new init; segment 4
    // has it again.
    assert!(has_sound(0), "{pl}");
    assert!(!has_sound(3), "{pl}");
    assert!(has_sound(4), "{pl}");
    assert_eq!(pl.matches("#EXT-X-DISCONTINUITY").count(), 2, "one for each init change: {pl}");
    assert!(pl.contains("#EXT-X-MAP:URI=\"init.mp4?v=1\"") && pl.contains("#EXT-X-MAP:URI=\"init.mp4?v=2\""), "{pl}");
    let mp4a = |v| w.init(Some(v)).unwrap().windows(4).any(|b| b == b"mp4a");
    assert_eq!((mp4a(0), mp4a(1), mp4a(2)), (true, false, true), "the sound leaves the init, then is back");
}
