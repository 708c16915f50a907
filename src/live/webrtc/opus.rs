//! Sound for WebRTC viewers: the camera's AAC from the pre-roll decoded and encoded to Opus
//! (48 kHz, 20 ms packets) once per camera, only while it has WebRTC viewers — browsers play
//! Opus over WebRTC, not AAC.
//!
//! appsrc (raw AAC, the stream's AudioSpecificConfig as codec_data) → an AAC decoder
//! (`avdec_aac`, else `fdkaacdec` or `faad`) → audioconvert → audioresample → `opusenc` →
//! appsink. Packets keep the capture time of the sound they carry (the AAC frame's time plus
//! the position in the stream), so they line up with the video's RTP timestamps.
//!
//! Never blocks its caller: the appsrc drops beyond ~1 s of AAC queued, the packets leave the
//! streaming thread through the caller's closure.

use crate::frame::{AudioFormat, AudioFrame};
use crate::gst::{element_exists, GstError, Pipeline};
use bytes::Bytes;
use gstreamer as gst;
use gstreamer_app as gst_app;
use std::time::Duration;

/// Opus bit rate (speech and a doorbell; a browser's default for a microphone).
const BITRATE: u32 = 48_000;

/// The AAC decoder GStreamer has, if any.
pub fn aac_decoder() -> Option<&'static str> {
    ["avdec_aac", "fdkaacdec", "faad"].into_iter().find(|e| element_exists(e))
}

/// Whether sound can be sent to WebRTC viewers here.
pub fn available() -> bool {
    aac_decoder().is_some() && element_exists("opusenc")
}

/// A running AAC → Opus transcoder for one camera's sound.
pub struct OpusEncoder {
    _pipeline: Pipeline,
    src: gst_app::AppSrc,
    /// The AAC stream it decodes.
    pub format: AudioFormat,
    base: Duration,
}

impl OpusEncoder {
    /// Build and start it for AAC of `format`, the first frame's capture time being `base`;
    /// `on_packet(opus, capture_time)` gets each 20 ms packet on GStreamer's streaming thread.
    /// Blocks for the pipeline's start (a few ms): call it off the async runtime.
    pub fn new(
        format: AudioFormat,
        base: Duration,
        on_packet: impl Fn(Bytes, Duration) + Send + Sync + 'static,
    ) -> Result<Self, GstError> {
        let decoder = aac_decoder().ok_or_else(|| GstError::Element {
            element: "avdec_aac".into(),
            message: "no AAC decoder (gstreamer1.0-libav)".into(),
            debug: String::new(),
        })?;
        let channels = format.channels.clamp(1, 2);
        let desc = format!(
            "appsrc name=src is-live=true format=time do-timestamp=false block=false max-bytes=32000 \
             ! {decoder} ! audioconvert ! audioresample ! audio/x-raw,rate=48000,channels={channels} \
             ! opusenc frame-size=20 bitrate={BITRATE} ! appsink name=sink sync=false max-buffers=50 drop=true"
        );
        let pipeline = Pipeline::parse(&desc)?;
        let src: gst_app::AppSrc = pipeline.by_name("src")?;
        let caps = gst::Caps::builder("audio/mpeg")
            .field("mpegversion", 4i32)
            .field("stream-format", "raw")
            .field("rate", format.rate as i32)
            .field("channels", i32::from(format.channels))
            .field("codec_data", gst::Buffer::from_slice(format.config.clone()))
            .build();
        src.set_caps(Some(&caps));
        let sink: gst_app::AppSink = pipeline.by_name("sink")?;
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let Some(buffer) = sample.buffer_owned() else { return Ok(gst::FlowSuccess::Ok) };
                    let Some(pts) = buffer.pts() else { return Ok(gst::FlowSuccess::Ok) };
                    let at = base + Duration::from_nanos(pts.nseconds());
                    if let Ok(m) = buffer.into_mapped_buffer_readable() {
                        on_packet(Bytes::from_owner(m), at);
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        pipeline.play()?;
        Ok(OpusEncoder { _pipeline: pipeline, src, format, base })
    }

    /// Hand one AAC frame over (shared, not copied). Frames from before the first are dropped.
    pub fn push(&self, f: &AudioFrame) {
        let Some(pts) = f.pts.checked_sub(self.base) else { return };
        let mut buffer = gst::Buffer::from_slice(f.data.clone());
        if let Some(b) = buffer.get_mut() {
            b.set_pts(gst::ClockTime::from_nseconds(pts.as_nanos() as u64));
            b.set_duration(gst::ClockTime::from_nseconds(f.duration.as_nanos() as u64));
        }
        // Non-blocking: a full queue drops the frame (the viewer hears a gap, the camera is
        // never held up).
        let _ = self.src.push_buffer(buffer);
    }
}

impl Drop for OpusEncoder {
    fn drop(&mut self) {
        let _ = self.src.end_of_stream();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real AAC from the daemon's own encoder path (audiotestsrc → voaacenc/avenc_aac) through
    /// the transcoder: 20 ms Opus packets whose times follow the AAC's.
    #[test]
    fn aac_becomes_20_ms_opus_packets_at_the_capture_times() {
        crate::gst::init().unwrap();
        let Some(aac) = ["voaacenc", "avenc_aac"].into_iter().find(|e| element_exists(e)) else {
            eprintln!("no AAC encoder here (emulated sysroot): nothing to decode");
            return;
        };
        if !available() {
            eprintln!("no AAC decoder or opusenc here");
            return;
        }
        let p = Pipeline::parse(&format!(
            "audiotestsrc num-buffers=50 samplesperbuffer=1024 ! audio/x-raw,rate=48000,channels=1 ! {aac} \
             ! aacparse ! audio/mpeg,stream-format=raw ! appsink name=sink sync=false"
        ))
        .unwrap();
        let sink: gst_app::AppSink = p.by_name("sink").unwrap();
        p.play().unwrap();
        let mut frames = Vec::new();
        let base = Duration::from_secs(1000);
        while let Some(s) = sink.try_pull_sample(gst::ClockTime::from_seconds(5)) {
            let format = crate::gst::aac_format(s.caps().unwrap()).unwrap();
            let b = s.buffer().unwrap();
            let pts = Duration::from_nanos(b.pts().unwrap().nseconds());
            let data = Bytes::copy_from_slice(&b.map_readable().unwrap());
            frames.push(AudioFrame { data, pts: base + pts, duration: Duration::from_micros(21_333), format });
        }
        assert!(frames.len() >= 40, "{} AAC frames", frames.len());
        let (tx, rx) = std::sync::mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        let enc = OpusEncoder::new(frames[0].format.clone(), frames[0].pts, move |b, t| {
            let _ = tx.lock().map(|tx| tx.send((b.len(), t)));
        })
        .unwrap();
        for f in &frames {
            enc.push(f);
        }
        let span = frames.last().unwrap().pts - frames[0].pts;
        let want = (span.as_millis() / 20) as usize;
        let mut got = Vec::new();
        while got.len() + 3 < want {
            match rx.recv_timeout(Duration::from_secs(5)) {
                Ok(p) => got.push(p),
                Err(_) => break,
            }
        }
        assert!(got.len() + 3 >= want, "{} Opus packets for {span:?} of AAC", got.len());
        assert!(got[0].1 >= frames[0].pts && got[0].1 < frames[0].pts + Duration::from_millis(50), "{:?}", got[0]);
        // The first packet is shortened by opusenc's 6.5 ms look-ahead; the rest tile 20 ms.
        for w in got[1..].windows(2) {
            assert_eq!(w[1].1 - w[0].1, Duration::from_millis(20), "packets 20 ms apart");
        }
        assert!(got.iter().all(|(n, _)| *n > 2), "non-empty packets");
    }
}
