//! Live HLS from an in-process daemon (test pattern 640×360@30 → x264enc, keyframe every 1 s)
//! against real ffmpeg and HTTP: ffmpeg reads and decodes 10 s of the live playlist without an
//! error; segment durations follow the keyframe interval; an LL-HLS blocking playlist reload
//! for the next part answers when that part exists and not before; a preload-hinted part is
//! held until complete; headers, 400/404/503 answers and the viewer count.

mod common;

use common::*;
use std::time::{Duration, Instant};

const FPS: usize = 30;

fn url(addr: std::net::SocketAddr, cam: &str, file: &str) -> String {
    format!("http://{addr}/api/cameras/{cam}/hls/{file}")
}

async fn get(url: &str) -> (u16, reqwest::header::HeaderMap, bytes::Bytes) {
    let r = reqwest::get(url).await.expect("HTTP answers");
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    (status, headers, r.bytes().await.expect("body"))
}

async fn playlist(url: &str) -> String {
    let (status, _, body) = get(url).await;
    let text = String::from_utf8(body.to_vec()).expect("UTF-8 playlist");
    assert_eq!(status, 200, "{url}: {text}");
    text
}

/// (msn, part) of the playlist's preload hint: the next part to come.
fn hint(pl: &str) -> (u64, u64) {
    let line = pl.lines().find(|l| l.starts_with("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part")).expect("preload hint");
    let name = line.split("URI=\"part").nth(1).unwrap().trim_end_matches(".m4s\"");
    let (m, p) = name.split_once('.').unwrap();
    (m.parse().unwrap(), p.parse().unwrap())
}

fn has_part(pl: &str, m: u64, p: u64) -> bool {
    pl.lines().any(|l| l.starts_with("#EXT-X-PART:") && l.contains(&format!("URI=\"part{m}.{p}.m4s\"")))
}

fn extinfs(pl: &str) -> Vec<f64> {
    pl.lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .map(|l| l.trim_end_matches(',').parse().expect("EXTINF is a number"))
        .collect()
}

async fn daemon_with(cams: Vec<hindsight::config::CameraConfig>) -> (tempfile::TempDir, hindsight::daemon::Daemon) {
    let dir = tempfile::tempdir().unwrap();
    let d = start(config(dir.path(), cams)).await;
    for c in &d.cameras {
        let p = c.preroll.clone();
        wait_for("2 s buffered", Duration::from_secs(60), || p.stats().buffered >= Duration::from_secs(2)).await;
    }
    (dir, d)
}

fn cam(id: &str, keyframe_s: f64) -> hindsight::config::CameraConfig {
    let mut c = test_camera(id, 640, 360, FPS as u32, 3.0);
    c.keyframe_interval_s = keyframe_s;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_decodes_ten_seconds_of_live_hls() {
    let (_dir, d) = daemon_with(vec![cam("cam0", 1.0)]).await;
    let live = url(d.http_addr, "cam0", "live.m3u8");
    let t0 = Instant::now();
    let out = tokio::task::spawn_blocking({
        let live = live.clone();
        move || {
            std::process::Command::new("ffmpeg")
                .args(["-v", "error", "-i", &live, "-t", "10", "-f", "framecrc", "-"])
                .output()
                .expect("ffmpeg runs")
        }
    })
    .await
    .unwrap();
    let took = t0.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ffmpeg failed: {stderr}");
    assert!(stderr.trim().is_empty(), "ffmpeg complained: {stderr}");
    // framecrc: one line per decoded frame: stream, dts, pts, duration, size, crc.
    let pts: Vec<i64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(',').nth(2).unwrap().trim().parse().unwrap())
        .collect();
    assert!(pts.len().abs_diff(10 * FPS) <= 2, "{} frames decoded", pts.len());
    for w in pts.windows(2) {
        assert_eq!(w[1], w[0] + 1, "a frame missing or repeated after pts {}", w[0]);
    }
    // Live: ffmpeg starts three segments back, so ~7 s of the 10 had to be waited for.
    assert!(took >= Duration::from_secs(5), "10 s of live video read in {took:?}");
    println!("ffmpeg read {} frames of live HLS in {took:?}", pts.len());

    let (_, info) = get_json(d.http_addr, "/api/cameras/cam0").await;
    assert_eq!(info["hls_clients"], 1, "{info}");
    assert_eq!(info["hls_active"], true, "{info}");
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_durations_follow_the_keyframe_interval() {
    let (_dir, d) = daemon_with(vec![cam("one", 1.0), cam("two", 2.0)]).await;
    for (id, gop) in [("one", 1.0), ("two", 2.0)] {
        let live = url(d.http_addr, id, "live.m3u8");
        let first = playlist(&live).await;
        // Let the window fill with live segments (not only the back-filled ones): three blocking
        // reloads, each answered when the segment in progress is complete.
        let mut pl = first.clone();
        for _ in 0..3 {
            let (msn, _) = hint(&pl);
            pl = playlist(&format!("{live}?_HLS_msn={}&_HLS_part=0", msn + 1)).await;
        }
        assert!(pl.contains(&format!("#EXT-X-TARGETDURATION:{}\n", gop as u32)), "{pl}");
        let durations = extinfs(&pl);
        assert!(durations.len() >= 3, "{id}: {pl}\n(first: {first})");
        for dur in &durations {
            assert!((dur - gop).abs() <= 1.5 / FPS as f64, "{id}: segment of {dur} s, keyframe interval {gop} s\n{pl}");
        }
        // Every segment starts with an independent part; PART-TARGET bounds every part.
        let parts: Vec<&str> = pl.lines().filter(|l| l.starts_with("#EXT-X-PART:")).collect();
        assert!(!parts.is_empty(), "{pl}");
        for p in parts {
            let dur: f64 = p["#EXT-X-PART:DURATION=".len()..].split(',').next().unwrap().parse().unwrap();
            assert!(dur <= 0.25 + 1e-9 && dur > 0.0, "{p}");
            if p.contains(".0.m4s\"") {
                assert!(p.ends_with(",INDEPENDENT=YES"), "{p}");
            }
        }
        println!("{id}: EXTINF {durations:?}");
    }
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_reload_answers_when_the_next_part_exists_not_before() {
    let (_dir, d) = daemon_with(vec![cam("cam0", 1.0)]).await;
    let live = url(d.http_addr, "cam0", "live.m3u8");
    let mut waits = Vec::new();
    for _ in 0..6 {
        let before = playlist(&live).await;
        let (m, p) = hint(&before);
        assert!(!has_part(&before, m, p), "the hinted part is not listed yet:\n{before}");
        // Watch the non-blocking playlist to see when the part appears.
        let poll = {
            let live = live.clone();
            tokio::spawn(async move {
                loop {
                    let pl = playlist(&live).await;
                    if has_part(&pl, m, p) {
                        return Instant::now();
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        };
        let t0 = Instant::now();
        let blocked = playlist(&format!("{live}?_HLS_msn={m}&_HLS_part={p}")).await;
        let answered = Instant::now();
        let seen = poll.await.unwrap();
        assert!(has_part(&blocked, m, p), "the answer holds part {m}.{p}:\n{blocked}");
        let waited = answered - t0;
        assert!(waited < Duration::from_secs(1), "part {m}.{p} took {waited:?}");
        // As soon as it exists: not much later than a 5 ms poller saw it.
        assert!(
            answered <= seen + Duration::from_millis(150),
            "answered {:?} after the part appeared",
            answered - seen
        );
        waits.push(waited);
    }
    // Parts come every ~200 ms: the requests really waited (not answered from a stale state).
    let total: Duration = waits.iter().sum();
    assert!(total >= Duration::from_millis(6 * 40), "waits {waits:?}");
    println!("blocking reload waits: {waits:?}");

    // A preload-hinted part is held until complete, then served as a CMAF chunk.
    let (m, p) = hint(&playlist(&live).await);
    let t0 = Instant::now();
    let (status, headers, body) = get(&url(d.http_addr, "cam0", &format!("part{m}.{p}.m4s"))).await;
    assert_eq!(status, 200);
    assert_eq!(&body[4..8], b"moof", "a part is moof + mdat");
    assert_eq!(headers["content-type"], "video/iso.segment");
    assert!(headers["cache-control"].to_str().unwrap().contains("max-age"));
    println!("hinted part {m}.{p}: {} bytes after {:?}", body.len(), t0.elapsed());

    // Too far ahead: 400 at once. A part beyond the limit: 400.
    let (status, _, body) = get(&format!("{live}?_HLS_msn={}&_HLS_part=0", m + 3)).await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    let (status, _, _) = get(&format!("{live}?_HLS_part=1")).await;
    assert_eq!(status, 400, "_HLS_part without _HLS_msn");
    let (status, _, _) = get(&format!("{live}?_HLS_msn=x")).await;
    assert_eq!(status, 400);

    // The camera stops: a blocked request gives up after the bounded wait (3 × target) → 503.
    let (status, _) = post_json(d.http_addr, "/api/cameras/cam0/stop").await;
    assert_eq!(status, 200);
    let (m, p) = hint(&playlist(&live).await);
    let t0 = Instant::now();
    let (status, _, body) = get(&format!("{live}?_HLS_msn={m}&_HLS_part={}", p + 1)).await;
    let waited = t0.elapsed();
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    assert!(waited >= Duration::from_millis(2900) && waited < Duration::from_secs(6), "{waited:?}");
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_and_errors() {
    let (_dir, d) = daemon_with(vec![cam("cam0", 1.0)]).await;
    let a = d.http_addr;
    let (status, h, body) = get(&url(a, "cam0", "live.m3u8")).await;
    assert_eq!(status, 200);
    assert_eq!(h["content-type"], "application/vnd.apple.mpegurl");
    assert_eq!(h["cache-control"], "no-cache");
    let pl = String::from_utf8(body.to_vec()).unwrap();
    for tag in [
        "#EXTM3U\n",
        "#EXT-X-VERSION:9\n",
        "#EXT-X-TARGETDURATION:1\n",
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.750\n",
        "#EXT-X-PART-INF:PART-TARGET=0.250\n",
        "#EXT-X-MAP:URI=\"init.mp4\"\n",
        "#EXT-X-PROGRAM-DATE-TIME:",
    ] {
        assert!(pl.contains(tag), "{tag:?} missing:\n{pl}");
    }
    // The newest segment's program date time is recent wall-clock time.
    let last_pdt = pl.lines().filter_map(|l| l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:")).next_back().unwrap();
    let pdt: jiff::Timestamp = last_pdt.parse().expect("RFC 3339");
    let age = jiff::Timestamp::now().duration_since(pdt).as_secs_f64();
    assert!((0.0..3.0).contains(&age), "newest segment started {age} s ago ({last_pdt})");
    assert!(last_pdt.ends_with('Z') && last_pdt.len() == "2026-01-01T00:00:00.000Z".len(), "{last_pdt}");

    let (status, h, init) = get(&url(a, "cam0", "init.mp4")).await;
    assert_eq!(status, 200);
    assert_eq!(h["content-type"], "video/mp4");
    assert!(h["cache-control"].to_str().unwrap().starts_with("max-age="));
    assert_eq!(&init[4..8], b"ftyp");
    // Right after start the playlist may hold only parts of the first segment: a blocking
    // reload for media sequence 1 returns once segment 0 is complete.
    let (status, _, body) = get(&url(a, "cam0", "live.m3u8?_HLS_msn=1")).await;
    assert_eq!(status, 200);
    let pl1 = String::from_utf8(body.to_vec()).unwrap();
    let seg = pl1.lines().find(|l| l.starts_with("seg")).unwrap_or_else(|| panic!("no segment in\n{pl1}"));
    let (status, h, body) = get(&url(a, "cam0", seg)).await;
    assert_eq!(status, 200);
    assert_eq!(h["content-type"], "video/iso.segment");
    assert!(h["cache-control"].to_str().unwrap().starts_with("max-age="));
    assert_eq!(&body[4..8], b"moof");

    // Errors are JSON with a message.
    for (path, want) in [
        ("/api/cameras/nope/hls/live.m3u8", 404),
        ("/api/cameras/cam0/hls/seg1.m4s", 404),
        ("/api/cameras/cam0/hls/part1.0.m4s", 404),
        ("/api/cameras/cam0/hls/seg-1.m4s", 404),
        ("/api/cameras/cam0/hls/foo.ts", 404),
        ("/api/cameras/cam0/hls/init.mp4?v=9", 404),
        ("/api/cameras/cam0/hls/live.m3u8?_HLS_msn=-1", 400),
        ("/api/cameras/cam0/hls/live.m3u8?_HLS_msn=99999999999999999999999", 400),
    ] {
        let (status, body) = get_json(a, path).await;
        assert_eq!(status, want, "{path}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{path}: {body}");
    }
    d.shutdown().await;
}
