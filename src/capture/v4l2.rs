//! The `v4l2` source: a V4L2 capture device through the v4l crate, MMAP streaming.
//!
//! Negotiates MJPG / YUYV / NV12 and size/rate as configured, and reports what the driver
//! actually chose (drivers round sizes and rates to what they support). Uses the driver's
//! CLOCK_MONOTONIC timestamps and sequence numbers, so gaps show frames the driver dropped.
//! Each frame is copied once out of the MMAP buffer (the buffer goes back to the driver).
//!
//! Must never hang: it polls with a timeout so stop requests and stalls are noticed.

use super::{CaptureError, Source};
use crate::frame::{Frame, PixelFormat, VideoFormat};
use crate::time::mono_now;
use bytes::Bytes;
use std::time::Duration;
use v4l::buffer::Type;
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;
use v4l::video::Capture;
use v4l::{Device, FourCC};

/// `V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC`
const TIMESTAMP_MONOTONIC: u32 = 0x2000;
const TIMESTAMP_MASK: u32 = 0xe000;

/// An open, streaming V4L2 device.
pub struct V4l2Source {
    // Field order matters: the stream must be dropped before the device.
    stream: Stream<'static>,
    device: Device,
    path: String,
    format: VideoFormat,
    stride: usize,
    started: bool,
    last_seq: u64,
}

/// Pick the pixel format: the configured one, or for `auto` MJPG if offered, else YUYV, else NV12.
fn choose_format(dev: &Device, path: &str, wanted: &str) -> Result<PixelFormat, CaptureError> {
    let offered: Vec<[u8; 4]> = dev
        .enum_formats()
        .map_err(|e| CaptureError::Open { device: path.into(), source: e })?
        .into_iter()
        .map(|d| d.fourcc.repr)
        .collect();
    let names = || offered.iter().map(|f| String::from_utf8_lossy(f).into_owned()).collect::<Vec<_>>().join(", ");
    let candidates: Vec<PixelFormat> = match wanted {
        "auto" => vec![PixelFormat::Mjpeg, PixelFormat::Yuyv, PixelFormat::Nv12],
        "MJPG" => vec![PixelFormat::Mjpeg],
        "YUYV" => vec![PixelFormat::Yuyv],
        "NV12" => vec![PixelFormat::Nv12],
        other => {
            return Err(CaptureError::Format { device: path.into(), message: format!("unsupported format {other}") })
        }
    };
    candidates.into_iter().find(|p| offered.contains(&p.fourcc())).ok_or_else(|| CaptureError::Format {
        device: path.into(),
        message: format!("format {wanted} not offered (the driver offers: {})", names()),
    })
}

impl V4l2Source {
    /// Open `path` and start negotiating; streaming starts with the first frame.
    pub fn open(path: &str, wanted: &str, width: u32, height: u32, fps: u32) -> Result<Self, CaptureError> {
        let open_err = |e| CaptureError::Open { device: path.into(), source: e };
        let device = Device::with_path(path).map_err(open_err)?;
        let pixel = choose_format(&device, path, wanted)?;
        let mut fmt = device.format().map_err(open_err)?;
        fmt.width = width;
        fmt.height = height;
        fmt.fourcc = FourCC::new(&pixel.fourcc());
        // Reset, or the driver keeps the previous format's stride and size.
        fmt.stride = 0;
        fmt.size = 0;
        let got = device.set_format(&fmt).map_err(open_err)?;
        let got_pixel = PixelFormat::from_fourcc(&got.fourcc.repr).ok_or_else(|| CaptureError::Format {
            device: path.into(),
            message: format!("driver chose {} instead of {}", got.fourcc, pixel),
        })?;
        let mut params = device.params().map_err(open_err)?;
        params.interval = v4l::Fraction::new(1, fps.max(1));
        let params = device.set_params(&params).unwrap_or(params);
        let got_fps = if params.interval.numerator > 0 {
            (params.interval.denominator as f64 / params.interval.numerator as f64).round() as u32
        } else {
            fps
        };
        if (got.width, got.height, got_fps) != (width, height, fps) {
            log::warn!("{path}: asked {width}x{height}@{fps}, driver chose {}x{}@{got_fps}", got.width, got.height);
        }
        let format = VideoFormat { pixel: got_pixel, width: got.width, height: got.height, fps: got_fps };
        let mut stream = Stream::with_buffers(&device, Type::VideoCapture, 4).map_err(open_err)?;
        // Only for the very first dequeue (see `next_frame` for why later ones poll first).
        stream.set_timeout(Duration::from_secs(5));
        Ok(V4l2Source {
            stream,
            device,
            path: path.into(),
            format,
            stride: got.stride as usize,
            started: false,
            last_seq: 0,
        })
    }
}

/// Copy the driver's buffer into a tightly packed frame (rows are `stride` bytes apart).
fn copy_out(f: &VideoFormat, stride: usize, buf: &[u8], used: usize) -> Option<Bytes> {
    {
        let used = used.min(buf.len());
        let Some(tight) = f.pixel.frame_size(f.width, f.height) else {
            // JPEG: exactly the bytes the driver says it used.
            return (used > 0).then(|| Bytes::copy_from_slice(&buf[..used]));
        };
        let w = f.width as usize;
        let row = match f.pixel {
            PixelFormat::Yuyv => w * 2,
            _ => w,
        };
        if stride <= row {
            return (buf.len() >= tight).then(|| Bytes::copy_from_slice(&buf[..tight]));
        }
        // Padded rows: copy each row without its padding (NV12: luma rows then chroma rows).
        let rows = match f.pixel {
            PixelFormat::Nv12 => f.height as usize + (f.height as usize).div_ceil(2),
            _ => f.height as usize,
        };
        if buf.len() < stride * rows {
            return None;
        }
        let mut out = Vec::with_capacity(tight);
        for r in 0..rows {
            out.extend_from_slice(&buf[r * stride..r * stride + row]);
        }
        Some(Bytes::from(out))
    }
}

impl Source for V4l2Source {
    fn format(&self) -> VideoFormat {
        self.format
    }

    fn next_frame(&mut self, wait: Duration) -> Result<Option<Frame>, CaptureError> {
        if self.started {
            // The v4l crate re-queues the previous buffer before waiting, so a timeout inside
            // `next()` would queue it twice on the following call. Poll here first instead.
            let ready = self
                .device
                .handle()
                .poll(libc_pollin(), wait.as_millis() as i32)
                .map_err(|e| CaptureError::Io { device: self.path.clone(), sequence: self.last_seq, source: e })?;
            if ready == 0 {
                return Ok(None);
            }
        }
        let (buf, meta) = self.stream.next().map_err(|e| CaptureError::Io {
            device: self.path.clone(),
            sequence: self.last_seq,
            source: e,
        })?;
        self.started = true;
        let flags: u32 = meta.flags.bits();
        let ts =
            Duration::new(meta.timestamp.sec.max(0) as u64, (meta.timestamp.usec.max(0) as u32).saturating_mul(1000));
        let captured = if flags & TIMESTAMP_MASK == TIMESTAMP_MONOTONIC && !ts.is_zero() { ts } else { mono_now() };
        let seq = meta.sequence as u64;
        let used = meta.bytesused as usize;
        let data = copy_out(&self.format, self.stride, buf, used);
        self.last_seq = seq;
        match data {
            Some(data) => Ok(Some(Frame { data, format: self.format, captured, seq })),
            None => {
                log::debug!("{}: short frame {seq} ({used} bytes), skipped", self.path);
                Ok(None)
            }
        }
    }

    fn describe(&self) -> String {
        format!("v4l2 {}", self.path)
    }
}

/// `POLLIN` from poll(2).
fn libc_pollin() -> i16 {
    0x001
}

/// One V4L2 device as `hindsight probe` shows it.
#[derive(Debug, serde::Serialize)]
pub struct DeviceInfo {
    /// Device node.
    pub path: String,
    /// Driver card name.
    pub card: String,
    /// Driver name.
    pub driver: String,
    /// `FOURCC WxH@fps,fps` entries.
    pub formats: Vec<String>,
}

/// List capture devices `/dev/video*` with formats, sizes and rates.
pub fn probe_devices() -> Vec<DeviceInfo> {
    let mut paths: Vec<_> = std::fs::read_dir("/dev")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("video")))
                .collect()
        })
        .unwrap_or_default();
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        let path = p.display().to_string();
        let Ok(dev) = Device::with_path(&p) else {
            continue;
        };
        let Ok(caps) = dev.query_caps() else { continue };
        let mut formats = Vec::new();
        for d in dev.enum_formats().unwrap_or_default() {
            for size in dev.enum_framesizes(d.fourcc).unwrap_or_default() {
                for s in size.size.to_discrete() {
                    let rates: Vec<String> = dev
                        .enum_frameintervals(d.fourcc, s.width, s.height)
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|i| match i.interval {
                            v4l::frameinterval::FrameIntervalEnum::Discrete(f) if f.numerator > 0 => {
                                Some(format!("{}", f.denominator / f.numerator))
                            }
                            _ => None,
                        })
                        .collect();
                    formats.push(format!("{} {}x{}@{}", d.fourcc, s.width, s.height, rates.join(",")));
                }
            }
        }
        if !formats.is_empty() {
            out.push(DeviceInfo { path, card: caps.card.clone(), driver: caps.driver.clone(), formats });
        }
    }
    out
}
