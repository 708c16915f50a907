//! `[phone]`: whether phones (browsers) may add cameras at run time, and the settings of the
//! cameras they add ([`PhoneConfig`]).
//!
//! Data only: must never create a camera (that is `camera::registry`).

use super::camera::{default_bitrate, default_encoder, default_post, default_pre};
use super::default_true;
use super::{CameraConfig, SourceConfig};
use serde::{Deserialize, Serialize};

/// `[phone]`: browsers that push their camera to `/api/cameras/{id}/push`. Cameras declared
/// with `source = { kind = "browser" }` always accept a phone; besides, a phone may create a new
/// camera on the fly, with the settings below.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneConfig {
    /// Whether a phone may create a camera that is not in the config.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How many cameras phones may create at run time.
    #[serde(default = "default_phone_max_cameras")]
    pub max_cameras: usize,
    /// Encoder for cameras created by phones (`auto` or an element).
    #[serde(default = "default_encoder")]
    pub encoder: String,
    /// Bitrate for cameras created by phones.
    #[serde(default = "default_bitrate")]
    pub bitrate_kbps: u32,
    /// Seconds kept before a trigger, for cameras created by phones.
    #[serde(default = "default_pre")]
    pub pre_s: f64,
    /// Seconds recorded after a trigger, for cameras created by phones.
    #[serde(default = "default_post")]
    pub post_s: f64,
    /// Whether cameras created by phones keep the phone's sound (`audio = { kind = "source" }`):
    /// the phone page asks for the microphone, and its sound goes into the pre-roll, clips and
    /// live HLS. The phone can still decline (then the camera says it has no sound).
    #[serde(default = "default_true")]
    pub audio: bool,
}

fn default_phone_max_cameras() -> usize {
    4
}

impl Default for PhoneConfig {
    fn default() -> Self {
        PhoneConfig {
            enabled: true,
            max_cameras: default_phone_max_cameras(),
            encoder: default_encoder(),
            bitrate_kbps: default_bitrate(),
            pre_s: default_pre(),
            post_s: default_post(),
            audio: true,
        }
    }
}

impl PhoneConfig {
    /// The configuration of a camera a phone creates as `id`.
    pub fn camera(&self, id: &str) -> CameraConfig {
        let mut c = CameraConfig::new(id, SourceConfig::browser());
        c.encoder = self.encoder.clone();
        c.bitrate_kbps = self.bitrate_kbps;
        c.pre_s = self.pre_s;
        c.post_s = self.post_s;
        c.max_clip_s = c.max_clip_s.max(self.pre_s + self.post_s);
        c.audio = self.audio.then(|| super::AudioConfig::of_kind(super::AudioKind::Source));
        c
    }
}
