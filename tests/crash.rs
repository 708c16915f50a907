//! Faults against the real binary: `kill -9` during post-roll (the partial clip is recovered at the
//! next start and plays; finished clips are untouched; the index matches the files), and a full
//! disk (a small tmpfs: retention frees space, and when nothing can be freed the clip is refused
//! with a clear error while the daemon keeps running; filled up mid-clip, that clip fails and
//! triggers are refused until there is room again); `kill -9` during continuous recording loses at
//! most `flush_s` (the torn segment is truncated to its last fragment and indexed at the next start).

mod common;

use common::bin::{free_port, hindsight, Proc};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Daemon {
    child: Proc,
    base: String,
}

impl Daemon {
    fn start(config: &Path) -> Daemon {
        let port = free_port();
        let text = std::fs::read_to_string(config).unwrap();
        let text = regex_free_replace_listen(&text, port);
        std::fs::write(config, text).unwrap();
        let log = std::fs::File::create(config.with_extension("log")).unwrap();
        let child = Proc::spawn(hindsight().args(["run", "--config"]).arg(config).stdout(Stdio::null()).stderr(log));
        let d = Daemon { child, base: format!("http://127.0.0.1:{port}") };
        d.wait_running();
        d
    }

    fn wait_running(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, v)) = self.get("/api/health") {
                if v["status"] == "ok" {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "daemon not healthy within 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn get(&self, path: &str) -> Result<(u16, serde_json::Value), String> {
        http("GET", &format!("{}{path}", self.base), "")
    }

    fn post(&self, path: &str, body: &str) -> (u16, serde_json::Value) {
        http("POST", &format!("{}{path}", self.base), body).expect("daemon answers")
    }

    fn wait_clip(&self, id: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, v)) = self.get(&format!("/api/clips/{id}")) {
                return v;
            }
            assert!(Instant::now() < deadline, "clip {id} not saved");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill9(mut self) {
        self.child.kill9();
    }

    fn stop(mut self) {
        let status = self.child.terminate();
        assert!(status.success(), "clean exit after SIGTERM: {status:?}");
    }
}

fn regex_free_replace_listen(text: &str, port: u16) -> String {
    text.lines()
        .map(|l| {
            if l.starts_with("listen = \"127.0.0.1:") {
                format!("listen = \"127.0.0.1:{port}\"")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Minimal blocking HTTP/1.1 client (the tests must not depend on the daemon's runtime).
fn http(method: &str, url: &str, body: &str) -> Result<(u16, serde_json::Value), String> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").ok_or("bad url")?;
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let mut s = std::net::TcpStream::connect(host).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf);
    let status: u16 = text.split(' ').nth(1).and_then(|c| c.parse().ok()).ok_or("no status")?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    // Bodies may be chunked: take the JSON between the first '{' and the last '}'.
    let json = match (body.find('{'), body.rfind('}')) {
        (Some(a), Some(b)) if b >= a => serde_json::from_str(&body[a..=b]).unwrap_or(serde_json::Value::Null),
        _ => serde_json::Value::Null,
    };
    Ok((status, json))
}

fn write_config(dir: &Path, storage: &Path, source: &str, extra: &str) -> PathBuf {
    let cfg = dir.join("hindsight.toml");
    std::fs::write(
        &cfg,
        format!(
            "[storage]\npath = \"{}\"\n{extra}\n[http]\nlisten = \"127.0.0.1:1\"\n[mqtt]\nenabled = false\n\
             [[camera]]\nid = \"cam0\"\nencoder = \"x264enc\"\npre_s = 1\npost_s = 1\nmax_clip_s = 120\nsource = {source}\n",
            storage.display()
        ),
    )
    .unwrap();
    cfg
}

fn ffprobe_ok(path: &Path) -> f64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=duration", "-of", "default=nw=1:nk=1"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success() && out.stderr.is_empty(), "ffprobe: {}", String::from_utf8_lossy(&out.stderr));
    let dec = Command::new("ffmpeg").args(["-v", "error", "-i"]).arg(path).args(["-f", "null", "-"]).output().unwrap();
    assert!(dec.status.success() && dec.stderr.is_empty(), "ffmpeg decode: {}", String::from_utf8_lossy(&dec.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn files_with(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(suffix) {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn kill_9_during_post_roll_then_restart_recovers_the_partial_clip() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage");
    let cfg = write_config(
        dir.path(),
        &storage,
        "{ kind = \"test\", width = 320, height = 240, fps = 30 }",
        "min_free_percent = 0",
    );
    let d = Daemon::start(&cfg);

    // A finished clip first.
    let (status, a) = d.post("/api/cameras/cam0/trigger", r#"{"label":"finished"}"#);
    assert_eq!(status, 202, "{a}");
    let a = d.wait_clip(a["clip_id"].as_str().unwrap());
    let a_path = storage.join(a["path"].as_str().unwrap());
    let a_bytes = std::fs::read(&a_path).unwrap();

    // A long clip, killed during its post-roll once a few fragments are on disk.
    let (status, b) = d.post("/api/cameras/cam0/trigger", r#"{"post_s":60,"label":"cut"}"#);
    assert_eq!(status, 202, "{b}");
    let b_id = b["clip_id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let parts = files_with(&storage, ".mp4.part");
        // ≥ 3 s of post-roll written (one fragment per 1 s GOP).
        if parts.len() == 1 && d.get(&format!("/api/clips/{b_id}")).map(|r| r.0) == Ok(404) {
            let meta = std::fs::metadata(&parts[0]).unwrap();
            if meta.modified().unwrap().elapsed().unwrap_or_default() < Duration::from_secs(5) && meta.len() > 40_000 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "no growing .part file");
        std::thread::sleep(Duration::from_millis(200));
    }
    d.kill9();
    assert_eq!(files_with(&storage, ".mp4.part").len(), 1);

    let d = Daemon::start(&cfg);
    let (status, b) = d.get(&format!("/api/clips/{b_id}")).unwrap();
    assert_eq!(status, 200, "the partial clip is indexed after restart: {b}");
    assert_eq!(b["partial"], true);
    assert_eq!(b["label"], "cut", "the label survives the crash");
    let b_path = storage.join(b["path"].as_str().unwrap());
    let dur = ffprobe_ok(&b_path);
    assert!(dur > 2.0, "recovered clip plays for {dur} s");
    assert!((b["duration_s"].as_f64().unwrap() - dur).abs() < 0.1, "{b} vs ffprobe {dur}");
    assert!(files_with(&storage, ".mp4.part").is_empty());
    let poster = std::fs::read(b_path.with_extension("jpg")).expect("a poster for the recovered clip");
    assert_eq!(&poster[..2], &[0xFF, 0xD8]);
    assert_eq!(std::fs::read(&a_path).unwrap(), a_bytes, "finished clip untouched");
    ffprobe_ok(&a_path);
    // Index and files agree: every entry has its file, every file has its entry.
    let (_, list) = d.get("/api/clips?limit=500").unwrap();
    let listed: Vec<String> =
        list["clips"].as_array().unwrap().iter().map(|c| c["path"].as_str().unwrap().to_string()).collect();
    let mut on_disk: Vec<String> = files_with(&storage, ".mp4")
        .iter()
        .map(|p| p.strip_prefix(&storage).unwrap().to_string_lossy().into_owned())
        .collect();
    let mut listed_sorted = listed.clone();
    listed_sorted.sort();
    on_disk.sort();
    assert_eq!(listed_sorted, on_disk);
    d.stop();
}

/// Unmounts on drop, so a failing test leaves no mount behind.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let ok = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(path).status();
        assert!(ok.is_ok_and(|s| s.success()), "mounting a tmpfs needs root (CI runs as root)");
        Tmpfs(path.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The config of a camera that really fills a disk (snow at `bitrate_kbps`, 320×240@30) with
/// storage on the tmpfs at `storage` (`require_mount`) and `storage_extra` settings.
fn snow_on_tmpfs(dir: &Path, storage: &Path, storage_extra: &str, bitrate_kbps: u32) -> PathBuf {
    let source = "{ kind = \"gstreamer\", pipeline = \"videotestsrc is-live=true pattern=snow ! video/x-raw,format=I420,width=320,height=240,framerate=30/1\" }";
    let cfg = write_config(dir, storage, source, &format!("{storage_extra}\nrequire_mount = true"));
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("pre_s = 1", &format!("pre_s = 1\nbitrate_kbps = {bitrate_kbps}"))).unwrap();
    cfg
}

#[test]
fn full_disk_frees_space_by_retention_or_refuses_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage");
    let _mount = Tmpfs::mount(&storage, "6m");
    let cfg = snow_on_tmpfs(dir.path(), &storage, "min_free_percent = 20", 4000);
    let d = Daemon::start(&cfg);

    // Keep saving clips: retention must delete old ones to stay above 20 % free.
    let mut saved = Vec::new();
    for _ in 0..8 {
        let (status, r) = d.post("/api/cameras/cam0/trigger", "");
        assert_eq!(status, 202, "{r}");
        saved.push(d.wait_clip(r["clip_id"].as_str().unwrap())["id"].as_str().unwrap().to_string());
    }
    let (_, usage) = d.get("/api/storage").unwrap();
    assert!(usage["clips"].as_u64().unwrap() < 8, "retention deleted old clips: {usage}");
    assert!(usage["free_percent"].as_f64().unwrap() >= 15.0, "{usage}");
    let (_, first) = d.get(&format!("/api/clips/{}", saved[0])).unwrap();
    assert!(first.get("error").is_some(), "the oldest clip was the one deleted");

    // Pin everything: nothing can be freed, so the next clips are refused with a clear error.
    let (_, list) = d.get("/api/clips?limit=500").unwrap();
    for c in list["clips"].as_array().unwrap() {
        let (s, _) = d.post(&format!("/api/clips/{}/pin", c["id"].as_str().unwrap()), "");
        assert_eq!(s, 200);
    }
    let mut refused = None;
    for _ in 0..10 {
        let (status, r) = d.post("/api/cameras/cam0/trigger", "");
        if status == 507 {
            refused = Some(r);
            break;
        }
        assert_eq!(status, 202, "{r}");
        d.wait_clip(r["clip_id"].as_str().unwrap());
        let (s, _) = d.post(&format!("/api/clips/{}/pin", r["clip_id"].as_str().unwrap()), "");
        assert_eq!(s, 200);
    }
    let refused = refused.expect("a trigger is refused once the disk is full of pinned clips");
    let msg = refused["error"].as_str().unwrap();
    assert!(msg.contains("space") || msg.contains("full"), "clear error: {msg}");
    assert_eq!(d.get("/api/health").unwrap().0, 200, "the daemon keeps running");
    // The index matches the files.
    let (_, list) = d.get("/api/clips?limit=500").unwrap();
    for c in list["clips"].as_array().unwrap() {
        let p = storage.join(c["path"].as_str().unwrap());
        assert!(p.exists(), "index entry without file: {}", p.display());
        ffprobe_ok(&p);
    }
    assert!(files_with(&storage, ".mp4.part").is_empty());
    d.stop();
}

/// A kB field (`VmHWM`, `VmRSS`) of `/proc/{pid}/status`.
fn proc_kb(pid: nix::unistd::Pid, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// `bytes` at the start of a sparse file of `len` bytes (the holes cost no disk).
fn sparse_file(path: &Path, bytes: &[u8], len: u64) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let f = std::fs::File::create(path).unwrap();
    std::io::Write::write_all(&mut &f, bytes).unwrap();
    f.set_len(len).unwrap();
}

#[test]
fn start_up_recovery_of_4_gib_orphans_stays_small() {
    use hindsight::clip_meta::{clip_rel_path, new_clip_id};
    use hindsight::mp4::{FragmentedMp4, Sample};
    const GIB4: u64 = 4 << 30;
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage");
    // A fragmented clip of 2 GOPs of 10 synthetic AUs.
    let key =
        [0, 0, 0, 1, 0x67, 0x4d, 0x40, 0x1e, 0x96, 0, 0, 0, 1, 0x68, 0xee, 0x3c, 0x80, 0, 0, 0, 1, 0x65, 0x88, 0x84];
    let delta = [0, 0, 0, 1, 0x41, 0x9a, 0x02];
    let mut w = FragmentedMp4::new(&key, 320, 240, 0).unwrap();
    let mut clip = w.init_segment();
    for _ in 0..2 {
        let gop: Vec<Sample> = (0..10)
            .map(|i| Sample { data: if i == 0 { &key } else { &delta }, duration: 3000, keyframe: i == 0 })
            .collect();
        clip.extend(w.fragment(&gop));
    }
    let ms = 1_795_000_000_000;
    let (torn, orphan) = (new_clip_id(ms), new_clip_id(ms + 1));
    // Cut off mid-write: 4 GiB of zeros after its fragments.
    let torn_path = storage.join(clip_rel_path("cam0", &torn, ms));
    sparse_file(&torn_path.with_extension("mp4.part"), &clip, GIB4);
    // Finished but not indexed: its fragments, then a 4 GiB `free` box.
    let mut big = clip.clone();
    big.extend(1u32.to_be_bytes());
    big.extend(b"free");
    big.extend((GIB4 - clip.len() as u64).to_be_bytes());
    let orphan_path = storage.join(clip_rel_path("cam0", &orphan, ms + 1));
    sparse_file(&orphan_path, &big, GIB4);
    // An upload of 8 GiB taken up at its 4 GiB.
    let uploads = storage.join("uploads");
    sparse_file(&uploads.join("00112233445566ff.bin"), b"", GIB4);
    let sidecar = r#"{"filename":"big.mp4","device":"phone","length":8589934592,"created_ms":1795000000000}"#;
    std::fs::write(uploads.join("00112233445566ff.json"), sidecar).unwrap();

    let cfg = write_config(
        dir.path(),
        &storage,
        "{ kind = \"test\", width = 320, height = 240, fps = 30 }",
        "min_free_percent = 0",
    );
    let d = Daemon::start(&cfg);
    let hwm_mib = proc_kb(d.child.pid(), "VmHWM:") / 1024;
    eprintln!("daemon peak RSS after recovering 2 x 4 GiB: {hwm_mib} MiB");
    assert!(hwm_mib < 200, "recovery read the orphans into RAM: peak RSS {hwm_mib} MiB");
    let (status, t) = d.get(&format!("/api/clips/{torn}")).unwrap();
    assert_eq!(status, 200, "{t}");
    assert_eq!(
        (t["partial"].as_bool(), t["size_bytes"].as_u64()),
        (Some(true), Some(std::fs::metadata(&torn_path).unwrap().len()))
    );
    assert!(std::fs::metadata(&torn_path).unwrap().len() < 1 << 20, "truncated to its last complete fragment");
    let (status, o) = d.get(&format!("/api/clips/{orphan}")).unwrap();
    assert_eq!(status, 200, "{o}");
    assert_eq!(o["size_bytes"].as_u64(), Some(GIB4));
    d.stop();
}

/// Fill the filesystem holding `path` with a file at `path` until it is full.
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("filler");
    let chunk = vec![0x5a_u8; 64 << 10];
    while f.write_all(&chunk).and_then(|()| f.sync_data()).is_ok() {}
}

#[test]
fn a_disk_full_mid_clip_fails_the_clip_and_refuses_until_there_is_room() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage");
    let _mount = Tmpfs::mount(&storage, "24m");
    let cfg = snow_on_tmpfs(dir.path(), &storage, "min_free_percent = 0", 2000);
    let d = Daemon::start(&cfg);

    let (status, r) = d.post("/api/cameras/cam0/trigger", r#"{"post_s":30}"#);
    assert_eq!(status, 202, "{r}");
    let dead = r["clip_id"].as_str().unwrap().to_string();
    // Mid-clip: its .part file holds fragments, then the disk fills up under it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !files_with(&storage, ".mp4.part").iter().any(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 40_000)) {
        assert!(Instant::now() < deadline, "no growing .part file");
        std::thread::sleep(Duration::from_millis(100));
    }
    let filler = storage.join("filler");
    fill(&filler);
    // The writer fails at its next fragment (the log says so, with or without the clip closed).
    let log = cfg.with_extension("log");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log).unwrap_or_default().contains(&format!("clip {dead} failed")) {
        assert!(Instant::now() < deadline, "the clip never failed on the full disk");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Its post-roll has 25 s to go: a trigger must not be "extended" onto a clip that will not
    // exist, nor promised a new one the full disk cannot take.
    let (status, r) = d.post("/api/cameras/cam0/trigger", "");
    assert_eq!(status, 507, "refused while the disk is full, not extended onto {dead}: {r}");
    // (`storage still fails` when the probe write fails, `storage full` when the space freed by
    // removing the failed clip's file takes the probe but not a clip.)
    assert!(r["error"].as_str().unwrap().contains("storage"), "{r}");
    let (status, r) = d.post("/api/cameras/cam0/record/start", "");
    assert_eq!(status, 507, "{r}");
    assert_eq!(d.get(&format!("/api/clips/{dead}")).unwrap().0, 404, "the failed clip is not indexed");
    assert!(files_with(&storage, ".mp4.part").is_empty(), "the failed clip's partial file is removed");

    // Room again: the next trigger opens a new clip, and it is saved.
    std::fs::remove_file(&filler).unwrap();
    let (status, r) = d.post("/api/cameras/cam0/trigger", "");
    assert_eq!(status, 202, "{r}");
    assert_eq!(r["extended"], false);
    let id = r["clip_id"].as_str().unwrap();
    assert_ne!(id, dead);
    let meta = d.wait_clip(id);
    ffprobe_ok(&storage.join(meta["path"].as_str().unwrap()));
    assert_eq!(d.get("/api/health").unwrap().0, 200, "the daemon keeps running");
    d.stop();
    // After a restart, recovery does not bring the failed clip back.
    let d = Daemon::start(&cfg);
    assert_eq!(d.get(&format!("/api/clips/{dead}")).unwrap().0, 404);
    d.stop();
}

#[test]
fn kill_9_while_recording_continuously_loses_at_most_flush_s() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage");
    // min_free_percent = 0: on a disk under 11 % free (CI's, once) retention for free space
    // would remove the recovered segment (a camera's oldest goes first); not what this tests.
    let cfg = write_config(
        dir.path(),
        &storage,
        r#"{ kind = "test", width = 320, height = 240, fps = 30 }"#,
        "min_free_percent = 0",
    );
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("keyframe_interval_s = 1\ncontinuous = { segment_s = 60, flush_s = 1.0 }\n");
    std::fs::write(&cfg, text).unwrap();
    let d = Daemon::start(&cfg);
    // Recording for a while: the segment file has several flushes (fragments) on disk.
    let deadline = Instant::now() + Duration::from_secs(60);
    let fragments = || {
        files_with(&storage.join("recordings"), ".mp4")
            .first()
            .and_then(|f| std::fs::read(f).ok())
            .map_or(0, |b| b.windows(4).filter(|w| w == b"moof").count())
    };
    while fragments() < 4 {
        assert!(Instant::now() < deadline, "no recording on disk");
        std::thread::sleep(Duration::from_millis(100));
    }
    let killed_at = hindsight::time::wall_now_ms();
    d.kill9();
    // The torn segment is truncated to its last complete fragment and indexed at the next start.
    let d = Daemon::start(&cfg);
    d.stop();
    let index = hindsight::index::Index::open(&storage.join("index")).unwrap();
    let segs = index.all_segments().unwrap();
    let torn = segs.first().expect("the torn segment is indexed");
    let loss = killed_at - torn.end_ms;
    println!("KILL9-LOSS {loss} ms of recording lost with flush_s = 1 s ({} frames kept)", torn.frames);
    assert!(loss <= 1000 + 34 + 150, "lost {loss} ms: more than flush_s + a frame (+ encoding latency)");
    assert!(segs.iter().skip(1).any(|s| s.gap_before.as_deref() == Some("recording started")), "{segs:#?}");
    let mut indexed: Vec<PathBuf> = segs.iter().map(|s| storage.join(&s.path)).collect();
    let mut files = files_with(&storage.join("recordings"), ".mp4");
    indexed.sort();
    files.sort();
    assert_eq!(indexed, files, "index == files");
    for s in &segs {
        // Decodes without error; ffprobe's duration runs from 0 to the last timestamp, and a
        // segment's timestamps start at its place in the hour.
        let dur = ffprobe_ok(&storage.join(&s.path));
        let want = (s.start_ms.rem_euclid(3_600_000) + s.end_ms - s.start_ms) as f64;
        assert!((dur * 1000.0 - want).abs() <= 40.0, "{s:?}: ffprobe {dur} s");
    }
}
