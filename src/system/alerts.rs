//! Alerts: a figure crossing its `[alerts]` threshold raises one, its return past the
//! hysteresis clears it — once each. Pure logic over one [`Reading`] at a time; the monitor
//! samples, this decides, and the faces (SSE, MQTT, `/metrics`, the Status page) only show.
//!
//! Alert kinds: `temperature`, `throttled`, `storage_free`, `rss` (the box and the daemon) and,
//! per camera, `camera_failed` and `frames_dropped`. A figure that cannot be read (`None`: no
//! thermal zone, not a Raspberry Pi) raises nothing and leaves a raised alert as it is.

use super::Throttled;
use crate::config::AlertsConfig;
use serde::Serialize;
use std::collections::BTreeMap;

/// What one sample saw.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    /// The hottest thermal zone, °C.
    pub temperature_c: Option<f64>,
    pub throttled: Option<Throttled>,
    /// Free space on the clip filesystem, %.
    pub free_percent: Option<f64>,
    pub rss_bytes: Option<u64>,
    /// Per camera: id, seconds it has been `failed` (0 when not), frames dropped in the last minute.
    pub cameras: Vec<CameraReading>,
}

/// One camera in a [`Reading`].
#[derive(Debug, Clone, Default)]
pub struct CameraReading {
    pub id: String,
    pub failed_for_s: f64,
    /// `None` until a minute of counters is known.
    pub dropped_per_min: Option<f64>,
}

/// An alert's state (the API, MQTT and SSE form).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Alert {
    /// `temperature`, `throttled`, `storage_free`, `rss`, `camera_failed`, `frames_dropped`.
    pub kind: String,
    /// The camera, for the per-camera kinds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub camera: Option<String>,
    /// Raised now.
    pub active: bool,
    /// The figure at the last change.
    pub value: Option<f64>,
    /// The threshold that raises it.
    pub threshold: f64,
    /// What it means, for people.
    pub message: String,
    /// When it was last raised or cleared (RFC 3339).
    pub changed_at: String,
}

impl Alert {
    /// `kind`, or `kind/camera`: the key in `/api/health/system`, MQTT's `{base}/alert/{key}`
    /// and the `alert` label of `/metrics`.
    pub fn key(&self) -> String {
        key_of(&self.kind, self.camera.as_deref())
    }
}

/// `kind`, or `kind/camera`: the one spelling of an alert's key.
fn key_of(kind: &str, camera: Option<&str>) -> String {
    match camera {
        Some(c) => format!("{kind}/{c}"),
        None => kind.to_string(),
    }
}

/// One figure against its threshold: raise when `raise`, clear when `clear` (both false while
/// the figure cannot be read).
struct Check {
    kind: &'static str,
    camera: Option<String>,
    value: Option<f64>,
    threshold: f64,
    raise: bool,
    clear: bool,
    message: String,
}

fn checks(cfg: &AlertsConfig, r: &Reading) -> Vec<Check> {
    let mut out = Vec::new();
    if cfg.temperature_c > 0.0 {
        let t = r.temperature_c;
        out.push(Check {
            kind: "temperature",
            camera: None,
            value: t,
            threshold: cfg.temperature_c,
            raise: t.is_some_and(|t| t >= cfg.temperature_c),
            clear: t.is_some_and(|t| t < cfg.temperature_c - cfg.temperature_hysteresis_c),
            message: match t {
                Some(t) => format!("SoC at {t:.1} °C (alert at {:.0} °C)", cfg.temperature_c),
                None => "no temperature reading".into(),
            },
        });
    }
    if cfg.throttled {
        let th = r.throttled;
        let mut what = Vec::new();
        if let Some(t) = th {
            for (on, name) in [
                (t.under_voltage, "under-voltage"),
                (t.freq_capped, "ARM frequency capped"),
                (t.throttled, "throttled"),
                (t.soft_temp_limit, "soft temperature limit"),
            ] {
                if on {
                    what.push(name);
                }
            }
        }
        out.push(Check {
            kind: "throttled",
            camera: None,
            value: th.map(|t| f64::from(t.raw)),
            threshold: 1.0,
            raise: th.is_some_and(|t| t.active()),
            clear: th.is_some_and(|t| !t.active()),
            message: if what.is_empty() { "not throttled".into() } else { what.join(", ") },
        });
    }
    if cfg.free_percent > 0.0 {
        let f = r.free_percent;
        out.push(Check {
            kind: "storage_free",
            camera: None,
            value: f,
            threshold: cfg.free_percent,
            raise: f.is_some_and(|f| f < cfg.free_percent),
            clear: f.is_some_and(|f| f >= cfg.free_percent + 2.0),
            message: match f {
                Some(f) => format!("{f:.1} % free on the clip storage (alert under {:.0} %)", cfg.free_percent),
                None => "storage not examinable".into(),
            },
        });
    }
    if cfg.rss_mib > 0 {
        let limit = f64::from(cfg.rss_mib);
        let mib = r.rss_bytes.map(|b| b as f64 / 1048576.0);
        out.push(Check {
            kind: "rss",
            camera: None,
            value: mib,
            threshold: limit,
            raise: mib.is_some_and(|m| m >= limit),
            clear: mib.is_some_and(|m| m < limit * 0.9),
            message: match mib {
                Some(m) => format!("the daemon uses {m:.0} MiB (alert at {limit:.0} MiB)"),
                None => "no memory reading".into(),
            },
        });
    }
    for c in &r.cameras {
        if cfg.camera_failed_s > 0 {
            let limit = f64::from(cfg.camera_failed_s);
            out.push(Check {
                kind: "camera_failed",
                camera: Some(c.id.clone()),
                value: Some(c.failed_for_s),
                threshold: limit,
                raise: c.failed_for_s >= limit,
                clear: c.failed_for_s == 0.0,
                message: if c.failed_for_s > 0.0 {
                    format!("camera {} failed for {:.0} s", c.id, c.failed_for_s)
                } else {
                    format!("camera {} is not failing", c.id)
                },
            });
        }
        if cfg.dropped_per_min > 0 {
            let limit = f64::from(cfg.dropped_per_min);
            let d = c.dropped_per_min;
            out.push(Check {
                kind: "frames_dropped",
                camera: Some(c.id.clone()),
                value: d,
                threshold: limit,
                raise: d.is_some_and(|d| d >= limit),
                clear: d.is_some_and(|d| d < limit / 2.0),
                message: match d {
                    Some(d) => format!("camera {} dropped {d:.0} frames in the last minute", c.id),
                    None => format!("camera {}: no minute of counters yet", c.id),
                },
            });
        }
    }
    out
}

/// Every alert seen, raised or not, by key.
#[derive(Debug, Default)]
pub struct AlertBook {
    alerts: BTreeMap<String, Alert>,
}

impl AlertBook {
    /// Apply one reading; returns the alerts that were raised or cleared by it.
    pub fn apply(&mut self, cfg: &AlertsConfig, r: &Reading, now: &str) -> Vec<Alert> {
        let mut changed = Vec::new();
        for c in checks(cfg, r) {
            let key = key_of(c.kind, c.camera.as_deref());
            let entry = self.alerts.entry(key).or_insert_with(|| Alert {
                kind: c.kind.to_string(),
                camera: c.camera.clone(),
                active: false,
                value: c.value,
                threshold: c.threshold,
                message: c.message.clone(),
                changed_at: now.to_string(),
            });
            let flip = (!entry.active && c.raise) || (entry.active && c.clear);
            if flip {
                entry.active = !entry.active;
                entry.changed_at = now.to_string();
            }
            if flip || !entry.active {
                // A raised alert keeps the figures that raised it until it clears.
                entry.value = c.value;
                entry.message = c.message;
            }
            entry.threshold = c.threshold;
            if flip {
                changed.push(entry.clone());
            }
        }
        changed
    }

    /// Every alert, in key order.
    pub fn all(&self) -> Vec<Alert> {
        self.alerts.values().cloned().collect()
    }

    /// The raised ones.
    pub fn active(&self) -> Vec<Alert> {
        self.alerts.values().filter(|a| a.active).cloned().collect()
    }

    /// Forget a camera's alerts (the camera was removed); returns those that were raised, now
    /// cleared.
    pub fn forget_camera(&mut self, camera: &str, now: &str) -> Vec<Alert> {
        let keys: Vec<String> =
            self.alerts.iter().filter(|(_, a)| a.camera.as_deref() == Some(camera)).map(|(k, _)| k.clone()).collect();
        let mut cleared = Vec::new();
        for k in keys {
            if let Some(mut a) = self.alerts.remove(&k) {
                if a.active {
                    a.active = false;
                    a.changed_at = now.to_string();
                    cleared.push(a);
                }
            }
        }
        cleared
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(t: Option<f64>) -> Reading {
        Reading { temperature_c: t, ..Default::default() }
    }

    #[test]
    fn temperature_raises_and_clears_once_with_hysteresis() {
        let cfg = AlertsConfig { temperature_c: 70.0, temperature_hysteresis_c: 5.0, ..Default::default() };
        let mut b = AlertBook::default();
        let mut seen = Vec::new();
        for t in [50.0, 69.9, 70.0, 85.0, 71.0, 66.0, 65.1, 64.9, 60.0, 69.0] {
            for a in b.apply(&cfg, &temp(Some(t)), "now") {
                if a.kind == "temperature" {
                    seen.push((t, a.active));
                }
            }
        }
        assert_eq!(seen, [(70.0, true), (64.9, false)]);
    }

    #[test]
    fn no_reading_raises_nothing_and_keeps_a_raised_alert() {
        let cfg = AlertsConfig::default();
        let mut b = AlertBook::default();
        assert!(b.apply(&cfg, &temp(None), "t0").is_empty());
        assert!(b.active().is_empty());
        let t = b.all().into_iter().find(|a| a.kind == "temperature").unwrap();
        assert_eq!(t.value, None);
        assert_eq!(b.apply(&cfg, &temp(Some(90.0)), "t1").len(), 1);
        assert!(b.apply(&cfg, &temp(None), "t2").is_empty(), "a missing reading clears nothing");
        assert_eq!(b.active().len(), 1);
        assert_eq!(b.active()[0].value, Some(90.0));
    }

    #[test]
    fn throttling_cameras_storage_and_memory() {
        let cfg = AlertsConfig { camera_failed_s: 30, dropped_per_min: 100, rss_mib: 100, ..Default::default() };
        let mut b = AlertBook::default();
        let cam = |failed: f64, dropped: Option<f64>| CameraReading {
            id: "cam0".into(),
            failed_for_s: failed,
            dropped_per_min: dropped,
        };
        let r = Reading {
            throttled: Some(Throttled::from_raw(0x50005)),
            free_percent: Some(4.0),
            rss_bytes: Some(120 << 20),
            cameras: vec![cam(31.0, Some(150.0))],
            ..Default::default()
        };
        let mut keys: Vec<String> = b.apply(&cfg, &r, "t0").iter().map(Alert::key).collect();
        keys.sort();
        assert_eq!(keys, ["camera_failed/cam0", "frames_dropped/cam0", "rss", "storage_free", "throttled"]);
        let th = b.active().into_iter().find(|a| a.kind == "throttled").unwrap();
        assert_eq!(th.message, "under-voltage, throttled");
        // Inside every hysteresis band: nothing changes.
        let r2 = Reading {
            throttled: Some(Throttled::from_raw(0x50001)),
            free_percent: Some(6.0),
            rss_bytes: Some(95 << 20),
            cameras: vec![cam(5.0, Some(60.0))],
            ..Default::default()
        };
        assert!(b.apply(&cfg, &r2, "t1").is_empty());
        // Past them: each clears once.
        let r3 = Reading {
            throttled: Some(Throttled::from_raw(0x50000)),
            free_percent: Some(7.0),
            rss_bytes: Some(80 << 20),
            cameras: vec![cam(0.0, Some(10.0))],
            ..Default::default()
        };
        let cleared = b.apply(&cfg, &r3, "t2");
        assert_eq!(cleared.len(), 5);
        assert!(cleared.iter().all(|a| !a.active && a.changed_at == "t2"));
        assert!(b.apply(&cfg, &r3, "t3").is_empty());
        // A removed camera's raised alerts are cleared with it.
        b.apply(&cfg, &Reading { cameras: vec![cam(40.0, None)], ..Default::default() }, "t4");
        let gone = b.forget_camera("cam0", "t5");
        assert_eq!(gone.iter().map(Alert::key).collect::<Vec<_>>(), ["camera_failed/cam0"]);
        assert!(b.all().iter().all(|a| a.camera.is_none()));
    }
}
