//! Poster frames: decode one keyframe (Annex-B, with SPS/PPS) and encode it as JPEG with
//! GStreamer. Blocking; called from the clip writer thread, never from the async runtime.

use crate::gst::{GstError, Pipeline};
use gstreamer as gst;
use gstreamer_app as gst_app;
use std::time::Duration;

/// JPEG of the keyframe `au`, scaled to at most 640 px wide.
pub fn jpeg_from_keyframe(au: &[u8]) -> Result<Vec<u8>, GstError> {
    let p = Pipeline::parse(
        "appsrc name=src format=time caps=video/x-h264,stream-format=byte-stream,alignment=au \
         ! h264parse ! avdec_h264 ! videoconvert ! videoscale \
         ! video/x-raw,width=[16,640],pixel-aspect-ratio=1/1 ! jpegenc quality=80 \
         ! appsink name=sink sync=false",
    )?;
    let src: gst_app::AppSrc = p.by_name("src")?;
    let sink: gst_app::AppSink = p.by_name("sink")?;
    p.play()?;
    let mut buf = gst::Buffer::from_slice(au.to_vec());
    if let Some(b) = buf.get_mut() {
        b.set_pts(gst::ClockTime::ZERO);
    }
    let _ = src.push_buffer(buf);
    let _ = src.end_of_stream();
    let sample = sink.try_pull_sample(gst::ClockTime::from_seconds(10));
    let Some(sample) = sample else {
        return Err(p.error_within(Duration::from_millis(100)).unwrap_or(GstError::Eos));
    };
    let buffer = sample.buffer().ok_or(GstError::Eos)?;
    let map = buffer.map_readable().map_err(|_| GstError::Eos)?;
    Ok(map.to_vec())
}

/// JPEG of the first frame of an MP4 file (used for clips recovered after a crash, whose
/// writer never got to make a poster).
pub fn jpeg_from_file(path: &std::path::Path) -> Result<Vec<u8>, GstError> {
    let location = path.display().to_string().replace('"', "");
    let p = Pipeline::parse(&format!(
        "filesrc location=\"{location}\" ! qtdemux ! h264parse ! avdec_h264 ! videoconvert ! videoscale \
         ! video/x-raw,width=[16,640],pixel-aspect-ratio=1/1 ! jpegenc quality=80 snapshot=true \
         ! appsink name=sink sync=false"
    ))?;
    let sink: gst_app::AppSink = p.by_name("sink")?;
    p.play()?;
    let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(10)) else {
        return Err(p.error_within(Duration::from_millis(100)).unwrap_or(GstError::Eos));
    };
    let buffer = sample.buffer().ok_or(GstError::Eos)?;
    let map = buffer.map_readable().map_err(|_| GstError::Eos)?;
    Ok(map.to_vec())
}
