//! systemd readiness against a fake NOTIFY_SOCKET: the real binary sends READY=1 once the
//! camera runs and HTTP is bound, then WATCHDOG=1 pings; SIGTERM drains (STOPPING=1) and exits 0.
//! With `storage.require_mount` and the disk missing it exits 1 (restarted) and writes nothing.
//! The packaged unit bounds memory and the packaged config is private.

mod common;

use common::bin::{hindsight, Proc};
use std::os::unix::net::UnixDatagram;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn recv_until(sock: &UnixDatagram, what: &str, timeout: Duration, seen: &mut Vec<String>) -> String {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no {what} within {timeout:?}; got {seen:?}");
        sock.set_read_timeout(Some(left)).unwrap();
        match sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                seen.push(msg.clone());
                if msg.lines().any(|l| l == what) {
                    return msg;
                }
            }
            Err(e) => panic!("no {what} within {timeout:?} ({e}); got {seen:?}"),
        }
    }
}

#[test]
fn ready_then_watchdog_then_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let cfg = dir.path().join("h.toml");
    std::fs::write(
        &cfg,
        format!(
            "[storage]\npath = \"{}/data\"\nmin_free_percent = 0\n[http]\nlisten = \"127.0.0.1:0\"\n[[camera]]\nid = \"cam0\"\nencoder = \"x264enc\"\npre_s = 2\npost_s = 1\nsource = {{ kind = \"test\", width = 320, height = 240, fps = 15 }}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let mut child = Proc::spawn(
        hindsight()
            .args(["run", "--config"])
            .arg(&cfg)
            .env("NOTIFY_SOCKET", &sock_path)
            .env("WATCHDOG_USEC", "1000000")
            .env_remove("WATCHDOG_PID")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let mut seen = Vec::new();
    let ready = recv_until(&sock, "READY=1", Duration::from_secs(60), &mut seen);
    assert!(ready.contains("STATUS=cam0 running"), "{ready}");
    // No transparent huge pages (x264's madvised 2 MiB pages cost ~6 MiB of RSS; see main.rs).
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.pid())).expect("/proc/PID/status");
    assert!(status.lines().any(|l| l.split_whitespace().eq(["THP_enabled:", "0"])), "THP still on: {status}");
    assert!(!seen[..seen.len() - 1].iter().any(|m| m.contains("WATCHDOG=1")), "watchdog before ready: {seen:?}");
    recv_until(&sock, "WATCHDOG=1", Duration::from_secs(10), &mut seen);
    child.signal(nix::sys::signal::Signal::SIGTERM);
    recv_until(&sock, "STOPPING=1", Duration::from_secs(10), &mut seen);
    let status = child.wait_timeout(Duration::from_secs(30)).expect("daemon did not exit after SIGTERM");
    assert!(status.success(), "drain exits 0, got {status:?}");
}

/// Every entry under `dir`, recursively.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
        out.push(e.path());
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        }
    }
    out
}

/// `storage.require_mount` with the disk missing (`storage.path` a plain directory, not a mount
/// point) and login + HTTPS on: the daemon exits 1 (not 2: systemd restarts it until the disk is
/// mounted) naming the key, and writes nothing there — no generated password, no certificate;
/// `hindsight token create` refuses too.
#[test]
fn missing_storage_mount_creates_no_state_and_exits_for_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let cfg = dir.path().join("h.toml");
    std::fs::write(
        &cfg,
        format!(
            "[storage]\npath = \"{}\"\nrequire_mount = true\nmin_free_percent = 0\n[http]\nlisten = \"127.0.0.1:0\"\ntls = \"on\"\nauth = \"on\"\n[mqtt]\nenabled = false\n[[camera]]\nid = \"cam0\"\nencoder = \"x264enc\"\npre_s = 2\npost_s = 1\nsource = {{ kind = \"test\", width = 320, height = 240, fps = 15 }}\n",
            data.display()
        ),
    )
    .unwrap();
    let mut child = Proc::spawn_reading_stderr(
        hindsight().args(["run", "--config"]).arg(&cfg).env_remove("NOTIFY_SOCKET").stdout(Stdio::null()),
    );
    let status = child.wait_timeout(Duration::from_secs(30));
    let made = walk(&data);
    assert!(made.is_empty(), "written under the unmounted storage.path: {made:?}");
    let status = status.expect("the daemon should exit when the storage disk is missing");
    assert_eq!(status.code(), Some(1), "exit 1 so that systemd restarts it (2 is a config error)");
    let (line, _) = child.until("storage.require_mount");
    assert!(line.contains(&*data.to_string_lossy()), "{line}");

    let out = common::bin::run_with_timeout(
        hindsight().args(["token", "create", "ha", "--config"]).arg(&cfg),
        Duration::from_secs(30),
    );
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("storage.require_mount"), "{}", out.stderr);
    let made = walk(&data);
    assert!(made.is_empty(), "token create wrote under the unmounted storage.path: {made:?}");
}

fn repo_file(rel: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

/// A `Key=value` of the unit, as bytes for sizes like `192M`.
fn unit_bytes(unit: &str, key: &str) -> u64 {
    let v = unit
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("hindsight.service has no {key}="));
    let (num, unit_char) = v.split_at(v.len() - 1);
    let mult = match unit_char {
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => panic!("{key}={v}: expected a size with K, M or G"),
    };
    num.parse::<u64>().unwrap() * mult
}

/// What the packages install: the unit bounds the daemon's memory (MemoryHigh below MemoryMax,
/// MemoryMax well under the 512 MB of the smallest board, above the largest board's steady RSS)
/// and starts after time-sync.target; the config, which can hold passwords, is 0640 and given
/// to root:hindsight by the .deb's postinst (before the unit is started) and the Yocto recipe.
#[test]
fn the_unit_bounds_memory_and_the_packaged_config_is_private() {
    let unit = repo_file("systemd/hindsight.service");
    assert!(
        unit.lines().any(|l| l.starts_with("After=") && l.split_whitespace().any(|u| u.ends_with("time-sync.target"))),
        "no After=time-sync.target"
    );
    let (high, max) = (unit_bytes(&unit, "MemoryHigh"), unit_bytes(&unit, "MemoryMax"));
    assert!(high < max && max <= 384 << 20 && high >= 128 << 20, "MemoryHigh {high}, MemoryMax {max}");

    let cargo = repo_file("Cargo.toml");
    assert!(
        cargo.contains(r#"["board-configs/rpi4.toml", "etc/hindsight/hindsight.toml", "640"]"#),
        "the .deb must pack hindsight.toml 0640"
    );
    let postinst = repo_file("debian/postinst");
    let chown = postinst.find(r#"chown "0:$gid" "$conf""#).expect("postinst gives the config to root:hindsight");
    assert!(postinst.contains("chmod 0640 \"$conf\""));
    assert!(chown < postinst.find("#DEBHELPER#").unwrap(), "before #DEBHELPER# starts the unit");
    let recipe = repo_file("yocto-layer/meta-hindsight/recipes-multimedia/hindsight/hindsight_git.bb");
    assert!(recipe.contains(
        "install -m 0640 ${S}/board-configs/${HINDSIGHT_BOARD}.toml ${D}${sysconfdir}/hindsight/hindsight.toml"
    ));
    assert!(recipe.contains("chown root:hindsight ${D}${sysconfdir}/hindsight/hindsight.toml"));
}
