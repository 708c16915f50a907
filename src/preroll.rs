//! The pre-roll buffer: encoded H.264 access units in RAM, indexed by GOP.
//!
//! [`PreRollState`] is a pure state machine (no clock, no I/O, no threads): it holds at least
//! `hold` of media (pre_s + one GOP), evicts whole GOPs from the front, and enforces a hard byte
//! cap. [`PreRoll`] shares it between the encoder (one writer) and any number of readers:
//! snapshots from a keyframe and [`Follower`]s that see new frames as they arrive. Readers get
//! clones of [`bytes::Bytes`], never copies of frame data. A reader that falls behind the
//! eviction point skips ahead to the next keyframe ([`Followed::Lagged`]); it never holds the buffer.
//!
//! Must never write to storage: this is what keeps the appliance from wearing out its SD card.

use crate::frame::EncodedFrame;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;

/// Counters describing the buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PreRollStats {
    /// Frames held.
    pub frames: usize,
    /// GOPs held.
    pub gops: usize,
    /// Bytes of frame data held.
    pub bytes: usize,
    /// Media time held: newest frame's end minus oldest frame's PTS.
    pub buffered: Duration,
    /// GOPs evicted because they were older than needed.
    pub evicted_gops: u64,
    /// GOPs evicted early to respect the byte cap.
    pub evicted_for_cap: u64,
    /// Frames refused because no keyframe had started a GOP yet.
    pub waiting_for_keyframe: u64,
}

/// Where a reader stands relative to the buffer.
#[derive(Debug)]
pub enum Lookup {
    /// The frame at that index.
    Frame(EncodedFrame),
    /// Not produced yet.
    NotYet,
    /// Evicted; the oldest keyframe still held is at this index.
    Gone(u64),
}

/// The GOP-indexed buffer, without locking or waiting.
#[derive(Debug)]
pub struct PreRollState {
    frames: VecDeque<EncodedFrame>,
    /// Absolute index of `frames[0]`; indexes only grow, so readers can hold them.
    first: u64,
    /// Absolute indexes of the keyframes held, oldest first. `frames[0]` is always a keyframe.
    gop_starts: VecDeque<u64>,
    bytes: usize,
    hold: Duration,
    cap: usize,
    stats: PreRollStats,
}

impl PreRollState {
    /// A buffer that keeps at least `hold` of media and at most `cap_bytes` of data.
    pub fn new(hold: Duration, cap_bytes: usize) -> Self {
        PreRollState {
            frames: VecDeque::new(),
            first: 0,
            gop_starts: VecDeque::new(),
            bytes: 0,
            hold,
            cap: cap_bytes,
            stats: PreRollStats::default(),
        }
    }

    /// Index the next pushed frame will get.
    pub fn next_index(&self) -> u64 {
        self.first + self.frames.len() as u64
    }

    /// Append an access unit. Frames before the first keyframe are refused (they could not be
    /// decoded). Returns whether the frame was kept.
    pub fn push(&mut self, frame: EncodedFrame) -> bool {
        if self.frames.is_empty() && !frame.keyframe {
            self.stats.waiting_for_keyframe += 1;
            return false;
        }
        if frame.keyframe {
            self.gop_starts.push_back(self.next_index());
        }
        self.bytes += frame.data.len();
        self.frames.push_back(frame);
        self.evict();
        !self.frames.is_empty()
    }

    fn end_time(&self) -> Duration {
        self.frames.back().map(|f| f.pts + f.duration).unwrap_or_default()
    }

    fn pts_at(&self, index: u64) -> Duration {
        self.frames[(index - self.first) as usize].pts
    }

    fn evict_first_gop(&mut self) {
        let end = self.gop_starts.get(1).copied().unwrap_or_else(|| self.next_index());
        while self.first < end {
            if let Some(f) = self.frames.pop_front() {
                self.bytes -= f.data.len();
            }
            self.first += 1;
        }
        self.gop_starts.pop_front();
    }

    fn evict(&mut self) {
        // Age: drop the oldest GOP while the rest still covers `hold`.
        while self.gop_starts.len() >= 2 {
            let second = self.pts_at(self.gop_starts[1]);
            if self.end_time().saturating_sub(second) >= self.hold {
                self.evict_first_gop();
                self.stats.evicted_gops += 1;
            } else {
                break;
            }
        }
        // Size: a hard cap, even if that leaves less than `hold`.
        while self.bytes > self.cap && !self.gop_starts.is_empty() {
            self.evict_first_gop();
            self.stats.evicted_for_cap += 1;
        }
    }

    /// Counters and sizes now.
    pub fn stats(&self) -> PreRollStats {
        PreRollStats {
            frames: self.frames.len(),
            gops: self.gop_starts.len(),
            bytes: self.bytes,
            buffered: match self.frames.front() {
                Some(f) => self.end_time().saturating_sub(f.pts),
                None => Duration::ZERO,
            },
            ..self.stats
        }
    }

    /// The frame at absolute `index`.
    pub fn get(&self, index: u64) -> Lookup {
        if index < self.first {
            return match self.gop_starts.front() {
                Some(&k) => Lookup::Gone(k),
                None => Lookup::Gone(self.next_index()),
            };
        }
        match self.frames.get((index - self.first) as usize) {
            Some(f) => Lookup::Frame(f.clone()),
            None => Lookup::NotYet,
        }
    }

    /// Index of the keyframe at or before media time `t` (the oldest keyframe if `t` is older
    /// than the buffer), or `None` when the buffer is empty.
    pub fn keyframe_at_or_before(&self, t: Duration) -> Option<u64> {
        let mut best = *self.gop_starts.front()?;
        for &k in &self.gop_starts {
            if self.pts_at(k) <= t {
                best = k;
            } else {
                break;
            }
        }
        Some(best)
    }

    /// Index of the newest keyframe.
    pub fn newest_keyframe(&self) -> Option<u64> {
        self.gop_starts.back().copied()
    }

    /// All frames from the keyframe at or before `t` to the newest, with the start index.
    /// Clones `Bytes` handles only.
    pub fn snapshot_from(&self, t: Duration) -> Option<(u64, Vec<EncodedFrame>)> {
        let start = self.keyframe_at_or_before(t)?;
        let v = self.frames.range((start - self.first) as usize..).cloned().collect();
        Some((start, v))
    }

    /// Iterate over the frames held, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &EncodedFrame> {
        self.frames.iter()
    }
}

/// The shared pre-roll buffer of one camera: one writer (the encoder), many readers.
pub struct PreRoll {
    state: Mutex<PreRollState>,
    arrived: Condvar,
    newest: watch::Sender<u64>,
}

/// What a [`Follower`] got.
#[derive(Debug)]
pub enum Followed {
    /// The next frame in order.
    Frame(EncodedFrame),
    /// The reader fell behind eviction and was moved to the oldest keyframe still held;
    /// `skipped` frames were never seen.
    Lagged {
        /// How many frames were skipped.
        skipped: u64,
    },
    /// Nothing new within the timeout (blocking reads only).
    Timeout,
}

impl PreRoll {
    /// An empty buffer: see [`PreRollState::new`].
    pub fn new(hold: Duration, cap_bytes: usize) -> Self {
        PreRoll {
            state: Mutex::new(PreRollState::new(hold, cap_bytes)),
            arrived: Condvar::new(),
            newest: watch::channel(0).0,
        }
    }

    /// Lock the state for a consistent read (keep it short: the encoder waits on it).
    pub fn lock(&self) -> MutexGuard<'_, PreRollState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Append an access unit and wake readers.
    pub fn push(&self, frame: EncodedFrame) -> bool {
        let (kept, next) = {
            let mut s = self.lock();
            let kept = s.push(frame);
            (kept, s.next_index())
        };
        self.newest.send_replace(next);
        self.arrived.notify_all();
        kept
    }

    /// Counters and sizes now.
    pub fn stats(&self) -> PreRollStats {
        self.lock().stats()
    }

    /// A follower that starts at the keyframe at or before `t`, or at the next frame if the
    /// buffer is empty.
    pub fn follow_from_time(self: &Arc<Self>, t: Duration) -> Follower {
        let next = {
            let s = self.lock();
            s.keyframe_at_or_before(t).unwrap_or_else(|| s.next_index())
        };
        Follower { preroll: self.clone(), next, rx: self.newest.subscribe() }
    }

    /// A follower that starts with the next keyframe to arrive (live viewers).
    pub fn follow_live(self: &Arc<Self>) -> Follower {
        let next = self.lock().next_index();
        Follower { preroll: self.clone(), next, rx: self.newest.subscribe() }
    }
}

/// A reader walking forward through the buffer as frames arrive.
pub struct Follower {
    preroll: Arc<PreRoll>,
    next: u64,
    rx: watch::Receiver<u64>,
}

impl Follower {
    /// Index of the frame [`next`](Self::next) returns next.
    pub fn position(&self) -> u64 {
        self.next
    }

    fn try_next(&mut self) -> Option<Followed> {
        match self.preroll.lock().get(self.next) {
            Lookup::Frame(f) => {
                self.next += 1;
                Some(Followed::Frame(f))
            }
            Lookup::NotYet => None,
            Lookup::Gone(k) => {
                let skipped = k - self.next;
                self.next = k;
                Some(Followed::Lagged { skipped })
            }
        }
    }

    /// Wait (async) for the next frame.
    pub async fn next(&mut self) -> Followed {
        loop {
            if let Some(n) = self.try_next() {
                return n;
            }
            if self.rx.changed().await.is_err() {
                return Followed::Timeout;
            }
        }
    }

    /// Wait (blocking thread) up to `timeout` for the next frame.
    pub fn next_blocking(&mut self, timeout: Duration) -> Followed {
        let deadline = std::time::Instant::now() + timeout;
        let mut s = self.preroll.lock();
        loop {
            match s.get(self.next) {
                Lookup::Frame(f) => {
                    self.next += 1;
                    return Followed::Frame(f);
                }
                Lookup::Gone(k) => {
                    let skipped = k - self.next;
                    self.next = k;
                    return Followed::Lagged { skipped };
                }
                Lookup::NotYet => {}
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Followed::Timeout;
            }
            s = self.preroll.arrived.wait_timeout(s, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const FPS: u64 = 10;

    /// Frame `i` of a 10 fps stream with a keyframe every `gop` frames.
    fn au(i: u64, gop: u64, size: usize) -> EncodedFrame {
        let pts = Duration::from_millis(i * 1000 / FPS);
        EncodedFrame {
            data: Bytes::from(vec![0u8; size]),
            pts,
            dts: pts,
            duration: Duration::from_millis(1000 / FPS),
            keyframe: i % gop == 0,
            seq: i,
        }
    }

    #[test]
    fn refuses_frames_before_first_keyframe() {
        let mut s = PreRollState::new(Duration::from_secs(1), 1 << 20);
        assert!(!s.push(au(3, 10, 1)));
        assert!(s.push(au(10, 10, 1)));
        assert_eq!(s.stats().waiting_for_keyframe, 1);
        assert_eq!(s.stats().frames, 1);
    }

    #[test]
    fn holds_at_least_hold_and_evicts_whole_gops() {
        // hold = 5 s + one GOP (1 s) at 10 fps.
        let mut s = PreRollState::new(Duration::from_secs(6), 1 << 30);
        for i in 0..200 {
            s.push(au(i, 10, 100));
            let st = s.stats();
            if i >= 60 {
                assert!(st.buffered >= Duration::from_secs(6), "at {i}: {:?}", st.buffered);
                // Never more than one extra GOP beyond what is needed.
                assert!(st.buffered < Duration::from_secs(7) + Duration::from_millis(100), "at {i}: {:?}", st.buffered);
            }
            // Oldest frame is always a keyframe.
            assert!(s.iter().next().unwrap().keyframe);
        }
        assert!(s.stats().evicted_gops > 0);
    }

    #[test]
    fn byte_cap_is_hard_and_keeps_gop_boundaries() {
        let mut s = PreRollState::new(Duration::from_secs(60), 2500);
        for i in 0..100 {
            s.push(au(i, 10, 100));
            assert!(s.stats().bytes <= 2500);
            if let Some(f) = s.iter().next() {
                assert!(f.keyframe);
            }
        }
        let st = s.stats();
        assert!(st.evicted_for_cap > 0);
        assert!(st.frames >= 10, "{st:?}");
    }

    #[test]
    fn snapshot_starts_at_keyframe_at_or_before() {
        let mut s = PreRollState::new(Duration::from_secs(60), 1 << 30);
        for i in 0..50 {
            s.push(au(i, 10, 1));
        }
        let (start, frames) = s.snapshot_from(Duration::from_millis(2500)).unwrap();
        assert_eq!(start, 20);
        assert_eq!(frames.first().unwrap().seq, 20);
        assert_eq!(frames.last().unwrap().seq, 49);
        // Older than the buffer: oldest keyframe.
        assert_eq!(s.keyframe_at_or_before(Duration::ZERO), Some(0));
    }

    #[test]
    fn follower_sees_new_frames_and_skips_ahead_when_lagging() {
        let p = Arc::new(PreRoll::new(Duration::from_secs(1), 1 << 30));
        for i in 0..10 {
            p.push(au(i, 5, 1));
        }
        let mut f = p.follow_from_time(Duration::from_millis(700));
        match f.next_blocking(Duration::ZERO) {
            Followed::Frame(fr) => assert_eq!(fr.seq, 5),
            other => panic!("{other:?}"),
        }
        assert!(matches!(f.next_blocking(Duration::from_millis(1)), Followed::Frame(_)));
        // Push far ahead so the follower's position is evicted.
        for i in 10..60 {
            p.push(au(i, 5, 1));
        }
        match f.next_blocking(Duration::ZERO) {
            Followed::Lagged { skipped } => assert!(skipped > 0),
            other => panic!("{other:?}"),
        }
        match f.next_blocking(Duration::ZERO) {
            Followed::Frame(fr) => assert!(fr.keyframe),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn async_follower_wakes_on_push() {
        let p = std::sync::Arc::new(PreRoll::new(Duration::from_secs(1), 1 << 30));
        let p2 = p.clone();
        let h = tokio::spawn(async move {
            let mut f = p2.follow_from_time(Duration::ZERO);
            match f.next().await {
                Followed::Frame(fr) => fr.seq,
                other => panic!("{other:?}"),
            }
        });
        tokio::task::yield_now().await;
        p.push(au(0, 5, 1));
        assert_eq!(h.await.unwrap(), 0);
    }
}
