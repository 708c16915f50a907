//! Helpers shared by the integration tests: configs, a daemon on 127.0.0.1:0, waiting on
//! conditions with a deadline, and decoding buffered H.264 back to frames; the real binary's
//! harness is [`bin`], the MQTT peers are [`mqtt`], network faults are [`net`], the RTSP camera is [`rtsp`].
#![allow(dead_code)]

pub mod av;
pub mod bin;
pub mod mqtt;
pub mod net;
pub mod rtsp;

use gstreamer as gst;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use hindsight::config::{CameraConfig, Config, SourceConfig, SourceKind};
use hindsight::daemon::Daemon;
use hindsight::frame::EncodedFrame;
use std::time::Duration;

/// A config with these cameras, HTTP on a free loopback port, storage in `dir`.
pub fn config(dir: &std::path::Path, cameras: Vec<CameraConfig>) -> Config {
    let mut c = Config::builtin_default();
    c.http.listen = "127.0.0.1:0".into();
    // In-process tests run in parallel: no shared embedded broker on 1883.
    c.mqtt.enabled = false;
    c.storage.path = dir.join("storage");
    // The host's free space is not under test (a shared CI disk may be under the 10 % default
    // reserve); the tests that test the reserve set their own on a tmpfs.
    c.storage.min_free_percent = 0;
    c.cameras = cameras;
    let errs = hindsight::config::validate(&c, "<test>");
    assert!(errs.is_empty(), "test config invalid: {errs:?}");
    c
}

/// A test-pattern camera.
pub fn test_camera(id: &str, w: u32, h: u32, fps: u32, pre_s: f64) -> CameraConfig {
    let mut c = CameraConfig::new(id, SourceConfig::test(w, h, fps));
    c.encoder = "x264enc".into();
    c.pre_s = pre_s;
    c.post_s = 1.0;
    c
}

/// A camera reading a GStreamer source pipeline.
pub fn gst_camera(id: &str, pipeline: &str) -> CameraConfig {
    let src = SourceConfig { pipeline: Some(pipeline.into()), ..SourceConfig::of_kind(SourceKind::Gstreamer) };
    let mut c = CameraConfig::new(id, src);
    c.encoder = "x264enc".into();
    c.pre_s = 2.0;
    c.post_s = 1.0;
    c
}

/// Start a daemon in this runtime.
pub async fn start(config: Config) -> Daemon {
    let _ = env_logger_init();
    Daemon::start(config).await.expect("daemon starts")
}

fn env_logger_init() -> Result<(), ()> {
    Ok(())
}

/// Poll `cond` every 50 ms until it holds; panic with `what` after `timeout`. Used only where
/// the condition has no event to await (camera state, counters).
pub async fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// GET `path` and parse JSON, returning (status, body).
pub async fn get_json(addr: std::net::SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let r = reqwest::get(format!("http://{addr}{path}")).await.expect("HTTP answers");
    let status = r.status().as_u16();
    let body = r.json().await.expect("JSON body");
    (status, body)
}

/// POST `path` (no body) and parse JSON.
pub async fn post_json(addr: std::net::SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new().post(format!("http://{addr}{path}")).send().await.expect("HTTP answers");
    let status = r.status().as_u16();
    let body = r.json().await.expect("JSON body");
    (status, body)
}

/// Decode Annex-B access units with GStreamer (avdec_h264) and return, per decoded frame, the
/// luma plane, its stride, and the frame's PTS.
pub fn decode(frames: &[EncodedFrame]) -> Vec<(Vec<u8>, usize, usize, usize)> {
    gst::init().unwrap();
    let pipeline = gst::parse::launch(
        "appsrc name=src format=time caps=video/x-h264,stream-format=byte-stream,alignment=au \
         ! h264parse ! avdec_h264 ! videoconvert ! video/x-raw,format=I420 ! appsink name=sink sync=false",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    use gst::prelude::*;
    let src = pipeline.by_name("src").unwrap().downcast::<gst_app::AppSrc>().unwrap();
    let sink = pipeline.by_name("sink").unwrap().downcast::<gst_app::AppSink>().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let base = frames.first().map(|f| f.pts).unwrap_or_default();
    let feeder = {
        let frames: Vec<EncodedFrame> = frames.to_vec();
        std::thread::spawn(move || {
            for f in frames {
                let mut b = gst::Buffer::from_slice(f.data.clone());
                b.get_mut().unwrap().set_pts(gst::ClockTime::from_nseconds((f.pts - base).as_nanos() as u64));
                src.push_buffer(b).unwrap();
            }
            src.end_of_stream().unwrap();
        })
    };
    let mut out = Vec::new();
    while let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(20)) {
        let caps = sample.caps().unwrap();
        let info = gst_video::VideoInfo::from_caps(caps).unwrap();
        let buf = sample.buffer().unwrap();
        let map = buf.map_readable().unwrap();
        let stride = info.stride()[0] as usize;
        let luma = map[..stride * info.height() as usize].to_vec();
        out.push((luma, stride, info.width() as usize, info.height() as usize));
    }
    feeder.join().unwrap();
    pipeline.set_state(gst::State::Null).unwrap();
    out
}

/// POST `path` with a JSON body, returning (status, body).
pub async fn post_body(addr: std::net::SocketAddr, path: &str, body: &str) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(format!("http://{addr}{path}"))
        .body(body.to_string())
        .send()
        .await
        .expect("HTTP answers");
    let status = r.status().as_u16();
    let body = r.json().await.unwrap_or(serde_json::Value::Null);
    (status, body)
}

/// Wait until `GET /api/clips/{id}` answers 200 and return the metadata.
pub async fn wait_clip(addr: std::net::SocketAddr, id: &str, timeout: Duration) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let (status, body) = get_json(addr, &format!("/api/clips/{id}")).await;
        if status == 200 {
            return body;
        }
        assert!(tokio::time::Instant::now() < deadline, "clip {id} not saved within {timeout:?}: {status} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Wait until the camera's pre-roll has a frame at or after capture time `t`.
pub async fn wait_media_time(p: &hindsight::preroll::PreRoll, t: Duration) {
    wait_for("media time", Duration::from_secs(60), || p.lock().iter().last().is_some_and(|f| f.pts >= t)).await;
}

/// ffprobe's format duration in seconds.
pub fn ffprobe_duration(path: &std::path::Path) -> f64 {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=duration", "-of", "default=nw=1:nk=1"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(out.status.success(), "ffprobe failed on {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("ffprobe prints a duration")
}

/// Decode a clip with ffmpeg and read the test pattern's sequence number from every frame.
pub fn decode_seqs(path: &std::path::Path, w: usize, h: usize) -> Vec<Option<u64>> {
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "gray", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(out.status.success(), "ffmpeg failed on {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "ffmpeg complained: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout.chunks_exact(w * h).map(|f| hindsight::capture::test_pattern::read_seq(f, w, h, w)).collect()
}
