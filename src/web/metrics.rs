//! `GET /metrics`: the counters of `/api/cameras`, storage and uploads in the Prometheus text
//! format (0.0.4), for a Prometheus on the home network (with a bearer token when auth is on).
//!
//! Built from the same snapshots as the JSON routes; it reads state only and never blocks
//! (storage figures are one `statvfs`).

use super::AppState;
use crate::status::CameraState;
use crate::upload::UploadState;
use std::convert::Infallible;
use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use warp::{Filter, Reply};

/// One metric family: `# HELP`, `# TYPE`, then its samples.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP hindsight_{name} {help}");
    let _ = writeln!(out, "# TYPE hindsight_{name} {kind}");
    for (labels, v) in samples {
        let _ = writeln!(out, "hindsight_{name}{labels} {v}");
    }
}

type CameraInfo = crate::camera::CameraInfo;

/// The per-camera families: name, type, help, value.
const PER_CAMERA: &[(&str, &str, &str, fn(&CameraInfo) -> f64)] = &[
    ("camera_up", "gauge", "1 while the camera runs.", |c| f64::from(u8::from(c.state == CameraState::Running))),
    ("frames_captured_total", "counter", "Frames from the source.", |c| c.frames_captured as f64),
    ("frames_dropped_total", "counter", "Frames lost before the encoder.", |c| c.frames_dropped as f64),
    ("frames_encoded_total", "counter", "H.264 access units encoded.", |c| c.frames_encoded as f64),
    ("buffered_seconds", "gauge", "Seconds of video in the RAM pre-roll.", |c| c.buffered_s),
    ("buffered_bytes", "gauge", "Bytes of video in the RAM pre-roll.", |c| c.buffered_bytes as f64),
    ("recording", "gauge", "1 while a clip is being written.", |c| f64::from(u8::from(c.recording))),
    ("mjpeg_viewers", "gauge", "MJPEG live viewers.", |c| c.viewers as f64),
    ("hls_clients", "gauge", "HLS clients in the last 10 s.", |c| c.hls_clients as f64),
    ("webrtc_viewers", "gauge", "WebRTC (WHEP) sessions now.", |c| c.webrtc_viewers as f64),
    ("jpeg_encodes_total", "counter", "Preview JPEGs encoded.", |c| c.jpeg_encodes as f64),
];

/// The whole exposition.
pub fn render(s: &AppState) -> String {
    let entries = s.registry.snapshot();
    let cams: Vec<_> = entries.iter().map(|e| e.info()).collect();
    let per = |f: &fn(&CameraInfo) -> f64| -> Vec<(String, f64)> {
        // Camera ids are `[a-z0-9_-]`: nothing to escape in a label value.
        cams.iter().map(|c| (format!("{{camera=\"{}\"}}", c.id), f(c))).collect()
    };
    let mut out = String::with_capacity(4096);
    for (name, kind, help, value) in PER_CAMERA {
        family(&mut out, name, kind, help, &per(value));
    }
    let st = crate::control::storage_health(&s.storage_path);
    family(
        &mut out,
        "storage_free_bytes",
        "gauge",
        "Free bytes on the clip filesystem.",
        &[(String::new(), st.free_bytes as f64)],
    );
    family(
        &mut out,
        "storage_total_bytes",
        "gauge",
        "Size of the clip filesystem.",
        &[(String::new(), st.total_bytes as f64)],
    );
    family(
        &mut out,
        "storage_ok",
        "gauge",
        "1 while the clip filesystem can be examined (0: the free and total figures are unknown, not 0).",
        &[(String::new(), f64::from(u8::from(st.ok)))],
    );
    let phones: Vec<(String, f64)> = entries
        .iter()
        .filter_map(|e| {
            e.camera.feed.as_ref().map(|f| (format!("{{camera=\"{}\"}}", e.camera.id()), f.dropped() as f64))
        })
        .collect();
    family(
        &mut out,
        "phone_chunks_dropped_total",
        "counter",
        "Phone stream chunks dropped on the current connection (decoder behind, or between pipelines).",
        &phones,
    );
    recording_families(&mut out, &entries);
    let uploads = s.uploads.list();
    let by_state: Vec<(String, f64)> =
        [UploadState::Uploading, UploadState::Processing, UploadState::Done, UploadState::Failed]
            .iter()
            .map(|st| {
                let name = serde_json::to_value(st).ok().and_then(|v| v.as_str().map(str::to_string));
                let n = uploads.iter().filter(|u| u.state == *st).count();
                (format!("{{state=\"{}\"}}", name.unwrap_or_default()), n as f64)
            })
            .collect();
    family(&mut out, "uploads", "gauge", "Uploads of this run by state.", &by_state);
    system_families(&mut out, &s.monitor.latest());
    if let Some(x) = &s.exporter {
        let e = x.summary();
        let one = |v: f64| [(String::new(), v)];
        family(&mut out, "export_queued_clips", "gauge", "Clips waiting for or in export.", &one(e.queued as f64));
        family(&mut out, "export_failed_clips", "gauge", "Clips whose export was given up.", &one(e.failed as f64));
        family(
            &mut out,
            "export_auth_error",
            "gauge",
            "1 while the storage service refuses the credentials.",
            &one(f64::from(u8::from(e.state == "auth_error"))),
        );
        family(
            &mut out,
            "export_uploaded_bytes_total",
            "counter",
            "Bytes uploaded by the export since start.",
            &one(e.uploaded_bytes as f64),
        );
        family(
            &mut out,
            "export_uploaded_objects_total",
            "counter",
            "Objects (or parts) uploaded by the export since start.",
            &one(e.uploaded_objects as f64),
        );
    }
    out
}

/// The box (`/api/health/system`): figures that cannot be read are left out, not shown as 0.
fn system_families(out: &mut String, r: &crate::monitor::SystemReport) {
    let one = |v: Option<f64>| v.map(|v| vec![(String::new(), v)]).unwrap_or_default();
    let gauges: [(&str, &str, Option<f64>); 6] = [
        ("system_cpu_percent", "Busy share of all cores over the last sample interval, %.", r.cpu_percent),
        (
            "daemon_cpu_percent",
            "The daemon's share of all cores over the last sample interval, %.",
            r.daemon_cpu_percent,
        ),
        (
            "memory_available_bytes",
            "Memory available to new work (MemAvailable).",
            Some(r.memory.available_bytes as f64),
        ),
        ("daemon_rss_bytes", "The daemon's resident memory.", Some(r.memory.rss_bytes as f64)),
        ("soc_temperature_celsius", "The hottest thermal zone; absent where the board has none.", r.temperature_c),
        (
            "throttled_flags",
            "The Raspberry Pi firmware's get_throttled word; absent elsewhere.",
            r.throttled.map(|t| f64::from(t.raw)),
        ),
    ];
    for (name, help, v) in gauges {
        family(out, name, "gauge", help, &one(v));
    }
    // Alert keys are `kind` or `kind/camera`, both `[a-z0-9_/-]`: nothing to escape.
    let alerts: Vec<(String, f64)> =
        r.alerts.iter().map(|a| (format!("{{alert=\"{}\"}}", a.key()), f64::from(u8::from(a.active)))).collect();
    family(out, "alert", "gauge", "1 while the alert is raised (every alert seen since start).", &alerts);
}

type RecordStats = crate::record::RecordStats;

/// A metric family: name, type, help, value.
type Family<T> = (&'static str, &'static str, &'static str, fn(&T) -> f64);

/// Continuous recording's families (cameras that record continuously).
const PER_RECORDING: &[Family<RecordStats>] = &[
    ("recording_bytes_written_total", "counter", "Bytes of recording segments written (rate() gives bytes/s).", |r| {
        r.bytes.load(Relaxed) as f64
    }),
    ("recording_segments_total", "counter", "Recording segments closed and indexed.", |r| {
        r.segments.load(Relaxed) as f64
    }),
    ("recording_flushes_total", "counter", "Recording flushes (one fragment and one fdatasync each).", |r| {
        r.flushes.load(Relaxed) as f64
    }),
    ("recording_flush_seconds_total", "counter", "Time spent in recording flushes.", |r| {
        r.flush_us_total.load(Relaxed) as f64 / 1e6
    }),
    ("recording_last_flush_seconds", "gauge", "The last recording flush's duration.", |r| {
        r.last_flush_us.load(Relaxed) as f64 / 1e6
    }),
    ("recording_errors_total", "counter", "Recording storage errors.", |r| r.errors.load(Relaxed) as f64),
    ("recording_oldest_timestamp_seconds", "gauge", "Unix time of the oldest recording kept (0: none yet).", |r| {
        r.oldest_ms.load(Relaxed) as f64 / 1e3
    }),
];

fn recording_families(out: &mut String, entries: &[crate::camera::registry::CameraEntry]) {
    let recording: Vec<_> = entries.iter().filter(|e| e.continuous.is_some()).collect();
    for (name, kind, help, value) in PER_RECORDING {
        let samples: Vec<(String, f64)> =
            recording.iter().map(|e| (format!("{{camera=\"{}\"}}", e.camera.id()), value(&e.record_stats))).collect();
        family(out, name, kind, help, &samples);
    }
}

/// `GET /metrics`.
pub fn routes(
    st: impl Filter<Extract = (Arc<AppState>,), Error = Infallible> + Clone + Send + Sync + 'static,
) -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    warp::path!("metrics")
        .and(warp::get())
        .and(st)
        .map(|s: Arc<AppState>| {
            warp::reply::with_header(render(&s), "content-type", "text/plain; version=0.0.4; charset=utf-8")
                .into_response()
        })
        .boxed()
}
