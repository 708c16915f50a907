//! The wrong config files of `tests/config.rs`: each must fail `check-config` with exit 2, naming
//! the file and the key.

/// One wrong config file.
pub struct Bad {
    /// File name (also names the case in failure messages).
    pub name: &'static str,
    /// The file's text.
    pub text: &'static str,
    /// The key path the error must name; empty when there is no key (TOML syntax errors).
    pub key: &'static str,
    /// Text the error line must also contain, if any.
    pub mentions: Option<&'static str>,
}

pub const BAD: &[Bad] = &[
    Bad {
        name: "fps-zero",
        text: "[[camera]]\nid = \"cam0\"\nsource = { kind = \"test\", width = 640, height = 480, fps = 0 }\n",
        key: "camera[0].source.fps",
        mentions: None,
    },
    Bad {
        name: "id-not-a-slug",
        text: "[[camera]]\nid = \"Front Door\"\nsource = { kind = \"test\", width = 640, height = 480, fps = 15 }\n",
        key: "camera[0].id",
        mentions: Some("Front Door"),
    },
    Bad {
        name: "duplicate-ids",
        text: concat!(cam!(), cam!()),
        key: "camera[1].id",
        mentions: Some("cam0"),
    },
    Bad {
        name: "listen-without-port",
        text: concat!("[http]\nlisten = \"0.0.0.0\"\n", cam!()),
        key: "http.listen",
        mentions: None,
    },
    Bad {
        name: "auth-off-on-the-network",
        text: concat!("[http]\nlisten = \"0.0.0.0:8443\"\nauth = \"off\"\n", cam!()),
        key: "http.auth",
        mentions: Some("loopback"),
    },
    Bad {
        name: "tls-not-a-switch",
        text: concat!("[http]\ntls = \"yes\"\n", cam!()),
        key: "http.tls",
        mentions: None,
    },
    Bad {
        name: "cert-without-key",
        text: concat!("[http]\nlisten = \"0.0.0.0:8443\"\ncert_file = \"/c.pem\"\n", cam!()),
        key: "http.key_file",
        mentions: Some("cert_file"),
    },
    Bad {
        name: "redirect-without-tls",
        text: concat!("[http]\ntls = \"off\"\nredirect_listen = \"127.0.0.1:8081\"\n", cam!()),
        key: "http.redirect_listen",
        mentions: Some("HTTPS"),
    },
    Bad {
        name: "mqtt-url-http",
        text: concat!("[mqtt]\nurl = \"http://x\"\n", cam!()),
        key: "mqtt.url",
        mentions: None,
    },
    Bad {
        name: "mqtt-base-topic-wildcard",
        text: concat!("[mqtt]\nbase_topic = \"home/#\"\n", cam!()),
        key: "mqtt.base_topic",
        mentions: None,
    },
    Bad {
        name: "mqtt-listen-no-port",
        text: concat!("[mqtt]\nlisten = \"localhost\"\n", cam!()),
        key: "mqtt.listen",
        mentions: Some("localhost"),
    },
    Bad {
        name: "mqtt-ca-file-without-tls",
        text: concat!("[mqtt]\nurl = \"mqtt://h:1883\"\nca_file = \"/x.pem\"\n", cam!()),
        key: "mqtt.ca_file",
        mentions: Some("mqtts"),
    },
    Bad {
        // A serde error inside ByteSize: the key comes from serde_path_to_error.
        name: "max-bytes-parsecs",
        text: concat!("[storage]\nmax_bytes = \"12 parsecs\"\n", cam!()),
        key: "storage.max_bytes",
        mentions: Some("parsecs"),
    },
    Bad {
        // deny_unknown_fields: serde_path_to_error records the offending key itself (it
        // captures the key before the field visitor rejects it), so the path ends in it.
        name: "unknown-camera-key",
        text: concat!(cam!(), "colour = \"red\"\n"),
        key: "camera[0].colour",
        mentions: Some("colour"),
    },
    Bad {
        name: "unknown-storage-key",
        text: concat!("[storage]\nsize = \"1GiB\"\n", cam!()),
        key: "storage.size",
        mentions: Some("size"),
    },
    Bad {
        name: "v4l2-without-device",
        text: "[[camera]]\nid = \"cam0\"\nsource = { kind = \"v4l2\", format = \"MJPG\", width = 1280, height = 720, fps = 30 }\n",
        key: "camera[0].source.device",
        mentions: None,
    },
    Bad {
        name: "v4l2-device-not-in-dev",
        text: "[[camera]]\nid = \"cam0\"\nsource = { kind = \"v4l2\", device = \"video0\" }\n",
        key: "camera[0].source.device",
        mentions: Some("video0"),
    },
    Bad {
        name: "v4l2-format-hevc",
        text: "[[camera]]\nid = \"cam0\"\nsource = { kind = \"v4l2\", device = \"/dev/video0\", format = \"HEVC\", width = 1280, height = 720, fps = 30 }\n",
        key: "camera[0].source.format",
        mentions: Some("HEVC"),
    },
    Bad {
        name: "pipeline-with-appsink",
        text: "[[camera]]\nid = \"cam0\"\nsource = { kind = \"gstreamer\", pipeline = \"videotestsrc ! video/x-raw,width=640,height=480 ! appsink\" }\n",
        key: "camera[0].source.pipeline",
        mentions: None,
    },
    Bad {
        name: "gstreamer-with-width",
        text: "[[camera]]\nid = \"cam0\"\nsource = { kind = \"gstreamer\", pipeline = \"videotestsrc ! video/x-raw\", width = 640 }\n",
        key: "camera[0].source.width",
        mentions: None,
    },
    Bad {
        name: "test-with-pipeline",
        text: "[[camera]]\nid = \"cam0\"\nsource = { kind = \"test\", pipeline = \"videotestsrc\" }\n",
        key: "camera[0].source.pipeline",
        mentions: None,
    },
    Bad {
        name: "unknown-source-kind",
        text: "[[camera]]\nid = \"cam0\"\nsource = { kind = \"onvif\" }\n",
        key: "camera[0].source.kind",
        mentions: Some("onvif"),
    },
    Bad {
        name: "rtsp-without-url",
        text: "[[camera]]\nid = \"cam0\"\nsource = { kind = \"rtsp\" }\n",
        key: "camera[0].source.url",
        mentions: Some("rtsp://"),
    },
    Bad {
        name: "rtsp-url-with-http-scheme",
        text: "[[camera]]\nid = \"cam0\"\nsource = { kind = \"rtsp\", url = \"http://admin:secret@10.0.0.5/\" }\n",
        key: "camera[0].source.url",
        mentions: Some("rtsp://"),
    },
    Bad {
        name: "rtsp-url-without-host",
        text: "[[camera]]\nid = \"cam0\"\nsource = { kind = \"rtsp\", url = \"rtsp://admin:secret@/live\" }\n",
        key: "camera[0].source.url",
        mentions: Some("no host"),
    },
    Bad {
        name: "rtsp-url-with-a-space",
        text: "[[camera]]\nid = \"cam0\"\nsource = { kind = \"rtsp\", url = \"rtsp://cam/live stream\" }\n",
        key: "camera[0].source.url",
        mentions: Some("spaces"),
    },
    Bad {
        name: "rtsp-bad-transport",
        text: "[[camera]]\nid = \"cam0\"\nsource = { kind = \"rtsp\", url = \"rtsp://cam/live\", transport = \"quic\" }\n",
        key: "camera[0].source.transport",
        mentions: Some("quic"),
    },
    Bad {
        name: "rtsp-with-width",
        text: "[[camera]]\nid = \"cam0\"\nsource = { kind = \"rtsp\", url = \"rtsp://cam/live\", width = 640 }\n",
        key: "camera[0].source.width",
        mentions: Some("the camera sets them"),
    },
    Bad {
        name: "http-mjpeg-with-rtsp-url",
        text: "[[camera]]\nid = \"cam0\"\nsource = { kind = \"http_mjpeg\", url = \"rtsp://cam/live\" }\n",
        key: "camera[0].source.url",
        mentions: Some("http://"),
    },
    Bad {
        name: "tls-fingerprint-not-hex",
        text: "[[camera]]\nid = \"cam0\"\nsource = { kind = \"rtsp\", url = \"rtsps://cam/live\", tls_fingerprint = \"sha256:AB:CD\" }\n",
        key: "camera[0].source.tls_fingerprint",
        mentions: Some("32 bytes of hex"),
    },
    Bad {
        name: "tls-fingerprint-without-rtsps",
        text: "[[camera]]\nid = \"cam0\"\nsource = { kind = \"rtsp\", url = \"rtsp://cam/live\", tls_fingerprint = \"0000000000000000000000000000000000000000000000000000000000000000\" }\n",
        key: "camera[0].source.tls_fingerprint",
        mentions: Some("rtsps://"),
    },
    Bad {
        name: "preview-url-with-ftp-scheme",
        text: "[[camera]]\nid = \"cam0\"\npreview_url = \"ftp://admin:secret@cam/sub\"\nsource = { kind = \"rtsp\", url = \"rtsp://cam/live\" }\n",
        key: "camera[0].preview_url",
        mentions: Some("rtsp://"),
    },
    Bad {
        name: "preview-url-for-a-phone",
        text: "[[camera]]\nid = \"cam0\"\npreview_url = \"rtsp://cam/sub\"\nsource = { kind = \"browser\" }\n",
        key: "camera[0].preview_url",
        mentions: Some("phone"),
    },
    Bad {
        name: "passthrough-of-a-test-pattern",
        text: "[[camera]]\nid = \"cam0\"\nencoder = \"passthrough\"\nsource = { kind = \"test\" }\n",
        key: "camera[0].encoder",
        mentions: Some("needs an H.264 source"),
    },
    Bad {
        name: "camera-without-id",
        text: "[[camera]]\nsource = { kind = \"test\" }\n",
        key: "camera[0]",
        mentions: Some("id"),
    },
    Bad {
        name: "max-clip-shorter-than-pre-plus-post",
        text: concat!(cam!(), "pre_s = 30\npost_s = 30\nmax_clip_s = 45\n"),
        key: "camera[0].max_clip_s",
        mentions: None,
    },
    Bad {
        name: "pre-too-long",
        text: concat!(cam!(), "pre_s = 400\nmax_clip_s = 1000\n"),
        key: "camera[0].pre_s",
        mentions: None,
    },
    Bad {
        name: "keyframe-interval-zero",
        text: concat!(cam!(), "keyframe_interval_s = 0\n"),
        key: "camera[0].keyframe_interval_s",
        mentions: None,
    },
    Bad {
        name: "bitrate-too-low",
        text: concat!(cam!(), "bitrate_kbps = 50\n"),
        key: "camera[0].bitrate_kbps",
        mentions: None,
    },
    Bad {
        name: "encoder-not-an-element",
        text: concat!(cam!(), "encoder = \"x264enc ! fakesink\"\n"),
        key: "camera[0].encoder",
        mentions: None,
    },
    Bad {
        name: "ring-frames-one",
        text: concat!(cam!(), "ring_frames = 1\n"),
        key: "camera[0].ring_frames",
        mentions: None,
    },
    Bad {
        name: "preview-width-tiny",
        text: concat!(cam!(), "preview_width = 8\n"),
        key: "camera[0].preview_width",
        mentions: None,
    },
    Bad {
        name: "preview-fps-zero",
        text: concat!(cam!(), "preview_fps = 0\n"),
        key: "camera[0].preview_fps",
        mentions: None,
    },
    Bad {
        name: "preview-encoder-pipeline",
        text: concat!(cam!(), "preview_encoder = \"jpegenc quality=50\"\n"),
        key: "camera[0].preview_encoder",
        mentions: Some("jpegenc quality=50"),
    },
    Bad {
        name: "preroll-cap-tiny",
        text: concat!(cam!(), "preroll_max_bytes = \"10KiB\"\n"),
        key: "camera[0].preroll_max_bytes",
        mentions: None,
    },
    Bad {
        name: "unknown-board",
        text: concat!("board = \"rpi9\"\n", cam!()),
        key: "board",
        mentions: Some("rpi9"),
    },
    Bad {
        // The board's defaults are merged in, but the error still names the user's file and
        // the user's camera.
        name: "board-user-camera-bad-bitrate",
        text: "board = \"rpi4\"\n[[camera]]\nid = \"door\"\nbitrate_kbps = 10\n",
        key: "camera[0].bitrate_kbps",
        mentions: None,
    },
    Bad {
        name: "auto-encoders-empty",
        text: concat!("auto_encoders = []\n", cam!()),
        key: "auto_encoders",
        mentions: None,
    },
    Bad {
        name: "toml-syntax-error",
        text: "[storage\npath = \"/tmp/x\"\n",
        key: "",
        mentions: None,
    },
    Bad {
        name: "storage-max-bytes-too-small",
        text: concat!("[storage]\nmax_bytes = \"1MiB\"\n", cam!()),
        key: "storage.max_bytes",
        mentions: None,
    },
    Bad {
        name: "min-free-percent-95",
        text: concat!("[storage]\nmin_free_percent = 95\n", cam!()),
        key: "storage.min_free_percent",
        mentions: None,
    },
    Bad {
        name: "mqtt-password-without-username",
        text: concat!("[mqtt]\npassword = \"secret\"\n", cam!()),
        key: "mqtt.password",
        mentions: None,
    },
    Bad {
        // Anyone on the LAN could read every topic and trigger: the rule http.auth follows.
        name: "mqtt-embedded-broker-off-loopback-without-login",
        text: concat!("[mqtt]\nlisten = \"0.0.0.0:1883\"\n", cam!()),
        key: "mqtt.listen",
        mentions: Some("mqtt.username"),
    },
    Bad {
        name: "mqtt-embedded-broker-off-loopback-short-password",
        text: concat!("[mqtt]\nlisten = \"0.0.0.0:1883\"\nusername = \"hindsight\"\npassword = \"short\"\n", cam!()),
        key: "mqtt.password",
        mentions: None,
    },
    Bad {
        name: "mqtt-user-short-password",
        text: concat!("[[mqtt.users]]\nusername = \"sensor\"\npassword = \"short\"\n", cam!()),
        key: "mqtt.users[0].password",
        mentions: None,
    },
    Bad {
        name: "no-camera",
        text: "[http]\nlisten = \"127.0.0.1:8080\"\n",
        key: "camera",
        mentions: None,
    },
    Bad {
        name: "continuous-segment-too-short",
        text: concat!(cam!(), "continuous = { segment_s = 1 }\n"),
        key: "camera[0].continuous.segment_s",
        mentions: Some("2..=600"),
    },
    Bad {
        name: "continuous-unknown-key",
        text: concat!(cam!(), "continuous = { segments = 10 }\n"),
        key: "camera[0].continuous.segments",
        mentions: Some("segments"),
    },
    Bad {
        name: "webrtc-too-many-viewers",
        text: concat!("[http]\nwebrtc_max_viewers = 65\n", cam!()),
        key: "http.webrtc_max_viewers",
        mentions: Some("0..=64"),
    },
    Bad {
        name: "webrtc-link-local-address",
        text: concat!("[http]\nwebrtc_addresses = [\"192.168.1.9\", \"169.254.3.4\"]\n", cam!()),
        key: "http.webrtc_addresses[1]",
        mentions: Some("169.254.3.4"),
    },
    Bad {
        name: "webrtc-address-not-an-ip",
        text: concat!("[http]\nwebrtc_addresses = [\"cam.local\"]\n", cam!()),
        key: "http.webrtc_addresses[0]",
        mentions: None,
    },
    Bad {
        name: "webrtc-udp-port-out-of-range",
        text: concat!("[http]\nwebrtc_udp = 70000\n", cam!()),
        key: "http.webrtc_udp",
        mentions: None,
    },
    Bad {
        name: "public-url-with-a-path",
        text: concat!("[http]\npublic_url = \"https://cam.lan/app\"\n", cam!()),
        key: "http.public_url",
        mentions: Some("no path"),
    },
    Bad {
        name: "public-url-not-http",
        text: concat!("[http]\npublic_url = \"cam.lan:8443\"\n", cam!()),
        key: "http.public_url",
        mentions: None,
    },
    Bad {
        name: "discovery-prefix-wildcard",
        text: concat!("[mqtt]\ndiscovery_prefix = \"homeassistant/#\"\n", cam!()),
        key: "mqtt.discovery_prefix",
        mentions: None,
    },
    Bad {
        name: "snapshot-interval-too-long",
        text: concat!("[mqtt]\nsnapshot_interval_s = 86400\n", cam!()),
        key: "mqtt.snapshot_interval_s",
        mentions: Some("0..=3600"),
    },
    Bad {
        name: "discovery-not-a-bool",
        text: concat!("[mqtt]\ndiscovery = \"yes\"\n", cam!()),
        key: "mqtt.discovery",
        mentions: None,
    },
    Bad {
        name: "export-bad-bucket",
        text: concat!("[export]\nkind = \"s3\"\nendpoint = \"http://127.0.0.1:9000\"\nbucket = \"My_Clips\"\naccess_key = \"k\"\nsecret_key = \"s\"\n", cam!()),
        key: "export.bucket",
        mentions: Some("a-z"),
    },
    Bad {
        name: "export-endpoint-with-path",
        text: concat!("[export]\nkind = \"s3\"\nendpoint = \"http://127.0.0.1:9000/s3\"\nbucket = \"clips\"\naccess_key = \"k\"\nsecret_key = \"s\"\n", cam!()),
        key: "export.endpoint",
        mentions: None,
    },
    Bad {
        name: "export-part-size-too-small",
        text: concat!("[export]\nkind = \"s3\"\nendpoint = \"http://127.0.0.1:9000\"\nbucket = \"clips\"\naccess_key = \"k\"\nsecret_key = \"s\"\npart_size = \"1KiB\"\n", cam!()),
        key: "export.part_size",
        mentions: Some("5MiB"),
    },
    Bad {
        name: "export-missing-secret",
        text: concat!("[export]\nkind = \"s3\"\nendpoint = \"http://127.0.0.1:9000\"\nbucket = \"clips\"\naccess_key = \"k\"\n", cam!()),
        key: "export",
        mentions: Some("secret_key"),
    },
    Bad {
        name: "export-unknown-kind",
        text: concat!("[export]\nkind = \"ftp\"\nendpoint = \"http://127.0.0.1:9000\"\nbucket = \"clips\"\naccess_key = \"k\"\nsecret_key = \"s\"\n", cam!()),
        key: "export.kind",
        mentions: None,
    },
    Bad {
        name: "alerts-interval-zero",
        text: concat!("[alerts]\ninterval_s = 0\n", cam!()),
        key: "alerts.interval_s",
        mentions: None,
    },
    Bad {
        name: "alerts-temperature-out-of-range",
        text: concat!("[alerts]\ntemperature_c = 400\n", cam!()),
        key: "alerts.temperature_c",
        mentions: None,
    },
    Bad {
        name: "alerts-sysfs-root-not-a-key",
        text: concat!("[alerts]\nsysfs_root = \"/tmp\"\n", cam!()),
        key: "alerts.sysfs_root",
        mentions: None,
    },
];
