//! The preview's own stream (`preview_url`): a network camera's substream, the usual way NVRs keep
//! the preview cheap — a 640x360 substream decodes in a fraction of the main stream's CPU, and an
//! MJPEG one is passed through without any decode.
//!
//! The preview thread reads it only while someone watches. The camera layer supplies the opener
//! (this module sees no capture code): opening blocks until the first frame (up to 10 s), so it
//! runs on a short-lived helper thread and the preview thread keeps publishing "NO SIGNAL" and
//! noticing stop requests meanwhile. A failed open or read is retried with back-off; dropping the
//! [`SubstreamReader`] closes the connection.

use crate::frame::Frame;
use crate::shutdown::Backoff;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An open substream: the next frame within the timeout (`Ok(None)`: none yet), or why it failed
/// (redacted: the URL may hold a password).
pub type SubstreamReader = Box<dyn FnMut(Duration) -> Result<Option<Frame>, String> + Send>;

/// Opens the substream (blocking until its first frame); the error is redacted.
pub type SubstreamOpener = Arc<dyn Fn() -> Result<SubstreamReader, String> + Send + Sync>;

/// A camera's preview stream.
#[derive(Clone)]
pub struct Substream {
    /// How logs show it (URL redacted).
    pub shown: String,
    /// How to open it.
    pub open: SubstreamOpener,
}

impl std::fmt::Debug for Substream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Substream").field("shown", &self.shown).finish()
    }
}

/// The preview thread's side of a substream: opening, reading, reopening.
pub struct SubstreamState {
    sub: Substream,
    camera: String,
    reader: Option<SubstreamReader>,
    opening: Option<mpsc::Receiver<Result<SubstreamReader, String>>>,
    backoff: Backoff,
    retry_at: Option<Instant>,
    /// The open substream delivered a frame since it was opened (the back-off resets then).
    delivered: bool,
}

impl SubstreamState {
    /// Nothing open yet.
    pub fn new(sub: Substream, camera: &str) -> Self {
        SubstreamState {
            sub,
            camera: camera.into(),
            reader: None,
            opening: None,
            backoff: Backoff::default(),
            retry_at: None,
            delivered: false,
        }
    }

    /// The next frame within about `timeout`: opens the substream when it is not open (on a
    /// helper thread), reopens it with back-off after a failure.
    pub fn next(&mut self, timeout: Duration) -> Option<Frame> {
        if self.reader.is_none() {
            self.poll_open(timeout);
        }
        let reader = self.reader.as_mut()?;
        match reader(timeout) {
            Ok(Some(frame)) => {
                if !self.delivered {
                    self.delivered = true;
                    self.backoff.reset();
                }
                Some(frame)
            }
            Ok(None) => None,
            Err(e) => {
                self.failed(&e);
                None
            }
        }
    }

    /// Close the substream (nobody watches); the next [`next`](Self::next) opens it again.
    pub fn close(&mut self) {
        self.reader = None;
        self.opening = None;
        self.retry_at = None;
    }

    fn failed(&mut self, e: &str) {
        let delay = self.backoff.next_delay();
        log::warn!("camera {}: preview substream {}: {e}; retrying in {delay:?}", self.camera, self.sub.shown);
        self.reader = None;
        self.delivered = false;
        self.retry_at = Some(Instant::now() + delay);
    }

    /// Start an open when due; take its result when ready (waiting at most `timeout`).
    fn poll_open(&mut self, timeout: Duration) {
        if self.opening.is_none() {
            if self.retry_at.is_some_and(|t| Instant::now() < t) {
                std::thread::sleep(timeout.min(self.retry_at.map_or(timeout, |t| t - Instant::now())));
                return;
            }
            let (tx, rx) = mpsc::channel();
            let open = self.sub.open.clone();
            let spawned = std::thread::Builder::new().name(format!("substream-{}", self.camera)).spawn(move || {
                // The receiver may be gone (the preview stopped): the reader is dropped here.
                let _ = tx.send(open());
            });
            match spawned {
                Ok(_) => self.opening = Some(rx),
                Err(e) => return self.failed(&format!("cannot start a thread: {e}")),
            }
        }
        let Some(rx) = &self.opening else { return };
        match rx.recv_timeout(timeout) {
            Ok(Ok(reader)) => {
                log::info!("camera {}: preview from substream {}", self.camera, self.sub.shown);
                self.opening = None;
                self.reader = Some(reader);
            }
            Ok(Err(e)) => {
                self.opening = None;
                self.failed(&e);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                self.opening = None;
                self.failed("the opening thread ended without an answer");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{PixelFormat, VideoFormat};
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn frame(seq: u64) -> Frame {
        let format = VideoFormat { pixel: PixelFormat::Mjpeg, width: 32, height: 24, fps: 10 };
        Frame { data: bytes::Bytes::from_static(b"jpeg"), format, captured: Duration::ZERO, seq }
    }

    /// Opens fail once, then a reader gives two frames and fails; the state reopens each time.
    #[test]
    fn opens_on_a_helper_thread_and_reopens_after_failures() {
        let opens = Arc::new(AtomicUsize::new(0));
        let counter = opens.clone();
        let open: SubstreamOpener = Arc::new(move || {
            if counter.fetch_add(1, Ordering::SeqCst) == 0 {
                return Err("401 Unauthorized".into());
            }
            let mut n = 0;
            Ok(Box::new(move |_| {
                n += 1;
                if n <= 2 {
                    Ok(Some(frame(n)))
                } else {
                    Err("connection closed".into())
                }
            }))
        });
        let mut s = SubstreamState::new(Substream { shown: "rtsp rtsp://***@cam/sub".into(), open }, "cam");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut got = Vec::new();
        while got.len() < 4 && Instant::now() < deadline {
            if let Some(f) = s.next(Duration::from_millis(50)) {
                got.push(f.seq);
            }
        }
        assert_eq!(got, [1, 2, 1, 2], "frames from the second and third opens");
        assert_eq!(opens.load(Ordering::SeqCst), 3, "a failed open and a failed read are each retried");
        s.close();
        assert!(s.reader.is_none() && s.opening.is_none());
    }
}
