//! Configuration: the TOML file of CONTRACT.md, board defaults, and validation.
//!
//! Owns parsing (`serde`, `deny_unknown_fields` everywhere), merging a board's defaults from
//! `board-configs/` (embedded in the binary) under the user's file, and [`validate`] whose errors
//! name the file and the key path (`camera[0].source.fps: must be 1..=120`).
//!
//! Must never panic on input and never touch the camera or the network: a config is data.

mod bytesize;
mod validate;

pub use bytesize::ByteSize;
pub use validate::{valid_camera_id, validate, UPLOAD_CAMERA};

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
    /// The cameras (`[[camera]]` tables).
    #[serde(default, rename = "camera")]
    pub cameras: Vec<CameraConfig>,
}

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
        c
    }
}

/// `[uploads]`: tus uploads at `/api/uploads`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadsConfig {
    /// Accept uploads at all.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Largest file accepted (`Upload-Length`).
    #[serde(default = "default_upload_max_bytes")]
    pub max_bytes: ByteSize,
    /// Hours after its last byte that an unfinished upload is deleted (fractions allowed).
    #[serde(default = "default_upload_expire_h")]
    pub expire_h: f64,
}

fn default_upload_max_bytes() -> ByteSize {
    ByteSize(4 << 30)
}
fn default_upload_expire_h() -> f64 {
    24.0
}

impl Default for UploadsConfig {
    fn default() -> Self {
        UploadsConfig { enabled: true, max_bytes: default_upload_max_bytes(), expire_h: default_upload_expire_h() }
    }
}

impl UploadsConfig {
    /// Problems as (key, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.max_bytes.0 < 1024 {
            out.push(("uploads.max_bytes".to_string(), "must be at least 1KiB".to_string()));
        }
        if !(self.expire_h.is_finite() && self.expire_h > 0.0 && self.expire_h <= 8760.0) {
            out.push(("uploads.expire_h".to_string(), "must be a number of hours in (0, 8760]".to_string()));
        }
        out
    }
}

fn default_auto_encoders() -> Vec<String> {
    vec!["x264enc".into(), "openh264enc".into()]
}

/// `[storage]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Directory for clips and the index. Nothing is written here while idle.
    #[serde(default = "default_storage_path")]
    pub path: PathBuf,
    /// Retention by total size of clips.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: ByteSize,
    /// Retention by free space on the storage filesystem, in percent.
    #[serde(default = "default_min_free_percent")]
    pub min_free_percent: u32,
    /// Retention by age, in days (0 keeps clips forever).
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// Refuse to write clips when `path` is not on its own mounted filesystem, so a missing USB
    /// disk never fills the SD card.
    #[serde(default)]
    pub require_mount: bool,
}

fn default_storage_path() -> PathBuf {
    PathBuf::from("./hindsight-data")
}
fn default_max_bytes() -> ByteSize {
    ByteSize(16 << 30)
}
fn default_min_free_percent() -> u32 {
    10
}
fn default_retention_days() -> u32 {
    30
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            path: default_storage_path(),
            max_bytes: default_max_bytes(),
            min_free_percent: default_min_free_percent(),
            retention_days: default_retention_days(),
            require_mount: false,
        }
    }
}

/// `auto`, `on` or `off`: `http.tls` and `http.auth` (auto: on unless `http.listen` is loopback).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Switch {
    /// On when `http.listen` is not a loopback address.
    #[default]
    Auto,
    /// Always on.
    On,
    /// Always off.
    Off,
}

impl fmt::Display for Switch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Switch::Auto => "auto",
            Switch::On => "on",
            Switch::Off => "off",
        })
    }
}

impl std::str::FromStr for Switch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Switch::Auto),
            "on" => Ok(Switch::On),
            "off" => Ok(Switch::Off),
            _ => Err(format!("{s:?} must be \"auto\", \"on\" or \"off\"")),
        }
    }
}

/// `[http]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address and port to listen on, e.g. `0.0.0.0:8443`. Port 0 picks a free port.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// HTTPS: `auto` (on unless `listen` is loopback), `on`, `off`.
    #[serde(default)]
    pub tls: Switch,
    /// PEM certificate chain to serve; unset: a self-signed one kept in `{state_dir}/tls/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// Optional plain-HTTP address that answers every request with a 308 to the HTTPS origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_listen: Option<String>,
    /// Login: `auto` (on unless `listen` is loopback), `on`, `off` (loopback only).
    #[serde(default)]
    pub auth: Switch,
    /// The login name.
    #[serde(default = "default_username")]
    pub username: String,
    /// The password; unset: a random one generated at first start and logged once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Session cookie lifetime in days.
    #[serde(default = "default_session_days")]
    pub session_days: u32,
    /// Where certificates, sessions and tokens are kept; default `{storage.path}/state`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<PathBuf>,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_username() -> String {
    "admin".into()
}
fn default_session_days() -> u32 {
    30
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_listen(),
            tls: Switch::Auto,
            cert_file: None,
            key_file: None,
            redirect_listen: None,
            auth: Switch::Auto,
            username: default_username(),
            password: None,
            session_days: default_session_days(),
            state_dir: None,
        }
    }
}

impl HttpConfig {
    /// Whether `listen` is a loopback address (an unparsable one counts as not loopback).
    pub fn loopback(&self) -> bool {
        self.listen.parse::<std::net::SocketAddr>().is_ok_and(|a| a.ip().is_loopback())
    }

    /// Whether HTTPS is served.
    pub fn tls_enabled(&self) -> bool {
        match self.tls {
            Switch::On => true,
            Switch::Off => false,
            Switch::Auto => !self.loopback(),
        }
    }

    /// Whether requests need a login or a token.
    pub fn auth_enabled(&self) -> bool {
        match self.auth {
            Switch::On => true,
            Switch::Off => false,
            Switch::Auto => !self.loopback(),
        }
    }
}

impl Config {
    /// `http.state_dir`, or `{storage.path}/state`.
    pub fn state_dir(&self) -> PathBuf {
        self.http.state_dir.clone().unwrap_or_else(|| self.storage.path.join("state"))
    }
}

/// `[mqtt]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// MQTT triggers and events on or off (off: HTTP triggers only).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Broker URL (`mqtt://host:1883`, `mqtts://host:8883`). Unset: the embedded broker on
    /// `listen` (or, if that port is taken, the broker already there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Address of the embedded broker when `url` is unset. Port 0 picks a free port.
    #[serde(default = "default_mqtt_listen")]
    pub listen: String,
    /// Topic prefix.
    #[serde(default = "default_base_topic")]
    pub base_topic: String,
    /// Broker user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Broker password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// For `mqtts://`: PEM file of the CA certificates to trust instead of the system's (a
    /// private CA, e.g. a self-made one for mosquitto).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

fn default_base_topic() -> String {
    "hindsight".into()
}
fn default_true() -> bool {
    true
}
fn default_mqtt_listen() -> String {
    "127.0.0.1:1883".into()
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            enabled: true,
            url: None,
            listen: default_mqtt_listen(),
            base_topic: default_base_topic(),
            username: None,
            password: None,
            ca_file: None,
        }
    }
}

/// What kind of source a camera reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// A V4L2 device through the v4l crate (USB webcams, Pi/Jetson ISP nodes).
    V4l2,
    /// Any GStreamer source pipeline ending in raw or JPEG video (libcamerasrc, RTSP, ...).
    Gstreamer,
    /// A synthetic moving pattern that carries its frame number (tests, development).
    Test,
    /// A browser (a phone's camera) streaming MediaRecorder chunks over a WebSocket to
    /// `/api/cameras/{id}/push`; decoded with GStreamer. width/height/fps are hints only.
    Browser,
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SourceKind::V4l2 => "v4l2",
            SourceKind::Gstreamer => "gstreamer",
            SourceKind::Test => "test",
            SourceKind::Browser => "browser",
        })
    }
}

/// `source = { kind = ..., ... }` — one flat table; which keys apply depends on `kind`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// `v4l2`, `gstreamer` or `test`.
    pub kind: SourceKind,
    /// v4l2: device path (prefer `/dev/v4l/by-id/...`, stable across reboots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// v4l2: pixel format `MJPG`, `YUYV`, `NV12` or `auto` (MJPG if offered, else YUYV, else NV12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// gstreamer: source pipeline ending in `video/x-raw` or `image/jpeg` (no sink).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
    /// v4l2/test: width in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// v4l2/test: height in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// v4l2/test: frames per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fps: Option<u32>,
}

impl SourceConfig {
    /// The built-in test pattern at `width`×`height`@`fps`.
    pub fn test(width: u32, height: u32, fps: u32) -> Self {
        SourceConfig {
            kind: SourceKind::Test,
            device: None,
            format: None,
            pipeline: None,
            width: Some(width),
            height: Some(height),
            fps: Some(fps),
        }
    }

    /// A browser-fed camera (a phone streaming to `/api/cameras/{id}/push`).
    pub fn browser() -> Self {
        SourceConfig {
            kind: SourceKind::Browser,
            device: None,
            format: None,
            pipeline: None,
            width: None,
            height: None,
            fps: None,
        }
    }

    /// Short human description (`/api/cameras` `source` field).
    pub fn describe(&self) -> String {
        match self.kind {
            SourceKind::V4l2 => format!("v4l2:{}", self.device.as_deref().unwrap_or("?")),
            SourceKind::Gstreamer => {
                format!("gstreamer:{}", self.pipeline.as_deref().unwrap_or(""))
            }
            SourceKind::Test => "test".into(),
            SourceKind::Browser => "browser".into(),
        }
    }
}

/// `[[camera]]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// Identifier used in URLs and topics: `[a-z0-9_-]{1,32}`.
    pub id: String,
    /// Where frames come from.
    pub source: SourceConfig,
    /// `auto` (first of `auto_encoders` that exists) or a GStreamer H.264 encoder element.
    #[serde(default = "default_encoder")]
    pub encoder: String,
    /// Target bitrate.
    #[serde(default = "default_bitrate")]
    pub bitrate_kbps: u32,
    /// Keyframe (GOP) period; clips and HLS segments start on keyframes.
    #[serde(default = "default_keyframe_interval")]
    pub keyframe_interval_s: f64,
    /// Seconds kept before a trigger.
    #[serde(default = "default_pre")]
    pub pre_s: f64,
    /// Seconds recorded after a trigger.
    #[serde(default = "default_post")]
    pub post_s: f64,
    /// Longest clip that re-triggers can extend to.
    #[serde(default = "default_max_clip")]
    pub max_clip_s: f64,
    /// Hard cap on the pre-roll buffer; default bitrate × (pre_s + 2 GOPs) × 1.5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preroll_max_bytes: Option<ByteSize>,
    /// Raw frames held between capture and encoder; the oldest is dropped when full.
    #[serde(default = "default_ring_frames")]
    pub ring_frames: usize,
    /// Live MJPEG preview: largest width of encoded preview frames (the height keeps the
    /// aspect ratio; never upscaled). JPEG cameras are passed through at their own size.
    #[serde(default = "default_preview_width")]
    pub preview_width: u32,
    /// Live MJPEG preview: most frames per second sent to viewers.
    #[serde(default = "default_preview_fps")]
    pub preview_fps: u32,
    /// Live MJPEG preview: JPEG encoder element for raw sources (`jpegenc`, or a hardware one
    /// such as `v4l2jpegenc` where `hindsight probe` lists it).
    #[serde(default = "default_preview_encoder")]
    pub preview_encoder: String,
}

fn default_encoder() -> String {
    "auto".into()
}
fn default_bitrate() -> u32 {
    4000
}
fn default_keyframe_interval() -> f64 {
    1.0
}
fn default_pre() -> f64 {
    30.0
}
fn default_post() -> f64 {
    30.0
}
fn default_max_clip() -> f64 {
    300.0
}
fn default_ring_frames() -> usize {
    8
}
fn default_preview_width() -> u32 {
    640
}
fn default_preview_fps() -> u32 {
    10
}
fn default_preview_encoder() -> String {
    "jpegenc".into()
}

impl CameraConfig {
    /// A camera with every optional key at its default.
    pub fn new(id: &str, source: SourceConfig) -> Self {
        CameraConfig {
            id: id.into(),
            source,
            encoder: default_encoder(),
            bitrate_kbps: default_bitrate(),
            keyframe_interval_s: default_keyframe_interval(),
            pre_s: default_pre(),
            post_s: default_post(),
            max_clip_s: default_max_clip(),
            preroll_max_bytes: None,
            ring_frames: default_ring_frames(),
            preview_width: default_preview_width(),
            preview_fps: default_preview_fps(),
            preview_encoder: default_preview_encoder(),
        }
    }

    /// The pre-roll byte cap: configured, or bitrate × (pre_s + 2 GOPs) × 1.5.
    pub fn preroll_cap_bytes(&self) -> usize {
        match self.preroll_max_bytes {
            Some(b) => b.0 as usize,
            None => {
                let secs = self.pre_s + 2.0 * self.keyframe_interval_s;
                (self.bitrate_kbps as f64 * 1000.0 / 8.0 * secs * 1.5) as usize
            }
        }
    }
}

impl Config {
    /// Built-in defaults for a fresh development machine: one camera `cam0`, the first V4L2
    /// device if there is one, else a moving test pattern.
    pub fn builtin_default() -> Config {
        let source = if Path::new("/dev/video0").exists() {
            SourceConfig {
                kind: SourceKind::V4l2,
                device: Some("/dev/video0".into()),
                format: Some("auto".into()),
                pipeline: None,
                width: Some(1280),
                height: Some(720),
                fps: Some(30),
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

    #[test]
    fn http_switches() {
        for (text, sw) in [("auto", Switch::Auto), ("on", Switch::On), ("off", Switch::Off)] {
            assert_eq!(text.parse::<Switch>().unwrap(), sw);
            assert_eq!(sw.to_string(), text);
        }
        assert!("yes".parse::<Switch>().is_err());
        let mut h = HttpConfig::default();
        assert!(!h.tls_enabled() && !h.auth_enabled(), "loopback default: plain HTTP, no login");
        h.listen = "0.0.0.0:8443".into();
        assert!(h.tls_enabled() && h.auth_enabled(), "network: HTTPS and login");
        h.tls = Switch::Off;
        assert!(!h.tls_enabled());
        let c = Config::from_toml(
            "[http]\nlisten = \"[::1]:8080\"\nauth = \"on\"\n[[camera]]\nid = \"a\"\nsource = { kind = \"test\" }\n",
            "t.toml",
        )
        .unwrap();
        assert!(c.http.auth_enabled() && !c.http.tls_enabled());
        assert_eq!(c.state_dir(), c.storage.path.join("state"));
    }

    #[test]
    fn preroll_cap_default_formula() {
        let mut c = CameraConfig::new("a", SourceConfig::test(64, 64, 10));
        c.bitrate_kbps = 8000;
        c.pre_s = 30.0;
        c.keyframe_interval_s = 1.0;
        assert_eq!(c.preroll_cap_bytes(), 1_000_000 * 32 * 3 / 2);
    }
}
