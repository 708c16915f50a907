//! Cuts the encoded frames of a live stream into LL-HLS media: a segment per GOP (cut at
//! keyframes, so a segment lasts one keyframe interval), parts of ~200 ms at frame boundaries,
//! each part one CMAF chunk (`moof` + `mdat`) from the MP4 writer, fed to a
//! [`PlaylistWindow`].
//!
//! A frame is held until the next one arrives so that its duration is the exact PTS
//! difference: `tfdt` of every part is its first frame's capture time (90 kHz), and the parts
//! follow each other without gaps or overlaps. A segment that would round above the target
//! duration (a GOP longer than configured) is cut at a frame boundary instead; a gap in the
//! frames (camera restart, a reader that lagged) ends the segment and marks a discontinuity;
//! new SPS/PPS start a new init segment.
//!
//! Sound (AAC) is muxed into the same chunks as a second track (hls.js and Safari both play
//! muxed fMP4; one playlist keeps parts of sound and picture in step). A part carries the AAC
//! frames that start before its video ends and have arrived by then (sound comes out of its
//! encoder a few tens of ms after the picture, so a frame can go in the next part); the sound's
//! `tfdt` is its first frame's capture time in samples, so players line both tracks up by
//! capture time. The sound's track is in the init segment from the first segment that starts
//! after its format is known (a new init segment, as for new SPS/PPS); sound dated before the
//! first segment is dropped.
//!
//! Pure apart from the wall clock it is handed: no I/O, no locks, no waiting. Must never
//! re-encode or copy frames beyond building the chunk.

use super::hls_playlist::{Part, PlaylistWindow, PlaylistWindowConfig};
use crate::frame::{AudioFormat, AudioFrame, EncodedFrame};
use crate::mp4::{AudioSample, AudioTrack, FragmentedMp4, Sample, TIMESCALE};
use bytes::Bytes;
use std::time::Duration;

/// Timing of the cut, derived from the keyframe interval and frame rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutConfig {
    /// `EXT-X-TARGETDURATION` (seconds).
    pub target_duration: u32,
    /// No part is longer than this (`PART-TARGET`).
    pub part_target: Duration,
    /// A part is closed once it is at least this long.
    pub part_min: Duration,
    /// A segment is cut before it reaches this (it would round above the target duration).
    pub segment_max: Duration,
    /// Frames further apart than this are a gap (a discontinuity), not one long frame.
    pub max_gap: Duration,
}

impl CutConfig {
    /// For a keyframe interval of `keyframe_interval_s` and `fps` frames per second
    /// (0 = unknown, taken as 30): 200–250 ms parts (one frame at low rates).
    pub fn new(keyframe_interval_s: f64, fps: u32) -> Self {
        let fps = if fps == 0 { 30 } else { fps.min(1000) };
        let frame = Duration::from_secs(1) / fps;
        // Segments last about one keyframe interval; RFC 8216 needs each EXTINF, rounded to the
        // nearest integer, to be at most the target: a measured GOP of 2.03 s gives 2, not 3.
        let target_duration = keyframe_interval_s.round().clamp(1.0, 3600.0) as u32;
        let part_target = Duration::from_millis(250).max(frame * 5 / 4);
        let part_min = Duration::from_millis(200).saturating_sub(frame / 2).max(frame).min(part_target);
        CutConfig {
            target_duration,
            part_target,
            part_min,
            segment_max: Duration::from_secs(u64::from(target_duration)) + Duration::from_millis(500),
            max_gap: Duration::from_secs(1).max(frame * 2),
        }
    }

    /// The playlist window for this timing.
    pub fn window(&self, max_segments: usize, max_bytes: usize) -> PlaylistWindowConfig {
        PlaylistWindowConfig {
            target_duration: self.target_duration,
            part_target: self.part_target,
            max_segments,
            max_bytes,
        }
    }
}

/// AAC frames held for the next part at most (~10 s at 48 kHz): beyond, the oldest go.
const MAX_AUDIO: usize = 512;

/// No sound for this long before a keyframe: the next segment's init has no sound track.
/// Sound arrives ~50 ms after its capture time (the encoder's delay), an RTSP camera's a little
/// more; 2 s is no sound.
const SOUND_GONE: Duration = Duration::from_secs(2);

fn from_ticks(t: u64) -> Duration {
    Duration::from_nanos((u128::from(t) * 1_000_000_000 / u128::from(TIMESCALE)) as u64)
}

/// The cutter of one live session.
pub struct Cutter {
    cfg: CutConfig,
    width: u32,
    height: u32,
    mp4: Option<FragmentedMp4>,
    init: Bytes,
    /// The newest frame, waiting for the next one to know its duration.
    held: Option<EncodedFrame>,
    /// Frames of the part being built, with their durations in ticks.
    part: Vec<(EncodedFrame, u64)>,
    part_ticks: u64,
    /// Ticks of the open segment's finished parts.
    seg_ticks: u64,
    in_segment: bool,
    sequence: u32,
    /// The sound's format as last seen, and the one in the current init segment.
    heard: Option<AudioFormat>,
    sound: Option<AudioFormat>,
    /// AAC frames waiting for their part, in capture order.
    audio: Vec<AudioFrame>,
    /// Sound captured before this is dropped: the start of the first segment after a
    /// discontinuity.
    audio_from: Duration,
    /// Capture time of the newest AAC frame (or of the segment that first had the track).
    last_heard: Option<Duration>,
}

impl Cutter {
    /// A cutter for `width`×`height` video (the `tkhd`/`avc1` size).
    pub fn new(cfg: CutConfig, width: u32, height: u32) -> Self {
        Cutter {
            cfg,
            width,
            height,
            mp4: None,
            init: Bytes::new(),
            held: None,
            part: Vec::new(),
            part_ticks: 0,
            seg_ticks: 0,
            in_segment: false,
            sequence: 1,
            heard: None,
            sound: None,
            audio: Vec::new(),
            audio_from: Duration::ZERO,
            last_heard: None,
        }
    }

    /// The camera's sound is in `format` (as its status says), before any frame of it came:
    /// the first init segment then has its track.
    pub fn hear(&mut self, format: &AudioFormat) {
        if self.heard.as_ref() != Some(format) {
            self.heard = Some(format.clone());
        }
    }

    /// Take the next AAC frame.
    pub fn push_audio(&mut self, a: AudioFrame) {
        self.hear(&a.format);
        self.last_heard = self.last_heard.max(Some(a.pts));
        // Before a segment opens, sound waits for the keyframe (start_segment sorts it).
        if self.in_segment && (self.sound.as_ref() != Some(&a.format) || a.pts < self.audio_from) {
            return;
        }
        if self.audio.len() >= MAX_AUDIO {
            self.audio.remove(0);
        }
        self.audio.push(a);
    }

    /// Take the next frame. `wall_ms` maps a capture time (CLOCK_MONOTONIC) to Unix ms.
    pub fn push(&mut self, f: EncodedFrame, w: &mut PlaylistWindow, wall_ms: &dyn Fn(Duration) -> i64) {
        let Some(h) = self.held.take() else {
            if f.keyframe {
                self.start_segment(&f, w, wall_ms);
            }
            if self.in_segment {
                self.held = Some(f);
            }
            return;
        };
        let dt = crate::time::ticks(f.pts).saturating_sub(crate::time::ticks(h.pts));
        let gap = dt == 0 || f.pts.saturating_sub(h.pts) > self.cfg.max_gap;
        let d = if gap { crate::time::ticks(h.duration).max(1) } else { dt };
        if !self.part.is_empty() && self.part_ticks + d > crate::time::ticks(self.cfg.part_target) {
            self.flush_part(w);
        }
        let so_far = self.seg_ticks + self.part_ticks;
        if so_far > 0 && so_far + d >= crate::time::ticks(self.cfg.segment_max) {
            // A GOP longer than the target: cut here (the next segment is not independent).
            self.flush_part(w);
            w.open_segment(wall_ms(h.pts));
            self.seg_ticks = 0;
        }
        self.part_ticks += d;
        self.part.push((h, d));
        if gap {
            self.end_segment(w);
            if f.keyframe {
                self.start_segment(&f, w, wall_ms);
            }
        } else if f.keyframe {
            self.flush_part(w);
            self.start_segment(&f, w, wall_ms);
        } else if self.part_ticks >= crate::time::ticks(self.cfg.part_min) {
            self.flush_part(w);
        }
        if self.in_segment {
            self.held = Some(f);
        }
    }

    /// Frames were lost (the reader lagged): finish what is held, end the segment, and wait
    /// for the next keyframe.
    pub fn gap(&mut self, w: &mut PlaylistWindow) {
        if let Some(h) = self.held.take() {
            let d = crate::time::ticks(h.duration).max(1);
            self.part_ticks += d;
            self.part.push((h, d));
        }
        self.end_segment(w);
    }

    fn end_segment(&mut self, w: &mut PlaylistWindow) {
        self.flush_part(w);
        self.audio.clear();
        w.close_segment();
        w.mark_discontinuity();
        self.seg_ticks = 0;
        self.in_segment = false;
    }

    /// Open a segment at keyframe `f`, with a new init segment if its SPS/PPS changed, or the
    /// sound came or went.
    fn start_segment(&mut self, f: &EncodedFrame, w: &mut PlaylistWindow, wall_ms: &dyn Fn(Duration) -> i64) {
        // Sound that stopped (a microphone unplugged) leaves the init: a track without samples
        // would hold players that wait for it. It joins again with its next frame.
        if self.heard.is_some() && self.last_heard.is_some_and(|t| f.pts > t + SOUND_GONE) {
            self.heard = None;
            self.last_heard = None;
        }
        // A keyframe without parameter sets keeps the current ones (if any).
        let track = self.heard.as_ref().map(|a| AudioTrack {
            config: a.config.to_vec(),
            rate: a.rate,
            channels: a.channels,
            delay: 0,
            edit_media_time: 0,
        });
        if let Ok(m) = FragmentedMp4::new_av(&f.data, self.width, self.height, 0, track) {
            let init = Bytes::from(m.init_segment());
            if init != self.init {
                w.set_init(init.clone());
                self.init = init;
                self.mp4 = Some(m);
                self.sound = self.heard.clone();
                if self.sound.is_some() {
                    self.last_heard = self.last_heard.max(Some(f.pts));
                }
            }
        }
        if self.mp4.is_none() {
            self.in_segment = false;
            return;
        }
        if !self.in_segment {
            let sound = self.sound.as_ref();
            self.audio.retain(|a| a.pts >= f.pts && Some(&a.format) == sound);
            self.audio_from = f.pts;
        }
        w.open_segment(wall_ms(f.pts));
        self.seg_ticks = 0;
        self.in_segment = true;
    }

    fn flush_part(&mut self, w: &mut PlaylistWindow) {
        if self.part.is_empty() {
            return;
        }
        if let Some(mp4) = &self.mp4 {
            let samples: Vec<Sample> = self
                .part
                .iter()
                .map(|(f, d)| Sample {
                    data: &f.data,
                    duration: (*d).min(u64::from(u32::MAX)) as u32,
                    keyframe: f.keyframe,
                })
                .collect();
            let base = crate::time::ticks(self.part[0].0.pts);
            let end = self.part[0].0.pts + from_ticks(self.part_ticks);
            let n = self.audio.iter().take_while(|a| a.pts < end).count();
            let (sound, audio_base) = match &self.sound {
                Some(fmt) if n > 0 => {
                    let at = |a: &AudioFrame| crate::time::samples(a.pts, fmt.rate);
                    let taken = &self.audio[..n];
                    let sound: Vec<AudioSample> = taken
                        .iter()
                        .enumerate()
                        .map(|(i, a)| {
                            let d = match taken.get(i + 1) {
                                Some(next) => at(next).saturating_sub(at(a)),
                                None => crate::time::samples(a.duration, fmt.rate),
                            };
                            AudioSample { data: &a.data, duration: d.clamp(1, u64::from(u32::MAX)) as u32 }
                        })
                        .collect();
                    (sound, at(&taken[0]))
                }
                _ => (Vec::new(), 0),
            };
            let data = mp4.live_fragment_av(self.sequence, [base, audio_base], &samples, &sound);
            self.audio.drain(..n);
            self.sequence = self.sequence.checked_add(1).unwrap_or(1);
            w.add_part(Part {
                duration: from_ticks(self.part_ticks),
                independent: self.part[0].0.keyframe,
                data: Bytes::from(data),
            });
        }
        self.seg_ticks += self.part_ticks;
        self.part.clear();
        self.part_ticks = 0;
    }
}

#[cfg(test)]
#[path = "hls_cutter_tests.rs"]
mod tests;
