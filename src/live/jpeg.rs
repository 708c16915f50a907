//! JPEG for the MJPEG preview: a GStreamer encode pipeline for raw frames (appsrc →
//! videoscale → videoconvert → preview caps → `jpegenc` or the board's hardware JPEG encoder →
//! appsink) and the "NO SIGNAL" still, rendered once with `videotestsrc` + `textoverlay`.
//!
//! A passed-through H.264 camera is decoded in the same pipeline, in front of the scaler
//! (`h264parse` → `v4l2h264dec` or `avdec_h264` → `videorate`), only while someone watches.
//!
//! Owns no thread: the caller (the `preview-{id}` thread) pushes frames; the appsink callback
//! hands each JPEG to the caller's closure on GStreamer's streaming thread. At most two frames
//! wait inside the pipeline; past that a frame is skipped, never queued.
//!
//! Must never decode or re-encode a frame that already is a JPEG (that is passed through by the
//! caller) and never block the capture thread.

use crate::frame::{Frame, PixelFormat, VideoFormat};
use crate::gst::{element_exists, GstError, Pipeline};
use bytes::Bytes;
use gstreamer as gst;
use gstreamer_app as gst_app;
use std::time::{Duration, Instant};

/// One JPEG as viewers receive it.
#[derive(Clone)]
pub struct Jpeg {
    /// The JPEG image (SOI … EOI).
    pub data: Bytes,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// A camera frame (`true`) or the "NO SIGNAL" still (`false`).
    pub live: bool,
    /// When it was published.
    pub at: Instant,
}

impl std::fmt::Debug for Jpeg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jpeg")
            .field("bytes", &self.data.len())
            .field("size", &(self.width, self.height))
            .field("live", &self.live)
            .finish()
    }
}

/// The preview size for a `src_w`×`src_h` source: `max_width` wide (never upscaled), the
/// source's aspect ratio, both even.
pub fn preview_size(src_w: u32, src_h: u32, max_width: u32) -> (u32, u32) {
    let src_w = src_w.max(2);
    let w = (max_width.min(src_w) & !1).max(2);
    let h = ((src_h as u64 * w as u64 + src_w as u64 / 2) / src_w as u64) as u32;
    (w, (h & !1).max(2))
}

/// The encode pipeline for raw frames of `input_caps` into `width`×`height` JPEGs by `element`.
pub fn encoder_description(input_caps: &str, width: u32, height: u32, element: &str) -> String {
    format!(
        "appsrc name=src is-live=true format=time do-timestamp=false block=false caps=\"{input_caps}\" \
         ! videoscale ! videoconvert ! video/x-raw,width={width},height={height},pixel-aspect-ratio=1/1 \
         ! {element} ! image/jpeg ! appsink name=sink sync=false max-buffers=2 drop=true"
    )
}

/// The H.264 decoder for previews: the board's (`v4l2h264dec`, a Raspberry Pi 4) where
/// GStreamer registers one, else libav's software `avdec_h264`.
pub fn h264_decoder() -> &'static str {
    if element_exists("v4l2h264dec") {
        "v4l2h264dec"
    } else {
        "avdec_h264"
    }
}

/// The decode + encode pipeline for H.264 access units of `input_caps` (a passed-through
/// camera): every access unit is decoded (each needs the ones before it), `videorate` keeps at
/// most `fps` pictures a second, and only those are scaled and JPEG-encoded.
pub fn decoder_description(input_caps: &str, width: u32, height: u32, element: &str, fps: u32) -> String {
    let decoder = h264_decoder();
    format!(
        "appsrc name=src is-live=true format=time do-timestamp=false block=false caps=\"{input_caps}\" \
         ! h264parse ! {decoder} ! videorate drop-only=true max-rate={fps} \
         ! videoscale ! videoconvert ! video/x-raw,width={width},height={height},pixel-aspect-ratio=1/1 \
         ! {element} ! image/jpeg ! appsink name=sink sync=false max-buffers=2 drop=true"
    )
}

/// H.264 waiting in front of the decoder beyond which the preview skips to the next keyframe
/// (the decoder cannot keep up; skipping single access units would corrupt the pictures).
const MAX_H264_BACKLOG: u64 = 4 << 20;

/// A playing raw → JPEG pipeline for one input format (H.264: decode → JPEG).
pub struct JpegEncoder {
    pipeline: Pipeline,
    src: gst_app::AppSrc,
    /// The input format it was built for.
    pub format: VideoFormat,
    /// Output size.
    pub size: (u32, u32),
    base: Option<Duration>,
    /// H.264 only: an access unit was skipped, so everything up to the next keyframe is too.
    need_keyframe: bool,
}

impl JpegEncoder {
    /// Build and start the pipeline; `on_jpeg` receives every encoded image (on GStreamer's
    /// streaming thread). `fps` bounds the JPEGs per second of an H.264 input (raw frames are
    /// rate-limited by the caller, which picks the frames it pushes).
    pub fn new(
        format: VideoFormat,
        max_width: u32,
        element: &str,
        fps: u32,
        on_jpeg: impl Fn(Bytes, (u32, u32)) + Send + Sync + 'static,
    ) -> Result<Self, GstError> {
        let size = preview_size(format.width, format.height, max_width);
        let desc = if format.pixel == PixelFormat::H264 {
            decoder_description(&format.caps(), size.0, size.1, element, fps.max(1))
        } else {
            encoder_description(&format.caps(), size.0, size.1, element)
        };
        let pipeline = Pipeline::parse(&desc)?;
        let src: gst_app::AppSrc = pipeline.by_name("src")?;
        let sink: gst_app::AppSink = pipeline.by_name("sink")?;
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    if let Some(buffer) = sample.buffer_owned() {
                        if let Ok(m) = buffer.into_mapped_buffer_readable() {
                            on_jpeg(Bytes::from_owner(m), size);
                        }
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        pipeline.play()?;
        Ok(JpegEncoder { pipeline, src, format, size, base: None, need_keyframe: true })
    }

    /// Hand one frame to the pipeline (its data is shared, not copied). `Ok(false)`: skipped
    /// because two frames are still waiting inside the pipeline.
    pub fn push(&mut self, frame: &Frame) -> Result<bool, GstError> {
        if self.format.pixel == PixelFormat::H264 {
            // Decoding starts at a keyframe and, once behind, skips to the next one.
            let key = crate::mp4::h264::is_idr(&frame.data);
            if !key && (self.need_keyframe || self.src.current_level_bytes() >= MAX_H264_BACKLOG) {
                self.need_keyframe = true;
                return Ok(false);
            }
            self.need_keyframe = false;
        } else if self.src.current_level_bytes() >= 2 * frame.data.len() as u64 {
            return Ok(false);
        }
        let base = *self.base.get_or_insert(frame.captured);
        let mut buffer = gst::Buffer::from_slice(frame.data.clone());
        if let Some(b) = buffer.get_mut() {
            b.set_pts(gst::ClockTime::from_nseconds(frame.captured.saturating_sub(base).as_nanos() as u64));
        }
        match self.src.push_buffer(buffer) {
            Ok(_) => Ok(true),
            Err(flow) => {
                Err(self.pipeline.error_within(Duration::from_millis(100)).unwrap_or_else(|| GstError::Element {
                    element: "appsrc".into(),
                    message: format!("preview encoder refused frame {}: {flow:?}", frame.seq),
                    debug: String::new(),
                }))
            }
        }
    }

    /// An error posted by the pipeline since the last call, if any.
    pub fn poll_error(&self) -> Option<GstError> {
        self.pipeline.poll_error()
    }
}

/// Render the "NO SIGNAL" still at `width`×`height` (black, white text where `textoverlay`
/// exists, plain black otherwise). Blocks for a few milliseconds: call it off the runtime.
pub fn render_no_signal(width: u32, height: u32) -> Result<Bytes, GstError> {
    let overlay = if element_exists("textoverlay") {
        format!(
            "! textoverlay text=\"NO SIGNAL\" valignment=center halignment=center shaded-background=false \
             font-desc=\"Sans Bold {}\" ",
            (height / 14).max(6)
        )
    } else {
        String::new()
    };
    let desc = format!(
        "videotestsrc pattern=black num-buffers=1 ! video/x-raw,format=I420,width={width},height={height} \
         {overlay}! jpegenc ! appsink name=sink sync=false"
    );
    let pipeline = Pipeline::parse(&desc)?;
    let sink: gst_app::AppSink = pipeline.by_name("sink")?;
    pipeline.play()?;
    let sample = sink.try_pull_sample(gst::ClockTime::from_seconds(5)).ok_or_else(|| {
        pipeline.poll_error().unwrap_or(GstError::State { pipeline: desc.clone(), state: "a rendered frame".into() })
    })?;
    let buffer = sample.buffer_owned().ok_or(GstError::Eos)?;
    let map = buffer.into_mapped_buffer_readable().map_err(|_| GstError::Eos)?;
    Ok(Bytes::from_owner(map))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preview_size_keeps_aspect_and_never_upscales() {
        assert_eq!(preview_size(1280, 720, 640), (640, 360));
        assert_eq!(preview_size(1920, 1080, 640), (640, 360));
        assert_eq!(preview_size(640, 480, 640), (640, 480));
        assert_eq!(preview_size(320, 240, 640), (320, 240), "never upscaled");
        assert_eq!(preview_size(1280, 720, 641), (640, 360), "even");
        assert_eq!(preview_size(1000, 333, 500), (500, 166));
        assert_eq!(preview_size(0, 0, 640), (2, 2), "degenerate input stays sane");
    }

    #[test]
    fn description_names_the_encoder_and_size() {
        let d = encoder_description("video/x-raw,format=I420,width=1280,height=720", 640, 360, "v4l2jpegenc");
        assert!(d.contains("width=640,height=360") && d.contains("! v4l2jpegenc !"), "{d}");
    }

    #[test]
    fn no_signal_is_a_jpeg() {
        let j = render_no_signal(320, 180).unwrap();
        assert_eq!(&j[..2], &[0xFF, 0xD8]);
        assert_eq!(&j[j.len() - 2..], &[0xFF, 0xD9]);
    }
}
