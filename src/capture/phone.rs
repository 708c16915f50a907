//! The phone source (config `source.kind = "browser"`): a phone's camera streamed as MediaRecorder chunks (WebM or fragmented
//! MP4) over a WebSocket, decoded with GStreamer into the camera's ring like any other source.
//!
//! [`PhoneFeed`] is shared by the WebSocket handler (`web/phone.rs`, which pushes chunks) and
//! the capture thread (which builds `appsrc ! decodebin ! videoconvert` through
//! [`GstSource::open_fed`] and attaches the appsrc). The feed keeps the connection's first
//! chunk — the only one with the container's init segment — and pushes it first into every
//! pipeline it is attached to, so a decoder can be rebuilt mid-stream (later chunks alone are not
//! decodable).
//!
//! Bounded: chunks go straight into the appsrc. When more than [`MAX_QUEUED_BYTES`] would wait
//! there (a decoder slower than the phone), the feed does **not** drop that one chunk — the rest
//! of the container stream would be spliced, which a demuxer cannot follow. It ends the pipeline
//! instead (EOS: the decoder drains what it has), drops (and counts) chunks until the capture
//! loop has built a new one, and that one starts again from the init segment. Memory never grows
//! with a slow pipeline. Also tracks the connected client for `GET /api/clients`.

use super::gst::{GstSource, Guard, SharedOffset};
use super::{CaptureError, SoundEvent, SoundTap};
use crate::gst::Pipeline;
use crate::time::{rfc3339_ms, wall_now_ms};
use bytes::Bytes;
use gst::prelude::*;
use gstreamer as gst;
use gstreamer_app as gst_app;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Bytes allowed to wait in the appsrc before new chunks are dropped.
pub const MAX_QUEUED_BYTES: u64 = 4 << 20;

/// The appsrc's name in the source pipeline.
const APPSRC: &str = "hindsight_browser";

/// The source pipeline (hindsight appends its appsink).
pub const PIPELINE: &str = "appsrc name=hindsight_browser is-live=true format=bytes block=false ! decodebin name=dec \
                            ! videoconvert ! video/x-raw,format=I420";

/// What a phone camera that wants sound says when the phone sends none.
pub const NO_SOUND: &str = "the phone sends no sound: allow the microphone (the phone page's Microphone switch, \
                            and the browser's permission), then start the camera again";

/// What the first chunk of a connection must start with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Container {
    /// Matroska/WebM: the EBML header.
    Webm,
    /// ISO BMFF (MP4): an `ftyp` box.
    Mp4,
}

impl Container {
    /// The container whose init segment `chunk` starts with, if any.
    pub fn sniff(chunk: &[u8]) -> Option<Container> {
        if chunk.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
            Some(Container::Webm)
        } else if chunk.len() >= 8 && &chunk[4..8] == b"ftyp" {
            Some(Container::Mp4)
        } else {
            None
        }
    }
}

/// Why a chunk was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FeedError {
    /// The first chunk of a connection is not the start of a recording.
    #[error(
        "the first chunk has no init segment (expected a WebM EBML header or an MP4 ftyp box): \
         send MediaRecorder chunks from the start of the recording"
    )]
    NoInitSegment,
}

/// `GET /api/clients` entry.
#[derive(Debug, Clone, Serialize)]
pub struct ClientInfo {
    /// The camera it feeds.
    pub camera: String,
    /// Peer address.
    pub address: Option<String>,
    /// `User-Agent` of the WebSocket request.
    pub user_agent: Option<String>,
    /// When the (last) connection opened, RFC 3339.
    pub connected_at: String,
    /// When the last chunk (or the connection) arrived, RFC 3339.
    pub last_seen_at: String,
    /// Whether it is connected now.
    pub connected: bool,
    /// Chunks received on the (last) connection.
    pub chunks: u64,
    /// Bytes received on the (last) connection.
    pub bytes: u64,
    /// Frames decoded from the (last) connection.
    pub frames_received: u64,
    /// Chunks dropped because the decoder was behind.
    pub chunks_dropped: u64,
    /// Container of the stream, once known.
    pub container: Option<Container>,
}

#[derive(Default)]
struct Inner {
    /// The current connection's first chunk.
    init: Option<Bytes>,
    container: Option<Container>,
    /// The appsrc of the running source pipeline.
    appsrc: Option<gst_app::AppSrc>,
    /// Bumped by every attach, so a stale guard does not detach a newer pipeline.
    attach_gen: u64,
    client: Option<Client>,
}

struct Client {
    address: Option<String>,
    user_agent: Option<String>,
    /// Unix ms.
    connected_at: i64,
    /// Unix ms.
    last_seen_at: i64,
    connected: bool,
    frames_at_connect: u64,
}

/// Chunks from a browser on their way into the camera's source pipeline.
pub struct PhoneFeed {
    camera: String,
    inner: Mutex<Inner>,
    /// Bumped on each new connection; a handler whose generation is no longer current was
    /// replaced (or the daemon is closing) and must end.
    generation: tokio::sync::watch::Sender<u64>,
    chunks: AtomicU64,
    bytes: AtomicU64,
    dropped: AtomicU64,
    /// Serialises connect/disconnect (camera start/stop) of successive connections.
    pub control: tokio::sync::Mutex<()>,
    /// When the feed was made (idle time of a camera no phone ever connected to).
    created: std::time::Instant,
}

impl PhoneFeed {
    /// An idle feed for `camera`.
    pub fn new(camera: &str) -> Self {
        PhoneFeed {
            camera: camera.into(),
            inner: Mutex::new(Inner::default()),
            generation: tokio::sync::watch::channel(0).0,
            chunks: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            control: tokio::sync::Mutex::new(()),
            created: std::time::Instant::now(),
        }
    }

    /// How long no phone has been connected: `None` while one is, else the time since the last
    /// one left (or since the feed was made, if none ever came).
    pub fn idle_for(&self) -> Option<std::time::Duration> {
        let inner = self.lock();
        match &inner.client {
            Some(c) if c.connected => None,
            Some(c) => {
                Some(std::time::Duration::from_millis(wall_now_ms().saturating_sub(c.last_seen_at).max(0) as u64))
            }
            None => Some(self.created.elapsed()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new connection takes the feed: forget the previous stream's init segment and counters,
    /// record the client, and signal any previous handler to end. Returns the connection's
    /// generation. `frames_now` is the camera's `frames_captured` (frames are counted from here).
    pub fn connect(&self, address: Option<String>, user_agent: Option<String>, frames_now: u64) -> u64 {
        let mut inner = self.lock();
        inner.init = None;
        inner.container = None;
        let now = wall_now_ms();
        inner.client = Some(Client {
            address,
            user_agent,
            connected_at: now,
            last_seen_at: now,
            connected: true,
            frames_at_connect: frames_now,
        });
        self.chunks.store(0, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
        self.dropped.store(0, Ordering::Relaxed);
        let mut g = 0;
        self.generation.send_modify(|v| {
            *v += 1;
            g = *v;
        });
        g
    }

    /// The connection of generation `gen` ended; returns whether it was still the current one
    /// (then the caller stops the camera).
    pub fn disconnect(&self, gen: u64) -> bool {
        if *self.generation.borrow() != gen {
            return false;
        }
        let mut inner = self.lock();
        // The init segment belongs to this connection's stream (up to MAX_MESSAGE bytes).
        inner.init = None;
        if let Some(c) = inner.client.as_mut() {
            c.connected = false;
            c.last_seen_at = wall_now_ms();
        }
        true
    }

    /// Tell the current handler to end (daemon shutdown, camera stopped from the API); the
    /// client counts as gone from now.
    pub fn kick(&self) {
        if let Some(c) = self.lock().client.as_mut().filter(|c| c.connected) {
            c.connected = false;
            c.last_seen_at = wall_now_ms();
        }
        self.generation.send_modify(|v| *v += 1);
    }

    /// Watch the generation (a change means: this connection was replaced).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// The current generation.
    pub fn generation(&self) -> u64 {
        *self.generation.borrow()
    }

    /// A chunk from the browser: the first of a connection must carry the init segment (kept,
    /// and replayed into every new pipeline). Every chunk goes into the attached pipeline; when
    /// the pipeline is behind by more than [`MAX_QUEUED_BYTES`] it is ended instead of spliced
    /// (see the module docs), and chunks are dropped (counted) until a new one is attached.
    /// Never blocks.
    pub fn push(&self, chunk: Bytes) -> Result<(), FeedError> {
        let mut inner = self.lock();
        let first = inner.init.is_none();
        if first {
            let c = Container::sniff(&chunk).ok_or(FeedError::NoInitSegment)?;
            inner.container = Some(c);
            inner.init = Some(chunk.clone());
        }
        self.chunks.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        if let Some(c) = inner.client.as_mut() {
            c.last_seen_at = wall_now_ms();
        }
        let Some(src) = &inner.appsrc else {
            // Between pipelines (start, restart, back-off): the next one gets the init segment
            // and resynchronises on a later chunk. The init chunk itself is not lost.
            if !first {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            return Ok(());
        };
        if src.current_level_bytes() + chunk.len() as u64 > MAX_QUEUED_BYTES {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            log::warn!(
                "camera {}: the decoder is {} bytes behind the phone; restarting it from the init segment",
                self.camera,
                src.current_level_bytes()
            );
            let _ = src.end_of_stream();
            inner.appsrc = None;
            return Ok(());
        }
        // A flushing or stopped appsrc refuses: the pipeline is going away anyway.
        let _ = src.push_buffer(gst::Buffer::from_slice(chunk));
        Ok(())
    }

    /// Connect `src` (a new source pipeline): it gets the init segment first. Returns the
    /// attach generation for [`detach`](Self::detach).
    fn attach(&self, src: gst_app::AppSrc) -> u64 {
        let mut inner = self.lock();
        if let Some(init) = &inner.init {
            let _ = src.push_buffer(gst::Buffer::from_slice(init.clone()));
        }
        inner.appsrc = Some(src);
        inner.attach_gen += 1;
        inner.attach_gen
    }

    fn detach(&self, gen: u64) {
        let mut inner = self.lock();
        if inner.attach_gen == gen {
            inner.appsrc = None;
        }
    }

    /// Chunks dropped on this connection because the decoder was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The client, for `GET /api/clients` (`None`: no phone ever connected).
    pub fn client(&self, frames_now: u64) -> Option<ClientInfo> {
        let inner = self.lock();
        let c = inner.client.as_ref()?;
        Some(ClientInfo {
            camera: self.camera.clone(),
            address: c.address.clone(),
            user_agent: c.user_agent.clone(),
            connected_at: rfc3339_ms(c.connected_at),
            last_seen_at: rfc3339_ms(c.last_seen_at),
            connected: c.connected,
            chunks: self.chunks.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            frames_received: frames_now.saturating_sub(c.frames_at_connect),
            chunks_dropped: self.dropped(),
            container: inner.container,
        })
    }

    /// Open a decoding source pipeline fed by this feed; the phone's sound (Opus or AAC, decoded
    /// and encoded to AAC once) goes to `sound` when given, and is discarded otherwise.
    pub fn open(self: &Arc<Self>, sound: Option<SoundTap>) -> Result<GstSource, CaptureError> {
        let feed = self.clone();
        let offset = SharedOffset::new();
        let dated = offset.clone();
        let mut src = GstSource::open_fed(PIPELINE, move |pipeline: &Pipeline| {
            let src: gst_app::AppSrc = pipeline.by_name(APPSRC)?;
            let dec: gst::Element = pipeline.by_name("dec")?;
            take_sound(pipeline, &dec, sound, dated);
            src.set_max_bytes(MAX_QUEUED_BYTES);
            let gen = feed.attach(src);
            let guard: Guard = Box::new(Detach { feed, gen });
            Ok(guard)
        })?;
        src.share_offset(offset);
        Ok(src)
    }
}

/// Audio pads of the phone's decoder: the first to `sound` (a [`super::sound`] branch), any
/// other (or all, without `sound`) drained. Video pads are linked by the description. A phone
/// that sends no sound to a camera that wants it is told so in the camera's audio status.
fn take_sound(pipeline: &Pipeline, dec: &gst::Element, sound: Option<SoundTap>, offset: SharedOffset) {
    let bin = pipeline.inner().downgrade();
    let heard = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let linked = heard.clone();
    let wanted = sound.as_ref().map(|tap| tap.deliver.clone());
    dec.connect_pad_added(move |_, pad| {
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        if !caps.structure(0).is_some_and(|s| s.name().starts_with("audio/")) {
            return;
        }
        let Some(bin) = bin.upgrade() else { return };
        if let Some(tap) = sound.as_ref().filter(|_| !linked.swap(true, Ordering::Relaxed)) {
            let chain = super::sound::Chain::encoded(tap, "");
            match super::sound::link(&bin, pad, chain, tap, offset.clone(), "the phone's sound") {
                Ok(()) => return,
                Err(e) => (tap.deliver)(SoundEvent::Failed(e)),
            }
        }
        super::sound::discard(&bin, pad);
    });
    dec.connect_no_more_pads(move |_| {
        if let Some(deliver) = wanted.as_ref().filter(|_| !heard.load(Ordering::Relaxed)) {
            deliver(SoundEvent::Failed(NO_SOUND.into()));
        }
    });
}

/// Detaches the feed from a pipeline that is being dropped.
struct Detach {
    feed: Arc<PhoneFeed>,
    gen: u64,
}

impl Drop for Detach {
    fn drop(&mut self) {
        self.feed.detach(self.gen);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_chunk_must_be_an_init_segment() {
        let f = PhoneFeed::new("p");
        f.connect(None, None, 0);
        assert_eq!(f.push(Bytes::from_static(b"\x1f\x43\xb6\x75cluster")), Err(FeedError::NoInitSegment));
        assert!(f.push(Bytes::from_static(&[0x1A, 0x45, 0xDF, 0xA3, 1, 2])).is_ok());
        // Later chunks are not checked.
        assert!(f.push(Bytes::from_static(b"\x1f\x43\xb6\x75cluster")).is_ok());
        let c = f.client(0).expect("client recorded");
        assert_eq!((c.chunks, c.bytes, c.container), (2, 17, Some(Container::Webm)));
        // A new connection must start over.
        f.connect(None, None, 0);
        assert_eq!(f.push(Bytes::from_static(b"\x1f\x43\xb6\x75cluster")), Err(FeedError::NoInitSegment));
        assert!(f.push(Bytes::from_static(b"\0\0\0\x18ftypmp42")).is_ok());
        assert_eq!(f.client(0).and_then(|c| c.container), Some(Container::Mp4));
    }

    #[test]
    fn a_replaced_connection_does_not_disconnect_the_new_one() {
        let f = PhoneFeed::new("p");
        let a = f.connect(None, None, 0);
        let b = f.connect(None, None, 0);
        assert!(!f.disconnect(a));
        assert!(f.client(0).is_some_and(|c| c.connected));
        assert!(f.disconnect(b));
        assert!(f.client(0).is_some_and(|c| !c.connected));
    }
}
