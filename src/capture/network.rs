//! Cameras as people own them, opened as GStreamer source pipelines that end where hindsight
//! takes over ([`super::gst::GstSource`]):
//!
//! - `rtsp`: `rtspsrc` → `rtph264depay` → `h264parse` (SPS/PPS before every IDR) → H.264 access
//!   units, passed through by the encode stage without decoding. The camera's streams are
//!   linked by hand as `rtspsrc` announces them: the first H.264 video stream is taken; with
//!   `audio = { kind = "source" }` the first audio stream too ([`link_sound`]: AAC passed
//!   through, G.711 and Opus decoded and encoded to AAC once), dated on the video's capture
//!   clock (the jitter buffers put both streams on one running time, from the camera's RTCP);
//!   any other stream goes to a `fakesink`, and an H.265 camera is refused with an error that
//!   says so (hindsight stores and serves H.264 only).
//! - `http_mjpeg`: `souphttpsrc` → `multipartdemux` → `jpegparse`: JPEGs, passed through to the
//!   MJPEG preview and encoded once to H.264 for the pre-roll.
//! - `v4l2` with `format = "H264"` (UVC webcams that encode): `v4l2src` → `h264parse`.
//!
//! URLs and device paths are set as element properties, never written into a pipeline
//! description (no quoting to get wrong, and descriptions reach logs); what logs and errors show
//! is the redacted URL.

use super::gst::{GstSource, Guard, SharedOffset};
use super::sound::{self, Chain};
use super::{CaptureError, SoundEvent, SoundTap};
use crate::config::RtspTransport;
use crate::gst::{GstError, Pipeline};
use gst::prelude::*;
use gstreamer as gst;

/// What follows a camera's depayloader: access units with SPS/PPS before every IDR.
const H264_TAIL: &str = "h264parse config-interval=-1 ! video/x-h264,stream-format=byte-stream,alignment=au";

/// Whole access units out of the depayloader (it ends them on the RTP marker bit): left to
/// `h264parse`, a picture sent as several slices came out as two buffers, the second without a
/// timestamp.
const DEPAY_AU: &str = "video/x-h264,stream-format=avc,alignment=au";

/// The streams an RTSP camera announced besides the H.264 video taken (`audio PCMA`, ...).
pub type OtherStreams = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// Open an RTSP camera (`rtsp://` or `rtsps://`, credentials in the URL). `pinned`: the
/// fingerprint (`source.tls_fingerprint`) of the certificate an `rtsps://` camera may present
/// though no authority vouches for it.
pub fn open_rtsp(url: &str, transport: RtspTransport, pinned: Option<&str>) -> Result<GstSource, CaptureError> {
    open_rtsp_listing(url, transport, pinned, None).map(|(src, _)| src)
}

/// As [`open_rtsp`], also returning the other streams the camera announces (`hindsight probe
/// --url` lists its audio tracks); the camera's sound goes to `sound` when given.
pub fn open_rtsp_listing(
    url: &str,
    transport: RtspTransport,
    pinned: Option<&str>,
    sound: Option<SoundTap>,
) -> Result<(GstSource, OtherStreams), CaptureError> {
    let protocols = match transport {
        RtspTransport::Tcp => "tcp",
        RtspTransport::Udp => "udp",
        RtspTransport::Auto => "udp+tcp",
    };
    // latency: the jitter buffer (a LAN needs little; the default 2 s only delays the picture).
    // wait-for-keyframe: after a lost packet nothing until the next IDR (frames that refer to a
    // broken one would decode as smears in every clip); request-keyframe asks the camera for one
    // (RTCP PLI) instead of waiting out its GOP.
    let description = format!(
        "rtspsrc name=cam latency=200 protocols={protocols} rtph264depay name=depay wait-for-keyframe=true request-keyframe=true ! {DEPAY_AU} ! {H264_TAIL}"
    );
    let shown = format!("rtsp {}", crate::redact::redact(url));
    let url = url.to_string();
    let others = OtherStreams::default();
    let listed = others.clone();
    let pinned = pinned.and_then(crate::config::fingerprint::parse);
    let offset = SharedOffset::new();
    let sound = sound.map(|tap| (tap, offset.clone()));
    let mut src = GstSource::open_prepared(&description, &shown, move |p| {
        let cam: gst::Element = p.by_name("cam")?;
        let depay: gst::Element = p.by_name("depay")?;
        cam.set_property("location", url.as_str());
        accept_pinned_certificate(&cam, pinned);
        link_rtsp_streams(p, &cam, &depay, listed, sound)?;
        Ok(Box::new(()) as Guard)
    })?;
    src.share_offset(offset);
    Ok((src, others))
}

/// A certificate no authority vouches for (rtspsrc asks only then: a camera's self-signed one,
/// another name, expired) is accepted when its fingerprint is `pinned`; otherwise the pipeline
/// fails with an error that shows the fingerprint to pin, so the user can check it against the
/// camera's and set it.
fn accept_pinned_certificate(cam: &gst::Element, pinned: Option<String>) {
    cam.connect("accept-certificate", false, move |args| {
        let cert = args.get(2).and_then(|v| v.get::<gst::glib::Object>().ok());
        let der = cert.map(|c| c.property::<gst::glib::ByteArray>("certificate"));
        let seen = der.as_ref().map(|d| crate::config::fingerprint::of_der(d));
        let accept = seen.is_some() && seen == pinned;
        if !accept {
            let why = match (&seen, &pinned) {
                (Some(s), Some(_)) => format!(
                    "the camera's TLS certificate ({s}) is not the one in source.tls_fingerprint; if the camera \
                     has a new certificate, check it and set tls_fingerprint = \"sha256:{s}\""
                ),
                (Some(s), None) => format!(
                    "the camera's TLS certificate is not trusted (self-signed, another host name, or expired); if \
                     this is your camera's ({s}: compare with its web page), set source.tls_fingerprint = \"sha256:{s}\""
                ),
                (None, _) => "the camera's TLS certificate could not be read".to_string(),
            };
            if let Some(src) = args.first().and_then(|v| v.get::<gst::Element>().ok()) {
                src.post_error_message(gst::error_msg!(gst::ResourceError::NotAuthorized, ["{}", why]));
            }
        }
        Some(accept.to_value())
    });
}

/// Link the first H.264 video stream `rtspsrc` announces to `depay`; everything else to a
/// `fakesink`. An H.265 (or other) video stream with no H.264 beside it fails the pipeline
/// with a message naming the codec.
fn link_rtsp_streams(
    p: &Pipeline,
    cam: &gst::Element,
    depay: &gst::Element,
    others: OtherStreams,
    sound: Option<(SoundTap, SharedOffset)>,
) -> Result<(), CaptureError> {
    let depay_sink = depay.static_pad("sink").ok_or_else(|| GstError::MissingElement("rtph264depay sink".into()))?;
    let bin = p.inner().downgrade();
    let seen = others.clone();
    let heard = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sound_linked = heard.clone();
    let wanted = sound.as_ref().map(|(tap, _)| tap.deliver.clone());
    cam.connect_pad_added(move |_, pad| {
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let (media, encoding) = caps
            .structure(0)
            .map(|s| {
                (
                    s.get::<String>("media").unwrap_or_default(),
                    s.get::<String>("encoding-name").unwrap_or_default().to_ascii_uppercase(),
                )
            })
            .unwrap_or_default();
        if media == "video" && encoding == "H264" && !depay_sink.is_linked() {
            if let Err(e) = pad.link(&depay_sink) {
                log::warn!("rtsp: cannot link the H.264 stream: {e:?}");
            }
            return;
        }
        seen.lock().unwrap_or_else(|e| e.into_inner()).push(format!("{media} {encoding}"));
        let Some(bin) = bin.upgrade() else { return };
        if let Some((tap, offset)) = sound.as_ref().filter(|_| media == "audio") {
            if !sound_linked.swap(true, std::sync::atomic::Ordering::Relaxed) {
                match link_sound(&bin, pad, &encoding, tap, offset.clone()) {
                    Ok(()) => return,
                    Err(e) => (tap.deliver)(SoundEvent::Failed(e)),
                }
            }
        }
        // Not ours: drained so rtspsrc never sees not-linked.
        sound::discard(&bin, pad);
    });
    let depay_sink = depay.static_pad("sink").ok_or_else(|| GstError::MissingElement("rtph264depay sink".into()))?;
    cam.connect_no_more_pads(move |src| {
        if let Some(deliver) = wanted.as_ref().filter(|_| !heard.load(std::sync::atomic::Ordering::Relaxed)) {
            let streams = others.lock().unwrap_or_else(|e| e.into_inner()).join(", ");
            deliver(SoundEvent::Failed(format!("the camera sends no sound (its other streams: {streams:?})")));
        }
        if depay_sink.is_linked() {
            return;
        }
        let streams = others.lock().unwrap_or_else(|e| e.into_inner()).join(", ");
        let msg = if streams.contains("H265") {
            format!(
                "the camera sends H.265 ({streams}); hindsight stores H.264 only: set the camera's stream to \
                 H.264 (its web page: video / encoding), or use its H.264 substream URL"
            )
        } else {
            format!("the camera offers no H.264 video stream (it offers: {streams})")
        };
        src.post_error_message(gst::error_msg!(gst::StreamError::CodecNotFound, ["{}", msg]));
    });
    Ok(())
}

/// Link the camera's audio stream `pad` (RTP `encoding`) to a [`sound`] branch: AAC
/// (MPEG4-GENERIC, MP4A-LATM) is depayloaded and passed through bit for bit; G.711 (PCMA, PCMU)
/// and Opus are decoded and encoded once by `tap.encode`.
fn link_sound(
    bin: &gst::Pipeline,
    pad: &gst::Pad,
    encoding: &str,
    tap: &SoundTap,
    offset: SharedOffset,
) -> Result<(), String> {
    let chain = match encoding {
        "MPEG4-GENERIC" => Chain::passthrough("rtpmp4gdepay"),
        "MP4A-LATM" => Chain::passthrough("rtpmp4adepay"),
        "PCMA" => Chain::encoded(tap, "rtppcmadepay ! alawdec ! "),
        "PCMU" => Chain::encoded(tap, "rtppcmudepay ! mulawdec ! "),
        "OPUS" => Chain::encoded(tap, "rtpopusdepay ! opusdec ! "),
        other => return Err(format!("the camera's sound is {other}; hindsight takes AAC, G.711 (PCMA, PCMU) or Opus")),
    };
    sound::link(bin, pad, chain, tap, offset, &format!("the camera's {encoding} sound"))
}

/// Open a multipart MJPEG stream over HTTP(S). `user:password@` in the URL becomes basic auth.
pub fn open_http_mjpeg(url: &str) -> Result<GstSource, CaptureError> {
    let description = "souphttpsrc name=cam is-live=true do-timestamp=true timeout=5 \
                       ! multipartdemux single-stream=true ! jpegparse ! image/jpeg";
    let shown = format!("http_mjpeg {}", crate::redact::redact(url));
    let (location, user) = split_userinfo(url);
    GstSource::open_prepared(description, &shown, move |p| {
        let cam: gst::Element = p.by_name("cam")?;
        cam.set_property("location", location.as_str());
        if let Some((u, pw)) = &user {
            cam.set_property("user-id", u.as_str());
            cam.set_property("user-pw", pw.as_str());
        }
        Ok(Box::new(()) as Guard)
    })
}

/// Open a V4L2 device that encodes H.264 itself (UVC H.264 webcams).
pub fn open_v4l2_h264(device: &str, width: u32, height: u32, fps: u32) -> Result<GstSource, CaptureError> {
    let description =
        format!("v4l2src name=cam ! video/x-h264,width={width},height={height},framerate={fps}/1 ! {H264_TAIL}");
    let shown = format!("v4l2 {device} H264");
    let device = device.to_string();
    GstSource::open_prepared(&description, &shown, move |p| {
        let cam: gst::Element = p.by_name("cam")?;
        cam.set_property("device", device.as_str());
        Ok(Box::new(()) as Guard)
    })
}

/// `scheme://user:password@rest` → (`scheme://rest`, Some((user, password))), percent-decoded.
fn split_userinfo(url: &str) -> (String, Option<(String, String)>) {
    let Some((scheme, rest)) = url.split_once("://") else { return (url.into(), None) };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else { return (url.into(), None) };
    let (user, pw) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    (format!("{scheme}://{host}{path}"), Some((percent_decode(user), percent_decode(pw))))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_split_and_decoded() {
        assert_eq!(split_userinfo("http://cam.local/video"), ("http://cam.local/video".into(), None));
        assert_eq!(
            split_userinfo("http://admin:p%40ss%3Aw@10.0.0.5:8080/mjpeg?x=a@b"),
            ("http://10.0.0.5:8080/mjpeg?x=a@b".into(), Some(("admin".into(), "p@ss:w".into())))
        );
        assert_eq!(split_userinfo("https://u@h/"), ("https://h/".into(), Some(("u".into(), String::new()))));
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("a%zz%41"), "a%zzA");
    }
}
