//! The frame ring between capture and encoder: a few raw frames in RAM.
//!
//! Bounded; [`FrameRing::push`] never blocks the capture thread (it takes a short lock and, when
//! full, drops the oldest frame and counts it). The encoder thread waits in [`FrameRing::pop`].
//! Owns no thread and does no I/O.

use crate::frame::Frame;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// A bounded drop-oldest queue of raw frames.
pub struct FrameRing {
    inner: Mutex<Inner>,
    ready: Condvar,
    /// Signalled when a frame is taken (for [`push_wait`](FrameRing::push_wait)).
    space: Condvar,
    capacity: usize,
    dropped: AtomicU64,
}

struct Inner {
    frames: VecDeque<Frame>,
    closed: bool,
}

/// What [`FrameRing::pop`] found.
#[derive(Debug)]
pub enum Pop {
    /// The oldest frame in the ring.
    Frame(Frame),
    /// Nothing arrived within the timeout.
    Timeout,
    /// The ring was closed (shutdown) and is empty.
    Closed,
}

impl FrameRing {
    /// A ring holding at most `capacity` frames (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        FrameRing {
            inner: Mutex::new(Inner { frames: VecDeque::with_capacity(capacity), closed: false }),
            ready: Condvar::new(),
            space: Condvar::new(),
            capacity,
            dropped: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere must not stop capture: the data is a plain queue, still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Add a frame; if the ring is full the oldest frame is dropped (and counted). Never blocks
    /// beyond a short lock.
    pub fn push(&self, frame: Frame) {
        let mut inner = self.lock();
        if inner.frames.len() >= self.capacity {
            inner.frames.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        inner.frames.push_back(frame);
        drop(inner);
        self.ready.notify_one();
    }

    /// Add a frame, waiting up to `max_wait` for room first; then, like [`push`](Self::push),
    /// drop the oldest. For sources that can be held back without losing anything (a browser's
    /// chunks wait, compressed, in front of the decoder) and arrive in bursts.
    pub fn push_wait(&self, frame: Frame, max_wait: Duration) {
        let deadline = std::time::Instant::now() + max_wait;
        let mut inner = self.lock();
        while inner.frames.len() >= self.capacity && !inner.closed {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            inner = self.space.wait_timeout(inner, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        drop(inner);
        self.push(frame);
    }

    /// Take the oldest frame, waiting up to `timeout` for one.
    pub fn pop(&self, timeout: Duration) -> Pop {
        let mut inner = self.lock();
        loop {
            if let Some(f) = inner.frames.pop_front() {
                drop(inner);
                self.space.notify_one();
                return Pop::Frame(f);
            }
            if inner.closed {
                return Pop::Closed;
            }
            let (guard, res) = self.ready.wait_timeout(inner, timeout).unwrap_or_else(|p| p.into_inner());
            inner = guard;
            if res.timed_out() && inner.frames.is_empty() {
                return if inner.closed { Pop::Closed } else { Pop::Timeout };
            }
        }
    }

    /// Drop every queued frame (e.g. when the encoder restarts) without counting them as drops.
    pub fn clear(&self) {
        self.lock().frames.clear();
        self.space.notify_all();
    }

    /// Wake the consumer and make [`pop`](Self::pop) return `Closed` once empty.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
        self.space.notify_all();
    }

    /// Re-open after [`close`](Self::close) (camera restarted).
    pub fn reopen(&self) {
        self.lock().closed = false;
    }

    /// Frames dropped because the consumer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Frames waiting now.
    pub fn len(&self) -> usize {
        self.lock().frames.len()
    }

    /// Whether no frame is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{PixelFormat, VideoFormat};
    use bytes::Bytes;

    fn frame(seq: u64) -> Frame {
        Frame {
            data: Bytes::from_static(b"x"),
            format: VideoFormat { pixel: PixelFormat::I420, width: 2, height: 2, fps: 1 },
            captured: Duration::from_millis(seq),
            seq,
        }
    }

    #[test]
    fn drops_oldest_when_full_and_counts() {
        let r = FrameRing::new(3);
        for i in 0..5 {
            r.push(frame(i));
        }
        assert_eq!(r.dropped(), 2);
        let seqs: Vec<u64> = (0..3)
            .map(|_| match r.pop(Duration::ZERO) {
                Pop::Frame(f) => f.seq,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(seqs, vec![2, 3, 4]);
        assert!(matches!(r.pop(Duration::from_millis(1)), Pop::Timeout));
        r.close();
        assert!(matches!(r.pop(Duration::from_secs(5)), Pop::Closed));
    }

    #[test]
    fn push_wait_waits_for_room_then_drops_oldest() {
        let r = std::sync::Arc::new(FrameRing::new(1));
        r.push(frame(1));
        // The consumer takes frame 1: the waiting push gets in without a drop.
        let r2 = r.clone();
        let t = std::thread::spawn(move || r2.push_wait(frame(2), Duration::from_secs(30)));
        match r.pop(Duration::from_secs(5)) {
            Pop::Frame(f) => assert_eq!(f.seq, 1),
            other => panic!("{other:?}"),
        }
        t.join().unwrap();
        assert_eq!(r.dropped(), 0);
        // Nobody takes frame 2: after the wait the oldest is dropped.
        r.push_wait(frame(3), Duration::from_millis(20));
        assert_eq!(r.dropped(), 1);
        assert!(matches!(r.pop(Duration::ZERO), Pop::Frame(f) if f.seq == 3));
    }

    #[test]
    fn pop_wakes_on_push_from_other_thread() {
        let r = std::sync::Arc::new(FrameRing::new(2));
        let r2 = r.clone();
        let t = std::thread::spawn(move || r2.pop(Duration::from_secs(30)));
        r.push(frame(7));
        match t.join().unwrap() {
            Pop::Frame(f) => assert_eq!(f.seq, 7),
            other => panic!("{other:?}"),
        }
    }
}
