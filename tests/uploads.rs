//! tus uploads against the real daemon: protocol (creation, offsets, HEAD, checksum, 409/412/413/
//! 460, termination, expiry, a PATCH cut off mid-way), the early type check (a text file → 415,
//! nothing kept), and finalize: an H.264 MP4 remuxed frame for frame, a VP8 WebM transcoded to
//! H.264, a broken file failing cleanly; then the clip routes and the devices routes. Videos are
//! made with `gst-launch-1.0` and checked with ffprobe.

mod common;

use common::*;
use reqwest::{Client, Method, StatusCode};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn sha1_b64(data: &[u8]) -> String {
    use base64::Engine;
    let mut c = gstreamer::glib::Checksum::new(gstreamer::glib::ChecksumType::Sha1).unwrap();
    c.update(data);
    base64::engine::general_purpose::STANDARD.encode(c.digest())
}

/// Run `gst-launch-1.0 -q DESC` writing to `out`.
fn gst_make(desc: &str, out: &Path) -> Vec<u8> {
    let cmd = format!("{desc} ! filesink location={}", out.display());
    let st = std::process::Command::new("gst-launch-1.0")
        .arg("-q")
        .args(cmd.split_whitespace())
        .status()
        .expect("gst-launch-1.0 runs");
    assert!(st.success(), "gst-launch failed: {cmd}");
    std::fs::read(out).unwrap()
}

/// 90 frames (3 s at 30 fps) of H.264 in MP4, ~1 MB (snow compresses badly).
fn h264_mp4(dir: &Path) -> (PathBuf, Vec<u8>) {
    let p = dir.join("dog.mp4");
    let data = gst_make(
        "videotestsrc num-buffers=90 pattern=snow ! video/x-raw,width=320,height=240,framerate=30/1,format=I420 \
         ! x264enc bitrate=3000 key-int-max=30 ! video/x-h264,profile=main ! h264parse ! mp4mux",
        &p,
    );
    (p, data)
}

/// 60 frames (2 s at 30 fps) of VP8 in WebM.
fn vp8_webm(dir: &Path) -> (PathBuf, Vec<u8>) {
    let p = dir.join("cat.webm");
    let data = gst_make(
        "videotestsrc num-buffers=60 pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 \
         ! vp8enc deadline=1 ! webmmux",
        &p,
    );
    (p, data)
}

#[derive(Debug)]
struct Probe {
    codec: String,
    frames: u64,
    pix_fmt: String,
    duration: f64,
}

fn ffprobe(path: &Path) -> Probe {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-count_frames", "-show_entries"])
        .args(["stream=codec_name,nb_read_frames,pix_fmt:format=duration", "-of", "json"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(out.status.success(), "ffprobe {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &v["streams"][0];
    Probe {
        codec: s["codec_name"].as_str().unwrap_or_default().into(),
        frames: s["nb_read_frames"].as_str().and_then(|n| n.parse().ok()).unwrap_or(0),
        pix_fmt: s["pix_fmt"].as_str().unwrap_or_default().into(),
        duration: v["format"]["duration"].as_str().and_then(|d| d.parse().ok()).unwrap_or(0.0),
    }
}

struct Tus {
    c: Client,
    base: String,
}

impl Tus {
    fn new(addr: std::net::SocketAddr) -> Tus {
        Tus { c: Client::new(), base: format!("http://{addr}") }
    }
    fn req(&self, m: Method, path: &str) -> reqwest::RequestBuilder {
        self.c.request(m, format!("{}{path}", self.base)).header("Tus-Resumable", "1.0.0")
    }
    /// POST; returns the upload path.
    async fn create(&self, len: usize, filename: &str, device: &str) -> String {
        let r = self
            .req(Method::POST, "/api/uploads")
            .header("Upload-Length", len)
            .header("Upload-Metadata", format!("filename {},device {}", b64(filename), b64(device)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
        assert_eq!(r.headers()["tus-resumable"], "1.0.0");
        assert!(r.headers().contains_key("upload-expires"));
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        assert!(loc.starts_with("/api/uploads/"), "{loc}");
        loc
    }
    async fn patch(&self, loc: &str, offset: usize, data: &[u8], checksum: Option<String>) -> reqwest::Response {
        let mut r = self
            .req(Method::PATCH, loc)
            .header("Content-Type", "application/offset+octet-stream")
            .header("Upload-Offset", offset);
        if let Some(c) = checksum {
            r = r.header("Upload-Checksum", format!("sha1 {c}"));
        }
        let r = r.body(data.to_vec()).send().await.unwrap();
        assert_eq!(r.headers()["tus-resumable"], "1.0.0", "every answer carries Tus-Resumable");
        r
    }
    /// HEAD: (status, offset).
    async fn head(&self, loc: &str) -> (StatusCode, Option<u64>) {
        let r = self.req(Method::HEAD, loc).send().await.unwrap();
        let off = r.headers().get("upload-offset").and_then(|v| v.to_str().ok()?.parse().ok());
        (r.status(), off)
    }
    /// Upload `data` in `n` PATCHes; returns the final response's state header.
    async fn upload_all(&self, loc: &str, data: &[u8], n: usize) -> String {
        let step = data.len().div_ceil(n);
        let mut off = 0;
        let mut state = String::new();
        while off < data.len() {
            let end = (off + step).min(data.len());
            let r = self.patch(loc, off, &data[off..end], Some(sha1_b64(&data[off..end]))).await;
            assert_eq!(r.status(), StatusCode::NO_CONTENT, "{:?}", r.text().await);
            assert_eq!(r.headers()["upload-offset"].to_str().unwrap(), end.to_string());
            if let Some(s) = r.headers().get("hindsight-upload-state") {
                state = s.to_str().unwrap().to_string();
            }
            off = end;
        }
        state
    }
    /// Wait for the upload to leave `uploading`/`processing`.
    async fn wait_finished(&self, loc: &str) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let v: serde_json::Value =
                self.c.get(format!("{}{loc}/status", self.base)).send().await.unwrap().json().await.unwrap();
            if v["state"] == "done" || v["state"] == "failed" {
                return v;
            }
            assert!(tokio::time::Instant::now() < deadline, "upload not finished: {v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn cfg(dir: &Path, max: &str, expire_h: f64) -> hindsight::config::Config {
    let mut c = config(dir, vec![test_camera("cam0", 160, 120, 10, 1.0)]);
    c.uploads.max_bytes = max.parse().unwrap();
    c.uploads.expire_h = expire_h;
    // The shared disk may be fuller than the default 10 % reserve allows.
    c.storage.min_free_percent = 0;
    c
}

fn upload_files(storage: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(storage.join("uploads")).map(|rd| rd.flatten().map(|e| e.path()).collect()).unwrap_or_default()
}

/// A PATCH whose connection drops after `sent` of `len` announced bytes.
async fn cut_patch(addr: std::net::SocketAddr, loc: &str, offset: usize, data: &[u8], len: usize) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PATCH {loc} HTTP/1.1\r\nHost: {addr}\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: {offset}\r\n\
         Content-Type: application/offset+octet-stream\r\nContent-Length: {len}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(data).await.unwrap();
    s.flush().await.unwrap();
    s.shutdown().await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tus_protocol_and_h264_remux() {
    let dir = tempfile::tempdir().unwrap();
    let (src, data) = h264_mp4(dir.path());
    assert!(data.len() > 300_000, "test video is {} bytes", data.len());
    let src_probe = ffprobe(&src);
    let c = cfg(dir.path(), "4MiB", 24.0);
    let storage = c.storage.path.clone();
    let d = start(c).await;
    let addr = d.http_addr;
    let t = Tus::new(addr);

    // Discovery.
    let r = t.c.request(Method::OPTIONS, format!("{}/api/uploads", t.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let h = r.headers();
    assert_eq!(h["tus-resumable"], "1.0.0");
    assert_eq!(h["tus-version"], "1.0.0");
    assert_eq!(h["tus-extension"], "creation,creation-with-upload,termination,checksum,expiration");
    assert_eq!(h["tus-max-size"], (4u64 << 20).to_string().as_str());
    assert_eq!(h["tus-checksum-algorithm"], "sha1,sha256,md5");

    // 412 without / with a wrong Tus-Resumable, 413 over the limit, 400 without a length.
    let url = format!("{}/api/uploads", t.base);
    let r = t.c.post(&url).header("Upload-Length", 10).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(r.headers()["tus-resumable"], "1.0.0");
    assert_eq!(r.headers()["tus-version"], "1.0.0");
    let r = t.c.post(&url).header("Tus-Resumable", "0.2.2").header("Upload-Length", 10).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    let r = t.req(Method::POST, "/api/uploads").header("Upload-Length", (4u64 << 20) + 1).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.headers()["tus-resumable"], "1.0.0");
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("uploads.max_bytes"), "{body}");
    let r = t.req(Method::POST, "/api/uploads").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // An empty file can never complete: refused at creation, nothing created.
    let r = t.req(Method::POST, "/api/uploads").header("Upload-Length", "0").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(!r.headers().contains_key("location"));

    // Upload in pieces.
    let loc = t.create(data.len(), "dog.mp4", "anna-phone").await;
    let (st, off) = t.head(&loc).await;
    assert_eq!((st, off), (StatusCode::OK, Some(0)));
    let r = t.patch(&loc, 0, &data[..100_000], None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()["upload-offset"], "100000");
    assert!(r.headers().contains_key("upload-expires"));
    let r = t.req(Method::HEAD, &loc).send().await.unwrap();
    assert_eq!(r.headers()["upload-offset"], "100000");
    assert_eq!(r.headers()["upload-length"], data.len().to_string().as_str());
    assert_eq!(r.headers()["cache-control"], "no-store");
    // Wrong offset → 409, offset unchanged.
    let r = t.patch(&loc, 0, &data[..10], None).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    // Missing Tus-Resumable on a PATCH → 412.
    let r =
        t.c.patch(format!("{}{loc}", t.base))
            .header("Content-Type", "application/offset+octet-stream")
            .header("Upload-Offset", 100_000)
            .body(data[100_000..100_010].to_vec())
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    // Wrong checksum → 460, chunk discarded.
    let chunk = &data[100_000..200_000];
    let r = t.patch(&loc, 100_000, chunk, Some(sha1_b64(b"something else"))).await;
    assert_eq!(r.status().as_u16(), 460);
    assert_eq!(t.head(&loc).await.1, Some(100_000));
    let bin = upload_files(&storage).into_iter().find(|p| p.extension().is_some_and(|e| e == "bin")).unwrap();
    let part = std::fs::metadata(bin).unwrap().len();
    assert_eq!(part, 100_000, "the rejected chunk is not kept on disk");
    // Right checksum → accepted.
    let r = t.patch(&loc, 100_000, chunk, Some(sha1_b64(chunk))).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{:?}", r.text().await);
    // A PATCH cut off mid-way keeps what arrived; the client resumes from the server's offset.
    cut_patch(addr, &loc, 200_000, &data[200_000..250_000], data.len() - 200_000).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let resumed = loop {
        // The server notices the cut when the body ends early; until then the offset is 200000
        // and a PATCH would be refused as busy.
        let (_, off) = t.head(&loc).await;
        if off != Some(200_000) {
            break off.unwrap() as usize;
        }
        assert!(tokio::time::Instant::now() < deadline, "cut PATCH never ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(resumed, 250_000, "bytes of the interrupted PATCH are kept");
    let state = t.upload_all_from(&loc, &data, resumed, 3).await;
    assert_eq!(state, "processing");
    let status = t.wait_finished(&loc).await;
    assert_eq!(status["state"], "done", "{status}");
    assert_eq!(status["filename"], "dog.mp4");
    assert_eq!(status["device"], "anna-phone");
    assert!(upload_files(&storage).is_empty(), "upload files removed: {:?}", upload_files(&storage));

    // The clip.
    let id = status["clip_id"].as_str().unwrap().to_string();
    let (s, meta) = get_json(addr, &format!("/api/clips/{id}")).await;
    assert_eq!(s, 200);
    assert_eq!(meta["source"], "upload");
    assert_eq!(meta["camera"], "upload");
    assert_eq!(meta["label"], "dog.mp4");
    assert_eq!(meta["device"], "anna-phone");
    let file = storage.join(meta["path"].as_str().unwrap());
    assert!(meta["path"].as_str().unwrap().starts_with("clips/upload/"), "{meta}");
    let p = ffprobe(&file);
    assert_eq!(p.codec, "h264");
    assert_eq!(p.frames, src_probe.frames, "remux keeps every frame ({src_probe:?})");
    assert_eq!(p.frames, 90);
    assert!((p.duration - src_probe.duration).abs() < 0.05, "{p:?} vs {src_probe:?}");
    assert_eq!(meta["frames"], 90);
    assert!((meta["duration_s"].as_f64().unwrap() - 3.0).abs() < 0.05, "{meta}");
    assert_eq!(meta["size_bytes"].as_u64().unwrap(), std::fs::metadata(&file).unwrap().len());
    let r = reqwest::get(format!("{}/api/clips/{id}/thumbnail.jpg", t.base)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(&r.bytes().await.unwrap()[..2], &[0xFF, 0xD8]);
    let r = t.c.get(format!("{}/api/clips/{id}/video.mp4", t.base)).header("Range", "bytes=0-99").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);

    // List filters.
    let (_, l) = get_json(addr, "/api/clips?source=upload&q=DOG").await;
    assert_eq!(l["clips"].as_array().unwrap().len(), 1, "{l}");
    let (_, l) = get_json(addr, "/api/clips?source=upload&q=zebra").await;
    assert_eq!(l["clips"].as_array().unwrap().len(), 0);
    let (_, l) = get_json(addr, "/api/clips?device=anna-phone").await;
    assert_eq!(l["clips"][0]["id"], id.as_str());
    let (_, l) = get_json(addr, "/api/clips?source=trigger").await;
    assert!(l["clips"].as_array().unwrap().iter().all(|c| c["source"] == "trigger"));
    let (s, _) = get_json(addr, "/api/clips?source=bogus").await;
    assert_eq!(s, 400);
    let (_, ups) = get_json(addr, "/api/uploads").await;
    assert_eq!(ups[0]["state"], "done");

    // Termination.
    let loc2 = t.create(data.len(), "other.mp4", "anna-phone").await;
    assert_eq!(t.patch(&loc2, 0, &data[..70_000], None).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(upload_files(&storage).len(), 2, "the bytes and the sidecar");
    let r = t.req(Method::DELETE, &loc2).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()["tus-resumable"], "1.0.0");
    assert_eq!(t.head(&loc2).await.0, StatusCode::NOT_FOUND);
    assert!(upload_files(&storage).is_empty());
    assert_eq!(t.patch(&loc2, 70_000, &data[70_000..70_010], None).await.status(), StatusCode::NOT_FOUND);

    // Not a video → 415 once 64 KiB are in, the upload is gone, nothing indexed.
    let text: Vec<u8> = "The quick brown fox jumps over the lazy dog.\n".repeat(2000).into_bytes();
    let loc3 = t.create(text.len(), "notes.txt", "anna-phone").await;
    let r = t.patch(&loc3, 0, &text, None).await;
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().starts_with("not a video file (found: text/"), "{body}");
    assert_eq!(t.head(&loc3).await.0, StatusCode::NOT_FOUND);
    assert!(upload_files(&storage).is_empty());
    let (_, l) = get_json(addr, "/api/clips?source=upload").await;
    assert_eq!(l["clips"].as_array().unwrap().len(), 1, "nothing indexed for the text file");

    // Devices: list, rename, delete.
    let (s, devs) = get_json(addr, "/api/devices").await;
    assert_eq!(s, 200);
    assert_eq!(devs.as_array().unwrap().len(), 1, "{devs}");
    assert_eq!(devs[0]["name"], "anna-phone");
    assert_eq!(devs[0]["uploads"], 1);
    assert_eq!(devs[0]["bytes"], meta["size_bytes"]);
    assert_eq!(devs[0]["last_upload_at"], meta["start_at"]);
    let r =
        t.c.patch(format!("{}/api/devices/anna-phone", t.base))
            .json(&serde_json::json!({"name": "Anna"}))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (_, m) = get_json(addr, &format!("/api/clips/{id}")).await;
    assert_eq!(m["device"], "Anna");
    let (_, l) = get_json(addr, "/api/clips?device=anna-phone").await;
    assert_eq!(l["clips"].as_array().unwrap().len(), 0);
    let r = t.c.patch(format!("{}/api/devices/nobody", t.base)).json(&serde_json::json!({"name": "x"})).send().await;
    assert_eq!(r.unwrap().status(), StatusCode::NOT_FOUND);
    let r = t.c.patch(format!("{}/api/devices/Anna", t.base)).json(&serde_json::json!({"name": ""})).send().await;
    assert_eq!(r.unwrap().status(), StatusCode::BAD_REQUEST);
    let r = t.c.delete(format!("{}/api/devices/Anna", t.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (s, _) = get_json(addr, &format!("/api/clips/{id}")).await;
    assert_eq!(s, 404);
    assert!(!file.exists(), "the device's clip file is deleted");
    let (_, devs) = get_json(addr, "/api/devices").await;
    assert_eq!(devs.as_array().unwrap().len(), 0);
    d.shutdown().await;
}

impl Tus {
    async fn upload_all_from(&self, loc: &str, data: &[u8], from: usize, n: usize) -> String {
        let rest = &data[from..];
        let step = rest.len().div_ceil(n);
        let mut off = from;
        let mut state = String::new();
        while off < data.len() {
            let end = (off + step).min(data.len());
            let r = self.patch(loc, off, &data[off..end], None).await;
            assert_eq!(r.status(), StatusCode::NO_CONTENT, "{:?}", r.text().await);
            if let Some(s) = r.headers().get("hindsight-upload-state") {
                state = s.to_str().unwrap().to_string();
            }
            off = end;
        }
        state
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vp8_webm_is_transcoded_and_broken_files_fail() {
    let dir = tempfile::tempdir().unwrap();
    let (_, webm) = vp8_webm(dir.path());
    let (_, mp4) = h264_mp4(dir.path());
    let mut c = cfg(dir.path(), "1TiB", 24.0);
    c.storage.max_bytes = "1GiB".parse().unwrap();
    let storage = c.storage.path.clone();
    let d = start(c).await;
    let t = Tus::new(d.http_addr);

    // More than storage can hold (storage.max_bytes) → 507 before any byte is sent.
    let r = t.req(Method::POST, "/api/uploads").header("Upload-Length", 2u64 << 30).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::INSUFFICIENT_STORAGE);
    assert_eq!(r.headers()["tus-resumable"], "1.0.0");
    assert!(upload_files(&storage).is_empty());

    // creation-with-upload: the whole WebM in the POST.
    let r = t
        .req(Method::POST, "/api/uploads")
        .header("Upload-Length", webm.len())
        .header("Upload-Metadata", format!("filename {}", b64("cat.webm")))
        .header("Content-Type", "application/offset+octet-stream")
        .body(webm.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["upload-offset"], webm.len().to_string().as_str());
    assert_eq!(r.headers()["hindsight-upload-state"], "processing");
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let st = t.wait_finished(&loc).await;
    assert_eq!(st["state"], "done", "{st}");
    assert_eq!(st["device"], "browser", "default device");
    let (_, meta) = get_json(d.http_addr, &format!("/api/clips/{}", st["clip_id"].as_str().unwrap())).await;
    let p = ffprobe(&storage.join(meta["path"].as_str().unwrap()));
    assert_eq!(p.codec, "h264", "VP8 transcoded to H.264");
    assert_eq!(p.pix_fmt, "yuv420p", "4:2:0 phones can play");
    assert_eq!(p.frames, 60);
    assert_eq!(meta["frames"], 60);
    assert!((meta["duration_s"].as_f64().unwrap() - 2.0).abs() < 0.05, "{meta}");

    // A broken MP4: valid start (typefind passes), the rest zeros (no moov) → failed, nothing kept.
    let mut broken = mp4.clone();
    for b in &mut broken[70_000..] {
        *b = 0;
    }
    let loc = t.create(broken.len(), "broken.mp4", "tester").await;
    assert_eq!(t.upload_all(&loc, &broken, 2).await, "processing");
    let st = t.wait_finished(&loc).await;
    assert_eq!(st["state"], "failed", "{st}");
    assert!(!st["error"].as_str().unwrap_or_default().is_empty(), "{st}");
    assert!(st["clip_id"].is_null());
    let (_, l) = get_json(d.http_addr, "/api/clips?source=upload").await;
    assert_eq!(l["clips"].as_array().unwrap().len(), 1, "only the WebM's clip: {l}");
    assert!(upload_files(&storage).is_empty(), "{:?}", upload_files(&storage));
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_uploads_expire() {
    let dir = tempfile::tempdir().unwrap();
    // 0.0005 h = 1.8 s.
    let c = cfg(dir.path(), "4GiB", 0.0005);
    let storage = c.storage.path.clone();
    let d = start(c).await;
    let t = Tus::new(d.http_addr);
    let loc = t.create(1_000_000, "gone.mp4", "tester").await;
    let r = t.patch(&loc, 0, &[0u8; 1000], None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let expires = r.headers()["upload-expires"].to_str().unwrap().to_string();
    assert!(expires.ends_with(" GMT"), "{expires}");
    assert_eq!(upload_files(&storage).len(), 2, "the bytes and the sidecar");
    let created = tokio::time::Instant::now();
    let deadline = created + Duration::from_secs(15);
    while t.head(&loc).await.0 == StatusCode::OK {
        assert!(tokio::time::Instant::now() < deadline, "upload never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(created.elapsed() >= Duration::from_millis(1500), "expired too early: {:?}", created.elapsed());
    assert_eq!(t.head(&loc).await.0, StatusCode::NOT_FOUND);
    assert!(upload_files(&storage).is_empty(), "expired upload's file removed");
    d.shutdown().await;
}

/// A restart keeps unfinished uploads: HEAD answers the bytes that reached the disk, the upload
/// resumes and becomes a clip; one that had every byte when the daemon stopped is finalized at
/// start; stray files (a `.bin` without its sidecar) are removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_uploads_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (_, data) = h264_mp4(dir.path());
    let c = cfg(dir.path(), "64MiB", 24.0);
    let storage = c.storage.path.clone();
    let d = start(c.clone()).await;
    let t = Tus::new(d.http_addr);
    let half = data.len() / 2;
    let loc = t.create(data.len(), "before-restart.mp4", "restart-phone").await;
    assert_eq!(t.patch(&loc, 0, &data[..half], None).await.status(), StatusCode::NO_CONTENT);
    d.shutdown().await;
    // A stray file from nowhere is cleaned up at start.
    std::fs::write(storage.join("uploads/0123456789abcdef.bin"), b"stray").unwrap();

    let c2 = c.clone();
    let d = start(c).await;
    let t = Tus::new(d.http_addr);
    assert_eq!(t.head(&loc).await, (StatusCode::OK, Some(half as u64)), "offset kept across the restart");
    assert!(!storage.join("uploads/0123456789abcdef.bin").exists(), "stray file removed");
    let state = t.upload_all_from(&loc, &data, half, 2).await;
    assert_eq!(state, "processing");
    let v = t.wait_finished(&loc).await;
    assert_eq!(v["state"], "done", "{v}");
    assert_eq!(v["device"], "restart-phone");
    let clip = v["clip_id"].as_str().unwrap().to_string();
    let r = t.c.get(format!("{}/api/clips/{clip}", t.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let meta: serde_json::Value = r.json().await.unwrap();
    assert_eq!(meta["source"], "upload");
    assert_eq!(meta["label"], "before-restart.mp4");
    let probe = ffprobe(&storage.join(meta["path"].as_str().unwrap()));
    assert_eq!(probe.codec, "h264");
    assert!(upload_files(&storage).is_empty(), "{:?}", upload_files(&storage));
    let uploads_before: serde_json::Value =
        t.c.get(format!("{}/api/uploads", t.base)).send().await.unwrap().json().await.unwrap();
    d.shutdown().await;

    // A power cut after finalize moved the clip into place but before the upload's files were
    // removed: its bytes, sidecar and done marker (naming the clip) are still there. The restart
    // must not finalize the same bytes into a second clip.
    let id = "00000000000000aa";
    std::fs::write(storage.join(format!("uploads/{id}.bin")), &data).unwrap();
    let sidecar = serde_json::json!({"filename": "before-restart.mp4", "device": "restart-phone",
        "length": data.len(), "created_ms": 1});
    std::fs::write(storage.join(format!("uploads/{id}.json")), sidecar.to_string()).unwrap();
    std::fs::write(storage.join(format!("uploads/{id}.done")), meta["path"].as_str().unwrap()).unwrap();
    let d = start(c2).await;
    let t = Tus::new(d.http_addr);
    let uploads: serde_json::Value =
        t.c.get(format!("{}/api/uploads", t.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        uploads.as_array().map(|a| a.len()),
        Some(0),
        "not taken up again: {uploads} (before: {uploads_before})"
    );
    assert!(upload_files(&storage).is_empty(), "{:?}", upload_files(&storage));
    let r = t.c.get(format!("{}/api/clips?camera=upload", t.base)).send().await.unwrap();
    let clips: serde_json::Value = r.json().await.unwrap();
    let n = clips["clips"].as_array().or(clips.as_array()).map(|a| a.len());
    assert_eq!(n, Some(1), "still one clip: {clips}");
    d.shutdown().await;
}
