//! systemd integration: `READY=1` once every camera runs and HTTP is bound, a one-line
//! `STATUS=`, `WATCHDOG=1` only while the cameras make progress, `STOPPING=1` on drain.
//!
//! Harmless without systemd: with no `NOTIFY_SOCKET` every call is a no-op.
//!
//! Watchdog rule: a camera counts as healthy when capture and encode both produced a frame
//! recently, or when it is `failed`/`stopped` (its retry loop is alive and the failure is
//! reported; restarting the daemon would not bring back an unplugged camera). A camera whose
//! threads hang — state `running` with no progress, or `starting` for longer than
//! [`STARTING_GRACE`] — stops the pings, and systemd restarts the service. The grace matters for
//! a phone camera: it is `starting` from the moment the phone connects until its first frame.

use crate::camera::registry::Registry;
use crate::camera::Camera;
use crate::shutdown::StopToken;
use crate::status::CameraState;
use std::sync::Arc;
use std::time::Duration;

fn send(pairs: &[(&str, String)]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = systemd::daemon::notify(pairs.iter()) {
        log::debug!("sd_notify failed: {e}");
    }
}

/// One-line summary of the cameras, e.g. `cam0 running 30.2s; door failed`.
pub fn summary(cameras: &[Arc<Camera>]) -> String {
    cameras
        .iter()
        .map(|c| {
            let i = c.info();
            let state =
                serde_json::to_value(i.state).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
            format!("{} {} {:.1}s", i.id, state, i.buffered_s)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Tell systemd we are ready.
pub fn ready(status: &str) {
    send(&[("READY", "1".into()), ("STATUS", status.into())]);
}

/// Tell systemd we are draining.
pub fn stopping() {
    send(&[("STOPPING", "1".into()), ("STATUS", "draining".into())]);
}

/// How long a camera may stay `starting` without frames before it counts as hung. Longer than
/// the slowest legitimate start (a phone's first MediaRecorder chunk, a browser source's stall
/// limit after which it reports `failed`), short next to a real hang.
pub const STARTING_GRACE: Duration = Duration::from_secs(60);

/// Whether every camera is healthy for the watchdog (see the module docs).
pub fn cameras_healthy(cameras: &[Arc<Camera>], window: Duration) -> bool {
    cameras.iter().all(|c| match c.status.state() {
        CameraState::Failed | CameraState::Stopped => true,
        CameraState::Running => c.status.progressing(window),
        CameraState::Starting => c.status.progressing(window) || c.status.starting_within(STARTING_GRACE),
    })
}

/// The watchdog period systemd asked for (`WATCHDOG_USEC`), if any.
pub fn watchdog_interval() -> Option<Duration> {
    match systemd::daemon::watchdog_enabled() {
        Ok(usec) if usec > 0 => Some(Duration::from_micros(usec)),
        _ => None,
    }
}

/// Until `stop`: ping the watchdog at half its period while the cameras progress, and refresh
/// `STATUS=` every few seconds.
pub async fn watchdog_loop(registry: Arc<Registry>, stop: StopToken) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let wd = watchdog_interval();
    let tick = wd.map(|w| w / 2).unwrap_or(Duration::from_secs(10)).max(Duration::from_millis(100));
    // Progress window: generous next to a frame period, short next to the watchdog period.
    let window = wd.map(|w| w.max(Duration::from_secs(2))).unwrap_or(Duration::from_secs(10));
    let mut was_healthy = true;
    loop {
        tokio::select! {
            _ = stop.stopped() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        // Cameras added by phones since the last tick count too.
        let cameras = registry.cameras();
        let healthy = cameras_healthy(&cameras, window);
        let mut pairs = vec![("STATUS", summary(&cameras))];
        if wd.is_some() && healthy {
            pairs.push(("WATCHDOG", "1".into()));
        }
        if healthy != was_healthy {
            if healthy {
                log::info!("cameras progressing again; watchdog pings resume");
            } else {
                log::warn!("a camera stopped making progress; watchdog pings withheld");
            }
            was_healthy = healthy;
        }
        send(&pairs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CameraConfig, Config, SourceConfig};
    use std::sync::atomic::Ordering;

    #[test]
    fn stalled_camera_withholds_pings_failed_one_does_not() {
        let cfg = Config::builtin_default();
        let cam = Arc::new(Camera::new(CameraConfig::new("a", SourceConfig::test(64, 64, 10)), &cfg));
        let window = Duration::from_secs(5);
        // Never started, nothing produced: not healthy.
        assert!(!cameras_healthy(&[cam.clone()], window));
        // Just (re)started, no frame yet (a phone that has not sent its first chunk): within
        // the grace. Starting for longer than the grace without a frame: a hang.
        cam.status.set_started();
        assert_eq!(cam.status.state(), CameraState::Starting);
        assert!(cameras_healthy(&[cam.clone()], window));
        let now = crate::time::mono_ms();
        let long_ago = now.saturating_sub(STARTING_GRACE.as_millis() as u64 + 1_000).max(1);
        cam.status.started_ms.store(long_ago, Ordering::Relaxed);
        assert!(!cameras_healthy(&[cam.clone()], window));
        cam.status.frame_captured();
        cam.status.frame_encoded();
        assert_eq!(cam.status.state(), CameraState::Running);
        assert!(cameras_healthy(&[cam.clone()], window));
        // Encoder hung: capture fresh, last encode 10 s ago.
        let now = crate::time::mono_ms();
        cam.status.last_encode_ms.store(now - 10_000, Ordering::Relaxed);
        assert!(!cameras_healthy(&[cam.clone()], window));
        // A reported failure is handled by the retry loop: pings continue.
        cam.status.capture_failed(&std::io::Error::other("unplugged"));
        assert!(cameras_healthy(&[cam.clone()], window));
        assert!(summary(&[cam]).starts_with("a failed"));
    }
}
