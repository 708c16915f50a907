//! Home Assistant MQTT discovery end to end, on a real mosquitto with a rumqttc client in Home
//! Assistant's place: the appliance and each camera appear as devices (retained configs whose
//! every state topic is served), a snapshot JPEG arrives, the "Save clip" button's payload saves
//! a clip (event + retained last clip with an absolute URL), the switch stops and starts a
//! camera, Home Assistant's birth message brings the configs again, and a camera removed from
//! the config is removed from Home Assistant at the next start (its retained config cleared),
//! while a retained "OFF" replayed by the broker is ignored.
//!
//! The payloads' schema is checked in `src/mqtt/discovery_tests.rs` (fixtures in
//! `tests/fixtures/ha/`); the embedded broker granting Home Assistant's ~70 subscriptions in
//! `src/mqtt/broker/router.rs`.

mod common;

use common::bin::free_port;
use common::mqtt::*;
use common::*;
use serde_json::Value;

fn daemon_config(dir: &std::path::Path, port: u16, cameras: &[&str]) -> hindsight::config::Config {
    let cams = cameras.iter().map(|id| test_camera(id, 320, 240, 15, 2.0)).collect();
    let mut c = config(dir, cams);
    c.mqtt.enabled = true;
    c.mqtt.url = Some(format!("mqtt://127.0.0.1:{port}"));
    c.mqtt.snapshot_interval_s = 2;
    c.http.public_url = Some("https://cam.lan:8443".into());
    c
}

/// Collect messages into `seen` until `done` holds for them.
async fn gather(ha: &mut Observer, seen: &mut Vec<Msg>, done: impl Fn(&[Msg]) -> bool) {
    while !done(seen) {
        seen.push(ha.next_any().await);
    }
}

fn last<'a>(seen: &'a [Msg], topic: &str) -> Option<&'a Msg> {
    seen.iter().rev().find(|m| m.topic == topic)
}

fn has(seen: &[Msg], topic: &str, pred: impl Fn(&Msg) -> bool) -> bool {
    seen.iter().any(|m| m.topic == topic && pred(m))
}

fn is_jpeg(m: &Msg) -> bool {
    m.raw.starts_with(&[0xFF, 0xD8]) && m.raw.ends_with(&[0xFF, 0xD9])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_assistant_finds_the_cameras_controls_them_and_loses_a_removed_one() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _broker = Mosquitto::start(dir.path(), port, "").await;
    let mut ha = Observer::connect(port, "#");
    let cfg = daemon_config(dir.path(), port, &["cam0", "cam1"]);
    let storage = cfg.storage.path.clone();
    let d = start(cfg).await;

    // 1. The devices, and every topic their entities read.
    let dev = |c: &str| format!("homeassistant/device/hindsight/{c}/config");
    let mut seen = Vec::new();
    gather(&mut ha, &mut seen, |s| {
        has(s, "homeassistant/device/hindsight/config", |m| !m.raw.is_empty())
            && ["cam0", "cam1"].iter().all(|c| has(s, &dev(c), |m| !m.raw.is_empty()))
            && has(s, "hindsight/health", |_| true)
            && has(s, "hindsight/cam0/state", |m| m.json()["state"] == "running")
            && has(s, "hindsight/cam0/recording", |_| true)
            && has(s, "hindsight/cam0/snapshot", is_jpeg)
    })
    .await;
    let appliance = last(&seen, "homeassistant/device/hindsight/config").unwrap().json();
    assert_eq!(appliance["device"]["identifiers"][0], "hindsight:hindsight");
    assert_eq!(appliance["device"]["configuration_url"], "https://cam.lan:8443/");
    let cam0 = last(&seen, &dev("cam0")).unwrap().json();
    assert_eq!(cam0["device"]["via_device"], "hindsight:hindsight");
    assert_eq!(cam0["components"].as_object().unwrap().len(), 8);
    assert_eq!(
        last(&seen, &dev("cam1")).unwrap().json()["components"]["power"]["command_topic"],
        "hindsight/cam1/power/set"
    );
    // What the templates read is there: {{ value_json.buffered_s }}, {{ value_json.state }},
    // {{ value_json.storage.free_percent }}, {{ value_json.status }}.
    let state = last(&seen, "hindsight/cam0/state").unwrap().json();
    assert!(state["buffered_s"].is_number(), "{state}");
    let health = last(&seen, "hindsight/health").unwrap().json();
    assert!(health["storage"]["free_percent"].is_number() && health["status"].is_string(), "{health}");
    assert_eq!(last(&seen, "hindsight/cam0/recording").unwrap().body, "OFF");
    let snap = seen.iter().find(|m| m.topic == "hindsight/cam0/snapshot" && is_jpeg(m)).unwrap();
    assert!(snap.raw.len() <= 240 * 1024, "{} bytes", snap.raw.len());

    // 2. The "Save clip" button, with the payload Home Assistant sends.
    let button = &cam0["components"]["save_clip"];
    let (cmd, press) = (button["command_topic"].as_str().unwrap(), button["payload_press"].as_str().unwrap());
    ha.drain();
    ha.publish(cmd, press.as_bytes()).await;
    let mut seen = Vec::new();
    gather(&mut ha, &mut seen, |s| {
        has(s, "hindsight/cam0/clip", |_| true) && has(s, "hindsight/cam0/last_clip", |_| true)
    })
    .await;
    let result = last(&seen, "hindsight/cam0/trigger/result").unwrap().json();
    assert_eq!(result["accepted"], true, "{result}");
    let clip = last(&seen, "hindsight/cam0/clip").unwrap().json();
    assert_eq!((clip["event_type"].as_str(), clip["label"].as_str()), (Some("clip_saved"), Some("home-assistant")));
    assert_eq!(clip["id"], result["clip_id"]);
    let web_url = clip["web_url"].as_str().unwrap();
    assert_eq!(web_url, format!("https://cam.lan:8443/api/clips/{}/video.mp4", result["clip_id"].as_str().unwrap()));
    assert!(ffprobe_duration(&storage.join(clip["path"].as_str().unwrap())) > 1.0);
    // The last clip is retained: a client arriving later gets it.
    let mut late = Observer::connect(port, "hindsight/cam0/last_clip");
    let kept = late.next("hindsight/cam0/last_clip", |m| m.retain).await.json();
    assert_eq!((&kept["id"], &kept["end_at"]), (&clip["id"], &clip["end_at"]));
    drop(late);

    // 3. The switch: OFF stops the camera (its state says so), ON starts it again.
    for (cmd, want) in [("OFF", "stopped"), ("ON", "running")] {
        ha.publish("hindsight/cam1/power/set", cmd.as_bytes()).await;
        ha.next("hindsight/cam1/state", |m| m.json()["state"] == want).await;
    }

    // 4. Home Assistant restarts: its birth message brings the configs again.
    ha.drain();
    ha.publish("homeassistant/status", b"online").await;
    let again = ha.next(&dev("cam0"), |m| !m.raw.is_empty()).await.json();
    assert_eq!(again, cam0, "the same config, ids stable");

    // 5. cam1 leaves the config. While the daemon is down, an OFF for cam0 is left retained:
    // replayed at the next subscription, it is ignored (cam0 keeps running and saves clips).
    d.shutdown().await;
    let stale = Observer::connect(port, "nothing/here");
    stale.client.publish("hindsight/cam0/power/set", rumqttc::QoS::AtLeastOnce, true, "OFF").await.unwrap();
    ha.next("hindsight/cam0/power/set", |_| true).await;
    drop(stale);
    ha.drain();
    let d = start(daemon_config(dir.path(), port, &["cam0"])).await;
    let mut seen = Vec::new();
    // An empty retained config removes the device in Home Assistant and the message on the broker.
    gather(&mut ha, &mut seen, |s| has(s, &dev("cam1"), |m| m.raw.is_empty()) && has(s, &dev("cam0"), |_| true)).await;
    assert_eq!(last(&seen, &dev("cam0")).unwrap().json(), cam0, "unique ids survive the restart");
    let p = d.cameras[0].preroll.clone();
    wait_for("1 s buffered", std::time::Duration::from_secs(60), || {
        p.stats().buffered >= std::time::Duration::from_secs(1)
    })
    .await;
    ha.drain();
    ha.publish(cmd, press.as_bytes()).await;
    let r: Value = ha.next("hindsight/cam0/trigger/result", |_| true).await.json();
    assert_eq!(r["accepted"], true, "cam0 still runs: {r}");
    ha.next("hindsight/cam0/clip", |m| m.json()["event_type"] == "clip_saved").await;
    d.shutdown().await;
}
