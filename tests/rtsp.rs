//! Network cameras against real servers started here: GStreamer's gst-rtsp-server
//! (`tests/rtsp_server.py`: x264, 2 s GOP, digest or basic auth, TCP and UDP), and another
//! hindsight serving `/api/cameras/{id}/mjpeg` as an HTTP MJPEG camera. The daemon runs
//! in-process on 127.0.0.1:0; every clip is checked with ffprobe and decoded with ffmpeg.

mod common;

use common::bin::free_port;
use common::*;
use hindsight::config::{CameraConfig, RtspTransport, SourceConfig, SourceKind};
use hindsight::status::CameraState;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const USER: &str = "admin";
/// A password with characters that need percent-encoding in the URL.
const PASSWORD: &str = "s3cr@t:pw";
const PASSWORD_IN_URL: &str = "s3cr%40t%3Apw";

/// A gst-rtsp-server process serving `rtsp://127.0.0.1:{port}/cam`.
struct RtspServer {
    child: Child,
    port: u16,
    /// The server's stdout lines after its READY line (`CLIENT n`, `GONE n`, `KICKED`), read by
    /// a thread so a wait can have a deadline.
    lines: std::sync::mpsc::Receiver<String>,
    /// Commands to the server (`kick N`).
    commands: std::process::ChildStdin,
}

impl RtspServer {
    /// Start the server with these extra arguments and wait for its READY line.
    fn start(port: u16, args: &[&str]) -> RtspServer {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/rtsp_server.py");
        let mut child = Command::new("/usr/bin/python3")
            .arg(script)
            .args(["--port", &port.to_string()])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tests/rtsp_server.py (scripts/deps test installs gir1.2-gst-rtsp-server-1.0)");
        let mut out = std::io::BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("read the server's first line");
        assert!(line.starts_with("READY "), "RTSP server did not start: {line:?}");
        let commands = child.stdin.take().expect("piped stdin");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        RtspServer { child, port, lines, commands }
    }

    /// Close the `n`th client to have connected (from 1); the others keep the stream.
    fn kick(&mut self, n: usize) {
        use std::io::Write;
        writeln!(self.commands, "kick {n}").expect("write to the RTSP server");
        self.wait_line("KICKED");
    }

    /// Block until the server prints a line that starts with `prefix` (within 60 s).
    fn wait_line(&mut self, prefix: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        tokio::task::block_in_place(|| loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return,
                Ok(_) => {}
                Err(e) => panic!("the RTSP server printed no {prefix:?} line within 60 s ({e})"),
            }
        })
    }

    /// With the test login, digest (the default) or basic.
    fn with_login(port: u16, auth: &str, extra: &[&str]) -> RtspServer {
        let mut args = vec!["--user", USER, "--password", PASSWORD, "--auth", auth, "--gop-s", "2"];
        args.extend_from_slice(extra);
        Self::start(port, &args)
    }

    fn url(&self, user: &str, password: &str) -> String {
        format!("rtsp://{user}:{password}@127.0.0.1:{}/cam", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn rtsp_camera(id: &str, url: &str, transport: RtspTransport) -> CameraConfig {
    let src =
        SourceConfig { url: Some(url.into()), transport: Some(transport), ..SourceConfig::of_kind(SourceKind::Rtsp) };
    let mut c = CameraConfig::new(id, src);
    c.pre_s = 3.0;
    c.post_s = 2.0;
    c
}

async fn camera(addr: std::net::SocketAddr, id: &str) -> serde_json::Value {
    let (status, body) = get_json(addr, &format!("/api/cameras/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Wait until the camera is `running` with at least `secs` buffered.
async fn running_with(d: &hindsight::daemon::Daemon, secs: f64) {
    let cam = d.cameras[0].clone();
    wait_for("camera running with its pre-roll filled", Duration::from_secs(60), || {
        cam.status.state() == CameraState::Running && cam.preroll.stats().buffered.as_secs_f64() >= secs
    })
    .await;
}

/// Trigger, wait for the clip, and check it: `pre_s_actual` = pre ± half a frame at `fps`,
/// ffprobe's duration = pre + post ± one frame, ffmpeg decodes it without a complaint. Returns the
/// clip's metadata and its (width, height) as ffprobe reads them.
async fn clip_checked(
    d: &hindsight::daemon::Daemon,
    dir: &std::path::Path,
    id: &str,
    pre: f64,
    post: f64,
    fps: f64,
) -> (serde_json::Value, (u64, u64)) {
    let body = format!("{{\"pre_s\":{pre},\"post_s\":{post}}}");
    let (status, acc) = post_body(d.http_addr, &format!("/api/cameras/{id}/trigger"), &body).await;
    assert_eq!(status, 202, "{acc}");
    let clip_id = acc["clip_id"].as_str().expect("clip id").to_string();
    let meta = wait_clip(d.http_addr, &clip_id, Duration::from_secs(60)).await;
    let path = dir.join("storage").join(meta["path"].as_str().expect("path"));
    let frame = 1.0 / fps + 0.002;
    let dur = ffprobe_duration(&path);
    let pre_actual = meta["pre_s_actual"].as_f64().expect("pre_s_actual");
    // Each end rounds to the nearest frame (the one whose middle lies inside the clip): a network
    // camera's frames do not fall on a grid the trigger time lines up with.
    let half = frame / 2.0 + 0.002;
    assert!((pre_actual - pre).abs() <= half, "pre_s_actual {pre_actual}, expected {pre} ± {half}");
    if (dur - (pre + post)).abs() > frame {
        let _ = std::fs::copy(&path, std::env::temp_dir().join(format!("hindsight-rtsp-{id}-failed.mp4")));
        panic!(
            "clip lasts {dur} s, expected {} ± {frame}; pre_s_actual {pre_actual}; packets:\n{}",
            pre + post,
            packets(&path)
        );
    }
    (meta, decoded(&path))
}

/// Check that ffmpeg decodes every frame of the H.264 clip at `path` without a complaint;
/// returns its (width, height) as ffprobe reads them.
fn decoded(path: &std::path::Path) -> (u64, u64) {
    // Every frame decoded as stored (passthrough): a gap in a network camera's frames is a long
    // frame in the file, which ffmpeg's default constant-rate output would complain about.
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-fps_mode", "passthrough", "-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "ffmpeg: {}; packets:\n{}",
        String::from_utf8_lossy(&out.stderr),
        packets(path)
    );
    let (codec, size) = video_stream(path);
    assert_eq!(codec, "h264");
    size
}

/// The clip's video packets as ffprobe lists them (pts, duration, flags), for a failure message.
fn packets(path: &std::path::Path) -> String {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts_time,duration_time,flags"])
        .args(["-show_entries", "stream=start_time,duration", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Codec name and (width, height) of the first video stream, as ffprobe reads them.
fn video_stream(path: &std::path::Path) -> (String, (u64, u64)) {
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&probe.stdout).trim().to_string();
    let parts: Vec<&str> = text.split(',').collect();
    assert_eq!(parts.len(), 3, "ffprobe: {text:?} {}", String::from_utf8_lossy(&probe.stderr));
    (parts[0].to_string(), (parts[1].parse().unwrap(), parts[2].parse().unwrap()))
}

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
            kind: SourceKind::HttpMjpeg,
            url: Some(format!("http://{}/api/cameras/a/mjpeg", a.http_addr)),
            transport: None,
            device: None,
            format: None,
            pipeline: None,
            width: None,
            height: None,
            fps: None,
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
