//! WebRTC live view (WHEP): the camera's H.264 from the pre-roll, passed through to browsers
//! with a quarter-second delay and a picture at once.
//!
//! - [`Webrtc`]: the handle the web face calls — an offer in, an answer and a session id out;
//!   close a session. One tokio task ([`server`]) owns every session and the one UDP socket
//!   ([`net`]); the handle talks to it over a bounded channel.
//! - [`session`]: one viewer, a str0m `Rtc` in ICE-lite mode answering with the camera's own
//!   H.264 profile (no second encoder; a browser that cannot decode it gets a 406 and uses HLS).
//! - Per camera with viewers, a feeder task follows the pre-roll from its newest keyframe and
//!   hands each access unit, copied once into an `Arc<[u8]>` shared by every viewer, to the
//!   server, which keeps the current GOP: a new viewer starts at its keyframe at once. A
//!   camera's sound goes out as Opus ([`opus`]: its AAC decoded and encoded once per camera,
//!   while a viewer takes sound), in the same stream as the picture so the browser syncs them.
//!
//! Must never block the runtime (str0m is sans-IO and the socket non-blocking), never let a
//! viewer grow memory (UDP: a viewer that stops reading costs nothing but its NACK history and
//! is ended when ICE consent lapses), and never give a viewer a frame it cannot decode.

pub mod net;
pub mod opus;
mod server;
pub mod session;

use crate::preroll::PreRoll;
use crate::status::CameraStatus;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Where a new viewer starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartAt {
    /// `Next` for a camera hindsight encodes (a live picture ~80 ms after the POST, measured),
    /// `Newest` for one passed through (which cannot be asked for a keyframe).
    #[default]
    Auto,
    /// At the newest keyframe in RAM, sent at once: a picture without waiting for the camera,
    /// up to a GOP old, live after a catch-up of ~1–2 s.
    Newest,
    /// At the next keyframe, which the camera is asked for (a camera passed through cannot be
    /// asked: the viewer waits for its next one).
    Next,
}

impl std::str::FromStr for StartAt {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(StartAt::Auto),
            "newest" => Ok(StartAt::Newest),
            "next" => Ok(StartAt::Next),
            _ => Err(format!("start={s:?}: expected \"auto\", \"newest\" or \"next\"")),
        }
    }
}

/// What the server needs of a camera.
#[derive(Clone)]
pub struct CameraFeed {
    /// The camera's id.
    pub id: Arc<str>,
    /// Its encoded frames.
    pub preroll: Arc<PreRoll>,
    /// Its status (keyframe requests, the viewer count).
    pub status: Arc<CameraStatus>,
}

/// An access unit as every viewer of a camera shares it.
pub struct Unit {
    /// Position in the camera's feed (consecutive).
    pub index: u64,
    /// Annex-B, SPS/PPS in-band before every IDR.
    pub data: Arc<[u8]>,
    /// Capture time on CLOCK_MONOTONIC.
    pub pts: Duration,
    /// An IDR.
    pub keyframe: bool,
}

/// The settings (`[http]` `webrtc_*`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// UDP port for every session (0: a free one).
    pub udp_port: u16,
    /// Viewers per camera at once.
    pub max_viewers: usize,
    /// Addresses announced; empty: the interfaces'.
    pub addresses: Vec<IpAddr>,
}

/// A session's answer.
#[derive(Debug)]
pub struct Answer {
    /// The session's id (its URL's last part).
    pub session: String,
    /// The SDP answer.
    pub sdp: String,
}

/// Why an offer or a close was refused.
#[derive(Debug, thiserror::Error)]
pub enum WhepError {
    /// Not an SDP offer we can answer (400).
    #[error("{0}")]
    BadOffer(String),
    /// No H.264 profile in common with the browser (406).
    #[error("{0}")]
    NoCodec(String),
    /// Too many viewers, no picture yet, or WebRTC not running (503).
    #[error("{0}")]
    Unavailable(String),
    /// No such session (404).
    #[error("{0}")]
    NotFound(String),
}

enum Command {
    Offer { feed: CameraFeed, sdp: String, start: StartAt, reply: oneshot::Sender<Result<Answer, WhepError>> },
    Close { camera: Arc<str>, session: String, reply: oneshot::Sender<Result<(), WhepError>> },
    Shutdown { reply: oneshot::Sender<()> },
}

/// The WebRTC server's handle.
pub struct Webrtc {
    commands: mpsc::Sender<Command>,
    port: u16,
}

impl Webrtc {
    /// Bind the UDP port and start the server task (inside the tokio runtime).
    pub fn start(settings: Settings) -> std::io::Result<Arc<Webrtc>> {
        let udp = net::Udp::bind(settings.udp_port)?;
        let port = udp.port();
        let provider = str0m::crypto::from_feature_flags();
        let cert = provider
            .dtls_provider
            .generate_certificate()
            .ok_or_else(|| std::io::Error::other("cannot make a DTLS certificate"))?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(server::run(udp, cert, settings, rx));
        Ok(Arc::new(Webrtc { commands: tx, port }))
    }

    /// The UDP port sessions use.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Answer a browser's offer for `feed`'s camera.
    pub async fn offer(&self, feed: CameraFeed, sdp: String, start: StartAt) -> Result<Answer, WhepError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Offer { feed, sdp, start, reply }).await?;
        rx.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// End a session (its viewer gets an RTCP BYE and a DTLS close).
    pub async fn close(&self, camera: &str, session: &str) -> Result<(), WhepError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Close { camera: camera.into(), session: session.to_owned(), reply }).await?;
        rx.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// End every session and stop the server.
    pub async fn shutdown(&self) {
        let (reply, rx) = oneshot::channel();
        if self.commands.send(Command::Shutdown { reply }).await.is_ok() {
            let _ = rx.await;
        }
    }

    async fn send(&self, c: Command) -> Result<(), WhepError> {
        self.commands.send(c).await.map_err(|_| stopped())
    }
}

fn stopped() -> WhepError {
    WhepError::Unavailable("WebRTC has stopped (the daemon is shutting down)".into())
}
