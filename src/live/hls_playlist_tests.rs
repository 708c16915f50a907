//! Golden tests of the LL-HLS playlist window under simulated time: the exact playlist text
//! as segments and parts arrive and slide out, and the blocking-reload and fetch answers.
//! Brittle on purpose: players depend on every line.

use super::*;

/// 2023-11-14T22:13:20.000Z
const T0: i64 = 1_700_000_000_000;
const MS200: Duration = Duration::from_millis(200);

fn cfg(max_segments: usize) -> PlaylistWindowConfig {
    PlaylistWindowConfig {
        target_duration: 1,
        part_target: Duration::from_millis(250),
        max_segments,
        max_bytes: 1 << 20,
    }
}

fn part(name: &str, independent: bool) -> Part {
    Part { duration: MS200, independent, data: Bytes::from(name.to_string()) }
}

/// Segment `msn` (wall T0 + k s for the k-th segment) with `n` parts of 200 ms named `msn.i`.
fn segment(w: &mut PlaylistWindow, k: i64, n: usize) {
    w.open_segment(T0 + 1000 * k);
    let msn = w.next_msn() - 1;
    for i in 0..n {
        assert!(w.add_part(part(&format!("{msn}.{i};"), i == 0)));
    }
}

const HEAD: &str = "#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:1
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.750
#EXT-X-PART-INF:PART-TARGET=0.250
";

#[test]
fn empty_window_has_no_playlist_and_waits() {
    let mut w = PlaylistWindow::new(cfg(6), 100);
    assert_eq!(w.playlist(), None);
    assert_eq!(w.readiness(100, Some(0)), Readiness::Wait);
    assert_eq!(w.part(100, 0), Fetch::Unknown, "nothing is coming before an init exists");
    // Without an init nothing opens.
    w.open_segment(T0);
    assert!(!w.add_part(part("x", true)));
    w.set_init(Bytes::from_static(b"INIT"));
    assert_eq!(w.part(100, 0), Fetch::Pending, "the hinted first part");
    w.open_segment(T0);
    assert_eq!(w.playlist(), None, "an open segment without parts lists nothing");
    assert_eq!(w.segment(100), Fetch::Pending);
    assert_eq!(w.init(None), Some(Bytes::from_static(b"INIT")));
}

#[test]
fn first_segment_and_open_parts_with_preload_hint() {
    let mut w = PlaylistWindow::new(cfg(6), 100);
    w.set_init(Bytes::from_static(b"INIT"));
    segment(&mut w, 0, 5);
    segment(&mut w, 1, 2);
    let want = format!(
        "{HEAD}#EXT-X-MEDIA-SEQUENCE:100
#EXT-X-MAP:URI=\"init.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z
#EXT-X-PART:DURATION=0.20000,URI=\"part100.0.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.20000,URI=\"part100.1.m4s\"
#EXT-X-PART:DURATION=0.20000,URI=\"part100.2.m4s\"
#EXT-X-PART:DURATION=0.20000,URI=\"part100.3.m4s\"
#EXT-X-PART:DURATION=0.20000,URI=\"part100.4.m4s\"
#EXTINF:1.00000,
seg100.m4s
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:21.000Z
#EXT-X-PART:DURATION=0.20000,URI=\"part101.0.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.20000,URI=\"part101.1.m4s\"
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part101.2.m4s\"
"
    );
    assert_eq!(w.playlist().unwrap(), want);
    // A complete segment is its parts back to back; parts stay addressable.
    assert_eq!(w.segment(100), Fetch::Ready(Bytes::from_static(b"100.0;100.1;100.2;100.3;100.4;")));
    assert_eq!(w.part(100, 3), Fetch::Ready(Bytes::from_static(b"100.3;")));
    assert_eq!(w.part(101, 1), Fetch::Ready(Bytes::from_static(b"101.1;")));
    assert_eq!(w.part(101, 2), Fetch::Pending, "the preload-hinted part");
    assert_eq!(w.part(100, 5), Fetch::Unknown, "a complete segment gets no more parts");
    assert_eq!(w.part(101, 9), Fetch::Unknown, "too far ahead");
    assert_eq!(w.segment(101), Fetch::Pending, "the open segment");
    assert_eq!(w.segment(102), Fetch::Unknown);
}

#[test]
fn window_slides_and_parts_are_listed_only_near_the_end() {
    let mut w = PlaylistWindow::new(cfg(3), 100);
    w.set_init(Bytes::from_static(b"INIT"));
    for k in 0..5 {
        segment(&mut w, k, 5);
    }
    segment(&mut w, 5, 1);
    let want = format!(
        "{HEAD}#EXT-X-MEDIA-SEQUENCE:102
#EXT-X-MAP:URI=\"init.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:22.000Z
#EXTINF:1.00000,
seg102.m4s
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:23.000Z
#EXT-X-PART:DURATION=0.20000,URI=\"part103.0.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.20000,URI=\"part103.1.m4s\"
#EXT-X-PART:DURATION=0.20000,URI=\"part103.2.m4s\"
#EXT-X-PART:DURATION=0.20000,URI=\"part103.3.m4s\"
#EXT-X-PART:DURATION=0.20000,URI=\"part103.4.m4s\"
#EXTINF:1.00000,
seg103.m4s
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:24.000Z
#EXT-X-PART:DURATION=0.20000,URI=\"part104.0.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.20000,URI=\"part104.1.m4s\"
#EXT-X-PART:DURATION=0.20000,URI=\"part104.2.m4s\"
#EXT-X-PART:DURATION=0.20000,URI=\"part104.3.m4s\"
#EXT-X-PART:DURATION=0.20000,URI=\"part104.4.m4s\"
#EXTINF:1.00000,
seg104.m4s
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:25.000Z
#EXT-X-PART:DURATION=0.20000,URI=\"part105.0.m4s\",INDEPENDENT=YES
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part105.1.m4s\"
"
    );
    assert_eq!(w.playlist().unwrap(), want);
    assert_eq!(w.segment(101), Fetch::Gone);
    assert_eq!(w.part(101, 0), Fetch::Gone);
    assert!(matches!(w.segment(102), Fetch::Ready(_)));
    assert_eq!(w.stats(), (3, 3 * 30 + 6));

    // The open segment completes: it slides 102 out and the hint moves to the next segment.
    for i in 1..5 {
        w.add_part(part(&format!("105.{i};"), false));
    }
    w.open_segment(T0 + 6000);
    let pl = w.playlist().unwrap();
    assert!(pl.contains("#EXT-X-MEDIA-SEQUENCE:103\n"), "{pl}");
    assert!(
        pl.ends_with("#EXTINF:1.00000,\nseg105.m4s\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part106.0.m4s\"\n"),
        "{pl}"
    );
    assert!(pl.contains("URI=\"part103.0.m4s\""), "103 starts exactly 3 target durations back: still listed\n{pl}");
    assert!(!pl.contains("part102."), "{pl}");
    assert_eq!(w.part(106, 0), Fetch::Pending);
}

#[test]
fn blocking_reload_readiness() {
    let mut w = PlaylistWindow::new(cfg(6), 100);
    w.set_init(Bytes::from_static(b"INIT"));
    segment(&mut w, 0, 5);
    segment(&mut w, 1, 2); // newest part: 101.1
    assert_eq!(w.readiness(101, Some(1)), Readiness::Ready, "the newest part");
    assert_eq!(w.readiness(101, Some(0)), Readiness::Ready);
    assert_eq!(w.readiness(100, Some(4)), Readiness::Ready);
    assert_eq!(w.readiness(100, Some(7)), Readiness::Ready, "a later part exists");
    assert_eq!(w.readiness(101, Some(2)), Readiness::Wait, "the next part");
    assert_eq!(w.readiness(101, Some(4)), Readiness::Wait);
    assert!(matches!(w.readiness(101, Some(5)), Readiness::TooFar(_)), "past the advance part limit");
    assert_eq!(w.readiness(102, Some(0)), Readiness::Wait);
    assert_eq!(w.readiness(103, Some(0)), Readiness::Wait);
    assert!(matches!(w.readiness(104, Some(0)), Readiness::TooFar(_)), "more than 2 segments ahead");
    // Without _HLS_part: a complete segment.
    assert_eq!(w.readiness(100, None), Readiness::Ready);
    assert_eq!(w.readiness(101, None), Readiness::Wait);
    assert_eq!(w.readiness(7, None), Readiness::Ready, "long gone is answered at once");

    // The next part arrives: the waiting request for 101.2 may answer, and the playlist has it.
    w.add_part(part("101.2;", false));
    assert_eq!(w.readiness(101, Some(2)), Readiness::Ready);
    assert!(w
        .playlist()
        .unwrap()
        .contains("URI=\"part101.2.m4s\"\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part101.3.m4s\""));

    // The segment ends (keyframe): its last part and the next segment come together; a request
    // for the part after 101's last waits for 102.0.
    w.add_part(part("101.3;", false));
    w.add_part(part("101.4;", false));
    w.open_segment(T0 + 2000);
    assert_eq!(w.readiness(101, None), Readiness::Ready);
    assert_eq!(w.readiness(101, Some(5)), Readiness::Wait);
    assert_eq!(w.readiness(102, Some(0)), Readiness::Wait);
    w.add_part(part("102.0;", true));
    assert_eq!(w.readiness(101, Some(5)), Readiness::Ready);
    assert_eq!(w.readiness(102, Some(0)), Readiness::Ready);
}

#[test]
fn new_init_starts_a_discontinuity_that_slides_out() {
    let mut w = PlaylistWindow::new(cfg(2), 0);
    w.set_init(Bytes::from_static(b"A"));
    segment(&mut w, 0, 5);
    w.set_init(Bytes::from_static(b"A")); // same parameter sets: nothing changes
    segment(&mut w, 1, 5);
    w.set_init(Bytes::from_static(b"B"));
    segment(&mut w, 2, 1);
    let want = format!(
        "{HEAD}#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-MAP:URI=\"init.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z
#EXT-X-PART:DURATION=0.20000,URI=\"part0.0.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.20000,URI=\"part0.1.m4s\"
#EXT-X-PART:DURATION=0.20000,URI=\"part0.2.m4s\"
#EXT-X-PART:DURATION=0.20000,URI=\"part0.3.m4s\"
#EXT-X-PART:DURATION=0.20000,URI=\"part0.4.m4s\"
#EXTINF:1.00000,
seg0.m4s
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:21.000Z
#EXT-X-PART:DURATION=0.20000,URI=\"part1.0.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.20000,URI=\"part1.1.m4s\"
#EXT-X-PART:DURATION=0.20000,URI=\"part1.2.m4s\"
#EXT-X-PART:DURATION=0.20000,URI=\"part1.3.m4s\"
#EXT-X-PART:DURATION=0.20000,URI=\"part1.4.m4s\"
#EXTINF:1.00000,
seg1.m4s
#EXT-X-DISCONTINUITY
#EXT-X-MAP:URI=\"init.mp4?v=1\"
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:22.000Z
#EXT-X-PART:DURATION=0.20000,URI=\"part2.0.m4s\",INDEPENDENT=YES
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part2.1.m4s\"
"
    );
    assert_eq!(w.playlist().unwrap(), want);
    assert_eq!(w.init(Some(0)), Some(Bytes::from_static(b"A")));
    assert_eq!(w.init(Some(1)), Some(Bytes::from_static(b"B")));
    assert_eq!(w.init(None), Some(Bytes::from_static(b"B")));

    // Complete 2 and 3: segments 0 and 1 slide out, and with them init 0 and the discontinuity
    // tag (now counted in EXT-X-DISCONTINUITY-SEQUENCE).
    segment(&mut w, 3, 5);
    segment(&mut w, 4, 0);
    let pl = w.playlist().unwrap();
    assert!(pl.contains("#EXT-X-MEDIA-SEQUENCE:2\n#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init.mp4?v=1\"\n"), "{pl}");
    segment(&mut w, 4, 5);
    segment(&mut w, 5, 1);
    let pl = w.playlist().unwrap();
    assert!(
        pl.contains("#EXT-X-MEDIA-SEQUENCE:3\n#EXT-X-DISCONTINUITY-SEQUENCE:1\n#EXT-X-MAP:URI=\"init.mp4?v=1\"\n"),
        "{pl}"
    );
    assert!(!pl.contains("EXT-X-DISCONTINUITY\n"), "{pl}");
    assert_eq!(w.init(Some(0)), None, "no held segment needs init 0 any more");
}

#[test]
fn gap_marks_a_discontinuity_and_empty_segments_reuse_their_number() {
    let mut w = PlaylistWindow::new(cfg(6), 10);
    w.mark_discontinuity(); // nothing streamed yet: no tag
    w.set_init(Bytes::from_static(b"I"));
    segment(&mut w, 0, 2);
    w.close_segment();
    w.mark_discontinuity();
    w.open_segment(T0 + 5000);
    w.close_segment(); // no parts: dropped, number 11 reused, the tag kept for the next
    assert_eq!(w.next_msn(), 11);
    segment(&mut w, 6, 1);
    let pl = w.playlist().unwrap();
    assert!(pl.starts_with(&format!("{HEAD}#EXT-X-MEDIA-SEQUENCE:10\n#EXT-X-MAP:URI=\"init.mp4\"\n")), "{pl}");
    assert!(
        pl.contains(
            "seg10.m4s\n#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:26.000Z\n\
             #EXT-X-PART:DURATION=0.20000,URI=\"part11.0.m4s\",INDEPENDENT=YES\n"
        ),
        "{pl}"
    );
    assert_eq!(pl.matches("#EXT-X-DISCONTINUITY\n").count(), 1);
}

#[test]
fn byte_cap_evicts_oldest_but_keeps_the_newest() {
    let mut w = PlaylistWindow::new(PlaylistWindowConfig { max_bytes: 70, ..cfg(6) }, 0);
    w.set_init(Bytes::from_static(b"I"));
    for k in 0..4 {
        segment(&mut w, k, 5); // 5 × "k.i;" = 20 bytes each
    }
    w.close_segment();
    assert_eq!(w.stats(), (3, 60));
    let mut w = PlaylistWindow::new(PlaylistWindowConfig { max_bytes: 1, ..cfg(6) }, 0);
    w.set_init(Bytes::from_static(b"I"));
    segment(&mut w, 0, 5);
    segment(&mut w, 1, 5);
    w.close_segment();
    assert_eq!(w.stats(), (1, 20), "the newest stays whatever its size");
    assert_eq!(w.segment(0), Fetch::Gone);
}

#[test]
fn odd_durations_and_forced_cuts_render_exactly() {
    let mut w = PlaylistWindow::new(cfg(6), 0);
    w.set_init(Bytes::from_static(b"I"));
    w.open_segment(T0 + 7);
    for (i, ms) in [233u64, 233, 234].iter().enumerate() {
        w.add_part(Part { duration: Duration::from_millis(*ms), independent: i == 0, data: Bytes::from_static(b"x") });
    }
    // A segment cut at a non-keyframe (a GOP longer than the target): no INDEPENDENT.
    w.open_segment(T0 + 707);
    w.add_part(Part { duration: Duration::from_micros(33_367), independent: false, data: Bytes::from_static(b"y") });
    let pl = w.playlist().unwrap();
    assert!(
        pl.contains(
            "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.007Z\n\
         #EXT-X-PART:DURATION=0.23300,URI=\"part0.0.m4s\",INDEPENDENT=YES\n\
         #EXT-X-PART:DURATION=0.23300,URI=\"part0.1.m4s\"\n\
         #EXT-X-PART:DURATION=0.23400,URI=\"part0.2.m4s\"\n\
         #EXTINF:0.70000,\nseg0.m4s\n\
         #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.707Z\n\
         #EXT-X-PART:DURATION=0.03337,URI=\"part1.0.m4s\"\n"
        ),
        "{pl}"
    );
}
