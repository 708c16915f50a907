//! The clip state machine of one camera: pure, no clock, no I/O (times are passed in on the
//! capture clock, CLOCK_MONOTONIC), so it is tested with simulated time.
//!
//! A trigger at T opens a clip covering T − pre … T + post. A trigger while a clip is open
//! extends the end to T + post, capped at start + `max_clip_s`, and is recorded on the same clip.
//! A clip stays open until its writer has seen a frame at its end, which from a source that lags
//! (a phone's bursts) comes after the end on the clock: a trigger in that gap extends the clip
//! seamlessly rather than opening a second one beside a writer still busy. Only a clip past its
//! hard end gives way: it moves to `closing`, where its writer still finds and closes it by id.
//! Per-trigger `pre_s`/`post_s` are clamped to the camera's config and to what the buffer holds;
//! the actual pre-roll is reported. A manual recording is open-ended until `stop_manual` (capped
//! the same way); triggers during it are recorded on it.

use crate::clip_meta::{ClipSource, MAX_TRIGGER_IDS};
use crate::trigger::TriggerRequest;
use std::time::Duration;

/// Limits from the camera's config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Default and maximum pre-roll.
    pub pre: Duration,
    /// Default post-roll.
    pub post: Duration,
    /// Longest clip.
    pub max_clip: Duration,
}

/// One trigger recorded on a clip.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerMark {
    /// Trigger id.
    pub id: String,
    /// When (capture clock).
    pub at: Duration,
    /// Label, if any.
    pub label: Option<String>,
}

/// The clip being recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenClip {
    /// Clip id.
    pub clip_id: String,
    /// Trigger or manual.
    pub source: ClipSource,
    /// First presented instant (T − pre, clamped to the buffer): the edit-list start.
    pub start: Duration,
    /// First trigger (or manual start) time.
    pub first_at: Duration,
    /// End: frames with PTS ≥ end are not in the clip. `None` while a manual recording runs.
    pub end: Option<Duration>,
    /// start + max_clip: nothing extends past this.
    pub hard_end: Duration,
    /// The triggers on this clip, in order: the first [`MAX_TRIGGER_IDS`] of them.
    pub triggers: Vec<TriggerMark>,
    /// Every trigger on this clip, counted (also those past [`MAX_TRIGGER_IDS`]).
    pub trigger_count: u64,
    /// The clip this one continues ([`ClipMachine::split`]), if any.
    pub continues: Option<String>,
}

impl OpenClip {
    /// The instant the clip ends now: its end, or the hard end while a manual recording runs.
    pub fn effective_end(&self) -> Duration {
        self.end.unwrap_or(self.hard_end).min(self.hard_end)
    }

    /// Seconds kept before the first trigger.
    pub fn pre_actual(&self) -> Duration {
        self.first_at.saturating_sub(self.start)
    }
}

/// What a trigger did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A new clip was opened.
    Opened {
        /// Its id.
        clip_id: String,
        /// Pre-roll it will hold.
        pre_actual: Duration,
        /// Post-roll after this trigger (after clamping).
        post: Duration,
    },
    /// The open clip was extended (or the trigger was recorded on a manual recording).
    Extended {
        /// Its id.
        clip_id: String,
        /// Pre-roll of the clip.
        pre_actual: Duration,
        /// Post-roll after this trigger (after clamping to the hard end).
        post: Duration,
    },
}

/// Manual recording requests that make no sense now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManualError {
    /// `record/start` while a manual recording already runs.
    #[error("a manual recording is already running")]
    AlreadyRecording,
    /// `record/stop` with no manual recording running.
    #[error("no manual recording is running")]
    NotRecording,
}

/// The per-camera machine.
#[derive(Debug, Clone)]
pub struct ClipMachine {
    limits: Limits,
    open: Option<OpenClip>,
    /// Clips at their hard end, replaced by a newer clip before their writer saw their last
    /// frame: still closed by their writer (by id), no longer extended.
    closing: Vec<OpenClip>,
}

impl ClipMachine {
    /// An idle machine.
    pub fn new(limits: Limits) -> Self {
        ClipMachine { limits, open: None, closing: Vec::new() }
    }

    /// The open clip, if it may still take a trigger or a manual start at `now`: it is open until
    /// its writer has seen a frame at its end (a source that lags delivers those after the end on
    /// the clock), and it may grow until its hard end. One past its hard end moves to `closing`.
    fn extendable(&mut self, now: Duration) -> Option<&mut OpenClip> {
        if self.open.as_ref().is_some_and(|o| now > o.hard_end) {
            self.closing.extend(self.open.take());
        }
        self.open.as_mut()
    }

    /// The clip being recorded, if any.
    pub fn open(&self) -> Option<&OpenClip> {
        self.open.as_ref()
    }

    /// A trigger at `now`. `oldest` is the PTS of the oldest frame in the buffer (None: empty);
    /// `new_id` makes a clip id if a clip is opened; `trigger_id` names this trigger.
    pub fn trigger(
        &mut self,
        now: Duration,
        req: &TriggerRequest,
        trigger_id: &str,
        oldest: Option<Duration>,
        new_id: impl FnOnce() -> String,
    ) -> Outcome {
        let secs = |v: Option<f64>, default: Duration| v.map(Duration::from_secs_f64).unwrap_or(default);
        let pre = secs(req.pre_s, self.limits.pre).min(self.limits.pre);
        let post = secs(req.post_s, self.limits.post).min(self.limits.max_clip);
        let mark = TriggerMark { id: trigger_id.into(), at: now, label: req.label.clone() };
        if let Some(open) = self.extendable(now) {
            let want = (now + post).min(open.hard_end);
            if let Some(end) = open.end.as_mut() {
                *end = (*end).max(want);
            }
            open.trigger_count += 1;
            if open.triggers.len() < MAX_TRIGGER_IDS {
                open.triggers.push(mark);
            }
            return Outcome::Extended {
                clip_id: open.clip_id.clone(),
                pre_actual: open.pre_actual(),
                post: want.saturating_sub(now),
            };
        }
        let start = now.saturating_sub(pre).max(oldest.unwrap_or(now)).min(now);
        let hard_end = start + self.limits.max_clip;
        let end = (now + post).min(hard_end);
        let clip = OpenClip {
            clip_id: new_id(),
            source: ClipSource::Trigger,
            start,
            first_at: now,
            end: Some(end),
            hard_end,
            triggers: vec![mark],
            trigger_count: 1,
            continues: None,
        };
        let out = Outcome::Opened { clip_id: clip.clip_id.clone(), pre_actual: clip.pre_actual(), post: end - now };
        self.open = Some(clip);
        out
    }

    /// Start a manual recording at `now` (no pre-roll). A trigger clip already open becomes
    /// open-ended (manual) rather than starting a second clip.
    pub fn start_manual(&mut self, now: Duration, new_id: impl FnOnce() -> String) -> Result<String, ManualError> {
        if let Some(open) = self.extendable(now) {
            if open.end.is_none() {
                return Err(ManualError::AlreadyRecording);
            }
            open.end = None;
            open.source = ClipSource::Manual;
            return Ok(open.clip_id.clone());
        }
        let clip = OpenClip {
            clip_id: new_id(),
            source: ClipSource::Manual,
            start: now,
            first_at: now,
            end: None,
            hard_end: now + self.limits.max_clip,
            triggers: Vec::new(),
            trigger_count: 0,
            continues: None,
        };
        let id = clip.clip_id.clone();
        self.open = Some(clip);
        Ok(id)
    }

    /// Stop the manual recording at `now`; returns its clip id.
    pub fn stop_manual(&mut self, now: Duration) -> Result<String, ManualError> {
        match self.open.as_mut() {
            Some(open) if open.end.is_none() => {
                open.end = Some(now.max(open.start).min(open.hard_end));
                Ok(open.clip_id.clone())
            }
            _ => Err(ManualError::NotRecording),
        }
    }

    /// Clip `id` while its writer has not closed it (open, or closing).
    pub fn get(&self, id: &str) -> Option<&OpenClip> {
        self.open.iter().chain(&self.closing).find(|o| o.clip_id == id)
    }

    /// Close clip `id` if a frame at `pts` lies at or past its end; returns it.
    pub fn close_if_done(&mut self, id: &str, pts: Duration) -> Option<OpenClip> {
        if self.get(id).is_some_and(|o| pts >= o.effective_end()) {
            self.close_now(id)
        } else {
            None
        }
    }

    /// Clip `id` goes on as clip `next_id` from `at` (the camera's stream changed format there:
    /// one MP4 track holds one). Returns the part before `at`, closed, for its writer to finish;
    /// the continuation keeps the end, the hard end, the source and the triggers (later
    /// triggers extend it), starts at `at` without pre-roll, and names `id` as the clip it continues.
    pub fn split(&mut self, id: &str, next_id: String, at: Duration) -> Option<OpenClip> {
        let clip = self.open.iter_mut().chain(self.closing.iter_mut()).find(|o| o.clip_id == id)?;
        let mut part = clip.clone();
        part.end = Some(at.clamp(part.start, part.hard_end));
        clip.continues = Some(std::mem::replace(&mut clip.clip_id, next_id));
        clip.start = at.min(clip.hard_end);
        clip.first_at = clip.first_at.max(clip.start);
        Some(part)
    }

    /// End the open clip at `now` at the latest (shutdown): returns its id.
    pub fn cut(&mut self, now: Duration) -> Option<String> {
        let open = self.open.as_mut()?;
        open.end = Some(open.effective_end().min(now.max(open.start)));
        Some(open.clip_id.clone())
    }

    /// Close clip `id` now whatever its end (camera stopped, no frames).
    pub fn close_now(&mut self, id: &str) -> Option<OpenClip> {
        if self.open.as_ref().is_some_and(|o| o.clip_id == id) {
            return self.open.take();
        }
        let i = self.closing.iter().position(|o| o.clip_id == id)?;
        Some(self.closing.remove(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: f64) -> Duration {
        Duration::from_secs_f64(x)
    }

    fn machine() -> ClipMachine {
        ClipMachine::new(Limits { pre: s(30.0), post: s(30.0), max_clip: s(300.0) })
    }

    fn ids() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("clip{n}")
        }
    }

    #[test]
    fn trigger_opens_pre_and_post() {
        let mut m = machine();
        let mut id = ids();
        let out = m.trigger(s(100.0), &TriggerRequest::default(), "t1", Some(s(50.0)), &mut id);
        assert_eq!(out, Outcome::Opened { clip_id: "clip1".into(), pre_actual: s(30.0), post: s(30.0) });
        let o = m.open().unwrap();
        assert_eq!((o.start, o.end), (s(70.0), Some(s(130.0))));
        assert!(m.close_if_done("clip1", s(129.9)).is_none());
        assert_eq!(m.close_if_done("clip1", s(130.0)).unwrap().clip_id, "clip1");
        assert!(m.open().is_none());
    }

    #[test]
    fn retrigger_extends_and_records_both() {
        let mut m = machine();
        let mut id = ids();
        m.trigger(s(100.0), &TriggerRequest::default(), "t1", Some(s(0.0)), &mut id);
        let out = m.trigger(s(120.0), &TriggerRequest::default(), "t2", Some(s(0.0)), &mut id);
        assert!(matches!(out, Outcome::Extended { ref clip_id, .. } if clip_id == "clip1"));
        let o = m.open().unwrap();
        assert_eq!(o.end, Some(s(150.0)));
        assert_eq!(o.triggers.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["t1", "t2"]);
        // An earlier-ending retrigger never shortens the clip.
        m.trigger(s(125.0), &TriggerRequest { post_s: Some(1.0), ..Default::default() }, "t3", None, &mut id);
        assert_eq!(m.open().unwrap().end, Some(s(150.0)));
    }

    #[test]
    fn trigger_past_the_end_before_the_last_frame_extends() {
        let mut m = machine();
        let mut id = ids();
        m.trigger(s(100.0), &TriggerRequest::default(), "t1", Some(s(0.0)), &mut id);
        // The clock is past the end (130) but no frame at 130 has been seen yet: same clip.
        let out = m.trigger(s(131.0), &TriggerRequest::default(), "t2", None, &mut id);
        assert_eq!(out, Outcome::Extended { clip_id: "clip1".into(), pre_actual: s(30.0), post: s(30.0) });
        assert!(m.close_if_done("clip1", s(131.0)).is_none());
        // A manual start in that gap turns it into the manual recording.
        assert_eq!(m.start_manual(s(162.0), &mut id), Ok("clip1".into()));
        assert_eq!(m.open().unwrap().end, None);
    }

    #[test]
    fn a_clip_past_its_hard_end_gives_way_and_is_still_closed_by_id() {
        let mut m = ClipMachine::new(Limits { pre: s(5.0), post: s(5.0), max_clip: s(20.0) });
        let mut id = ids();
        m.trigger(s(100.0), &TriggerRequest::default(), "a", Some(s(0.0)), &mut id);
        m.trigger(s(112.0), &TriggerRequest::default(), "b", None, &mut id);
        assert_eq!(m.open().unwrap().end, Some(s(115.0)));
        // Past the hard end (115) and still not closed: a new clip, the old one still closable.
        let out = m.trigger(s(115.5), &TriggerRequest::default(), "c", Some(s(100.0)), &mut id);
        assert!(matches!(out, Outcome::Opened { ref clip_id, .. } if clip_id == "clip2"), "{out:?}");
        assert_eq!(m.get("clip1").unwrap().effective_end(), s(115.0));
        assert!(m.close_if_done("clip1", s(114.9)).is_none());
        assert_eq!(m.close_if_done("clip1", s(115.0)).unwrap().clip_id, "clip1");
        assert!(m.get("clip1").is_none());
        assert_eq!(m.open().unwrap().clip_id, "clip2");
        assert_eq!(m.close_now("clip2").unwrap().clip_id, "clip2");
        assert!(m.open().is_none() && m.close_now("clip2").is_none());
    }

    #[test]
    fn trigger_after_end_opens_a_new_clip() {
        let mut m = machine();
        let mut id = ids();
        m.trigger(s(100.0), &TriggerRequest::default(), "t1", Some(s(0.0)), &mut id);
        m.close_if_done("clip1", s(130.0)).unwrap();
        let out = m.trigger(s(131.0), &TriggerRequest::default(), "t2", Some(s(0.0)), &mut id);
        assert!(matches!(out, Outcome::Opened { ref clip_id, .. } if clip_id == "clip2"));
    }

    #[test]
    fn extension_is_cut_at_max_clip() {
        let mut m = ClipMachine::new(Limits { pre: s(5.0), post: s(5.0), max_clip: s(20.0) });
        let mut id = ids();
        m.trigger(s(100.0), &TriggerRequest::default(), "a", Some(s(0.0)), &mut id);
        for (i, t) in [104.0, 108.0, 112.0].iter().enumerate() {
            m.trigger(s(*t), &TriggerRequest::default(), &format!("r{i}"), None, &mut id);
        }
        let o = m.open().unwrap();
        assert_eq!((o.clip_id.as_str(), o.hard_end, o.end), ("clip1", s(115.0), Some(s(115.0))));
        assert_eq!(o.triggers.len(), 4);
        // A trigger after the (capped) end opens a new clip.
        m.trigger(s(116.0), &TriggerRequest::default(), "late", Some(s(0.0)), &mut id);
        assert_eq!(m.open().unwrap().clip_id, "clip2");
    }

    #[test]
    fn overrides_are_clamped_and_short_buffer_reported() {
        let mut m = machine();
        let mut id = ids();
        let req = TriggerRequest { pre_s: Some(100.0), post_s: Some(1000.0), ..Default::default() };
        // Only 12 s buffered right after start-up.
        let out = m.trigger(s(12.0), &req, "t", Some(s(0.0)), &mut id);
        match out {
            Outcome::Opened { pre_actual, post, .. } => {
                assert_eq!(pre_actual, s(12.0));
                // Clamped to max_clip (300 s) measured from the clip's start at 0.
                assert_eq!(post, s(288.0));
            }
            other => panic!("{other:?}"),
        }
        let o = m.open().unwrap();
        assert_eq!(o.start, s(0.0));
        assert_eq!(o.end, Some(s(300.0)));
        // Empty buffer: starts at the trigger.
        let mut m = machine();
        let out = m.trigger(s(5.0), &TriggerRequest { pre_s: Some(3.0), ..Default::default() }, "t", None, &mut id);
        assert!(matches!(out, Outcome::Opened { pre_actual, .. } if pre_actual == Duration::ZERO));
    }

    #[test]
    fn manual_recording_is_open_ended_until_stopped() {
        let mut m = machine();
        let mut id = ids();
        let clip = m.start_manual(s(10.0), &mut id).unwrap();
        assert_eq!(m.start_manual(s(11.0), &mut id), Err(ManualError::AlreadyRecording));
        assert!(m.close_if_done(&clip, s(200.0)).is_none());
        // Triggers during it are recorded on it.
        m.trigger(s(50.0), &TriggerRequest::default(), "t", None, &mut id);
        assert_eq!(m.stop_manual(s(60.0)).unwrap(), clip);
        assert_eq!(m.open().unwrap().end, Some(s(60.0)));
        assert_eq!(m.stop_manual(s(61.0)), Err(ManualError::NotRecording));
        assert!(m.close_if_done(&clip, s(60.0)).is_some());
        // Capped at max_clip even without stop.
        let clip = m.start_manual(s(1000.0), &mut id).unwrap();
        assert!(m.close_if_done(&clip, s(1299.0)).is_none());
        // Past its hard end and not closed yet: a new manual start opens the next recording,
        // and the old one's writer still closes it.
        let next = m.start_manual(s(1301.0), &mut id).unwrap();
        assert_ne!(next, clip);
        assert!(m.close_if_done(&clip, s(1300.0)).is_some());
        assert_eq!(m.open().unwrap().clip_id, next);
    }

    #[test]
    fn a_split_clip_goes_on_under_a_new_id_with_its_end_and_triggers() {
        let mut m = machine();
        let mut id = ids();
        m.trigger(s(100.0), &TriggerRequest::default(), "t1", Some(s(50.0)), &mut id);
        assert!(m.split("nope", "x".into(), s(110.0)).is_none(), "only a clip the machine holds");
        let part = m.split("clip1", "clip2".into(), s(110.0)).expect("the first part");
        assert_eq!((part.clip_id.as_str(), part.start, part.end), ("clip1", s(70.0), Some(s(110.0))));
        assert_eq!(part.continues, None);
        assert!(m.get("clip1").is_none(), "the first part is its writer's alone now");
        let o = m.open().unwrap().clone();
        assert_eq!((o.clip_id.as_str(), o.continues.as_deref()), ("clip2", Some("clip1")));
        assert_eq!((o.start, o.first_at, o.end, o.hard_end), (s(110.0), s(110.0), Some(s(130.0)), s(370.0)));
        assert_eq!(o.pre_actual(), Duration::ZERO, "no pre-roll before a continuation");
        assert_eq!(o.triggers.len(), 1);
        // A later trigger extends the continuation; it closes at its end as any clip.
        let out = m.trigger(s(120.0), &TriggerRequest::default(), "t2", Some(s(50.0)), &mut id);
        assert!(matches!(out, Outcome::Extended { ref clip_id, .. } if clip_id == "clip2"), "{out:?}");
        assert_eq!(m.open().unwrap().end, Some(s(150.0)));
        assert_eq!(m.close_if_done("clip2", s(150.0)).map(|c| c.trigger_count), Some(2));
    }
}
