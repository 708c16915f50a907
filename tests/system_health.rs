//! The box's health and alerts end to end, over a fake sysfs (a directory standing in for
//! `/sys`: thermal zones and the Raspberry Pi firmware's `get_throttled`, changed by the test):
//! an alert is raised and cleared once each — not again inside the hysteresis — on every
//! channel: `/api/health/system`, `/api/health`, the SSE stream, MQTT (a real mosquitto:
//! retained `hindsight/alert/{key}` and the `hindsight/alert` events) and `/metrics`. Without a
//! thermal zone the temperature is null and no alert fires. `/proc` is the real one.

mod common;

use common::bin::free_port;
use common::mqtt::*;
use common::*;
use futures_util::StreamExt;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use tokio::sync::mpsc;

fn zone(sys: &Path, n: u32, kind: &str, milli: u32) {
    let d = sys.join(format!("class/thermal/thermal_zone{n}"));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("type"), format!("{kind}\n")).unwrap();
    // Written whole then renamed, as sysfs never shows a half-written value.
    std::fs::write(d.join("temp.new"), format!("{milli}\n")).unwrap();
    std::fs::rename(d.join("temp.new"), d.join("temp")).unwrap();
}

fn throttled(sys: &Path, word: &str) {
    let d = sys.join("devices/platform/soc/soc:firmware");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("get_throttled.new"), format!("{word}\n")).unwrap();
    std::fs::rename(d.join("get_throttled.new"), d.join("get_throttled")).unwrap();
}

/// A daemon sampling every second over `sys`, only the temperature and throttling alerts on
/// (memory and disk figures of a test machine are not the test's business).
fn health_config(dir: &Path, sys: &Path, mqtt_port: Option<u16>) -> hindsight::config::Config {
    let mut c = config(dir, vec![test_camera("cam0", 320, 240, 15, 2.0)]);
    c.alerts.sysfs_root = Some(sys.to_path_buf());
    c.alerts.interval_s = 1;
    c.alerts.temperature_c = 70.0;
    c.alerts.temperature_hysteresis_c = 5.0;
    c.alerts.free_percent = 0.0;
    c.alerts.rss_mib = 0;
    c.alerts.dropped_per_min = 0;
    if let Some(port) = mqtt_port {
        c.mqtt.enabled = true;
        c.mqtt.url = Some(format!("mqtt://127.0.0.1:{port}"));
        c.mqtt.discovery = false;
    }
    c
}

/// The `alert` events of `/api/events`, as JSON, on a channel.
async fn sse_alerts(addr: std::net::SocketAddr) -> mpsc::UnboundedReceiver<Value> {
    let resp = reqwest::get(format!("http://{addr}/api/events")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut body = resp.bytes_stream();
        let mut buf = String::new();
        while let Some(Ok(chunk)) = body.next().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                let event = block.lines().find_map(|l| l.strip_prefix("event:")).map(str::trim);
                let data: String = block.lines().filter_map(|l| l.strip_prefix("data:")).collect();
                if event == Some("alert") {
                    let _ = tx.send(serde_json::from_str(data.trim()).unwrap());
                }
            }
        }
    });
    rx
}

async fn next_sse(rx: &mut mpsc::UnboundedReceiver<Value>) -> Value {
    tokio::time::timeout(Duration::from_secs(30), rx.recv()).await.expect("an SSE alert within 30 s").unwrap()
}

/// `/api/health/system` once it reflects `pred` (sampled every second).
async fn system_when(addr: std::net::SocketAddr, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, v) = get_json(addr, "/api/health/system").await;
        assert_eq!(status, 200, "{v}");
        if pred(&v) {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "never {what}: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn alert<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v["alerts"].as_array()?.iter().find(|a| a["kind"] == key && a.get("camera").is_none())
}

async fn metrics(addr: std::net::SocketAddr) -> String {
    reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap()
}

/// Samples taken so far (the history grows by one per sample).
fn samples(v: &Value) -> usize {
    v["history"].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_raise_and_clear_once_each_on_every_channel() {
    let dir = tempfile::tempdir().unwrap();
    let sys = dir.path().join("sys");
    zone(&sys, 0, "cpu-thermal", 45_000);
    zone(&sys, 1, "gpu-thermal", 44_000);
    throttled(&sys, "0");
    let port = free_port();
    let _broker = Mosquitto::start(dir.path(), port, "").await;
    let mut mqtt = Observer::connect(port, "hindsight/alert/#");
    let mut events = Observer::connect(port, "hindsight/alert");
    let d = start(health_config(dir.path(), &sys, Some(port))).await;
    let addr = d.http_addr;
    let mut sse = sse_alerts(addr).await;

    let v = system_when(addr, "sampled with a frame encoded", |v| {
        v["temperature_c"] == 45.0 && v["cameras"][0]["encode_latency_ms"].is_number()
    })
    .await;
    assert_eq!(v["thermal_zones"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["throttled"]["raw"], 0, "{v}");
    assert_eq!(alert(&v, "temperature").unwrap()["active"], false, "{v}");
    assert!(v["memory"]["rss_bytes"].as_u64().unwrap() > 0 && v["uptime_s"].as_f64().unwrap() > 0.0, "{v}");
    let cam = &v["cameras"][0];
    assert_eq!(cam["id"], "cam0", "{v}");
    assert!(cam["encode_latency_ms"].as_f64().unwrap() > 0.0, "capture → encoded frame measured: {v}");
    assert!(v["disk_errors"].is_null(), "the fake sysfs has no block device: unknown, not 0: {v}");
    // Retained states are there for a client that comes later.
    let m = mqtt.next("hindsight/alert/temperature", |m| m.json()["active"] == false).await;
    assert_eq!(m.json()["threshold"], 70.0);

    // Hot: raised once, on every channel.
    zone(&sys, 1, "gpu-thermal", 85_000);
    let e = next_sse(&mut sse).await;
    assert_eq!((e["kind"].as_str(), e["active"].as_bool()), (Some("temperature"), Some(true)), "{e}");
    assert_eq!(e["value"], 85.0, "{e}");
    let m = mqtt.next("hindsight/alert/temperature", |m| m.json()["active"] == true).await;
    assert!(m.json()["message"].as_str().unwrap().contains("85.0"), "{}", m.body);
    events.next("hindsight/alert", |m| m.json()["kind"] == "temperature" && m.json()["active"] == true).await;
    let (_, h) = get_json(addr, "/api/health").await;
    assert_eq!(h["alerts"], serde_json::json!(["temperature"]), "{h}");
    let text = metrics(addr).await;
    assert!(text.contains("hindsight_alert{alert=\"temperature\"} 1"), "{text}");
    assert!(text.contains("hindsight_soc_temperature_celsius 85"), "{text}");

    // Cooling inside the hysteresis (70 − 5 < 68 < 70): still raised, nothing sent.
    zone(&sys, 1, "gpu-thermal", 68_000);
    let at = samples(&system_when(addr, "68 °C", |v| v["temperature_c"] == 68.0).await);
    let v = system_when(addr, "two more samples", |v| samples(v) >= at + 2).await;
    assert_eq!(alert(&v, "temperature").unwrap()["active"], true, "{v}");
    assert!(sse.try_recv().is_err(), "no event inside the hysteresis");

    // Cool: cleared once.
    zone(&sys, 1, "gpu-thermal", 60_000);
    let e = next_sse(&mut sse).await;
    assert_eq!((e["kind"].as_str(), e["active"].as_bool()), (Some("temperature"), Some(false)), "{e}");
    mqtt.next("hindsight/alert/temperature", |m| m.json()["active"] == false).await;
    let (_, h) = get_json(addr, "/api/health").await;
    assert_eq!(h["alerts"], serde_json::json!([]), "{h}");
    assert!(metrics(addr).await.contains("hindsight_alert{alert=\"temperature\"} 0"));

    // Under-voltage and throttling from the firmware's word, then only "has occurred" bits.
    throttled(&sys, "50005");
    let e = next_sse(&mut sse).await;
    assert_eq!((e["kind"].as_str(), e["active"].as_bool()), (Some("throttled"), Some(true)), "{e}");
    assert_eq!(e["message"], "under-voltage, throttled", "{e}");
    let v = system_when(addr, "throttled", |v| v["throttled"]["raw"] == 0x50005).await;
    assert_eq!(v["throttled"]["under_voltage"], true);
    throttled(&sys, "50000");
    let e = next_sse(&mut sse).await;
    assert_eq!((e["kind"].as_str(), e["active"].as_bool()), (Some("throttled"), Some(false)), "{e}");
    mqtt.next("hindsight/alert/throttled", |m| m.json()["active"] == false).await;

    // Once each: a few more samples bring nothing new.
    let at = samples(&get_json(addr, "/api/health/system").await.1);
    system_when(addr, "two more samples", |v| samples(v) >= at + 2).await;
    assert!(sse.try_recv().is_err(), "every alert raised and cleared once");
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_thermal_zone_the_temperature_is_null_and_nothing_fires() {
    let dir = tempfile::tempdir().unwrap();
    let sys = dir.path().join("empty-sys");
    std::fs::create_dir_all(&sys).unwrap();
    let mut cfg = health_config(dir.path(), &sys, None);
    cfg.alerts.temperature_c = 1.0;
    let d = start(cfg).await;
    let v = system_when(d.http_addr, "three samples", |v| samples(v) >= 3).await;
    assert!(v["temperature_c"].is_null() && v["throttled"].is_null(), "{v}");
    assert_eq!(v["thermal_zones"], serde_json::json!([]), "{v}");
    assert!(v["alerts"].as_array().unwrap().iter().all(|a| a["active"] == false), "{v}");
    assert!(v["cpu_percent"].is_number(), "CPU use from the second sample on: {v}");
    let text = metrics(d.http_addr).await;
    assert!(!text.contains("\nhindsight_soc_temperature_celsius "), "no invented temperature: {text}");
    assert!(text.contains("hindsight_alert{alert=\"temperature\"} 0"), "{text}");
    d.shutdown().await;
}
