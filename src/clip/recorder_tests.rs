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
/// A P frame (AUD + slice): no parameter sets.
const P_FRAME: [u8; 12] = [0, 0, 0, 1, 0x09, 0x30, 0, 0, 1, 0x41, 0x9a, 0x02];

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
        Rig::with_storage(|s| s)
    }

    /// A rig whose storage is `storage` applied to the plain one (to inject faults).
    fn with_storage(storage: impl FnOnce(Storage) -> Storage) -> Rig {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = Arc::new(ManualClock::new(Duration::from_secs(100), WALL_AT_ZERO));
        let preroll = Arc::new(PreRoll::new(Duration::from_secs(10), 64 << 20));
        let status = Arc::new(CameraStatus::default());
        let store = Arc::new(ClipStore::new(storage(Storage::new(&StorageConfig {
            path: dir.path().to_path_buf(),
            min_free_percent: 0,
            ..StorageConfig::default()
        }))));
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
        let data = if keyframe { crate::mp4::tests::synthetic_keyframe() } else { P_FRAME.to_vec() };
        self.frame_of(data, keyframe);
    }

    /// Frame `data` captured now, then the clock moves one frame on.
    fn frame_of(&mut self, data: Vec<u8>, keyframe: bool) {
        let pts = self.clock.mono();
        self.preroll.push(EncodedFrame { data: data.into(), pts, dts: pts, duration: FRAME, keyframe, seq: self.seq });
        self.seq += 1;
        self.clock.advance(FRAME);
    }

    /// The next saved clip (or failure), waited for as an event.
    fn saved(&mut self) -> ClipMeta {
        self.outcome().expect("clip saved")
    }

    /// The next clip event that ends a clip: saved, or failed (`(clip id, error)`). Reads the
    /// rig's own receiver (on a thread, so the wait has a deadline), which holds every event.
    fn outcome(&mut self) -> Result<ClipMeta, (String, String)> {
        let placeholder = self.events.resubscribe();
        let mut events = std::mem::replace(&mut self.events, placeholder);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let r = loop {
                match events.blocking_recv() {
                    Ok(ClipEvent::Saved(m)) => break Some(Ok(*m)),
                    Ok(ClipEvent::Failed { clip_id, error, .. }) => break Some(Err((clip_id, error))),
                    Ok(ClipEvent::Recording { .. } | ClipEvent::Exported { .. } | ClipEvent::Alert { .. })
                    | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break None,
                }
            };
            let _ = tx.send((r, events));
        });
        let (r, events) = rx.recv_timeout(Duration::from_secs(60)).expect("a clip event");
        self.events = events;
        r.expect("events closed")
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

#[test]
fn a_write_error_mid_clip_closes_it_as_failed_and_the_next_clip_waits_for_working_storage() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let failing = Arc::new(AtomicBool::new(false));
    let f = failing.clone();
    let mut rig = Rig::with_storage(move |s| {
        s.with_write_fault(move |_| {
            f.load(Ordering::SeqCst).then(|| std::io::Error::from_raw_os_error(nix::libc::ENOSPC))
        })
    });
    for _ in 0..25 {
        rig.frame();
    }
    let first = rig.recorder.trigger(&TriggerRequest::default()).expect("opens");
    // The first fragment (the GOP from 101.0 s) is written when the keyframe at 103.0 s arrives.
    for _ in 0..6 {
        rig.frame();
    }
    let part = rig._dir.path().join(format!("clips/sim/2027-01-15/{}.mp4.part", first.clip_id));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::fs::metadata(&part).map_or(0, |m| m.len()) < 1000 {
        assert!(std::time::Instant::now() < deadline, "the first fragment was never written to {part:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    // A second trigger extends the clip to 108.0 s; then the disk fails mid-clip: the next
    // fragment (at the keyframe at 104.0 s, the clip still open) cannot be written.
    let ext = rig.recorder.trigger(&TriggerRequest { post_s: Some(5.0), ..Default::default() }).expect("extends");
    assert!(ext.extended && ext.clip_id == first.clip_id);
    failing.store(true, Ordering::SeqCst);
    for _ in 0..11 {
        rig.frame();
    }
    let (failed_id, error) = rig.outcome().expect_err("the clip fails");
    assert_eq!(failed_id, first.clip_id);
    assert!(error.contains(&first.clip_id), "{error}");
    assert!(!rig.recorder.recording(), "the failed clip is closed");
    assert!(!part.exists() && !part.with_extension("").with_extension("json").exists(), "partial files removed");
    // While storage still fails, triggers and record/start are refused: never extended onto the
    // dead clip, never promised a clip that will not exist.
    let e = rig.recorder.trigger(&TriggerRequest::default()).expect_err("refused while storage fails");
    assert_eq!(e.code, RejectCode::StorageError, "{e:?}");
    let e = rig.recorder.record_start().expect_err("refused while storage fails");
    assert_eq!(e.code, RejectCode::StorageError, "{e:?}");
    assert!(!rig.recorder.recording());
    // Storage works again: the next trigger opens a new clip, and it is saved.
    failing.store(false, Ordering::SeqCst);
    let next = rig.recorder.trigger(&TriggerRequest::default()).expect("a new clip once storage works");
    assert!(!next.extended);
    assert_ne!(next.clip_id, first.clip_id);
    for _ in 0..25 {
        rig.frame();
    }
    let meta = rig.outcome().expect("the new clip is saved");
    assert_eq!(meta.id, next.clip_id);
    let index = rig.recorder.shared.store.index().expect("index");
    assert!(index.get(&first.clip_id).expect("index").is_none(), "the failed clip is not indexed");
    assert!(index.get(&next.clip_id).expect("index").is_some());
}

#[test]
fn recording_stays_true_until_the_closed_clip_is_indexed() {
    // The post-roll closes the clip to triggers before its writer has finalized the file, made
    // the poster and indexed it. Whoever waits for `recording` to turn false (the soak, a user
    // listing clips after the camera went idle) must then find the clip in the index.
    let mut rig = Rig::new();
    for _ in 0..25 {
        rig.frame();
    }
    let acc = rig.recorder.trigger(&TriggerRequest::default()).expect("accepted");
    for _ in 0..12 {
        rig.frame();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while rig.recorder.recording() {
        assert!(std::time::Instant::now() < deadline, "the clip never finished");
        std::thread::yield_now();
    }
    let index = rig.recorder.shared.store.index().expect("index");
    assert!(
        index.get(&acc.clip_id).expect("index read").is_some(),
        "not recording, yet clip {} is not indexed",
        acc.clip_id
    );
    assert_eq!(rig.saved().id, acc.clip_id);
}

#[test]
fn frames_lost_just_before_the_end_do_not_stretch_the_clip_past_it() {
    let mut rig = Rig::new();
    for _ in 0..25 {
        rig.frame();
    }
    // T = 102.5 s: the clip ends at 103.5 s.
    rig.recorder.trigger(&TriggerRequest::default()).expect("accepted");
    for _ in 0..9 {
        rig.frame(); // 102.5 .. 103.3
    }
    // The camera's frames at 103.4 and 103.5 never arrive (a network gap); the next is 103.6.
    rig.clock.advance(FRAME * 2);
    rig.seq += 2;
    for _ in 0..3 {
        rig.frame();
    }
    let meta = rig.saved();
    // 101.5 .. 103.4: the last frame (103.3) lasts its own 0.1 s, not up to 103.6.
    assert_eq!(meta.duration_s, 1.9, "the clip ends with its last frame, not at the late one after it");
}

#[test]
fn a_new_stream_format_mid_clip_ends_the_clip_and_continues_in_a_new_one() {
    // The new stream's keyframe is made first: encoding it may take seconds under emulation, and
    // a clip without frames for its end + 1 s would be cut meanwhile.
    let other = crate::mp4::tests::one_keyframe("I420", 480, 272, "", "profile=main");
    assert_eq!(crate::mp4::h264::dimensions(&other), Some((480, 272)));
    let mut rig = Rig::new();
    for _ in 0..25 {
        rig.frame();
    }
    // T = 102.5 s: the clip covers 101.5 .. 103.5 s.
    let acc = rig.recorder.trigger(&TriggerRequest::default()).expect("accepted");
    for _ in 0..3 {
        rig.frame(); // 102.5 .. 102.7
    }
    // The camera comes back after 0.2 s at another size: a keyframe with other SPS/PPS at 103.0.
    rig.clock.advance(FRAME * 2);
    rig.seq += 2;
    rig.frame_of(other, true);
    for _ in 0..6 {
        rig.frame_of(P_FRAME.to_vec(), false); // 103.1 .. 103.6
    }
    // The two parts are finished by two writers at once: either may be announced first.
    let (a, b) = (rig.saved(), rig.saved());
    let (first, next) = if a.id == acc.clip_id { (a, b) } else { (b, a) };
    assert_eq!(first.id, acc.clip_id);
    assert_eq!((first.start_at.as_str(), first.duration_s), (rfc3339_ms(WALL_AT_ZERO + 101_500).as_str(), 1.3));
    assert_eq!(first.frames, 18, "101.0 .. 102.7: nothing of the new stream");
    assert_eq!(first.continues, None);
    assert_eq!(next.continues.as_deref(), Some(acc.clip_id.as_str()), "names the clip it continues");
    assert_ne!(next.id, acc.clip_id);
    assert_eq!(next.start_at, rfc3339_ms(WALL_AT_ZERO + 103_000), "starts at the new stream's keyframe");
    assert_eq!((next.duration_s, next.frames, next.pre_s_actual), (0.5, 5, 0.0));
    assert_eq!(next.trigger_ids, first.trigger_ids, "the trigger that made the clip is on both parts");
    assert!(!rig.recorder.recording());
    // Both parts are in the index, and the continuation's file holds the new size.
    let index = rig.recorder.shared.store.index().expect("index");
    assert!(index.get(&first.id).expect("read").is_some() && index.get(&next.id).expect("read").is_some());
    let path = rig._dir.path().join(&next.path);
    let file = std::fs::read(&path).expect("continuation file");
    // The sample entry follows `stsd`'s header, version, flags and entry count.
    let avc1 = file.windows(4).position(|w| w == b"stsd").expect("an stsd box") - 4 + 16;
    assert_eq!(&file[avc1 + 4..avc1 + 8], b"avc1");
    let size = |at: usize| u16::from_be_bytes([file[at], file[at + 1]]);
    assert_eq!((size(avc1 + 32), size(avc1 + 34)), (480, 272), "avc1 width and height from the new SPS");
}
