//! The recorder on simulated time: a [`ManualClock`] drives the trigger instant and the wall
//! clock a clip is dated by, frames are pushed into a real pre-roll, and the clip is written by
//! the real writer thread into a temporary storage directory. Must never read the real clock in
//! what it asserts.

use super::*;
use crate::clip_meta::ClipEvent;
use crate::config::StorageConfig;
use crate::frame::EncodedFrame;
use crate::storage::Storage;
use crate::time::{rfc3339_ms, ManualClock};
use std::sync::mpsc;

/// 2027-01-15T08:00:00.000Z: far from the real now, so a real-clock read would show.
const WALL_AT_ZERO: i64 = 1_800_000_000_000 - 100_000;
const FPS: u64 = 10;
const FRAME: Duration = Duration::from_millis(1000 / FPS);

struct Rig {
    clock: Arc<ManualClock>,
    preroll: Arc<PreRoll>,
    status: Arc<CameraStatus>,
    recorder: Recorder,
    events: broadcast::Receiver<ClipEvent>,
    seq: u64,
    _dir: tempfile::TempDir,
}

impl Rig {
    fn new() -> Rig {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = Arc::new(ManualClock::new(Duration::from_secs(100), WALL_AT_ZERO));
        let preroll = Arc::new(PreRoll::new(Duration::from_secs(10), 64 << 20));
        let status = Arc::new(CameraStatus::default());
        let store = Arc::new(ClipStore::new(Storage::new(&StorageConfig {
            path: dir.path().to_path_buf(),
            min_free_percent: 0,
            ..StorageConfig::default()
        })));
        let (tx, events) = broadcast::channel(16);
        let input = RecorderInput {
            camera: "sim".into(),
            limits: Limits {
                pre: Duration::from_secs(1),
                post: Duration::from_secs(1),
                max_clip: Duration::from_secs(10),
            },
            bitrate_kbps: 100,
            preroll: preroll.clone(),
            status: status.clone(),
            phone: false,
            clock: clock.clone(),
        };
        Rig { recorder: Recorder::new(input, store, tx), clock, preroll, status, events, seq: 0, _dir: dir }
    }

    /// One frame captured now (a keyframe every second), then the clock moves one frame on.
    fn frame(&mut self) {
        let keyframe = self.seq % FPS == 0;
        let data = if keyframe {
            crate::mp4::tests::synthetic_keyframe()
        } else {
            vec![0, 0, 0, 1, 0x09, 0x30, 0, 0, 1, 0x41, 0x9a, 0x02]
        };
        let pts = self.clock.mono();
        self.preroll.push(EncodedFrame { data: data.into(), pts, dts: pts, duration: FRAME, keyframe, seq: self.seq });
        self.seq += 1;
        self.clock.advance(FRAME);
    }

    /// The next saved clip (or failure), waited for as an event.
    fn saved(&mut self) -> ClipMeta {
        let (tx, rx) = mpsc::channel();
        let mut events = self.events.resubscribe();
        std::thread::spawn(move || loop {
            match events.blocking_recv() {
                Ok(ClipEvent::Saved(m)) => break drop(tx.send(Ok(*m))),
                Ok(ClipEvent::Failed { error, .. }) => break drop(tx.send(Err(error))),
                Ok(ClipEvent::Recording { .. }) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            }
        });
        rx.recv_timeout(Duration::from_secs(60)).expect("a clip event").expect("clip saved")
    }
}

#[test]
fn a_trigger_on_simulated_time_dates_and_cuts_the_clip_by_the_injected_clock() {
    let mut rig = Rig::new();
    for _ in 0..25 {
        rig.frame();
    }
    // T = 102.5 s on the simulated monotonic clock: pre-roll from 101.5 s, post-roll to 103.5 s.
    let t = rig.clock.mono();
    assert_eq!(t, Duration::from_millis(102_500));
    let acc = rig.recorder.trigger(&TriggerRequest::default()).expect("accepted");
    assert!(!acc.extended);
    assert_eq!(acc.pre_s_actual, 1.0);
    // The clip id is made from the simulated wall clock (2027-01-15), not the real one.
    assert!(acc.clip_id.starts_with("20270115T080002500Z-"), "{}", acc.clip_id);
    assert!(rig.recorder.recording());
    assert!(rig.status.force_keyframe.load(std::sync::atomic::Ordering::Relaxed), "asks for a keyframe");
    // The post-roll: frames up to and past T + post, then the writer closes the clip.
    for _ in 0..12 {
        rig.frame();
    }
    let meta = rig.saved();
    assert_eq!(meta.id, acc.clip_id);
    assert_eq!(meta.trigger_at, rfc3339_ms(WALL_AT_ZERO + 102_500));
    // The first presented frame is the one at T − pre = 101.5 s (the GOP starts at 101.0 s).
    assert_eq!(meta.start_at, rfc3339_ms(WALL_AT_ZERO + 101_500));
    assert_eq!(meta.path, format!("clips/sim/2027-01-15/{}.mp4", meta.id));
    assert_eq!(meta.duration_s, 2.0);
    assert_eq!(meta.pre_s_actual, 1.0);
    // 101.0 .. 103.4: the lead-in GOP from the keyframe at 101.0 s, then up to the end.
    assert_eq!(meta.frames, 25);
    assert!(!rig.recorder.recording());
}

#[test]
fn a_stopped_camera_refuses_triggers_and_manual_recording() {
    let mut rig = Rig::new();
    rig.frame();
    rig.status.set_stopped();
    let e = rig.recorder.trigger(&TriggerRequest::default()).unwrap_err();
    assert_eq!(e.code, RejectCode::CameraStopped);
    let e = rig.recorder.record_start().unwrap_err();
    assert_eq!(e.code, RejectCode::CameraStopped);
    assert!(!rig.recorder.recording());
}

#[test]
fn a_trigger_flood_extends_one_clip_with_one_keyframe_and_bounded_ids() {
    use std::sync::atomic::Ordering;
    let mut rig = Rig::new();
    for _ in 0..25 {
        rig.frame();
    }
    let first = rig.recorder.trigger(&TriggerRequest::default()).expect("opens");
    assert!(rig.status.force_keyframe.swap(false, Ordering::SeqCst), "a new clip asks for a keyframe");
    // The encoder took the request; now a flood within the same instant.
    for _ in 0..500 {
        let acc = rig.recorder.trigger(&TriggerRequest::default()).expect("extends");
        assert!(acc.extended);
        assert_eq!(acc.clip_id, first.clip_id);
    }
    assert!(!rig.status.force_keyframe.load(Ordering::SeqCst), "extending triggers ask for no keyframe");
    for _ in 0..12 {
        rig.frame();
    }
    let meta = rig.saved();
    assert_eq!(meta.id, first.clip_id);
    assert_eq!(meta.trigger_count, 501);
    assert_eq!(meta.trigger_ids.len(), crate::clip_meta::MAX_TRIGGER_IDS);
    assert_eq!(meta.trigger_ids[0], first.trigger_id, "the first trigger is kept");
}
