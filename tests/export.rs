//! Export to S3-compatible storage against a real S3-protocol server: moto's server mode (PyPI
//! `moto[server]`, installed by `scripts/deps test` into `.cache/moto`; `HINDSIGHT_MOTO` names
//! another `moto_server`). Parts of 64 KiB (moto's minimum lowered by `S3_UPLOAD_PART_MIN_SIZE`)
//! make a small test clip a multipart upload.
//!
//! - a saved clip's video, poster and metadata arrive byte-identical (SHA-256 against the file
//!   `/api/clips/{id}/video.mp4` serves), the video as a multipart object, and `/api/clips/{id}`
//!   says `done`;
//! - the daemon (the real binary) killed with SIGKILL in the middle of a multipart upload and
//!   started again finishes the export from the queue, with no upload left open;
//! - the server down when a clip is saved: the clip waits (`retrying`, the file kept) and is
//!   exported once the server is up, and `export_done` is published on MQTT;
//! - the server hung (SIGSTOP) for a minute in the middle of an upload while two more clips are
//!   saved: `retrying`, every file kept, and all three arrive once it runs again;
//! - wrong credentials, against s3s-fs (crates.io, run in the test process: unlike moto it checks
//!   every request's signature): `auth_error` on the clip, `degraded` in `/api/health`, nothing
//!   in the bucket, the clip kept; restarted with the right key the export completes, byte for
//!   byte; a clip re-queued with `POST /api/clips/{id}/export`.

mod common;

use common::bin::{free_port, hindsight, Proc};
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BUCKET: &str = "clips";
const SNOW: &str = "videotestsrc is-live=true pattern=snow ! video/x-raw,width=320,height=240,framerate=30/1";

/// A moto S3 server of the test's own, killed on drop.
struct Moto {
    child: Child,
    port: u16,
}

fn moto_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("HINDSIGHT_MOTO") {
        return p.into();
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/moto/bin/moto_server");
    if local.exists() {
        local
    } else {
        "moto_server".into()
    }
}

impl Moto {
    async fn start(port: u16) -> Moto {
        let child = Command::new(moto_bin())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("S3_UPLOAD_PART_MIN_SIZE", "65536")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server runs (scripts/deps test installs it into .cache/moto)");
        let m = Moto { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while reqwest::get(m.url("")).await.is_err() {
            assert!(Instant::now() < deadline, "moto did not answer on {port}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        m
    }

    fn url(&self, key: &str) -> String {
        format!("http://127.0.0.1:{}/{key}", self.port)
    }

    async fn create_bucket(&self) {
        let r = reqwest::Client::new().put(self.url(BUCKET)).send().await.unwrap();
        assert!(r.status().is_success(), "create bucket: {}", r.status());
    }

    /// A presigned GET (objects are private).
    async fn get(&self, key: &str) -> (u16, Vec<u8>, Option<String>) {
        use rusty_s3::S3Action;
        let bucket =
            rusty_s3::Bucket::new(self.url("").parse().unwrap(), rusty_s3::UrlStyle::Path, BUCKET, "us-east-1")
                .unwrap();
        let creds = rusty_s3::Credentials::new("test-key", "test-secret-not-shown");
        let url = bucket.get_object(Some(&creds), key).sign(Duration::from_secs(60));
        let r = reqwest::get(url).await.unwrap();
        let etag = r.headers().get("etag").and_then(|v| v.to_str().ok()).map(str::to_string);
        (r.status().as_u16(), r.bytes().await.unwrap().to_vec(), etag)
    }

    /// Multipart uploads not completed nor aborted.
    async fn open_uploads(&self) -> usize {
        let r = reqwest::get(self.url(&format!("{BUCKET}?uploads"))).await.unwrap();
        assert_eq!(r.status(), 200, "list multipart uploads");
        let xml = r.text().await.unwrap();
        assert!(xml.contains("ListMultipartUploadsResult"), "{xml}");
        xml.matches("<Upload>").count()
    }

    /// Start a multipart upload of `key` (as a request this side never saw answered would).
    async fn start_upload(&self, key: &str) {
        let r = reqwest::Client::new().post(self.url(&format!("{BUCKET}/{key}?uploads"))).send().await.unwrap();
        assert_eq!(r.status(), 200, "create multipart upload");
    }

    /// The multipart uploads of `key` still open.
    async fn open_uploads_of(&self, key: &str) -> usize {
        let r = reqwest::get(self.url(&format!("{BUCKET}?uploads&prefix={key}"))).await.unwrap();
        assert_eq!(r.status(), 200, "list multipart uploads");
        r.text().await.unwrap().matches(&format!("<Key>{key}</Key>")).count()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sha256(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

const SECRET: &str = "test-secret-not-shown";

fn export_toml(s3_port: u16, max_kbps: u32) -> String {
    format!(
        "[export]\nkind = \"s3\"\nendpoint = \"http://127.0.0.1:{s3_port}\"\nbucket = \"{BUCKET}\"\n\
         prefix = \"site/box1\"\naccess_key = \"test-key\"\nsecret_key = \"{SECRET}\"\n\
         part_size = \"64KiB\"\nmax_kbps = {max_kbps}\n"
    )
}

fn export_config(s3_port: u16, max_kbps: u32) -> hindsight::config::ExportConfig {
    let t: toml::Value = toml::from_str(&export_toml(s3_port, max_kbps)).unwrap();
    t["export"].clone().try_into().unwrap()
}

/// A daemon with one snow camera (4 s clips of ~250 KB at 500 kbit/s: four parts of 64 KiB)
/// exporting to `export`.
async fn snow_daemon(dir: &Path, export: hindsight::config::ExportConfig) -> hindsight::daemon::Daemon {
    let mut cam = gst_camera("cam0", SNOW);
    cam.bitrate_kbps = 500;
    cam.pre_s = 3.0;
    cam.post_s = 1.0;
    let mut cfg = config(dir, vec![cam]);
    cfg.export = Some(export);
    let d = start(cfg).await;
    let p = d.cameras[0].preroll.clone();
    wait_for("3 s buffered", Duration::from_secs(60), || p.stats().buffered >= Duration::from_secs(3)).await;
    d
}

/// Trigger a clip and wait until it is saved; its id.
async fn save_clip(addr: std::net::SocketAddr, label: &str) -> String {
    let (status, a) = post_body(addr, "/api/cameras/cam0/trigger", &format!(r#"{{"label":"{label}"}}"#)).await;
    assert_eq!(status, 202, "{a}");
    let id = a["clip_id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    while get_json(addr, &format!("/api/clips/{id}")).await.0 != 200 {
        assert!(Instant::now() < deadline, "clip {id} never saved");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    id
}

/// A value of `/metrics`.
async fn metric(addr: std::net::SocketAddr, name: &str) -> f64 {
    let metrics = reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap();
    let line = metrics.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name}:\n{metrics}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// Check every object of `clip` in the bucket against the local files.
async fn check_objects(moto: &Moto, storage: &Path, clip: &serde_json::Value) {
    let id = clip["id"].as_str().unwrap();
    let export = &clip["export"];
    assert_eq!(export["state"], "done", "{clip}");
    let key = export["key"].as_str().unwrap();
    let day = clip["start_at"].as_str().unwrap()[..10].replace('-', "/");
    assert_eq!(key, format!("site/box1/{}/{day}/{id}.mp4", clip["camera"].as_str().unwrap()));
    let local = std::fs::read(storage.join(clip["path"].as_str().unwrap())).unwrap();
    let (status, remote, etag) = moto.get(key).await;
    assert_eq!(status, 200);
    assert_eq!(sha256(&remote), sha256(&local), "the video arrived byte-identical");
    assert!(local.len() > 64 << 10, "the clip spans several parts");
    assert!(etag.is_some_and(|e| e.contains('-')), "a multipart object's ETag ends in -N");
    let poster = std::fs::read(storage.join(clip["path"].as_str().unwrap()).with_extension("jpg")).unwrap();
    let (status, remote, _) = moto.get(&key.replace(".mp4", ".jpg")).await;
    assert_eq!((status, sha256(&remote)), (200, sha256(&poster)));
    let (status, remote, _) = moto.get(&key.replace(".mp4", ".json")).await;
    assert_eq!(status, 200);
    let meta: serde_json::Value = serde_json::from_slice(&remote).unwrap();
    assert_eq!((&meta["id"], &meta["size_bytes"]), (&clip["id"], &clip["size_bytes"]));
    // (Other clips' uploads may be under way.)
    assert_eq!(moto.open_uploads_of(key).await, 0, "no multipart upload of the video left open");
}

/// Wait until at least one 64 KiB part of `id` is in the bucket; the clip then.
async fn part_sent(addr: std::net::SocketAddr, id: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, v) = get_json(addr, &format!("/api/clips/{id}")).await;
        if status == 200 && v["export"]["bytes_done"].as_u64().unwrap_or(0) >= 64 << 10 {
            return v;
        }
        assert!(Instant::now() < deadline, "the upload never started: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_export(addr: std::net::SocketAddr, id: &str, want: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, v) = get_json(addr, &format!("/api/clips/{id}")).await;
        if status == 200 && v["export"]["state"] == want {
            return v;
        }
        assert!(Instant::now() < deadline, "clip {id} export never {want}: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_clip_arrives_byte_identical_and_waits_while_the_server_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let s3_port = free_port();
    // Snow at 500 kbit/s: a 4 s clip of ~250 KB, four parts of 64 KiB (the test pattern
    // compresses to ~50 KB).
    let mut cam = gst_camera("cam0", SNOW);
    cam.bitrate_kbps = 500;
    cam.pre_s = 3.0;
    cam.post_s = 1.0;
    let mut cfg = config(dir.path(), vec![cam]);
    cfg.export = Some(export_config(s3_port, 0));
    // The export's end is announced on MQTT (the embedded broker).
    let mqtt_port = free_port();
    cfg.mqtt.enabled = true;
    cfg.mqtt.listen = format!("127.0.0.1:{mqtt_port}");
    let storage = cfg.storage.path.clone();
    let d = start(cfg).await;
    let mut obs = common::mqtt::Observer::connect(mqtt_port, "hindsight/+/export");
    let p = d.cameras[0].preroll.clone();
    wait_for("3 s buffered", Duration::from_secs(60), || p.stats().buffered >= Duration::from_secs(3)).await;

    // The server is down: the clip is saved and waits.
    let (status, a) = post_body(d.http_addr, "/api/cameras/cam0/trigger", r#"{"label":"offline"}"#).await;
    assert_eq!(status, 202, "{a}");
    let first = a["clip_id"].as_str().unwrap().to_string();
    let waiting = wait_export(d.http_addr, &first, "retrying").await;
    assert!(waiting["export"]["error"].as_str().is_some_and(|e| e.contains("cannot connect")), "{waiting}");
    assert!(!waiting["export"]["error"].as_str().unwrap().contains("X-Amz"), "no URL in errors");
    let (_, health) = get_json(d.http_addr, "/api/health").await;
    assert_eq!(health["export"]["state"], "retrying", "{health}");
    assert!(storage.join(waiting["path"].as_str().unwrap()).exists());

    // Up again (back-off: at most 2 s, 4 s, … after the failures so far).
    let moto = Moto::start(s3_port).await;
    moto.create_bucket().await;
    let done = wait_export(d.http_addr, &first, "done").await;
    check_objects(&moto, &storage, &done).await;
    let ev = obs.next("hindsight/cam0/export", |m| m.json()["clip_id"] == first.as_str()).await.json();
    assert_eq!(ev["event_type"], "export_done", "{ev}");
    assert_eq!(ev["keys"][0], done["export"]["key"]);
    assert_eq!(ev["bytes"], done["export"]["bytes_total"]);

    // A second clip goes straight through; the list shows the export state too.
    let (_, b) = post_body(d.http_addr, "/api/cameras/cam0/trigger", r#"{"label":"online"}"#).await;
    let second = b["clip_id"].as_str().unwrap().to_string();
    let done = wait_export(d.http_addr, &second, "done").await;
    check_objects(&moto, &storage, &done).await;
    let (_, list) = get_json(d.http_addr, "/api/clips").await;
    assert!(list["clips"].as_array().unwrap().iter().all(|c| c["export"]["state"] == "done"), "{list}");
    // Metrics count what went out: every byte of both clips' objects (parts and PUTs).
    let total: u64 =
        list["clips"].as_array().unwrap().iter().map(|c| c["export"]["bytes_total"].as_u64().unwrap()).sum();
    assert_eq!(metric(d.http_addr, "hindsight_export_uploaded_bytes_total").await as u64, total);
    assert_eq!(metric(d.http_addr, "hindsight_export_queued_clips").await, 0.0);
    // Queued again on request: found in the bucket (same size and SHA-256), nothing sent.
    let (status, again) = post_json(d.http_addr, &format!("/api/clips/{second}/export")).await;
    assert_eq!(status, 202, "{again}");
    wait_export(d.http_addr, &second, "done").await;
    assert_eq!(metric(d.http_addr, "hindsight_export_uploaded_bytes_total").await as u64, total, "not sent twice");
    // The secret key is nowhere in what the API answers.
    assert!(!list.to_string().contains("test-secret-not-shown") && !health.to_string().contains("test-secret"));
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_upload_then_restart_finishes_the_export() {
    let dir = tempfile::tempdir().unwrap();
    let s3_port = free_port();
    let moto = Moto::start(s3_port).await;
    moto.create_bucket().await;
    let http = free_port();
    let storage = dir.path().join("storage");
    let cfg = dir.path().join("hindsight.toml");
    // 200 kbit/s: a part of 64 KiB every ~2.6 s, a clip of ~250 KB in ~10 s: the kill lands mid-upload.
    std::fs::write(
        &cfg,
        format!(
            "[storage]\npath = \"{}\"\nmin_free_percent = 0\n[http]\nlisten = \"127.0.0.1:{http}\"\n[mqtt]\nenabled = false\n{}\
             [[camera]]\nid = \"cam0\"\nencoder = \"x264enc\"\npre_s = 3\npost_s = 1\n\
             bitrate_kbps = 500\nsource = {{ kind = \"gstreamer\", pipeline = \"{SNOW}\" }}\n",
            storage.display(),
            export_toml(s3_port, 200)
        ),
    )
    .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{http}").parse().unwrap();
    let spawn =
        || Proc::spawn(hindsight().args(["run", "--config"]).arg(&cfg).stdout(Stdio::null()).stderr(Stdio::null()));
    let mut d = spawn();
    let deadline = Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "the daemon did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let id = loop {
        // Triggered as soon as the pre-roll holds 3 s (202 with pre_s_actual ≥ 2.9).
        if let Ok((202, a)) =
            tokio::time::timeout(Duration::from_secs(5), post_body(addr, "/api/cameras/cam0/trigger", "")).await
        {
            if a["pre_s_actual"].as_f64().unwrap_or(0.0) >= 2.9 {
                break a["clip_id"].as_str().unwrap().to_string();
            }
        }
        assert!(Instant::now() < deadline, "no trigger accepted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Killed once at least one part is in the bucket and the video is not complete. The server
    // is frozen first, so no part can finish between that check and the kill however slowly this
    // test gets scheduled (a loaded CI once saw all four parts go between two polls).
    part_sent(addr, &id).await;
    signal(&moto.child, "-STOP");
    let (_, v) = get_json(addr, &format!("/api/clips/{id}")).await;
    assert!(
        v["export"]["bytes_done"].as_u64().unwrap() < v["size_bytes"].as_u64().unwrap(),
        "the video finished before the kill: {v}"
    );
    d.kill9();
    signal(&moto.child, "-CONT");
    assert!(moto.open_uploads().await >= 1, "a multipart upload was under way");
    // And one the daemon never recorded (a crash between the service's answer and the record):
    // aborted once the video is complete (check_objects: none of its key left open).
    let key = v["export"]["key"].as_str().unwrap();
    moto.start_upload(key).await;
    assert_eq!(moto.open_uploads_of(key).await, 2);
    let _d = spawn();
    let deadline = Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "the daemon did not listen again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let done = wait_export(addr, &id, "done").await;
    check_objects(&moto, &storage, &done).await;
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap().success();
    assert!(ok, "kill {sig}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_hung_for_a_minute_mid_upload_then_every_queued_clip_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let s3_port = free_port();
    let moto = Moto::start(s3_port).await;
    moto.create_bucket().await;
    // 400 kbit/s: a part every ~1.3 s, so the server stops in the middle of the first clip.
    let d = snow_daemon(dir.path(), export_config(s3_port, 400)).await;
    let storage = dir.path().join("storage");
    let first = save_clip(d.http_addr, "before").await;
    part_sent(d.http_addr, &first).await;
    // Hung, not gone: connections are accepted by the kernel and never answered.
    signal(&moto.child, "-STOP");
    let hung_at = Instant::now();
    let later = [save_clip(d.http_addr, "during-1").await, save_clip(d.http_addr, "during-2").await];
    // The request in flight gives up (30 s without a byte read) and the clips wait (the two
    // saved meanwhile are queued once it has).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, health) = get_json(d.http_addr, "/api/health").await;
        if health["export"]["state"] == "retrying" && health["export"]["queued"] == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "never retrying: {health}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, v) = get_json(d.http_addr, &format!("/api/clips/{first}")).await;
    assert!(v["export"]["error"].as_str().is_some_and(|e| e.contains("timed out")), "{v}");
    for id in [&first, &later[0], &later[1]] {
        let (_, c) = get_json(d.http_addr, &format!("/api/clips/{id}")).await;
        assert!(storage.join(c["path"].as_str().unwrap()).exists(), "clip {id} kept locally");
    }
    // A minute in all (the outage itself: nothing to wait for).
    tokio::time::sleep(Duration::from_secs(60).saturating_sub(hung_at.elapsed())).await;
    signal(&moto.child, "-CONT");
    for id in [&first, &later[0], &later[1]] {
        let done = wait_export(d.http_addr, id, "done").await;
        check_objects(&moto, &storage, &done).await;
    }
    // The requests that timed out here reached the server when it woke: the uploads they
    // started were aborted once each object was complete.
    assert_eq!(moto.open_uploads().await, 0, "no stray multipart upload left");
    d.shutdown().await;
}

/// An s3s-fs server (objects as files under `root`, bucket `clips`) in the test's runtime, one
/// key pair: every request's SigV4 signature is checked. Its port.
#[cfg(target_arch = "x86_64")]
async fn s3s_fs(root: &Path, access_key: &str, secret_key: &str) -> u16 {
    std::fs::create_dir_all(root.join(BUCKET)).unwrap();
    let mut b = s3s::service::S3ServiceBuilder::new(s3s_fs::FileSystem::new(root).unwrap());
    b.set_auth(s3s::auth::SimpleAuth::from_single(access_key, secret_key));
    let service = b.build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let service = service.clone();
            tokio::spawn(async move {
                let http = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
                let _ = http.serve_connection(hyper_util::rt::TokioIo::new(sock), service).await;
            });
        }
    });
    port
}

#[cfg(target_arch = "x86_64")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_shown_nothing_is_lost_and_the_right_ones_export() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s3");
    let port = s3s_fs(&root, "test-key", SECRET).await;
    // One PUT per object: s3s-fs, like AWS, refuses parts under 5 MiB (multipart is moto's part).
    let single = |mut x: hindsight::config::ExportConfig| {
        x.part_size = hindsight::config::ByteSize(1 << 20);
        x
    };
    let mut wrong = single(export_config(port, 0));
    wrong.secret_key = "wrong-secret-not-shown".into();
    let d = snow_daemon(dir.path(), wrong).await;
    let storage = dir.path().join("storage");
    let id = save_clip(d.http_addr, "refused").await;
    let refused = wait_export(d.http_addr, &id, "auth_error").await;
    let error = refused["export"]["error"].as_str().unwrap();
    // (HEAD, the first request, has no error document: the status says it.)
    assert!(error.contains("credentials refused") && error.contains("403"), "{refused}");
    let (_, health) = get_json(d.http_addr, "/api/health").await;
    assert_eq!((&health["status"], &health["export"]["state"]), (&"degraded".into(), &"auth_error".into()), "{health}");
    assert_eq!(metric(d.http_addr, "hindsight_export_auth_error").await, 1.0);
    // Nothing in the bucket, the clip kept, no secret anywhere.
    let stored = |sub: &str| walk(&root.join(BUCKET).join(sub));
    assert!(stored("site").is_empty(), "{:?}", stored("site"));
    let original = std::fs::read(storage.join(refused["path"].as_str().unwrap())).unwrap();
    for v in [&refused, &health] {
        assert!(!v.to_string().contains("secret-not-shown") && !v.to_string().contains("X-Amz"), "{v}");
    }
    d.shutdown().await;

    // The key fixed: the queue left by the last run goes out, signed right; with delete_local
    // the local video goes once the bucket has it.
    let mut right = single(export_config(port, 0));
    right.delete_local = true;
    let d = snow_daemon(dir.path(), right).await;
    let done = wait_export(d.http_addr, &id, "done").await;
    let key = done["export"]["key"].as_str().unwrap();
    let remote = std::fs::read(root.join(BUCKET).join(key)).unwrap();
    assert_eq!(sha256(&remote), sha256(&original), "the video arrived byte-identical");
    let deadline = Instant::now() + Duration::from_secs(30);
    let meta = loop {
        let (_, m) = get_json(d.http_addr, &format!("/api/clips/{id}")).await;
        if m["remote_only"] == true {
            break m;
        }
        assert!(Instant::now() < deadline, "the local copy was never deleted: {m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let path = storage.join(meta["path"].as_str().unwrap());
    assert!(!path.exists() && path.with_extension("jpg").exists(), "the video deleted, the poster kept");
    let (_, usage) = get_json(d.http_addr, "/api/storage").await;
    assert_eq!(usage["clip_bytes"], 0, "{usage}");
    // The API serves the video from the bucket: whole, and by range.
    let url = format!("http://{}/api/clips/{id}/video.mp4", d.http_addr);
    let r = reqwest::get(&url).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(sha256(&r.bytes().await.unwrap()), sha256(&original));
    let r = reqwest::Client::new().get(&url).header("range", "bytes=100-199").send().await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], format!("bytes 100-199/{}", original.len()));
    assert_eq!(r.bytes().await.unwrap().as_ref(), &original[100..200]);
    let (_, meta) = get_json(d.http_addr, &format!("/api/clips/{id}")).await;
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join(BUCKET).join(key.replace(".mp4", ".json"))).unwrap()).unwrap();
    assert_eq!(json["id"], meta["id"]);
    let (_, health) = get_json(d.http_addr, "/api/health").await;
    assert_eq!((&health["status"], &health["export"]["state"]), (&"ok".into(), &"idle".into()), "{health}");

    // Asked again (only in the bucket: nothing to send), unknown clips 404.
    let sent = metric(d.http_addr, "hindsight_export_uploaded_bytes_total").await;
    let (status, again) = post_json(d.http_addr, &format!("/api/clips/{id}/export")).await;
    assert_eq!(status, 202, "{again}");
    wait_export(d.http_addr, &id, "done").await;
    assert_eq!(
        metric(d.http_addr, "hindsight_export_uploaded_bytes_total").await,
        sent,
        "a finished object is not sent twice"
    );
    let (status, e) = post_json(d.http_addr, "/api/clips/20200101T000000000Z-000000/export").await;
    assert_eq!(status, 404, "{e}");
    d.shutdown().await;
}

/// Files under `dir`, recursively (none if it does not exist).
#[cfg(target_arch = "x86_64")]
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}
