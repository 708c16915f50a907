//! hindsight: a camera appliance that always remembers the last 30 seconds.
//!
//! The data flow, and the module that owns each step:
//!
//! ```text
//! camera ──► capture ──► ring ──► encode ──► preroll ──┬──► clip::recorder ──► MP4 file ──► index
//!  V4L2 /     capture/    ring.rs   encode/    preroll.rs│    (clip-{cam} thread,  storage.rs   (sled)
//!  GStreamer /  v4l2.rs   (raw       chain.rs  (H.264 AUs │     clip::mp4)            ▲
//!  test /       gst.rs     frames,   mod.rs     in RAM,   │         ▲                 │
//!  phone        test_pattern.rs drop-oldest)  GOP-indexed)│         │ trigger         upload::finalize
//!  (browser.rs ◄─ web::phone WebSocket)                   │   mqtt/ ── trigger.rs ── web/   ▲ (remux/
//!                                                         └──► live::hls (LL-HLS)         │  transcode)
//! capture ──► live::tap (latest raw frame) ──► live::mjpeg   web::uploads (tus) ─► upload/ ┘
//! web::serve (TLS, peer) ──► web::auth (login, tokens, CSRF guard) ──► web routes + web::assets (the app)
//! ```
//!
//! - [`capture`]: one thread per camera reads a source and pushes [`frame::Frame`]s; a phone's
//!   MediaRecorder stream is a source too (`capture::browser`).
//! - [`ring`]: a few raw frames between capture and encoder; never blocks capture.
//! - [`encode`]: appsrc → encoder (hardware on the board) → h264parse → appsink.
//! - [`preroll`]: encoded frames held in RAM; readers snapshot or follow without copying.
//! - [`camera`]: wires the stages of one camera, start/stop/restart, status and counters;
//!   `camera::registry` holds every camera, including those phones add at run time.
//! - [`trigger`]: trigger payloads and answers, shared by MQTT and HTTP.
//! - [`clip`]: the clip state machine, the recorder that writes crash-safe MP4s from the
//!   pre-roll, the MP4 writer, start-up recovery, and the clip store.
//! - [`index`]: the sled clip index (all sled access). [`storage`]: clip paths, disk usage,
//!   retention and the mount check.
//! - [`live`]: the live view from RAM: MJPEG preview (pass-through or encode-once fan-out,
//!   only while watched, "NO SIGNAL" while the camera is down) and low-latency HLS cut from the
//!   pre-roll's H.264 (packager runs only while watched).
//! - [`auth`]: the password, bearer tokens (also for `hindsight token`), sessions, login rate limit.
//! - [`web`]: HTTP(S) serving, login and the guard, the API (warp), the embedded web app, the
//!   phone WebSocket and the tus routes. [`upload`]: resumable uploads on disk and their
//!   finalization into clips. [`notify`]: systemd readiness and watchdog.
//! - [`mqtt`]: MQTT triggers in, status/state/recording/clip events out; embedded broker.
//! - [`daemon`]: `hindsight run` — starts everything and drains on SIGTERM.
//! - [`config`]: the TOML file, board defaults, validation. [`probe`]: `hindsight probe`.
//! - [`pipeline`]: shared GStreamer plumbing; [`shutdown`]: stop tokens and back-off.

pub mod auth;
pub mod camera;
pub mod capture;
pub mod clip;
pub mod config;
pub mod daemon;
pub mod encode;
pub mod frame;
pub mod index;
pub mod live;
pub mod mqtt;
pub mod notify;
pub mod pipeline;
pub mod preroll;
pub mod probe;
pub mod ring;
pub mod shutdown;
pub mod storage;
pub mod trigger;
pub mod upload;
pub mod web;
