//! Which H.264 encoder element to use and how to configure it.
//!
//! Board differences are data: the board config lists `auto_encoders` (hardware first); this
//! module knows the property dialect of each known element so the keyframe period, bitrate,
//! repeated SPS/PPS and a 4:2:0 profile phones can play come out the same whichever one runs.
//! Pure functions, no GStreamer state.

use crate::frame::PixelFormat;

/// Settings that every encoder chain must honour.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodeSettings {
    /// Target bitrate in kbit/s.
    pub bitrate_kbps: u32,
    /// Keyframe period in frames.
    pub keyframe_frames: u32,
}

/// Resolve `encoder` (`auto` or an element name) against what exists on this machine.
pub fn resolve(encoder: &str, auto: &[String], exists: impl Fn(&str) -> bool) -> Result<String, String> {
    if encoder != "auto" {
        return if exists(encoder) {
            Ok(encoder.to_string())
        } else {
            Err(format!("encoder element {encoder} is not installed (see `hindsight probe`)"))
        };
    }
    auto.iter()
        .find(|e| exists(e))
        .cloned()
        .ok_or_else(|| format!("none of the auto_encoders [{}] is installed", auto.join(", ")))
}

/// The part of the pipeline from raw video to H.264, for `element`.
pub fn encoder_chain(element: &str, s: &EncodeSettings) -> String {
    let kbps = s.bitrate_kbps;
    let bps = kbps as u64 * 1000;
    let n = s.keyframe_frames.max(1);
    match element {
        // Software: zerolatency (no B-frames, no lookahead), scenecut off so IDRs come exactly
        // every n frames; I420 in, main profile out (x264enc would otherwise pick 4:4:4).
        "x264enc" => format!(
            "video/x-raw,format=I420 ! x264enc name=enc tune=zerolatency speed-preset=ultrafast \
             bitrate={kbps} key-int-max={n} bframes=0 option-string=\"scenecut=0:min-keyint={n}\" \
             ! video/x-h264,profile=main"
        ),
        "openh264enc" => format!(
            "video/x-raw,format=I420 ! openh264enc name=enc bitrate={bps} gop-size={n} \
             rate-control=bitrate complexity=low ! video/x-h264,profile=constrained-baseline"
        ),
        // Raspberry Pi 4 / Zero 2 W (bcm2835-codec): period and repeated headers only through
        // extra-controls; level caps keep 1080p30 within what the block supports.
        "v4l2h264enc" => format!(
            "video/x-raw,format=I420 ! v4l2h264enc name=enc extra-controls=\"controls,video_bitrate={bps},\
             h264_i_frame_period={n},repeat_sequence_header=1\" \
             ! video/x-h264,level=(string)4,profile=(string)main"
        ),
        // Jetson Nano / Xavier / Orin NX: NVMM memory through nvvidconv.
        "nvv4l2h264enc" => format!(
            "nvvidconv ! video/x-raw(memory:NVMM),format=NV12 ! nvv4l2h264enc name=enc bitrate={bps} \
             iframeinterval={n} idrinterval={n} insert-sps-pps=true control-rate=1 \
             ! video/x-h264,profile=main"
        ),
        other => format!("video/x-raw,format=I420 ! {other} name=enc"),
    }
}

/// The whole encode pipeline for frames of `input` caps: appsrc → (decode JPEG or H.264) → convert →
/// encoder → `h264parse` (SPS/PPS on every keyframe) → appsink.
pub fn pipeline_description(input_caps: &str, pixel: PixelFormat, element: &str, s: &EncodeSettings) -> String {
    let decode = match pixel {
        PixelFormat::Mjpeg => "jpegparse ! jpegdec ! ",
        // A camera's H.264 re-encoded on request (another bitrate or GOP): decoded once.
        PixelFormat::H264 => "h264parse ! avdec_h264 ! ",
        _ => "",
    };
    format!(
        "appsrc name=src is-live=true format=time do-timestamp=false max-bytes=0 block=false caps=\"{input_caps}\" \
         ! {decode}videoconvert ! {} ! h264parse config-interval=-1 \
         ! video/x-h264,stream-format=byte-stream,alignment=au \
         ! appsink name=sink sync=false max-buffers=64",
        encoder_chain(element, s)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_takes_first_existing() {
        let auto = vec!["v4l2h264enc".to_string(), "x264enc".to_string(), "openh264enc".to_string()];
        assert_eq!(resolve("auto", &auto, |e| e != "v4l2h264enc").unwrap(), "x264enc");
        assert_eq!(resolve("auto", &auto, |_| true).unwrap(), "v4l2h264enc");
        assert!(resolve("auto", &auto, |_| false).unwrap_err().contains("none of"));
        assert!(resolve("nvv4l2h264enc", &auto, |e| e == "x264enc").is_err());
    }

    #[test]
    fn chains_carry_settings() {
        let s = EncodeSettings { bitrate_kbps: 4000, keyframe_frames: 30 };
        let x = encoder_chain("x264enc", &s);
        assert!(x.contains("bitrate=4000") && x.contains("key-int-max=30") && x.contains("format=I420"));
        let v = encoder_chain("v4l2h264enc", &s);
        assert!(v.contains("video_bitrate=4000000") && v.contains("h264_i_frame_period=30"));
        let p = pipeline_description("image/jpeg", PixelFormat::Mjpeg, "x264enc", &s);
        assert!(p.contains("jpegdec") && p.contains("config-interval=-1"));
    }
}
