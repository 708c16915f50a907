//! Frames dated on the capture clock → fragments, GOP by GOP: one H.264 track and the camera's
//! sound beside it ([`AvFragments`]). Pure (bytes out, no I/O): the clip writer and the
//! continuous recorder write them.
//!
//! Video sample durations are counted from the track's origin (its first frame), not frame by
//! frame: rounding each 33.333 ms down to 2999 ticks would drift a minute 20 ms early against
//! its sound and its edit list. Sound: a frame is written once the next one is known (it lasts
//! from where it was written up to the next one's capture time, in samples, so a gap in the sound
//! stays a gap and a clock that steps back never pushes the rest late) or at the end (lasting up
//! to the video's end when the sound goes on past it, else its own duration). The track starts with the frame that plays at the first presented
//! picture, trimmed to it by its edit list; sound that begins later gets an empty edit; with no
//! sound yet at the start there is no track.

use super::{AudioSample, AudioTrack, FragmentedMp4, Mp4Error, Sample};
use crate::frame::{AudioFrame, EncodedFrame};
use crate::time::ticks;
use std::time::Duration;

/// The sound track as it is written.
#[derive(Debug, Clone)]
struct Sound {
    /// Capture time of the track's first sample (its first frame's).
    first_pts: Duration,
    rate: u32,
    config: bytes::Bytes,
    /// Samples written so far: where the next frame goes.
    written: u64,
}

impl Sound {
    /// The track's sample position of capture time `pts`.
    fn sample_of(&self, pts: Duration) -> u64 {
        crate::time::samples(pts.saturating_sub(self.first_pts), self.rate)
    }

    /// The track for a file presented from `presented`, from the sound collected so far
    /// (`audio`, in arrival order: the sound up to now); drops what plays before it. None: no
    /// sound yet.
    fn start(audio: &mut Vec<AudioFrame>, presented: Duration) -> Option<(Sound, AudioTrack)> {
        audio.retain(|a| a.pts + a.duration > presented);
        let first = audio.first()?;
        let f = &first.format;
        let sound = Sound { first_pts: first.pts, rate: f.rate, config: f.config.clone(), written: 0 };
        let (delay, edit_media_time) = if first.pts > presented {
            (((first.pts - presented).as_micros() + 500) as u64 / 1000, 0)
        } else {
            (0, crate::time::samples(presented - first.pts, f.rate))
        };
        let track =
            AudioTrack { config: f.config.to_vec(), rate: f.rate, channels: f.channels, delay, edit_media_time };
        Some((sound, track))
    }
}

/// A fragmented MP4 being cut from frames (see the module docs).
#[derive(Debug, Clone)]
pub struct AvFragments {
    mp4: FragmentedMp4,
    /// Capture time of the track's first frame (media time 0 before the edit list).
    origin: Duration,
    /// The first presented frame's capture time (the edit list starts there).
    presented: Duration,
    /// End of the last frame written.
    last_end: Duration,
    sound: Option<Sound>,
}

impl AvFragments {
    /// A file starting with keyframe `first`, presented from `presented` (a frame of its first
    /// GOP; earlier ones are cut by the edit list), `width`×`height` when the SPS does not say.
    /// `audio`: the sound collected so far; what plays before `presented` is dropped from it.
    pub fn start(
        first: &EncodedFrame,
        presented: Duration,
        width: u32,
        height: u32,
        audio: &mut Vec<AudioFrame>,
    ) -> Result<AvFragments, Mp4Error> {
        let (sound, track) = match Sound::start(audio, presented) {
            Some((s, t)) => (Some(s), Some(t)),
            None => (None, None),
        };
        let edit = ticks(presented.saturating_sub(first.pts));
        let mp4 = FragmentedMp4::new_av(&first.data, width, height, edit, track)?;
        Ok(AvFragments { mp4, origin: first.pts, presented, last_end: first.pts, sound })
    }

    /// Place the file on a longer timeline: its first frame at `offset` (a segment's place in
    /// its hour), the sound where it lies against that frame. Before the first fragment.
    pub fn place_at(&mut self, offset: Duration) {
        let video = ticks(offset);
        let audio = self.sound.as_ref().map_or(0, |s| {
            let at = (offset + s.first_pts).saturating_sub(self.origin);
            crate::time::samples(at, s.rate)
        });
        self.mp4.set_decode_base([video, audio]);
    }

    /// The writer underneath (init segment, sizes, counts, finalization).
    pub fn mp4(&self) -> &FragmentedMp4 {
        &self.mp4
    }

    /// Whether the file has a sound track.
    pub fn has_sound(&self) -> bool {
        self.sound.is_some()
    }

    /// Presented duration so far: from the first presented frame to the end of the last written.
    pub fn presented(&self) -> Duration {
        self.last_end.saturating_sub(self.presented)
    }

    /// End (capture time) of the last frame written.
    pub fn last_end(&self) -> Duration {
        self.last_end
    }

    /// The AAC frames of `audio` that go into the fragment ending at `end` (removed from it),
    /// with their durations: each written once its successor is known, lasting up to where the
    /// successor's capture time falls (from where this one was written, so a source whose clock
    /// steps back never pushes the rest of the track late), or at the `last`: the file's final
    /// frame lasts up to `end` when the sound goes on after it (else its own duration).
    fn take_sound(&mut self, audio: &mut Vec<AudioFrame>, end: Duration, last: bool) -> Vec<(AudioFrame, u32)> {
        let Some(sound) = &mut self.sound else {
            audio.clear();
            return Vec::new();
        };
        // Another stream (the camera's microphone came back differently) is not this track's.
        audio.retain(|a| a.pts >= sound.first_pts && a.format.config == sound.config && a.format.rate == sound.rate);
        let mut out = Vec::new();
        while out.len() < audio.len() && audio[out.len()].pts < end {
            let n = out.len();
            let own = crate::time::samples(audio[n].duration, sound.rate);
            let duration = match audio.get(n + 1) {
                Some(next) if next.pts < end || !last => sound.sample_of(next.pts).saturating_sub(sound.written),
                // The sound goes on after the file's end: its last frame lasts up to that end
                // (a gap there stays a gap), or its own duration when it runs past it.
                Some(_) => sound.sample_of(end).saturating_sub(sound.written).max(own),
                // The sound stopped (a microphone lost): the last frame lasts its own.
                None if last => own,
                None => break,
            };
            let duration = duration.clamp(1, u64::from(u32::MAX));
            sound.written += duration;
            out.push(duration as u32);
        }
        audio.drain(..out.len()).zip(out).collect()
    }

    /// The fragment of `gop` (in capture order), with the sound of `audio` that starts before
    /// its end (taken out of `audio`); `next_pts`: the next frame's capture time (the last
    /// frame's duration), else the last frame lasts its own; `last`: the file's final fragment.
    pub fn fragment(
        &mut self,
        gop: &[EncodedFrame],
        audio: &mut Vec<AudioFrame>,
        next_pts: Option<Duration>,
        last: bool,
    ) -> Vec<u8> {
        let origin = self.origin;
        let at = |t: Duration| ticks(t.saturating_sub(origin));
        let samples: Vec<Sample> = gop
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let end = gop.get(i + 1).map(|n| n.pts).or(next_pts).unwrap_or(f.pts + f.duration);
                let duration = at(end).saturating_sub(at(f.pts)).max(1);
                Sample { data: &f.data, duration: duration.min(u64::from(u32::MAX)) as u32, keyframe: f.keyframe }
            })
            .collect();
        if let Some(l) = gop.last() {
            self.last_end = next_pts.unwrap_or(l.pts + l.duration);
        }
        let end = self.last_end;
        let sound = self.take_sound(audio, end, last);
        let audio_samples: Vec<AudioSample> =
            sound.iter().map(|(a, duration)| AudioSample { data: &a.data, duration: *duration }).collect();
        self.mp4.fragment_av(&samples, &audio_samples)
    }
}

#[cfg(test)]
#[path = "av_tests.rs"]
mod tests;
