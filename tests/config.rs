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

#[path = "config_cases/bad.rs"]
mod bad;
use bad::BAD;

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

#[test]
fn continuous_recording_on_the_root_filesystem_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    // A storage path that does not exist yet, under /var/lib: the root filesystem here, as a
    // Pi's SD card is.
    let text = |extra: &str| {
        format!(
            "[storage]\npath = \"/var/lib/hindsight-wear-test/x\"\n{extra}{}continuous = {{ segment_s = 10 }}\n",
            cam!()
        )
    };
    let path = dir.path().join("c.toml");
    std::fs::write(&path, text("")).unwrap();
    let run = check_config(&path, dir.path());
    assert_eq!(run.code, Some(0), "{}", run.both());
    assert!(run.stderr.contains("warning: camera[0].continuous: camera cam0 records all the time"), "{}", run.both());
    assert!(run.stderr.contains("storage.require_mount = true"), "{}", run.both());
    std::fs::write(&path, text("require_mount = true\n")).unwrap();
    let run = check_config(&path, dir.path());
    assert_eq!((run.code, run.stderr.as_str()), (Some(0), ""), "{}", run.both());
}
