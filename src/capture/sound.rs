//! A camera's own sound as a branch of its capture pipeline: a demuxer's or depayloader's audio
//! pad → (decode and encode once, or pass AAC through) → an appsink whose frames go to the
//! camera's [`SoundTap`], dated on the video's capture clock by the source's [`SharedOffset`]
//! (with the offset its picture of the same media time got).
//! Used by RTSP cameras ([`super::network`]) and phone cameras ([`super::phone`]).
//!
//! A leaky queue in front keeps a slow encoder from ever holding the video back; the appsink
//! drops rather than blocks. The queue holds 2 s: a phone's sound arrives in bursts (a quarter
//! second per chunk, more after a stall), and on a loaded box a 0.5 s queue dropped some.

use super::gst::SharedOffset;
use super::{SoundEvent, SoundTap};
use crate::frame::{AudioFormat, AudioFrame};
use gst::prelude::*;
use gstreamer as gst;
use gstreamer_app as gst_app;
use std::time::Duration;

/// What turns a pad's stream into raw AAC frames, and who made them.
pub struct Chain {
    /// Elements from the pad to raw AAC (`rtpmp4gdepay ! aacparse ...`, `... ! voaacenc ! ...`).
    pub elements: String,
    /// Samples of priming the encoder puts in front (0 when passed through).
    pub primed: u64,
    /// `passthrough` or the encoder's name (the API's `audio.encoder`).
    pub made_by: String,
}

impl Chain {
    /// Decoded sound encoded by the tap's encoder, after `decode` (`""`: the pad is raw audio).
    pub fn encoded(tap: &SoundTap, decode: &str) -> Chain {
        Chain { elements: format!("{decode}{}", tap.encode), primed: tap.primed, made_by: tap.encoder.clone() }
    }

    /// AAC depayloaded or parsed by `parse`, kept bit for bit.
    pub fn passthrough(parse: &str) -> Chain {
        Chain { elements: format!("{parse} ! {}", crate::gst::AAC_FRAMES), primed: 0, made_by: "passthrough".into() }
    }
}

/// Add `queue ! chain ! appsink` to `bin`, link `pad` to it and deliver its frames to `tap`.
/// `what` names the sound in errors ("the camera's PCMA sound", "the phone's sound").
pub fn link(
    bin: &gst::Pipeline,
    pad: &gst::Pad,
    chain: Chain,
    tap: &SoundTap,
    offset: SharedOffset,
    what: &str,
) -> Result<(), String> {
    let description = format!(
        "queue max-size-buffers=0 max-size-bytes=0 max-size-time=2000000000 leaky=downstream ! {} \
         ! appsink name=hindsight_sound sync=false max-buffers=64 drop=true",
        chain.elements
    );
    let branch = gst::parse::bin_from_description(&description, true)
        .map_err(|e| format!("cannot take {what}: {e} ({})", chain.elements))?;
    let sink = branch
        .by_name("hindsight_sound")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or("the sound branch has no appsink")?;
    let deliver = tap.deliver.clone();
    let (primed, made_by, what_owned) = (chain.primed, chain.made_by, what.to_string());
    let mut known: Option<(gst::Caps, AudioFormat)> = None;
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let (Some(buffer), Some(caps)) = (sample.buffer(), sample.caps()) else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                if known.as_ref().is_none_or(|(c, _)| c.as_ref() != caps) {
                    match crate::gst::aac_format(caps).filter(|f| f.rate > 0 && f.channels > 0) {
                        Some(f) => {
                            deliver(SoundEvent::Format(f.clone(), made_by.clone()));
                            known = Some((caps.to_owned(), f));
                        }
                        None => {
                            deliver(SoundEvent::Failed(format!("{what_owned} came without its AAC config: {caps}")));
                            return Err(gst::FlowError::NotNegotiated);
                        }
                    }
                }
                let Some((_, format)) = &known else { return Ok(gst::FlowSuccess::Ok) };
                // Dated like the video (running time + its offset), less the encoder's priming
                // when hindsight encoded it; nothing before the first video frame.
                let Some(rt) = crate::gst::running_time(sample.segment(), buffer.pts()).map(Duration::from) else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let Some(off) = offset.at(rt) else { return Ok(gst::FlowSuccess::Ok) };
                let pts = (off + rt).saturating_sub(crate::time::of_samples(primed, format.rate));
                let duration = buffer.duration().map_or(crate::time::of_samples(1024, format.rate), |d| d.into());
                let Some(data) = crate::gst::sample_bytes(&sample) else { return Ok(gst::FlowSuccess::Ok) };
                deliver(SoundEvent::Frame(AudioFrame { data, pts, duration, format: format.clone() }));
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    bin.add(&branch).map_err(|e| format!("sound branch: {e}"))?;
    branch.sync_state_with_parent().map_err(|e| format!("sound branch: {e}"))?;
    let sink_pad = branch.static_pad("sink").ok_or("the sound branch has no sink pad")?;
    pad.link(&sink_pad).map_err(|e| format!("cannot link {what}: {e:?}"))?;
    Ok(())
}

/// Drain `pad` (a stream hindsight does not take) into a `fakesink`, so its demuxer never sees
/// not-linked.
pub fn discard(bin: &gst::Pipeline, pad: &gst::Pad) {
    let Ok(sink) = gst::ElementFactory::make("fakesink").property("sync", false).property("async", false).build()
    else {
        return;
    };
    if bin.add(&sink).is_ok() {
        let _ = sink.sync_state_with_parent();
        if let Some(sinkpad) = sink.static_pad("sink") {
            let _ = pad.link(&sinkpad);
        }
    }
}
