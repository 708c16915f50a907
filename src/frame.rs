//! The units that flow through the pipeline: raw [`Frame`]s from capture,
//! [`EncodedFrame`]s (H.264 access units) from the encoder, and [`AudioFrame`]s (AAC) from a
//! camera's sound.
//!
//! Both hold their payload as [`Bytes`], so handing a frame to the next stage, to a clip writer
//! or to a live viewer is a reference-count increment, never a copy of the pixels.

use bytes::Bytes;
use std::fmt;
use std::time::Duration;

/// Pixel layout of a raw frame's payload (tightly packed: no row padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    /// Motion JPEG: one JPEG image per frame (USB webcams).
    Mjpeg,
    /// Packed 4:2:2, Y0 U Y1 V (V4L2 `YUYV`, GStreamer `YUY2`).
    Yuyv,
    /// Planar 4:2:0 with interleaved chroma (V4L2/GStreamer `NV12`).
    Nv12,
    /// Planar 4:2:0, three planes (GStreamer `I420`).
    I420,
    /// An H.264 access unit (Annex-B, SPS/PPS before every IDR): a camera's own encoding,
    /// passed through to the pre-roll without decoding (RTSP cameras, UVC H.264 webcams).
    H264,
}

impl PixelFormat {
    /// GStreamer caps for this format at the given size and rate.
    pub fn caps(self, width: u32, height: u32, fps: u32) -> String {
        match self {
            PixelFormat::Mjpeg => {
                format!("image/jpeg,width={width},height={height},framerate={fps}/1")
            }
            PixelFormat::H264 => format!(
                "video/x-h264,stream-format=byte-stream,alignment=au,width={width},height={height},framerate={fps}/1"
            ),
            _ => format!("video/x-raw,format={},width={width},height={height},framerate={fps}/1", self.gst_name()),
        }
    }

    /// GStreamer's name (`video/x-raw,format=...`), `JPEG` for MJPEG.
    pub fn gst_name(self) -> &'static str {
        match self {
            PixelFormat::Mjpeg => "JPEG",
            PixelFormat::H264 => "H264",
            PixelFormat::Yuyv => "YUY2",
            PixelFormat::Nv12 => "NV12",
            PixelFormat::I420 => "I420",
        }
    }

    /// V4L2 FourCC.
    pub fn fourcc(self) -> [u8; 4] {
        match self {
            PixelFormat::Mjpeg => *b"MJPG",
            PixelFormat::H264 => *b"H264",
            PixelFormat::Yuyv => *b"YUYV",
            PixelFormat::Nv12 => *b"NV12",
            PixelFormat::I420 => *b"YU12",
        }
    }

    /// From a V4L2 FourCC, if hindsight handles it.
    pub fn from_fourcc(f: &[u8; 4]) -> Option<Self> {
        match f {
            b"MJPG" | b"JPEG" => Some(PixelFormat::Mjpeg),
            b"H264" => Some(PixelFormat::H264),
            b"YUYV" => Some(PixelFormat::Yuyv),
            b"NV12" => Some(PixelFormat::Nv12),
            b"YU12" => Some(PixelFormat::I420),
            _ => None,
        }
    }

    /// From GStreamer's raw format name (or `JPEG`, `H264`).
    pub fn from_gst_name(s: &str) -> Option<Self> {
        match s {
            "JPEG" => Some(PixelFormat::Mjpeg),
            "H264" => Some(PixelFormat::H264),
            "YUY2" => Some(PixelFormat::Yuyv),
            "NV12" => Some(PixelFormat::Nv12),
            "I420" => Some(PixelFormat::I420),
            _ => None,
        }
    }

    /// Whether frames are compressed (JPEG, H.264) rather than raw pixels.
    pub fn is_compressed(self) -> bool {
        matches!(self, PixelFormat::Mjpeg | PixelFormat::H264)
    }

    /// Exact size of a tightly packed raw frame; `None` for compressed formats.
    pub fn frame_size(self, width: u32, height: u32) -> Option<usize> {
        let (w, h) = (width as usize, height as usize);
        match self {
            PixelFormat::Mjpeg | PixelFormat::H264 => None,
            PixelFormat::Yuyv => Some(w * h * 2),
            PixelFormat::Nv12 | PixelFormat::I420 => Some(w * h + 2 * (w.div_ceil(2) * h.div_ceil(2))),
        }
    }
}

impl fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(&self.fourcc()).unwrap_or("????"))
    }
}

/// The format a source actually delivers (what the driver or pipeline negotiated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VideoFormat {
    /// Pixel layout.
    pub pixel: PixelFormat,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Nominal frames per second (0 when the source does not say).
    pub fps: u32,
}

impl VideoFormat {
    /// GStreamer caps string for `appsrc`.
    pub fn caps(&self) -> String {
        self.pixel.caps(self.width, self.height, self.fps.max(1))
    }
}

/// One raw frame from a source.
#[derive(Clone)]
pub struct Frame {
    /// Pixel data, tightly packed (or one JPEG image).
    pub data: Bytes,
    /// Layout of `data`.
    pub format: VideoFormat,
    /// Capture time on CLOCK_MONOTONIC (the driver's timestamp where there is one).
    pub captured: Duration,
    /// Source sequence number; gaps mean frames the source itself dropped.
    pub seq: u64,
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("seq", &self.seq)
            .field("captured", &self.captured)
            .field("format", &self.format)
            .field("bytes", &self.data.len())
            .finish()
    }
}

/// One encoded H.264 access unit (Annex-B, SPS/PPS in front of every keyframe).
#[derive(Clone)]
pub struct EncodedFrame {
    /// Annex-B access unit.
    pub data: Bytes,
    /// Presentation time: the frame's capture time on CLOCK_MONOTONIC.
    pub pts: Duration,
    /// Decode time on the same clock (equal to `pts`: hindsight encodes without B-frames).
    pub dts: Duration,
    /// Frame duration (1/fps, or the encoder's own).
    pub duration: Duration,
    /// An IDR frame that starts a GOP.
    pub keyframe: bool,
    /// The capture sequence number of the source frame.
    pub seq: u64,
}

impl fmt::Debug for EncodedFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncodedFrame")
            .field("seq", &self.seq)
            .field("pts", &self.pts)
            .field("key", &self.keyframe)
            .field("bytes", &self.data.len())
            .finish()
    }
}

/// What an AAC stream is: its AudioSpecificConfig and what it says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioFormat {
    /// The AudioSpecificConfig (the `codec_data` of `audio/mpeg,mpegversion=4,stream-format=raw`).
    pub config: Bytes,
    /// Samples per second.
    pub rate: u32,
    /// Channels.
    pub channels: u16,
}

/// One encoded AAC frame (raw, no ADTS header): 1024 samples of AAC-LC.
#[derive(Clone)]
pub struct AudioFrame {
    /// The raw AAC access unit.
    pub data: Bytes,
    /// Capture time of its first sample on CLOCK_MONOTONIC (the clock video frames are dated by).
    pub pts: Duration,
    /// How long it plays.
    pub duration: Duration,
    /// The stream it belongs to (a clone of a handle, not of the config's bytes).
    pub format: AudioFormat,
}

impl fmt::Debug for AudioFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AudioFrame").field("pts", &self.pts).field("bytes", &self.data.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn sizes() {
        assert_eq!(PixelFormat::I420.frame_size(1280, 720), Some(1280 * 720 * 3 / 2));
        assert_eq!(PixelFormat::Yuyv.frame_size(640, 480), Some(640 * 480 * 2));
        assert_eq!(PixelFormat::from_fourcc(b"NV12"), Some(PixelFormat::Nv12));
        assert_eq!(PixelFormat::Mjpeg.to_string(), "MJPG");
    }
}
