//! The configuration as users meet it: the real `hindsight` binary run as
//! `hindsight check-config PATH` and `hindsight print-config [--board NAME]`; and `hindsight probe`
//! naming the GStreamer elements a machine lacks.
//!
//! Contract (docs/API.md, "Command line"): on success `check-config` prints the effective config as TOML and
//! exits 0; on error it prints `PATH: key.path: what is wrong` and exits 2.

mod common;

use common::bin::BIN;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// `check-config` is pure data work; anything slower than this is a hang (e.g. it started the
/// daemon or opened a camera).
const TIMEOUT: Duration = Duration::from_secs(60);

/// What one run of the binary produced.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// stdout and stderr, for failure messages.
    fn both(&self) -> String {
        format!("--- stdout ---\n{}--- stderr ---\n{}", self.stdout, self.stderr)
    }

    /// Every output line, from stdout and from stderr.
    fn lines(&self) -> impl Iterator<Item = &str> {
        self.stdout.lines().chain(self.stderr.lines())
    }
}

/// Run `hindsight ARGS` in `cwd` (a scratch directory, so nothing lands in the repo), with a
/// timeout.
fn hindsight<S: AsRef<OsStr>>(args: &[S], cwd: &Path) -> Run {
    let out = common::bin::run_with_timeout(common::bin::hindsight().args(args).current_dir(cwd), TIMEOUT);
    Run { code: out.code, stdout: out.stdout, stderr: out.stderr }
}

fn check_config(path: &Path, cwd: &Path) -> Run {
    hindsight(&[OsStr::new("check-config"), path.as_os_str()], cwd)
}

fn board_configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("board-configs")
}

/// A camera that is valid on its own, for the cases that break something else.
macro_rules! cam {
    () => {
        "[[camera]]\nid = \"cam0\"\nsource = { kind = \"test\", width = 640, height = 480, fps = 15 }\n"
    };
}

/// One wrong config file.
struct Bad {
    /// File name (also names the case in failure messages).
    name: &'static str,
    /// The file's text.
    text: &'static str,
    /// The key path the error must name; empty when there is no key (TOML syntax errors).
    key: &'static str,
    /// Text the error line must also contain, if any.
    mentions: Option<&'static str>,
}

const BAD: &[Bad] = &[
    Bad {
        name: "fps-zero",
        text: "[[camera]]\nid = \"cam0\"\nsource = { kind = \"test\", width = 640, height = 480, fps = 0 }\n",
        key: "camera[0].source.fps",
        mentions: None,
    },
    Bad {
        name: "id-not-a-slug",
        text: "[[camera]]\nid = \"Front Door\"\nsource = { kind = \"test\", width = 640, height = 480, fps = 15 }\n",
        key: "camera[0].id",
        mentions: Some("Front Door"),
    },
    Bad {
        name: "duplicate-ids",
        text: concat!(cam!(), cam!()),
        key: "camera[1].id",
        mentions: Some("cam0"),
    },
    Bad {
        name: "listen-without-port",
        text: concat!("[http]\nlisten = \"0.0.0.0\"\n", cam!()),
        key: "http.listen",
        mentions: None,
    },
    Bad {
        name: "auth-off-on-the-network",
        text: concat!("[http]\nlisten = \"0.0.0.0:8443\"\nauth = \"off\"\n", cam!()),
        key: "http.auth",
        mentions: Some("loopback"),
    },
    Bad {
        name: "tls-not-a-switch",
        text: concat!("[http]\ntls = \"yes\"\n", cam!()),
        key: "http.tls",
        mentions: None,
    },
    Bad {
        name: "cert-without-key",
        text: concat!("[http]\nlisten = \"0.0.0.0:8443\"\ncert_file = \"/c.pem\"\n", cam!()),
        key: "http.key_file",
        mentions: Some("cert_file"),
    },
    Bad {
        name: "redirect-without-tls",
        text: concat!("[http]\ntls = \"off\"\nredirect_listen = \"127.0.0.1:8081\"\n", cam!()),
        key: "http.redirect_listen",
        mentions: Some("HTTPS"),
    },
    Bad {
        name: "mqtt-url-http",
        text: concat!("[mqtt]\nurl = \"http://x\"\n", cam!()),
        key: "mqtt.url",
        mentions: None,
    },
    Bad {
        name: "mqtt-base-topic-wildcard",
        text: concat!("[mqtt]\nbase_topic = \"home/#\"\n", cam!()),
        key: "mqtt.base_topic",
        mentions: None,
    },
    Bad {
        name: "mqtt-listen-no-port",
        text: concat!("[mqtt]\nlisten = \"localhost\"\n", cam!()),
        key: "mqtt.listen",
        mentions: Some("localhost"),
    },
    Bad {
        name: "mqtt-ca-file-without-tls",
        text: concat!("[mqtt]\nurl = \"mqtt://h:1883\"\nca_file = \"/x.pem\"\n", cam!()),
        key: "mqtt.ca_file",
        mentions: Some("mqtts"),
    },
    Bad {
        // A serde error inside ByteSize: the key comes from serde_path_to_error.
        name: "max-bytes-parsecs",
        text: concat!("[storage]\nmax_bytes = \"12 parsecs\"\n", cam!()),
        key: "storage.max_bytes",
        mentions: Some("parsecs"),
    },
    Bad {
        // deny_unknown_fields: serde_path_to_error records the offending key itself (it
        // captures the key before the field visitor rejects it), so the path ends in it.
        name: "unknown-camera-key",
        text: concat!(cam!(), "colour = \"red\"\n"),
        key: "camera[0].colour",
        mentions: Some("colour"),
    },
    Bad {
        name: "unknown-storage-key",
        text: concat!("[storage]\nsize = \"1GiB\"\n", cam!()),
        key: "storage.size",
        mentions: Some("size"),
    },
    Bad {
        name: "v4l2-without-device",
        text: "[[camera]]\nid = \"cam0\"\nsource = { kind = \"v4l2\", format = \"MJPG\", width = 1280, height = 720, fps = 30 }\n",
        key: "camera[0].source.device",
        mentions: None,
    },
    Bad {
        name: "v4l2-device-not-in-dev",
        text: "[[camera]]\nid = \"cam0\"\nsource = { kind = \"v4l2\", device = \"video0\" }\n",
        key: "camera[0].source.device",
        mentions: Some("video0"),
    },
    Bad {
        name: "v4l2-format-hevc",
        text: "[[camera]]\nid = \"cam0\"\nsource = { kind = \"v4l2\", device = \"/dev/video0\", format = \"HEVC\", width = 1280, height = 720, fps = 30 }\n",
        key: "camera[0].source.format",
        mentions: Some("HEVC"),
    },
    Bad {
        name: "pipeline-with-appsink",
        text: "[[camera]]\nid = \"cam0\"\nsource = { kind = \"gstreamer\", pipeline = \"videotestsrc ! video/x-raw,width=640,height=480 ! appsink\" }\n",
        key: "camera[0].source.pipeline",
        mentions: None,
    },
    Bad {
        name: "gstreamer-with-width",
        text: "[[camera]]\nid = \"cam0\"\nsource = { kind = \"gstreamer\", pipeline = \"videotestsrc ! video/x-raw\", width = 640 }\n",
        key: "camera[0].source.width",
        mentions: None,
    },
    Bad {
        name: "test-with-pipeline",
        text: "[[camera]]\nid = \"cam0\"\nsource = { kind = \"test\", pipeline = \"videotestsrc\" }\n",
        key: "camera[0].source.pipeline",
        mentions: None,
    },
    Bad {
        name: "unknown-source-kind",
        text: "[[camera]]\nid = \"cam0\"\nsource = { kind = \"onvif\" }\n",
        key: "camera[0].source.kind",
        mentions: Some("onvif"),
    },
    Bad {
        name: "rtsp-without-url",
        text: "[[camera]]\nid = \"cam0\"\nsource = { kind = \"rtsp\" }\n",
        key: "camera[0].source.url",
        mentions: Some("rtsp://"),
    },
    Bad {
        name: "rtsp-url-with-http-scheme",
        text: "[[camera]]\nid = \"cam0\"\nsource = { kind = \"rtsp\", url = \"http://admin:secret@10.0.0.5/\" }\n",
        key: "camera[0].source.url",
        mentions: Some("rtsp://"),
    },
    Bad {
        name: "rtsp-url-without-host",
        text: "[[camera]]\nid = \"cam0\"\nsource = { kind = \"rtsp\", url = \"rtsp://admin:secret@/live\" }\n",
        key: "camera[0].source.url",
        mentions: Some("no host"),
    },
    Bad {
        name: "rtsp-url-with-a-space",
        text: "[[camera]]\nid = \"cam0\"\nsource = { kind = \"rtsp\", url = \"rtsp://cam/live stream\" }\n",
        key: "camera[0].source.url",
        mentions: Some("spaces"),
    },
    Bad {
        name: "rtsp-bad-transport",
        text: "[[camera]]\nid = \"cam0\"\nsource = { kind = \"rtsp\", url = \"rtsp://cam/live\", transport = \"quic\" }\n",
        key: "camera[0].source.transport",
        mentions: Some("quic"),
    },
    Bad {
        name: "rtsp-with-width",
        text: "[[camera]]\nid = \"cam0\"\nsource = { kind = \"rtsp\", url = \"rtsp://cam/live\", width = 640 }\n",
        key: "camera[0].source.width",
        mentions: Some("the camera sets them"),
    },
    Bad {
        name: "http-mjpeg-with-rtsp-url",
        text: "[[camera]]\nid = \"cam0\"\nsource = { kind = \"http_mjpeg\", url = \"rtsp://cam/live\" }\n",
        key: "camera[0].source.url",
        mentions: Some("http://"),
    },
    Bad {
        name: "preview-url-with-ftp-scheme",
        text: "[[camera]]\nid = \"cam0\"\npreview_url = \"ftp://admin:secret@cam/sub\"\nsource = { kind = \"rtsp\", url = \"rtsp://cam/live\" }\n",
        key: "camera[0].preview_url",
        mentions: Some("rtsp://"),
    },
    Bad {
        name: "preview-url-for-a-phone",
        text: "[[camera]]\nid = \"cam0\"\npreview_url = \"rtsp://cam/sub\"\nsource = { kind = \"browser\" }\n",
        key: "camera[0].preview_url",
        mentions: Some("phone"),
    },
    Bad {
        name: "passthrough-of-a-test-pattern",
        text: "[[camera]]\nid = \"cam0\"\nencoder = \"passthrough\"\nsource = { kind = \"test\" }\n",
        key: "camera[0].encoder",
        mentions: Some("needs an H.264 source"),
    },
    Bad {
        name: "camera-without-id",
        text: "[[camera]]\nsource = { kind = \"test\" }\n",
        key: "camera[0]",
        mentions: Some("id"),
    },
    Bad {
        name: "max-clip-shorter-than-pre-plus-post",
        text: concat!(cam!(), "pre_s = 30\npost_s = 30\nmax_clip_s = 45\n"),
        key: "camera[0].max_clip_s",
        mentions: None,
    },
    Bad {
        name: "pre-too-long",
        text: concat!(cam!(), "pre_s = 400\nmax_clip_s = 1000\n"),
        key: "camera[0].pre_s",
        mentions: None,
    },
    Bad {
        name: "keyframe-interval-zero",
        text: concat!(cam!(), "keyframe_interval_s = 0\n"),
        key: "camera[0].keyframe_interval_s",
        mentions: None,
    },
    Bad {
        name: "bitrate-too-low",
        text: concat!(cam!(), "bitrate_kbps = 50\n"),
        key: "camera[0].bitrate_kbps",
        mentions: None,
    },
    Bad {
        name: "encoder-not-an-element",
        text: concat!(cam!(), "encoder = \"x264enc ! fakesink\"\n"),
        key: "camera[0].encoder",
        mentions: None,
    },
    Bad {
        name: "ring-frames-one",
        text: concat!(cam!(), "ring_frames = 1\n"),
        key: "camera[0].ring_frames",
        mentions: None,
    },
    Bad {
        name: "preview-width-tiny",
        text: concat!(cam!(), "preview_width = 8\n"),
        key: "camera[0].preview_width",
        mentions: None,
    },
    Bad {
        name: "preview-fps-zero",
        text: concat!(cam!(), "preview_fps = 0\n"),
        key: "camera[0].preview_fps",
        mentions: None,
    },
    Bad {
        name: "preview-encoder-pipeline",
        text: concat!(cam!(), "preview_encoder = \"jpegenc quality=50\"\n"),
        key: "camera[0].preview_encoder",
        mentions: Some("jpegenc quality=50"),
    },
    Bad {
        name: "preroll-cap-tiny",
        text: concat!(cam!(), "preroll_max_bytes = \"10KiB\"\n"),
        key: "camera[0].preroll_max_bytes",
        mentions: None,
    },
    Bad {
        name: "unknown-board",
        text: concat!("board = \"rpi9\"\n", cam!()),
        key: "board",
        mentions: Some("rpi9"),
    },
    Bad {
        // The board's defaults are merged in, but the error still names the user's file and
        // the user's camera.
        name: "board-user-camera-bad-bitrate",
        text: "board = \"rpi4\"\n[[camera]]\nid = \"door\"\nbitrate_kbps = 10\n",
        key: "camera[0].bitrate_kbps",
        mentions: None,
    },
    Bad {
        name: "auto-encoders-empty",
        text: concat!("auto_encoders = []\n", cam!()),
        key: "auto_encoders",
        mentions: None,
    },
    Bad {
        name: "toml-syntax-error",
        text: "[storage\npath = \"/tmp/x\"\n",
        key: "",
        mentions: None,
    },
    Bad {
        name: "storage-max-bytes-too-small",
        text: concat!("[storage]\nmax_bytes = \"1MiB\"\n", cam!()),
        key: "storage.max_bytes",
        mentions: None,
    },
    Bad {
        name: "min-free-percent-95",
        text: concat!("[storage]\nmin_free_percent = 95\n", cam!()),
        key: "storage.min_free_percent",
        mentions: None,
    },
    Bad {
        name: "mqtt-password-without-username",
        text: concat!("[mqtt]\npassword = \"secret\"\n", cam!()),
        key: "mqtt.password",
        mentions: None,
    },
    Bad {
        // Anyone on the LAN could read every topic and trigger: the rule http.auth follows.
        name: "mqtt-embedded-broker-off-loopback-without-login",
        text: concat!("[mqtt]\nlisten = \"0.0.0.0:1883\"\n", cam!()),
        key: "mqtt.listen",
        mentions: Some("mqtt.username"),
    },
    Bad {
        name: "mqtt-embedded-broker-off-loopback-short-password",
        text: concat!("[mqtt]\nlisten = \"0.0.0.0:1883\"\nusername = \"hindsight\"\npassword = \"short\"\n", cam!()),
        key: "mqtt.password",
        mentions: None,
    },
    Bad {
        name: "mqtt-user-short-password",
        text: concat!("[[mqtt.users]]\nusername = \"sensor\"\npassword = \"short\"\n", cam!()),
        key: "mqtt.users[0].password",
        mentions: None,
    },
    Bad {
        name: "no-camera",
        text: "[http]\nlisten = \"127.0.0.1:8080\"\n",
        key: "camera",
        mentions: None,
    },
];

#[test]
fn wrong_configs_name_file_and_key_and_exit_2() {
    assert!(BAD.len() >= 18);
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for case in BAD {
        let path = dir.path().join(format!("{}.toml", case.name));
        std::fs::write(&path, case.text).unwrap();
        let run = check_config(&path, dir.path());
        let prefix = if case.key.is_empty() {
            format!("{}: ", path.display())
        } else {
            format!("{}: {}: ", path.display(), case.key)
        };
        let line = run.lines().find(|l| l.starts_with(&prefix));
        let problem = match (run.code, line) {
            (Some(2), Some(line)) => match case.mentions {
                Some(word) if !line.contains(word) => Some(format!("the error line does not mention {word:?}")),
                _ => None,
            },
            (Some(2), None) => Some(format!("no line starts with {prefix:?}")),
            (code, _) => Some(format!("exit code {code:?}, expected 2")),
        };
        if let Some(problem) = problem {
            failures.push(format!(
                "case {:?} (expected key {:?}): {problem}\n--- file ---\n{}{}",
                case.name,
                case.key,
                case.text,
                run.both()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} wrong configs misreported:\n\n{}",
        failures.len(),
        BAD.len(),
        failures.join("\n")
    );
}

#[test]
fn missing_file_exits_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("does-not-exist.toml");
    let run = check_config(&path, dir.path());
    assert_eq!(run.code, Some(2), "{}", run.both());
    let prefix = format!("{}: ", path.display());
    assert!(run.lines().any(|l| l.starts_with(&prefix)), "no line starts with {prefix:?}\n{}", run.both());
}

/// `check-config` accepts `path`, and its printed effective config is itself accepted.
fn assert_valid_and_round_trips(path: &Path, dir: &Path) -> Run {
    let run = check_config(path, dir);
    assert_eq!(run.code, Some(0), "{} should be valid\n{}", path.display(), run.both());
    assert!(run.stdout.contains("[[camera]]"), "{}: effective config not printed\n{}", path.display(), run.both());
    let again = dir.join(format!("effective-{}", path.file_name().unwrap().to_string_lossy()));
    std::fs::write(&again, &run.stdout).unwrap();
    let rerun = check_config(&again, dir);
    assert_eq!(rerun.code, Some(0), "effective config of {} is not valid itself\n{}", path.display(), rerun.both());
    run
}

#[test]
fn every_board_config_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let mut names: Vec<String> = std::fs::read_dir(board_configs_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for expected in
        ["default", "rpi4", "rpi5", "rpi-zero2w", "jetson-nano", "jetson-orin-nx", "jetson-orin-nano", "x86-dev"]
    {
        assert!(names.iter().any(|n| n == expected), "board-configs/{expected}.toml is missing (have {names:?})");
    }
    for name in &names {
        let path = board_configs_dir().join(format!("{name}.toml"));
        let run = assert_valid_and_round_trips(&path, dir.path());
        // A board file is the board's defaults: it must not itself point at a board.
        assert!(
            !run.stdout.lines().any(|l| l.trim_start().starts_with("board")),
            "{} sets `board`; board files must not\n{}",
            path.display(),
            run.stdout
        );
    }
}

#[test]
fn printed_default_config_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let run = hindsight(&["print-config"], dir.path());
    assert_eq!(run.code, Some(0), "{}", run.both());
    assert!(run.stdout.lines().any(|l| l.starts_with('#')), "print-config should be commented\n{}", run.stdout);
    assert!(run.stdout.contains("\"cam0\""), "default camera cam0 missing\n{}", run.stdout);
    let path = dir.path().join("printed.toml");
    std::fs::write(&path, &run.stdout).unwrap();
    assert_valid_and_round_trips(&path, dir.path());
}

#[test]
fn printed_board_configs_are_valid() {
    let dir = tempfile::tempdir().unwrap();
    for board in ["rpi4", "rpi5", "rpi-zero2w", "jetson-nano", "jetson-orin-nx", "jetson-orin-nano", "x86-dev"] {
        let run = hindsight(&["print-config", "--board", board], dir.path());
        assert_eq!(run.code, Some(0), "print-config --board {board}\n{}", run.both());
        let path = dir.path().join(format!("printed-{board}.toml"));
        std::fs::write(&path, &run.stdout).unwrap();
        assert_valid_and_round_trips(&path, dir.path());
    }
}

#[test]
fn rpi5_board_encodes_in_software() {
    let dir = tempfile::tempdir().unwrap();
    let run = hindsight(&["print-config", "--board", "rpi5"], dir.path());
    assert_eq!(run.code, Some(0), "{}", run.both());
    assert!(run.stdout.contains("x264enc"), "the Pi 5 has no H.264 hardware encoder: expected x264enc\n{}", run.stdout);
}

#[test]
fn board_defaults_merge_under_user_file() {
    let dir = tempfile::tempdir().unwrap();

    // A user camera without a source takes the board's camera as its template.
    let path = dir.path().join("rpi4-door.toml");
    std::fs::write(&path, "board = \"rpi4\"\n\n[[camera]]\nid = \"door\"\n").unwrap();
    let run = assert_valid_and_round_trips(&path, dir.path());
    assert!(run.stdout.contains("v4l2h264enc"), "rpi4 encoders not merged in\n{}", run.stdout);
    assert!(run.stdout.contains("\"door\""), "user camera id lost\n{}", run.stdout);
    assert!(run.stdout.contains("libcamerasrc"), "board camera template not used\n{}", run.stdout);
    assert!(!run.stdout.contains("\"cam0\""), "board camera should be replaced by the user's\n{}", run.stdout);

    // The user's keys win; a user `source` replaces the board's source whole.
    let path = dir.path().join("rpi4-usb.toml");
    std::fs::write(
        &path,
        concat!(
            "board = \"rpi4\"\n\n[storage]\npath = \"/srv/clips\"\n\n[[camera]]\nid = \"porch\"\n",
            "source = { kind = \"v4l2\", device = \"/dev/video0\", format = \"MJPG\", width = 1280, height = 720, fps = 30 }\n",
            "bitrate_kbps = 3000\n",
        ),
    )
    .unwrap();
    let run = assert_valid_and_round_trips(&path, dir.path());
    assert!(run.stdout.contains("v4l2h264enc"), "rpi4 encoders not merged in\n{}", run.stdout);
    assert!(run.stdout.contains("/srv/clips"), "user storage.path lost\n{}", run.stdout);
    assert!(run.stdout.contains("retention_days"), "board storage keys lost\n{}", run.stdout);
    assert!(run.stdout.contains("/dev/video0"), "user source lost\n{}", run.stdout);
    assert!(!run.stdout.contains("libcamerasrc"), "board source mixed into the user's\n{}", run.stdout);
    assert!(run.stdout.contains("3000"), "user bitrate lost\n{}", run.stdout);
}

/// `hindsight probe --json` with GStreamer's plugin path set to `plugins` (None: the machine's).
fn probe_json(plugins: Option<&Path>, cwd: &Path) -> serde_json::Value {
    let mut cmd = Command::new(BIN);
    cmd.args(["probe", "--json"]).current_dir(cwd).env_remove("RUST_LOG");
    if let Some(dir) = plugins {
        cmd.env("GST_PLUGIN_SYSTEM_PATH", dir)
            .env("GST_PLUGIN_PATH", dir)
            .env("GST_REGISTRY", cwd.join("registry.bin"));
    }
    let out = cmd.output().expect("run hindsight probe");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("probe --json prints JSON")
}

#[test]
fn probe_names_missing_gstreamer_elements_and_their_packages() {
    let dir = tempfile::tempdir().unwrap();
    // The test machine has every needed element (scripts/deps installs them): the names are right.
    let here = probe_json(None, dir.path());
    assert_eq!(here["missing"], serde_json::json!([]), "{here}");
    // Without plugins, every one is missing, each with what it is for and its package.
    let empty = dir.path().join("no-plugins");
    std::fs::create_dir(&empty).unwrap();
    let bare = probe_json(Some(&empty), dir.path());
    let missing = bare["missing"].as_array().expect("missing is a list");
    let names: Vec<&str> = missing.iter().filter_map(|m| m["element"].as_str()).collect();
    let want: Vec<&str> = hindsight::probe::NEEDED.iter().map(|n| n.element).collect();
    assert_eq!(names, want, "{bare}");
    let poster = missing.iter().find(|m| m["element"] == "avdec_h264").unwrap();
    assert_eq!(poster["package"], "gstreamer1.0-libav");
    assert!(poster["needed_for"].as_str().unwrap().contains("posters"), "{poster}");
    assert_eq!(bare["h264_encoders"], serde_json::json!([]), "{bare}");
}
