//! Semantic checks on a parsed [`Config`]: every error names the file and the key path.

use super::{CameraConfig, Config, ConfigError, HttpConfig, SourceKind, Switch};
use std::collections::HashSet;
use std::net::SocketAddr;

/// The camera name uploaded videos are filed under (`clips/upload/…`, `?camera=upload`); no
/// real camera may take it.
pub const UPLOAD_CAMERA: &str = "upload";

/// Whether `id` is a valid camera id: `[a-z0-9_-]{1,32}`, and not [`UPLOAD_CAMERA`].
pub fn valid_camera_id(id: &str) -> bool {
    crate::segment_meta::camera_id_shape(id) && id != UPLOAD_CAMERA
}

/// Whether `name` looks like a GStreamer element factory name.
fn valid_element_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Every problem in `config`, each naming `file` and the key path. Empty means valid.
pub fn validate(config: &Config, file: &str) -> Vec<ConfigError> {
    let mut errs = Vec::new();
    let mut err = |key: String, message: String| {
        errs.push(ConfigError { file: file.to_string(), key, message });
    };

    if config.auto_encoders.is_empty() {
        err("auto_encoders".into(), "must list at least one encoder element".into());
    }
    for (i, e) in config.auto_encoders.iter().enumerate() {
        if !valid_element_name(e) {
            err(format!("auto_encoders[{i}]"), format!("{e:?} is not a GStreamer element name"));
        }
    }

    let s = &config.storage;
    if s.path.as_os_str().is_empty() {
        err("storage.path".into(), "must not be empty".into());
    }
    if s.max_bytes.0 < (16 << 20) {
        err("storage.max_bytes".into(), "must be at least 16MiB".into());
    }
    if s.min_free_percent > 90 {
        err("storage.min_free_percent".into(), "must be 0..=90".into());
    }
    if s.retention_days > 36500 {
        err("storage.retention_days".into(), "must be 0..=36500 (0 keeps clips forever)".into());
    }

    if config.http.listen.parse::<SocketAddr>().is_err() {
        err("http.listen".into(), format!("{:?} is not an address:port such as \"0.0.0.0:8443\"", config.http.listen));
    }
    check_http(&config.http, &mut err);

    let m = &config.mqtt;
    if let Some(url) = &m.url {
        let ok = ["mqtt://", "mqtts://", "tcp://", "ssl://"]
            .iter()
            .any(|p| url.strip_prefix(p).is_some_and(|rest| !rest.is_empty() && !rest.starts_with(':')));
        if !ok {
            err("mqtt.url".into(), format!("{url:?} must look like mqtt://host:1883 or mqtts://host:8883"));
        } else if let Some(port) = url.split("://").nth(1).and_then(|r| r.rsplit_once(':')).map(|(_, p)| p) {
            if port.trim_end_matches('/').parse::<u16>().is_err() {
                err("mqtt.url".into(), format!("port {port:?} is not a number 1..=65535"));
            }
        }
    }
    if m.listen.parse::<SocketAddr>().is_err() {
        err("mqtt.listen".into(), format!("{:?} is not an address:port such as \"127.0.0.1:1883\"", m.listen));
    }
    if m.base_topic.is_empty()
        || m.base_topic.contains(['#', '+'])
        || m.base_topic.starts_with('/')
        || m.base_topic.ends_with('/')
    {
        err(
            "mqtt.base_topic".into(),
            "must be a non-empty topic without wildcards (#, +) or leading/trailing '/'".into(),
        );
    }
    if m.discovery_prefix.is_empty()
        || m.discovery_prefix.contains(['#', '+'])
        || m.discovery_prefix.starts_with('/')
        || m.discovery_prefix.ends_with('/')
    {
        err(
            "mqtt.discovery_prefix".into(),
            "must be a non-empty topic without wildcards (#, +) or leading/trailing '/'".into(),
        );
    }
    if m.snapshot_interval_s > 3600 {
        err("mqtt.snapshot_interval_s".into(), "must be 0..=3600 (0: snapshots only after clips)".into());
    }
    if m.ca_file.is_some() && !m.url.as_deref().is_some_and(|u| u.starts_with("mqtts://") || u.starts_with("ssl://")) {
        err("mqtt.ca_file".into(), "is only used with an mqtts:// url".into());
    }
    if m.password.is_some() && m.username.is_none() {
        err("mqtt.password".into(), "is set but mqtt.username is not".into());
    }
    check_broker_users(m, &mut err);
    if let Some(x) = &config.export {
        check_export(x, &mut err);
    }

    let ph = &config.phone;
    if ph.max_cameras > 64 {
        err("phone.max_cameras".into(), "must be 0..=64".into());
    }
    if ph.encoder != "auto" && !valid_element_name(&ph.encoder) {
        err("phone.encoder".into(), format!("{:?} must be \"auto\" or a GStreamer element name", ph.encoder));
    }
    if !(100..=100_000).contains(&ph.bitrate_kbps) {
        err("phone.bitrate_kbps".into(), "must be 100..=100000".into());
    }
    if !(0.0..=300.0).contains(&ph.pre_s) {
        err("phone.pre_s".into(), "must be 0..=300".into());
    }
    if !(0.0..=300.0).contains(&ph.post_s) {
        err("phone.post_s".into(), "must be 0..=300".into());
    }

    if config.cameras.is_empty() {
        err("camera".into(), "at least one [[camera]] is required".into());
    }
    let mut seen = HashSet::new();
    for (i, cam) in config.cameras.iter().enumerate() {
        let k = |rest: &str| format!("camera[{i}].{rest}");
        if !valid_camera_id(&cam.id) {
            err(k("id"), format!("{:?} must match [a-z0-9_-]{{1,32}} and not be {UPLOAD_CAMERA:?} (uploads)", cam.id));
        } else if !seen.insert(cam.id.clone()) {
            err(k("id"), format!("{:?} is used by another camera", cam.id));
        }
        check_source(cam, &k, &mut err);
        if cam.encoder != "auto" && !valid_element_name(&cam.encoder) {
            err(
                k("encoder"),
                format!("{:?} must be \"auto\", \"passthrough\" or a GStreamer element name", cam.encoder),
            );
        }
        if !(100..=100_000).contains(&cam.bitrate_kbps) {
            err(k("bitrate_kbps"), "must be 100..=100000".into());
        }
        if !(0.1..=10.0).contains(&cam.keyframe_interval_s) {
            err(k("keyframe_interval_s"), "must be 0.1..=10".into());
        }
        if !(0.0..=300.0).contains(&cam.pre_s) {
            err(k("pre_s"), "must be 0..=300".into());
        }
        if !(0.0..=300.0).contains(&cam.post_s) {
            err(k("post_s"), "must be 0..=300".into());
        }
        if !(1.0..=3600.0).contains(&cam.max_clip_s) {
            err(k("max_clip_s"), "must be 1..=3600".into());
        } else if cam.max_clip_s < cam.pre_s + cam.post_s {
            err(k("max_clip_s"), format!("must be at least pre_s + post_s ({})", cam.pre_s + cam.post_s));
        }
        if let Some(b) = cam.preroll_max_bytes {
            if b.0 < (1 << 20) {
                err(k("preroll_max_bytes"), "must be at least 1MiB".into());
            }
        }
        if !(2..=240).contains(&cam.ring_frames) {
            err(k("ring_frames"), "must be 2..=240".into());
        }
        if !(64..=3840).contains(&cam.preview_width) {
            err(k("preview_width"), "must be 64..=3840".into());
        }
        if !(1..=30).contains(&cam.preview_fps) {
            err(k("preview_fps"), "must be 1..=30".into());
        }
        if let Some(url) = &cam.preview_url {
            let example = "rtsp://user:password@192.168.1.64:554/Streaming/Channels/102";
            check_url(Some(url), &["rtsp", "rtsps", "http", "https"], example, &k("preview_url"), &mut err);
            if cam.source.kind == SourceKind::Browser {
                err(k("preview_url"), "a phone camera has no substream".into());
            }
        }
        if let Some(audio) = &cam.audio {
            for (key, message) in audio.problems(cam.source.kind) {
                err(k(&format!("audio.{key}")), message);
            }
        }
        if let Some(c) = &cam.continuous {
            for (key, message) in c.problems() {
                err(k(&format!("continuous.{key}")), message);
            }
        }
        if !valid_element_name(&cam.preview_encoder) {
            let e = &cam.preview_encoder;
            err(k("preview_encoder"), format!("{e:?} must be a GStreamer JPEG encoder element name"));
        }
    }
    for (key, message) in config.uploads.problems() {
        err(key, message);
    }
    for (key, message) in config.triggers.problems() {
        err(key, message);
    }
    for (key, message) in config.alerts.problems() {
        err(key, message);
    }
    errs
}

fn check_http(h: &HttpConfig, err: &mut dyn FnMut(String, String)) {
    if h.auth == Switch::Off && h.listen.parse::<SocketAddr>().is_ok() && !h.loopback() {
        err(
            "http.auth".into(),
            format!(
                "\"off\" is only allowed on a loopback listen address ({:?} is reachable from the network)",
                h.listen
            ),
        );
    }
    match (&h.cert_file, &h.key_file) {
        (Some(_), None) => err("http.key_file".into(), "is required when http.cert_file is set".into()),
        (None, Some(_)) => err("http.cert_file".into(), "is required when http.key_file is set".into()),
        _ => {}
    }
    if h.cert_file.is_some() && !h.tls_enabled() {
        err("http.cert_file".into(), "is set but HTTPS is off (http.tls)".into());
    }
    if let Some(r) = &h.redirect_listen {
        if r.parse::<SocketAddr>().is_err() {
            err("http.redirect_listen".into(), format!("{r:?} is not an address:port such as \"0.0.0.0:80\""));
        } else if !h.tls_enabled() {
            err("http.redirect_listen".into(), "redirects to HTTPS, but HTTPS is off (http.tls)".into());
        }
    }
    if h.username.is_empty() || h.username.len() > 64 || h.username.chars().any(|c| c.is_control()) {
        err("http.username".into(), "must be 1..=64 printable characters".into());
    }
    if let Some(p) = &h.password {
        if p.len() < 8 {
            err("http.password".into(), "must be at least 8 characters (or unset: one is generated)".into());
        }
    }
    if !(1..=3650).contains(&h.session_days) {
        err("http.session_days".into(), "must be 1..=3650".into());
    }
    if h.state_dir.as_ref().is_some_and(|d| d.as_os_str().is_empty()) {
        err("http.state_dir".into(), "must not be empty".into());
    }
    if h.webrtc_max_viewers > 64 {
        err("http.webrtc_max_viewers".into(), "must be 0..=64 (0 turns WebRTC off)".into());
    }
    for (i, ip) in h.webrtc_addresses.iter().enumerate() {
        let ok = matches!(ip, std::net::IpAddr::V4(v4) if !(v4.is_unspecified() || v4.is_link_local()
            || v4.is_broadcast() || v4.is_multicast()));
        if !ok {
            err(
                format!("http.webrtc_addresses[{i}]"),
                format!("{ip} cannot be offered: an IPv4 unicast address is needed"),
            );
        }
    }
    if let Some(u) = &h.public_url {
        let rest = u.strip_prefix("https://").or_else(|| u.strip_prefix("http://"));
        let host = rest.map(|r| r.trim_end_matches('/'));
        if !host.is_some_and(|h| !h.is_empty() && !h.contains(['/', '?', '#', '@', ' ']) && !h.starts_with(':')) {
            err(
                "http.public_url".into(),
                format!("{u:?} must be http(s)://host[:port], e.g. \"https://cam.lan:8443\" (no path, no login)"),
            );
        }
    }
}

fn check_source(cam: &CameraConfig, k: &dyn Fn(&str) -> String, err: &mut dyn FnMut(String, String)) {
    let s = &cam.source;
    // Which keys each kind takes; any other key set is an error naming it.
    let allowed: &[&str] = match s.kind {
        SourceKind::V4l2 => &["device", "format", "width", "height", "fps"],
        SourceKind::Gstreamer => &["pipeline"],
        SourceKind::Test | SourceKind::Browser => &["width", "height", "fps"],
        SourceKind::Rtsp => &["url", "transport", "tls_fingerprint"],
        SourceKind::HttpMjpeg => &["url"],
    };
    let set = [
        ("device", s.device.is_some()),
        ("format", s.format.is_some()),
        ("pipeline", s.pipeline.is_some()),
        ("url", s.url.is_some()),
        ("transport", s.transport.is_some()),
        ("width", s.width.is_some()),
        ("height", s.height.is_some()),
        ("fps", s.fps.is_some()),
        ("tls_fingerprint", s.tls_fingerprint.is_some()),
    ];
    for (key, is_set) in set {
        if is_set && !allowed.contains(&key) {
            let hint = match (s.kind, key) {
                (SourceKind::Gstreamer, "width" | "height" | "fps") => ": put size and rate in the pipeline's caps",
                (SourceKind::Rtsp | SourceKind::HttpMjpeg, "width" | "height" | "fps") => {
                    ": the camera sets them (its own web page or ONVIF)"
                }
                _ => "",
            };
            err(k(&format!("source.{key}")), format!("does not apply to kind = \"{}\" (remove `{key}`){hint}", s.kind));
        }
    }
    match s.kind {
        SourceKind::V4l2 => {
            match &s.device {
                None => err(k("source.device"), "is required for kind = \"v4l2\" (e.g. /dev/video0)".into()),
                Some(d) if !d.starts_with("/dev/") => {
                    err(k("source.device"), format!("{d:?} must be a path under /dev/"))
                }
                Some(_) => {}
            }
            if let Some(f) = &s.format {
                if !["MJPG", "YUYV", "NV12", "H264", "auto"].contains(&f.as_str()) {
                    err(k("source.format"), format!("{f:?} must be one of MJPG, YUYV, NV12, H264, auto"));
                }
            }
        }
        SourceKind::Gstreamer => match &s.pipeline {
            None => err(k("source.pipeline"), "is required for kind = \"gstreamer\"".into()),
            Some(p) if p.trim().is_empty() => err(k("source.pipeline"), "must not be empty".into()),
            Some(p) if p.contains("appsink") || p.trim_end().ends_with('!') => err(
                k("source.pipeline"),
                "must end in the source's caps, without a sink (hindsight adds its own appsink)".into(),
            ),
            Some(_) => {}
        },
        SourceKind::Rtsp => {
            check_url(
                s.url.as_deref(),
                &["rtsp", "rtsps"],
                "rtsp://user:password@192.168.1.64:554/Streaming/Channels/101",
                &k("source.url"),
                err,
            );
            if let Some(f) = &s.tls_fingerprint {
                if super::fingerprint::parse(f).is_none() {
                    err(k("source.tls_fingerprint"), "must be 32 bytes of hex, e.g. \"sha256:AB:CD:…\" as the error of an untrusted rtsps camera shows it".into());
                } else if !s
                    .url
                    .as_deref()
                    .is_some_and(|u| u.get(..8).is_some_and(|p| p.eq_ignore_ascii_case("rtsps://")))
                {
                    err(k("source.tls_fingerprint"), "only applies to an rtsps:// url".into());
                }
            }
        }
        SourceKind::HttpMjpeg => {
            check_url(s.url.as_deref(), &["http", "https"], "http://192.168.1.50/video", &k("source.url"), err)
        }
        SourceKind::Test | SourceKind::Browser => {}
    }
    if allowed.contains(&"width") {
        match s.width {
            Some(w) if !(16..=7680).contains(&w) || w % 2 != 0 => {
                err(k("source.width"), "must be an even number 16..=7680".into())
            }
            _ => {}
        }
        match s.height {
            Some(h) if !(16..=4320).contains(&h) || h % 2 != 0 => {
                err(k("source.height"), "must be an even number 16..=4320".into())
            }
            _ => {}
        }
        match s.fps {
            Some(f) if !(1..=120).contains(&f) => err(k("source.fps"), "must be 1..=120".into()),
            _ => {}
        }
    }
    if cam.encoder == "passthrough" && !s.delivers_h264() && s.kind != SourceKind::Gstreamer {
        err(
            k("encoder"),
            format!(
                "\"passthrough\" needs an H.264 source (kind = \"rtsp\", v4l2 with format = \"H264\", or a \
                 gstreamer pipeline ending in video/x-h264); kind = \"{}\" delivers pictures to encode",
                s.kind
            ),
        );
    }
}

/// A camera URL: one of `schemes`, a host, at most 2048 bytes, no spaces, quotes or control
/// characters (it goes to GStreamer as a property, never through a pipeline description). The
/// message never repeats the URL: it may hold a password.
fn check_url(url: Option<&str>, schemes: &[&str], example: &str, key: &str, err: &mut dyn FnMut(String, String)) {
    let Some(url) = url else {
        return err(key.into(), format!("is required (e.g. {example})"));
    };
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    let rest = url.split_once("://").map_or("", |(_, r)| r);
    let host = rest.split(['/', '?', '#']).next().unwrap_or("").rsplit('@').next().unwrap_or("");
    if !scheme.as_deref().is_some_and(|s| schemes.contains(&s)) {
        err(
            key.into(),
            format!(
                "must start with {} (e.g. {example})",
                schemes.iter().map(|s| format!("{s}://")).collect::<Vec<_>>().join(" or ")
            ),
        );
    } else if host.is_empty() || host.starts_with(':') {
        err(key.into(), format!("has no host (e.g. {example})"));
    } else if url.len() > 2048 {
        err(key.into(), "is longer than 2048 bytes".into());
    } else if url.chars().any(|c| c.is_whitespace() || c.is_control() || c == '"') {
        err(key.into(), "must not contain spaces, quotes or control characters (percent-encode them)".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn camera_ids() {
        assert!(valid_camera_id("front_door-2"));
        assert!(!valid_camera_id("Front"));
        assert!(!valid_camera_id(""));
        assert!(!valid_camera_id(&"a".repeat(33)));
        assert!(!valid_camera_id("../x"));
        assert!(!valid_camera_id(UPLOAD_CAMERA));
    }
}

/// The embedded broker's logins: well-formed, and at least one when it listens off loopback
/// (anyone on the LAN could otherwise read every topic and trigger; the rule `http.auth` follows).
fn check_broker_users(m: &crate::config::MqttConfig, err: &mut impl FnMut(String, String)) {
    let printable = |s: &str| !s.is_empty() && s.len() <= 64 && !s.chars().any(|c| c.is_control());
    for (i, u) in m.users.iter().enumerate() {
        if !printable(&u.username) {
            err(format!("mqtt.users[{i}].username"), "must be 1..=64 printable characters".into());
        }
        if u.password.chars().count() < 8 || u.password.len() > 256 {
            err(format!("mqtt.users[{i}].password"), "must be 8..=256 characters".into());
        }
    }
    let embedded = m.enabled && m.url.is_none();
    let off_loopback = m.listen.parse::<SocketAddr>().is_ok_and(|a| !a.ip().is_loopback());
    if embedded && off_loopback {
        if m.username.is_none() && m.users.is_empty() {
            err(
                "mqtt.listen".into(),
                format!(
                    "{:?} is reachable from the network: the embedded broker then needs logins \
                     (mqtt.username + mqtt.password, or [[mqtt.users]])",
                    m.listen
                ),
            );
        } else if m.username.is_some() && m.password.as_ref().is_none_or(|p| p.chars().count() < 8) {
            err(
                "mqtt.password".into(),
                "must be set (at least 8 characters) when the embedded broker listens off loopback".into(),
            );
        }
    }
}

fn check_export(x: &super::ExportConfig, err: &mut dyn FnMut(String, String)) {
    let host = x.endpoint.strip_prefix("https://").or_else(|| x.endpoint.strip_prefix("http://"));
    if !host.map(|h| h.trim_end_matches('/')).is_some_and(|h| !h.is_empty() && !h.contains(['/', '?', '#', '@', ' '])) {
        err(
            "export.endpoint".into(),
            format!("{:?} must be http(s)://host[:port], e.g. \"https://s3.eu-central-1.amazonaws.com\"", x.endpoint),
        );
    }
    // S3 bucket naming: 3..=63 lowercase letters, digits, dots and hyphens.
    let b = &x.bucket;
    if !(3..=63).contains(&b.len())
        || !b.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
    {
        err("export.bucket".into(), "must be 3..=63 characters: a-z, 0-9, '.' and '-'".into());
    }
    if x.prefix.starts_with('/')
        || x.prefix.ends_with('/')
        || x.prefix.len() > 512
        || x.prefix.chars().any(char::is_control)
    {
        err("export.prefix".into(), "must not start or end with '/' (at most 512 characters)".into());
    }
    if x.region.is_empty() || x.region.len() > 64 || x.region.chars().any(|c| c.is_whitespace() || c.is_control()) {
        err("export.region".into(), "must be a region name such as \"us-east-1\"".into());
    }
    if x.access_key.is_empty() || x.access_key.len() > 256 || x.access_key.chars().any(|c| c.is_control()) {
        err("export.access_key".into(), "must be 1..=256 printable characters".into());
    }
    if x.secret_key.is_empty() || x.secret_key.len() > 256 {
        err("export.secret_key".into(), "must be 1..=256 characters".into());
    }
    // AWS and MinIO need parts of 5 MiB or more (all but the last); smaller suits only servers
    // that allow it (a test server).
    if !(64 << 10..=5 << 30).contains(&x.part_size.0) {
        err("export.part_size".into(), "must be 64KiB..=5GiB (AWS S3 and MinIO need at least 5MiB)".into());
    }
}
