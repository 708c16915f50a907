//! Tests of [`crate::index`] with real sled databases in temporary directories.

use super::*;
use crate::clip_meta::{new_clip_id, ClipSource};
use crate::time::rfc3339_ms;

/// A clip starting at `ms`, with an id made at `ms`.
pub(crate) fn clip(ms: i64, camera: &str, label: Option<&str>, size: u64) -> ClipMeta {
    let id = new_clip_id(ms);
    ClipMeta {
        path: crate::clip_meta::clip_rel_path(camera, &id, ms),
        id,
        camera: camera.into(),
        label: label.map(Into::into),
        trigger_id: None,
        trigger_ids: vec![],
        trigger_count: 0,
        trigger_at: rfc3339_ms(ms),
        start_at: rfc3339_ms(ms),
        end_at: rfc3339_ms(ms + 60_000),
        start_ms: ms,
        duration_s: 60.0,
        pre_s_actual: 30.0,
        size_bytes: size,
        frames: 1800,
        source: ClipSource::Trigger,
        pinned: false,
        partial: false,
        device: None,
        continues: None,
        remote_only: false,
    }
}

const T0: i64 = 1_795_000_000_000;

fn ids(p: &ClipPage) -> Vec<&str> {
    p.clips.iter().map(|m| m.id.as_str()).collect()
}

fn query(f: impl FnOnce(&mut ClipQuery)) -> ClipQuery {
    let mut q = ClipQuery::default();
    f(&mut q);
    q
}

#[test]
fn insert_get_remove_pin() {
    let dir = tempfile::tempdir().unwrap();
    let idx = Index::open(dir.path()).unwrap();
    let a = clip(T0, "front", Some("Doorbell"), 100);
    idx.insert(&a).unwrap();
    assert_eq!(idx.get(&a.id).unwrap().as_ref(), Some(&a));
    assert_eq!(idx.len(), 1);
    assert!(idx.set_pinned(&a.id, true).unwrap().unwrap().pinned);
    assert!(idx.get(&a.id).unwrap().unwrap().pinned);
    // Re-insert under another camera/label moves the secondary entries.
    let mut b = a.clone();
    b.camera = "back".into();
    b.label = Some("car".into());
    idx.insert(&b).unwrap();
    assert!(idx.list(&query(|q| q.camera = Some("front".into()))).unwrap().clips.is_empty());
    assert!(idx.list(&query(|q| q.label = Some("doorbell".into()))).unwrap().clips.is_empty());
    assert_eq!(idx.list(&query(|q| q.label = Some("CAR".into()))).unwrap().clips.len(), 1);
    assert_eq!(idx.remove(&a.id).unwrap(), Some(b));
    assert_eq!(idx.remove(&a.id).unwrap(), None);
    assert_eq!(idx.get(&a.id).unwrap(), None);
    assert!(idx.by_camera.is_empty() && idx.by_label.is_empty());
    let mut bad = a.clone();
    bad.id = "../../etc/passwd".into();
    assert!(matches!(idx.insert(&bad), Err(IndexError::InvalidId(_))));
}

#[test]
fn list_filters() {
    let dir = tempfile::tempdir().unwrap();
    let idx = Index::open(dir.path()).unwrap();
    let clips = [
        clip(T0, "front", Some("Doorbell"), 1),
        clip(T0 + 60_000, "back", Some("motion"), 1),
        clip(T0 + 120_000, "front", None, 1),
        clip(T0 + 180_000, "front", Some("doorbell"), 1),
        clip(T0 + 240_000, "garage", Some("car door"), 1),
    ];
    for c in &clips {
        idx.insert(c).unwrap();
    }
    let l = |q: ClipQuery| idx.list(&q).unwrap();
    let all = l(ClipQuery::default());
    assert_eq!(ids(&all), clips.iter().rev().map(|c| c.id.as_str()).collect::<Vec<_>>());
    assert_eq!(all.next_cursor, None);
    let front = l(query(|q| q.camera = Some("front".into())));
    assert_eq!(ids(&front), [&clips[3].id, &clips[2].id, &clips[0].id]);
    let bell = l(query(|q| q.label = Some("DOORBELL".into())));
    assert_eq!(ids(&bell), [&clips[3].id, &clips[0].id]);
    let both = l(query(|q| {
        q.camera = Some("back".into());
        q.label = Some("doorbell".into())
    }));
    assert!(both.clips.is_empty());
    let window = l(query(|q| {
        q.since = Some(rfc3339_ms(T0 + 60_000));
        q.until = Some(rfc3339_ms(T0 + 180_000));
    }));
    assert_eq!(ids(&window), [&clips[3].id, &clips[2].id, &clips[1].id]);
    let door = l(query(|q| q.q = Some("DOOR".into())));
    assert_eq!(ids(&door), [&clips[4].id, &clips[3].id, &clips[0].id]);
    let gar = l(query(|q| q.q = Some("arag".into())));
    assert_eq!(ids(&gar), [&clips[4].id]);
    let by_id = l(query(|q| q.q = Some(clips[1].id[..18].to_string())));
    assert_eq!(ids(&by_id), [&clips[1].id]);
    let empty = l(query(|q| q.camera = Some(String::new())));
    assert_eq!(empty.clips.len(), 5, "empty parameters count as absent");
}

#[test]
fn pagination_three_pages() {
    let dir = tempfile::tempdir().unwrap();
    let idx = Index::open(dir.path()).unwrap();
    let mut want = Vec::new();
    for i in 0..25 {
        let cam = if i % 2 == 0 { "front" } else { "back" };
        let c = clip(T0 + i * 1000, cam, Some("x"), 1);
        idx.insert(&c).unwrap();
        want.push(c.id);
    }
    want.reverse();
    for filter in [None, Some("front")] {
        let expect: Vec<&String> =
            want.iter().filter(|id| filter.is_none() || idx.get(id).unwrap().unwrap().camera == "front").collect();
        let (mut got, mut cursor, mut pages) = (Vec::new(), None, 0);
        loop {
            let page = idx
                .list(&query(|q| {
                    q.camera = filter.map(Into::into);
                    q.limit = Some(if filter.is_some() { 5 } else { 10 });
                    q.cursor = cursor.clone();
                }))
                .unwrap();
            let mut sorted = ids(&page);
            sorted.sort_by(|a, b| b.cmp(a));
            assert_eq!(sorted, ids(&page), "each page newest first");
            got.extend(page.clips.iter().map(|m| m.id.clone()));
            pages += 1;
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(pages, 3);
        assert_eq!(got.iter().collect::<Vec<_>>(), expect, "no duplicates, no gaps");
    }
    // Exactly a full last page: no cursor pointing at an empty page.
    let p = idx.list(&query(|q| q.limit = Some(25))).unwrap();
    assert_eq!((p.clips.len(), p.next_cursor), (25, None));
}

#[test]
fn bad_queries() {
    let dir = tempfile::tempdir().unwrap();
    let idx = Index::open(dir.path()).unwrap();
    let bad = |q: ClipQuery, name: &str| match idx.list(&q) {
        Err(IndexError::BadQuery(m)) => assert!(m.starts_with(name), "{m}"),
        other => panic!("{name}: {other:?}"),
    };
    bad(query(|q| q.since = Some("yesterday".into())), "since");
    bad(query(|q| q.until = Some("2026-13-01T00:00:00Z".into())), "until");
    bad(query(|q| q.limit = Some(0)), "limit");
    bad(query(|q| q.limit = Some(501)), "limit");
    bad(query(|q| q.cursor = Some("../x".into())), "cursor");
    assert!(idx.list(&query(|q| q.limit = Some(500))).is_ok());
}

#[test]
fn reopen_keeps_data_and_refuses_other_schema() {
    let dir = tempfile::tempdir().unwrap();
    let a = clip(T0, "front", Some("bell"), 7);
    {
        let idx = Index::open(dir.path()).unwrap();
        idx.insert(&a).unwrap();
    }
    {
        let idx = Index::open(dir.path()).unwrap();
        assert_eq!(idx.all().unwrap(), vec![a.clone()]);
        assert_eq!(idx.list(&query(|q| q.label = Some("bell".into()))).unwrap().clips.len(), 1);
        let meta = idx.db.open_tree("meta").unwrap();
        assert_eq!(meta.get(SCHEMA_KEY).unwrap().unwrap().as_ref(), 1u32.to_be_bytes());
        meta.insert(SCHEMA_KEY, &2u32.to_be_bytes()).unwrap();
        idx.db.flush().unwrap();
    }
    match Index::open(dir.path()) {
        Err(IndexError::SchemaMismatch { found: 2, expected: 1 }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn corrupt_entry_is_reported_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let idx = Index::open(dir.path()).unwrap();
    let a = clip(T0, "front", None, 1);
    let b = clip(T0 + 1, "front", None, 1);
    idx.insert(&a).unwrap();
    idx.insert(&b).unwrap();
    idx.clips.insert(a.id.as_bytes(), &b"{not json"[..]).unwrap();
    assert!(matches!(idx.get(&a.id), Err(IndexError::Corrupt { .. })));
    assert_eq!(idx.all().unwrap(), vec![b.clone()]);
    assert_eq!(idx.list(&ClipQuery::default()).unwrap().clips, vec![b.clone()]);
    assert_eq!(idx.remove(&a.id).unwrap(), None);
    assert_eq!(idx.len(), 1);
    assert_eq!(idx.by_camera.len(), 1);
}
