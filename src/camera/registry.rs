//! The camera list, which can grow at run time (a phone creating a camera): each entry is a
//! [`Camera`], its clip [`Recorder`] and, with `continuous` on, its continuous recorder
//! ([`crate::record`]), which runs from the registry's start to the daemon's shutdown.
//!
//! Readers (HTTP handlers, the trigger hub, MQTT state publishing, the watchdog) take a cheap
//! snapshot: an `Arc<Vec<CameraEntry>>` swapped under a short lock on change, never held across I/O.
//! Cameras are only added, never removed (a phone's camera stays, `stopped`, after it leaves;
//! its id, clips and counters remain).

use super::Camera;
use crate::clip::recorder::Recorder;
use crate::clip::store::ClipStore;
use crate::clip_meta::ClipEvent;
use crate::config::{CameraConfig, Config, PhoneConfig};
use std::sync::{Arc, RwLock};

/// One camera and its recorder.
#[derive(Clone)]
pub struct CameraEntry {
    /// The camera.
    pub camera: Arc<Camera>,
    /// Its clip recorder.
    pub recorder: Arc<Recorder>,
    /// Its continuous recorder, when `continuous` is on (runs until [`Registry::close`]'s
    /// caller stops it), and its counters.
    pub continuous: Option<Arc<crate::record::Recorder>>,
    /// The continuous recorder's counters (zero without one).
    pub record_stats: Arc<crate::record::RecordStats>,
}

/// The clip store as the continuous recorder sees it (the same storage directory and index).
struct Segments(Arc<ClipStore>);

impl crate::record::SegmentStore for Segments {
    fn storage(&self) -> &crate::storage::Storage {
        &self.0.storage
    }
    fn index(&self) -> Result<crate::index::Index, crate::storage::StorageError> {
        self.0.index()
    }
}

/// `camera`'s entry: its clip recorder, and its continuous recorder started when configured
/// (a thread that cannot start leaves the camera without continuous recording, logged).
fn entry(
    camera: Arc<Camera>,
    store: &Arc<ClipStore>,
    events: &tokio::sync::broadcast::Sender<ClipEvent>,
) -> CameraEntry {
    let record_stats = Arc::new(crate::record::RecordStats::default());
    let continuous = camera.record_input(Arc::new(Segments(store.clone())), record_stats.clone()).and_then(|input| {
        crate::record::Recorder::spawn(input)
            .map_err(|e| log::error!("camera {}: continuous recording cannot start: {e}", camera.id()))
            .ok()
            .map(Arc::new)
    });
    CameraEntry {
        recorder: Arc::new(Recorder::new(camera.recorder_input(), store.clone(), events.clone())),
        camera,
        continuous,
        record_stats,
    }
}

impl CameraEntry {
    /// The camera's snapshot for the API, with `recording` from its recorder.
    pub fn info(&self) -> super::CameraInfo {
        super::CameraInfo { recording: self.recorder.recording(), ..self.camera.info() }
    }
}

/// Why a camera could not be added.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegistryError {
    /// A camera with this id exists.
    #[error("camera {0:?} exists")]
    Exists(String),
    /// `phone.enabled = false`.
    #[error(
        "phones may not create cameras here (phone.enabled = false); declare it with source = {{ kind = \"browser\" }}"
    )]
    Disabled,
    /// `phone.max_cameras` reached and none of them idle long enough to give its place.
    #[error(
        "phones already have {0} cameras (phone.max_cameras), all in use or idle for less than {secs} s",
        secs = PHONE_IDLE_EVICT.as_secs()
    )]
    Full(usize),
    /// The daemon is shutting down.
    #[error("shutting down")]
    Closed,
}

struct List {
    entries: Arc<Vec<CameraEntry>>,
    /// Cameras created by phones at run time, oldest first.
    by_phone: Vec<String>,
    closed: bool,
}

/// A phone camera idle (stopped, no phone, not recording) for this long may give its place to
/// a new one when `phone.max_cameras` is reached: a typo'd id or a phone that left for good does
/// not hold a slot until the daemon restarts.
pub const PHONE_IDLE_EVICT: std::time::Duration = std::time::Duration::from_secs(30);

/// How long phone camera `e` has been idle, if it may give its place (stopped, not recording,
/// no phone for at least `after`).
fn evictable(e: &CameraEntry, after: std::time::Duration) -> Option<std::time::Duration> {
    if e.camera.status.state() != crate::status::CameraState::Stopped || e.recorder.recording() {
        return None;
    }
    e.camera.feed.as_ref()?.idle_for().filter(|d| *d >= after)
}

/// The cameras of a running daemon.
pub struct Registry {
    list: RwLock<List>,
    store: Arc<ClipStore>,
    events: tokio::sync::broadcast::Sender<ClipEvent>,
    /// Turns `true` at [`close`](Self::close): long-lived streams (events) end on it.
    closing: tokio::sync::watch::Sender<bool>,
    config: Config,
    /// [`PHONE_IDLE_EVICT`] (shorter in tests).
    evict_after: std::time::Duration,
}

impl Registry {
    /// A registry holding `cameras` (config order), each with a new recorder on `store`.
    pub fn new(
        cameras: Vec<Arc<Camera>>,
        store: Arc<ClipStore>,
        events: tokio::sync::broadcast::Sender<ClipEvent>,
        config: &Config,
    ) -> Self {
        let entries = cameras.into_iter().map(|camera| entry(camera, &store, &events)).collect();
        Registry {
            list: RwLock::new(List { entries: Arc::new(entries), by_phone: Vec::new(), closed: false }),
            store,
            events,
            closing: tokio::sync::watch::channel(false).0,
            config: config.clone(),
            evict_after: PHONE_IDLE_EVICT,
        }
    }

    /// The clip store every camera records into.
    pub fn store(&self) -> &Arc<ClipStore> {
        &self.store
    }

    /// Every camera now (cheap: one `Arc` clone).
    pub fn snapshot(&self) -> Arc<Vec<CameraEntry>> {
        self.list.read().unwrap_or_else(|p| p.into_inner()).entries.clone()
    }

    /// The cameras now, in order of addition.
    pub fn cameras(&self) -> Vec<Arc<Camera>> {
        self.snapshot().iter().map(|e| e.camera.clone()).collect()
    }

    /// The recorders now.
    pub fn recorders(&self) -> Vec<Arc<Recorder>> {
        self.snapshot().iter().map(|e| e.recorder.clone()).collect()
    }

    /// The camera `id` and its recorder.
    pub fn get(&self, id: &str) -> Option<CameraEntry> {
        self.snapshot().iter().find(|e| e.camera.id() == id).cloned()
    }

    /// The `[phone]` settings.
    pub fn phone(&self) -> &PhoneConfig {
        &self.config.phone
    }

    /// Whether [`close`](Self::close) was called (the daemon is shutting down).
    pub fn is_closed(&self) -> bool {
        self.list.read().unwrap_or_else(|p| p.into_inner()).closed
    }

    /// Resolves once the daemon shuts down ([`close`](Self::close)).
    pub fn closing(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.closing.subscribe();
        async move {
            let _ = rx.wait_for(|closed| *closed).await;
        }
    }

    /// The clip events channel shared by every recorder.
    pub fn events(&self) -> &tokio::sync::broadcast::Sender<ClipEvent> {
        &self.events
    }

    /// Add a camera with `cfg` (not started). Refused when the id exists or after [`close`](Self::close).
    pub fn add(&self, cfg: CameraConfig) -> Result<CameraEntry, RegistryError> {
        self.insert(cfg, false)
    }

    /// Add a browser camera a phone asked for as `id`, with the `[phone]` settings, within
    /// `phone.enabled` and `phone.max_cameras`.
    pub fn add_phone(&self, id: &str) -> Result<CameraEntry, RegistryError> {
        let p = &self.config.phone;
        if !p.enabled {
            return Err(RegistryError::Disabled);
        }
        self.insert(p.camera(id), true)
    }

    fn insert(&self, cfg: CameraConfig, by_phone: bool) -> Result<CameraEntry, RegistryError> {
        let mut list = self.list.write().unwrap_or_else(|p| p.into_inner());
        if list.closed {
            return Err(RegistryError::Closed);
        }
        if list.entries.iter().any(|e| e.camera.id() == cfg.id) {
            return Err(RegistryError::Exists(cfg.id));
        }
        if by_phone && list.by_phone.len() >= self.config.phone.max_cameras {
            // Make room by forgetting the phone camera idle the longest (its clips stay).
            let idle = list
                .by_phone
                .iter()
                .filter_map(|id| list.entries.iter().find(|e| e.camera.id() == id))
                .filter_map(|e| evictable(e, self.evict_after).map(|idle| (idle, e)))
                .max_by_key(|(idle, _)| *idle)
                .map(|(_, e)| e.camera.id().to_string());
            let Some(old) = idle else {
                return Err(RegistryError::Full(list.by_phone.len()));
            };
            log::info!("camera {old} removed: idle phone camera, making room for {:?} (phone.max_cameras)", cfg.id);
            list.by_phone.retain(|id| *id != old);
            list.entries = Arc::new(list.entries.iter().filter(|e| e.camera.id() != old).cloned().collect());
        }
        let camera = Arc::new(Camera::new(cfg, &self.config));
        if camera.is_phone() {
            // Waits for its phone.
            camera.status.set_stopped();
        }
        let entry = entry(camera, &self.store, &self.events);
        let mut entries: Vec<CameraEntry> = list.entries.as_ref().clone();
        entries.push(entry.clone());
        list.entries = Arc::new(entries);
        if by_phone {
            list.by_phone.push(entry.camera.id().to_string());
        }
        log::info!("camera {} added{}", entry.camera.id(), if by_phone { " by a phone" } else { "" });
        Ok(entry)
    }

    /// No more cameras (shutdown); every browser's connection is told to end.
    pub fn close(&self) {
        self.closing.send_replace(true);
        let entries = {
            let mut list = self.list.write().unwrap_or_else(|p| p.into_inner());
            list.closed = true;
            list.entries.clone()
        };
        for e in entries.iter() {
            if let Some(f) = &e.camera.feed {
                f.kick();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clip::store::ClipStore;
    use crate::config::SourceConfig;
    use crate::storage::Storage;

    /// A registry with `cameras` configured and room for one phone camera.
    fn registry(dir: &std::path::Path, cameras: &[&str]) -> Registry {
        let mut cfg = Config::builtin_default();
        cfg.storage.path = dir.join("s");
        cfg.phone.max_cameras = 1;
        let store = Arc::new(ClipStore::new(Storage::new(&cfg.storage)));
        let events = tokio::sync::broadcast::channel(4).0;
        let cams = cameras
            .iter()
            .map(|id| Arc::new(Camera::new(crate::config::CameraConfig::new(id, SourceConfig::test(64, 64, 5)), &cfg)))
            .collect();
        Registry::new(cams, store, events, &cfg)
    }

    #[test]
    fn phones_add_cameras_within_limits() {
        let dir = tempfile::tempdir().unwrap();
        let r = registry(dir.path(), &["cam0"]);
        let before = r.snapshot();
        assert_eq!(r.add_phone("cam0").err(), Some(RegistryError::Exists("cam0".into())));
        let e = r.add_phone("phone1").expect("first phone camera");
        assert!(e.camera.is_phone());
        assert_eq!(e.camera.status.state(), crate::status::CameraState::Stopped);
        // phone1 stopped, but idle for less than PHONE_IDLE_EVICT: it keeps its place.
        assert_eq!(r.add_phone("phone2").err(), Some(RegistryError::Full(1)));
        // Old snapshots are untouched; new ones see the camera.
        assert_eq!(before.len(), 1);
        assert_eq!(r.cameras().len(), 2);
        assert!(r.get("phone1").is_some());
        r.close();
        assert!(r.is_closed());
        assert_eq!(
            r.add(crate::config::CameraConfig::new("x", SourceConfig::browser())).err(),
            Some(RegistryError::Closed)
        );
    }

    #[test]
    fn an_idle_phone_camera_gives_its_place_a_busy_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = registry(dir.path(), &[]);
        r.evict_after = std::time::Duration::ZERO;
        let first = r.add_phone("typo").expect("first phone camera");
        // Its phone is connected: not idle, so no place for another.
        let feed = first.camera.feed.clone().expect("browser feed");
        let gen = feed.connect(None, None, 0);
        assert_eq!(r.add_phone("phone2").err(), Some(RegistryError::Full(1)));
        // The phone left: the idle camera gives its place (its clips are in storage, not here).
        assert!(feed.disconnect(gen));
        r.add_phone("phone2").expect("the idle camera made room");
        assert!(r.get("typo").is_none());
        assert!(r.get("phone2").is_some());
        assert_eq!(r.cameras().len(), 1);
    }
}
