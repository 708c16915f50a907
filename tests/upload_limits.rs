//! Uploads within the storage budget, against the real daemon over HTTP: the limits on uploads in
//! progress (`uploads.max_in_progress`, `uploads.max_uploads` → 507 naming the key), creating
//! an upload deletes no clip (room is made as bytes arrive), and the bytes in `uploads/` and
//! `quarantine/` count toward `storage.max_bytes` (`/api/storage`, and a PATCH makes room by
//! deleting the oldest clip).

mod common;

use common::*;
use reqwest::{Client, Method, StatusCode};
use std::time::Duration;

const MIB: u64 = 1 << 20;

fn tus(c: &Client, addr: std::net::SocketAddr, m: Method, path: &str) -> reqwest::RequestBuilder {
    c.request(m, format!("http://{addr}{path}")).header("Tus-Resumable", "1.0.0")
}

/// POST an upload of `len` bytes: (status, Location or the error message).
async fn create(c: &Client, addr: std::net::SocketAddr, len: u64) -> (StatusCode, String) {
    let r = tus(c, addr, Method::POST, "/api/uploads").header("Upload-Length", len).send().await.unwrap();
    let status = r.status();
    let loc = r.headers().get("location").map(|l| l.to_str().unwrap().to_string());
    let text = r.text().await.unwrap();
    (status, loc.unwrap_or(text))
}

async fn clip_count(addr: std::net::SocketAddr) -> u64 {
    get_json(addr, "/api/storage").await.1["clips"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_stay_within_the_storage_budget() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), vec![test_camera("cam0", 160, 120, 10, 1.0)]);
    c.storage.max_bytes = "16MiB".parse().unwrap();
    c.uploads.max_bytes = "12MiB".parse().unwrap();
    c.uploads.max_in_progress = Some("14MiB".parse().unwrap());
    c.uploads.max_uploads = 2;
    let storage = c.storage.path.clone();
    let d = start(c).await;
    let addr = d.http_addr;
    let http = Client::new();

    // One clip on disk.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let id = loop {
        let (status, r) = post_body(addr, "/api/cameras/cam0/trigger", "{}").await;
        if status == 202 {
            break r["clip_id"].as_str().unwrap().to_string();
        }
        assert!(tokio::time::Instant::now() < deadline, "no trigger accepted: {status} {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while get_json(addr, &format!("/api/clips/{id}")).await.0 != 200 {
        assert!(tokio::time::Instant::now() < deadline, "clip {id} not saved");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(clip_count(addr).await, 1);

    // 12 MiB declared (twice that would not fit next to the clip): created, no clip deleted.
    let (status, upload) = create(&http, addr, 12 * MIB).await;
    assert_eq!(status, StatusCode::CREATED, "{upload}");
    assert_eq!(clip_count(addr).await, 1, "creating an upload deletes no clip");

    // The limits on uploads in progress: 12 + 4 MiB declared > 14 MiB; a third upload.
    let (status, msg) = create(&http, addr, 4 * MIB).await;
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{msg}");
    assert!(msg.contains("uploads.max_in_progress"), "{msg}");
    let (status, small) = create(&http, addr, 1024).await;
    assert_eq!(status, StatusCode::CREATED, "{small}");
    let (status, msg) = create(&http, addr, 1024).await;
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{msg}");
    assert!(msg.contains("uploads.max_uploads"), "{msg}");
    let r = tus(&http, addr, Method::DELETE, &small).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(clip_count(addr).await, 1);

    // 4 MiB - 2 KiB quarantined, the upload's sidecar (~100 bytes) and its 12 MiB leave less
    // room than the clip (> 2 KiB) takes: the PATCH makes room as the bytes arrive, deleting it.
    let junk = 4 * MIB - 2048;
    std::fs::create_dir_all(storage.join("quarantine")).unwrap();
    std::fs::write(storage.join("quarantine/junk.mp4.part"), vec![0u8; junk as usize]).unwrap();
    let (_, u) = get_json(addr, "/api/storage").await;
    assert_eq!(u["quarantine_bytes"].as_u64(), Some(junk), "{u}");
    let sidecar = u["upload_bytes"].as_u64().unwrap();
    assert!(sidecar > 0 && sidecar < 1024, "the upload's sidecar only: {u}");
    assert!(u["clip_bytes"].as_u64().unwrap() > 2048, "{u}");
    let mut body = hindsight::mp4::FragmentedMp4::new(
        &[0, 0, 0, 1, 0x67, 0x4d, 0x40, 0x1e, 0x96, 0, 0, 0, 1, 0x68, 0xee, 0x3c, 0x80, 0, 0, 0, 1, 0x65, 0x88],
        160,
        120,
        0,
    )
    .unwrap()
    .init_segment();
    body.resize(12 * MIB as usize - 1, 0);
    let r = tus(&http, addr, Method::PATCH, &upload)
        .header("Content-Type", "application/offset+octet-stream")
        .header("Upload-Offset", 0)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "{:?}", r.text().await);
    let (_, u) = get_json(addr, "/api/storage").await;
    assert_eq!(u["upload_bytes"].as_u64(), Some(12 * MIB - 1 + sidecar), "{u}");
    assert_eq!(u["clips"].as_u64(), Some(0), "retention deleted the clip for the upload's bytes: {u}");
    assert_eq!(get_json(addr, &format!("/api/clips/{id}")).await.0, 404);
    d.shutdown().await;
}
