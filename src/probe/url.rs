//! `hindsight probe --url`: connect to a network camera for a few seconds and say what it
//! sends — codec, profile and level, size, measured fps, GOP and bitrate, and its other streams
//! (audio tracks) — plus the `[[camera]]` block to paste into the config.
//!
//! Opens the camera exactly as a camera of the daemon would (`capture::network`), so what the
//! probe sees is what the daemon will get. The printed summary redacts the URL's credentials;
//! only the paste block repeats the URL as given (it is the user's own terminal).

use crate::capture::network::{open_http_mjpeg, open_rtsp_listing, OtherStreams};
use crate::capture::Source;
use crate::config::RtspTransport;
use crate::frame::PixelFormat;
use crate::mp4::h264::{is_idr, SpsInfo};
use crate::status::error_chain;
use serde::Serialize;
use std::time::{Duration, Instant};

/// What a network camera sent while it was watched.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UrlProbe {
    /// The URL, credentials redacted.
    pub url: String,
    /// The source kind to configure: `rtsp` or `http_mjpeg`.
    pub kind: &'static str,
    /// `h264` or `mjpeg`.
    pub codec: &'static str,
    /// H.264 profile from the SPS (`main`, `high`, ...).
    pub profile: Option<String>,
    /// H.264 level from the SPS (`3.1`, `4.0`, ...).
    pub level: Option<String>,
    /// Picture width.
    pub width: u32,
    /// Picture height.
    pub height: u32,
    /// Frames per second, measured over the frames seen.
    pub fps: f64,
    /// Seconds between keyframes, measured (needs two keyframes).
    pub gop_s: Option<f64>,
    /// Measured bitrate.
    pub bitrate_kbps: Option<u32>,
    /// The camera's other streams, e.g. `audio PCMA` (not recorded by hindsight).
    pub other_streams: Vec<String>,
    /// Frames seen.
    pub frames: u64,
}

/// Watch `url` for up to `watch` (less once three keyframes came). `pinned`: the fingerprint of
/// an `rtsps://` camera's self-signed certificate to accept.
pub fn probe_url(
    url: &str,
    transport: RtspTransport,
    pinned: Option<&str>,
    watch: Duration,
) -> Result<UrlProbe, String> {
    let lower = url.to_ascii_lowercase();
    let (kind, mut source, others): (&'static str, Box<dyn Source>, OtherStreams) =
        if lower.starts_with("rtsp://") || lower.starts_with("rtsps://") {
            let (s, o) = open_rtsp_listing(url, transport, pinned, None).map_err(|e| error_chain(&e))?;
            ("rtsp", Box::new(s), o)
        } else if lower.starts_with("http://") || lower.starts_with("https://") {
            ("http_mjpeg", Box::new(open_http_mjpeg(url).map_err(|e| error_chain(&e))?), OtherStreams::default())
        } else {
            return Err("the URL must start with rtsp://, rtsps://, http:// or https://".into());
        };
    let format = source.format();
    let started = Instant::now();
    let (mut frames, mut bytes, mut first, mut last) = (0u64, 0u64, None, Duration::ZERO);
    let mut keys: Vec<Duration> = Vec::new();
    let mut sps: Option<SpsInfo> = None;
    while started.elapsed() < watch && keys.len() < 3 {
        let Some(f) = source.next_frame(Duration::from_millis(250)).map_err(|e| error_chain(&e))? else { continue };
        frames += 1;
        bytes += f.data.len() as u64;
        first.get_or_insert(f.captured);
        last = f.captured;
        if f.format.pixel == PixelFormat::H264 {
            sps = sps.or_else(|| SpsInfo::of(&f.data));
            if is_idr(&f.data) {
                keys.push(f.captured);
            }
        }
    }
    let span = first.map(|t| last.saturating_sub(t)).unwrap_or_default().as_secs_f64();
    let fps = if frames > 1 && span > 0.0 { (frames - 1) as f64 / span } else { f64::from(format.fps) };
    let gop_s = (keys.len() >= 2).then(|| (keys[keys.len() - 1] - keys[0]).as_secs_f64() / (keys.len() - 1) as f64);
    let bitrate_kbps = (span > 0.0).then(|| (bytes as f64 * 8.0 / span / 1000.0).round() as u32);
    let other_streams = others.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(UrlProbe {
        url: crate::redact::redact(url).into_owned(),
        kind,
        codec: if format.pixel == PixelFormat::H264 { "h264" } else { "mjpeg" },
        profile: sps.map(|s| s.profile().to_string()),
        level: sps.map(|s| s.level()),
        width: format.width,
        height: format.height,
        fps: (fps * 100.0).round() / 100.0,
        gop_s: gop_s.map(|g| (g * 100.0).round() / 100.0),
        bitrate_kbps,
        other_streams,
        frames,
    })
}

impl UrlProbe {
    /// The `[[camera]]` block for this camera, with `url` as the user gave it (and the pinned
    /// certificate, if any).
    pub fn camera_block(&self, url: &str, transport: RtspTransport, pinned: Option<&str>) -> String {
        let mut b = String::from("[[camera]]\nid = \"cam1\"\n");
        if self.kind == "rtsp" {
            let t = match transport {
                RtspTransport::Tcp => "tcp",
                RtspTransport::Udp => "udp",
                RtspTransport::Auto => "auto",
            };
            let pin = pinned.map(|p| format!(", tls_fingerprint = \"sha256:{p}\"")).unwrap_or_default();
            b += &format!("source = {{ kind = \"rtsp\", url = {url:?}, transport = \"{t}\"{pin} }}\n");
            if let Some(g) = self.gop_s {
                b += &format!("keyframe_interval_s = {g}   # the camera's, measured\n");
            }
            if let Some(k) = self.bitrate_kbps {
                // Within what the config accepts (a still scene can measure below its floor).
                let k = k.clamp(100, 100_000);
                b += &format!("bitrate_kbps = {k}   # the camera's, measured (sizes the pre-roll)\n");
            }
        } else {
            b += &format!("source = {{ kind = \"http_mjpeg\", url = {url:?} }}\n");
        }
        b
    }
}
