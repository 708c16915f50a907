//! The RTSP camera of the network-camera tests (`tests/rtsp.rs`, `tests/rtsp_faults.rs`): a
//! gst-rtsp-server process (`tests/rtsp_server.py`), a camera config for it, and the checks every
//! clip from it gets (ffprobe durations, an ffmpeg decode).

use super::*;
use hindsight::config::{CameraConfig, RtspTransport, SourceConfig, SourceKind};
use hindsight::status::CameraState;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const USER: &str = "admin";
/// A password with characters that need percent-encoding in the URL.
pub const PASSWORD: &str = "s3cr@t:pw";
pub const PASSWORD_IN_URL: &str = "s3cr%40t%3Apw";

/// A gst-rtsp-server process serving `rtsp://127.0.0.1:{port}/cam`.
pub struct RtspServer {
    child: Child,
    pub port: u16,
    /// The server's stdout lines after its READY line (`CLIENT n`, `GONE n`, `KICKED`), read by
    /// a thread so a wait can have a deadline.
    lines: std::sync::mpsc::Receiver<String>,
    /// Commands to the server (`kick N`).
    commands: std::process::ChildStdin,
}

impl RtspServer {
    /// Start the server with these extra arguments and wait for its READY line.
    pub fn start(port: u16, args: &[&str]) -> RtspServer {
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
    pub fn kick(&mut self, n: usize) {
        use std::io::Write;
        writeln!(self.commands, "kick {n}").expect("write to the RTSP server");
        self.wait_line("KICKED");
    }

    /// Block until the server prints a line that starts with `prefix` (within 60 s); returns it.
    pub fn wait_line(&mut self, prefix: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        tokio::task::block_in_place(|| loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => {}
                Err(e) => panic!("the RTSP server printed no {prefix:?} line within 60 s ({e})"),
            }
        })
    }

    /// With the test login, digest (the default) or basic.
    pub fn with_login(port: u16, auth: &str, extra: &[&str]) -> RtspServer {
        let mut args = vec!["--user", USER, "--password", PASSWORD, "--auth", auth, "--gop-s", "2"];
        args.extend_from_slice(extra);
        Self::start(port, &args)
    }

    pub fn url(&self, user: &str, password: &str) -> String {
        format!("rtsp://{user}:{password}@127.0.0.1:{}/cam", self.port)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn rtsp_camera(id: &str, url: &str, transport: RtspTransport) -> CameraConfig {
    let src =
        SourceConfig { url: Some(url.into()), transport: Some(transport), ..SourceConfig::of_kind(SourceKind::Rtsp) };
    let mut c = CameraConfig::new(id, src);
    c.pre_s = 3.0;
    c.post_s = 2.0;
    c
}

pub async fn camera(addr: std::net::SocketAddr, id: &str) -> serde_json::Value {
    let (status, body) = get_json(addr, &format!("/api/cameras/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Wait until the camera is `running` with at least `secs` buffered.
pub async fn running_with(d: &hindsight::daemon::Daemon, secs: f64) {
    let cam = d.cameras[0].clone();
    wait_for("camera running with its pre-roll filled", Duration::from_secs(60), || {
        cam.status.state() == CameraState::Running && cam.preroll.stats().buffered.as_secs_f64() >= secs
    })
    .await;
}

/// Trigger, wait for the clip, and check it: `pre_s_actual` = pre ± half a frame at `fps`,
/// ffprobe's duration = pre + post ± one frame, ffmpeg decodes it without a complaint. Returns the
/// clip's metadata and its (width, height) as ffprobe reads them.
pub async fn clip_checked(
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
pub fn decoded(path: &std::path::Path) -> (u64, u64) {
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
pub fn packets(path: &std::path::Path) -> String {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts_time,duration_time,flags"])
        .args(["-show_entries", "stream=start_time,duration", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Codec name and (width, height) of the first video stream, as ffprobe reads them.
pub fn video_stream(path: &std::path::Path) -> (String, (u64, u64)) {
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
