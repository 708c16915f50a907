//! Unit tests of the MJPEG preview: the rate limit on the capture clock, and viewer
//! counting, bounding and release.

use super::*;

fn work() -> Work {
    Work::new()
}

/// Frames of a `src` fps source over 3 s, limited to `fps`.
fn passed(src: u32, fps: u32) -> usize {
    let mut w = work();
    let period = Duration::from_secs_f64(1.0 / fps as f64);
    (0..src * 3).filter(|i| w.due(Duration::from_secs_f64(*i as f64 / src as f64), period)).count()
}

#[test]
fn rate_limit_hits_the_preview_rate() {
    assert_eq!(passed(30, 10), 30);
    assert_eq!(passed(15, 10), 30, "15 → 10 fps, not 7.5");
    assert_eq!(passed(25, 10), 30);
    assert_eq!(passed(5, 10), 15, "slower sources pass every frame");
    assert_eq!(passed(30, 30), 90);
}

#[test]
fn a_gap_restarts_the_schedule() {
    let mut w = work();
    let p = Duration::from_millis(100);
    assert!(w.due(Duration::from_secs(1), p));
    assert!(w.due(Duration::from_secs(10), p), "after a gap the next frame goes out");
    assert!(!w.due(Duration::from_millis(10_050), p));
    assert!(w.due(Duration::from_millis(10_100), p));
}

#[test]
fn a_clock_going_back_restarts_the_schedule() {
    let mut w = work();
    let p = Duration::from_millis(100);
    assert!(w.due(Duration::from_secs(10), p));
    assert!(w.due(Duration::from_secs(3), p), "a reopened source with an earlier clock is not starved");
    assert!(!w.due(Duration::from_millis(3_050), p));
    assert!(w.due(Duration::from_millis(3_100), p));
}

#[test]
fn fast_sources_never_trip_the_restart() {
    for src in [60u32, 120, 240] {
        // 3 s at 10 fps, ± the fencepost the quarter-period tolerance allows.
        let n = passed(src, 10);
        assert!((30..=31).contains(&n), "{src} fps → {n} frames in 3 s, not 10 fps");
    }
}

#[tokio::test]
async fn viewers_are_counted_and_bounded_and_released() {
    let status = Arc::new(CameraStatus::default());
    let tap = Arc::new(FrameTap::default());
    let settings = PreviewSettings { width: 64, fps: 10, encoder: "jpegenc".into(), substream: None };
    let preroll = Arc::new(crate::preroll::PreRoll::new(Duration::from_secs(1), 1 << 20));
    let p = Preview::new("t", settings, tap.clone(), preroll, status);
    let mut vs: Vec<Viewer> = (0..MAX_VIEWERS).map(|_| p.watch().unwrap()).collect();
    assert_eq!(p.stats().viewers, MAX_VIEWERS);
    assert!(tap.wanted(), "a viewer turns the tap on");
    assert!(matches!(p.watch(), Err(PreviewError::TooManyViewers { .. })));
    vs.truncate(1);
    assert_eq!(p.stats().viewers, 1);
    p.close();
    assert!(vs[0].next().await.is_none(), "close ends streams");
    drop(vs);
    assert_eq!(p.stats().viewers, 0);
    assert!(matches!(p.watch(), Err(PreviewError::Closed(_))));
}
