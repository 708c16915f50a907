//! Live view: what a phone watches, served from RAM and never from storage.
//!
//! - [`mjpeg`]: the MJPEG preview — camera JPEGs passed through, or raw frames encoded to JPEG
//!   once per frame for all viewers, only while someone watches; "NO SIGNAL" while the camera
//!   is down. Fed by [`crate::tap`], the latest-raw-frame slot the capture loop publishes into,
//!   or, for a camera that already sends H.264, by [`h264_feed`] from the pre-roll (decoded
//!   only while someone watches), or by [`substream`], the camera's own smaller stream
//!   (`preview_url`), opened only while someone watches.
//! - [`hls`]: low-latency HLS cut from the pre-roll buffer's encoded frames, in RAM:
//!   [`hls_cutter`] cuts frames into CMAF parts and segments, [`hls_playlist`] is the pure
//!   playlist window, [`hls`] runs one packager per camera while someone watches.
//! - [`webrtc`]: WebRTC (WHEP) for browsers, the camera's H.264 passed through from the pre-roll
//!   over one UDP port, from the newest keyframe held.
//!
//! Must never write to storage, never block capture or the encoder, and never let a slow
//! viewer make a producer buffer without bound.

pub mod h264_feed;
pub mod hls;
pub mod hls_cutter;
pub mod hls_playlist;
pub mod jpeg;
pub mod mjpeg;
pub mod substream;
pub mod webrtc;
