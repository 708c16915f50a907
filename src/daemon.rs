//! `hindsight run`: start every camera, bind HTTP, tell systemd, and drain on the first
//! SIGTERM/SIGINT (a second one exits at once).
//!
//! Drain order: STOPPING=1, end live MJPEG streams, stop the HTTP server, stop each camera
//! (capture stops, the encoder gets EOS and flushes, threads are joined), then return.

use crate::camera::status::CameraState;
use crate::camera::Camera;
use crate::clip::recorder::Recorder;
use crate::clip::store::ClipStore;
use crate::clip::ClipEvent;
use crate::config::Config;
use crate::notify;
use crate::shutdown::StopToken;
use crate::storage::Storage;
use crate::trigger::{RejectCode, TriggerAccepted, TriggerRejected, TriggerRequest, TriggerTarget};
use crate::web::{self, AppState};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The HTTP address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The configured address.
        addr: String,
        /// warp's error.
        #[source]
        source: warp::Error,
    },
    /// `http.listen` is not an address (validation should have caught it).
    #[error("http.listen: {0:?} is not an address:port")]
    BadListen(String),
    /// A camera thread could not be spawned.
    #[error("cannot start camera {id}")]
    Camera {
        /// Camera id.
        id: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// GStreamer could not be initialised.
    #[error(transparent)]
    Gst(#[from] crate::pipeline::GstError),
}

/// A running daemon.
pub struct Daemon {
    /// The address HTTP is bound to.
    pub http_addr: SocketAddr,
    /// The cameras.
    pub cameras: Vec<Arc<Camera>>,
    /// One recorder per camera.
    pub recorders: Vec<Arc<Recorder>>,
    /// Triggers from MQTT and HTTP land here.
    pub hub: Arc<Hub>,
    stop: StopToken,
    server: tokio::task::JoinHandle<()>,
    mqtt: Option<tokio::task::JoinHandle<()>>,
    watchdog: tokio::task::JoinHandle<()>,
}

impl Daemon {
    /// Start cameras and HTTP (must be called inside a tokio runtime).
    pub async fn start(config: Config) -> Result<Daemon, StartError> {
        crate::pipeline::init()?;
        let cameras: Vec<Arc<Camera>> =
            config.cameras.iter().map(|c| Arc::new(Camera::new(c.clone(), &config))).collect();
        for c in &cameras {
            c.start().map_err(|e| StartError::Camera { id: c.id().into(), source: e })?;
        }
        let stop = StopToken::new();
        let store = Arc::new(ClipStore::new(Storage::new(&config.storage)));
        let events = tokio::sync::broadcast::channel(256).0;
        let recorders: Vec<Arc<Recorder>> =
            cameras.iter().map(|c| Arc::new(Recorder::new(c.clone(), store.clone(), events.clone()))).collect();
        // Open the index now so a crash's leftovers are reconciled before the first trigger.
        let s2 = store.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || s2.index()).await {
            log::error!(
                "clip storage unavailable: {}; clips are refused until it is",
                crate::camera::status::error_chain(&e)
            );
        }
        let hub = Arc::new(Hub { cameras: cameras.clone(), recorders: recorders.clone(), events });
        let state = Arc::new(AppState {
            cameras: cameras.clone(),
            recorders: recorders.clone(),
            uploads: crate::upload::Uploads::new(&config, store.clone()),
            store,
            storage_path: config.storage.path.clone(),
        });
        let addr: SocketAddr =
            config.http.listen.parse().map_err(|_| StartError::BadListen(config.http.listen.clone()))?;
        let stop2 = stop.clone();
        let (http_addr, server) = web::serve(state, addr, async move { stop2.stopped().await })
            .map_err(|e| StartError::Bind { addr: config.http.listen.clone(), source: e })?;
        log::info!("HTTP on http://{http_addr}");
        let server = tokio::spawn(server);
        let mqtt = if config.mqtt.enabled {
            let target: Arc<dyn TriggerTarget> = hub.clone();
            match crate::mqtt::Mqtt::new(&config.mqtt, target) {
                Ok(m) => {
                    log::info!("MQTT via {}{}", m.url(), if m.embedded() { " (embedded broker)" } else { "" });
                    Some(tokio::spawn(m.run(stop.clone())))
                }
                Err(e) => {
                    // MQTT is one way in; HTTP triggers still work. Say so loudly.
                    log::error!("MQTT disabled: {}", crate::camera::status::error_chain(&e));
                    None
                }
            }
        } else {
            None
        };
        let watchdog = tokio::spawn(notify::watchdog_loop(cameras.clone(), stop.clone()));
        Ok(Daemon { http_addr, cameras, recorders, hub, stop, server, mqtt, watchdog })
    }

    /// Wait until every camera runs (or `timeout`), then send READY=1. Returns whether all run.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let all_running = || self.cameras.iter().all(|c| c.status.state() == CameraState::Running);
        while !all_running() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let ok = all_running();
        let summary = notify::summary(&self.cameras);
        if ok {
            log::info!("ready: {summary}");
        } else {
            log::warn!("ready, degraded: {summary}");
        }
        notify::ready(&summary);
        ok
    }

    /// Drain: stop HTTP, stop every camera (EOS through encoders), join threads.
    pub async fn shutdown(self) {
        notify::stopping();
        // Live MJPEG streams never end by themselves: close them so HTTP can drain.
        for c in &self.cameras {
            c.preview.close();
        }
        self.stop.stop();
        let _ = self.server.await;
        if let Some(m) = self.mqtt {
            let _ = m.await;
        }
        let _ = self.watchdog.await;
        // Cut open clips at now and wait for them to be saved, while frames still flow.
        let recs: Vec<_> =
            self.recorders.iter().cloned().map(|r| tokio::task::spawn_blocking(move || r.shutdown())).collect();
        for r in recs {
            let _ = r.await;
        }
        let cams = self.cameras.clone();
        let stops: Vec<_> = cams.into_iter().map(|c| tokio::task::spawn_blocking(move || c.stop())).collect();
        for s in stops {
            let _ = s.await;
        }
        log::info!("stopped");
    }
}

/// Run until SIGTERM/SIGINT, then drain. A second signal exits immediately.
pub async fn run(config: Config) -> Result<(), StartError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| StartError::Camera { id: "signals".into(), source: e })?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(|e| StartError::Camera { id: "signals".into(), source: e })?;
    let daemon = Daemon::start(config).await?;
    tokio::select! {
        _ = daemon.wait_ready(Duration::from_secs(30)) => {}
        _ = term.recv() => { daemon.shutdown().await; return Ok(()); }
        _ = int.recv() => { daemon.shutdown().await; return Ok(()); }
    }
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    log::info!("signal received: draining (send again to exit at once)");
    let first = tokio::time::Instant::now();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            // One signal often arrives twice at once (sent to the process and to its group, as
            // `timeout` and some shells do): only a later one means "exit now".
            if first.elapsed() >= Duration::from_millis(500) {
                break;
            }
        }
        log::warn!("second signal: exiting without draining");
        std::process::exit(130);
    });
    daemon.shutdown().await;
    Ok(())
}

/// Routes triggers from MQTT and HTTP to the cameras' recorders.
pub struct Hub {
    cameras: Vec<Arc<Camera>>,
    recorders: Vec<Arc<Recorder>>,
    events: tokio::sync::broadcast::Sender<ClipEvent>,
}

impl TriggerTarget for Hub {
    fn camera_ids(&self) -> Vec<String> {
        self.cameras.iter().map(|c| c.id().to_string()).collect()
    }

    fn trigger(&self, camera: &str, req: TriggerRequest) -> Result<TriggerAccepted, TriggerRejected> {
        match self.recorders.iter().find(|r| r.camera_id() == camera) {
            Some(r) => r.trigger(&req),
            None => Err(TriggerRejected {
                code: RejectCode::UnknownCamera,
                message: format!("no camera {camera:?}"),
                trigger_id: req.id.clone(),
            }),
        }
    }

    fn camera_state(&self, camera: &str) -> Option<serde_json::Value> {
        let c = self.cameras.iter().find(|c| c.id() == camera)?;
        let recording = self.recorders.iter().find(|r| r.camera_id() == camera).is_some_and(|r| r.recording());
        let mut v = serde_json::to_value(c.info()).ok()?;
        if let Some(o) = v.as_object_mut() {
            o.insert("recording".into(), recording.into());
        }
        Some(v)
    }

    fn subscribe_events(&self) -> tokio::sync::broadcast::Receiver<ClipEvent> {
        self.events.subscribe()
    }
}
