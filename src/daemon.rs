//! `hindsight run`: start every camera, bind HTTP, tell systemd, and drain on the first
//! SIGTERM/SIGINT (a second one exits at once).
//!
//! Drain order: STOPPING=1, stop the HTTP server, stop each camera (capture stops, the encoder
//! gets EOS and flushes, threads are joined), then return.

use crate::camera::status::CameraState;
use crate::camera::Camera;
use crate::config::Config;
use crate::notify;
use crate::shutdown::StopToken;
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
    stop: StopToken,
    server: tokio::task::JoinHandle<()>,
    watchdog: tokio::task::JoinHandle<()>,
}

impl Daemon {
    /// Start cameras and HTTP (must be called inside a tokio runtime).
    pub async fn start(config: Config) -> Result<Daemon, StartError> {
        crate::pipeline::init()?;
        let cameras: Vec<Arc<Camera>> = config
            .cameras
            .iter()
            .map(|c| Arc::new(Camera::new(c.clone(), &config)))
            .collect();
        for c in &cameras {
            c.start().map_err(|e| StartError::Camera {
                id: c.id().into(),
                source: e,
            })?;
        }
        let stop = StopToken::new();
        let state = Arc::new(AppState {
            cameras: cameras.clone(),
            storage_path: config.storage.path.clone(),
        });
        let addr: SocketAddr = config
            .http
            .listen
            .parse()
            .map_err(|_| StartError::BadListen(config.http.listen.clone()))?;
        let stop2 = stop.clone();
        let (http_addr, server) = web::serve(state, addr, async move { stop2.stopped().await })
            .map_err(|e| StartError::Bind {
                addr: config.http.listen.clone(),
                source: e,
            })?;
        log::info!("HTTP on http://{http_addr}");
        let server = tokio::spawn(server);
        let watchdog = tokio::spawn(notify::watchdog_loop(cameras.clone(), stop.clone()));
        Ok(Daemon {
            http_addr,
            cameras,
            stop,
            server,
            watchdog,
        })
    }

    /// Wait until every camera runs (or `timeout`), then send READY=1. Returns whether all run.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let all_running = || {
            self.cameras
                .iter()
                .all(|c| c.status.state() == CameraState::Running)
        };
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
        self.stop.stop();
        let _ = self.server.await;
        let _ = self.watchdog.await;
        let cams = self.cameras.clone();
        let stops: Vec<_> = cams
            .into_iter()
            .map(|c| tokio::task::spawn_blocking(move || c.stop()))
            .collect();
        for s in stops {
            let _ = s.await;
        }
        log::info!("stopped");
    }
}

/// Run until SIGTERM/SIGINT, then drain. A second signal exits immediately.
pub async fn run(config: Config) -> Result<(), StartError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(|e| StartError::Camera {
        id: "signals".into(),
        source: e,
    })?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| StartError::Camera {
        id: "signals".into(),
        source: e,
    })?;
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
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        log::warn!("second signal: exiting without draining");
        std::process::exit(130);
    });
    daemon.shutdown().await;
    Ok(())
}
