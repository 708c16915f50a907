//! `[[camera]]`: one camera's settings ([`CameraConfig`]) and its `source` table
//! ([`SourceConfig`], [`SourceKind`]), with their defaults.
//!
//! Data only: must never open a device, start a pipeline or check a value (that is
//! [`super::validate`]).

use super::ByteSize;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What kind of source a camera reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// A V4L2 device through the v4l crate (USB webcams, Pi/Jetson ISP nodes).
    V4l2,
    /// Any GStreamer source pipeline ending in raw or JPEG video (libcamerasrc, RTSP, ...).
    Gstreamer,
    /// A synthetic moving pattern that carries its frame number (tests, development).
    Test,
    /// A browser (a phone's camera) streaming MediaRecorder chunks over a WebSocket to
    /// `/api/cameras/{id}/push`; decoded with GStreamer. width/height/fps are hints only.
    Browser,
    /// An IP camera's RTSP (or RTSPS) stream: its H.264 is passed through without decoding.
    Rtsp,
    /// A multipart MJPEG stream over HTTP (ESP32-CAM, IP cameras, another hindsight's
    /// `/api/cameras/{id}/mjpeg`): JPEGs go to the preview as they are; H.264 is encoded once.
    HttpMjpeg,
}

/// How an RTSP camera's RTP travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RtspTransport {
    /// Interleaved in the RTSP TCP connection: no lost packets on Wi-Fi, passes NAT (default).
    #[default]
    Tcp,
    /// RTP over UDP: the least latency on a clean wired LAN.
    Udp,
    /// UDP first, TCP when UDP does not come through.
    Auto,
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SourceKind::V4l2 => "v4l2",
            SourceKind::Gstreamer => "gstreamer",
            SourceKind::Test => "test",
            SourceKind::Browser => "browser",
            SourceKind::Rtsp => "rtsp",
            SourceKind::HttpMjpeg => "http_mjpeg",
        })
    }
}

/// `source = { kind = ..., ... }` — one flat table; which keys apply depends on `kind`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// `v4l2`, `gstreamer`, `rtsp`, `http_mjpeg`, `test` (or `browser`, made by phones).
    pub kind: SourceKind,
    /// rtsp: `rtsp://user:password@host:554/path` (or `rtsps://`; percent-encode `@ : /` in the
    /// password); http_mjpeg: `http://host/video` (`https://` too, `user:password@` for basic
    /// auth). Never shown with its credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// rtsp: `tcp` (default), `udp` or `auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<RtspTransport>,
    /// v4l2: device path (prefer `/dev/v4l/by-id/...`, stable across reboots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// v4l2: pixel format `MJPG`, `YUYV`, `NV12`, `H264` (a UVC webcam's own H.264, passed
    /// through) or `auto` (MJPG if offered, else YUYV, else NV12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// gstreamer: source pipeline ending in `video/x-raw`, `image/jpeg` or `video/x-h264` (no
    /// sink; H.264 is passed through).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
    /// v4l2/test: width in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// v4l2/test: height in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// v4l2/test: frames per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fps: Option<u32>,
    /// rtsp with `rtsps://`: the SHA-256 fingerprint of the camera's own TLS certificate
    /// (`sha256:AB:CD:…`, as `last_error` shows it when the certificate is not trusted): a camera
    /// with a self-signed certificate is accepted when it presents exactly this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_fingerprint: Option<String>,
}

impl SourceConfig {
    /// The built-in test pattern at `width`×`height`@`fps`.
    pub fn test(width: u32, height: u32, fps: u32) -> Self {
        SourceConfig { width: Some(width), height: Some(height), fps: Some(fps), ..Self::of_kind(SourceKind::Test) }
    }

    /// A browser-fed camera (a phone streaming to `/api/cameras/{id}/push`).
    pub fn browser() -> Self {
        Self::of_kind(SourceKind::Browser)
    }

    /// A source of `kind` with every other key unset.
    pub fn of_kind(kind: SourceKind) -> Self {
        SourceConfig {
            kind,
            url: None,
            transport: None,
            device: None,
            format: None,
            pipeline: None,
            width: None,
            height: None,
            fps: None,
            tls_fingerprint: None,
        }
    }

    /// Short human description (`/api/cameras` `source` field).
    pub fn describe(&self) -> String {
        match self.kind {
            SourceKind::V4l2 => format!("v4l2:{}", self.device.as_deref().unwrap_or("?")),
            SourceKind::Gstreamer => {
                format!("gstreamer:{}", crate::redact::redact(self.pipeline.as_deref().unwrap_or("")))
            }
            SourceKind::Test => "test".into(),
            SourceKind::Browser => "browser".into(),
            SourceKind::Rtsp | SourceKind::HttpMjpeg => {
                format!("{}:{}", self.kind, crate::redact::redact(self.url.as_deref().unwrap_or("")))
            }
        }
    }

    /// Whether the source delivers H.264 (passed through unless `encoder` names an element):
    /// `rtsp`, and `v4l2` with `format = "H264"`. A `gstreamer` pipeline is only known once it
    /// runs.
    pub fn delivers_h264(&self) -> bool {
        match self.kind {
            SourceKind::Rtsp => true,
            SourceKind::V4l2 => self.format.as_deref().is_some_and(|f| f.eq_ignore_ascii_case("H264")),
            _ => false,
        }
    }
}

/// `[[camera]]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// Identifier used in URLs and topics: `[a-z0-9_-]{1,32}`.
    pub id: String,
    /// Where frames come from.
    pub source: SourceConfig,
    /// `auto`: pass an H.264 source through, else the first of `auto_encoders` that exists;
    /// `passthrough`: the source's own H.264 only (refuses a raw source); or a GStreamer H.264
    /// encoder element (an H.264 source is then decoded and re-encoded, e.g. to lower its
    /// bitrate).
    #[serde(default = "default_encoder")]
    pub encoder: String,
    /// Target bitrate.
    #[serde(default = "default_bitrate")]
    pub bitrate_kbps: u32,
    /// Keyframe (GOP) period; clips and HLS segments start on keyframes.
    #[serde(default = "default_keyframe_interval")]
    pub keyframe_interval_s: f64,
    /// Seconds kept before a trigger.
    #[serde(default = "default_pre")]
    pub pre_s: f64,
    /// Seconds recorded after a trigger.
    #[serde(default = "default_post")]
    pub post_s: f64,
    /// Longest clip that re-triggers can extend to.
    #[serde(default = "default_max_clip")]
    pub max_clip_s: f64,
    /// Hard cap on the pre-roll buffer; default bitrate × (pre_s + 2 GOPs) × 1.5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preroll_max_bytes: Option<ByteSize>,
    /// Raw frames held between capture and encoder; the oldest is dropped when full.
    #[serde(default = "default_ring_frames")]
    pub ring_frames: usize,
    /// Live MJPEG preview: largest width of encoded preview frames (the height keeps the
    /// aspect ratio; never upscaled). JPEG cameras are passed through at their own size.
    #[serde(default = "default_preview_width")]
    pub preview_width: u32,
    /// Live MJPEG preview: most frames per second sent to viewers.
    #[serde(default = "default_preview_fps")]
    pub preview_fps: u32,
    /// Live MJPEG preview: JPEG encoder element for raw sources (`jpegenc`, or a hardware one
    /// such as `v4l2jpegenc` where `hindsight probe` lists it).
    #[serde(default = "default_preview_encoder")]
    pub preview_encoder: String,
    /// Live MJPEG preview from the camera's substream instead of its main stream: an `rtsp://`
    /// or `rtsps://` H.264 substream (decoded, cheaper than the main stream) or an `http(s)://`
    /// MJPEG one (passed through). Opened only while someone watches; credentials as in
    /// `source.url`, redacted everywhere. Clips and HLS stay on the main stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_url: Option<String>,
    /// Sound: none by default; see [`super::AudioConfig`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<super::AudioConfig>,
    /// 24/7 recording: off by default; see [`super::ContinuousConfig`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuous: Option<super::ContinuousConfig>,
}

pub(super) fn default_encoder() -> String {
    "auto".into()
}
pub(super) fn default_bitrate() -> u32 {
    4000
}
fn default_keyframe_interval() -> f64 {
    1.0
}
pub(super) fn default_pre() -> f64 {
    30.0
}
pub(super) fn default_post() -> f64 {
    30.0
}
fn default_max_clip() -> f64 {
    300.0
}
fn default_ring_frames() -> usize {
    8
}
fn default_preview_width() -> u32 {
    640
}
fn default_preview_fps() -> u32 {
    10
}
fn default_preview_encoder() -> String {
    "jpegenc".into()
}

impl CameraConfig {
    /// A camera with every optional key at its default.
    pub fn new(id: &str, source: SourceConfig) -> Self {
        CameraConfig {
            id: id.into(),
            source,
            encoder: default_encoder(),
            bitrate_kbps: default_bitrate(),
            keyframe_interval_s: default_keyframe_interval(),
            pre_s: default_pre(),
            post_s: default_post(),
            max_clip_s: default_max_clip(),
            preroll_max_bytes: None,
            ring_frames: default_ring_frames(),
            preview_width: default_preview_width(),
            preview_fps: default_preview_fps(),
            preview_encoder: default_preview_encoder(),
            preview_url: None,
            audio: None,
            continuous: None,
        }
    }

    /// The source the preview substream is read from (`preview_url`): `rtsp` (with the main
    /// source's transport) or `http_mjpeg`, by the URL's scheme.
    pub fn preview_source(&self) -> Option<SourceConfig> {
        let url = self.preview_url.as_ref()?;
        let rtsp = url.get(..4).is_some_and(|s| s.eq_ignore_ascii_case("rtsp"));
        Some(SourceConfig {
            url: Some(url.clone()),
            transport: if rtsp { self.source.transport } else { None },
            ..SourceConfig::of_kind(if rtsp { SourceKind::Rtsp } else { SourceKind::HttpMjpeg })
        })
    }

    /// The pre-roll byte cap: configured, or (bitrate + the sound's) × (pre_s + 2 GOPs) × 1.5.
    pub fn preroll_cap_bytes(&self) -> usize {
        match self.preroll_max_bytes {
            Some(b) => b.0 as usize,
            None => {
                let secs = self.pre_s + 2.0 * self.keyframe_interval_s;
                let kbps = self.bitrate_kbps + self.audio.as_ref().map_or(0, |a| a.bitrate_kbps);
                (kbps as f64 * 1000.0 / 8.0 * secs * 1.5) as usize
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preroll_cap_default_formula() {
        let mut c = CameraConfig::new("a", SourceConfig::test(64, 64, 10));
        c.bitrate_kbps = 8000;
        c.pre_s = 30.0;
        c.keyframe_interval_s = 1.0;
        assert_eq!(c.preroll_cap_bytes(), 1_000_000 * 32 * 3 / 2);
    }
}
