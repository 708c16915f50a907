//! The `gstreamer` source: any source pipeline description ending in raw, JPEG or H.264 video
//! (`libcamerasrc ! video/x-raw,...`, `rtspsrc ... ! rtph264depay ! h264parse`, ...), pulled
//! through an appsink. H.264 arrives as byte-stream access units (the appsink's caps make
//! GStreamer convert avc to Annex-B) and is passed through by the encode stage.
//!
//! Frames wrap the GStreamer buffer's memory (`Bytes::from_owner` on a mapped buffer): no copy.
//! Raw video with padded rows is repacked tightly (one copy) because downstream stages assume
//! packed frames.

use super::{CaptureError, Source};
use crate::frame::{Frame, PixelFormat, VideoFormat};
use crate::gst::{GstError, Pipeline};
use crate::time::mono_now;
use bytes::Bytes;
use gst_video::prelude::*;
use gstreamer as gst;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use std::time::Duration;

/// Caps hindsight accepts from a source pipeline.
const ACCEPT: &str =
    "video/x-raw,format={I420,NV12,YUY2};image/jpeg;video/x-h264,stream-format=byte-stream,alignment=au";

/// Dropped together with the source, before its pipeline (e.g. detaches a browser feed).
pub type Guard = Box<dyn Send>;

/// A running source pipeline.
pub struct GstSource {
    /// Dropped first: whatever the caller attached to the pipeline lets go of it.
    _guard: Option<Guard>,
    pipeline: Pipeline,
    sink: gst_app::AppSink,
    format: VideoFormat,
    first: Option<Frame>,
    /// Monotonic time minus pipeline running time, fixed at the first frame.
    offset: Option<Duration>,
    /// The offset as others read it (a camera's sound branch dates its frames by it).
    shared_offset: Option<SharedOffset>,
    /// Running time of the previous frame, to spot frames the appsink dropped.
    last_rt: Option<Duration>,
    seq: u64,
    description: String,
    /// `description` is already what to show (a prepared camera's redacted name).
    shown: bool,
    /// Live feeds whose media clock is not ours (a phone): never date a frame in the future,
    /// and re-anchor when the media time falls far behind (pause/resume, drift).
    anchor_to_now: bool,
    /// Capture time of the previous frame (frames stay strictly increasing).
    last_captured: Option<Duration>,
}

/// A source's media-to-monotonic offset (running time + offset = capture time) shared with
/// another branch of its pipeline (a camera's sound); unknown until its first video frame.
///
/// A fed source (a phone) moves its offset as the sender's chunks arrive early or late, so the
/// offset is kept with the running time from which it applies (its last [`CHANGES`] values): a
/// sound frame is dated with the offset its picture of the same media time got, not with the
/// one in force when the encoder let it out (an AAC encoder holds ~50 ms, a 250 ms chunk more).
#[derive(Clone, Default)]
pub struct SharedOffset(std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<(Duration, Duration)>>>);

/// Offset changes a [`SharedOffset`] remembers (a phone's settles after a few).
const CHANGES: usize = 64;

impl SharedOffset {
    /// Not known yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<(Duration, Duration)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `off` applies from running time `rt` on. No allocation once the history is full.
    fn set(&self, rt: Duration, off: Duration) {
        let mut h = self.lock();
        if h.back().is_some_and(|&(_, last)| last == off) {
            return;
        }
        if h.len() == CHANGES {
            h.pop_front();
        }
        h.push_back((rt, off));
    }

    /// The offset the video used at running time `rt` (the oldest known before that), once the
    /// first video frame set one.
    pub fn at(&self, rt: Duration) -> Option<Duration> {
        let h = self.lock();
        h.iter().rev().find(|&&(from, _)| from <= rt).or(h.front()).map(|&(_, off)| off)
    }
}

/// How far a browser feed's media time may lag behind now before it is re-anchored (longer than
/// a MediaRecorder chunk, whose first frame lags by the chunk's length when it arrives).
const MAX_LAG: Duration = Duration::from_secs(10);

impl GstSource {
    /// Build and start `description ! appsink`, and wait for the first frame to learn the format.
    pub fn open(description: &str) -> Result<Self, CaptureError> {
        Self::build(description, false, |_| Ok(None)).map_err(|e| e.naming(&shown_pipeline(description)))
    }

    /// A camera pipeline that the caller finishes before it plays: `prepare` runs on the parsed
    /// pipeline (to set properties that must not go through the description's quoting, such as a
    /// URL with credentials, or to link dynamic pads); the guard it returns lives as long as the
    /// source. Otherwise as [`open`](Self::open). `shown` is what logs and errors call it (no
    /// secrets).
    pub fn open_prepared(
        description: &str,
        shown: &str,
        prepare: impl FnOnce(&Pipeline) -> Result<Guard, CaptureError>,
    ) -> Result<Self, CaptureError> {
        let mut src = Self::build(description, false, |p| prepare(p).map(Some)).map_err(|e| e.naming(shown))?;
        src.description = shown.into();
        src.shown = true;
        Ok(src)
    }

    /// A pipeline fed by the caller (a browser's chunks): `attach` runs on the parsed pipeline
    /// before it plays and before the first frame is awaited (to connect its `appsrc` to the
    /// feed; zero-copy as [`open`](Self::open)); the guard it returns is dropped with the source,
    /// before the pipeline. Differences from a camera pipeline: the appsink holds the decoder
    /// back instead of dropping (the feed waits compressed in front of it), and frames are dated
    /// on the sender's media clock, never in the future (see `anchor_to_now`).
    pub fn open_fed(
        description: &str,
        attach: impl FnOnce(&Pipeline) -> Result<Guard, CaptureError>,
    ) -> Result<Self, CaptureError> {
        Self::build(description, true, |p| attach(p).map(Some))
    }

    fn build(
        description: &str,
        fed: bool,
        attach: impl FnOnce(&Pipeline) -> Result<Option<Guard>, CaptureError>,
    ) -> Result<Self, CaptureError> {
        let full = format!("{description} ! appsink name=hindsight_sink caps=\"{ACCEPT}\" max-buffers=2 sync=false");
        let pipeline = Pipeline::parse(&full)?;
        let sink: gst_app::AppSink = pipeline.by_name("hindsight_sink")?;
        let guard = attach(&pipeline)?;
        let anchor_to_now = fed;
        // A camera drops what we cannot take (it will not wait); a fed pipeline waits.
        sink.set_drop(!anchor_to_now);
        pipeline.play()?;
        let mut src = GstSource {
            _guard: guard,
            anchor_to_now,
            last_captured: None,
            pipeline,
            sink,
            format: VideoFormat { pixel: PixelFormat::I420, width: 0, height: 0, fps: 0 },
            first: None,
            offset: None,
            shared_offset: None,
            last_rt: None,
            seq: 0,
            description: description.into(),
            shown: false,
        };
        if anchor_to_now {
            // Fed by a phone that may not have sent anything yet: the format is learnt from the
            // first frame by the capture loop, which keeps checking for stop requests meanwhile.
            return Ok(src);
        }
        // Learn the negotiated format from the first sample (10 s covers slow camera start-up).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while src.first.is_none() {
            if std::time::Instant::now() > deadline {
                return Err(CaptureError::Stalled { device: description.into(), seconds: 10 });
            }
            if let Some(f) = src.pull(Duration::from_millis(250))? {
                src.format = f.format;
                src.first = Some(f);
            }
        }
        Ok(src)
    }

    /// Keep `shared` at this source's media-to-monotonic offset (from now on, and now if known).
    pub fn share_offset(&mut self, shared: SharedOffset) {
        if let Some(off) = self.offset {
            shared.set(self.last_rt.unwrap_or_default(), off);
        }
        self.shared_offset = Some(shared);
    }

    fn pull(&mut self, wait: Duration) -> Result<Option<Frame>, CaptureError> {
        if let Some(e) = self.pipeline.poll_error() {
            return Err(e.into());
        }
        let Some(sample) = self.sink.try_pull_sample(gst::ClockTime::from_nseconds(wait.as_nanos() as u64)) else {
            if self.sink.is_eos() {
                return Err(GstError::Eos.into());
            }
            return Ok(None);
        };
        let caps = sample.caps().ok_or_else(|| gst_err("sample without caps"))?;
        let format = caps_to_format(caps)?;
        let buffer = sample.buffer_owned().ok_or_else(|| gst_err("sample without buffer"))?;
        let rt = crate::gst::running_time(sample.segment(), buffer.pts());
        let now = mono_now();
        let captured = match rt {
            Some(rt) => {
                let rt = Duration::from_nanos(rt.nseconds());
                // A gap of more than 1.5 frame periods means frames were lost before us (the
                // appsink drops when we fall behind; live sources drop when late): advance the
                // sequence number so the capture loop counts them.
                if let (Some(last), true) = (self.last_rt, format.fps > 0) {
                    let period = Duration::from_secs(1) / format.fps;
                    let gap = rt.saturating_sub(last);
                    if gap > period * 3 / 2 {
                        self.seq += (gap.as_secs_f64() / period.as_secs_f64()).round() as u64 - 1;
                    }
                }
                self.last_rt = Some(rt);
                let off = *self.offset.get_or_insert_with(|| now.saturating_sub(rt));
                let (captured, off) = if self.anchor_to_now {
                    let (captured, off) = anchored(off, rt, now, self.last_captured);
                    self.offset = Some(off);
                    self.last_captured = Some(captured);
                    (captured, off)
                } else {
                    (off + rt, off)
                };
                if let Some(shared) = &self.shared_offset {
                    shared.set(rt, off);
                }
                captured
            }
            None => now,
        };
        let data = match format.pixel.frame_size(format.width, format.height) {
            Some(tight) if buffer.size() != tight => repack(&buffer, caps, tight)?,
            _ => {
                let mapped = buffer.into_mapped_buffer_readable().map_err(|_| gst_err("buffer not readable"))?;
                Bytes::from_owner(mapped)
            }
        };
        let seq = self.seq;
        self.seq += 1;
        Ok(Some(Frame { data, format, captured, seq }))
    }
}

/// The capture time of a fed source's frame at media running time `rt`, seen at monotonic
/// `now`, with media-to-monotonic offset `off` and the previous frame's capture time `last`;
/// returns it and the offset to keep. Never after `now` (a burst, or a sender's fast clock, moves
/// the offset back so this frame is "now"); more than [`MAX_LAG`] behind (the sender paused)
/// re-anchors at now; strictly after `last`, so the encoder's timestamps always increase.
fn anchored(off: Duration, rt: Duration, now: Duration, last: Option<Duration>) -> (Duration, Duration) {
    let mut off = off;
    let t = off + rt;
    if t > now || now - t > MAX_LAG {
        off = now.saturating_sub(rt);
    }
    let mut captured = (off + rt).min(now);
    if let Some(last) = last {
        if captured <= last {
            captured = last + Duration::from_micros(1);
        }
    }
    (captured, off)
}

fn gst_err(msg: &str) -> CaptureError {
    CaptureError::Gst(GstError::Element { element: "appsink".into(), message: msg.into(), debug: String::new() })
}

/// Negotiated caps → [`VideoFormat`].
fn caps_to_format(caps: &gst::CapsRef) -> Result<VideoFormat, CaptureError> {
    let s = caps.structure(0).ok_or_else(|| gst_err("empty caps"))?;
    let width = s.get::<i32>("width").unwrap_or(0).max(0) as u32;
    let height = s.get::<i32>("height").unwrap_or(0).max(0) as u32;
    let fps = s
        .get::<gst::Fraction>("framerate")
        .ok()
        .filter(|f| f.denom() > 0)
        .map(|f| (f.numer() as f64 / f.denom() as f64).round() as u32)
        .unwrap_or(0);
    let pixel = if s.name() == "image/jpeg" {
        PixelFormat::Mjpeg
    } else if s.name() == "video/x-h264" {
        PixelFormat::H264
    } else {
        let f = s.get::<&str>("format").unwrap_or("");
        PixelFormat::from_gst_name(f).ok_or_else(|| gst_err(&format!("unsupported raw format {f}")))?
    };
    Ok(VideoFormat { pixel, width, height, fps })
}

/// Copy a padded raw frame into a tightly packed one.
fn repack(buffer: &gst::Buffer, caps: &gst::CapsRef, tight: usize) -> Result<Bytes, CaptureError> {
    let info = gst_video::VideoInfo::from_caps(caps).map_err(|e| gst_err(&e.to_string()))?;
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer.as_ref(), &info)
        .map_err(|_| gst_err("cannot map video frame"))?;
    let mut out = Vec::with_capacity(tight);
    for plane in 0..frame.n_planes() {
        let stride = frame.plane_stride()[plane as usize] as usize;
        let data = frame.plane_data(plane).map_err(|e| gst_err(&e.to_string()))?;
        let comp_h = frame.comp_height(plane) as usize;
        let row = (frame.comp_width(plane) * frame.comp_pstride(plane) as u32) as usize;
        for r in 0..comp_h {
            out.extend_from_slice(&data[r * stride..r * stride + row]);
        }
    }
    Ok(Bytes::from(out))
}

impl Source for GstSource {
    fn format(&self) -> VideoFormat {
        self.format
    }

    fn next_frame(&mut self, wait: Duration) -> Result<Option<Frame>, CaptureError> {
        if let Some(f) = self.first.take() {
            return Ok(Some(f));
        }
        if self.anchor_to_now {
            // A phone's feed: its errors speak of the phone's stream, not of a pipeline text.
            return self.pull(wait);
        }
        self.pull(wait).map_err(|e| e.naming(&self.describe()))
    }

    fn describe(&self) -> String {
        if self.shown {
            return self.description.clone();
        }
        shown_pipeline(&self.description)
    }
}

/// How logs and errors show a `gstreamer` source: its pipeline, credentials redacted.
fn shown_pipeline(description: &str) -> String {
    format!("gstreamer `{}`", crate::redact::redact(description))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn sound_is_dated_with_the_offset_its_picture_got() {
        let s = |ms| Duration::from_millis(ms);
        let o = SharedOffset::new();
        assert_eq!(o.at(s(5)), None);
        o.set(s(100), s(1000));
        o.set(s(133), s(1000));
        o.set(s(166), s(990));
        assert_eq!(o.at(s(50)), Some(s(1000)), "before all: the oldest");
        assert_eq!((o.at(s(150)), o.at(s(166)), o.at(s(900))), (Some(s(1000)), Some(s(990)), Some(s(990))));
        for i in 0..2 * CHANGES as u64 {
            o.set(s(200 + i), s(900 - i));
        }
        assert_eq!(o.lock().len(), CHANGES);
        assert_eq!(o.at(s(0)), Some(s(900 - CHANGES as u64)));
    }

    #[test]
    fn fed_frames_are_never_dated_in_the_future() {
        // First chunk: 10 frames (100 ms apart) decoded at once at now = 10 s.
        let now = Duration::from_secs(10);
        let mut off = now; // anchored on the first frame (rt 0)
        let mut last = None;
        let mut dates = Vec::new();
        for i in 0..10u32 {
            let (c, o) = anchored(off, MS * 100 * i, now + MS * i, last);
            assert!(c <= now + MS * i, "frame {i} dated {c:?} after now");
            off = o;
            last = Some(c);
            dates.push(c);
        }
        assert!(dates.windows(2).all(|w| w[1] > w[0]), "strictly increasing: {dates:?}");
        // The next chunk (rt 1.0..2.0 s) arrives a second later, decoded at once: its frames
        // keep their 100 ms spacing and none is after now.
        let now2 = now + Duration::from_millis(1020);
        let mut prev = last.unwrap();
        for i in 10..20u32 {
            let (c, o) = anchored(off, MS * 100 * i, now2, Some(prev));
            assert!(c <= now2);
            if i > 10 {
                assert_eq!(
                    c - prev,
                    MS * 100,
                    "spacing kept in a later burst: frame {i} {c:?} prev {prev:?} off {off:?}"
                );
            }
            off = o;
            prev = c;
        }
        // A 30 s pause: the next frame is re-anchored at now, not dated 30 s back.
        let now3 = now2 + Duration::from_secs(31);
        let (c, _) = anchored(off, MS * 2000, now3, Some(prev));
        assert_eq!(c, now3);
        // A media time larger than the monotonic clock cannot go past now either.
        let (c, _) = anchored(Duration::ZERO, Duration::from_secs(100), Duration::from_secs(5), None);
        assert_eq!(c, Duration::from_secs(5));
    }
}
