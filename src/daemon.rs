//! `hindsight run`: start every camera, bind HTTP, tell systemd, and drain on the first
//! SIGTERM/SIGINT (a second one exits at once).
//!
//! Drain order: STOPPING=1, end live MJPEG streams and WebRTC sessions, stop the HTTP server, stop each camera
//! (capture stops, the encoder gets EOS and flushes, threads are joined), then return.

use crate::camera::registry::Registry;
use crate::camera::Camera;
use crate::clip::recorder::Recorder;
use crate::clip::store::ClipStore;
use crate::config::Config;
use crate::control::Control;
use crate::notify;
use crate::shutdown::StopToken;
use crate::status::CameraState;
use crate::storage::Storage;
use crate::trigger::TriggerTarget;
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
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// HTTPS could not be set up (the message names the config key).
    #[error(transparent)]
    Tls(#[from] crate::web::tls::TlsError),
    /// Login state could not be set up.
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    /// Login or certificate state would be created under `storage.path`, which
    /// `storage.require_mount` says must be a mounted disk, and it is not mounted.
    #[error(
        "not starting: login and certificate state ({}) are kept under storage.path and would be made anew \
         on the root filesystem",
        .dir.display()
    )]
    StateUnmounted {
        /// `http.state_dir`.
        dir: std::path::PathBuf,
        /// `MountMissing`, naming `storage.require_mount`.
        #[source]
        source: crate::storage::StorageError,
    },
    /// A start-up task panicked.
    #[error("start-up task failed: {0}")]
    Task(String),
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
    Gst(#[from] crate::gst::GstError),
}

/// A running daemon.
pub struct Daemon {
    /// The address HTTP is bound to.
    pub http_addr: SocketAddr,
    /// Whether `http_addr` speaks HTTPS.
    pub https: bool,
    /// SHA-256 fingerprint of the served certificate (`AB:CD:..`) when HTTPS is on.
    pub tls_fingerprint: Option<String>,
    /// The plain-HTTP redirect listener's address (`http.redirect_listen`).
    pub redirect_addr: Option<SocketAddr>,
    /// The WebRTC live view (its UDP port), when it runs.
    pub webrtc: Option<Arc<crate::live::webrtc::Webrtc>>,
    /// The configured cameras (phones may add more: see `registry`).
    pub cameras: Vec<Arc<Camera>>,
    /// One recorder per configured camera.
    pub recorders: Vec<Arc<Recorder>>,
    /// Every camera, including those phones added at run time.
    pub registry: Arc<Registry>,
    /// Every action from HTTP and MQTT (triggers, recording, camera start/stop, phones).
    pub control: Arc<Control>,
    stop: StopToken,
    server: tokio::task::JoinHandle<()>,
    redirect: Option<tokio::task::JoinHandle<()>>,
    mqtt: Option<tokio::task::JoinHandle<()>>,
    watchdog: tokio::task::JoinHandle<()>,
}

/// The WebRTC live view on `http.webrtc_udp`; off when `webrtc_max_viewers` is 0. A port that
/// cannot be bound is logged and leaves live view to HLS and MJPEG (the rest runs).
fn start_webrtc(http: &crate::config::HttpConfig) -> Option<Arc<crate::live::webrtc::Webrtc>> {
    use crate::live::webrtc::{Settings, Webrtc};
    if http.webrtc_max_viewers == 0 {
        log::info!("WebRTC live view off (http.webrtc_max_viewers = 0)");
        return None;
    }
    let settings = Settings {
        udp_port: http.webrtc_udp,
        max_viewers: http.webrtc_max_viewers,
        addresses: http.webrtc_addresses.clone(),
    };
    match Webrtc::start(settings) {
        Ok(w) => {
            log::info!("WebRTC live view on UDP port {}", w.port());
            Some(w)
        }
        Err(e) => {
            log::error!("WebRTC live view off: UDP port {} (http.webrtc_udp): {e}", http.webrtc_udp);
            None
        }
    }
}

impl Daemon {
    /// Start cameras and HTTP (must be called inside a tokio runtime).
    pub async fn start(config: Config) -> Result<Daemon, StartError> {
        // With the storage disk missing, login and HTTPS state under storage.path would be made
        // anew on the SD card (a new password, a new certificate): refuse to start instead, so
        // systemd restarts us until the disk is mounted. Checked before anything else runs.
        let http = &config.http;
        if http.auth_enabled() || (http.tls_enabled() && http.cert_file.is_none()) {
            let dir = config.state_dir();
            Storage::new(&config.storage)
                .check_state_dir(&dir)
                .map_err(|source| StartError::StateUnmounted { dir, source })?;
        }
        crate::gst::init()?;
        for n in crate::probe::missing_elements() {
            log::warn!(
                "GStreamer element {} is missing: {} will not work (install {})",
                n.element,
                n.needed_for,
                n.package
            );
        }
        // Login state and the certificate first: a broken one fails the start before any camera runs.
        let cfg2 = config.clone();
        let auth = tokio::task::spawn_blocking(move || crate::auth::Auth::new(&cfg2))
            .await
            .map_err(|e| StartError::Task(e.to_string()))??;
        let auth = Arc::new(auth);
        let tls = if config.http.tls_enabled() {
            let (http, dir) = (config.http.clone(), config.state_dir());
            let t = tokio::task::spawn_blocking(move || crate::web::tls::load(&http, &dir))
                .await
                .map_err(|e| StartError::Task(e.to_string()))??;
            Some(t)
        } else {
            None
        };
        let cameras: Vec<Arc<Camera>> =
            config.cameras.iter().map(|c| Arc::new(Camera::new(c.clone(), &config))).collect();
        for c in &cameras {
            if c.is_phone() {
                // Runs while its phone is connected.
                c.status.set_stopped();
            } else {
                c.start().map_err(|e| StartError::Camera { id: c.id().into(), source: e })?;
            }
        }
        let stop = StopToken::new();
        let store = Arc::new(ClipStore::new(Storage::new(&config.storage)));
        let events = tokio::sync::broadcast::channel(256).0;
        let registry = Arc::new(Registry::new(cameras.clone(), store.clone(), events, &config));
        let recorders = registry.recorders();
        // Open the index now so a crash's leftovers are reconciled before the first trigger.
        let s2 = store.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || s2.index()).await {
            log::error!("clip storage unavailable: {}; clips are refused until it is", crate::status::error_chain(&e));
        }
        let mut alerts = config.alerts.clone();
        // Tests only: a directory standing in for /sys (fake thermal zones, throttle flags).
        if alerts.sysfs_root.is_none() {
            alerts.sysfs_root = std::env::var_os("HINDSIGHT_SYSFS_ROOT").map(Into::into);
        }
        let monitor = Arc::new(crate::monitor::Monitor::new(alerts, &config.storage.path));
        let storage_path = config.storage.path.clone();
        monitor.clone().spawn(
            registry.clone(),
            move || Some(crate::control::storage_health(&storage_path)).filter(|s| s.ok).map(|s| s.free_percent),
            stop.clone(),
        );
        let control = Arc::new(
            Control::new(
                registry.clone(),
                crate::trigger::RateLimiter::new(config.triggers.rate_per_min, config.triggers.burst),
            )
            .with_monitor(monitor.clone()),
        );
        let webrtc = start_webrtc(&config.http);
        let exporter = config.export.as_ref().and_then(|x| {
            match crate::offsite::Exporter::start(x, store.clone(), registry.events().clone(), stop.clone()) {
                Ok(e) => {
                    log::info!("export to bucket {:?} at {}", x.bucket, x.endpoint);
                    Some(Arc::new(e))
                }
                Err(e) => {
                    log::error!("export off: {e}");
                    None
                }
            }
        });
        let state = Arc::new(AppState {
            monitor,
            webrtc: webrtc.clone(),
            exporter,
            registry: registry.clone(),
            control: control.clone(),
            uploads: crate::upload::Uploads::new(&config, store.clone()),
            store,
            storage_path: config.storage.path.clone(),
        });
        let addr: SocketAddr =
            config.http.listen.parse().map_err(|_| StartError::BadListen(config.http.listen.clone()))?;
        let stop2 = stop.clone();
        let (http_addr, server) =
            web::serve(state, auth.clone(), addr, tls.as_ref().map(|t| t.config.clone()), async move {
                stop2.stopped().await
            })
            .map_err(|e| StartError::Bind { addr: config.http.listen.clone(), source: e })?;
        match &tls {
            Some(t) => {
                log::info!("HTTPS on https://{http_addr} (certificate: {})", t.source);
                log::info!("certificate SHA-256 fingerprint: {}", t.fingerprint);
            }
            None => log::info!("HTTP on http://{http_addr}"),
        }
        log::info!(
            "login {}",
            if auth.enabled() { format!("required (user {:?})", config.http.username) } else { "off".into() }
        );
        let mut redirect_addr = None;
        let redirect = match (&config.http.redirect_listen, &tls) {
            (Some(r), Some(_)) => {
                let raddr: SocketAddr = r.parse().map_err(|_| StartError::BadListen(r.clone()))?;
                let fallback = match http_addr.ip() {
                    ip if ip.is_unspecified() => "localhost".to_string(),
                    std::net::IpAddr::V6(v6) => format!("[{v6}]"),
                    ip => ip.to_string(),
                };
                let stop3 = stop.clone();
                let (bound, fut) = web::serve::serve(
                    web::serve::redirect_filter(http_addr.port(), fallback),
                    raddr,
                    None,
                    async move { stop3.stopped().await },
                )
                .map_err(|e| StartError::Bind { addr: r.clone(), source: e })?;
                log::info!("HTTP on http://{bound} redirects to HTTPS");
                redirect_addr = Some(bound);
                Some(tokio::spawn(fut))
            }
            _ => None,
        };
        let server = tokio::spawn(server);
        let mqtt = if config.mqtt.enabled {
            let target: Arc<dyn TriggerTarget> = control.clone();
            match crate::mqtt::Mqtt::new(&config.mqtt, target, config.http.public_url.as_deref()) {
                Ok(m) => {
                    log::info!("MQTT via {}{}", m.url(), if m.embedded() { " (embedded broker)" } else { "" });
                    Some(tokio::spawn(m.run(stop.clone())))
                }
                Err(e) => {
                    // MQTT is one way in; HTTP triggers still work. Say so loudly.
                    log::error!("MQTT disabled: {}", crate::status::error_chain(&e));
                    None
                }
            }
        } else {
            None
        };
        let watchdog = tokio::spawn(notify::watchdog_loop(registry.clone(), stop.clone()));
        Ok(Daemon {
            http_addr,
            https: tls.is_some(),
            tls_fingerprint: tls.map(|t| t.fingerprint),
            redirect_addr,
            webrtc,
            cameras,
            recorders,
            registry,
            control,
            stop,
            server,
            redirect,
            mqtt,
            watchdog,
        })
    }

    /// Wait until every camera runs (or `timeout`), then send READY=1. Returns whether all run.
    /// Browser cameras are not waited for: they run while a phone is connected.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let all_running = || self.cameras.iter().all(|c| c.is_phone() || c.status.state() == CameraState::Running);
        while !all_running() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let ok = all_running();
        let summary = notify::summary(&self.registry.cameras());
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
        // No new phone cameras; phones' WebSockets are told to end.
        self.registry.close();
        let cameras = self.registry.cameras();
        // Live MJPEG streams never end by themselves: close them so HTTP can drain.
        for c in &cameras {
            c.preview.close();
        }
        // WebRTC viewers get their RTCP BYE and DTLS close now, not an ICE timeout later.
        if let Some(w) = &self.webrtc {
            w.shutdown().await;
        }
        self.stop.stop();
        let _ = self.server.await;
        if let Some(r) = self.redirect {
            let _ = r.await;
        }
        if let Some(m) = self.mqtt {
            let _ = m.await;
        }
        let _ = self.watchdog.await;
        // Cut open clips at now and wait for them to be saved, while frames still flow.
        let recs: Vec<_> =
            self.registry.recorders().into_iter().map(|r| tokio::task::spawn_blocking(move || r.shutdown())).collect();
        for r in recs {
            let _ = r.await;
        }
        // Continuous recordings: what is in RAM goes out, the open segments are indexed.
        let recs: Vec<_> = self
            .registry
            .snapshot()
            .iter()
            .filter_map(|e| e.continuous.clone())
            .map(|r| tokio::task::spawn_blocking(move || r.stop()))
            .collect();
        for r in recs {
            let _ = r.await;
        }
        let stops: Vec<_> = cameras.into_iter().map(|c| tokio::task::spawn_blocking(move || c.stop())).collect();
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
