//! Camera credentials never leave the daemon: an RTSP source with `user:password@` in its URL
//! and a `user-pw=` property, which fails (nothing listens), is shown on `/api/cameras`,
//! `/api/cameras/{id}` and `/api/health` (the same `CameraInfo` is MQTT's retained state) with
//! its credentials replaced by `***`, in `source` and in `last_error`.

mod common;

use common::*;
use std::time::Duration;

const SECRET: &str = "s3cretpw";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camera_credentials_never_leave_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = format!(
        "rtspsrc location=rtsp://admin:{SECRET}@127.0.0.1:9/Streaming/101 user-id=admin user-pw={SECRET} \
         protocols=tcp timeout=1000000 ! rtph264depay ! h264parse ! avdec_h264 ! videoconvert"
    );
    let d = start(config(dir.path(), vec![gst_camera("door", &pipeline)])).await;
    let cam = d.cameras[0].clone();
    wait_for("the RTSP camera to fail", Duration::from_secs(60), || cam.status.last_error().is_some()).await;

    let (status, one) = get_json(d.http_addr, "/api/cameras/door").await;
    assert_eq!(status, 200);
    let source = one["source"].as_str().expect("source");
    assert!(source.contains("rtsp://***@127.0.0.1:9/Streaming/101"), "{source}");
    assert!(source.contains("user-id=***") && source.contains("user-pw=***"), "{source}");
    assert!(one["last_error"].is_string(), "{one}");
    for path in ["/api/cameras", "/api/cameras/door", "/api/health"] {
        let (_, body) = get_json(d.http_addr, path).await;
        let text = body.to_string();
        assert!(!text.contains(SECRET) && !text.contains("admin:"), "{path} leaks a credential: {text}");
    }
    d.shutdown().await;
}

/// The same through the real binary: the log (every line up to and including the capture
/// failure and a few retries) and the API never show the credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_never_shows_camera_credentials() {
    use common::bin::{free_port, hindsight, Proc};
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("hindsight.toml");
    std::fs::write(
        &cfg,
        format!(
            "[storage]\npath = \"{}/data\"\nmin_free_percent = 0\n[http]\nlisten = \"127.0.0.1:{port}\"\n\
             [mqtt]\nenabled = false\n[[camera]]\nid = \"door\"\nencoder = \"x264enc\"\n\
             source = {{ kind = \"gstreamer\", pipeline = \"rtspsrc location=rtsp://admin:{SECRET}@127.0.0.1:9/cam \
             user-pw={SECRET} protocols=tcp ! rtph264depay ! h264parse ! avdec_h264 ! videoconvert\" }}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let mut p = Proc::spawn_reading_stderr(
        hindsight().args(["run", "--config"]).arg(&cfg).env("RUST_LOG", "debug").stdout(std::process::Stdio::null()),
    );
    let (failed, before) = p.until("capture failed");
    let (_, between) = p.until("capture failed");
    let body = reqwest::get(format!("http://127.0.0.1:{port}/api/cameras")).await.unwrap().text().await.unwrap();
    assert!(body.contains("rtsp://***@127.0.0.1:9/cam"), "{body}");
    let terminated = p.terminate();
    assert!(terminated.success(), "{terminated:?}");
    let lines: Vec<&String> = before.iter().chain(&between).chain([&failed]).collect();
    for line in &lines {
        assert!(!line.contains(SECRET) && !line.contains("admin:"), "the log leaks a credential: {line}");
    }
    // The source is in the log (so the check above looked at it), redacted.
    assert!(lines.iter().any(|l| l.contains("rtsp://***@127.0.0.1:9/cam")), "{lines:#?}");
    assert!(!body.contains(SECRET), "{body}");
}
