//! The box's health over time: every `alerts.interval_s` one sample of [`crate::system`] and of
//! each camera's counters, the last 10 minutes kept for the Status page's sparklines, and the
//! alerts of [`crate::system::alerts`] raised or cleared from it. A change goes out once on the
//! event channel (`ClipEvent::Alert`): the web app's SSE, MQTT and the log all take it from there.
//!
//! One task; a sample reads a few small files under `/proc` and `/sys` on the blocking pool.
//! Nothing is written anywhere. Per camera it keeps a minute of counters (fps in/out, frames
//! dropped per minute) and when the camera started failing.

use crate::camera::registry::Registry;
use crate::clip_meta::ClipEvent;
use crate::config::AlertsConfig;
use crate::shutdown::StopToken;
use crate::status::CameraState;
use crate::system::alerts::{Alert, AlertBook, CameraReading, Reading};
use crate::system::{CpuTimes, Memory, SysReader, ThermalZone, Throttled};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Sparkline points kept: 10 minutes at the sampling interval.
const HISTORY: Duration = Duration::from_secs(600);

/// What `GET /api/health/system` answers.
#[derive(Debug, Clone, Serialize, Default)]
pub struct SystemReport {
    /// When this sample was taken (RFC 3339); `null` before the first.
    pub sampled_at: Option<String>,
    pub uptime_s: Option<f64>,
    /// 1, 5 and 15 minute load averages.
    pub load: Option<[f64; 3]>,
    /// Busy share of all cores since the previous sample, %.
    pub cpu_percent: Option<f64>,
    /// The daemon's share of all cores, %.
    pub daemon_cpu_percent: Option<f64>,
    pub cpus: usize,
    pub memory: Memory,
    /// The hottest thermal zone (°C); `null` where the board has none.
    pub temperature_c: Option<f64>,
    pub thermal_zones: Vec<ThermalZone>,
    /// The Raspberry Pi firmware's throttling flags; `null` elsewhere.
    pub throttled: Option<Throttled>,
    /// Free space on the clip filesystem, %.
    pub storage_free_percent: Option<f64>,
    /// Errors the kernel counted on the clip filesystem (ext4's `errors_count`); `null` for
    /// another filesystem.
    pub disk_errors: Option<u64>,
    /// Per camera.
    pub cameras: Vec<CameraHealth>,
    /// Every alert seen, raised (`active`) or not.
    pub alerts: Vec<Alert>,
    /// The last 10 minutes, oldest first.
    pub history: Vec<HistoryPoint>,
}

/// One camera in [`SystemReport`].
#[derive(Debug, Clone, Serialize, Default)]
pub struct CameraHealth {
    pub id: String,
    pub state: Option<CameraState>,
    /// Frames from the source per second, over the last minute (or since the camera appeared).
    pub fps_in: Option<f64>,
    /// Access units from the encoder per second.
    pub fps_out: Option<f64>,
    /// Frames lost in the last minute (source gaps and a busy encoder); `null` until a minute
    /// of counters is known.
    pub dropped_per_min: Option<f64>,
    /// Seconds it has been `failed` (0 when not).
    pub failed_for_s: f64,
    /// Capture to encoded frame, ms (smoothed); `null` without an encoder (pass-through).
    pub encode_latency_ms: Option<f64>,
}

/// One sparkline point.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryPoint {
    /// Seconds since the daemon started.
    pub t: f64,
    pub cpu_percent: Option<f64>,
    pub temperature_c: Option<f64>,
}

#[derive(Default)]
struct CameraTrack {
    failed_since: Option<Instant>,
    /// (when, captured, encoded, dropped), the last minute.
    counts: VecDeque<(Instant, u64, u64, u64)>,
}

#[derive(Default)]
struct State {
    book: AlertBook,
    report: SystemReport,
    history: VecDeque<HistoryPoint>,
    cpu: Option<CpuTimes>,
    cameras: HashMap<String, CameraTrack>,
}

/// The monitor: samples, keeps the report, raises and clears alerts.
pub struct Monitor {
    cfg: AlertsConfig,
    storage: std::path::PathBuf,
    reader: SysReader,
    started: Instant,
    state: Mutex<State>,
}

impl Monitor {
    /// Over `/sys` (or `cfg.sysfs_root`, tests); `storage` is the clip directory.
    pub fn new(cfg: AlertsConfig, storage: &std::path::Path) -> Monitor {
        let reader = SysReader::new(cfg.sysfs_root.as_deref());
        let storage = storage.to_path_buf();
        Monitor { cfg, storage, reader, started: Instant::now(), state: Mutex::new(State::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The latest report with its 10-minute history (`/api/health/system`).
    pub fn report(&self) -> SystemReport {
        let st = self.lock();
        let mut r = st.report.clone();
        r.history = st.history.iter().cloned().collect();
        r
    }

    /// The latest report without the history (`/metrics`: figures of now only).
    pub fn latest(&self) -> SystemReport {
        self.lock().report.clone()
    }

    /// Every alert seen, raised or not.
    pub fn alerts(&self) -> Vec<Alert> {
        self.lock().book.all()
    }

    /// The raised alerts.
    pub fn active_alerts(&self) -> Vec<Alert> {
        self.lock().book.active()
    }

    /// Take one sample now: `cameras` as the registry has them, `free_percent` of the clip
    /// filesystem. Returns the alerts it raised or cleared (`true`) and those seen for the first
    /// time (`false`). Reads files: call off the runtime.
    pub fn sample(&self, cameras: &[crate::camera::CameraInfo], free_percent: Option<f64>) -> Vec<(Alert, bool)> {
        let now = Instant::now();
        let cpu = self.reader.cpu_times();
        let zones = self.reader.thermal_zones();
        let temperature_c = zones.iter().map(|z| z.temp_c).reduce(f64::max);
        let throttled = self.reader.throttled();
        let memory = self.reader.memory();
        let (uptime_s, load) = (self.reader.uptime_s(), self.reader.load());
        let disk_errors = self.reader.fs_errors(&self.storage);
        let at = crate::time::rfc3339_ms(crate::time::wall_now_ms());

        let mut st = self.lock();
        let usage = match (cpu, st.cpu) {
            (Some(c), Some(before)) => c.usage_since(&before),
            _ => None,
        };
        if cpu.is_some() {
            st.cpu = cpu;
        }
        let mut cams = Vec::with_capacity(cameras.len());
        let mut readings = Vec::with_capacity(cameras.len());
        st.cameras.retain(|id, _| cameras.iter().any(|c| &c.id == id));
        for c in cameras {
            let t = st.cameras.entry(c.id.clone()).or_default();
            // A failed camera retries (`starting` between attempts): failing until it runs.
            let failed =
                c.state == CameraState::Failed || (c.state == CameraState::Starting && t.failed_since.is_some());
            match (failed, t.failed_since) {
                (true, None) => t.failed_since = Some(now),
                (false, Some(_)) => t.failed_since = None,
                _ => {}
            }
            let failed_for_s = t.failed_since.map_or(0.0, |s| now.duration_since(s).as_secs_f64());
            t.counts.push_back((now, c.frames_captured, c.frames_encoded, c.frames_dropped));
            while t.counts.front().is_some_and(|(w, ..)| now.duration_since(*w) > Duration::from_secs(60)) {
                t.counts.pop_front();
            }
            let (first, last) = (t.counts.front().copied(), t.counts.back().copied());
            let (fps_in, fps_out, dropped_per_min) = match (first, last) {
                (Some(a), Some(b)) if b.0 > a.0 => {
                    let secs = b.0.duration_since(a.0).as_secs_f64();
                    let per_s = |x: u64, y: u64| y.saturating_sub(x) as f64 / secs;
                    // A minute less one interval is a minute of counters.
                    let full = secs + f64::from(self.cfg.interval_s) >= 60.0;
                    (Some(per_s(a.1, b.1)), Some(per_s(a.2, b.2)), full.then(|| per_s(a.3, b.3) * 60.0))
                }
                _ => (None, None, None),
            };
            readings.push(CameraReading { id: c.id.clone(), failed_for_s, dropped_per_min });
            cams.push(CameraHealth {
                id: c.id.clone(),
                state: Some(c.state),
                fps_in,
                fps_out,
                dropped_per_min,
                failed_for_s,
                encode_latency_ms: c.encode_latency_ms,
            });
        }
        let reading = Reading {
            temperature_c,
            throttled,
            free_percent,
            rss_bytes: (memory.rss_bytes > 0).then_some(memory.rss_bytes),
            cameras: readings,
        };
        let before: Vec<String> = st.book.all().iter().map(Alert::key).collect();
        let mut changed = st.book.apply(&self.cfg, &reading, &at);
        let known: Vec<String> = st.book.all().iter().filter_map(|a| a.camera.clone()).collect();
        for gone in known.iter().filter(|k| !cameras.iter().any(|c| &&c.id == k)) {
            changed.extend(st.book.forget_camera(gone, &at));
        }
        // Alerts seen for the first time and not raised: their state is announced, unchanged.
        let mut out: Vec<(Alert, bool)> = st
            .book
            .all()
            .into_iter()
            .filter(|a| !before.contains(&a.key()) && !changed.iter().any(|c| c.key() == a.key()))
            .map(|a| (a, false))
            .collect();
        out.extend(changed.into_iter().map(|a| (a, true)));
        let t = now.duration_since(self.started).as_secs_f64();
        st.history.push_back(HistoryPoint { t, cpu_percent: usage.map(|u| u.0), temperature_c });
        let keep = (HISTORY.as_secs() / u64::from(self.cfg.interval_s.max(1))) as usize + 1;
        while st.history.len() > keep {
            st.history.pop_front();
        }
        st.report = SystemReport {
            sampled_at: Some(at),
            uptime_s,
            load,
            cpu_percent: usage.map(|u| u.0),
            daemon_cpu_percent: usage.map(|u| u.1),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory,
            temperature_c,
            thermal_zones: zones,
            throttled,
            storage_free_percent: free_percent,
            disk_errors,
            cameras: cams,
            alerts: st.book.all(),
            history: Vec::new(),
        };
        out
    }

    /// Sample every `alerts.interval_s` until `stop`, announcing each alert raised or cleared on
    /// `registry`'s event channel (and in the log). `free_percent` examines the clip storage.
    pub fn spawn(
        self: Arc<Self>,
        registry: Arc<Registry>,
        free_percent: impl Fn() -> Option<f64> + Send + Sync + 'static,
        stop: StopToken,
    ) -> tokio::task::JoinHandle<()> {
        let free_percent = Arc::new(free_percent);
        tokio::spawn(async move {
            let every = Duration::from_secs(u64::from(self.cfg.interval_s.max(1)));
            loop {
                let (me, reg, free) = (self.clone(), registry.clone(), free_percent.clone());
                let changed = tokio::task::spawn_blocking(move || {
                    let cams: Vec<_> = reg.snapshot().iter().map(|e| e.info()).collect();
                    me.sample(&cams, free())
                })
                .await
                .unwrap_or_default();
                for (a, changed) in changed {
                    if changed && a.active {
                        log::warn!("alert {}: {}", a.key(), a.message);
                    } else if changed {
                        log::info!("alert {} cleared: {}", a.key(), a.message);
                    }
                    let json = Box::new(serde_json::to_value(&a).unwrap_or_default());
                    let ev = ClipEvent::Alert { key: a.key(), active: a.active, changed, json };
                    let _ = registry.events().send(ev);
                }
                tokio::select! {
                    _ = stop.stopped() => return,
                    _ = tokio::time::sleep(every) => {}
                }
            }
        })
    }
}
