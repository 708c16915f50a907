//! Shared GStreamer plumbing: a pipeline wrapper that goes to `Null` on drop, and bus `Error`
//! messages turned into typed errors carrying the element path and debug string.
//!
//! Used by the GStreamer capture source and the encoder. Owns no thread.

use gst::prelude::*;
use gstreamer as gst;
use std::time::Duration;

/// A GStreamer failure, with enough context to find the offending element.
#[derive(Debug, thiserror::Error, Clone)]
pub enum GstError {
    /// GStreamer itself could not be initialised.
    #[error("GStreamer init failed: {0}")]
    Init(String),
    /// `gst_parse_launch` refused the description (e.g. a missing element).
    #[error("cannot build pipeline `{pipeline}`: {message}")]
    Parse {
        /// The pipeline description.
        pipeline: String,
        /// GStreamer's message (names the missing element).
        message: String,
    },
    /// An element posted an error on the bus.
    #[error("{element}: {message} ({debug})")]
    Element {
        /// Element path, e.g. `/GstPipeline:pipeline0/GstX264Enc:enc`.
        element: String,
        /// The error message.
        message: String,
        /// GStreamer's debug string.
        debug: String,
    },
    /// A state change failed without a bus error explaining it.
    #[error("pipeline `{pipeline}` failed to reach {state}")]
    State {
        /// The pipeline description.
        pipeline: String,
        /// The state it could not reach.
        state: String,
    },
    /// The pipeline has no element with this name (a bug in the description).
    #[error("pipeline has no element named {0}")]
    MissingElement(String),
    /// The stream ended (end of stream).
    #[error("stream ended (EOS)")]
    Eos,
}

/// Initialise GStreamer once; safe to call many times.
pub fn init() -> Result<(), GstError> {
    gst::init().map_err(|e| GstError::Init(e.to_string()))
}

/// Whether an element factory named `name` exists on this machine.
pub fn element_exists(name: &str) -> bool {
    init().is_ok() && gst::ElementFactory::find(name).is_some()
}

/// A running pipeline; set to `Null` when dropped so no thread or device outlives it.
pub struct Pipeline {
    pipeline: gst::Pipeline,
    bus: gst::Bus,
    description: String,
}

impl Pipeline {
    /// Parse `description` into a pipeline (not started yet).
    pub fn parse(description: &str) -> Result<Self, GstError> {
        init()?;
        let element = gst::parse::launch(description).map_err(|e| GstError::Parse {
            pipeline: crate::redact::redact(description).into_owned(),
            message: e.to_string(),
        })?;
        let pipeline = match element.downcast::<gst::Pipeline>() {
            Ok(p) => p,
            Err(e) => {
                // A single element: wrap it.
                let p = gst::Pipeline::new();
                p.add(&e).map_err(|err| GstError::Parse {
                    pipeline: crate::redact::redact(description).into_owned(),
                    message: err.to_string(),
                })?;
                p
            }
        };
        let bus = pipeline.bus().ok_or_else(|| GstError::Parse {
            pipeline: crate::redact::redact(description).into_owned(),
            message: "pipeline has no bus".into(),
        })?;
        Ok(Pipeline { pipeline, bus, description: description.into() })
    }

    /// The element named `name`, downcast to `T`.
    pub fn by_name<T: IsA<gst::Element>>(&self, name: &str) -> Result<T, GstError> {
        self.pipeline
            .by_name(name)
            .and_then(|e| e.downcast::<T>().ok())
            .ok_or_else(|| GstError::MissingElement(name.into()))
    }

    /// Set `Playing`; on failure return the bus error that explains it, if any.
    pub fn play(&self) -> Result<(), GstError> {
        if self.pipeline.set_state(gst::State::Playing).is_err() {
            return Err(self.error_within(Duration::from_millis(500)).unwrap_or_else(|| GstError::State {
                pipeline: crate::redact::redact(&self.description).into_owned(),
                state: "PLAYING".into(),
            }));
        }
        Ok(())
    }

    /// The first error (or EOS) on the bus, without waiting.
    pub fn poll_error(&self) -> Option<GstError> {
        // Not `timed_pop_filtered(0, …)`: gstreamer-rs 0.25 returns None from it before looking
        // at the queue once any time has passed since the call (always), so errors were missed.
        let msg = self.bus.pop_filtered(&[gst::MessageType::Error, gst::MessageType::Eos])?;
        Some(message_to_error(&msg))
    }

    /// Wait up to `timeout` for an error or EOS on the bus.
    pub fn error_within(&self, timeout: Duration) -> Option<GstError> {
        let msg = self.bus.timed_pop_filtered(
            gst::ClockTime::from_nseconds(timeout.as_nanos() as u64),
            &[gst::MessageType::Error, gst::MessageType::Eos],
        )?;
        Some(message_to_error(&msg))
    }

    /// Send EOS from `src`'s side and wait up to `timeout` for it to reach the sinks; errors on
    /// the way are returned. Used on shutdown so encoders flush their last frames.
    pub fn drain(&self, timeout: Duration) -> Result<(), GstError> {
        self.pipeline.send_event(gst::event::Eos::new());
        self.wait_eos(timeout)
    }

    /// Wait for EOS on the bus (after an appsrc `end_of_stream`).
    pub fn wait_eos(&self, timeout: Duration) -> Result<(), GstError> {
        match self.error_within(timeout) {
            Some(GstError::Eos) | None => Ok(()),
            Some(e) => Err(e),
        }
    }

    /// The underlying pipeline.
    pub fn inner(&self) -> &gst::Pipeline {
        &self.pipeline
    }

    /// The description it was built from.
    pub fn description(&self) -> &str {
        &self.description
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// Turn a bus message into a [`GstError`].
pub fn message_to_error(msg: &gst::Message) -> GstError {
    match msg.view() {
        gst::MessageView::Error(err) => GstError::Element {
            element: msg.src().map(|s| s.path_string().to_string()).unwrap_or_else(|| "?".into()),
            message: err.error().to_string(),
            debug: err.debug().map(|d| d.to_string()).unwrap_or_default(),
        },
        gst::MessageView::Eos(_) => GstError::Eos,
        _ => GstError::Element { element: "?".into(), message: format!("{:?}", msg.type_()), debug: String::new() },
    }
}

/// Convert a buffer timestamp to running time using the sample's segment (GStreamer offsets
/// PTS by the segment base, e.g. 1000 h behind some encoders).
pub fn running_time(segment: Option<&gst::Segment>, ts: Option<gst::ClockTime>) -> Option<gst::ClockTime> {
    let ts = ts?;
    match segment.and_then(|s| s.downcast_ref::<gst::ClockTime>()) {
        Some(seg) => seg.to_running_time(ts),
        None => Some(ts),
    }
}

/// The format of raw AAC caps (`audio/mpeg,mpegversion=4,stream-format=raw` with
/// `codec_data`); rate and channels 0 when the caps do not say. None without `codec_data`.
pub fn aac_format(caps: &gst::CapsRef) -> Option<crate::frame::AudioFormat> {
    let s = caps.structure(0)?;
    let config = s.get::<gst::Buffer>("codec_data").ok()?;
    let config = bytes::Bytes::copy_from_slice(&config.map_readable().ok()?);
    let rate = s.get::<i32>("rate").ok().and_then(|r| u32::try_from(r).ok()).unwrap_or(0);
    let channels = s.get::<i32>("channels").ok().and_then(|c| u16::try_from(c).ok()).unwrap_or(0);
    Some(crate::frame::AudioFormat { config, rate, channels })
}

/// The bytes of `sample`'s buffer without a copy (they keep the buffer mapped).
pub fn sample_bytes(sample: &gst::Sample) -> Option<bytes::Bytes> {
    sample.buffer_owned()?.into_mapped_buffer_readable().ok().map(bytes::Bytes::from_owner)
}

/// Parsed raw AAC frames, one per buffer, with `codec_data` in the caps (what follows an AAC
/// encoder or depayloader).
pub const AAC_FRAMES: &str = "aacparse ! audio/mpeg,mpegversion=4,stream-format=raw";
