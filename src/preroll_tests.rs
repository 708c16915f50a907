//! Tests of the pre-roll: GOP eviction, the byte cap, followers, and sound beside video.
use super::*;
use bytes::Bytes;

const FPS: u64 = 10;

/// Frame `i` of a 10 fps stream with a keyframe every `gop` frames.
fn au(i: u64, gop: u64, size: usize) -> EncodedFrame {
    let pts = Duration::from_millis(i * 1000 / FPS);
    EncodedFrame {
        data: Bytes::from(vec![0u8; size]),
        pts,
        dts: pts,
        duration: Duration::from_millis(1000 / FPS),
        keyframe: i % gop == 0,
        seq: i,
    }
}

#[test]
fn refuses_frames_before_first_keyframe() {
    let mut s = PreRollState::new(Duration::from_secs(1), 1 << 20);
    assert!(!s.push(au(3, 10, 1)));
    assert!(s.push(au(10, 10, 1)));
    assert_eq!(s.stats().waiting_for_keyframe, 1);
    assert_eq!(s.stats().frames, 1);
}

#[test]
fn holds_at_least_hold_and_evicts_whole_gops() {
    // hold = 5 s + one GOP (1 s) at 10 fps.
    let mut s = PreRollState::new(Duration::from_secs(6), 1 << 30);
    for i in 0..200 {
        s.push(au(i, 10, 100));
        let st = s.stats();
        if i >= 60 {
            assert!(st.buffered >= Duration::from_secs(6), "at {i}: {:?}", st.buffered);
            // Never more than one extra GOP beyond what is needed.
            assert!(st.buffered < Duration::from_secs(7) + Duration::from_millis(100), "at {i}: {:?}", st.buffered);
        }
        // Oldest frame is always a keyframe.
        assert!(s.iter().next().unwrap().keyframe);
    }
    assert!(s.stats().evicted_gops > 0);
}

#[test]
fn byte_cap_is_hard_and_keeps_gop_boundaries() {
    let mut s = PreRollState::new(Duration::from_secs(60), 2500);
    for i in 0..100 {
        s.push(au(i, 10, 100));
        assert!(s.stats().bytes <= 2500);
        if let Some(f) = s.iter().next() {
            assert!(f.keyframe);
        }
    }
    let st = s.stats();
    assert!(st.evicted_for_cap > 0);
    assert!(st.frames >= 10, "{st:?}");
}

#[test]
fn snapshot_starts_at_keyframe_at_or_before() {
    let mut s = PreRollState::new(Duration::from_secs(60), 1 << 30);
    for i in 0..50 {
        s.push(au(i, 10, 1));
    }
    let (start, frames) = s.snapshot_from(Duration::from_millis(2500)).unwrap();
    assert_eq!(start, 20);
    assert_eq!(frames.first().unwrap().seq, 20);
    assert_eq!(frames.last().unwrap().seq, 49);
    // Older than the buffer: oldest keyframe.
    assert_eq!(s.keyframe_at_or_before(Duration::ZERO), Some(0));
}

#[test]
fn follower_sees_new_frames_and_skips_ahead_when_lagging() {
    let p = Arc::new(PreRoll::new(Duration::from_secs(1), 1 << 30));
    for i in 0..10 {
        p.push(au(i, 5, 1));
    }
    let mut f = p.follow_from_time(Duration::from_millis(700));
    match f.next_blocking(Duration::ZERO) {
        Followed::Frame(fr) => assert_eq!(fr.seq, 5),
        other => panic!("{other:?}"),
    }
    assert!(matches!(f.next_blocking(Duration::from_millis(1)), Followed::Frame(_)));
    // Push far ahead so the follower's position is evicted.
    for i in 10..60 {
        p.push(au(i, 5, 1));
    }
    match f.next_blocking(Duration::ZERO) {
        Followed::Lagged { skipped } => assert!(skipped > 0),
        other => panic!("{other:?}"),
    }
    match f.next_blocking(Duration::ZERO) {
        Followed::Frame(fr) => assert!(fr.keyframe),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn async_follower_wakes_on_push() {
    let p = std::sync::Arc::new(PreRoll::new(Duration::from_secs(1), 1 << 30));
    let p2 = p.clone();
    let h = tokio::spawn(async move {
        let mut f = p2.follow_from_time(Duration::ZERO);
        match f.next().await {
            Followed::Frame(fr) => fr.seq,
            other => panic!("{other:?}"),
        }
    });
    tokio::task::yield_now().await;
    p.push(au(0, 5, 1));
    assert_eq!(h.await.unwrap(), 0);
}

fn aac(ms: u64, size: usize) -> AudioFrame {
    AudioFrame {
        data: Bytes::from(vec![1u8; size]),
        pts: Duration::from_millis(ms),
        duration: Duration::from_micros(21_333),
        format: crate::frame::AudioFormat { config: Bytes::from_static(&[0x11, 0x88]), rate: 48_000, channels: 1 },
    }
}

#[test]
fn sound_is_kept_beside_video_and_counted_against_the_cap() {
    let mut s = PreRollState::new(Duration::from_secs(60), 3000);
    assert!(!s.push_audio(aac(0, 10)), "no sound before the first keyframe");
    for i in 0..40 {
        s.push(au(i, 10, 50));
        // Two AAC frames of 25 bytes per video frame, dated 60 ms behind it (encoder delay).
        s.push_audio(aac((i * 100).saturating_sub(60), 25));
        s.push_audio(aac((i * 100).saturating_sub(10), 25));
        let st = s.stats();
        assert!(st.bytes <= 3000, "{st:?}");
        assert_eq!(st.bytes, st.frames * 50 + st.audio_frames * 25, "{st:?}");
    }
    let st = s.stats();
    assert!(st.evicted_for_cap > 0, "{st:?}");
    assert_eq!(st.audio_frames, 2 * st.frames);
    // Readers of video alone never see sound.
    assert!(s.iter().all(|f| f.data[0] == 0));
    assert_eq!(s.audio().count(), st.audio_frames);
}

#[test]
fn av_follower_starts_with_the_sound_that_arrived_before_its_keyframe() {
    let p = Arc::new(PreRoll::new(Duration::from_secs(60), 1 << 30));
    for i in 0..20 {
        // Sound 40 ms ahead of the video that is pushed after it (a slow video encoder).
        p.push_audio(aac(i * 100 + 40, 1));
        p.push(au(i, 10, 1));
    }
    let mut plain = p.follow_from_time(Duration::from_millis(1000));
    match plain.next_blocking(Duration::ZERO) {
        Followed::Frame(f) => assert_eq!(f.seq, 10),
        other => panic!("{other:?}"),
    }
    let mut av = p.follow_av_from_time(Duration::from_millis(1000), Duration::from_millis(500));
    let mut got = Vec::new();
    while let Followed::Frame(_) | Followed::Audio(_) = {
        let n = av.next_blocking(Duration::ZERO);
        match &n {
            Followed::Frame(f) => got.push(format!("v{}", f.seq)),
            Followed::Audio(a) => got.push(format!("a{}", a.pts.as_millis())),
            _ => {}
        }
        n
    } {}
    // The sound dated 540..940 ms arrived before keyframe 10 (1000 ms); the video before
    // the keyframe is not given.
    assert_eq!(&got[..7], ["a540", "a640", "a740", "a840", "a940", "a1040", "v10"]);
    assert_eq!(got.iter().filter(|g| g.starts_with('v')).count(), 10);
}
