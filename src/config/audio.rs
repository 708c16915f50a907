//! `[camera.audio]`: where a camera's sound comes from and how it is encoded (AAC-LC).
//!
//! Owns the keys and their defaults only; [`super::validate`] checks the values.

use serde::{Deserialize, Serialize};

/// `audio.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AudioKind {
    /// An ALSA capture device (`audio.device`, e.g. `hw:1,0`: USB or I2S microphones).
    Alsa,
    /// The camera's own track: an RTSP camera's AAC (passed through) or G.711/Opus (encoded
    /// once), a phone's microphone.
    Source,
    /// A 1 kHz beep of 100 ms at every whole second of the monotonic clock, for development
    /// and tests: the `test` video source flashes at the same instants.
    Test,
}

/// `audio = { kind = ..., ... }` of a camera.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudioConfig {
    /// Where the sound comes from.
    pub kind: AudioKind,
    /// ALSA device (`kind = "alsa"`): `hw:CARD,DEV`, `plughw:...` or `default`; `hindsight
    /// probe` lists the capture devices with their rates and channels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Samples per second of the AAC stream (one an AAC config can name: 8000–96000).
    #[serde(default = "default_rate")]
    pub rate: u32,
    /// Channels: 1 (a microphone) or 2.
    #[serde(default = "default_channels")]
    pub channels: u16,
    /// AAC bitrate.
    #[serde(default = "default_bitrate")]
    pub bitrate_kbps: u32,
    /// `auto` (the first of `voaacenc`, `avenc_aac`, `fdkaacenc` that exists) or a GStreamer
    /// AAC encoder element.
    #[serde(default = "default_encoder")]
    pub encoder: String,
}

fn default_rate() -> u32 {
    48_000
}
fn default_channels() -> u16 {
    1
}
fn default_bitrate() -> u32 {
    64
}
fn default_encoder() -> String {
    "auto".into()
}

/// AAC encoders tried in order for `encoder = "auto"`.
/// voaacenc first: measured by scripts/bench-audio (48 kHz mono, 64 kbit/s) at 0.57× the CPU of
/// avenc_aac and 1.9 MiB of added RSS against 41 MiB (libavcodec); avenc_aac where plugins-bad
/// lacks it (Yocto builds voaacenc only with its PACKAGECONFIG).
pub const AUTO_AAC_ENCODERS: [&str; 3] = ["voaacenc", "avenc_aac", "fdkaacenc"];

/// Rates an AAC AudioSpecificConfig names by index.
pub const AAC_RATES: [u32; 12] = [8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000];

impl AudioConfig {
    /// An `audio` block of `kind` with every other key at its default.
    pub fn of_kind(kind: AudioKind) -> Self {
        AudioConfig {
            kind,
            device: None,
            rate: default_rate(),
            channels: default_channels(),
            bitrate_kbps: default_bitrate(),
            encoder: default_encoder(),
        }
    }

    /// What is wrong with these keys, as `(key under audio, message)`; `source` is the camera's
    /// source kind (`kind = "source"` needs a source that carries sound).
    pub fn problems(&self, source: super::SourceKind) -> Vec<(&'static str, String)> {
        use super::SourceKind;
        let mut out = Vec::new();
        match self.kind {
            AudioKind::Alsa => match &self.device {
                None => out.push((
                    "device",
                    "is required for kind \"alsa\" (e.g. \"hw:1,0\"; `hindsight probe` lists the capture devices)"
                        .into(),
                )),
                Some(d) if !valid_alsa_device(d) => out.push((
                    "device",
                    format!(
                        "{d:?} is not an ALSA device name (e.g. \"hw:1,0\", \"plughw:CARD=Device,DEV=0\", \"default\")"
                    ),
                )),
                Some(_) => {}
            },
            AudioKind::Source => {
                if !matches!(source, SourceKind::Rtsp | SourceKind::Browser) {
                    out.push((
                        "kind",
                        "\"source\" takes the sound of an rtsp or phone camera; use \"alsa\" for a microphone".into(),
                    ));
                }
            }
            AudioKind::Test => {}
        }
        if self.kind != AudioKind::Alsa && self.device.is_some() {
            out.push(("device", "is only for kind \"alsa\"".into()));
        }
        if !AAC_RATES.contains(&self.rate) {
            out.push(("rate", format!("must be one of {AAC_RATES:?}")));
        }
        if !(1..=2).contains(&self.channels) {
            out.push(("channels", "must be 1 or 2".into()));
        }
        if !(16..=320).contains(&self.bitrate_kbps) {
            out.push(("bitrate_kbps", "must be 16..=320".into()));
        }
        let element =
            !self.encoder.is_empty() && self.encoder.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if self.encoder != "auto" && !element {
            out.push((
                "encoder",
                format!("{:?} must be \"auto\" or a GStreamer AAC encoder element name", self.encoder),
            ));
        }
        out
    }
}

/// An ALSA PCM name as `hw:1,0`, `plughw:CARD=Device,DEV=0`, `default` or `sysdefault:CARD=x`:
/// letters, digits and `:,=_-.`, at most 64 characters (it goes into a pipeline description).
fn valid_alsa_device(d: &str) -> bool {
    !d.is_empty() && d.len() <= 64 && d.chars().all(|c| c.is_ascii_alphanumeric() || ":,=_-.".contains(c))
}

#[cfg(test)]
mod tests {
    use super::super::SourceKind;
    use super::*;

    #[test]
    fn problems_name_the_key() {
        let keys = |a: &AudioConfig, s| a.problems(s).into_iter().map(|p| p.0).collect::<Vec<_>>();
        let mut alsa = AudioConfig::of_kind(AudioKind::Alsa);
        assert_eq!(keys(&alsa, SourceKind::V4l2), ["device"]);
        alsa.device = Some("hw:1,0 ! filesink location=/etc/x".into());
        assert_eq!(keys(&alsa, SourceKind::V4l2), ["device"]);
        alsa.device = Some("plughw:CARD=Device,DEV=0".into());
        assert!(keys(&alsa, SourceKind::V4l2).is_empty());
        let src = AudioConfig::of_kind(AudioKind::Source);
        assert_eq!(keys(&src, SourceKind::Test), ["kind"]);
        assert!(keys(&src, SourceKind::Rtsp).is_empty());
        let bad = AudioConfig {
            rate: 47_000,
            channels: 3,
            bitrate_kbps: 1,
            encoder: "a b".into(),
            ..AudioConfig::of_kind(AudioKind::Test)
        };
        assert_eq!(keys(&bad, SourceKind::Test), ["rate", "channels", "bitrate_kbps", "encoder"]);
    }
}
