//! hindsight: a camera appliance that always remembers the last 30 seconds.
//!
//! The data flow, and the module that owns each step:
//!
//! ```text
//! camera ──► capture ──► ring ──► encode ──► preroll ──┬──► clip::recorder ──► MP4 file ──► index
//!  V4L2 /     capture/    ring.rs   encode/    preroll.rs│    (clip-{cam} thread,  storage.rs   (sled)
//!  GStreamer /  v4l2.rs   (raw       chain.rs  (H.264 AUs │     mp4/)                 ▲
//!  test /       gst.rs     frames,   mod.rs     in RAM,   │         ▲                 │
//!  phone        test_pattern.rs drop-oldest)  GOP-indexed)│         │ control         upload::finalize
//!  (phone.rs ◄─ web::phone WebSocket)                     │   mqtt/ ─┴─ web/           ▲ (remux/
//!                                                         ├──► live::hls (LL-HLS)     │  transcode)
//!                                                         └──► live::webrtc (WHEP)    │
//! capture ──► tap (latest raw frame) ──► live::mjpeg        web::uploads (tus) ─► upload/ ┘
//! web::serve (TLS, peer) ──► web::auth (guard, login routes over auth/) ──► web routes + web::assets
//! ```
//!
//! Imports go one way, down these layers (docs/ARCHITECTURE.md; `scripts/check-house` checks):
//!
//! - start-up: [`daemon`] — `hindsight run`: starts everything and drains on SIGTERM.
//! - faces: [`web`] (HTTP(S), the API on warp, the embedded app, phone WebSocket, tus) and
//!   [`mqtt`] (triggers in, status/state/recording/clip events out; embedded broker). They call
//!   [`control`] and never import each other. The HTTP API, MQTT topics and config keys are
//!   documented in docs/API.md.
//! - [`control`]: every action — trigger, manual recording, camera start/stop/restart, the
//!   phone-camera rules. [`notify`]: systemd readiness and watchdog.
//! - [`monitor`]: the box's health over time (CPU, memory, temperature, throttling, each
//!   camera's rates) and its alerts, raised and cleared onto the event channel.
//! - [`camera`]: one camera's stages wired together, start/stop/restart, its snapshot for the
//!   API; `camera::registry` holds every camera, including those phones add at run time.
//! - [`upload`]: resumable uploads on disk and their finalization into clips. [`offsite`]:
//!   saved clips copied to S3-compatible storage (a crash-safe queue). [`probe`]:
//!   `hindsight probe`.
//! - the stages: [`capture`] (one thread per camera reads a source and pushes
//!   [`frame::Frame`]s; a phone's MediaRecorder stream is a source too), [`encode`] (appsrc →
//!   encoder, hardware on the board → h264parse → appsink), [`live`] (MJPEG preview, LL-HLS and
//!   WebRTC from RAM, only while watched), [`clip`] (the clip state machine, the recorder writing
//!   crash-safe MP4s from the pre-roll, start-up recovery, posters, the clip store), [`record`]
//!   (opt-in 24/7 recording: segments from the pre-roll into hourly folders, their recovery and
//!   retention), [`auth`] (passwords, tokens, sessions, rate limit).
//! - [`storage`]: clip files, disk usage, retention (recordings' tiered below the clips'), the
//!   mount check.
//! - hand-offs: [`ring`] (a few raw frames between capture and encoder; never blocks capture; a
//!   camera's own H.264 skips it: [`encode::PassStage`] stores it from the capture thread),
//!   [`tap`] (the latest raw frame for the preview), [`preroll`] (encoded frames in RAM;
//!   readers snapshot or follow without copying); [`index`] (the sled clip index, all sled
//!   access); [`trigger`] (trigger payloads and answers, shared by MQTT and HTTP); [`system`]
//!   (the box read from `/proc` and `/sys`, and the alerts' thresholds and hysteresis).
//! - leaves: [`status`] (camera state, counters, error chains), [`clip_meta`] (what a clip is),
//!   [`gst`] (GStreamer plumbing), [`mp4`] (the MP4 boxes of clips, live HLS, recording
//!   segments and their exports), [`frame`],
//!   [`time`] (monotonic vs wall clock, RFC 3339, 90 kHz ticks, the injectable clock),
//!   [`shutdown`] (stop tokens and back-off), [`config`] (the TOML file, boards, validation),
//!   [`redact`] (credentials out of every source string and error that leaves the process).

pub mod audio;
pub mod auth;
pub mod camera;
pub mod capture;
pub mod clip;
pub mod clip_meta;
pub mod config;
pub mod control;
pub mod daemon;
pub mod encode;
pub mod frame;
pub mod gst;
pub mod index;
pub mod live;
pub mod monitor;
pub mod mp4;
pub mod mqtt;
pub mod notify;
pub mod offsite;
pub mod preroll;
pub mod probe;
pub mod record;
pub mod redact;
pub mod ring;
pub mod segment_meta;
pub mod shutdown;
pub mod status;
pub mod storage;
pub mod system;
pub mod tap;
pub mod time;
pub mod trigger;
pub mod upload;
pub mod web;
