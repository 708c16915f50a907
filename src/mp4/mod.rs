//! Fragmented MP4 (ISO BMFF, CMAF-style) writer for H.264 clips and their AAC sound (a second
//! track, [`AudioTrack`]), with edit lists that trim the lead-in from the keyframe before
//! T − pre to T − pre exactly and start the sound at the same instant; its finalization into a
//! regular MP4 ([`FragmentedMp4::finalize`], [`apply_finalize`]); and the recovery helpers
//! ([`scan`], [`finalize_from_file`], [`duration_patches`]) that make a crashed clip playable
//! up to its last complete fragment, reading a file on disk through a [`FileView`] (its box
//! headers and the few boxes they need, never a whole file).
//!
//! Layout while recording: `ftyp` + `moov` (init segment, durations 0, `mvex`), then one
//! `moof` + `mdat` per call to [`FragmentedMp4::fragment`] — crash-safe, each fragment is
//! self-describing. At the end (or at recovery) the file is finalized in place: a regular
//! `moov` is appended, then the init `moov` and every `moof` are retyped `free`, giving
//! `ftyp, free, (free, mdat)*, moov` (see `finalize.rs` for the crash-safety argument).
//! Finalization is needed because ffmpeg 5.1 (and Chromium's FFmpeg demuxer) apply the edit
//! list of a *fragmented* file only as a timestamp shift. [`duration_patches`] still fills the
//! durations of a fragmented file in place (64-bit fields, no size change).
//!
//! This module owns only bytes: it must never block, log, or decide what goes in a clip (the
//! recorder does), and never do file I/O except in [`apply_finalize`] (append + in-place
//! 4-byte writes + sync) and [`FileView::read`] (bounded reads with seeks). Samples are
//! Annex-B access units; SPS/PPS live in `avcC` only.

pub mod aac;
pub mod av;
mod boxes;
pub mod export;
#[cfg(test)]
mod export_tests;
mod finalize;
#[cfg(test)]
mod fuzz_tests;
pub mod h264;
mod moov;
mod parse;
mod scan;
#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod tests_audio;
#[cfg(test)]
mod tests_finalize;
#[cfg(test)]
mod tests_view;
mod view;

pub use aac::AudioConfig;
pub use boxes::Bytes;
pub use finalize::{apply_finalize, finalize_from_file, Finalize};
pub use scan::{duration_patches, scan, Scan};
pub use view::{FileView, MAX_MOOV};

use boxes::Writer;
use moov::{Chunk, Media, SampleEntry, Tables, TrackHeader};

pub use crate::time::{ticks, TIMESCALE};
/// Movie timescale (`mvhd`, `tkhd`, `elst.segment_duration`): milliseconds.
pub const MOVIE_TIMESCALE: u32 = 1_000;
/// The video track's id.
const TRACK_ID: u32 = 1;
/// `trun` sample flags: a sync sample (depends on no other sample).
const FLAGS_SYNC: u32 = 0x0200_0000;
/// `trun` sample flags: depends on others, `sample_is_non_sync_sample`.
const FLAGS_NON_SYNC: u32 = 0x0101_0000;

/// One access unit to write.
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    /// Annex-B access unit (start codes), as from `h264parse` `alignment=au`.
    pub data: &'a [u8],
    /// Duration in [`TIMESCALE`] units.
    pub duration: u32,
    /// Whether this AU is a keyframe (IDR): becomes a sync sample.
    pub keyframe: bool,
}

/// Why an MP4 could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum Mp4Error {
    /// The first keyframe carries no SPS (NAL 7) or no PPS (NAL 8), so no `avcC` can be built.
    #[error("first keyframe has no SPS/PPS (set h264parse config-interval=-1)")]
    NoParameterSets,
    /// The bytes end inside something that must be complete.
    #[error("truncated MP4: ends inside {0}")]
    Truncated(&'static str),
    /// The bytes do not start with an `ftyp` box.
    #[error("not an MP4 file (no ftyp box at the start)")]
    NotMp4,
    /// A box the init segment needs is missing.
    #[error("MP4 init segment lacks a `{0}` box")]
    MissingBox(String),
    /// A box or field holds a value this module never writes.
    #[error("malformed MP4: {0}")]
    Malformed(&'static str),
}

/// The AAC track of a clip with sound (track 2), as [`FragmentedMp4::new_av`] takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioTrack {
    /// The AudioSpecificConfig (ISO/IEC 14496-3), as in the encoder's or camera's `codec_data`.
    pub config: Vec<u8>,
    /// Sample rate: the track's timescale (below 65 536).
    pub rate: u32,
    /// Channels.
    pub channels: u16,
    /// Silence before the track's first sample ([`MOVIE_TIMESCALE`]): sound that starts after
    /// the clip's first presented frame (an empty edit).
    pub delay: u64,
    /// Media time (samples) of the first sample presented: the part of the first frame that
    /// lies before the clip's first presented frame.
    pub edit_media_time: u64,
}

/// One AAC frame to write (raw, no ADTS header).
#[derive(Debug, Clone, Copy)]
pub struct AudioSample<'a> {
    /// The raw AAC access unit.
    pub data: &'a [u8],
    /// Duration in samples (the track's timescale): 1024 for AAC-LC, more across a gap.
    pub duration: u32,
}

/// The audio track's id.
const AUDIO_TRACK_ID: u32 = 2;

/// What the writer remembers of one track's samples (for the regular `moov`).
#[derive(Debug, Clone, Default)]
struct TrackLog {
    /// Sum of the durations of the samples written so far (= next `tfdt`).
    media_duration: u64,
    entries: Vec<SampleEntry>,
    /// One chunk per fragment holding samples of the track.
    chunks: Vec<Chunk>,
}

impl TrackLog {
    fn log(&mut self, offset: u64, durations: impl Iterator<Item = (u32, bool)>, sizes: &[u32]) {
        let before = self.entries.len();
        self.entries.extend(durations.zip(sizes).map(|((duration, sync), &size)| SampleEntry { size, duration, sync }));
        let added = &self.entries[before..];
        if !added.is_empty() {
            self.chunks.push(Chunk { offset, samples: added.len() as u32 });
        }
        self.media_duration += added.iter().map(|e| u64::from(e.duration)).sum::<u64>();
    }
}

/// A fragmented MP4 writer for one H.264 track and, optionally, one AAC track. Pure: returns
/// bytes for the caller to write.
#[derive(Debug, Clone)]
pub struct FragmentedMp4 {
    sps: Vec<Vec<u8>>,
    pps: Vec<Vec<u8>>,
    width: u32,
    height: u32,
    edit_media_time: u64,
    audio: Option<AudioTrack>,
    /// `mfhd.sequence_number` of the next fragment (starts at 1).
    next_sequence: u32,
    video: TrackLog,
    sound: TrackLog,
    /// Bytes produced so far: [`FragmentedMp4::init_segment`] plus every fragment, i.e. the file
    /// offset of the next fragment when the caller writes them back to back.
    written: u64,
    /// File offset of the init segment's `moov` box.
    init_moov_at: u64,
    /// File offset of each fragment's `moof` box.
    moofs: Vec<u64>,
    /// `tfdt` of the first fragment, per track (video ticks, audio samples): 0 for a clip; a
    /// continuous recording's segment starts where it lies in its hour.
    decode_base: [u64; 2],
}

impl FragmentedMp4 {
    /// `first_keyframe`: the clip's first AU (Annex-B); its SPS (NAL 7) and PPS (NAL 8) go into
    /// `avcC`, and the picture size its SPS describes into the track (`width`/`height` only
    /// when the SPS cannot be read that far). `edit_media_time`: media time ([`TIMESCALE`]) of the first presented sample
    /// relative to the first sample in the file.
    pub fn new(first_keyframe: &[u8], width: u32, height: u32, edit_media_time: u64) -> Result<Self, Mp4Error> {
        Self::new_av(first_keyframe, width, height, edit_media_time, None)
    }

    /// [`FragmentedMp4::new`] with an AAC track beside the video when `audio` is given.
    pub fn new_av(
        first_keyframe: &[u8],
        width: u32,
        height: u32,
        edit_media_time: u64,
        audio: Option<AudioTrack>,
    ) -> Result<Self, Mp4Error> {
        let (mut sps, mut pps) = (Vec::<Vec<u8>>::new(), Vec::<Vec<u8>>::new());
        for nal in nal_units(first_keyframe) {
            let list = match nal_type(nal) {
                7 => &mut sps,
                8 => &mut pps,
                _ => continue,
            };
            if !list.iter().any(|n| n == nal) {
                list.push(nal.to_vec());
            }
        }
        // avcC takes profile/compat/level from SPS bytes 1..4; lengths are 16-bit.
        if sps.is_empty() || pps.is_empty() || sps[0].len() < 4 {
            return Err(Mp4Error::NoParameterSets);
        }
        if sps.iter().chain(&pps).any(|n| n.len() > usize::from(u16::MAX)) {
            return Err(Mp4Error::Malformed("parameter set longer than 65535 bytes"));
        }
        if let Some(a) = &audio {
            if a.rate == 0 || a.rate > 0xffff || a.channels == 0 || a.config.len() < 2 || a.config.len() > 64 {
                return Err(Mp4Error::Malformed("audio track: rate 1–65535, channels ≥ 1, 2–64 bytes of config"));
            }
        }
        sps.truncate(31);
        pps.truncate(255);
        // The size the stream itself says (the caller's is a fallback): a camera that changed
        // resolution since its format was reported still gets a matching track header.
        let (width, height) = h264::sps_dimensions(&sps[0]).unwrap_or((width, height));
        let mut mp4 = FragmentedMp4 {
            sps,
            pps,
            width,
            height,
            edit_media_time,
            audio,
            next_sequence: 1,
            video: TrackLog::default(),
            sound: TrackLog::default(),
            written: 0,
            init_moov_at: 0,
            moofs: Vec::new(),
            decode_base: [0, 0],
        };
        let init = mp4.init_segment();
        mp4.written = init.len() as u64;
        mp4.init_moov_at = u64::from(u32::from_be_bytes(init[..4].try_into().expect("ftyp header"))); // after ftyp
        Ok(mp4)
    }

    /// `ftyp` + `moov` with all durations 0 (see [`duration_patches`]).
    pub fn init_segment(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(1024);
        let ftyp = w.open(b"ftyp");
        w.bytes(b"isom");
        w.u32(0x200);
        for brand in [b"isom", b"iso6", b"iso2", b"avc1", b"mp41"] {
            w.bytes(brand);
        }
        w.close(ftyp);

        let stsds = self.stsds();
        moov::write_moov(&mut w, &self.headers(&stsds), None);
        w.buf
    }

    /// Whether the file has an AAC track.
    pub fn has_audio(&self) -> bool {
        self.audio.is_some()
    }

    fn headers<'a>(&self, stsds: &'a [Vec<u8>]) -> Vec<TrackHeader<'a>> {
        let mut tracks = vec![TrackHeader {
            id: TRACK_ID,
            stsd: &stsds[0],
            media: Media::Video { width: self.width << 16, height: self.height << 16 },
            timescale: TIMESCALE,
            empty_edit: 0,
            edit_media_time: self.edit_media_time,
        }];
        if let (Some(a), Some(stsd)) = (&self.audio, stsds.get(1)) {
            tracks.push(TrackHeader {
                id: AUDIO_TRACK_ID,
                stsd,
                media: Media::Audio,
                timescale: a.rate,
                empty_edit: a.delay,
                edit_media_time: a.edit_media_time,
            });
        }
        tracks
    }

    /// One `stsd` box per track: `avc1` with its `avcC`, then `mp4a` with its `esds`.
    fn stsds(&self) -> Vec<Vec<u8>> {
        let mut w = Writer::with_capacity(256);
        let stsd = w.open_full(b"stsd", 0, 0);
        w.u32(1);
        self.write_avc1(&mut w);
        w.close(stsd);
        let mut out = vec![w.buf];
        if let Some(a) = &self.audio {
            let mut w = Writer::with_capacity(128);
            let stsd = w.open_full(b"stsd", 0, 0);
            w.u32(1);
            aac::write_mp4a(&mut w, &a.config, a.rate, a.channels);
            w.close(stsd);
            out.push(w.buf);
        }
        out
    }

    fn write_avc1(&self, w: &mut Writer) {
        let avc1 = w.open(b"avc1");
        w.zeros(6);
        w.u16(1); // data_reference_index
        w.zeros(16); // pre_defined, reserved
        w.u16(self.width.min(0xffff) as u16);
        w.u16(self.height.min(0xffff) as u16);
        w.u32(0x0048_0000); // 72 dpi
        w.u32(0x0048_0000);
        w.u32(0);
        w.u16(1); // frame_count
        w.zeros(32); // compressorname
        w.u16(0x0018); // depth
        w.u16(0xffff); // pre_defined = -1
        let avcc = w.open(b"avcC");
        w.u8(1);
        w.bytes(&self.sps[0][1..4]); // profile, constraint flags, level
        w.u8(0xfc | 3); // lengthSizeMinusOne = 3
        w.u8(0xe0 | self.sps.len() as u8);
        for s in &self.sps {
            w.u16(s.len() as u16);
            w.bytes(s);
        }
        w.u8(self.pps.len() as u8);
        for p in &self.pps {
            w.u16(p.len() as u16);
            w.bytes(p);
        }
        w.close(avcc);
        w.close(avc1);
    }

    /// Start the tracks' decode times (`tfdt`) at `bases` (video in [`TIMESCALE`], audio in its
    /// samples) instead of 0, before the first fragment: files cut from one stream then follow
    /// each other on one timeline (an hour's HLS playlist of segments).
    pub fn set_decode_base(&mut self, bases: [u64; 2]) {
        self.decode_base = bases;
    }

    /// One `moof` + `mdat` holding `samples` (empty input: empty output, nothing counted).
    /// NAL units become 4-byte length-prefixed; SPS, PPS and AUD NALs are dropped.
    pub fn fragment(&mut self, samples: &[Sample]) -> Vec<u8> {
        self.fragment_av(samples, &[])
    }

    /// One `moof` + `mdat` with the video `samples` and the AAC frames `audio` (a file without
    /// an audio track ignores them). Either may be empty; both empty: empty output.
    pub fn fragment_av(&mut self, samples: &[Sample], audio: &[AudioSample]) -> Vec<u8> {
        let audio = if self.audio.is_some() { audio } else { &[] };
        let bases = [self.decode_base[0] + self.video.media_duration, self.decode_base[1] + self.sound.media_duration];
        let Some(f) = write_fragment(self.next_sequence, bases, samples, audio) else { return Vec::new() };
        let moof_at = self.written;
        self.moofs.push(moof_at);
        self.video.log(
            moof_at + u64::from(f.offsets[0]),
            samples.iter().map(|s| (s.duration, s.keyframe)),
            &f.sizes[0],
        );
        self.sound.log(moof_at + u64::from(f.offsets[1]), audio.iter().map(|s| (s.duration, true)), &f.sizes[1]);
        self.written += f.bytes.len() as u64;
        self.next_sequence = self.next_sequence.wrapping_add(1);
        f.bytes
    }

    /// A stand-alone `moof` + `mdat` (a CMAF chunk) with the given `mfhd` sequence number and
    /// `tfdt` base media decode time ([`TIMESCALE`]), for live streaming (HLS parts) against
    /// this writer's [`init_segment`](Self::init_segment). Remembers nothing, so memory stays
    /// flat however long the stream runs; [`finalize`](Self::finalize) does not see these.
    pub fn live_fragment(&self, sequence: u32, base_media_time: u64, samples: &[Sample]) -> Vec<u8> {
        self.live_fragment_av(sequence, [base_media_time, 0], samples, &[])
    }

    /// [`FragmentedMp4::live_fragment`] with AAC frames: `bases` are the video's and the audio's
    /// `tfdt` (each in its track's timescale).
    pub fn live_fragment_av(
        &self,
        sequence: u32,
        bases: [u64; 2],
        samples: &[Sample],
        audio: &[AudioSample],
    ) -> Vec<u8> {
        let audio = if self.audio.is_some() { audio } else { &[] };
        write_fragment(sequence, bases, samples, audio).map(|f| f.bytes).unwrap_or_default()
    }

    /// Total video media duration written so far (sum of sample durations, [`TIMESCALE`]).
    pub fn media_duration(&self) -> u64 {
        self.video.media_duration
    }

    /// Video samples written so far.
    pub fn sample_count(&self) -> u64 {
        self.video.entries.len() as u64
    }

    /// Audio written so far: (samples, duration in the track's timescale).
    pub fn audio_written(&self) -> (u64, u64) {
        (self.sound.entries.len() as u64, self.sound.media_duration)
    }

    /// Bytes produced so far (init segment + fragments): the file's length when the caller
    /// wrote [`FragmentedMp4::init_segment`] and then every fragment back to back.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// The plan that turns the file written so far into a regular MP4 (see [`Finalize`]).
    /// Offsets assume the caller wrote [`FragmentedMp4::init_segment`] at offset 0 and then
    /// every non-empty [`FragmentedMp4::fragment`] back to back, nothing else.
    pub fn finalize(&self) -> Finalize {
        let stsds = self.stsds();
        let samples = self.video.entries.len() + self.sound.entries.len();
        let mut w = Writer::with_capacity(1024 + 4 * samples + 4 * self.moofs.len());
        let tables = [
            Tables { samples: &self.video.entries, chunks: &self.video.chunks },
            Tables { samples: &self.sound.entries, chunks: &self.sound.chunks },
        ];
        let headers = self.headers(&stsds);
        moov::write_moov(&mut w, &headers, Some(&tables[..headers.len()]));
        let flips = std::iter::once(self.init_moov_at).chain(self.moofs.iter().copied()).map(|at| at + 4).collect();
        Finalize { moov: w.buf, flips }
    }
}

/// What [`write_fragment`] made: the bytes, and per track (video, audio) each sample's size in
/// the `mdat` and the offset of its first sample from the start of `moof`.
struct Fragment {
    bytes: Vec<u8>,
    sizes: [Vec<u32>; 2],
    offsets: [u32; 2],
}

/// `moof` + `mdat` for `samples` and `audio` (None when both are empty): one `traf` per track
/// with samples, the video's data first in the `mdat`. `bases`: each track's `tfdt`.
fn write_fragment(sequence: u32, bases: [u64; 2], samples: &[Sample], audio: &[AudioSample]) -> Option<Fragment> {
    if samples.is_empty() && audio.is_empty() {
        return None;
    }
    let audio_bytes: usize = audio.iter().map(|s| s.data.len()).sum();
    let mut payload = Vec::with_capacity(samples.iter().map(|s| s.data.len()).sum::<usize>() + audio_bytes);
    let mut sizes = [Vec::with_capacity(samples.len()), Vec::with_capacity(audio.len())];
    for s in samples {
        let before = payload.len();
        for nal in nal_units(s.data) {
            if matches!(nal_type(nal), 7..=9) {
                continue;
            }
            payload.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            payload.extend_from_slice(nal);
        }
        sizes[0].push((payload.len() - before) as u32);
    }
    let video_bytes = payload.len();
    for s in audio {
        payload.extend_from_slice(s.data);
        sizes[1].push(s.data.len() as u32);
    }
    let mdat_header = if payload.len() as u64 + 8 > u64::from(u32::MAX) { 16 } else { 8 };

    let mut w = Writer::with_capacity(payload.len() + 200 + 12 * samples.len() + 8 * audio.len());
    let moof = w.open(b"moof");
    let mfhd = w.open_full(b"mfhd", 0, 0);
    w.u32(sequence);
    w.close(mfhd);
    let mut offset_fields = [None, None];
    if !samples.is_empty() {
        offset_fields[0] = Some(write_traf(&mut w, TRACK_ID, bases[0], |w| {
            // data-offset | sample-duration | sample-size | sample-flags
            let trun = w.open_full(b"trun", 0, 0x0001 | 0x0100 | 0x0200 | 0x0400);
            w.u32(samples.len() as u32);
            let at = w.buf.len();
            w.u32(0); // data_offset (set below)
            for (s, size) in samples.iter().zip(&sizes[0]) {
                w.u32(s.duration);
                w.u32(*size);
                w.u32(if s.keyframe { FLAGS_SYNC } else { FLAGS_NON_SYNC });
            }
            w.close(trun);
            at
        }));
    }
    if !audio.is_empty() {
        offset_fields[1] = Some(write_traf(&mut w, AUDIO_TRACK_ID, bases[1], |w| {
            // data-offset | sample-duration | sample-size; flags from `trex` (sync)
            let trun = w.open_full(b"trun", 0, 0x0001 | 0x0100 | 0x0200);
            w.u32(audio.len() as u32);
            let at = w.buf.len();
            w.u32(0);
            for (s, size) in audio.iter().zip(&sizes[1]) {
                w.u32(s.duration);
                w.u32(*size);
            }
            w.close(trun);
            at
        }));
    }
    w.close(moof);
    let video_offset = (w.buf.len() - moof + mdat_header) as u32;
    let offsets = [video_offset, video_offset + video_bytes as u32];
    for (field, offset) in offset_fields.iter().zip(offsets) {
        if let Some(at) = *field {
            w.buf[at..at + 4].copy_from_slice(&offset.to_be_bytes());
        }
    }

    if mdat_header == 16 {
        w.u32(1);
        w.bytes(b"mdat");
        w.u64(payload.len() as u64 + 16);
    } else {
        w.u32(payload.len() as u32 + 8);
        w.bytes(b"mdat");
    }
    w.bytes(&payload);
    Some(Fragment { bytes: w.buf, sizes, offsets })
}

/// A `traf` for track `id` with `tfdt` = `base`; `trun` writes the `trun` and returns where
/// its data offset goes.
fn write_traf(w: &mut Writer, id: u32, base: u64, trun: impl FnOnce(&mut Writer) -> usize) -> usize {
    let traf = w.open(b"traf");
    let tfhd = w.open_full(b"tfhd", 0, 0x02_0000); // default-base-is-moof
    w.u32(id);
    w.close(tfhd);
    let tfdt = w.open_full(b"tfdt", 1, 0);
    w.u64(base);
    w.close(tfdt);
    let at = trun(w);
    w.close(traf);
    at
}

/// The NAL units of an Annex-B buffer (3- or 4-byte start codes), without start codes or
/// trailing zero bytes. A buffer with no start code is taken as one NAL unit.
pub(crate) fn nal_units(data: &[u8]) -> Vec<&[u8]> {
    let mut codes = Vec::new(); // (start code offset, NAL offset)
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i + 2] > 1 {
            i += 3;
        } else if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            codes.push((i, i + 3));
            i += 3;
        } else {
            i += 1;
        }
    }
    if codes.is_empty() {
        return if data.is_empty() { Vec::new() } else { vec![data] };
    }
    let mut out = Vec::with_capacity(codes.len());
    for (k, &(_, from)) in codes.iter().enumerate() {
        let to = codes.get(k + 1).map_or(data.len(), |c| c.0);
        let mut nal = &data[from..to];
        while let [rest @ .., 0] = nal {
            nal = rest;
        }
        if !nal.is_empty() {
            out.push(nal);
        }
    }
    out
}

/// `nal_unit_type` of a NAL unit (its first byte's low 5 bits).
pub(crate) fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}
