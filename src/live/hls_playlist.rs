//! The LL-HLS playlist window: a pure state machine (no clock, no I/O, no locks) holding the
//! init segment, the last few complete segments and the open one as CMAF parts, and rendering
//! the media playlist from them.
//!
//! The packager ([`super::hls_cutter`]) feeds it: [`PlaylistWindow::set_init`], [`PlaylistWindow::open_segment`]
//! (which completes the previous segment), [`PlaylistWindow::add_part`], [`PlaylistWindow::close_segment`].
//! Readers ask it: [`PlaylistWindow::playlist`], [`PlaylistWindow::readiness`] (may a blocking playlist reload
//! for `_HLS_msn`/`_HLS_part` answer now?), [`PlaylistWindow::part`], [`PlaylistWindow::segment`],
//! [`PlaylistWindow::init`]. Times come in as values (segment wall clock in Unix ms, durations), so
//! golden tests run on simulated time.
//!
//! Memory is bounded: at most `max_segments` complete segments and `max_bytes` of them (the
//! oldest go first, the newest always stays); a complete segment is one `Bytes` and its parts
//! are slices of it. Must never block, log, or know about frames, cameras or HTTP.

use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::time::Duration;

/// How many parts past the newest a blocked request may ask for (LL-HLS "Advance Part Limit").
pub const ADVANCE_PART_LIMIT: u64 = 3;
/// How many segments past the newest a blocked playlist request may ask for.
pub const ADVANCE_SEGMENT_LIMIT: u64 = 2;

/// Fixed properties of one playlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaylistWindowConfig {
    /// `EXT-X-TARGETDURATION` in seconds: every segment rounds to at most this.
    pub target_duration: u32,
    /// `PART-TARGET`: every part is at most this long.
    pub part_target: Duration,
    /// Complete segments kept.
    pub max_segments: usize,
    /// Bytes of complete segments kept (the newest is kept whatever its size).
    pub max_bytes: usize,
}

impl PlaylistWindowConfig {
    /// `PART-HOLD-BACK`: three part targets (the LL-HLS recommendation).
    pub fn part_hold_back(&self) -> Duration {
        self.part_target * 3
    }

    /// Parts are listed for segments that start within this of the playlist's end.
    fn parts_span(&self) -> Duration {
        Duration::from_secs(u64::from(self.target_duration) * 3)
    }
}

/// One partial segment: a CMAF chunk (`moof` + `mdat`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Media duration.
    pub duration: Duration,
    /// Starts with a keyframe (`INDEPENDENT=YES`).
    pub independent: bool,
    /// The chunk.
    pub data: Bytes,
}

#[derive(Debug)]
struct Segment {
    msn: u64,
    /// Wall clock of the first frame, Unix ms (`EXT-X-PROGRAM-DATE-TIME`).
    wall_ms: i64,
    /// Preceded by `EXT-X-DISCONTINUITY`.
    discontinuity: bool,
    /// Version of the init segment it needs.
    init: u32,
    parts: Vec<Part>,
    duration: Duration,
    /// The whole segment once complete (parts are then slices of it).
    data: Option<Bytes>,
}

/// May a blocking playlist request answer now?
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// The playlist holds what was asked for (or something later).
    Ready,
    /// Not yet: wait for the window to change.
    Wait,
    /// Too far ahead of the newest part to wait for (HTTP 400): why.
    TooFar(String),
}

/// The answer to a segment or part request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetch {
    /// Complete: the bytes.
    Ready(Bytes),
    /// Being produced (the open segment or the hinted part): wait for the window to change.
    Pending,
    /// Slid out of the window.
    Gone,
    /// Never was and is not about to be.
    Unknown,
}

/// The sliding window of one live stream.
#[derive(Debug)]
pub struct PlaylistWindow {
    cfg: PlaylistWindowConfig,
    /// Init segments still referenced, oldest first, with their versions.
    inits: VecDeque<(u32, Bytes)>,
    segments: VecDeque<Segment>,
    open: Option<Segment>,
    next_msn: u64,
    /// Bytes of complete segments.
    bytes: usize,
    /// `EXT-X-DISCONTINUITY-SEQUENCE`: discontinuities that slid out.
    discontinuity_seq: u64,
    /// The next opened segment gets `EXT-X-DISCONTINUITY`.
    pending_discontinuity: bool,
    /// Counts mutations, so a caller can tell whether anything changed.
    changes: u64,
}

impl PlaylistWindow {
    /// An empty window whose first segment will have media sequence number `first_msn`.
    pub fn new(cfg: PlaylistWindowConfig, first_msn: u64) -> Self {
        PlaylistWindow {
            cfg,
            inits: VecDeque::new(),
            segments: VecDeque::new(),
            open: None,
            next_msn: first_msn,
            bytes: 0,
            discontinuity_seq: 0,
            pending_discontinuity: false,
            changes: 0,
        }
    }

    /// A counter that moves whenever segments, parts or inits change.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// The configuration.
    pub fn config(&self) -> &PlaylistWindowConfig {
        &self.cfg
    }

    /// Media sequence number the next opened segment gets.
    pub fn next_msn(&self) -> u64 {
        self.next_msn
    }

    /// Use `init` for segments opened from now on. A different init than the current one
    /// starts a new version, and (if anything was streamed before) a discontinuity.
    pub fn set_init(&mut self, init: Bytes) {
        if self.inits.back().is_some_and(|(_, b)| *b == init) {
            return;
        }
        self.changes += 1;
        let version = self.inits.back().map_or(0, |(v, _)| v + 1);
        if !self.inits.is_empty() {
            self.pending_discontinuity = true;
        }
        self.inits.push_back((version, init));
        self.drop_unused_inits();
    }

    /// The next segment follows a gap or a restart: mark it with `EXT-X-DISCONTINUITY`.
    pub fn mark_discontinuity(&mut self) {
        if self.open.is_some() || !self.segments.is_empty() {
            self.pending_discontinuity = true;
        }
    }

    /// Complete the open segment (if it has parts) and open the next one, whose first frame
    /// was captured at `wall_ms`. Ignored until an init segment is set.
    pub fn open_segment(&mut self, wall_ms: i64) {
        self.close_segment();
        let Some(&(init, _)) = self.inits.back() else { return };
        self.changes += 1;
        self.open = Some(Segment {
            msn: self.next_msn,
            wall_ms,
            discontinuity: std::mem::take(&mut self.pending_discontinuity),
            init,
            parts: Vec::new(),
            duration: Duration::ZERO,
            data: None,
        });
        self.next_msn += 1;
    }

    /// Append a part to the open segment; false (and nothing kept) when none is open.
    pub fn add_part(&mut self, part: Part) -> bool {
        match &mut self.open {
            Some(s) => {
                self.changes += 1;
                s.duration += part.duration;
                s.parts.push(part);
                true
            }
            None => false,
        }
    }

    /// Complete the open segment. One without parts is dropped and its number reused.
    pub fn close_segment(&mut self) {
        let Some(mut seg) = self.open.take() else { return };
        self.changes += 1;
        if seg.parts.is_empty() {
            self.next_msn = seg.msn;
            self.pending_discontinuity |= seg.discontinuity;
            return;
        }
        let mut all = BytesMut::with_capacity(seg.parts.iter().map(|p| p.data.len()).sum());
        for p in &seg.parts {
            all.extend_from_slice(&p.data);
        }
        let all = all.freeze();
        let mut at = 0;
        for p in &mut seg.parts {
            let n = p.data.len();
            p.data = all.slice(at..at + n);
            at += n;
        }
        self.bytes += all.len();
        seg.data = Some(all);
        self.segments.push_back(seg);
        while self.segments.len() > self.cfg.max_segments.max(1)
            || (self.bytes > self.cfg.max_bytes && self.segments.len() > 1)
        {
            if let Some(old) = self.segments.pop_front() {
                self.bytes -= old.data.as_ref().map_or(0, Bytes::len);
                if old.discontinuity {
                    self.discontinuity_seq += 1;
                }
            }
        }
        self.drop_unused_inits();
    }

    fn drop_unused_inits(&mut self) {
        let oldest_used = self.segments.iter().chain(&self.open).map(|s| s.init).min();
        while self.inits.len() > 1 && oldest_used.is_none_or(|u| self.inits[0].0 < u) {
            self.inits.pop_front();
        }
    }

    /// (complete segments, bytes held including the open segment's parts).
    pub fn stats(&self) -> (usize, usize) {
        let open = self.open.as_ref().map_or(0, |s| s.parts.iter().map(|p| p.data.len()).sum());
        (self.segments.len(), self.bytes + open)
    }

    /// The newest part: (msn, part index).
    fn newest_part(&self) -> Option<(u64, u64)> {
        match &self.open {
            Some(s) if !s.parts.is_empty() => Some((s.msn, s.parts.len() as u64 - 1)),
            _ => self.segments.back().map(|s| (s.msn, s.parts.len() as u64 - 1)),
        }
    }

    /// Whether a playlist request with `_HLS_msn=msn` (and `_HLS_part=part`) can be answered.
    pub fn readiness(&self, msn: u64, part: Option<u64>) -> Readiness {
        let Some((newest_msn, newest_part)) = self.newest_part() else { return Readiness::Wait };
        if msn > newest_msn + ADVANCE_SEGMENT_LIMIT {
            return Readiness::TooFar(format!(
                "_HLS_msn={msn} is more than {ADVANCE_SEGMENT_LIMIT} segments past the newest ({newest_msn})"
            ));
        }
        let Some(part) = part else {
            // Without a part: a complete segment `msn` (or later).
            let complete = self.segments.back().is_some_and(|s| s.msn >= msn);
            return if complete { Readiness::Ready } else { Readiness::Wait };
        };
        if msn < newest_msn || (msn == newest_msn && part <= newest_part) {
            return Readiness::Ready;
        }
        if msn == newest_msn && part > newest_part + ADVANCE_PART_LIMIT {
            return Readiness::TooFar(format!(
                "_HLS_part={part} is more than {ADVANCE_PART_LIMIT} parts past the newest ({newest_msn}.{newest_part})"
            ));
        }
        Readiness::Wait
    }

    fn find(&self, msn: u64) -> Option<&Segment> {
        self.segments.iter().chain(&self.open).find(|s| s.msn == msn)
    }

    fn oldest_msn(&self) -> u64 {
        self.segments.front().or(self.open.as_ref()).map_or(self.next_msn, |s| s.msn)
    }

    /// Part `idx` of segment `msn`. The part after the newest one (the preload hint) is
    /// [`Fetch::Pending`] while it is being produced.
    pub fn part(&self, msn: u64, idx: u64) -> Fetch {
        if let Some(s) = self.find(msn) {
            let have = s.parts.len() as u64;
            return match usize::try_from(idx).ok().and_then(|i| s.parts.get(i)) {
                Some(p) => Fetch::Ready(p.data.clone()),
                None if s.data.is_none() && idx < have + ADVANCE_PART_LIMIT => Fetch::Pending,
                None => Fetch::Unknown,
            };
        }
        if msn < self.oldest_msn() {
            Fetch::Gone
        } else if msn == self.next_msn && idx == 0 && !self.inits.is_empty() {
            Fetch::Pending
        } else {
            Fetch::Unknown
        }
    }

    /// The whole segment `msn`; [`Fetch::Pending`] while it is the open one.
    pub fn segment(&self, msn: u64) -> Fetch {
        match self.find(msn) {
            Some(Segment { data: Some(d), .. }) => Fetch::Ready(d.clone()),
            Some(_) => Fetch::Pending,
            None if msn < self.oldest_msn() => Fetch::Gone,
            None => Fetch::Unknown,
        }
    }

    /// Init segment `version` (the newest when `None`).
    pub fn init(&self, version: Option<u32>) -> Option<Bytes> {
        match version {
            None => self.inits.back().map(|(_, b)| b.clone()),
            Some(v) => self.inits.iter().find(|(iv, _)| *iv == v).map(|(_, b)| b.clone()),
        }
    }

    /// The media playlist, or `None` while it has no part to list.
    pub fn playlist(&self) -> Option<String> {
        self.newest_part()?;
        let cfg = &self.cfg;
        let mut out = String::with_capacity(2048);
        let _ = write!(
            out,
            "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:{}\n\
             #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3}\n\
             #EXT-X-PART-INF:PART-TARGET={:.3}\n#EXT-X-MEDIA-SEQUENCE:{}\n",
            cfg.target_duration,
            cfg.part_hold_back().as_secs_f64(),
            cfg.part_target.as_secs_f64(),
            self.oldest_msn(),
        );
        if self.discontinuity_seq > 0 {
            let _ = writeln!(out, "#EXT-X-DISCONTINUITY-SEQUENCE:{}", self.discontinuity_seq);
        }
        // Parts are listed for the segments that start within `parts_span` of the end.
        let listed: Vec<&Segment> =
            self.segments.iter().chain(self.open.iter().filter(|s| !s.parts.is_empty())).collect();
        let mut from_end = Duration::ZERO;
        let mut with_parts = listed.len();
        for (i, s) in listed.iter().enumerate().rev() {
            from_end += s.duration;
            if from_end > cfg.parts_span() && s.data.is_some() {
                break;
            }
            with_parts = i;
        }
        let mut init = None;
        for (i, s) in listed.iter().enumerate() {
            if s.discontinuity {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if init != Some(s.init) {
                init = Some(s.init);
                match s.init {
                    0 => out.push_str("#EXT-X-MAP:URI=\"init.mp4\"\n"),
                    v => {
                        let _ = writeln!(out, "#EXT-X-MAP:URI=\"init.mp4?v={v}\"");
                    }
                }
            }
            let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", crate::time::rfc3339_ms(s.wall_ms));
            if i >= with_parts {
                for (k, p) in s.parts.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "#EXT-X-PART:DURATION={:.5},URI=\"part{}.{k}.m4s\"{}",
                        p.duration.as_secs_f64(),
                        s.msn,
                        if p.independent { ",INDEPENDENT=YES" } else { "" }
                    );
                }
            }
            if s.data.is_some() {
                let _ = write!(out, "#EXTINF:{:.5},\nseg{}.m4s\n", s.duration.as_secs_f64(), s.msn);
            }
        }
        let (msn, idx) = match &self.open {
            Some(s) => (s.msn, s.parts.len()),
            None => (self.next_msn, 0),
        };
        let _ = writeln!(out, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part{msn}.{idx}.m4s\"");
        Some(out)
    }
}

#[cfg(test)]
#[path = "hls_playlist_tests.rs"]
mod tests;
