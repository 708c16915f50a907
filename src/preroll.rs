//! The pre-roll buffer: encoded H.264 access units in RAM, indexed by GOP, with the camera's
//! AAC frames interleaved as they arrive (each dated by its capture time, like the video).
//!
//! [`PreRollState`] is a pure state machine (no clock, no I/O, no threads): it holds at least
//! `hold` of media (pre_s + one GOP), evicts whole GOPs from the front, and enforces a hard byte
//! cap. [`PreRoll`] shares it between the encoder (one writer) and any number of readers:
//! snapshots from a keyframe and [`Follower`]s that see new frames as they arrive. Readers get
//! clones of [`bytes::Bytes`], never copies of frame data. A reader that falls behind the
//! eviction point skips ahead to the next keyframe ([`Followed::Lagged`]); it never holds the buffer.
//!
//! Sound goes where it arrives: an AAC frame is dated by its first sample's capture time but
//! comes out of its encoder later than the video of that instant (or, behind a slow video
//! encoder, earlier), so readers sort it into place by its time, and a reader that starts at a
//! keyframe may ask for the sound that arrived just before it ([`PreRoll::follow_av_from_time`]).
//! Eviction takes a GOP with the sound that arrived during it; the byte cap counts both.
//!
//! Must never write to storage: this is what keeps the appliance from wearing out its SD card.

use crate::frame::{AudioFrame, EncodedFrame};
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
    /// AAC frames held (counted in `bytes` too, not in `frames`).
    pub audio_frames: usize,
}

/// One unit of the buffer: a video access unit or an AAC frame.
#[derive(Debug, Clone)]
enum Unit {
    Video(EncodedFrame),
    Audio(AudioFrame),
}

impl Unit {
    fn pts(&self) -> Duration {
        match self {
            Unit::Video(f) => f.pts,
            Unit::Audio(a) => a.pts,
        }
    }
    fn video(&self) -> Option<&EncodedFrame> {
        match self {
            Unit::Video(f) => Some(f),
            Unit::Audio(_) => None,
        }
    }
}

/// Where a reader stands relative to the buffer.
#[derive(Debug)]
pub enum Lookup {
    /// The frame at that index.
    Frame(EncodedFrame),
    /// The AAC frame at that index.
    Audio(AudioFrame),
    /// Not produced yet.
    NotYet,
    /// Evicted; the oldest keyframe still held is at this index.
    Gone(u64),
}

/// The GOP-indexed buffer, without locking or waiting.
#[derive(Debug)]
pub struct PreRollState {
    frames: VecDeque<Unit>,
    /// Video frames and AAC frames among `frames`.
    video: usize,
    audio: usize,
    /// End of the newest video frame.
    video_end: Duration,
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
            video: 0,
            audio: 0,
            video_end: Duration::ZERO,
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
        self.video += 1;
        self.video_end = frame.pts + frame.duration;
        self.frames.push_back(Unit::Video(frame));
        self.evict();
        !self.frames.is_empty()
    }

    /// Append an AAC frame. Refused (false) while no keyframe has started a GOP: sound is kept
    /// only beside video a clip can start from.
    pub fn push_audio(&mut self, frame: AudioFrame) -> bool {
        if self.frames.is_empty() {
            return false;
        }
        self.bytes += frame.data.len();
        self.audio += 1;
        self.frames.push_back(Unit::Audio(frame));
        self.evict();
        !self.frames.is_empty()
    }

    fn end_time(&self) -> Duration {
        if self.video == 0 {
            return Duration::ZERO;
        }
        self.video_end
    }

    fn pts_at(&self, index: u64) -> Duration {
        self.frames[(index - self.first) as usize].pts()
    }

    fn evict_first_gop(&mut self) {
        let end = self.gop_starts.get(1).copied().unwrap_or_else(|| self.next_index());
        while self.first < end {
            match self.frames.pop_front() {
                Some(Unit::Video(f)) => {
                    self.bytes -= f.data.len();
                    self.video -= 1;
                }
                Some(Unit::Audio(a)) => {
                    self.bytes -= a.data.len();
                    self.audio -= 1;
                }
                None => {}
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
            frames: self.video,
            gops: self.gop_starts.len(),
            bytes: self.bytes,
            buffered: match self.frames.front() {
                Some(f) => self.end_time().saturating_sub(f.pts()),
                None => Duration::ZERO,
            },
            audio_frames: self.audio,
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
            Some(Unit::Video(f)) => Lookup::Frame(f.clone()),
            Some(Unit::Audio(a)) => Lookup::Audio(a.clone()),
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

    /// All video frames from the keyframe at or before `t` to the newest, with the start
    /// index. Clones `Bytes` handles only.
    pub fn snapshot_from(&self, t: Duration) -> Option<(u64, Vec<EncodedFrame>)> {
        let start = self.keyframe_at_or_before(t)?;
        let v = self.frames.range((start - self.first) as usize..).filter_map(Unit::video).cloned().collect();
        Some((start, v))
    }

    /// Iterate over the video frames held, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &EncodedFrame> {
        self.frames.iter().filter_map(Unit::video)
    }

    /// Iterate over the AAC frames held, in the order they arrived.
    pub fn audio(&self) -> impl Iterator<Item = &AudioFrame> {
        self.frames.iter().filter_map(|u| match u {
            Unit::Audio(a) => Some(a),
            Unit::Video(_) => None,
        })
    }

    /// Where a reader that starts with keyframe `key` should start to also get the sound of
    /// the `lead` before it: the oldest index at or before `key` from which every unit is
    /// dated no earlier than the keyframe's time minus `lead` (`key` itself if none is).
    fn av_start(&self, key: u64, lead: Duration) -> u64 {
        let from = self.pts_at(key).saturating_sub(lead);
        let mut start = key;
        while start > self.first && self.frames[(start - 1 - self.first) as usize].pts() >= from {
            start -= 1;
        }
        start
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
    /// The next AAC frame in arrival order (followers that asked for sound only).
    Audio(AudioFrame),
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

    /// Append an AAC frame and wake readers (see [`PreRollState::push_audio`]).
    pub fn push_audio(&self, frame: AudioFrame) -> bool {
        let (kept, next) = {
            let mut s = self.lock();
            let kept = s.push_audio(frame);
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
        Follower {
            preroll: self.clone(),
            at: Cursor { next, video_from: next, audio: false },
            rx: self.newest.subscribe(),
        }
    }

    /// [`PreRoll::follow_from_time`] that also yields the AAC frames ([`Followed::Audio`]),
    /// starting with those that arrived up to `lead` before the keyframe (sound that came out
    /// of its encoder before the video of the same instant); video older than the keyframe is
    /// skipped. The reader sorts sound into place by its time.
    pub fn follow_av_from_time(self: &Arc<Self>, t: Duration, lead: Duration) -> Follower {
        let (next, video_from) = {
            let s = self.lock();
            match s.keyframe_at_or_before(t) {
                Some(k) => (s.av_start(k, lead), k),
                None => (s.next_index(), s.next_index()),
            }
        };
        Follower { preroll: self.clone(), at: Cursor { next, video_from, audio: true }, rx: self.newest.subscribe() }
    }

    /// A follower that starts with the next keyframe to arrive (live viewers). See
    /// [`Follower::with_audio`] for sound.
    pub fn follow_live(self: &Arc<Self>) -> Follower {
        let next = self.lock().next_index();
        Follower {
            preroll: self.clone(),
            at: Cursor { next, video_from: next, audio: false },
            rx: self.newest.subscribe(),
        }
    }
}

/// A reader walking forward through the buffer as frames arrive.
pub struct Follower {
    preroll: Arc<PreRoll>,
    at: Cursor,
    rx: watch::Receiver<u64>,
}

/// Where a [`Follower`] stands and what it gives.
struct Cursor {
    next: u64,
    /// Video before this index is not given (it precedes the first keyframe).
    video_from: u64,
    /// Whether AAC frames are given.
    audio: bool,
}

impl Cursor {
    /// What `lookup` (the unit at `next`) means to this reader: `None` to wait for more,
    /// `Some(None)` for a unit it passes over.
    fn take(&mut self, lookup: Lookup) -> Option<Option<Followed>> {
        match lookup {
            Lookup::Frame(f) => {
                self.next += 1;
                Some((self.next > self.video_from).then_some(Followed::Frame(f)))
            }
            Lookup::Audio(a) => {
                self.next += 1;
                Some(self.audio.then_some(Followed::Audio(a)))
            }
            Lookup::NotYet => None,
            Lookup::Gone(k) => {
                let skipped = k - self.next;
                self.next = k;
                self.video_from = self.video_from.min(k);
                Some(Some(Followed::Lagged { skipped }))
            }
        }
    }
}

impl Follower {
    /// This follower also gives the AAC frames ([`Followed::Audio`]) from where it stands.
    pub fn with_audio(mut self) -> Self {
        self.at.audio = true;
        self
    }

    /// Index of the frame [`next`](Self::next) returns next.
    pub fn position(&self) -> u64 {
        self.at.next
    }

    fn try_next(&mut self) -> Option<Followed> {
        let s = self.preroll.lock();
        loop {
            if let Some(f) = self.at.take(s.get(self.at.next))? {
                return Some(f);
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
            while let Some(taken) = self.at.take(s.get(self.at.next)) {
                if let Some(f) = taken {
                    return f;
                }
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
#[path = "preroll_tests.rs"]
mod tests;
