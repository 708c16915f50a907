//! `[alerts]`: how often the box is sampled and the thresholds of its alerts ([`AlertsConfig`]).
//!
//! Data only: the alerts themselves are `system::alerts`, sampled by `monitor`. Each alert is
//! raised when its figure crosses the threshold and cleared only once it is back past the
//! hysteresis, so a value sitting on the line raises and clears once, not every sample.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `[alerts]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Seconds between two samples of the box (CPU, memory, temperature, throttling).
    #[serde(default = "default_interval_s")]
    pub interval_s: u32,
    /// SoC temperature (°C, the hottest thermal zone) that raises `temperature`; 0 = off.
    #[serde(default = "default_temperature_c")]
    pub temperature_c: f64,
    /// `temperature` clears below `temperature_c` minus this.
    #[serde(default = "default_temperature_hysteresis_c")]
    pub temperature_hysteresis_c: f64,
    /// Raise `throttled` while the Raspberry Pi firmware reports under-voltage, a capped ARM
    /// frequency, throttling or the soft temperature limit.
    #[serde(default = "default_true")]
    pub throttled: bool,
    /// Free space (%) on the clip filesystem under which `storage_free` is raised (cleared 2
    /// points above); 0 = off.
    #[serde(default = "default_free_percent")]
    pub free_percent: f64,
    /// Seconds a camera may stay `failed` before `camera_failed` is raised for it; 0 = off.
    #[serde(default = "default_camera_failed_s")]
    pub camera_failed_s: u32,
    /// Frames a camera may drop in a minute (source gaps and a busy encoder) before
    /// `frames_dropped` is raised for it (cleared under half of it); 0 = off.
    #[serde(default = "default_dropped_per_min")]
    pub dropped_per_min: u32,
    /// The daemon's resident memory (MiB) that raises `rss` (cleared under 90 % of it); 0 = off.
    #[serde(default = "default_rss_mib")]
    pub rss_mib: u32,
    /// Tests only (never read from the file): a directory standing in for `/sys`.
    #[serde(skip)]
    pub sysfs_root: Option<PathBuf>,
}

fn default_interval_s() -> u32 {
    5
}
fn default_temperature_c() -> f64 {
    80.0
}
fn default_temperature_hysteresis_c() -> f64 {
    5.0
}
fn default_true() -> bool {
    true
}
fn default_free_percent() -> f64 {
    5.0
}
fn default_camera_failed_s() -> u32 {
    60
}
fn default_dropped_per_min() -> u32 {
    300
}
fn default_rss_mib() -> u32 {
    256
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            interval_s: default_interval_s(),
            temperature_c: default_temperature_c(),
            temperature_hysteresis_c: default_temperature_hysteresis_c(),
            throttled: true,
            free_percent: default_free_percent(),
            camera_failed_s: default_camera_failed_s(),
            dropped_per_min: default_dropped_per_min(),
            rss_mib: default_rss_mib(),
            sysfs_root: None,
        }
    }
}

impl AlertsConfig {
    /// Problems as (key, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut bad = |key: &str, msg: &str| out.push((format!("alerts.{key}"), msg.to_string()));
        if !(1..=300).contains(&self.interval_s) {
            bad("interval_s", "must be 1..=300 seconds");
        }
        if !(0.0..=150.0).contains(&self.temperature_c) {
            bad("temperature_c", "must be 0..=150 °C (0: off)");
        }
        if !(0.5..=30.0).contains(&self.temperature_hysteresis_c) {
            bad("temperature_hysteresis_c", "must be 0.5..=30 °C");
        }
        if !(0.0..=90.0).contains(&self.free_percent) {
            bad("free_percent", "must be 0..=90 (0: off)");
        }
        if self.camera_failed_s > 86_400 {
            bad("camera_failed_s", "must be 0..=86400 seconds (0: off)");
        }
        if self.dropped_per_min > 1_000_000 {
            bad("dropped_per_min", "must be 0..=1000000 (0: off)");
        }
        if self.rss_mib > 65_536 {
            bad("rss_mib", "must be 0..=65536 MiB (0: off)");
        }
        out
    }
}
