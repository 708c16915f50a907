//! `hindsight probe`: what this machine offers — V4L2 devices with formats, sizes and rates,
//! the H.264 and JPEG encoders GStreamer has, the GStreamer elements hindsight needs that are
//! missing (with what each is for and the package that has it), the ALSA capture devices
//! ([`alsa`]) and AAC encoders for sound — and which board config fits.
//! The daemon logs the missing elements at start too.
//!
//! Read-only: opens devices to query them, never streams. [`url`] (`probe --url`) watches a
//! network camera for a few seconds instead.

use crate::capture::v4l2::{probe_devices, DeviceInfo};
use crate::gst::element_exists;
use serde::Serialize;

pub mod alsa;
pub mod url;

/// H.264 encoders hindsight knows, hardware first.
pub const H264_ENCODERS: &[&str] =
    &["v4l2h264enc", "nvv4l2h264enc", "vah264enc", "vaapih264enc", "x264enc", "openh264enc"];
/// JPEG encoders for the live preview.
pub const JPEG_ENCODERS: &[&str] = &["v4l2jpegenc", "nvjpegenc", "jpegenc"];

/// A GStreamer element hindsight builds pipelines from (besides the encoders above).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Needed {
    /// Element factory name.
    pub element: &'static str,
    /// What does not work without it.
    pub needed_for: &'static str,
    /// The Debian / Raspberry Pi OS package that has it.
    pub package: &'static str,
}

const fn needed(element: &'static str, needed_for: &'static str, package: &'static str) -> Needed {
    Needed { element, needed_for, package }
}

const BASE: &str = "gstreamer1.0-plugins-base";
const GOOD: &str = "gstreamer1.0-plugins-good";

/// Every element hindsight's pipelines name or rely on (decodebin picks the demuxers and
/// decoders), by feature. The `.deb`'s `Depends` must bring all of them (`scripts/deb-check`
/// probes an arm64 Debian root made from them); the Yocto recipe's `RDEPENDS` lists their plugins.
pub const NEEDED: &[Needed] = &[
    needed("appsrc", "every pipeline", BASE),
    needed("appsink", "every pipeline", BASE),
    needed("videoconvert", "encoding, previews, posters", BASE),
    needed("videoscale", "previews, posters", BASE),
    needed("videotestsrc", "test-pattern cameras", BASE),
    needed("decodebin", "phone cameras, upload transcoding", BASE),
    needed("parsebin", "uploads", BASE),
    needed("h264parse", "encoding, clips, uploads", "gstreamer1.0-plugins-bad"),
    needed("jpegenc", "posters, live previews", GOOD),
    needed("jpegdec", "MJPEG cameras", GOOD),
    needed("jpegparse", "MJPEG cameras", GOOD),
    needed("qtdemux", "MP4 phone streams (Chromium, iPhone), uploads, posters of recovered clips", GOOD),
    needed("matroskademux", "WebM phone streams (Firefox), WebM uploads", GOOD),
    needed("mp4mux", "uploads", GOOD),
    needed("vp8dec", "VP8 phone streams and uploads", GOOD),
    needed("rtspsrc", "RTSP cameras", GOOD),
    needed("rtph264depay", "RTSP cameras", GOOD),
    needed("souphttpsrc", "HTTP MJPEG cameras", GOOD),
    needed("multipartdemux", "HTTP MJPEG cameras", GOOD),
    needed("avdec_h264", "posters; H.264 phone streams and uploads without a hardware decoder", "gstreamer1.0-libav"),
    needed("avdec_aac", "sound for WebRTC viewers (AAC decoded to Opus)", "gstreamer1.0-libav"),
    needed("opusenc", "sound for WebRTC viewers", BASE),
];

/// The elements of [`NEEDED`] this machine lacks.
pub fn missing_elements() -> Vec<Needed> {
    NEEDED.iter().filter(|n| !element_exists(n.element)).copied().collect()
}

/// What `probe` found.
#[derive(Debug, Serialize)]
pub struct Probe {
    /// Capture devices.
    pub devices: Vec<DeviceInfo>,
    /// H.264 encoder elements present.
    pub h264_encoders: Vec<String>,
    /// JPEG encoder elements present.
    pub jpeg_encoders: Vec<String>,
    /// Needed elements that are missing.
    pub missing: Vec<Needed>,
    /// ALSA capture devices (microphones) for `audio = { kind = "alsa", device = ... }`.
    pub audio_devices: Vec<alsa::CaptureDevice>,
    /// Whether `alsasrc` (gstreamer1.0-alsa) is installed.
    pub alsasrc: bool,
    /// AAC encoder elements present (`audio.encoder = "auto"` takes the first).
    pub aac_encoders: Vec<String>,
    /// Board model from the device tree, if any.
    pub model: Option<String>,
    /// The board config that fits best.
    pub suggested_board: String,
}

/// Suggest a board from the device-tree model and the encoders present.
pub fn suggest_board(model: Option<&str>, h264: &[String]) -> &'static str {
    let m = model.unwrap_or("");
    let has = |e: &str| h264.iter().any(|x| x == e);
    if m.contains("Raspberry Pi 5") {
        "rpi5"
    } else if m.contains("Raspberry Pi Zero 2") {
        "rpi-zero2w"
    } else if m.contains("Raspberry Pi") || has("v4l2h264enc") {
        "rpi4"
    } else if m.contains("Orin Nano") {
        "jetson-orin-nano"
    } else if m.contains("Orin") {
        "jetson-orin-nx"
    } else if m.contains("Jetson") || has("nvv4l2h264enc") {
        "jetson-nano"
    } else {
        "x86-dev"
    }
}

/// Look at this machine.
pub fn probe() -> Probe {
    let present = |list: &[&str]| list.iter().filter(|e| element_exists(e)).map(|e| e.to_string()).collect::<Vec<_>>();
    let h264_encoders = present(H264_ENCODERS);
    let model =
        std::fs::read_to_string("/proc/device-tree/model").ok().map(|s| s.trim_end_matches('\0').trim().to_string());
    Probe {
        devices: probe_devices(),
        jpeg_encoders: present(JPEG_ENCODERS),
        missing: missing_elements(),
        audio_devices: alsa::capture_devices(std::path::Path::new("/proc/asound")),
        alsasrc: element_exists("alsasrc"),
        aac_encoders: present(&crate::config::AUTO_AAC_ENCODERS),
        suggested_board: suggest_board(model.as_deref(), &h264_encoders).into(),
        h264_encoders,
        model,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn suggestions() {
        assert_eq!(suggest_board(Some("Raspberry Pi 5 Model B Rev 1.0"), &[]), "rpi5");
        assert_eq!(suggest_board(Some("Raspberry Pi 4 Model B"), &[]), "rpi4");
        assert_eq!(suggest_board(Some("NVIDIA Jetson Orin Nano Developer Kit"), &[]), "jetson-orin-nano");
        assert_eq!(suggest_board(None, &["nvv4l2h264enc".into()]), "jetson-nano");
        assert_eq!(suggest_board(None, &["x264enc".into()]), "x86-dev");
    }
}
