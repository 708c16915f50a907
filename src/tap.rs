//! The latest-raw-frame tap: a one-frame slot the capture loop publishes every frame into, read
//! by the MJPEG preview thread.
//!
//! Publishing is a flag check and, only while the preview wants frames, a short lock that
//! replaces the slot's frame (a `Bytes` reference-count increment, never a pixel copy) and wakes
//! the reader. While nobody watches, the slot is empty and holds no frame memory.
//!
//! Must never block capture beyond that short lock and never hold more than one frame.

use crate::frame::Frame;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// A latest-value slot for raw frames.
#[derive(Default)]
pub struct FrameTap {
    wanted: AtomicBool,
    slot: Mutex<Slot>,
    ready: Condvar,
}

#[derive(Default)]
struct Slot {
    frame: Option<Frame>,
    /// Bumped on every publish; readers remember the last version they took.
    version: u64,
    /// Readers blocked in [`FrameTap::wait_newer`] now (tests await it before publishing).
    waiting: usize,
}

impl FrameTap {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Called by capture for every frame: keeps it only while a reader wants frames.
    pub fn publish(&self, frame: &Frame) {
        if !self.wanted.load(Ordering::Relaxed) {
            return;
        }
        let mut s = self.lock();
        s.frame = Some(frame.clone());
        s.version += 1;
        drop(s);
        self.ready.notify_all();
    }

    /// Start or stop keeping frames. Stopping drops the held frame.
    pub fn set_wanted(&self, on: bool) {
        self.wanted.store(on, Ordering::SeqCst);
        if !on {
            self.lock().frame = None;
        }
    }

    /// Whether frames are being kept.
    pub fn wanted(&self) -> bool {
        self.wanted.load(Ordering::Relaxed)
    }

    /// Wait up to `timeout` for a frame newer than version `seen`; returns it with its version.
    /// Frames published in between are skipped: the reader always gets the newest.
    pub fn wait_newer(&self, seen: u64, timeout: Duration) -> Option<(u64, Frame)> {
        let deadline = std::time::Instant::now() + timeout;
        let mut s = self.lock();
        loop {
            if s.version > seen {
                if let Some(f) = &s.frame {
                    return Some((s.version, f.clone()));
                }
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return None;
            }
            s.waiting += 1;
            s = self.ready.wait_timeout(s, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
            s.waiting -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{PixelFormat, VideoFormat};

    fn frame(seq: u64) -> Frame {
        Frame {
            data: bytes::Bytes::from_static(b"x"),
            format: VideoFormat { pixel: PixelFormat::Mjpeg, width: 2, height: 2, fps: 1 },
            captured: Duration::from_millis(seq),
            seq,
        }
    }

    #[test]
    fn keeps_only_while_wanted_and_only_the_newest() {
        let tap = FrameTap::default();
        tap.publish(&frame(1));
        assert!(tap.wait_newer(0, Duration::ZERO).is_none(), "unwanted frames are not kept");
        tap.set_wanted(true);
        tap.publish(&frame(2));
        tap.publish(&frame(3));
        let (v, f) = tap.wait_newer(0, Duration::ZERO).unwrap();
        assert_eq!(f.seq, 3, "the reader skips to the newest frame");
        assert!(tap.wait_newer(v, Duration::from_millis(10)).is_none(), "nothing newer yet");
        tap.set_wanted(false);
        assert!(tap.lock().frame.is_none(), "stopping drops the held frame");
    }

    #[test]
    fn wakes_a_waiting_reader() {
        let tap = std::sync::Arc::new(FrameTap::default());
        tap.set_wanted(true);
        let t2 = tap.clone();
        let h = std::thread::spawn(move || t2.wait_newer(0, Duration::from_secs(60)).map(|(_, f)| f.seq));
        // Publish only once the reader is blocked in the wait, so the wake-up path is what runs.
        while tap.lock().waiting == 0 {
            std::thread::yield_now();
        }
        tap.publish(&frame(7));
        assert_eq!(h.join().unwrap(), Some(7));
    }
}
