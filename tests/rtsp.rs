//! Network cameras against real servers started here: GStreamer's gst-rtsp-server
//! (`tests/rtsp_server.py`: x264, 2 s GOP, digest or basic auth, TCP and UDP), and another
//! hindsight serving `/api/cameras/{id}/mjpeg` as an HTTP MJPEG camera: pass-through, the
//! preview substream, live HLS, MJPEG cameras and `probe --url`. What goes wrong with cameras is
//! in `tests/rtsp_faults.rs`. The daemon runs in-process on 127.0.0.1:0; every clip is checked
//! with ffprobe and decoded with ffmpeg.

mod common;

use common::bin::free_port;
use common::rtsp::*;
use common::*;
use hindsight::config::{CameraConfig, RtspTransport, SourceConfig, SourceKind};
use hindsight::status::CameraState;
use std::process::Command;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtsp_camera_is_passed_through_into_clips_over_tcp_with_digest() {
    let server = RtspServer::with_login(free_port(), "digest", &["--width", "640", "--height", "360", "--fps", "15"]);
    let dir = tempfile::tempdir().unwrap();
    let url = server.url(USER, PASSWORD_IN_URL);
    let d = start(config(dir.path(), vec![rtsp_camera("door", &url, RtspTransport::Tcp)])).await;
    running_with(&d, 4.0).await;
    let cam = camera(d.http_addr, "door").await;
    assert_eq!(cam["encoder"], "passthrough", "{cam}");
    assert_eq!(cam["codec"], "h264");
    assert_eq!(cam["format"], "H264");
    assert_eq!((cam["width"].as_u64(), cam["height"].as_u64()), (Some(640), Some(360)));
    let gop = cam["gop_s"].as_f64().expect("gop measured");
    assert!((gop - 2.0).abs() < 0.1, "GOP {gop}");
    assert!(cam["profile"].is_string() && cam["level"].is_string(), "{cam}");
    // The password is in the config, never in what leaves the process.
    let text = cam.to_string();
    assert!(!text.contains("s3cr") && text.contains("***@127.0.0.1"), "{text}");
    let (meta, size) = clip_checked(&d, dir.path(), "door", 3.0, 2.0, 15.0).await;
    assert_eq!(size, (640, 360));
    assert_eq!(meta["camera"], "door");
    // Passed through: nothing was encoded by hindsight (no preview watched, no encoder built).
    assert_eq!(cam["jpeg_encodes"], 0);
    // The preview decodes the camera's H.264 only while watched, from the pre-roll.
    let snap = reqwest::get(format!("http://{}/api/cameras/door/snapshot.jpg", d.http_addr)).await.unwrap();
    assert_eq!(snap.status().as_u16(), 200);
    let file = dir.path().join("snapshot.jpg");
    std::fs::write(&file, snap.bytes().await.unwrap()).unwrap();
    assert_eq!(video_stream(&file), ("mjpeg".to_string(), (640, 360)));
    assert!(camera(d.http_addr, "door").await["jpeg_encodes"].as_u64() > Some(0));
    let preview = d.cameras[0].preview.clone();
    wait_for("the decoder to stop once nobody watches", Duration::from_secs(30), || !preview.running()).await;
    // Live HLS follows the camera's own 2 s GOP, though keyframe_interval_s is left at 1 s.
    let live = format!("http://{}/api/cameras/door/hls/live.m3u8", d.http_addr);
    let ffmpeg = Command::new("ffmpeg").args(["-v", "error", "-i", &live, "-t", "6", "-f", "framecrc", "-"]).output();
    let out = tokio::task::spawn_blocking(move || ffmpeg.expect("ffmpeg runs")).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "ffmpeg on live HLS: {stderr}");
    let frames = String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.starts_with('#')).count();
    assert!(frames.abs_diff(6 * 15) <= 2, "{frames} frames in 6 s of live HLS at 15 fps");
    let pl = reqwest::get(&live).await.unwrap().text().await.unwrap();
    assert!(pl.contains("#EXT-X-TARGETDURATION:2\n"), "{pl}");
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtsp_camera_over_udp_with_basic_auth_and_a_preview_substream() {
    let extra = ["--width", "320", "--height", "240", "--fps", "10", "--sub", "160x96"];
    let mut server = RtspServer::with_login(free_port(), "basic", &extra);
    let dir = tempfile::tempdir().unwrap();
    let url = server.url(USER, PASSWORD_IN_URL);
    let mut cam = rtsp_camera("yard", &url, RtspTransport::Udp);
    cam.preview_url = Some(url.replace("/cam", "/sub"));
    let d = start(config(dir.path(), vec![cam])).await;
    server.wait_line("CLIENT 1");
    running_with(&d, 3.5).await;
    let (_, size) = clip_checked(&d, dir.path(), "yard", 3.0, 1.0, 10.0).await;
    assert_eq!(size, (320, 240));
    // The preview comes from the substream, connected only while watched: a snapshot is the
    // substream's size (the main stream would give 320x240), and the connection ends after.
    let info = camera(d.http_addr, "yard").await;
    let shown = info["preview_source"].as_str().expect("preview_source").to_string();
    assert!(shown.ends_with(&format!("***@127.0.0.1:{}/sub", server.port)), "{shown}");
    assert!(!info.to_string().contains("s3cr"), "{info}");
    let snap = reqwest::get(format!("http://{}/api/cameras/yard/snapshot.jpg", d.http_addr)).await.unwrap();
    assert_eq!(snap.status().as_u16(), 200);
    let file = dir.path().join("snapshot.jpg");
    std::fs::write(&file, snap.bytes().await.unwrap()).unwrap();
    assert_eq!(video_stream(&file), ("mjpeg".to_string(), (160, 96)), "the substream's picture");
    server.wait_line("CLIENT 2");
    server.wait_line("GONE 2");
    assert!(!d.cameras[0].preview.running(), "the preview stopped with its substream");
    assert_eq!(d.cameras[0].status.state(), CameraState::Running, "the main stream goes on");
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_hindsight_is_an_http_mjpeg_camera_and_a_gstreamer_h264_pipeline_is_passed_through() {
    // Camera A: a test pattern served as MJPEG by one daemon.
    let dir_a = tempfile::tempdir().unwrap();
    let a = start(config(dir_a.path(), vec![test_camera("a", 320, 240, 10, 2.0)])).await;
    // Daemon B reads A's MJPEG, and a GStreamer pipeline that ends in H.264.
    let dir_b = tempfile::tempdir().unwrap();
    let mjpeg = CameraConfig::new(
        "frontdoor",
        SourceConfig {
            url: Some(format!("http://{}/api/cameras/a/mjpeg", a.http_addr)),
            ..SourceConfig::of_kind(SourceKind::HttpMjpeg)
        },
    );
    let mut mjpeg = CameraConfig { encoder: "x264enc".into(), pre_s: 2.0, post_s: 1.0, ..mjpeg };
    mjpeg.preview_width = 320;
    let mut h264 = gst_camera(
        "pipe",
        "videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=15/1 ! x264enc tune=zerolatency \
         key-int-max=15 speed-preset=ultrafast ! video/x-h264,profile=main",
    );
    h264.encoder = "auto".into();
    let b = start(config(dir_b.path(), vec![mjpeg, h264])).await;
    for cam in &b.cameras {
        let cam = cam.clone();
        wait_for("both cameras running with 2.5 s buffered", Duration::from_secs(60), || {
            cam.status.state() == CameraState::Running && cam.preroll.stats().buffered.as_secs_f64() >= 2.5
        })
        .await;
    }
    let fd = camera(b.http_addr, "frontdoor").await;
    assert_eq!((fd["format"].as_str(), fd["encoder"].as_str()), (Some("MJPG"), Some("x264enc")), "{fd}");
    let pipe = camera(b.http_addr, "pipe").await;
    assert_eq!((pipe["format"].as_str(), pipe["encoder"].as_str()), (Some("H264"), Some("passthrough")), "{pipe}");
    assert!((pipe["gop_s"].as_f64().unwrap() - 1.0).abs() < 0.1, "{pipe}");
    // A's JPEGs reach B's viewers as they are (no decode, no re-encode in B).
    let snap = reqwest::get(format!("http://{}/api/cameras/frontdoor/snapshot.jpg", b.http_addr)).await.unwrap();
    assert_eq!(snap.status().as_u16(), 200);
    let fd = camera(b.http_addr, "frontdoor").await;
    assert_eq!(fd["jpeg_encodes"], 0, "{fd}");
    let (_, size) = clip_checked(&b, dir_b.path(), "frontdoor", 2.0, 1.0, 10.0).await;
    assert_eq!(size, (320, 240));
    let (_, size) = clip_checked(&b, dir_b.path(), "pipe", 2.0, 1.0, 15.0).await;
    assert_eq!(size, (320, 240));
    b.shutdown().await;
    a.shutdown().await;
}

#[test]
fn probe_url_reports_the_stream_its_audio_and_a_block_to_paste() {
    let server =
        RtspServer::with_login(free_port(), "digest", &["--width", "320", "--height", "240", "--fps", "10", "--audio"]);
    let url = server.url(USER, PASSWORD_IN_URL);
    let probe = |args: &[&str]| Command::new(common::bin::BIN).arg("probe").args(args).output().unwrap();
    let out = probe(&["--url", &url, "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    let p: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((p["kind"].as_str(), p["codec"].as_str()), (Some("rtsp"), Some("h264")));
    // x264's ultrafast stream signals constrained baseline (no CABAC, no B-frames), level 2.0.
    assert_eq!((p["profile"].as_str(), p["level"].as_str()), (Some("constrained-baseline"), Some("2.0")), "{p}");
    assert_eq!((p["width"].as_u64(), p["height"].as_u64()), (Some(320), Some(240)), "{p}");
    let gop = p["gop_s"].as_f64().expect("GOP measured");
    assert!((gop - 2.0).abs() < 0.15, "GOP {gop}");
    let fps = p["fps"].as_f64().unwrap();
    assert!((fps - 10.0).abs() < 1.0, "fps {fps}");
    assert!(p["other_streams"].as_array().unwrap().iter().any(|s| s == "audio PCMA"), "{p}");
    assert!(!p.to_string().contains("s3cr") && !stderr.contains("s3cr"), "the password stays out: {p}");
    // Text: a redacted summary, the audio track, and a block that check-config accepts.
    let out = probe(&["--url", &url, "--seconds", "3"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success() && text.contains("Camera:   rtsp://***@127.0.0.1"), "{text}");
    assert!(text.contains("Audio:    audio PCMA"), "{text}");
    let block = &text[text.find("[[camera]]").expect("a [[camera]] block")..];
    assert!(block.contains(&format!("url = \"{url}\"")) && block.contains("transport = \"tcp\""), "{block}");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("hindsight.toml");
    std::fs::write(&cfg, format!("[storage]\npath = {:?}\n\n{block}", dir.path().join("clips"))).unwrap();
    let check = Command::new(common::bin::BIN).arg("check-config").arg(&cfg).output().unwrap();
    assert!(check.status.success(), "the pasted block is a valid config: {}", String::from_utf8_lossy(&check.stderr));
    // A wrong password fails with the reason, redacted; a bad argument exits 2.
    let out = probe(&["--url", &server.url(USER, "not-the-password"), "--seconds", "3"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Unauthorized") && !stderr.contains("not-the-password"), "{stderr}");
    assert_eq!(probe(&["--url", &url, "--transport", "quic"]).status.code(), Some(2));
}
