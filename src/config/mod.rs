//! Configuration: the TOML file of docs/API.md, board defaults, and validation.
//!
//! This module holds the top [`Config`], loading, the board merge and the errors; each section
//! has its own file (`camera`, `storage`, `http`, `mqtt`, `phone`, `uploads`, `triggers`),
//! re-exported here.
//!
//! Owns parsing (`serde`, `deny_unknown_fields` everywhere), merging a board's defaults from
//! `board-configs/` (embedded in the binary) under the user's file, and [`validate`] whose errors
//! name the file and the key path (`camera[0].source.fps: must be 1..=120`).
//!
//! Must never panic on input and never touch the camera or the network: a config is data.

mod alerts;
mod audio;
mod bytesize;
mod camera;
mod continuous;
mod export;
pub mod fingerprint;
mod http;
mod mqtt;
mod phone;
mod storage;
mod triggers;
mod uploads;
mod validate;

pub use self::alerts::AlertsConfig;
pub use self::audio::{AudioConfig, AudioKind, AAC_RATES, AUTO_AAC_ENCODERS};
pub use self::bytesize::ByteSize;
pub use self::camera::{CameraConfig, RtspTransport, SourceConfig, SourceKind};
pub use self::continuous::ContinuousConfig;
pub use self::export::{ExportConfig, ExportKind};
pub use self::http::{HttpConfig, Switch};
pub use self::mqtt::{MqttConfig, MqttUser};
pub use self::phone::PhoneConfig;
pub use self::storage::StorageConfig;
pub use self::triggers::TriggersConfig;
pub use self::uploads::UploadsConfig;
pub use self::validate::{valid_camera_id, validate, UPLOAD_CAMERA};

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// Where the daemon looks when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/hindsight/hindsight.toml";

/// The commented default configuration printed by `hindsight print-config`.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../../board-configs/default.toml");

/// Board configs shipped in the binary: (name, TOML text). Each is a complete config.
pub const BOARDS: &[(&str, &str)] = &[
    ("rpi4", include_str!("../../board-configs/rpi4.toml")),
    ("rpi5", include_str!("../../board-configs/rpi5.toml")),
    ("rpi-zero2w", include_str!("../../board-configs/rpi-zero2w.toml")),
    ("jetson-nano", include_str!("../../board-configs/jetson-nano.toml")),
    ("jetson-orin-nx", include_str!("../../board-configs/jetson-orin-nx.toml")),
    ("jetson-orin-nano", include_str!("../../board-configs/jetson-orin-nano.toml")),
    ("x86-dev", include_str!("../../board-configs/x86-dev.toml")),
];

/// The board's TOML text, if `name` is a known board.
pub fn board_toml(name: &str) -> Option<&'static str> {
    BOARDS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// A configuration error: which file, which key, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the error is in (`<defaults>` for built-in defaults).
    pub file: String,
    /// Dotted key path, e.g. `camera[0].source.fps`; empty for syntax errors.
    pub key: String,
    /// What is wrong, phrased so the user knows what to fix.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.key, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// All errors found in one file (validation reports every problem, not just the first).
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Board whose defaults (`board-configs/NAME.toml`) are merged under this file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub board: Option<String>,
    /// Encoder elements tried in order for `encoder = "auto"`: hardware first, software last.
    #[serde(default = "default_auto_encoders")]
    pub auto_encoders: Vec<String>,
    /// Clip storage.
    #[serde(default)]
    pub storage: StorageConfig,
    /// The web server.
    #[serde(default)]
    pub http: HttpConfig,
    /// MQTT triggers and events.
    #[serde(default)]
    pub mqtt: MqttConfig,
    /// Phones (browsers) as cameras.
    #[serde(default)]
    pub phone: PhoneConfig,
    /// Resumable (tus) uploads of video files.
    #[serde(default)]
    pub uploads: UploadsConfig,
    /// The per-source trigger rate limit.
    #[serde(default)]
    pub triggers: TriggersConfig,
    /// `[alerts]`: the box's sampling and alert thresholds.
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// `[export]`: clips copied to S3-compatible storage; none by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<ExportConfig>,
    /// The cameras (`[[camera]]` tables).
    #[serde(default, rename = "camera")]
    pub cameras: Vec<CameraConfig>,
}

fn default_auto_encoders() -> Vec<String> {
    vec!["x264enc".into(), "openh264enc".into()]
}

fn default_true() -> bool {
    true
}

impl Config {
    /// `http.state_dir`, or `{storage.path}/state`.
    pub fn state_dir(&self) -> PathBuf {
        self.http.state_dir.clone().unwrap_or_else(|| self.storage.path.join("state"))
    }

    /// Built-in defaults for a fresh development machine: one camera `cam0`, the first V4L2
    /// device if there is one, else a moving test pattern.
    pub fn builtin_default() -> Config {
        let source = if Path::new("/dev/video0").exists() {
            SourceConfig {
                device: Some("/dev/video0".into()),
                format: Some("auto".into()),
                width: Some(1280),
                height: Some(720),
                fps: Some(30),
                ..SourceConfig::of_kind(SourceKind::V4l2)
            }
        } else {
            SourceConfig::test(1280, 720, 30)
        };
        Config {
            board: None,
            auto_encoders: default_auto_encoders(),
            storage: StorageConfig::default(),
            http: HttpConfig::default(),
            mqtt: MqttConfig::default(),
            phone: PhoneConfig::default(),
            uploads: UploadsConfig::default(),
            export: None,
            triggers: TriggersConfig::default(),
            alerts: AlertsConfig::default(),
            cameras: vec![CameraConfig::new("cam0", source)],
        }
    }

    /// Parse, merge the board's defaults, and validate `text` read from `file`.
    pub fn from_toml(text: &str, file: &str) -> Result<Config, ConfigErrors> {
        let one = |key: &str, message: String| {
            ConfigErrors(vec![ConfigError { file: file.into(), key: key.into(), message }])
        };
        let mut value: toml::Table =
            text.parse().map_err(|e: toml::de::Error| one("", format!("not valid TOML: {}", e.to_string().trim())))?;
        if let Some(board) = value.get("board") {
            let name = board.as_str().ok_or_else(|| one("board", "must be a string naming a board".into()))?;
            let base = board_toml(name).ok_or_else(|| {
                let known: Vec<&str> = BOARDS.iter().map(|(n, _)| *n).collect();
                one("board", format!("unknown board {name:?} (known: {})", known.join(", ")))
            })?;
            let base: toml::Table =
                base.parse().map_err(|e: toml::de::Error| one("board", format!("board config is broken: {e}")))?;
            value = merge_board(base, value);
        }
        let config: Config = serde_path_to_error::deserialize(toml::Value::Table(value)).map_err(|e| {
            let key = e.path().to_string();
            let key = if key == "." { String::new() } else { key };
            one(&key, e.into_inner().message().to_string())
        })?;
        let errors = validate(&config, file);
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Read and check the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: file.clone(),
                key: String::new(),
                message: format!("cannot read: {e}"),
            }])
        })?;
        Config::from_toml(&text, &file)
    }

    /// The effective config as TOML (what `check-config` prints).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

/// Merge the user's table over a board's: top-level tables merge key by key, the user's scalars
/// win, and each user `[[camera]]` takes the board's first camera as its template (the `source`
/// table is replaced whole, never mixed). Without user cameras the board's cameras are used.
fn merge_board(mut base: toml::Table, user: toml::Table) -> toml::Table {
    let template =
        base.get("camera").and_then(|c| c.as_array()).and_then(|a| a.first()).and_then(|c| c.as_table()).cloned();
    for (key, value) in user {
        match (key.as_str(), value) {
            ("camera", toml::Value::Array(cams)) => {
                let merged = cams
                    .into_iter()
                    .map(|cam| match (cam, &template) {
                        (toml::Value::Table(cam), Some(t)) => {
                            let mut m = t.clone();
                            m.extend(cam);
                            toml::Value::Table(m)
                        }
                        (cam, _) => cam,
                    })
                    .collect();
                base.insert(key, toml::Value::Array(merged));
            }
            (_, toml::Value::Table(t)) => match base.get_mut(&key) {
                Some(toml::Value::Table(b)) => b.extend(t),
                _ => {
                    base.insert(key, toml::Value::Table(t));
                }
            },
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
    base
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_default_is_valid() {
        let c = Config::builtin_default();
        let e = validate(&c, "<defaults>");
        assert!(e.is_empty(), "{e:?}");
    }

    #[test]
    fn board_merge_keeps_user_keys_and_takes_template() {
        let c = Config::from_toml(
            "board = \"rpi4\"\n[[camera]]\nid = \"door\"\nsource = { kind = \"test\", width = 640, height = 480, fps = 15 }\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.cameras[0].id, "door");
        assert_eq!(c.cameras[0].source.kind, SourceKind::Test);
        assert_eq!(c.auto_encoders[0], "v4l2h264enc");
    }
}
