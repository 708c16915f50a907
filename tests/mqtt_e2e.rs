//! The whole daemon over MQTT: a trigger published on a real mosquitto (and on the embedded
//! broker) gives a `trigger/result`, `recording` ON/OFF and a `clip` event, and the clip file is
//! frame-exact (ffprobe duration, stamped sequence numbers). Malformed payloads are answered;
//! after the broker is killed and restarted the next trigger still gives a clip. A trigger flood
//! on one topic is answered `rate_limited` past its burst; another topic is served.

mod common;

use common::bin::free_port;
use common::mqtt::*;
use common::*;
use hindsight::time::mono_now;
use std::time::Duration;

fn daemon_config(dir: &std::path::Path, url: Option<String>, listen: u16) -> hindsight::config::Config {
    let mut cam = test_camera("cam0", 320, 240, 30, 3.0);
    cam.post_s = 3.0;
    let mut c = config(dir, vec![cam]);
    c.mqtt.enabled = true;
    c.mqtt.url = url;
    c.mqtt.listen = format!("127.0.0.1:{listen}");
    c
}

/// Trigger over MQTT and check everything that comes back, and the file.
async fn trigger_and_check(obs: &mut Observer, d: &hindsight::daemon::Daemon, storage: &std::path::Path, id: &str) {
    let p = d.cameras[0].preroll.clone();
    wait_for("4 s buffered", Duration::from_secs(60), || p.stats().buffered >= Duration::from_secs(4)).await;
    obs.drain();
    let t0 = mono_now();
    obs.publish("hindsight/cam0/trigger", format!(r#"{{"label":"mqtt","id":"{id}"}}"#).as_bytes()).await;
    // Collect everything until the clip is announced and recording is OFF again: the result,
    // ON, the clip and OFF may arrive in any order relative to each other.
    let mut seen: Vec<Msg> = Vec::new();
    let mut t1 = None;
    loop {
        let m = obs.next_any().await;
        if m.topic == "hindsight/cam0/trigger/result" {
            t1.get_or_insert_with(mono_now);
        }
        let done = m.topic == "hindsight/cam0/recording" && m.body == "OFF";
        seen.push(m);
        if done && seen.iter().any(|m| m.topic == "hindsight/cam0/clip") {
            break;
        }
    }
    let t1 = t1.expect("a trigger result");
    let find = |topic: &str| seen.iter().find(|m| m.topic == topic).unwrap_or_else(|| panic!("no {topic} in {seen:?}"));
    let r = find("hindsight/cam0/trigger/result").json();
    assert_eq!(r["accepted"], true, "{r}");
    assert_eq!(r["trigger_id"], id);
    let clip_id = r["clip_id"].as_str().unwrap().to_string();
    assert!(seen.iter().any(|m| m.topic == "hindsight/cam0/recording" && m.body == "ON"), "{seen:?}");
    let clip = find("hindsight/cam0/clip").json();
    assert_eq!(clip["id"], clip_id.as_str());
    assert_eq!(clip["url"], format!("/api/clips/{clip_id}/video.mp4").as_str());
    assert_eq!(clip["label"], "mqtt");
    let file = storage.join(clip["path"].as_str().unwrap());
    let dur = ffprobe_duration(&file);
    assert!((dur - 6.0).abs() <= 1.0 / 30.0 + (t1 - t0).as_secs_f64() + 0.001, "ffprobe duration {dur}");
    let seqs: Vec<u64> = decode_seqs(&file, 320, 240).into_iter().map(|s| s.expect("stamp")).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "no frame missing");
    // The first presented frame was captured at T − 3 s (T between publish and result).
    let s = p.lock();
    let near = |t: Duration| s.iter().min_by_key(|f| f.pts.abs_diff(t)).map(|f| f.seq);
    // Frames of the clip may have been evicted already; only check when still buffered.
    if let (Some(lo), Some(hi)) = (near(t0 - Duration::from_secs(3)), near(t1 - Duration::from_secs(3))) {
        if s.iter().next().is_some_and(|f| f.pts <= t0 - Duration::from_secs(3)) {
            assert!(seqs[0] + 1 >= lo && seqs[0] <= hi + 1, "first frame {} vs {lo}..={hi}", seqs[0]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_trigger_through_mosquitto_gives_a_clip_and_survives_a_broker_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut broker = Mosquitto::start(dir.path(), port, "").await;
    let cfg = daemon_config(dir.path(), Some(format!("mqtt://127.0.0.1:{port}")), 0);
    let storage = cfg.storage.path.clone();
    let mut obs = Observer::connect(port, "hindsight/#");
    let d = start(cfg).await;
    obs.next("hindsight/status", |m| m.body == "online").await;
    trigger_and_check(&mut obs, &d, &storage, "m1").await;

    // Malformed payloads are each answered on the result topic.
    for (topic, payload, code) in [
        ("hindsight/cam0/trigger", "not json", "bad_payload"),
        ("hindsight/cam0/trigger", r#"{"pre_s":"x"}"#, "bad_payload"),
        ("hindsight/cam0/trigger", r#"{"pre_s":-1}"#, "out_of_range"),
        ("hindsight/nocam/trigger", "", "unknown_camera"),
    ] {
        obs.drain();
        obs.publish(topic, payload.as_bytes()).await;
        let r = obs.next(&format!("{topic}/result"), |_| true).await.json();
        assert_eq!((r["accepted"].as_bool(), r["code"].as_str()), (Some(false), Some(code)), "{payload}: {r}");
        assert!(r["error"].as_str().is_some_and(|e| !e.is_empty()));
    }

    // Broker killed and restarted on the same port: the daemon reconnects by itself.
    broker.kill();
    let conf = broker.conf.clone();
    drop(broker);
    let _broker = Mosquitto::spawn(conf, port).await;
    obs.next("hindsight/status", |m| m.body == "online").await;
    trigger_and_check(&mut obs, &d, &storage, "m2").await;
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_trigger_through_the_embedded_broker() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = daemon_config(dir.path(), None, port);
    let storage = cfg.storage.path.clone();
    let d = start(cfg).await;
    let mut obs = Observer::connect(port, "hindsight/#");
    obs.next("hindsight/status", |m| m.body == "online").await;
    trigger_and_check(&mut obs, &d, &storage, "e1").await;
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt_trigger_flood_on_one_topic_is_answered_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _broker = Mosquitto::start(dir.path(), port, "").await;
    let cfg = daemon_config(dir.path(), Some(format!("mqtt://127.0.0.1:{port}")), 0);
    let mut obs = Observer::connect(port, "hindsight/#");
    let d = start(cfg).await;
    obs.next("hindsight/status", |m| m.body == "online").await;
    let p = d.cameras[0].preroll.clone();
    wait_for("1 s buffered", Duration::from_secs(60), || p.stats().buffered >= Duration::from_secs(1)).await;
    obs.drain();
    // 40 triggers at once on one topic (default: a burst of 10, then 1 a second): every one
    // is answered, the first ones accepted, the flood's tail refused.
    for i in 0..40 {
        obs.publish("hindsight/cam0/trigger", format!(r#"{{"id":"f{i}"}}"#).as_bytes()).await;
    }
    let (mut accepted, mut limited) = (Vec::new(), 0);
    for _ in 0..40 {
        let r = obs.next("hindsight/cam0/trigger/result", |_| true).await.json();
        if r["accepted"] == true {
            accepted.push(r["clip_id"].as_str().expect("clip_id").to_string());
        } else {
            assert_eq!(r["code"], "rate_limited", "{r}");
            assert!(r["error"].as_str().is_some_and(|e| e.contains("try again")), "{r}");
            assert!(r["trigger_id"].as_str().is_some_and(|t| t.starts_with('f')), "the trigger id is echoed: {r}");
            limited += 1;
        }
    }
    assert!(accepted.len() >= 10, "the burst is served: {} accepted", accepted.len());
    assert!(limited > 0, "40 triggers at once on one topic: some are refused");
    // Another topic (every camera) is its own source: served.
    obs.publish("hindsight/trigger", br#"{"id":"all-1"}"#).await;
    let r = obs.next("hindsight/cam0/trigger/result", |m| m.body.contains("all-1")).await.json();
    assert_eq!(r["accepted"], true, "{r}");
    // The flood's clip is still made.
    let clip = obs.next("hindsight/cam0/clip", |m| m.body.contains(&accepted[0])).await.json();
    assert!(clip.get("error").is_none(), "{clip}");
    d.shutdown().await;
}
