//! `hindsight capture-check`: capture N frames from a V4L2 device with the daemon's own
//! [`V4l2Source`] and check them — sizes, sequence numbers, timestamps. Used to prove the V4L2
//! code against a real kernel driver (vivid in a VM, see `scripts/vivid-vm-test`).

use super::v4l2::V4l2Source;
use super::Source;
use crate::time::mono_now;
use serde::Serialize;
use std::time::Duration;

/// What the check saw.
#[derive(Debug, Serialize, Default)]
pub struct CheckReport {
    /// Device path.
    pub device: String,
    /// Format asked for.
    pub requested: String,
    /// Format the driver chose, `FOURCC WxH@fps`.
    pub negotiated: String,
    /// Frames captured.
    pub frames: u64,
    /// Frames whose size was not the format's exact size (raw formats).
    pub bad_sizes: u64,
    /// Sequence numbers missing between captured frames (driver drops).
    pub sequence_gaps: u64,
    /// Sequence numbers that did not increase.
    pub sequence_regressions: u64,
    /// Timestamps that did not strictly increase.
    pub timestamp_regressions: u64,
    /// Largest distance (either direction) between a frame's timestamp and CLOCK_MONOTONIC at
    /// dequeue, ms: small only if the driver stamps on the monotonic clock.
    pub max_timestamp_lag_ms: f64,
    /// Mean frame interval, ms.
    pub mean_interval_ms: f64,
    /// The error that ended the capture, if any.
    pub error: Option<String>,
    /// Whether every check passed.
    pub ok: bool,
}

/// Capture `frames` frames and check them.
pub fn run(device: &str, format: &str, width: u32, height: u32, fps: u32, frames: u64) -> CheckReport {
    let mut r = CheckReport {
        device: device.into(),
        requested: format!("{format} {width}x{height}@{fps}"),
        ..Default::default()
    };
    let mut src = match V4l2Source::open(device, format, width, height, fps) {
        Ok(s) => s,
        Err(e) => {
            r.error = Some(crate::status::error_chain(&e));
            return r;
        }
    };
    let f = src.format();
    r.negotiated = format!("{} {}x{}@{}", f.pixel, f.width, f.height, f.fps);
    let expected = f.pixel.frame_size(f.width, f.height);
    let mut last: Option<(u64, Duration)> = None;
    let mut first_ts = None;
    let mut last_ts = Duration::ZERO;
    let mut idle = Duration::ZERO;
    while r.frames < frames {
        match src.next_frame(Duration::from_millis(500)) {
            Ok(Some(frame)) => {
                idle = Duration::ZERO;
                r.frames += 1;
                if expected.is_some_and(|n| n != frame.data.len()) {
                    r.bad_sizes += 1;
                }
                let lag = (mono_now().as_secs_f64() - frame.captured.as_secs_f64()).abs() * 1000.0;
                r.max_timestamp_lag_ms = r.max_timestamp_lag_ms.max((lag * 10.0).round() / 10.0);
                if let Some((seq, ts)) = last {
                    if frame.seq <= seq {
                        r.sequence_regressions += 1;
                    } else {
                        r.sequence_gaps += frame.seq - seq - 1;
                    }
                    if frame.captured <= ts {
                        r.timestamp_regressions += 1;
                    }
                }
                first_ts.get_or_insert(frame.captured);
                last_ts = frame.captured;
                last = Some((frame.seq, frame.captured));
            }
            Ok(None) => {
                idle += Duration::from_millis(500);
                if idle >= Duration::from_secs(5) {
                    r.error = Some("no frame for 5 s".into());
                    break;
                }
            }
            Err(e) => {
                r.error = Some(crate::status::error_chain(&e));
                break;
            }
        }
    }
    if let Some(first) = first_ts {
        if r.frames > 1 {
            r.mean_interval_ms =
                ((last_ts - first).as_secs_f64() * 1000.0 / (r.frames - 1) as f64 * 100.0).round() / 100.0;
        }
    }
    r.ok = r.error.is_none()
        && r.frames == frames
        && r.bad_sizes == 0
        && r.sequence_regressions == 0
        && r.timestamp_regressions == 0
        && r.max_timestamp_lag_ms < 1000.0;
    r
}

/// Unplug drill: run the real capture stage ([`super::Capture`]) on `device`; print
/// `UNPLUG-READY` once frames flow, `UNPLUG-FAILED <last_error>` when the device vanishes (the
/// caller unbinds the driver), and `UNPLUG-RECOVERED` when frames flow again after the device
/// returns. Returns whether all three happened within `timeout`.
pub fn unplug_drill(device: &str, format: &str, width: u32, height: u32, fps: u32, timeout: Duration) -> bool {
    use crate::config::{SourceConfig, SourceKind};
    use crate::ring::{FrameRing, Pop};
    use crate::shutdown::StopToken;
    use crate::status::{CameraState, CameraStatus};
    use std::io::Write;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    let source = SourceConfig {
        device: Some(device.into()),
        format: Some(format.into()),
        width: Some(width),
        height: Some(height),
        fps: Some(fps),
        ..SourceConfig::of_kind(SourceKind::V4l2)
    };
    let ring = Arc::new(FrameRing::new(8));
    let status = Arc::new(CameraStatus::default());
    let stop = StopToken::new();
    let capture = super::Capture::new("drill", source, ring.clone(), status.clone(), stop.clone());
    let Ok(handle) = capture.spawn() else { return false };
    let drain = {
        let ring = ring.clone();
        std::thread::spawn(move || while !matches!(ring.pop(Duration::from_millis(200)), Pop::Closed) {})
    };
    let deadline = std::time::Instant::now() + timeout;
    let say = |s: String| {
        println!("{s}");
        let _ = std::io::stdout().flush();
    };
    let wait = |what: &str, cond: &dyn Fn() -> bool| -> bool {
        while !cond() {
            if std::time::Instant::now() > deadline {
                say(format!("UNPLUG-TIMEOUT waiting for {what}"));
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    };
    let captured = || status.frames_captured.load(Ordering::Relaxed);
    let mut ok = wait("frames", &|| captured() >= 25);
    if ok {
        say(format!("UNPLUG-READY frames={}", captured()));
        ok = wait("failure", &|| status.state() == CameraState::Failed);
    }
    if ok {
        say(format!("UNPLUG-FAILED {}", status.last_error().unwrap_or_default()));
        let at_failure = captured();
        ok = wait("recovery", &|| captured() >= at_failure + 25 && status.state() != CameraState::Failed);
    }
    if ok {
        say(format!("UNPLUG-RECOVERED frames={}", captured()));
    }
    stop.stop();
    let _ = handle.join();
    ring.close();
    let _ = drain.join();
    ok
}
