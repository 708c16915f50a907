//! MQTT test peers: a mosquitto process of the test's own and a rumqttc client playing Home
//! Assistant.
#![allow(dead_code)]

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Longest wait for any one expected message.
pub const WAIT: Duration = Duration::from_secs(15);

use std::sync::atomic::{AtomicU64, Ordering};

/// A mosquitto process of our own; killed (by PID) on drop.
pub struct Mosquitto {
    pub child: Child,
    pub conf: PathBuf,
}

impl Mosquitto {
    /// Plain listener on 127.0.0.1:`port`, anonymous access, plus `extra` config lines.
    pub async fn start(dir: &Path, port: u16, extra: &str) -> Mosquitto {
        let conf = dir.join(format!("mosquitto-{port}.conf"));
        std::fs::write(&conf, format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n{extra}"))
            .unwrap();
        Self::spawn(conf, port).await
    }

    pub async fn spawn(conf: PathBuf, port: u16) -> Mosquitto {
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto runs (install it: scripts/deps test)");
        // Ready when the port accepts connections (no readiness event to await).
        let deadline = Instant::now() + WAIT;
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not listen on {port}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Mosquitto { child, conf }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

#[derive(Debug, Clone)]
pub struct Msg {
    pub topic: String,
    pub body: String,
    /// The payload as it arrived (`body` is its lossy UTF-8).
    pub raw: Vec<u8>,
    pub retain: bool,
}

impl Msg {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{} is not JSON ({e}): {}", self.topic, self.body))
    }
}

/// Home Assistant's side: a client subscribed to `filter` (again after every reconnect).
pub struct Observer {
    pub client: AsyncClient,
    rx: mpsc::UnboundedReceiver<Msg>,
    task: tokio::task::JoinHandle<()>,
}

impl Observer {
    pub fn connect(port: u16, filter: &str) -> Observer {
        static N: AtomicU64 = AtomicU64::new(0);
        let id = format!("obs-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(5));
        let (client, mut ev) = AsyncClient::new(o, 64);
        let (tx, rx) = mpsc::unbounded_channel();
        let (c, filter) = (client.clone(), filter.to_string());
        let task = tokio::spawn(async move {
            loop {
                match ev.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        c.try_subscribe(filter.clone(), QoS::AtLeastOnce).unwrap();
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let body = String::from_utf8_lossy(&p.payload).into_owned();
                        let _ = tx.send(Msg { topic: p.topic, body, raw: p.payload.to_vec(), retain: p.retain });
                    }
                    Ok(_) => {}
                    // The broker is down (test 2): the client's own retry pace.
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        Observer { client, rx, task }
    }

    /// The next message on `topic` that satisfies `pred`; earlier ones are skipped.
    pub async fn next(&mut self, topic: &str, pred: impl Fn(&Msg) -> bool) -> Msg {
        let deadline = Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(m)) if m.topic == topic && pred(&m) => return m,
                Ok(Some(_)) => {}
                Ok(None) => panic!("observer ended"),
                Err(_) => panic!("no matching message on {topic} within {WAIT:?}"),
            }
        }
    }

    /// The next message on any topic.
    pub async fn next_any(&mut self) -> Msg {
        match tokio::time::timeout(WAIT, self.rx.recv()).await {
            Ok(Some(m)) => m,
            Ok(None) => panic!("observer ended"),
            Err(_) => panic!("no message within {WAIT:?}"),
        }
    }

    /// The next message on any `.../trigger/result` topic.
    pub async fn next_result(&mut self) -> Msg {
        let deadline = Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(m)) if m.topic.ends_with("/trigger/result") => return m,
                Ok(Some(_)) => {}
                Ok(None) => panic!("observer ended"),
                Err(_) => panic!("no trigger result within {WAIT:?}"),
            }
        }
    }

    /// The next `hindsight/status` that says `body` (`online`, `offline`).
    pub async fn status(&mut self, body: &str) -> Msg {
        self.next("hindsight/status", |m| m.body == body).await
    }

    pub async fn publish(&self, topic: &str, body: &[u8]) {
        self.client.publish(topic, QoS::AtLeastOnce, false, body.to_vec()).await.unwrap();
    }

    /// Publish `body` to `topic` and return the next trigger result.
    pub async fn ask(&mut self, topic: &str, body: &[u8]) -> Msg {
        self.publish(topic, body).await;
        self.next_result().await
    }

    /// Drop what has arrived so far.
    pub fn drain(&mut self) {
        while self.rx.try_recv().is_ok() {}
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
