//! The one control API: every action a user or an automation takes on the cameras — a trigger,
//! a manual recording's start and stop, a camera's start/stop/restart, and the rules of phone
//! cameras (created on first connection, run while a phone is connected, one phone each, a
//! stop ends the phone's connection). HTTP (`web`) and MQTT (`mqtt`) are two thin faces over
//! it (see docs/API.md): they parse and answer, this decides, so every rule lives once —
//! including the per-source trigger rate limit ([`Control::admit_trigger`]; a face names the
//! source: `http:{client address}`, `mqtt:{trigger topic}`).
//!
//! Owns no thread. The trigger and recording calls block (locks, storage): the async faces call
//! them through `spawn_blocking`. Camera start/stop is async (it waits for the phone feed's
//! control lock, then joins threads off the runtime). Must never import `web` or `mqtt`.

use crate::camera::registry::{CameraEntry, Registry, RegistryError};
use crate::camera::{Camera, CameraInfo};
use crate::capture::phone::PhoneFeed;
use crate::clip_meta::{ClipEvent, ClipMeta};
use crate::config::valid_camera_id;
use crate::status::CameraState;
use crate::trigger::{Job, RateLimiter, RejectCode, TriggerAccepted, TriggerRejected, TriggerRequest, TriggerTarget};
use serde::Serialize;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A camera verb: `POST /api/cameras/{id}/start|stop|restart`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CameraVerb {
    /// Start capture and encode (no-op if running).
    Start,
    /// Stop them; a phone camera's connection ends too.
    Stop,
    /// Stop, then start.
    Restart,
}

impl std::str::FromStr for CameraVerb {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "start" => Ok(CameraVerb::Start),
            "stop" => Ok(CameraVerb::Stop),
            "restart" => Ok(CameraVerb::Restart),
            _ => Err(()),
        }
    }
}

/// Why a camera action was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ControlError {
    /// No camera with this id.
    #[error("no camera {0:?}")]
    UnknownCamera(String),
    /// Not a valid camera id for a phone.
    #[error("camera id {0:?} must match [a-z0-9_-]{{1,32}} and not be {upload:?}", upload = crate::config::UPLOAD_CAMERA)]
    BadId(String),
    /// The action conflicts with the camera's kind or state.
    #[error("{0}")]
    Conflict(String),
    /// Phones may not create (more) cameras here.
    #[error("{0}")]
    Forbidden(String),
    /// The daemon is shutting down.
    #[error("shutting down")]
    ShuttingDown,
    /// The camera's pipeline could not start.
    #[error("cannot start camera {id}: {error}")]
    Start {
        /// Camera id.
        id: String,
        /// Why.
        error: String,
    },
}

/// A phone connected to its camera: the connection's generation, and a watch that changes when
/// another phone takes over, the camera is stopped, or the daemon stops.
pub struct PhoneSession {
    /// The camera the phone feeds.
    pub camera: Arc<Camera>,
    /// Its feed.
    pub feed: Arc<PhoneFeed>,
    /// This connection's generation (for [`Control::phone_left`]).
    pub gen: u64,
    /// Changes when this connection must end.
    pub replaced: tokio::sync::watch::Receiver<u64>,
}

/// The control API over the running cameras.
pub struct Control {
    registry: Arc<Registry>,
    limiter: RateLimiter,
    monitor: Option<Arc<crate::monitor::Monitor>>,
}

impl Control {
    /// Control over `registry`'s cameras; triggers limited per source by `limiter`.
    pub fn new(registry: Arc<Registry>, limiter: RateLimiter) -> Self {
        Control { registry, limiter, monitor: None }
    }

    /// With the box's monitor: health lists its raised alerts, MQTT republishes them.
    pub fn with_monitor(mut self, monitor: Arc<crate::monitor::Monitor>) -> Self {
        self.monitor = Some(monitor);
        self
    }

    /// Take one trigger from `source` (`http:{address}`, `mqtt:{topic}`) now, before the
    /// trigger itself. `Err(wait)`: over `[triggers]`'s rate; refuse it (HTTP 429 with
    /// `Retry-After`, MQTT `rate_limited`).
    pub fn admit_trigger(&self, source: &str) -> Result<(), std::time::Duration> {
        let r = self.limiter.admit(source, crate::time::mono_now());
        if let Err(wait) = r {
            log::debug!("trigger from {source} over the rate limit (next in {:.1} s)", wait.as_secs_f64());
        }
        r
    }

    /// The cameras.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// That `camera` exists (a face checks it before it reads the rest of a request, so an
    /// unknown camera is named first).
    pub fn require(&self, camera: &str) -> Result<(), ControlError> {
        self.entry(camera).map(drop)
    }

    fn entry(&self, camera: &str) -> Result<CameraEntry, ControlError> {
        self.registry.get(camera).ok_or_else(|| ControlError::UnknownCamera(camera.into()))
    }

    fn unknown(camera: &str, trigger_id: Option<String>) -> TriggerRejected {
        TriggerRejected {
            code: RejectCode::UnknownCamera,
            message: ControlError::UnknownCamera(camera.into()).to_string(),
            trigger_id,
        }
    }

    /// Trigger a clip on `camera` at now (blocks).
    pub fn trigger(&self, camera: &str, req: &TriggerRequest) -> Result<TriggerAccepted, TriggerRejected> {
        match self.registry.get(camera) {
            Some(e) => e.recorder.trigger(req),
            None => Err(Self::unknown(camera, req.id.clone())),
        }
    }

    /// Start a manual recording on `camera`; its clip id (blocks).
    pub fn record_start(&self, camera: &str) -> Result<String, TriggerRejected> {
        self.registry.get(camera).ok_or_else(|| Self::unknown(camera, None))?.recorder.record_start()
    }

    /// Stop the manual recording on `camera` and wait until its clip is saved (blocks).
    pub fn record_stop(&self, camera: &str) -> Result<ClipMeta, TriggerRejected> {
        self.registry.get(camera).ok_or_else(|| Self::unknown(camera, None))?.recorder.record_stop()
    }

    /// Start, stop or restart `camera`; its state afterwards.
    ///
    /// A phone camera runs while its phone is connected: starting one without a phone would only
    /// stall, so it is refused; stopping one ends the phone's connection too. Serialised with the
    /// phone connection's own start/stop.
    pub async fn camera(&self, camera: &str, verb: CameraVerb) -> Result<CameraInfo, ControlError> {
        let cam = self.entry(camera)?.camera;
        let _control = match &cam.feed {
            Some(feed) => {
                let guard = feed.control.lock().await;
                match verb {
                    CameraVerb::Start | CameraVerb::Restart if feed.idle_for().is_some() => {
                        return Err(ControlError::Conflict(format!(
                            "camera {camera} is a phone camera: it starts when a phone connects to /api/cameras/{camera}/push"
                        )))
                    }
                    CameraVerb::Stop => feed.kick(),
                    _ => {}
                }
                Some(guard)
            }
            None => None,
        };
        let cam2 = cam.clone();
        let res = tokio::task::spawn_blocking(move || match verb {
            CameraVerb::Start => cam2.start(),
            CameraVerb::Stop => {
                cam2.stop();
                Ok(())
            }
            CameraVerb::Restart => cam2.restart(),
        })
        .await
        .map_err(|e| ControlError::Start { id: camera.into(), error: format!("control task failed: {e}") })?;
        res.map_err(|e| ControlError::Start { id: camera.into(), error: e.to_string() })?;
        Ok(cam.info())
    }

    /// The phone camera `id`: found, or created for a phone (`[phone]`: `enabled`,
    /// `max_cameras`). A camera of another kind with this id is a conflict.
    pub fn phone_camera(&self, id: &str) -> Result<CameraEntry, ControlError> {
        if !valid_camera_id(id) {
            return Err(ControlError::BadId(id.into()));
        }
        if self.registry.is_closed() {
            return Err(ControlError::ShuttingDown);
        }
        let not_browser = || {
            ControlError::Conflict(format!(
                "camera {id:?} exists and is not a browser camera (source.kind = \"browser\")"
            ))
        };
        if let Some(e) = self.registry.get(id) {
            return if e.camera.is_phone() { Ok(e) } else { Err(not_browser()) };
        }
        match self.registry.add_phone(id) {
            Ok(e) => Ok(e),
            // Another phone created it a moment ago.
            Err(RegistryError::Exists(_)) => match self.registry.get(id) {
                Some(e) if e.camera.is_phone() => Ok(e),
                _ => Err(not_browser()),
            },
            Err(e @ (RegistryError::Disabled | RegistryError::Full(_))) => Err(ControlError::Forbidden(e.to_string())),
            Err(RegistryError::Closed) => Err(ControlError::ShuttingDown),
        }
    }

    /// A phone connected to `cam`: it takes the camera over (a previous phone's connection is
    /// told to end) and the camera restarts with a fresh pipeline for the new stream. `Ok(None)`
    /// when the daemon is stopping.
    pub async fn phone_joined(
        &self,
        cam: &Arc<Camera>,
        address: Option<String>,
        user_agent: Option<String>,
    ) -> Result<Option<PhoneSession>, ControlError> {
        let Some(feed) = cam.feed.clone() else {
            return Err(ControlError::Conflict(format!("camera {:?} is not a browser camera", cam.id())));
        };
        let _control = feed.control.lock().await;
        // Subscribed before connecting: a takeover or shutdown kick after this point is seen.
        let replaced = feed.subscribe();
        if self.registry.is_closed() {
            return Ok(None);
        }
        let gen = feed.connect(address, user_agent, cam.status.frames_captured.load(Ordering::Relaxed));
        // A fresh pipeline for the new stream (a replaced connection's decoder has another
        // stream's state).
        let c = cam.clone();
        let started = tokio::task::spawn_blocking(move || c.restart()).await;
        let err = match started {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(e.to_string()),
        };
        if let Some(error) = err {
            feed.disconnect(gen);
            return Err(ControlError::Start { id: cam.id().into(), error });
        }
        Ok(Some(PhoneSession { camera: cam.clone(), feed: feed.clone(), gen, replaced }))
    }

    /// The phone of `session` left: if no other phone took over, the camera stops.
    pub async fn phone_left(&self, session: &PhoneSession) {
        let _control = session.feed.control.lock().await;
        if session.feed.disconnect(session.gen) {
            log::info!("camera {}: phone disconnected; stopping the camera", session.camera.id());
            let c = session.camera.clone();
            let _ = tokio::task::spawn_blocking(move || c.stop()).await;
        }
    }

    /// The daemon's health: every camera running (a phone camera may wait for its phone) and
    /// the storage examinable.
    pub fn health(&self) -> Health {
        let mut cameras = serde_json::Map::new();
        let mut ok = true;
        for c in self.registry.cameras() {
            let info = c.info();
            // A browser camera is stopped while no phone is connected: that is not a fault.
            ok &= info.state == CameraState::Running || (c.is_phone() && info.state == CameraState::Stopped);
            cameras.insert(
                info.id.clone(),
                serde_json::json!({"state": info.state, "buffered_s": info.buffered_s, "last_error": info.last_error}),
            );
        }
        let storage = storage_health(self.registry.store().storage.root());
        let alerts =
            self.monitor.as_ref().map(|m| m.active_alerts().iter().map(|a| a.key()).collect()).unwrap_or_default();
        Health { status: if ok && storage.ok { "ok" } else { "degraded" }, cameras, storage, alerts }
    }
}

/// Storage figures for health.
#[derive(Debug, Serialize)]
pub struct StorageHealth {
    /// Storage directory.
    pub path: String,
    /// Whether the directory (or its nearest existing parent) can be examined.
    pub ok: bool,
    /// Bytes free on its filesystem.
    pub free_bytes: u64,
    /// Filesystem size.
    pub total_bytes: u64,
    /// Free space in percent.
    pub free_percent: f64,
}

pub fn storage_health(path: &std::path::Path) -> StorageHealth {
    // The directory is created lazily (nothing is written while idle): look at the nearest
    // existing ancestor.
    let mut p = path.to_path_buf();
    while !p.exists() {
        if !p.pop() {
            p = std::path::PathBuf::from(".");
            break;
        }
    }
    if p.as_os_str().is_empty() {
        p = std::path::PathBuf::from(".");
    }
    match nix::sys::statvfs::statvfs(&p) {
        Ok(s) => {
            let frag = s.fragment_size() as u64;
            let total = s.blocks() as u64 * frag;
            let free = s.blocks_available() as u64 * frag;
            StorageHealth {
                path: path.display().to_string(),
                ok: true,
                free_bytes: free,
                total_bytes: total,
                free_percent: if total > 0 { (free as f64 * 1000.0 / total as f64).round() / 10.0 } else { 0.0 },
            }
        }
        Err(_) => StorageHealth {
            path: path.display().to_string(),
            ok: false,
            free_bytes: 0,
            total_bytes: 0,
            free_percent: 0.0,
        },
    }
}

/// `GET /api/health` and MQTT `{base_topic}/health`.
#[derive(Debug, Serialize)]
pub struct Health {
    /// `ok`, or `degraded` (a camera not running, storage not examinable).
    pub status: &'static str,
    /// Per camera: state, buffered seconds, last error.
    pub cameras: serde_json::Map<String, serde_json::Value>,
    /// The storage's filesystem.
    pub storage: StorageHealth,
    /// The keys of the alerts raised now (`/api/health/system` has their details).
    pub alerts: Vec<String>,
}

/// MQTT's way in.
impl TriggerTarget for Control {
    fn camera_ids(&self) -> Vec<String> {
        self.registry.snapshot().iter().map(|e| e.camera.id().to_string()).collect()
    }

    fn trigger(&self, camera: &str, req: TriggerRequest) -> Result<TriggerAccepted, TriggerRejected> {
        Control::trigger(self, camera, &req)
    }

    fn admit(&self, source: &str) -> Result<(), std::time::Duration> {
        self.admit_trigger(source)
    }

    fn camera_state(&self, camera: &str) -> Option<serde_json::Value> {
        serde_json::to_value(self.registry.get(camera)?.info()).ok()
    }

    fn subscribe_events(&self) -> tokio::sync::broadcast::Receiver<ClipEvent> {
        self.registry.events().subscribe()
    }

    fn power(self: Arc<Self>, camera: String, on: bool) -> Job<()> {
        Box::pin(async move {
            let verb = if on { CameraVerb::Start } else { CameraVerb::Stop };
            self.camera(&camera, verb).await.map(|_| ()).map_err(|e| e.to_string())
        })
    }

    fn snapshot(self: Arc<Self>, camera: String) -> Job<bytes::Bytes> {
        Box::pin(async move {
            let entry = self.registry.get(&camera).ok_or_else(|| format!("no camera {camera:?}"))?;
            let jpeg = entry.camera.preview.snapshot(SNAPSHOT_WAIT).await.map_err(|e| e.to_string())?;
            Ok(jpeg.data)
        })
    }

    fn health(&self) -> Option<serde_json::Value> {
        serde_json::to_value(Control::health(self)).ok()
    }

    fn alerts(&self) -> Vec<(String, serde_json::Value)> {
        let all = self.monitor.as_ref().map(|m| m.alerts()).unwrap_or_default();
        all.iter().map(|a| (a.key(), serde_json::to_value(a).unwrap_or_default())).collect()
    }

    fn last_clip(&self, camera: &str) -> Option<ClipMeta> {
        let store = self.registry.store();
        // Nothing is created for this: without an index on disk there is no clip yet.
        if !store.storage.root().join("index").exists() {
            return None;
        }
        let q = crate::index::ClipQuery { camera: Some(camera.to_string()), limit: Some(1), ..Default::default() };
        store.index().ok()?.list(&q).ok()?.clips.into_iter().next()
    }
}

/// How long a snapshot for MQTT waits for a JPEG to be encoded.
const SNAPSHOT_WAIT: std::time::Duration = std::time::Duration::from_secs(3);
