//! A phone as a camera, end to end: a live WebM/VP8 stream made by GStreamer in the test (what a
//! browser's MediaRecorder sends: the first chunk carries the init segment, then ~250 ms chunks)
//! pushed over the WebSocket `/api/cameras/{id}/push` in real time becomes a camera that runs,
//! is listed, is triggerable, and makes H.264 clips whose pictures came from the stream. Also:
//! a stream without init segment is refused, a configured non-browser camera id answers 409,
//! disconnect stops the camera without making health degraded, reconnect runs it again.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use gst::prelude::*;
use gstreamer as gst;
use gstreamer_app as gst_app;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// How often the producer hands a chunk to the socket, like MediaRecorder's timeslice.
const TIMESLICE: Duration = Duration::from_millis(250);

/// A live WebM stream: blue background with a white ball, 640×360@30, VP8, no sound.
const WEBM: &str = "videotestsrc is-live=true pattern=ball background-color=0xff0000ff \
                    ! video/x-raw,width=640,height=360,framerate=30/1 \
                    ! vp8enc deadline=1 keyframe-max-dist=30 ! webmmux streamable=true";

/// A live WebM stream with sound, as Chromium and Firefox record it (VP8 + Opus), and a way to
/// check their sync: 320×240@30 black frames, the bottom eighth white on the frame at each
/// whole second of the stream (the element `flash` does it); a 100 ms 1 kHz beep starting at
/// each whole second.
const WEBM_SOUND: &str = "audiotestsrc is-live=true wave=ticks freq=1000 sine-periods-per-tick=100 \
                          ! audio/x-raw,rate=48000,channels=1 ! opusenc ! mux. \
                          videotestsrc is-live=true pattern=black ! video/x-raw,width=320,height=240,framerate=30/1 \
                          ! identity name=flash ! vp8enc deadline=1 keyframe-max-dist=30 ! webmmux streamable=true name=mux";

/// Whiten the bottom eighth of the frame nearest each whole second passing `flash`'s src pad.
fn flash_on_whole_seconds(pipeline: &gst::Pipeline) {
    let Some(pad) = pipeline.by_name("flash").and_then(|e| e.static_pad("src")) else { return };
    pad.add_probe(gst::PadProbeType::BUFFER, |_, info| {
        if let Some(gst::PadProbeData::Buffer(buffer)) = &mut info.data {
            let ms = buffer.pts().map_or(u64::MAX, |t| t.mseconds() % 1000);
            if !(17..=983).contains(&ms) {
                let b = buffer.make_mut();
                if let Ok(mut map) = b.map_writable() {
                    // I420: the luma plane's last eighth of rows.
                    let (w, h) = (320, 240);
                    map[w * (h - h / 8)..w * h].fill(235);
                }
            }
        }
        gst::PadProbeReturn::Ok
    });
}

/// The live stream `description` makes (a muxer's output: an appsink is appended), in
/// MediaRecorder-like chunks (the first holding the container's init segment) on the returned
/// channel in real time. Dropping the receiver stops the producer.
fn produce(description: &str) -> tokio::sync::mpsc::Receiver<Vec<u8>> {
    gst::init().unwrap();
    let pipeline = gst::parse::launch(&format!("{description} ! appsink name=sink sync=false"))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    flash_on_whole_seconds(&pipeline);
    let sink = pipeline.by_name("sink").unwrap().downcast::<gst_app::AppSink>().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    pipeline.set_state(gst::State::Playing).unwrap();
    std::thread::spawn(move || {
        let mut chunk = Vec::new();
        let mut last = Instant::now();
        loop {
            if tx.is_closed() {
                break;
            }
            if let Some(s) = sink.try_pull_sample(gst::ClockTime::from_mseconds(100)) {
                let b = s.buffer().unwrap().map_readable().unwrap();
                chunk.extend_from_slice(&b);
            }
            if !chunk.is_empty() && last.elapsed() >= TIMESLICE {
                last = Instant::now();
                if tx.blocking_send(std::mem::take(&mut chunk)).is_err() {
                    break;
                }
            }
        }
        pipeline.set_state(gst::State::Null).unwrap();
    });
    rx
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(addr: std::net::SocketAddr, id: &str) -> Result<Ws, u16> {
    match tokio_tungstenite::connect_async(format!("ws://{addr}/api/cameras/{id}/push")).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("websocket connect failed: {e}"),
    }
}

/// Set to an instant, the pump holds the chunks made until then and sends them all at once with
/// the first chunk after it: a Wi-Fi hiccup.
type Hold = std::sync::Arc<std::sync::Mutex<Option<Instant>>>;

/// Pushes the producer's chunks into the socket and collects the server's JSON messages, until
/// the returned sender is dropped (then it closes the socket) or the server closes.
fn pump(
    mut ws: Ws,
    hold: Hold,
    description: &'static str,
) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<Vec<serde_json::Value>>) {
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut chunks = produce(description);
        let mut got = Vec::new();
        let mut held = Vec::new();
        loop {
            tokio::select! {
                _ = &mut stop_rx => break,
                c = chunks.recv() => {
                    let Some(c) = c else { break };
                    held.push(c);
                    if hold.lock().unwrap().is_some_and(|until| Instant::now() < until) {
                        continue;
                    }
                    let mut sent = true;
                    for c in held.drain(..) {
                        sent &= ws.send(Message::Binary(c)).await.is_ok();
                    }
                    if !sent {
                        break;
                    }
                }
                m = ws.next() => match m {
                    Some(Ok(Message::Text(t))) => got.push(serde_json::from_str(&t).expect("server sends JSON")),
                    Some(Ok(_)) => {}
                    _ => break,
                }
            }
        }
        let _ = ws.close(None).await;
        got
    });
    (stop_tx, task)
}

async fn camera(addr: std::net::SocketAddr, id: &str) -> serde_json::Value {
    let (status, body) = get_json(addr, "/api/cameras").await;
    assert_eq!(status, 200);
    body.as_array().unwrap().iter().find(|c| c["id"] == id).cloned().unwrap_or(serde_json::Value::Null)
}

/// Wait until `check` holds for the camera as `/api/cameras` lists it.
/// The next `{"error":..}` text the server sends on `ws` (within 10 s); `None` if it closes first.
async fn error_message(ws: &mut Ws) -> Option<String> {
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Text(t) = m {
                if t.contains("\"error\"") {
                    return Some(t.to_string());
                }
            }
        }
        None
    })
    .await
    .expect("the server speaks within 10 s")
}

async fn wait_camera(
    addr: std::net::SocketAddr,
    id: &str,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let c = camera(addr, id).await;
        if check(&c) {
            return c;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {c}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Mean R, G, B of the frame at `at_s`, scaled down to 32×18.
fn mean_rgb(path: &std::path::Path, at_s: f64) -> [f64; 3] {
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-ss", &format!("{at_s}"), "-i"])
        .arg(path)
        .args(["-frames:v", "1", "-vf", "scale=32:18", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout.len(), 32 * 18 * 3, "one scaled frame");
    let mut sum = [0f64; 3];
    for px in out.stdout.chunks_exact(3) {
        for i in 0..3 {
            sum[i] += px[i] as f64;
        }
    }
    sum.map(|s| s / (32.0 * 18.0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_stream_becomes_a_camera_with_clips() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), vec![test_camera("cam0", 320, 240, 15, 2.0)]);
    cfg.phone.encoder = "x264enc".into();
    cfg.phone.pre_s = 2.0;
    cfg.phone.post_s = 2.0;
    cfg.phone.bitrate_kbps = 1500;
    let storage = cfg.storage.path.clone();
    let d = start(cfg).await;
    let addr = d.http_addr;

    // A configured non-browser camera cannot be pushed to; a bad id is refused.
    assert_eq!(connect(addr, "cam0").await.err(), Some(409));
    assert_eq!(connect(addr, "Bad!").await.err(), Some(400));

    let ws = connect(addr, "phone1").await.expect("push socket for a new camera");
    let hold = Hold::default();
    let (stop, task) = pump(ws, hold.clone(), WEBM);
    let first = wait_camera(addr, "phone1", "phone1 running with frames", |c| {
        c["state"] == "running" && c["frames_captured"].as_u64().unwrap_or(0) > 0
    })
    .await;
    assert_eq!(first["source"], "browser");
    // Phone cameras take the phone's sound (phone.audio): this stream has none, and says so.
    let silent = wait_camera(addr, "phone1", "audio.last_error", |c| !c["audio"]["last_error"].is_null()).await;
    assert!(
        silent["audio"]["last_error"].as_str().unwrap().starts_with("the phone sends no sound")
            && silent["audio"]["live"] == false,
        "{silent}"
    );
    // /metrics counts what the phone's stream lost, per phone camera.
    let metrics = reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap();
    let dropped = metrics
        .lines()
        .find_map(|l| l.strip_prefix("hindsight_phone_chunks_dropped_total{camera=\"phone1\"} "))
        .and_then(|v| v.parse::<f64>().ok());
    assert!(dropped.is_some(), "{metrics}");
    let later = wait_camera(addr, "phone1", "frames_captured growing", |c| {
        c["frames_captured"].as_u64().unwrap_or(0) >= first["frames_captured"].as_u64().unwrap() + 15
    })
    .await;
    assert_eq!((later["width"].as_u64(), later["height"].as_u64()), (Some(640), Some(360)), "{later}");

    let (status, clients) = get_json(addr, "/api/clients").await;
    assert_eq!(status, 200);
    let c = clients.as_array().unwrap().iter().find(|c| c["camera"] == "phone1").expect("client listed").clone();
    assert_eq!(c["connected"], true, "{c}");
    assert!(c["chunks"].as_u64().unwrap() > 0 && c["bytes"].as_u64().unwrap() > 0, "{c}");
    assert!(c["address"].as_str().unwrap().starts_with("127.0.0.1:"), "{c}");
    assert!(c["connected_at"].as_str().unwrap().ends_with('Z'), "{c}");

    // The control API (MQTT's way in) knows the new camera too.
    use hindsight::trigger::TriggerTarget;
    assert!(d.control.camera_ids().contains(&"phone1".to_string()));
    assert_eq!(d.control.camera_state("phone1").expect("state for MQTT")["state"], "running");

    // Enough pre-roll for the whole pre_s, then a trigger on the phone's camera.
    wait_camera(addr, "phone1", "2.5 s buffered", |c| c["buffered_s"].as_f64().unwrap_or(0.0) >= 2.5).await;
    let (status, acc) = post_body(addr, "/api/cameras/phone1/trigger", r#"{"label":"phone"}"#).await;
    assert_eq!(status, 202, "{acc}");
    let triggered = Instant::now();
    let id = acc["clip_id"].as_str().unwrap().to_string();
    // A Wi-Fi hiccup over the end of the post-roll: from 1 s after the trigger, the phone's
    // chunks are held back for 2.2 s, then arrive at once. The clip still gets its last second
    // (the frames are dated on the phone's clock): it waits for them instead of ending on the
    // clock at T + post.
    tokio::time::sleep_until((triggered + Duration::from_secs(1)).into()).await;
    *hold.lock().unwrap() = Some(Instant::now() + Duration::from_millis(2200));
    let meta = wait_clip(addr, &id, Duration::from_secs(30)).await;

    assert_eq!(meta["camera"], "phone1");
    let file = storage.join(meta["path"].as_str().unwrap());
    assert_eq!(common::rtsp::video_stream(&file).0, "h264");
    let dur = ffprobe_duration(&file);
    assert!((dur - 4.0).abs() <= 0.25, "clip duration {dur}, want pre + post = 4 s");
    // The pictures are the phone's: the blue background of the producer's pattern.
    for at in [0.5, 3.5] {
        let [r, g, b] = mean_rgb(&file, at);
        assert!(b > 150.0 && b > r + 80.0 && b > g + 80.0, "frame at {at} s is not the blue pattern: rgb {r} {g} {b}");
    }

    // A decoder rebuilt mid-stream (camera restart while the phone streams) decodes again: the
    // feed replays the kept init segment before the next chunks.
    let (status, _) = post_json(addr, "/api/cameras/phone1/restart").await;
    assert_eq!(status, 200);
    let restarted = camera(addr, "phone1").await["frames_captured"].as_u64().unwrap();
    wait_camera(addr, "phone1", "frames after a decoder restart", |c| {
        c["state"] == "running" && c["frames_captured"].as_u64().unwrap_or(0) > restarted + 30
    })
    .await;

    // Disconnect: the camera stops, and health stays ok.
    drop(stop);
    let msgs = task.await.unwrap();
    assert!(
        msgs.iter().any(|m| m["camera"] == "phone1" && m["state"] == "running" && m["frames"].as_u64() > Some(0)),
        "status messages: {msgs:?}"
    );
    assert!(msgs.iter().all(|m| m.get("error").is_none()), "{msgs:?}");
    wait_camera(addr, "phone1", "phone1 stopped", |c| c["state"] == "stopped").await;
    let (_, health) = get_json(addr, "/api/health").await;
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["cameras"]["phone1"]["state"], "stopped");
    let (_, clients) = get_json(addr, "/api/clients").await;
    assert_eq!(clients[0]["connected"], false, "{clients}");
    let (status, _) = post_body(addr, "/api/cameras/phone1/trigger", "").await;
    assert_eq!(status, 409, "a stopped phone camera refuses triggers");

    // Reconnect: runs again with new frames.
    let before = camera(addr, "phone1").await["frames_captured"].as_u64().unwrap();
    let ws = connect(addr, "phone1").await.expect("reconnect");
    let (stop, task) = pump(ws, Hold::default(), WEBM);
    wait_camera(addr, "phone1", "phone1 running again", |c| {
        c["state"] == "running" && c["frames_captured"].as_u64().unwrap_or(0) > before + 15
    })
    .await;
    drop(stop);
    task.await.unwrap();
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_without_init_segment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut door = hindsight::config::CameraConfig::new("door", hindsight::config::SourceConfig::browser());
    door.encoder = "x264enc".into();
    let mut cfg = config(dir.path(), vec![test_camera("cam0", 160, 120, 5, 1.0), door]);
    cfg.phone.max_cameras = 2;
    let d = start(cfg).await;
    // A configured browser camera waits, stopped, for its phone; health is ok meanwhile.
    assert!(d.wait_ready(Duration::from_secs(30)).await, "ready without the phone");
    assert_eq!(camera(d.http_addr, "door").await["state"], "stopped");
    let (_, health) = get_json(d.http_addr, "/api/health").await;
    assert_eq!(health["status"], "ok", "{health}");
    let mut ws = connect(d.http_addr, "late").await.expect("push socket");
    // A WebM Cluster element: what MediaRecorder sends after the first chunk.
    ws.send(Message::Binary(b"\x1f\x43\xb6\x75\x01\xff\xff\xff\xff\xff\xff\xff".to_vec())).await.unwrap();
    let mut error = None;
    let mut closed = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while let Ok(Some(m)) = tokio::time::timeout_at(deadline, ws.next()).await {
        match m {
            Ok(Message::Text(t)) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                if let Some(e) = v.get("error") {
                    error = Some(e.as_str().unwrap().to_string());
                }
            }
            Ok(Message::Close(_)) | Err(_) => {
                closed = true;
                break;
            }
            Ok(_) => {}
        }
    }
    let error = error.expect("an error message before the close");
    assert!(error.contains("init segment"), "{error}");
    assert!(closed, "the server closes the socket");
    let c =
        wait_camera(d.http_addr, "late", "camera stopped after the refused stream", |c| c["state"] == "stopped").await;
    assert_eq!(c["frames_captured"], 0);
    let (_, health) = get_json(d.http_addr, "/api/health").await;
    assert_eq!(health["status"], "ok", "{health}");

    // A second phone camera is allowed (max_cameras = 2), a third is not.
    let mut idle = connect(d.http_addr, "second").await.expect("second phone camera");
    assert_eq!(connect(d.http_addr, "third").await.err(), Some(403));
    // Its first status message says it is starting or running (it has sent nothing yet).
    let first = tokio::time::timeout(Duration::from_secs(10), idle.next()).await.expect("a status message");
    let Some(Ok(Message::Text(t))) = first else { panic!("expected a status message, got {first:?}") };
    let v: serde_json::Value = serde_json::from_str(&t).unwrap();
    assert_eq!(v["camera"], "second", "{v}");

    // A configured browser camera takes a phone (not counted against max_cameras); a second
    // connection for it replaces the first, which is told so and closed.
    let mut old = connect(d.http_addr, "door").await.expect("push to the configured browser camera");
    // Its first status message: this connection has taken the camera (the upgrade answer comes
    // before the connection joins; without this wait the second could join first).
    let first = tokio::time::timeout(Duration::from_secs(10), old.next()).await.expect("a status message");
    assert!(matches!(first, Some(Ok(Message::Text(_)))), "{first:?}");
    let mut new = connect(d.http_addr, "door").await.expect("a second phone for the same camera");
    let told = error_message(&mut old).await;
    assert!(told.is_some_and(|t| t.contains("took over")), "replaced connection gets an error message");
    // A message over the size limit ends the connection.
    let _ = new.send(Message::Binary(vec![0u8; 9 << 20])).await;
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match new.next().await {
                Some(Ok(Message::Text(_))) | Some(Ok(Message::Ping(_))) | Some(Ok(Message::Pong(_))) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("an oversized message ends the connection within 10 s");
    assert!(!matches!(ended, Some(Ok(Message::Binary(_)))), "{ended:?}");

    // A phone camera without its phone cannot be started from the API (it would only stall);
    // stopping one whose phone is connected ends that connection too.
    let (status, body) = post_json(d.http_addr, "/api/cameras/late/start").await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("phone connects"), "{body}");
    let mut door = connect(d.http_addr, "door").await.expect("the door phone again");
    // The first status message: the connection has taken the camera.
    let first = tokio::time::timeout(Duration::from_secs(10), door.next()).await.expect("a status message");
    assert!(matches!(first, Some(Ok(Message::Text(_)))), "{first:?}");
    let (status, body) = post_json(d.http_addr, "/api/cameras/door/stop").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "stopped", "{body}");
    let told = error_message(&mut door).await;
    assert!(told.is_some_and(|t| t.contains("stopped")), "the phone is told its camera was stopped");
    let c = wait_camera(d.http_addr, "door", "door stays stopped", |c| c["state"] == "stopped").await;
    assert_eq!(c["state"], "stopped");

    // Shutdown with a phone connected (that never sent a chunk) ends its socket and finishes.
    let t0 = Instant::now();
    tokio::time::timeout(Duration::from_secs(15), d.shutdown()).await.expect("shutdown finishes");
    assert!(t0.elapsed() < Duration::from_secs(10), "shutdown took {:?}", t0.elapsed());
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match idle.next().await {
                Some(Ok(Message::Text(t))) if t.contains("error") => continue,
                Some(Ok(Message::Text(_))) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the phone's socket ends");
    assert!(!matches!(end, Some(Ok(Message::Binary(_)))), "{end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phones_sound_is_in_its_clips_heard_with_its_picture() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), vec![test_camera("cam0", 160, 120, 5, 1.0)]);
    cfg.phone.encoder = "x264enc".into();
    (cfg.phone.pre_s, cfg.phone.post_s) = (2.5, 2.5);
    let storage = cfg.storage.path.clone();
    let d = start(cfg).await;
    let addr = d.http_addr;
    let ws = connect(addr, "phone1").await.expect("push socket");
    let (stop, task) = pump(ws, Hold::default(), WEBM_SOUND);
    // The phone's Opus is decoded and encoded to AAC once.
    let c = wait_camera(addr, "phone1", "sound delivering and 3 s buffered", |c| {
        c["audio"]["live"] == true && c["buffered_s"].as_f64().unwrap_or(0.0) >= 3.0
    })
    .await;
    let a = &c["audio"];
    assert_eq!(
        (a["kind"].as_str(), a["codec"].as_str(), a["rate"].as_u64()),
        (Some("source"), Some("aac"), Some(48_000))
    );
    assert!(a["encoder"].as_str().is_some_and(|e| e != "passthrough"), "{a}");

    let (status, acc) = post_body(addr, "/api/cameras/phone1/trigger", "").await;
    assert_eq!(status, 202, "{acc}");
    let meta = wait_clip(addr, acc["clip_id"].as_str().unwrap(), Duration::from_secs(30)).await;
    let file = storage.join(meta["path"].as_str().unwrap());
    let s = av::streams(&file);
    assert_eq!(s.len(), 2, "{s:?}");
    assert_eq!((s[0].1.as_str(), s[1].1.as_str()), ("h264", "aac"), "{s:?}");
    assert!(s[0].2.abs() < 0.001 && s[1].2.abs() < 0.001, "both start at 0: {s:?}");
    assert!((s[0].3 - 5.0).abs() <= 0.25, "video lasts pre + post: {s:?}");
    assert!((s[1].3 - s[0].3).abs() <= 1024.0 / 48_000.0 + 0.001, "sound lasts as long as the video: {s:?}");

    // Every flash inside the clip has its beep within 40 ms.
    let (seen, heard) = (av::flashes(&file, 320, 240, 100), av::beeps(&file));
    let inner: Vec<f64> = seen.iter().copied().filter(|&t| t > 0.1 && t < s[0].3 - 0.2).collect();
    assert!(inner.len() >= 4, "flashes at {seen:?}");
    let mut worst = 0f64;
    let mut signed = Vec::new();
    for t in &inner {
        let near = heard.iter().map(|b| b - t).fold(f64::MAX, |a, d| if d.abs() < a.abs() { d } else { a });
        assert!(near.abs() <= 0.040, "flash at {t:.3} s, beeps at {heard:?}");
        worst = worst.max(near.abs());
        signed.push(format!("{:+.1}", near * 1000.0));
    }
    println!(
        "PHONE-AV-SYNC {} flashes, beep within {:.1} ms of each (beep − flash: {} ms)",
        inner.len(),
        worst * 1000.0,
        signed.join(" ")
    );
    drop(stop);
    task.await.unwrap();
    d.shutdown().await;
}
