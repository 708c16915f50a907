//! The spine against real GStreamer: test pattern → ring → x264enc → pre-roll buffer, the
//! gstreamer and JPEG source paths, failures and recovery, and the HTTP skeleton.

mod common;

use common::*;
use hindsight::capture::test_pattern::read_seq;
use hindsight::config::ByteSize;
use hindsight::status::CameraState;
use std::time::Duration;

/// 1280×720@30 through x264enc with pre_s = 5: the buffer holds ≥ 5 s, keyframes exactly every
/// second, PTS strictly increasing with 1/fps spacing, nothing dropped, whole GOPs evicted; and
/// every frame decodes back to the sequence number it was labelled with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_source_720p30_fills_preroll_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let mut cam = test_camera("cam0", 1280, 720, 30, 5.0);
    // One second of slack between capture and encoder, for a loaded CI machine.
    cam.ring_frames = 30;
    let d = start(config(dir.path(), vec![cam])).await;
    let c = d.cameras[0].clone();
    // Hold is pre_s + one GOP = 6 s; wait until a GOP has been evicted, so eviction is exercised.
    let p = c.preroll.clone();
    wait_for("an evicted GOP", Duration::from_secs(60), || p.stats().evicted_gops >= 2).await;
    let (frames, stats) = {
        let s = p.lock();
        (s.iter().cloned().collect::<Vec<_>>(), s.stats())
    };
    let info = c.info();
    d.shutdown().await;

    assert!(stats.buffered >= Duration::from_secs(5), "buffer holds {:?}", stats.buffered);
    assert!(stats.buffered <= Duration::from_secs(8), "buffer holds {:?}: more than pre_s + 2 GOPs", stats.buffered);
    assert!(frames[0].keyframe, "buffer must start on a keyframe");
    assert_eq!(info.frames_dropped, 0, "{info:?}");
    let period = Duration::from_nanos(1_000_000_000 / 30);
    let mut last_key: Option<u64> = None;
    for w in frames.windows(2) {
        assert!(w[1].pts > w[0].pts, "PTS not increasing at seq {}", w[1].seq);
        let gap = w[1].pts - w[0].pts;
        assert!(gap.abs_diff(period) < Duration::from_micros(100), "spacing {gap:?} at seq {}", w[1].seq);
        assert_eq!(w[1].seq, w[0].seq + 1, "frame missing after seq {}", w[0].seq);
        assert!(w[1].dts <= w[1].pts);
    }
    for f in &frames {
        if f.keyframe {
            if let Some(k) = last_key {
                assert_eq!(f.seq - k, 30, "keyframe interval at seq {}", f.seq);
            }
            last_key = Some(f.seq);
        }
    }
    assert!(last_key.is_some());
    // SPS/PPS in front of every keyframe (NAL type 7), so any GOP decodes alone.
    for f in frames.iter().filter(|f| f.keyframe) {
        assert!(
            has_nal(&f.data, 7) && has_nal(&f.data, 8) && has_nal(&f.data, 5),
            "keyframe {} lacks SPS/PPS/IDR",
            f.seq
        );
    }

    // Decode one GOP-aligned stretch and read the stamped sequence numbers back.
    let start = frames.iter().rposition(|f| f.keyframe).unwrap().saturating_sub(60);
    let start = (0..=start).rev().find(|&i| frames[i].keyframe).unwrap();
    let slice = &frames[start..(start + 45).min(frames.len())];
    let decoded = decode(slice);
    assert_eq!(decoded.len(), slice.len(), "every access unit decodes to a frame");
    for (f, (luma, stride, w, h)) in slice.iter().zip(&decoded) {
        assert_eq!((*w, *h), (1280, 720));
        assert_eq!(read_seq(luma, *w, *h, *stride), Some(f.seq), "decoded frame carries its own sequence number");
    }
}

fn has_nal(au: &[u8], ty: u8) -> bool {
    au.windows(4).any(|w| w[0] == 0 && w[1] == 0 && w[2] == 1 && w[3] & 0x1f == ty)
}

/// The byte cap is hard: with busy content (snow) and a 1 MiB cap, the buffer never exceeds it,
/// still starts on a keyframe, and counts cap evictions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_cap_is_respected_with_whole_gops() {
    let dir = tempfile::tempdir().unwrap();
    let mut cam = gst_camera(
        "snow",
        "videotestsrc is-live=true pattern=snow ! video/x-raw,format=I420,width=640,height=360,framerate=30/1",
    );
    cam.pre_s = 10.0;
    cam.bitrate_kbps = 4000;
    cam.preroll_max_bytes = Some(ByteSize(1 << 20));
    let d = start(config(dir.path(), vec![cam])).await;
    let p = d.cameras[0].preroll.clone();
    let mut max_bytes = 0;
    wait_for("cap evictions", Duration::from_secs(60), || {
        let s = p.stats();
        max_bytes = max_bytes.max(s.bytes);
        s.evicted_for_cap >= 3
    })
    .await;
    let first_is_key = p.lock().iter().next().map(|f| f.keyframe);
    let stats = p.stats();
    d.shutdown().await;
    assert!(max_bytes <= 1 << 20, "buffer reached {max_bytes} bytes");
    assert_eq!(first_is_key, Some(true));
    assert!(stats.buffered < Duration::from_secs(10), "cap must bind before pre_s here: {stats:?}");
}

/// A `gstreamer` raw source (NV12 and YUY2) and a JPEG source both reach the buffer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gstreamer_raw_and_jpeg_sources_reach_the_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let cams = vec![
        gst_camera("nv12", "videotestsrc is-live=true ! video/x-raw,format=NV12,width=320,height=240,framerate=15/1"),
        gst_camera("yuy2", "videotestsrc is-live=true ! video/x-raw,format=YUY2,width=320,height=240,framerate=15/1"),
        gst_camera("jpeg", "videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=15/1 ! jpegenc"),
    ];
    let d = start(config(dir.path(), cams)).await;
    for c in &d.cameras {
        let p = c.preroll.clone();
        wait_for(&format!("{} frames", c.id()), Duration::from_secs(30), || p.stats().frames >= 20).await;
    }
    let formats: Vec<_> = d.cameras.iter().map(|c| c.info().format).collect();
    let states: Vec<_> = d.cameras.iter().map(|c| c.info().state).collect();
    d.shutdown().await;
    assert_eq!(formats, vec![Some("NV12".into()), Some("YUYV".into()), Some("MJPG".into())]);
    assert!(states.iter().all(|s| *s == CameraState::Running), "{states:?}");
}

/// Broken pipelines: a missing source element and an encoder that cannot produce H.264 leave
/// their cameras `failed` with `last_error` while HTTP answers and other cameras run; a source
/// whose fault is fixed (its input file appears) recovers by itself; restart works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_pipelines_fail_visibly_and_recover() {
    let dir = tempfile::tempdir().unwrap();
    let jpeg = dir.path().join("still.jpg");
    let mut bad_enc = test_camera("badenc", 320, 240, 15, 2.0);
    bad_enc.encoder = "jpegenc".into();
    let mut missing_enc = test_camera("noenc", 320, 240, 15, 2.0);
    missing_enc.encoder = "nosuchh264enc".into();
    let cams = vec![
        test_camera("good", 320, 240, 15, 2.0),
        gst_camera("nosrc", "nosuchsrc ! video/x-raw,width=320,height=240"),
        bad_enc,
        missing_enc,
        gst_camera(
            "fixable",
            &format!(
                "filesrc location={} ! jpegdec ! videoconvert ! imagefreeze is-live=true ! video/x-raw,format=I420,framerate=10/1",
                jpeg.display()
            ),
        ),
    ];
    let d = start(config(dir.path(), cams)).await;
    let addr = d.http_addr;
    let cam = |id: &str| d.cameras.iter().find(|c| c.id() == id).unwrap().clone();
    for id in ["nosrc", "badenc", "noenc", "fixable"] {
        let c = cam(id);
        wait_for(&format!("{id} failed"), Duration::from_secs(30), || c.status.state() == CameraState::Failed).await;
    }
    let good = cam("good");
    wait_for("good running", Duration::from_secs(30), || good.status.state() == CameraState::Running).await;

    let (status, body) = get_json(addr, "/api/cameras/nosrc").await;
    assert_eq!(status, 200);
    assert_eq!(body["state"], "failed");
    assert!(body["last_error"].as_str().unwrap().contains("nosuchsrc"), "{body}");
    let (_, body) = get_json(addr, "/api/cameras/noenc").await;
    assert!(body["last_error"].as_str().unwrap().contains("nosuchh264enc"), "{body}");
    let (_, body) = get_json(addr, "/api/cameras/badenc").await;
    assert_eq!(body["state"], "failed");
    assert!(body["last_error"].as_str().unwrap().contains("jpegenc"), "{body}");
    let (_, body) = get_json(addr, "/api/health").await;
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["cameras"]["good"]["state"], "running");

    // Fix the fixable source: write the JPEG it reads; back-off retries pick it up.
    let ok = std::process::Command::new("gst-launch-1.0")
        .args([
            "-q",
            "videotestsrc",
            "num-buffers=1",
            "!",
            "video/x-raw,width=320,height=240",
            "!",
            "jpegenc",
            "!",
            "filesink",
        ])
        .arg(format!("location={}", jpeg.display()))
        .status()
        .unwrap();
    assert!(ok.success());
    let fixable = cam("fixable");
    wait_for("fixable recovers", Duration::from_secs(60), || fixable.status.state() == CameraState::Running).await;
    let (_, body) = get_json(addr, "/api/cameras/fixable").await;
    assert_eq!(body["state"], "running");
    assert!(body["frames_encoded"].as_u64().unwrap() > 0);

    // Restart over HTTP: answers the camera, which runs again.
    let (status, body) = post_json(addr, "/api/cameras/good/restart").await;
    assert_eq!(status, 200, "{body}");
    let before = good.status.frames_encoded.load(std::sync::atomic::Ordering::Relaxed);
    wait_for("good running after restart", Duration::from_secs(30), || {
        good.status.state() == CameraState::Running
            && good.status.frames_encoded.load(std::sync::atomic::Ordering::Relaxed) > before
    })
    .await;
    let (status, body) = post_json(addr, "/api/cameras/good/stop").await;
    assert_eq!((status, body["state"].as_str()), (200, Some("stopped")));
    let (status, _) = post_json(addr, "/api/cameras/good/start").await;
    assert_eq!(status, 200);
    wait_for("good running after start", Duration::from_secs(30), || good.status.state() == CameraState::Running).await;
    d.shutdown().await;
}

/// The HTTP skeleton: every docs/API.md field, JSON 404s, 405 for a wrong method.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_skeleton_answers_contract_fields_and_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(config(dir.path(), vec![test_camera("front", 320, 240, 15, 2.0)])).await;
    let c = d.cameras[0].clone();
    wait_for("running", Duration::from_secs(30), || c.status.state() == CameraState::Running).await;
    let addr = d.http_addr;

    let (status, list) = get_json(addr, "/api/cameras").await;
    assert_eq!(status, 200);
    let cam = &list[0];
    for key in [
        "id",
        "state",
        "source",
        "encoder",
        "width",
        "height",
        "fps",
        "buffered_s",
        "buffered_bytes",
        "frames_captured",
        "frames_dropped",
        "frames_encoded",
    ] {
        assert!(!cam[key].is_null(), "missing {key} in {cam}");
    }
    assert_eq!(cam["id"], "front");
    assert_eq!(cam["encoder"], "x264enc");
    assert_eq!((cam["width"].as_u64(), cam["height"].as_u64(), cam["fps"].as_u64()), (Some(320), Some(240), Some(15)));
    let (status, one) = get_json(addr, "/api/cameras/front").await;
    assert_eq!(status, 200);
    assert!(one.as_object().unwrap().contains_key("last_error"));

    let (status, health) = get_json(addr, "/api/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["cameras"]["front"]["state"], "running");
    assert!(health["storage"]["free_bytes"].as_u64().unwrap() > 0);

    let (status, err) = get_json(addr, "/api/cameras/nope").await;
    assert_eq!(status, 404);
    assert!(err["error"].as_str().unwrap().contains("nope"));
    let (status, err) = get_json(addr, "/api/nothing-here").await;
    assert_eq!(status, 404);
    assert!(err["error"].is_string());
    let (status, err) = post_json(addr, "/api/cameras/nope/restart").await;
    assert_eq!(status, 404, "{err}");
    let r = reqwest::Client::new().delete(format!("http://{addr}/api/cameras")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["error"].is_string());
    // Nothing is written to storage while idle: the index opened at start, then 3 s of
    // capture (measured on the camera's own clock) change no file.
    let snapshot = || {
        let mut v: Vec<(std::path::PathBuf, u64, std::time::SystemTime)> = Vec::new();
        let mut stack = vec![dir.path().join("storage")];
        while let Some(p) = stack.pop() {
            for e in std::fs::read_dir(&p).into_iter().flatten().flatten() {
                let m = e.metadata().unwrap();
                if m.is_dir() {
                    stack.push(e.path());
                } else {
                    v.push((e.path(), m.len(), m.modified().unwrap()));
                }
            }
        }
        v.sort();
        v
    };
    let before = snapshot();
    let now = c.preroll.lock().iter().last().unwrap().pts;
    wait_media_time(&c.preroll, now + Duration::from_secs(3)).await;
    assert_eq!(snapshot(), before, "files under storage changed while idle");
    d.shutdown().await;
}

/// Forcing a keyframe makes the next frames start a GOP off the regular 4 s grid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_keyframe_starts_a_gop_now() {
    let dir = tempfile::tempdir().unwrap();
    let mut cam = test_camera("kf", 320, 240, 15, 2.0);
    cam.keyframe_interval_s = 4.0;
    cam.max_clip_s = 10.0;
    let d = start(config(dir.path(), vec![cam])).await;
    let c = d.cameras[0].clone();
    let p = c.preroll.clone();
    wait_for("two regular keyframes", Duration::from_secs(30), || p.lock().iter().filter(|f| f.keyframe).count() >= 2)
        .await;
    // Regular keyframes sit on a 60-frame grid; ask for one between grid points.
    let grid = p.lock().iter().find(|f| f.keyframe).unwrap().seq % 60;
    wait_for("a frame between grid points", Duration::from_secs(30), || {
        p.lock().iter().last().is_some_and(|f| (f.seq + 60 - grid) % 60 == 20)
    })
    .await;
    let asked_at = p.lock().iter().last().unwrap().seq;
    c.force_keyframe();
    wait_for("the forced keyframe", Duration::from_secs(30), || {
        p.lock().iter().any(|f| f.keyframe && f.seq > asked_at)
    })
    .await;
    let forced = p.lock().iter().find(|f| f.keyframe && f.seq > asked_at).unwrap().seq;
    d.shutdown().await;
    assert!(forced - asked_at <= 10, "forced keyframe came {} frames after the request", forced - asked_at);
    assert_ne!(forced % 60, grid, "keyframe at {forced} is a regular one, not the forced one");
}

/// `/metrics` speaks the Prometheus text format: every family has HELP and TYPE, every sample
/// line is `name{labels} value`, and the figures follow the camera (frames counted, running).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_prometheus_text_with_camera_counters() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(config(dir.path(), vec![test_camera("cam0", 320, 240, 15, 1.0)])).await;
    let cam = d.cameras[0].clone();
    wait_for("frames encoded", Duration::from_secs(20), || {
        cam.status.frames_encoded.load(std::sync::atomic::Ordering::Relaxed) > 5
    })
    .await;
    let r = reqwest::get(format!("http://{}/metrics", d.http_addr)).await.unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let body = r.text().await.unwrap();
    let mut values = std::collections::HashMap::new();
    let (mut helps, mut types) = (std::collections::HashSet::new(), std::collections::HashSet::new());
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helps.insert(rest.split(' ').next().unwrap().to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let name = it.next().unwrap().to_string();
            assert!(matches!(it.next(), Some("gauge" | "counter")), "{line}");
            types.insert(name);
        } else {
            let (key, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("sample line: {line:?}"));
            let v: f64 = value.parse().unwrap_or_else(|_| panic!("value in {line:?}"));
            let name = key.split('{').next().unwrap();
            assert!(name.starts_with("hindsight_") && types.contains(name), "{line}: family declared first");
            values.insert(key.to_string(), v);
        }
    }
    assert_eq!(helps, types, "every family has HELP and TYPE");
    assert_eq!(values["hindsight_camera_up{camera=\"cam0\"}"], 1.0, "{body}");
    assert!(values["hindsight_frames_captured_total{camera=\"cam0\"}"] > 5.0, "{body}");
    assert!(values["hindsight_frames_encoded_total{camera=\"cam0\"}"] > 5.0, "{body}");
    assert_eq!(values["hindsight_recording{camera=\"cam0\"}"], 0.0);
    assert!(values["hindsight_storage_total_bytes"] > 0.0);
    assert_eq!(values["hindsight_storage_ok"], 1.0);
    // No phone camera here: the family is declared, with no samples.
    assert!(types.contains("hindsight_phone_chunks_dropped_total"), "{body}");
    assert_eq!(values["hindsight_uploads{state=\"uploading\"}"], 0.0);
    d.shutdown().await;
}
