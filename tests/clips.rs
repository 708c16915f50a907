//! Clips through HTTP against real GStreamer and ffmpeg: a trigger gives a frame-exact clip
//! (T − pre … T + post, checked by decoding the test pattern's stamped sequence numbers),
//! re-triggers extend, `max_clip_s` cuts, manual recording, and the clip routes (list filters and
//! pagination, Range requests, evil ids, delete, pin).

mod common;

use common::*;
use hindsight::status::CameraState;
use hindsight::time::mono_now;
use std::path::PathBuf;
use std::time::Duration;

const FPS: f64 = 30.0;

fn clip_file(storage: &std::path::Path, meta: &serde_json::Value) -> PathBuf {
    storage.join(meta["path"].as_str().expect("clip has a path"))
}

/// Capture sequence number of the buffered frame whose PTS is nearest `t`.
fn seq_near(p: &hindsight::preroll::PreRoll, t: Duration) -> u64 {
    let s = p.lock();
    s.iter().min_by_key(|f| f.pts.abs_diff(t)).map(|f| f.seq).expect("buffer has frames")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_trigger_gives_a_frame_exact_clip() {
    let dir = tempfile::tempdir().unwrap();
    let mut cam = test_camera("cam0", 640, 360, 30, 3.0);
    cam.post_s = 3.0;
    let cfg = config(dir.path(), vec![cam]);
    let storage = cfg.storage.path.clone();
    let d = start(cfg).await;
    let p = d.cameras[0].preroll.clone();
    wait_for("4 s buffered", Duration::from_secs(60), || p.stats().buffered >= Duration::from_secs(4)).await;

    let t0 = mono_now();
    let (status, acc) = post_body(d.http_addr, "/api/cameras/cam0/trigger", r#"{"label":"door","id":"ha-42"}"#).await;
    let t1 = mono_now();
    assert_eq!(status, 202, "{acc}");
    assert_eq!(acc["trigger_id"], "ha-42");
    assert_eq!(acc["extended"], false);
    let pre = Duration::from_secs(3);
    let (lo, hi) = (seq_near(&p, t0 - pre), seq_near(&p, t1 - pre));
    let id = acc["clip_id"].as_str().unwrap().to_string();

    let meta = wait_clip(d.http_addr, &id, Duration::from_secs(30)).await;
    assert_eq!(meta["label"], "door");
    assert_eq!(meta["trigger_id"], "ha-42");
    assert_eq!(meta["source"], "trigger");
    assert_eq!(meta["camera"], "cam0");
    assert!((meta["pre_s_actual"].as_f64().unwrap() - 3.0).abs() <= 1.0 / FPS + 0.01, "{meta}");
    let file = clip_file(&storage, &meta);
    assert_eq!(std::fs::metadata(&file).unwrap().len(), meta["size_bytes"].as_u64().unwrap());

    let dur = ffprobe_duration(&file);
    let want = 6.0 + (t1 - t0).as_secs_f64();
    assert!(
        (dur - 6.0).abs() <= 1.0 / FPS + 0.001 || (dur - want).abs() <= 1.0 / FPS + 0.001,
        "ffprobe duration {dur}"
    );
    assert!((meta["duration_s"].as_f64().unwrap() - dur).abs() <= 1.0 / FPS + 0.001, "{meta} vs {dur}");

    let seqs = decode_seqs(&file, 640, 360);
    assert!(seqs.iter().all(Option::is_some), "every decoded frame carries a readable stamp");
    let seqs: Vec<u64> = seqs.into_iter().flatten().collect();
    let first = seqs[0];
    assert!(first + 1 >= lo && first <= hi + 1, "first presented frame {first}, T−pre is {lo}..={hi}");
    for w in seqs.windows(2) {
        assert_eq!(w[1], w[0] + 1, "frame missing after {}", w[0]);
    }
    assert!((seqs.len() as f64 - 6.0 * FPS).abs() <= 2.0, "{} frames", seqs.len());
    assert_eq!(meta["frames"].as_u64().unwrap() as usize >= seqs.len(), true);

    // The poster is a JPEG.
    let r = reqwest::get(format!("http://{}/api/clips/{id}/thumbnail.jpg", d.http_addr)).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    assert_eq!(&r.bytes().await.unwrap()[..2], &[0xFF, 0xD8]);
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retriggers_extend_one_clip_and_max_clip_cuts() {
    let dir = tempfile::tempdir().unwrap();
    let mut cam = test_camera("cam0", 320, 240, 30, 2.0);
    cam.post_s = 2.0;
    cam.max_clip_s = 6.0;
    let cfg = config(dir.path(), vec![cam]);
    let storage = cfg.storage.path.clone();
    let d = start(cfg).await;
    let p = d.cameras[0].preroll.clone();
    wait_for("3 s buffered", Duration::from_secs(60), || p.stats().buffered >= Duration::from_secs(3)).await;

    // Two overlapping triggers 1 s apart: one clip of 2 + 1 + 2 s.
    let t = mono_now();
    let (_, a) = post_body(d.http_addr, "/api/cameras/cam0/trigger", r#"{"id":"a"}"#).await;
    wait_media_time(&p, t + Duration::from_secs(1)).await;
    let (status, b) = post_body(d.http_addr, "/api/cameras/cam0/trigger", r#"{"id":"b"}"#).await;
    let tb = mono_now();
    assert_eq!(status, 202);
    assert_eq!(b["clip_id"], a["clip_id"], "overlapping triggers share one clip");
    assert_eq!(b["extended"], true);
    let meta = wait_clip(d.http_addr, a["clip_id"].as_str().unwrap(), Duration::from_secs(30)).await;
    assert_eq!(meta["trigger_ids"], serde_json::json!(["a", "b"]));
    let want = 4.0 + (tb - t).as_secs_f64();
    let got = ffprobe_duration(&clip_file(&storage, &meta));
    assert!((got - want).abs() <= 2.0 / FPS + 0.01, "extended clip lasts {got}, want {want}");

    // Keep re-triggering: the clip is cut at max_clip_s = 6.
    let t = mono_now();
    let (_, first) = post_body(d.http_addr, "/api/cameras/cam0/trigger", "").await;
    for i in 1..=4 {
        wait_media_time(&p, t + Duration::from_millis(1500 * i)).await;
        let (_, r) = post_body(d.http_addr, "/api/cameras/cam0/trigger", "ON").await;
        if i <= 2 {
            assert_eq!(r["clip_id"], first["clip_id"]);
        }
    }
    let meta = wait_clip(d.http_addr, first["clip_id"].as_str().unwrap(), Duration::from_secs(30)).await;
    let got = ffprobe_duration(&clip_file(&storage, &meta));
    assert!((got - 6.0).abs() <= 1.0 / FPS + 0.01, "over-long clip cut at max_clip_s: {got}");
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_recording_and_trigger_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), vec![test_camera("cam0", 320, 240, 30, 2.0)]);
    let storage = cfg.storage.path.clone();
    let d = start(cfg).await;
    let c = d.cameras[0].clone();
    let p = c.preroll.clone();
    wait_for("running", Duration::from_secs(30), || c.status.state() == CameraState::Running).await;
    let a = d.http_addr;

    let (status, body) = post_body(a, "/api/cameras/cam0/record/start", "").await;
    assert_eq!(status, 201, "{body}");
    let clip = body["clip_id"].as_str().unwrap().to_string();
    let t = mono_now();
    let (status, _) = post_body(a, "/api/cameras/cam0/record/start", "").await;
    assert_eq!(status, 409);
    wait_media_time(&p, t + Duration::from_secs(2)).await;
    let (status, meta) = post_body(a, "/api/cameras/cam0/record/stop", "").await;
    let elapsed = (mono_now() - t).as_secs_f64();
    assert_eq!(status, 200, "{meta}");
    assert_eq!(meta["id"], clip.as_str());
    assert_eq!(meta["source"], "manual");
    assert!(meta["size_bytes"].as_u64().unwrap() > 0);
    let dur = meta["duration_s"].as_f64().unwrap();
    assert!(dur >= 2.0 - 0.1 && dur <= elapsed + 0.2, "manual clip {dur} s after {elapsed} s");
    assert!(storage.join(meta["path"].as_str().unwrap()).exists());
    let (status, _) = post_body(a, "/api/cameras/cam0/record/stop", "").await;
    assert_eq!(status, 409);

    for (body, code) in [
        ("not json", 400),
        (r#"{"pre_s":-1}"#, 400),
        (r#"{"pre_s":"ten"}"#, 400),
        (r#"{"post_s":1e12}"#, 400),
        (r#"{"colour":"red"}"#, 400),
    ] {
        let (status, err) = post_body(a, "/api/cameras/cam0/trigger", body).await;
        assert_eq!(status, code, "{body} → {err}");
        assert!(err["error"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (status, _) = post_body(a, "/api/cameras/nope/trigger", "").await;
    assert_eq!(status, 404);
    let (status, _) = post_body(a, "/api/cameras/cam0/stop", "").await;
    assert_eq!(status, 200);
    let (status, err) = post_body(a, "/api/cameras/cam0/trigger", "").await;
    assert_eq!(status, 409, "{err}");
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clip_routes_filter_paginate_range_and_refuse_evil_ids() {
    let dir = tempfile::tempdir().unwrap();
    let mut cams = vec![test_camera("front", 320, 240, 30, 0.5), test_camera("back", 320, 240, 30, 0.5)];
    for c in &mut cams {
        c.post_s = 0.5;
    }
    let cfg = config(dir.path(), cams);
    let storage = cfg.storage.path.clone();
    let d = start(cfg).await;
    for c in &d.cameras {
        let p = c.preroll.clone();
        wait_for("1 s buffered", Duration::from_secs(60), || p.stats().buffered >= Duration::from_secs(1)).await;
    }
    let a = d.http_addr;
    let mut ids = Vec::new();
    for (cam, label) in [("front", "door"), ("back", "garden"), ("front", "Door"), ("front", "car")] {
        let (status, r) =
            post_body(a, &format!("/api/cameras/{cam}/trigger"), &format!(r#"{{"label":"{label}"}}"#)).await;
        assert_eq!(status, 202, "{r}");
        let id = r["clip_id"].as_str().unwrap().to_string();
        wait_clip(a, &id, Duration::from_secs(30)).await;
        ids.push(id);
    }
    // Newest first, paginated by cursor without gaps or repeats.
    let (_, page1) = get_json(a, "/api/clips?limit=3").await;
    let got1: Vec<&str> = page1["clips"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(got1, vec![ids[3].as_str(), ids[2].as_str(), ids[1].as_str()]);
    let cursor = page1["next_cursor"].as_str().expect("a next cursor");
    let (_, page2) = get_json(a, &format!("/api/clips?limit=3&cursor={cursor}")).await;
    let got2: Vec<&str> = page2["clips"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(got2, vec![ids[0].as_str()]);
    assert!(page2["next_cursor"].is_null());
    let count = |v: &serde_json::Value| v["clips"].as_array().unwrap().len();
    assert_eq!(count(&get_json(a, "/api/clips?camera=back").await.1), 1);
    assert_eq!(count(&get_json(a, "/api/clips?label=door").await.1), 2, "labels match case-insensitively");
    assert_eq!(count(&get_json(a, "/api/clips?q=gard").await.1), 1);
    assert_eq!(count(&get_json(a, "/api/clips?since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00Z").await.1), 4);
    assert_eq!(count(&get_json(a, "/api/clips?until=2000-01-01T00:00:00Z").await.1), 0);
    for bad in ["since=yesterday", "limit=0", "limit=x", "cursor=..%2F..", "colour=red"] {
        let (status, err) = get_json(a, &format!("/api/clips?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {err}");
    }

    // Range requests on the video.
    let id = &ids[0];
    let (_, meta) = get_json(a, &format!("/api/clips/{id}")).await;
    let file = std::fs::read(storage.join(meta["path"].as_str().unwrap())).unwrap();
    let size = file.len();
    let url = format!("http://{a}/api/clips/{id}/video.mp4");
    let client = reqwest::Client::new();
    let full = client.get(&url).send().await.unwrap();
    assert_eq!(full.status().as_u16(), 200);
    assert_eq!(full.headers()["accept-ranges"], "bytes");
    assert_eq!(full.headers()["content-type"], "video/mp4");
    assert_eq!(full.bytes().await.unwrap().as_ref(), &file[..]);
    for (range, start, end) in [
        ("bytes=0-99", 0, 99),
        ("bytes=-10", size - 10, size - 1),
        ("bytes=100-", 100, size - 1),
        ("bytes=5-999999999", 5, size - 1),
    ] {
        let r = client.get(&url).header("range", range).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 206, "{range}");
        assert_eq!(r.headers()["content-range"], format!("bytes {start}-{end}/{size}").as_str(), "{range}");
        assert_eq!(r.bytes().await.unwrap().as_ref(), &file[start..=end], "{range}");
    }
    for range in [format!("bytes={size}-"), "bytes=9-2".to_string(), "bytes=-0".to_string()] {
        let r = client.get(&url).header("range", &range).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 416, "{range}");
        assert_eq!(r.headers()["content-range"], format!("bytes */{size}").as_str());
    }

    // Evil and unknown ids never reach the filesystem.
    let long = "a".repeat(5000);
    for evil in ["..%2F..%2Fetc%2Fpasswd", "%2e%2e", "..", "20261122T012301123Z-00a3f1%2F..", long.as_str()] {
        for suffix in ["", "/video.mp4", "/thumbnail.jpg"] {
            let r = client.get(format!("http://{a}/api/clips/{evil}{suffix}")).send().await.unwrap();
            let s = r.status().as_u16();
            assert!((400..500).contains(&s), "{evil}{suffix} → {s}");
        }
        let r = client.delete(format!("http://{a}/api/clips/{evil}")).send().await.unwrap();
        assert!((400..500).contains(&r.status().as_u16()));
    }
    let (status, _) = get_json(a, "/api/clips/20991231T000000000Z-abcdef").await;
    assert_eq!(status, 404);

    // Pin, then delete: file and entry go, a second delete is 404.
    let (status, m) = post_body(a, &format!("/api/clips/{id}/pin"), "").await;
    assert_eq!((status, m["pinned"].as_bool()), (200, Some(true)));
    let r = client.delete(format!("http://{a}/api/clips/{id}")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(!storage.join(meta["path"].as_str().unwrap()).exists());
    assert_eq!(get_json(a, &format!("/api/clips/{id}")).await.0, 404);
    let r = client.delete(format!("http://{a}/api/clips/{id}")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let (status, usage) = get_json(a, "/api/storage").await;
    assert_eq!(status, 200);
    assert_eq!(usage["clips"].as_u64(), Some(3), "{usage}");
    d.shutdown().await;
}

/// The defaults: 30 s before and 30 s after (small frames to keep it cheap).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_30s_before_and_30s_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut cam = test_camera("cam0", 320, 240, 15, 30.0);
    cam.post_s = 30.0;
    let cfg = config(dir.path(), vec![cam]);
    let storage = cfg.storage.path.clone();
    let d = start(cfg).await;
    let p = d.cameras[0].preroll.clone();
    wait_for("31 s buffered", Duration::from_secs(90), || p.stats().buffered >= Duration::from_secs(31)).await;
    let t0 = mono_now();
    let (status, acc) = post_body(d.http_addr, "/api/cameras/cam0/trigger", "").await;
    let t1 = mono_now();
    assert_eq!(status, 202);
    assert_eq!(acc["pre_s_actual"].as_f64(), Some(30.0));
    let (lo, hi) = (seq_near(&p, t0 - Duration::from_secs(30)), seq_near(&p, t1 - Duration::from_secs(30)));
    let meta = wait_clip(d.http_addr, acc["clip_id"].as_str().unwrap(), Duration::from_secs(90)).await;
    let file = clip_file(&storage, &meta);
    let dur = ffprobe_duration(&file);
    assert!((dur - 60.0).abs() <= 1.0 / 15.0 + (t1 - t0).as_secs_f64() + 0.001, "ffprobe duration {dur}");
    let seqs: Vec<u64> = decode_seqs(&file, 320, 240).into_iter().map(|s| s.expect("stamp readable")).collect();
    assert!(seqs[0] + 1 >= lo && seqs[0] <= hi + 1, "first frame {} vs {lo}..={hi}", seqs[0]);
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "no frame missing");
    assert!((seqs.len() as i64 - 900).abs() <= 2, "{} frames", seqs.len());
    d.shutdown().await;
}

/// A poster torn by a power cut (zero bytes beside an indexed clip) is made again at the next
/// start, and served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_poster_is_made_again_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut cam = test_camera("cam0", 320, 240, 15, 1.0);
    cam.post_s = 1.0;
    let cfg = config(dir.path(), vec![cam]);
    let storage = cfg.storage.path.clone();
    let d = start(cfg.clone()).await;
    let p = d.cameras[0].preroll.clone();
    wait_for("1 s buffered", Duration::from_secs(60), || p.stats().buffered >= Duration::from_secs(1)).await;
    let (status, acc) = post_body(d.http_addr, "/api/cameras/cam0/trigger", "").await;
    assert_eq!(status, 202, "{acc}");
    let id = acc["clip_id"].as_str().unwrap().to_string();
    let meta = wait_clip(d.http_addr, &id, Duration::from_secs(30)).await;
    d.shutdown().await;
    let poster = storage.join(meta["path"].as_str().unwrap()).with_extension("jpg");
    assert!(std::fs::metadata(&poster).unwrap().len() > 0, "the writer made a poster");
    std::fs::write(&poster, b"").unwrap();

    let d = start(cfg).await;
    let jpeg = std::fs::read(&poster).unwrap();
    assert!(jpeg.len() > 100 && jpeg.starts_with(&[0xff, 0xd8]), "poster made again: {} bytes", jpeg.len());
    let r = reqwest::get(format!("http://{}/api/clips/{id}/thumbnail.jpg", d.http_addr)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), jpeg.len());
    d.shutdown().await;
}
