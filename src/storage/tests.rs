//! Tests of [`crate::storage`] with real sled databases in temporary directories.

use super::*;
use crate::config::ByteSize;
use crate::index::tests::clip;
use std::collections::HashMap;

const T0: i64 = 1_795_000_000_000;

fn setup(max_bytes: u64, retention_days: u32) -> (tempfile::TempDir, Storage, Index) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StorageConfig {
        path: dir.path().join("data"),
        max_bytes: ByteSize(max_bytes),
        min_free_percent: 10,
        retention_days,
        require_mount: false,
    };
    let index = Index::open(&dir.path().join("index")).unwrap();
    // Plenty of free space unless a test says otherwise.
    let s = Storage::new(&cfg).with_fs_stats_override(|_| Some(FsStats::new(1000, 900)));
    (dir, s, index)
}

/// Index a clip and write its file (and poster) under the root.
fn add(s: &Storage, idx: &Index, ms: i64, size: u64, pinned: bool) -> ClipMeta {
    let mut c = clip(ms, "front", None, size);
    c.pinned = pinned;
    let path = s.abs(&c.path).unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, vec![0u8; size as usize]).unwrap();
    std::fs::write(path.with_extension("jpg"), b"jpg").unwrap();
    idx.insert(&c).unwrap();
    c
}

fn reasons(plan: &[PlannedDeletion]) -> Vec<(&str, DeletionReason)> {
    plan.iter().map(|p| (p.clip.id.as_str(), p.reason)).collect()
}

#[test]
fn paths() {
    let (_d, s, _i) = setup(1 << 30, 0);
    assert_eq!(
        crate::clip_meta::clip_rel_path("front", "20261122T012301123Z-00a3f1", 1_795_000_000_000),
        "clips/front/2026-11-18/20261122T012301123Z-00a3f1.mp4"
    );
    for bad in ["../x", "/etc/passwd", "clips/../../x", "", ".", "a/../b"] {
        assert_eq!(s.abs(bad), None, "{bad}");
    }
    assert_eq!(s.abs("clips/a/b.mp4"), Some(s.root().join("clips/a/b.mp4")));
    assert!(is_mount_point(Path::new("/")).unwrap());
    assert!(statvfs_stats(Path::new("/no/such/dir/here")).is_some_and(|f| f.total_bytes > 0));
}

#[test]
fn plan_by_age() {
    let (_d, s, idx) = setup(1 << 30, 2);
    let old = add(&s, &idx, T0, 10, false);
    let _pinned_old = add(&s, &idx, T0 + 1, 10, true);
    let _young = add(&s, &idx, T0 + 2 * DAY_MS, 10, false);
    let plan = s.cleanup_plan(&idx, 0, T0 + 3 * DAY_MS).unwrap();
    assert_eq!(reasons(&plan), [(old.id.as_str(), DeletionReason::Age)]);
    let r = s.apply_cleanup(&idx, &plan).unwrap();
    assert_eq!(r.deleted, vec![old.clone()]);
    assert_eq!(r.freed_bytes, 13, "clip and poster");
    assert!(!s.abs(&old.path).unwrap().exists());
    assert_eq!(idx.len(), 2);
}

/// A board without an RTC, clock in 1970: no clip is deleted by age (their ages are unknown),
/// while size retention still works; once NTP sets the clock, the clips dated 1970 are not
/// "56 years old" either — only clips dated on a set clock age out.
#[test]
fn no_age_retention_on_a_clock_before_the_floor() {
    let (_d, s, idx) = setup(100, 2);
    let early = add(&s, &idx, 10 * DAY_MS, 40, false);
    let later = add(&s, &idx, 11 * DAY_MS, 40, false);
    let now = 20 * DAY_MS;
    assert!(s.cleanup_plan(&idx, 0, now).unwrap().is_empty(), "deleted by age on a 1970 clock");
    // 80 + 30 > 100: the oldest goes by size all the same.
    assert_eq!(reasons(&s.cleanup_plan(&idx, 30, now).unwrap()), [(early.id.as_str(), DeletionReason::Size)]);
    // NTP sync: now T0; a clip recorded since then ages out, the 1970-dated ones do not.
    let synced = add(&s, &idx, T0, 10, false);
    let plan = s.cleanup_plan(&idx, 0, T0 + 3 * DAY_MS).unwrap();
    assert_eq!(reasons(&plan), [(synced.id.as_str(), DeletionReason::Age)]);
    assert!(idx.get(&later.id).unwrap().is_some());
}

/// A clip dated in the future (recorded while the clock ran ahead) is not old: it is never
/// deleted by age, and does not stop older, truly dated clips from ageing out.
#[test]
fn a_future_dated_clip_is_not_deleted_by_age() {
    let (_d, s, idx) = setup(1 << 30, 2);
    let old = add(&s, &idx, T0, 10, false);
    let _future = add(&s, &idx, T0 + 400 * DAY_MS, 10, false);
    let plan = s.cleanup_plan(&idx, 0, T0 + 3 * DAY_MS).unwrap();
    assert_eq!(reasons(&plan), [(old.id.as_str(), DeletionReason::Age)]);
    assert!(age_known(T0, T0) && age_known(T0 + FUTURE_SLACK_MS, T0));
    assert!(!age_known(T0 + FUTURE_SLACK_MS + 1, T0) && !age_known(crate::time::WALL_CLOCK_FLOOR_MS - 1, T0));
}

#[test]
fn plan_by_size_oldest_first_pinned_kept() {
    let (_d, s, idx) = setup(100, 0);
    let a = add(&s, &idx, T0, 20, true);
    let b = add(&s, &idx, T0 + 1000, 20, false);
    let c = add(&s, &idx, T0 + 2000, 20, false);
    let _d2 = add(&s, &idx, T0 + 3000, 20, false);
    assert!(s.cleanup_plan(&idx, 20, T0).unwrap().is_empty(), "80 + 20 fits in 100");
    // 80 + 50 > 100: delete b (110 left), then c (90); the pinned oldest stays.
    let plan = s.cleanup_plan(&idx, 50, T0).unwrap();
    assert_eq!(reasons(&plan), [(b.id.as_str(), DeletionReason::Size), (c.id.as_str(), DeletionReason::Size)]);
    let r = s.make_room(&idx, 50, T0).unwrap();
    assert_eq!(r.deleted.len(), 2);
    assert!(idx.get(&a.id).unwrap().is_some());
    assert_eq!(idx.len(), 2);
}

#[test]
fn plan_by_free_space() {
    let (_d, s, idx) = setup(1 << 30, 0);
    let s = s.with_fs_stats_override(|_| Some(FsStats::new(1000, 120)));
    let a = add(&s, &idx, T0, 20, false);
    let _p = add(&s, &idx, T0 + 1, 500, true);
    let b = add(&s, &idx, T0 + 2, 20, false);
    let _c = add(&s, &idx, T0 + 3, 20, false);
    // Reserve 100: free 120 - incoming 50 = 70 -> delete a (90), b (110), then 110 >= 100.
    let plan = s.cleanup_plan(&idx, 50, T0).unwrap();
    assert_eq!(
        reasons(&plan),
        [(a.id.as_str(), DeletionReason::FreeSpace), (b.id.as_str(), DeletionReason::FreeSpace)]
    );
    let u = s.usage(&idx).unwrap();
    assert_eq!((u.clips, u.clip_bytes, u.pinned, u.free_bytes), (4, 560, 1, Some(120)));
    assert!(!u.mounted);
}

#[test]
fn make_room_full_when_only_pinned_remain() {
    let (_d, s, idx) = setup(100, 0);
    add(&s, &idx, T0, 80, true);
    let e = add(&s, &idx, T0 + 1, 10, false);
    match s.make_room(&idx, 30, T0) {
        Err(StorageError::Full { needed: 30, free: 20 }) => {}
        other => panic!("{other:?}"),
    }
    assert!(idx.get(&e.id).unwrap().is_none(), "unpinned clip was still deleted");
    // Free space: reserve 100 of 1000, 50 free, pinned clips only.
    let s = s.with_fs_stats_override(|_| Some(FsStats::new(1000, 50)));
    match s.make_room(&idx, 10, T0) {
        Err(StorageError::Full { needed: 110, free: 50 }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(idx.len(), 1);
}

#[test]
fn delete_clip_removes_file_poster_entry() {
    let (_d, s, idx) = setup(1 << 30, 0);
    let c = add(&s, &idx, T0, 5, false);
    let path = s.abs(&c.path).unwrap();
    assert_eq!(s.delete_clip(&idx, &c.id).unwrap(), Some(c.clone()));
    assert!(!path.exists() && !path.with_extension("jpg").exists());
    assert_eq!(s.delete_clip(&idx, &c.id).unwrap(), None);
    assert_eq!(s.delete_clip(&idx, "../etc").unwrap(), None);
    let mut evil = clip(T0 + 5, "front", None, 1);
    evil.path = "../outside.mp4".into();
    idx.insert(&evil).unwrap();
    assert!(matches!(s.delete_clip(&idx, &evil.id), Err(StorageError::UnsafePath(_))));
}

#[test]
fn require_mount() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StorageConfig { path: dir.path().to_path_buf(), require_mount: true, ..StorageConfig::default() };
    let s = Storage::new(&cfg);
    assert!(matches!(s.check_writable(), Err(StorageError::MountMissing(_))));
    cfg.path = dir.path().join("usb");
    let s = Storage::new(&cfg);
    assert!(matches!(s.check_writable(), Err(StorageError::MountMissing(_))));
    assert!(!cfg.path.exists(), "root must not be created");
    let idx = Index::open(&dir.path().join("index")).unwrap();
    assert!(matches!(s.make_room(&idx, 1, T0), Err(StorageError::MountMissing(_))));
    cfg.require_mount = false;
    Storage::new(&cfg).check_writable().unwrap();
    assert!(cfg.path.is_dir(), "created without require_mount");
}

/// One clip that cannot be deleted (here its path is a non-empty directory, as a corrupted or
/// foreign entry would be) is skipped and reported; retention deletes the next one instead, and
/// the new clip gets its room.
#[test]
fn an_undeletable_clip_is_skipped_and_the_next_one_deleted() {
    let (_d, s, idx) = setup(100, 0);
    let stuck = add(&s, &idx, T0, 40, false);
    let next = add(&s, &idx, T0 + 1, 40, false);
    let young = add(&s, &idx, T0 + 2, 10, false);
    let path = s.abs(&stuck.path).unwrap();
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir_all(path.join("x")).unwrap();
    // 90 bytes kept + 30 incoming > 100: one 40-byte clip must go.
    let report = s.make_room(&idx, 30, T0 + 3).expect("room made past the stuck clip");
    assert_eq!(report.deleted.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), [next.id.as_str()]);
    assert_eq!(report.failed.len(), 1, "{:?}", report.failed);
    assert_eq!(report.failed[0].0, stuck.id);
    assert!(idx.get(&stuck.id).unwrap().is_some(), "the stuck clip keeps its entry (its file is still there)");
    assert!(idx.get(&young.id).unwrap().is_some());
    // And again: the stuck clip does not head every plan into a failure.
    assert!(s.make_room(&idx, 10, T0 + 4).is_ok());
}

#[test]
fn uploads_and_quarantine_count_toward_max_bytes() {
    let (_d, s, idx) = setup(100, 0);
    let a = add(&s, &idx, T0, 20, false);
    let b = add(&s, &idx, T0 + 1000, 20, false);
    assert!(s.cleanup_plan(&idx, 0, T0).unwrap().is_empty(), "40 of 100");
    // An upload in progress and a quarantined file: 40 + 30 + 20 = 90, and 20 incoming.
    std::fs::create_dir_all(s.root().join("uploads")).unwrap();
    std::fs::write(s.root().join("uploads/0123456789abcdef.bin"), [0u8; 30]).unwrap();
    std::fs::create_dir_all(s.root().join("quarantine")).unwrap();
    std::fs::write(s.root().join("quarantine/x.mp4.part"), [0u8; 20]).unwrap();
    let u = s.usage(&idx).unwrap();
    assert_eq!((u.clip_bytes, u.upload_bytes, u.quarantine_bytes), (40, 30, 20));
    let plan = s.cleanup_plan(&idx, 20, T0).unwrap();
    assert_eq!(reasons(&plan), [(a.id.as_str(), DeletionReason::Size)]);
    s.make_room(&idx, 20, T0).unwrap();
    assert!(idx.get(&a.id).unwrap().is_none() && idx.get(&b.id).unwrap().is_some());
    // 51 more: b goes, and 50 (uploads, quarantine) + 51 is still over 100.
    assert!(matches!(s.make_room(&idx, 51, T0), Err(StorageError::Full { .. })));
    assert_eq!(idx.len(), 0);
}

/// Bytes of the files under `dir`, at any depth.
fn tree_bytes(dir: &std::path::Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else { return 0 };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => tree_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Index a recording segment of `camera` and write its file.
fn add_segment(s: &Storage, idx: &Index, camera: &str, ms: i64, bytes: u64) -> crate::segment_meta::SegmentMeta {
    let seg = crate::segment_meta::SegmentMeta {
        camera: camera.into(),
        start_ms: ms,
        end_ms: ms + 60_000,
        path: crate::segment_meta::segment_rel_path(camera, ms),
        bytes,
        init_bytes: 1,
        frames: 1,
        sound: false,
        gap_before: None,
    };
    let path = s.abs(&seg.path).unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, vec![0u8; bytes as usize]).unwrap();
    idx.insert_segment(&seg).unwrap();
    seg
}

#[test]
fn recordings_give_way_before_clips_and_each_cameras_newest_stays() {
    let (_d, s, idx) = setup(1 << 30, 0);
    // A 1000-byte filesystem whose free space is what the storage directory leaves of 181.
    let s = s.with_fs_stats_override(|root| Some(FsStats::new(1000, 181u64.saturating_sub(tree_bytes(root)))));
    let a = add(&s, &idx, T0, 20, false);
    let b = add(&s, &idx, T0 + 1, 20, false);
    let s1 = add_segment(&s, &idx, "cam0", T0 - 120_000, 10);
    let s2 = add_segment(&s, &idx, "cam0", T0 - 60_000, 10);
    let s3 = add_segment(&s, &idx, "cam0", T0, 10);
    // 76 bytes stored: 105 free. Clips keep 10 % (100) free, recordings 11 % (110).
    assert_eq!(s.fs_stats().unwrap().free_bytes, 105);
    let r = s.make_room(&idx, 0, T0).unwrap();
    let gone: Vec<(i64, DeletionReason)> =
        r.recordings_deleted.iter().map(|p| (p.segment.start_ms, p.reason)).collect();
    assert_eq!(gone, [(s1.start_ms, DeletionReason::FreeSpace)], "the oldest recording made room");
    assert!(r.deleted.is_empty(), "no clip: {:?}", r.deleted);
    assert_eq!(r.recordings_freed_bytes, 10);
    assert!(!s.abs(&s1.path).unwrap().exists());

    // 30 bytes coming: the recordings go first down to each camera's newest, then a clip.
    let r = s.make_room(&idx, 30, T0).unwrap();
    let gone: Vec<i64> = r.recordings_deleted.iter().map(|p| p.segment.start_ms).collect();
    assert_eq!(gone, [s2.start_ms]);
    assert_eq!(r.deleted.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), [a.id.as_str()]);
    assert!(idx.get(&b.id).unwrap().is_some());
    let left: Vec<i64> = idx.all_segments().unwrap().iter().map(|g| g.start_ms).collect();
    assert_eq!(left, [s3.start_ms], "the camera's newest segment stays");

    // Per-camera limits: age (with a trusted clock) and size.
    let old = add_segment(&s, &idx, "cam1", T0 - 9 * 86_400_000, 10);
    let mid = add_segment(&s, &idx, "cam1", T0 - 3_600_000, 50);
    let _new = add_segment(&s, &idx, "cam1", T0, 50);
    let limits = HashMap::from([("cam1".to_string(), RecordingLimits { retention_days: 7, max_bytes: Some(60) })]);
    let s = s.with_fs_stats_override(|_| Some(FsStats::new(1000, 900)));
    let plan = s.recordings_plan(&idx, &limits, 0, T0).unwrap();
    let why: Vec<(i64, DeletionReason)> = plan.iter().map(|p| (p.segment.start_ms, p.reason)).collect();
    assert_eq!(why, [(old.start_ms, DeletionReason::Age), (mid.start_ms, DeletionReason::Size)]);
}

#[test]
fn clips_waiting_for_their_export_are_kept_by_age_and_go_last_for_room() {
    let (_d, s, idx) = setup(100, 2);
    let now = T0 + 10 * DAY_MS;
    let waiting = add(&s, &idx, T0, 20, false);
    let b = add(&s, &idx, T0 + 1000, 20, false);
    let c = add(&s, &idx, now - 1000, 20, false);
    let _e = add(&s, &idx, now - 500, 20, false);
    idx.export_put(&waiting.id, b"{}", true).unwrap();
    // By age: b only (the waiting clip is as old, but not yet exported).
    let plan = s.cleanup_plan(&idx, 0, now).unwrap();
    assert_eq!(reasons(&plan), [(b.id.as_str(), DeletionReason::Age)]);
    // For room: the others first, oldest first, the waiting clip last.
    let plan = s.cleanup_plan(&idx, 50, now).unwrap();
    let ids: Vec<&str> = plan.iter().map(|p| p.clip.id.as_str()).collect();
    assert_eq!(ids, [b.id.as_str(), c.id.as_str()], "60 + 50 > 100 after b: c, not the older waiting one");
    let plan = s.cleanup_plan(&idx, 100, now).unwrap();
    assert_eq!(plan.len(), 4, "the disk filling up still wins");
    assert_eq!(plan.iter().find(|p| p.clip.id == waiting.id).map(|p| p.reason), Some(DeletionReason::Size));
    // Exported: an ordinary clip again; a deleted clip takes its export entry with it.
    idx.export_put(&waiting.id, b"{}", false).unwrap();
    let plan = s.cleanup_plan(&idx, 0, now).unwrap();
    assert_eq!(plan.len(), 2, "both old clips go by age now");
    assert!(s.delete_clip(&idx, &waiting.id).unwrap().is_some());
    assert_eq!(idx.export_get(&waiting.id).unwrap(), None);
    assert!(idx.export_pending_ids().unwrap().is_empty());
}
