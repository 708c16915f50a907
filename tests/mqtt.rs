//! The MQTT stage against real brokers: mosquitto (started here with `mosquitto -c FILE` on a free
//! loopback port, killed by its own PID) and the embedded broker. A fake `TriggerTarget`
//! records trigger calls, returns canned answers and lets the test send clip events; a rumqttc
//! client plays Home Assistant.
//!
//! Needs `mosquitto` and `openssl` (`scripts/deps test`).

use hindsight::clip_meta::{ClipEvent, ClipMeta, ClipSource};
use hindsight::config::MqttConfig;
use hindsight::mqtt::Mqtt;
use hindsight::shutdown::StopToken;
use hindsight::trigger::{RejectCode, TriggerAccepted, TriggerRejected, TriggerRequest, TriggerTarget};
use rumqttc::QoS;
use serde_json::{json, Value};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::time::Instant;

mod common;

use common::bin::free_port;
use common::mqtt::*;

// ---------------------------------------------------------------- fake recorder

struct Fake {
    calls: Mutex<Vec<(String, TriggerRequest)>>,
    events: broadcast::Sender<ClipEvent>,
    state: Mutex<&'static str>,
    frames: AtomicU64,
}

impl Fake {
    fn new() -> Arc<Fake> {
        Arc::new(Fake {
            calls: Mutex::new(Vec::new()),
            events: broadcast::channel(16).0,
            state: Mutex::new("running"),
            frames: AtomicU64::new(0),
        })
    }

    fn calls(&self) -> Vec<(String, TriggerRequest)> {
        self.calls.lock().unwrap().clone()
    }
}

impl TriggerTarget for Fake {
    fn camera_ids(&self) -> Vec<String> {
        vec!["cam0".into(), "cam1".into()]
    }

    /// cam0 accepts, cam1 is "stopped".
    fn trigger(&self, camera: &str, req: TriggerRequest) -> Result<TriggerAccepted, TriggerRejected> {
        self.calls.lock().unwrap().push((camera.to_string(), req.clone()));
        if camera == "cam1" {
            return Err(TriggerRejected::new(RejectCode::CameraStopped, "camera cam1 is stopped"));
        }
        Ok(TriggerAccepted {
            trigger_id: req.id.clone().unwrap_or_else(|| "gen-1".into()),
            clip_id: "20260101T000000000Z-0000aa".into(),
            camera: camera.into(),
            extended: false,
            pre_s_actual: req.pre_s.unwrap_or(30.0),
            post_s: req.post_s.unwrap_or(30.0),
        })
    }

    fn camera_state(&self, camera: &str) -> Option<Value> {
        let frames = self.frames.fetch_add(1, Ordering::Relaxed);
        Some(json!({"id": camera, "state": *self.state.lock().unwrap(), "frames_captured": frames}))
    }

    fn subscribe_events(&self) -> broadcast::Receiver<ClipEvent> {
        self.events.subscribe()
    }
}

fn meta(id: &str) -> ClipMeta {
    ClipMeta {
        id: id.into(),
        camera: "cam0".into(),
        label: Some("door".into()),
        trigger_id: Some("t1".into()),
        trigger_ids: vec!["t1".into()],
        trigger_count: 0,
        trigger_at: "2026-01-01T00:00:03.000Z".into(),
        start_at: "2026-01-01T00:00:00.000Z".into(),
        end_at: "2026-01-01T00:00:06.000Z".into(),
        start_ms: 1_767_225_600_000,
        duration_s: 6.0,
        pre_s_actual: 3.0,
        size_bytes: 123_456,
        frames: 180,
        source: ClipSource::Trigger,
        path: format!("clips/cam0/2026-01-01/{id}.mp4"),
        pinned: false,
        partial: false,
        device: None,
        continues: None,
        remote_only: false,
    }
}

/// What a client that connects now gets for `topic`: the retained message.
async fn retained(port: u16, topic: &str) -> Msg {
    let mut o = Observer::connect(port, topic);
    let m = o.next(topic, |_| true).await;
    assert!(m.retain, "{topic}: first message to a new subscriber is not retained: {m:?}");
    m
}

fn config(port: u16) -> MqttConfig {
    MqttConfig { url: Some(format!("mqtt://127.0.0.1:{port}")), ..MqttConfig::default() }
}

/// An `Mqtt` that connects to the broker on `port` and triggers `fake`.
fn mqtt_at(port: u16, fake: Arc<Fake>) -> Mqtt {
    Mqtt::new(&config(port), fake, None).unwrap()
}

/// A mosquitto of the test's own on a free loopback port; its config file lives in `_dir`.
struct Broker {
    port: u16,
    mosquitto: Mosquitto,
    _dir: tempfile::TempDir,
}

async fn mosquitto() -> Broker {
    init_log();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mosquitto = Mosquitto::start(dir.path(), port, "").await;
    Broker { port, mosquitto, _dir: dir }
}

/// `Mqtt::run` in a task; `finish` stops it and waits for it.
struct Running {
    stop: StopToken,
    task: tokio::task::JoinHandle<()>,
}

fn run(mqtt: Mqtt) -> Running {
    let stop = StopToken::new();
    let task = tokio::spawn(mqtt.run(stop.clone()));
    Running { stop, task }
}

/// Run `mqtt` and wait until `ha` sees it come online.
async fn run_online(mqtt: Mqtt, ha: &mut Observer) -> Running {
    let running = run(mqtt);
    ha.status("online").await;
    running
}

/// Home Assistant subscribed to `filter` on `port`, then `mqtt` running and seen online.
async fn online(mqtt: Mqtt, port: u16, filter: &str) -> (Observer, Running) {
    let mut ha = Observer::connect(port, filter);
    let running = run_online(mqtt, &mut ha).await;
    (ha, running)
}

impl Running {
    async fn finish(self) {
        self.stop.stop();
        tokio::time::timeout(WAIT, self.task).await.expect("run returns after stop").unwrap();
    }

    /// `finish`, which must not wait out back-off or drain timeouts.
    async fn finish_promptly(self) {
        let t0 = Instant::now();
        self.finish().await;
        assert!(t0.elapsed() < Duration::from_millis(1500), "stop took {:?}", t0.elapsed());
    }
}

/// `ha` sees `offline`, and a client that connects now gets it retained.
async fn offline_retained(ha: &mut Observer, port: u16) {
    ha.status("offline").await;
    let m = retained(port, "hindsight/status").await;
    assert_eq!((m.body.as_str(), m.retain), ("offline", true));
}

fn init_log() {
    let _ = env_logger::builder().is_test(true).try_init();
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_results_and_events_with_mosquitto() {
    let broker = mosquitto().await;
    let port = broker.port;
    let fake = Fake::new();
    let mqtt = mqtt_at(port, fake.clone());
    assert_eq!(mqtt.url(), format!("mqtt://127.0.0.1:{port}"));
    assert!(!mqtt.embedded());
    let (mut ha, running) = online(mqtt, port, "hindsight/#").await;

    assert!(retained(port, "hindsight/status").await.body == "online");
    let state = retained(port, "hindsight/cam0/state").await.json();
    assert_eq!((state["id"].as_str(), state["state"].as_str()), (Some("cam0"), Some("running")));

    // One camera, JSON payload.
    let r = ha.ask("hindsight/cam0/trigger", br#"{"pre_s":3,"post_s":3,"label":"door","id":"t1"}"#).await;
    assert_eq!(r.topic, "hindsight/cam0/trigger/result");
    assert!(!r.retain);
    let v = r.json();
    assert_eq!(v["accepted"], true, "{v}");
    assert_eq!(v["trigger_id"], "t1");
    assert_eq!(v["clip_id"], "20260101T000000000Z-0000aa");
    let calls = fake.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].0, "cam0");
    assert_eq!(calls[0].1.pre_s, Some(3.0));
    assert_eq!(calls[0].1.label.as_deref(), Some("door"));

    // Every camera: an answer each (cam1's canned refusal included).
    let mut answers = [ha.ask("hindsight/trigger", b"ON").await, ha.next_result().await];
    answers.sort_by(|a, b| a.topic.cmp(&b.topic));
    assert_eq!(answers[0].topic, "hindsight/cam0/trigger/result");
    assert_eq!(answers[0].json()["accepted"], true);
    assert_eq!(answers[1].topic, "hindsight/cam1/trigger/result");
    let v = answers[1].json();
    assert_eq!(
        (v["accepted"].as_bool(), v["code"].as_str(), v["camera"].as_str()),
        (Some(false), Some("camera_stopped"), Some("cam1"))
    );

    // Malformed payloads and unknown cameras: refused with the right code, nothing panics.
    let bad: &[(&str, &[u8], &str)] = &[
        ("cam0", b"not json", "bad_payload"),
        ("cam0", br#"{"pre_s":"x"}"#, "bad_payload"),
        ("cam0", br#"{"pre_s":-1,"id":"neg"}"#, "out_of_range"),
        ("cam0", b"\xff\xfe", "bad_payload"),
        ("nocam", br#"{"id":"u1"}"#, "unknown_camera"),
    ];
    for (cam, payload, code) in bad {
        let r = ha.ask(&format!("hindsight/{cam}/trigger"), payload).await;
        assert_eq!(r.topic, format!("hindsight/{cam}/trigger/result"));
        let v = r.json();
        assert_eq!((v["accepted"].as_bool(), v["code"].as_str()), (Some(false), Some(*code)), "{v}");
        assert!(!v["error"].as_str().unwrap_or_default().is_empty(), "{v}");
    }
    assert_eq!(fake.calls().len(), 3, "malformed triggers must not reach the recorder");

    // A segment that is no camera id gets no answer: the next answer is the next valid trigger's.
    ha.publish("hindsight/NOT%20A%20CAMERA/trigger", b"").await;
    let r = ha.ask("hindsight/cam0/trigger", br#"{"id":"after"}"#).await;
    assert_eq!((r.topic.as_str(), r.json()["trigger_id"].as_str()), ("hindsight/cam0/trigger/result", Some("after")));

    // Clip events.
    let id = "20260101T000000000Z-0000ab";
    fake.events.send(ClipEvent::Recording { camera: "cam0".into(), on: true }).unwrap();
    let m = ha.next("hindsight/cam0/recording", |_| true).await;
    assert_eq!(m.body, "ON");
    assert_eq!(retained(port, "hindsight/cam0/recording").await.body, "ON");
    fake.events.send(ClipEvent::Saved(Box::new(meta(id)))).unwrap();
    let clip = ha.next("hindsight/cam0/clip", |_| true).await;
    assert!(!clip.retain);
    let v = clip.json();
    assert_eq!(v["url"], format!("/api/clips/{id}/video.mp4"));
    assert_eq!(
        (v["id"].as_str(), v["duration_s"].as_f64(), v["source"].as_str()),
        (Some(id), Some(6.0), Some("trigger"))
    );
    fake.events
        .send(ClipEvent::Failed { camera: "cam0".into(), clip_id: id.into(), error: "disk full".into() })
        .unwrap();
    let v = ha.next("hindsight/cam0/clip", |_| true).await.json();
    assert_eq!((v["error"].as_str(), v["clip_id"].as_str()), (Some("disk full"), Some(id)));

    // A state change goes out at the next check (every 2 s), not only every 30 s.
    *fake.state.lock().unwrap() = "failed";
    let v = ha.next("hindsight/cam0/state", |m| m.body.contains("\"failed\"")).await.json();
    assert_eq!(v["state"], "failed");

    running.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_echo_the_trigger_id_and_retained_triggers_are_ignored() {
    let broker = mosquitto().await;
    let fake = Fake::new();
    // A stale retained trigger waits on the broker before hindsight connects.
    let mut ha = Observer::connect(broker.port, "hindsight/#");
    ha.client.publish("hindsight/cam0/trigger", QoS::AtLeastOnce, true, "ON").await.unwrap();
    ha.next("hindsight/cam0/trigger", |_| true).await; // the broker has it

    let running = run_online(mqtt_at(broker.port, fake.clone()), &mut ha).await;
    let v = ha.ask("hindsight/cam0/trigger", br#"{"pre_s":-1,"id":"neg"}"#).await.json();
    assert_eq!((v["code"].as_str(), v["trigger_id"].as_str()), (Some("out_of_range"), Some("neg")), "{v}");
    let v = ha.ask("hindsight/nocam/trigger", br#"{"id":"u1"}"#).await.json();
    assert_eq!((v["code"].as_str(), v["trigger_id"].as_str()), (Some("unknown_camera"), Some("u1")), "{v}");
    assert!(fake.calls().is_empty(), "the retained trigger was acted on: {:?}", fake.calls());
    running.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_the_broker_is_killed_and_restarted() {
    let mut broker = mosquitto().await;
    let port = broker.port;
    let (mut ha, running) = online(mqtt_at(port, Fake::new()), port, "hindsight/#").await;

    broker.mosquitto.kill();
    ha.drain();
    let conf = broker.mosquitto.conf.clone();
    let _restarted = Mosquitto::spawn(conf, port).await;

    // No persistence: an `online` now comes from the reconnected session.
    ha.status("online").await;
    ha.next("hindsight/cam0/state", |_| true).await;
    let v = ha.ask("hindsight/cam0/trigger", br#"{"id":"again"}"#).await.json();
    assert_eq!((v["accepted"].as_bool(), v["trigger_id"].as_str()), (Some(true), Some("again")), "{v}");
    running.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_stop_publishes_offline_retained() {
    let broker = mosquitto().await;
    let (mut ha, running) = online(mqtt_at(broker.port, Fake::new()), broker.port, "hindsight/status").await;
    running.finish().await;
    offline_retained(&mut ha, broker.port).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_will_when_the_connection_vanishes() {
    let broker = mosquitto().await;
    let (mut ha, running) = online(mqtt_at(broker.port, Fake::new()), broker.port, "hindsight/status").await;
    // Abort the task: the socket closes without DISCONNECT, as when the process dies.
    running.task.abort();
    let _ = running.task.await;
    offline_retained(&mut ha, broker.port).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_broker_end_to_end() {
    init_log();
    // Port 0: the broker picks a free port and the URL tells which.
    let cfg = MqttConfig { listen: "127.0.0.1:0".into(), ..MqttConfig::default() };
    let fake = Fake::new();
    let mqtt = Mqtt::new(&cfg, fake.clone(), None).unwrap();
    assert!(mqtt.embedded());
    let port: u16 = mqtt.url().strip_prefix("mqtt://127.0.0.1:").and_then(|p| p.parse().ok()).expect("a concrete port");
    assert_ne!(port, 0);
    let (mut ha, running) = online(mqtt, port, "hindsight/#").await;
    assert_eq!(retained(port, "hindsight/status").await.body, "online");

    let v = ha.ask("hindsight/cam0/trigger", br#"{"pre_s":3,"post_s":3,"label":"door","id":"t1"}"#).await.json();
    assert_eq!((v["accepted"].as_bool(), v["trigger_id"].as_str()), (Some(true), Some("t1")), "{v}");
    assert_eq!(fake.calls()[0].1.pre_s, Some(3.0));
    let v = ha.ask("hindsight/cam0/trigger", b"not json").await.json();
    assert_eq!(v["code"], "bad_payload");
    fake.events.send(ClipEvent::Recording { camera: "cam0".into(), on: true }).unwrap();
    assert_eq!(ha.next("hindsight/cam0/recording", |_| true).await.body, "ON");

    running.finish().await;
    // The broker is gone and its port free again.
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("embedded broker released its port");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_port_taken_uses_the_broker_there() {
    let broker = mosquitto().await;
    let port = broker.port;
    let cfg = MqttConfig { listen: format!("127.0.0.1:{port}"), ..MqttConfig::default() };
    let mqtt = Mqtt::new(&cfg, Fake::new(), None).unwrap();
    assert!(!mqtt.embedded(), "port {port} is mosquitto's");
    assert_eq!(mqtt.url(), format!("mqtt://127.0.0.1:{port}"));
    let (mut ha, running) = online(mqtt, port, "hindsight/#").await;
    ha.ask("hindsight/trigger", b"").await;
    running.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtts_with_a_private_ca() {
    init_log();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sh = |script: &str| {
        let out = Command::new("sh").arg("-ec").arg(script).current_dir(d).output().expect("sh runs");
        assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    };
    sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=hindsight-test-ca 2>/dev/null");
    sh("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout srv.key -out srv.csr -subj /CN=localhost 2>/dev/null");
    sh("printf 'subjectAltName=DNS:localhost\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > ext.cnf && \
        openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 -extfile ext.cnf 2>/dev/null");
    // mosquitto started as root reads the files as user `mosquitto`.
    sh("chmod 755 . && chmod 644 srv.key srv.pem ca.pem");
    let (plain, tls) = (free_port(), free_port());
    let extra = format!(
        "listener {tls} 127.0.0.1\ncafile {0}/ca.pem\ncertfile {0}/srv.pem\nkeyfile {0}/srv.key\n",
        d.display()
    );
    let _broker = Mosquitto::start(d, plain, &extra).await;
    let cfg = MqttConfig {
        url: Some(format!("mqtts://localhost:{tls}")),
        ca_file: Some(d.join("ca.pem")),
        ..MqttConfig::default()
    };
    let mqtt = Mqtt::new(&cfg, Fake::new(), None).unwrap();
    assert_eq!(mqtt.url(), format!("mqtts://localhost:{tls}"));
    let (mut ha, running) = online(mqtt, plain, "hindsight/#").await;
    assert_eq!(ha.ask("hindsight/cam0/trigger", b"ON").await.json()["accepted"], true);
    running.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_during_an_outage_is_prompt() {
    let mut broker = mosquitto().await;
    let (_ha, running) = online(mqtt_at(broker.port, Fake::new()), broker.port, "hindsight/status").await;
    broker.mosquitto.kill();
    // Whether or not the loop has noticed yet, stop must not wait out back-off or drain timeouts.
    running.finish_promptly().await;

    // And with nothing ever listening.
    run(mqtt_at(free_port(), Fake::new())).finish_promptly().await;
}
