//! Network cameras that misbehave, against a real gst-rtsp-server (`tests/rtsp_server.py`): a
//! wrong password, H.265, garbage on the port, a camera that hangs without closing, a server
//! killed mid-clip and back at another size, a size change during a recording, a reconnection
//! mid-GOP, and `rtsps://` with a self-signed certificate. Every clip ffprobes and decodes.

mod common;

use common::bin::free_port;
use common::rtsp::*;
use common::*;
use hindsight::config::RtspTransport;
use hindsight::status::CameraState;
use std::process::{Command, Stdio};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_h265_and_garbage_fail_the_camera_with_a_clear_redacted_error() {
    let server = RtspServer::with_login(free_port(), "digest", &[]);
    let h265 = RtspServer::start(free_port(), &["--codec", "h265", "--width", "320", "--height", "240"]);
    // Not an RTSP server at all: a web page where the camera should be.
    let junk = net::garbage_server(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html>router</html>\n");
    let dir = tempfile::tempdir().unwrap();
    let wrong = rtsp_camera("wrong", &server.url(USER, "not-the-password"), RtspTransport::Tcp);
    let hevc = rtsp_camera("hevc", &format!("rtsp://viewer:hunter2@127.0.0.1:{}/cam", h265.port), RtspTransport::Tcp);
    let garbage = rtsp_camera("junk", &format!("rtsp://viewer:hunter2@127.0.0.1:{junk}/cam"), RtspTransport::Tcp);
    let d = start(config(dir.path(), vec![wrong, hevc, garbage])).await;
    for (i, expect) in [(0, "Unauthorized"), (1, "H.265"), (2, "rtsp rtsp://***@127.0.0.1")] {
        let cam = d.cameras[i].clone();
        wait_for("the camera to fail with its reason", Duration::from_secs(60), || {
            cam.status.state() == CameraState::Failed && cam.status.last_error().is_some_and(|e| e.contains(expect))
        })
        .await;
    }
    for id in ["wrong", "hevc", "junk"] {
        let text = camera(d.http_addr, id).await.to_string();
        assert!(!text.contains("not-the-password") && !text.contains("hunter2"), "{text}");
    }
    let (_, health) = get_json(d.http_addr, "/api/health").await;
    assert!(!health.to_string().contains("hunter2"), "{health}");
    d.shutdown().await;
}

/// A camera that hangs without closing its connection (frozen behind a proxy): the 5 s stall
/// check fails it with a redacted reason, and it comes back by itself once the camera does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_that_hangs_without_closing_fails_as_stalled_and_comes_back() {
    let server = RtspServer::with_login(free_port(), "digest", &["--width", "320", "--height", "240", "--fps", "15"]);
    let proxy = net::FreezingProxy::start(server.port);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("rtsp://{USER}:{PASSWORD_IN_URL}@127.0.0.1:{}/cam", proxy.port);
    let d = start(config(dir.path(), vec![rtsp_camera("hang", &url, RtspTransport::Tcp)])).await;
    running_with(&d, 1.0).await;
    let cam = d.cameras[0].clone();
    proxy.freeze(true);
    wait_for("the stall to be noticed", Duration::from_secs(60), || {
        cam.status.state() == CameraState::Failed
            && cam.status.last_error().is_some_and(|e| e.contains("no frame for 5 s"))
    })
    .await;
    let error = cam.status.last_error().unwrap_or_default();
    assert!(error.contains("rtsp rtsp://***@127.0.0.1") && !error.contains("s3cr"), "{error}");
    let before = cam.status.frames_captured.load(std::sync::atomic::Ordering::Relaxed);
    proxy.freeze(false);
    wait_for("the camera to come back", Duration::from_secs(90), || {
        cam.status.state() == CameraState::Running
            && cam.status.frames_captured.load(std::sync::atomic::Ordering::Relaxed) > before + 15
    })
    .await;
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_camera_reconnects_after_the_server_restarts_and_follows_a_resolution_change() {
    let port = free_port();
    let mut server = RtspServer::with_login(port, "digest", &["--width", "320", "--height", "240", "--fps", "15"]);
    let dir = tempfile::tempdir().unwrap();
    let url = server.url(USER, PASSWORD_IN_URL);
    let d = start(config(dir.path(), vec![rtsp_camera("gate", &url, RtspTransport::Tcp)])).await;
    running_with(&d, 3.5).await;
    // Killed mid-clip: the clip open at the time is kept with what arrived, and plays.
    let (status, acc) = post_body(d.http_addr, "/api/cameras/gate/trigger", r#"{"post_s":10}"#).await;
    assert_eq!(status, 202, "{acc}");
    let first = acc["clip_id"].as_str().unwrap().to_string();
    server.kill();
    let cam = d.cameras[0].clone();
    wait_for("the stall or disconnect to be noticed", Duration::from_secs(30), || {
        cam.status.state() == CameraState::Failed
    })
    .await;
    let meta = wait_clip(d.http_addr, &first, Duration::from_secs(60)).await;
    let path = dir.path().join("storage").join(meta["path"].as_str().unwrap());
    assert!(ffprobe_duration(&path) >= 3.0, "the clip keeps its pre-roll");
    // Back, at another resolution (a camera reconfigured or rebooted with new settings).
    let _server = RtspServer::with_login(port, "digest", &["--width", "480", "--height", "272", "--fps", "15"]);
    wait_for("the camera to come back at the new size", Duration::from_secs(60), || {
        cam.status.state() == CameraState::Running && cam.status.format().is_some_and(|f| f.width == 480)
    })
    .await;
    // Only the new stream in the pre-roll before the next clip: wait until it holds pre_s of it.
    let since = cam.preroll.lock().iter().last().map(|f| f.pts).unwrap_or_default();
    wait_media_time(&cam.preroll, since + Duration::from_secs(4)).await;
    let (_, size) = clip_checked(&d, dir.path(), "gate", 3.0, 1.0, 15.0).await;
    assert_eq!(size, (480, 272));
    d.shutdown().await;
}

/// A camera that comes back at another size while a clip records (rebooted with new settings):
/// the clip ends with the old stream's last frame and goes on in a new clip that names it
/// (`continues`), each file at its own size and decoding cleanly — one MP4 track cannot hold two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolution_change_mid_clip_ends_the_clip_and_continues_in_a_new_one() {
    let port = free_port();
    let mut server = RtspServer::with_login(port, "digest", &["--width", "320", "--height", "240", "--fps", "15"]);
    let dir = tempfile::tempdir().unwrap();
    let url = server.url(USER, PASSWORD_IN_URL);
    let d = start(config(dir.path(), vec![rtsp_camera("gate", &url, RtspTransport::Tcp)])).await;
    running_with(&d, 1.0).await;
    let cam = d.cameras[0].clone();
    let (status, started) = post_body(d.http_addr, "/api/cameras/gate/record/start", "").await;
    assert_eq!(status, 201, "{started}");
    let first_id = started["clip_id"].as_str().expect("clip id").to_string();
    let now = cam.preroll.lock().iter().last().map(|f| f.pts).unwrap_or_default();
    wait_media_time(&cam.preroll, now + Duration::from_millis(1500)).await;
    // Restarted at once with a new size: the daemon reconnects within the recording.
    server.kill();
    let _server = RtspServer::with_login(port, "digest", &["--width", "480", "--height", "272", "--fps", "15"]);
    let first = wait_clip(d.http_addr, &first_id, Duration::from_secs(60)).await;
    assert_eq!(cam.status.format().map(|f| f.width), Some(480), "the camera runs at the new size");
    let since = cam.preroll.lock().iter().last().map(|f| f.pts).unwrap_or_default();
    wait_media_time(&cam.preroll, since + Duration::from_millis(1500)).await;
    let (status, next) = post_body(d.http_addr, "/api/cameras/gate/record/stop", "").await;
    assert_eq!(status, 200, "{next}");
    assert_eq!(next["continues"], first_id.as_str(), "the continuation names the clip it continues: {next}");
    assert_eq!(first.get("continues"), None, "{first}");
    let path = |m: &serde_json::Value| dir.path().join("storage").join(m["path"].as_str().expect("path"));
    assert_eq!(decoded(&path(&first)), (320, 240));
    assert_eq!(decoded(&path(&next)), (480, 272));
    let (a, b) = (ffprobe_duration(&path(&first)), ffprobe_duration(&path(&next)));
    assert!(a >= 1.4, "the first part keeps what came before the change: {a} s");
    assert!(b >= 1.4, "the continuation holds the new stream: {b} s");
    // They follow each other: the continuation starts after the first part ends.
    let first_end = first["start_ms"].as_i64().unwrap() + (first["duration_s"].as_f64().unwrap() * 1000.0) as i64;
    assert!(next["start_ms"].as_i64().unwrap() >= first_end - 1, "{first} {next}");
    d.shutdown().await;
}

/// A camera that drops the daemon and takes it back mid-GOP (the stream went on without it: a
/// shared session, a Wi-Fi hiccup): what the pre-roll keeps from the new session starts at an IDR,
/// so the clip that spans the reconnection decodes without a smear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnection_mid_gop_stores_nothing_before_the_next_keyframe() {
    let port = free_port();
    let extra = ["--width", "320", "--height", "240", "--fps", "15", "--gop-s", "4"];
    let mut server = RtspServer::with_login(port, "digest", &extra);
    let url = server.url(USER, PASSWORD_IN_URL);
    // The first client keeps the stream running while the daemon is away.
    let mut holder = Command::new("gst-launch-1.0")
        .args(["-q", "rtspsrc", &format!("location={url}"), "protocols=tcp", "!", "fakesink"])
        .stdout(Stdio::null())
        .spawn()
        .expect("gst-launch-1.0 (scripts/deps test installs gstreamer1.0-tools)");
    server.wait_line("CLIENT 1");
    let dir = tempfile::tempdir().unwrap();
    let mut cam = rtsp_camera("gate", &url, RtspTransport::Tcp);
    cam.pre_s = 10.0;
    let d = start(config(dir.path(), vec![cam])).await;
    // Dropped 1.5 s after its first IDR (a 4 s GOP): it comes back about 2 s into a GOP.
    running_with(&d, 1.5).await;
    server.kick(2);
    // Back, with 2 s of the new session buffered after a gap in the frames' times.
    let preroll = d.cameras[0].preroll.clone();
    let after_gap = || {
        let p = preroll.lock();
        let frames: Vec<(Duration, bool)> = p.iter().map(|f| (f.pts, f.keyframe)).collect();
        let gap = frames.windows(2).position(|w| w[1].0 - w[0].0 > Duration::from_millis(300))?;
        Some((frames[gap].0, frames[gap + 1], frames.last()?.0 - frames[gap + 1].0))
    };
    wait_for("2 s buffered after the reconnection", Duration::from_secs(60), || {
        after_gap().is_some_and(|(_, _, held)| held >= Duration::from_secs(2))
    })
    .await;
    let (lost_at, (_, keyframe), _) = after_gap().expect("a gap");
    assert!(keyframe, "the first frame kept after the reconnection is an IDR");
    let newest = preroll.lock().iter().last().map(|f| f.pts).unwrap_or_default();
    // A clip from 0.5 s before the gap to 1 s after now plays and decodes cleanly (clip_checked).
    let pre = ((newest - lost_at).as_secs_f64() + 0.5 + 0.05) * 10.0;
    let pre = pre.round() / 10.0;
    let (_, size) = clip_checked(&d, dir.path(), "gate", pre, 1.0, 15.0).await;
    assert_eq!(size, (320, 240));
    let _ = holder.kill();
    let _ = holder.wait();
    d.shutdown().await;
}

/// `rtsps://` with a camera's self-signed certificate: refused by default with an error that shows
/// its SHA-256 fingerprint (the one `openssl x509` gives) and how to pin it; accepted with
/// `source.tls_fingerprint`; refused again when the pinned one is not the camera's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtsps_with_a_self_signed_certificate_is_accepted_only_when_pinned() {
    let extra = ["--width", "320", "--height", "240", "--fps", "15", "--tls"];
    let mut server = RtspServer::with_login(free_port(), "digest", &extra);
    let fingerprint = server.wait_line("FINGERPRINT ")["FINGERPRINT ".len()..].to_string();
    let url = format!("rtsps://{USER}:{PASSWORD_IN_URL}@127.0.0.1:{}/cam", server.port);
    let dir = tempfile::tempdir().unwrap();
    let untrusted = rtsp_camera("untrusted", &url, RtspTransport::Tcp);
    let mut pinned = rtsp_camera("pinned", &url, RtspTransport::Tcp);
    pinned.source.tls_fingerprint = Some(format!("sha256:{}", fingerprint.to_lowercase()));
    let mut other = rtsp_camera("other", &url, RtspTransport::Tcp);
    other.source.tls_fingerprint = Some(format!("sha256:{}", "00:".repeat(31) + "00"));
    let d = start(config(dir.path(), vec![untrusted, pinned, other])).await;
    for (i, expect) in [(0, "is not trusted"), (2, "is not the one in source.tls_fingerprint")] {
        let cam = d.cameras[i].clone();
        wait_for("the camera to fail on its certificate", Duration::from_secs(60), || {
            cam.status.state() == CameraState::Failed && cam.status.last_error().is_some_and(|e| e.contains(expect))
        })
        .await;
        let error = cam.status.last_error().unwrap_or_default();
        assert!(error.contains(&format!("tls_fingerprint = \"sha256:{fingerprint}\"")), "{error}");
        assert!(!error.contains("s3cr"), "{error}");
    }
    let cam = d.cameras[1].clone();
    wait_for("the pinned camera to run", Duration::from_secs(60), || {
        cam.status.state() == CameraState::Running && cam.preroll.stats().buffered >= Duration::from_secs(1)
    })
    .await;
    d.shutdown().await;
    // `probe --url` says the same, and with --tls-fingerprint reads the camera and pins it in the
    // block to paste, which check-config accepts.
    let probe = |args: &[&str]| {
        let out =
            Command::new(common::bin::BIN).arg("probe").args(["--url", &url, "--seconds", "3"]).args(args).output();
        let out = out.expect("hindsight probe runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, stderr) = tokio::task::block_in_place(|| probe(&[]));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("tls_fingerprint = \"sha256:{fingerprint}\"")) && !stderr.contains("s3cr"),
        "{stderr}"
    );
    let (code, out, stderr) = tokio::task::block_in_place(|| probe(&["--tls-fingerprint", &fingerprint]));
    assert_eq!(code, Some(0), "{stderr}");
    let block = &out[out.find("[[camera]]").expect("a [[camera]] block")..];
    assert!(block.contains(&format!("tls_fingerprint = \"sha256:{fingerprint}\"")), "{block}");
    let cfg = dir.path().join("probed.toml");
    std::fs::write(&cfg, format!("[storage]\npath = {:?}\n\n{block}", dir.path().join("probed"))).unwrap();
    let check = Command::new(common::bin::BIN).arg("check-config").arg(&cfg).output().unwrap();
    assert!(check.status.success(), "the pasted block is valid: {}", String::from_utf8_lossy(&check.stderr));
    assert_eq!(tokio::task::block_in_place(|| probe(&["--tls-fingerprint", "AB:CD"])).0, Some(2), "a bad fingerprint");
}
