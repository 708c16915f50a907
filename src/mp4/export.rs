//! Export: a time range of a continuous recording — several fragmented segment files — as one
//! regular MP4 (`ftyp`, `moov` with complete sample tables and edit lists, one `mdat`), planned
//! from the files' boxes without reading a sample, so the web layer streams it straight from the
//! segments: [`plan`] gives the head (`ftyp` + `moov` + the `mdat` header) and the byte ranges
//! of the segment files that follow it, in order. No temporary copy, no re-encoding.
//!
//! Frame-exact at both ends: the video starts at the keyframe at or before the first frame of the
//! range and its edit list presents from that frame (the frame whose middle lies at or after
//! `from`), and it ends with the last frame whose middle lies before `to` — the clips' rule. The
//! sound is trimmed by its own edit list to the same first frame and ends with the video within
//! half an AAC frame. Segments are placed on one
//! timeline by their start times; a stretch without recording between two of them shows as the
//! last picture held (its duration runs up to the next frame), the sound as silence.
//!
//! An export needs one sample description per track: it ends before the first segment whose
//! video (new SPS/PPS: the camera changed resolution) or sound differs from the first one's
//! ([`ExportPlan::sources_used`]). Pure: the caller reads the files (a [`super::FileView`]
//! each) and streams the ranges.

use super::boxes::{path, Bytes, Writer};
use super::finalize::tkhd_size;
use super::moov::{write_moov, Chunk, Media, SampleEntry, Tables, TrackHeader};
use super::parse::parse;
use super::scan::layout;
use super::{Mp4Error, MOVIE_TIMESCALE, TIMESCALE};

/// One segment file of an export.
pub struct Source<'a> {
    /// Its bytes (a [`super::FileView`] of the file on disk).
    pub file: &'a dyn Bytes,
    /// Where its first presented frame lies on the export's timeline (90 kHz ticks, e.g. since
    /// the Unix epoch).
    pub start: u64,
}

/// What [`plan`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportPlan {
    /// `ftyp` + `moov` + the `mdat` header: the first bytes of the file.
    pub head: Vec<u8>,
    /// What follows `head`, in order: (source index, file offset, length).
    pub ranges: Vec<(usize, u64, u64)>,
    /// The whole file's length.
    pub len: u64,
    /// Presented video frames.
    pub frames: u64,
    /// The first presented frame's time (ticks, the sources' timeline).
    pub first: u64,
    /// The last presented frame's end (ticks).
    pub end: u64,
    /// Whether it has sound.
    pub sound: bool,
    /// Sources taken from the start of the list: fewer than given when one changed format.
    pub sources_used: usize,
}

/// One sample of a source, placed.
#[derive(Debug, Clone, Copy)]
struct Placed {
    src: usize,
    offset: u64,
    size: u32,
    /// Own duration (track timescale).
    duration: u32,
    /// Start on the timeline, 90 kHz ticks.
    at: u64,
    sync: bool,
}

/// A track of one source: its `stsd`, and its samples placed.
struct TrackOf {
    stsd: Vec<u8>,
    timescale: u64,
    samples: Vec<Placed>,
    /// `tkhd` width and height (video).
    size: (u32, u32),
}

/// The tracks (video, sound) of source `src`.
fn tracks_of(src: usize, s: &Source) -> Result<(TrackOf, Option<TrackOf>), Mp4Error> {
    let p = parse(s.file)?;
    let l = layout(s.file)?;
    if p.composition_offsets {
        return Err(Mp4Error::Malformed("composition time offsets are not supported"));
    }
    let mut out = Vec::new();
    for (t, samples) in l.tracks.iter().zip(&p.tracks) {
        let stsd = path(s.file, &t.trak, &[b"mdia", b"minf", b"stbl", b"stsd"])?;
        let stsd = s.file.at(stsd.start..stsd.end).ok_or(Mp4Error::Truncated("stsd"))?.to_vec();
        let size = tkhd_size(s.file, &t.trak)?;
        let ts = t.media_timescale;
        // Where the track's media time 0 lies: the edit presents media time `media_time` at the
        // segment's start, after `empty` ms of nothing.
        let (media_time, empty) = t.elst.as_ref().map_or((0, 0), |e| (e.media_time, e.empty));
        let zero = (s.start + empty * u64::from(TIMESCALE) / u64::from(MOVIE_TIMESCALE))
            .saturating_sub(media_time * u64::from(TIMESCALE) / ts);
        let mut placed = Vec::with_capacity(samples.samples.len());
        let mut media = 0u64;
        let mut chunks = samples.chunks.iter();
        let (mut chunk_left, mut offset) = (0u32, 0u64);
        for e in &samples.samples {
            while chunk_left == 0 {
                let c = chunks.next().ok_or(Mp4Error::Malformed("fewer chunks than samples"))?;
                (chunk_left, offset) = (c.samples, c.offset);
            }
            placed.push(Placed {
                src,
                offset,
                size: e.size,
                duration: e.duration,
                at: zero + media * u64::from(TIMESCALE) / ts,
                sync: e.sync,
            });
            media += u64::from(e.duration);
            offset += u64::from(e.size);
            chunk_left -= 1;
        }
        out.push(TrackOf { stsd, timescale: ts, samples: placed, size });
    }
    let mut it = out.into_iter();
    let video = it.next().ok_or(Mp4Error::MissingBox("trak".into()))?;
    Ok((video, it.next()))
}

/// The plan that exports `[from, to)` (ticks on the sources' timeline) of `sources` (in time
/// order) as one regular MP4 (see the module docs). `Ok(None)`: no frame in the range.
pub fn plan(sources: &[Source], from: u64, to: u64) -> Result<Option<ExportPlan>, Mp4Error> {
    let mut video: Option<TrackOf> = None;
    let mut sound: Option<TrackOf> = None;
    let mut used = 0;
    for (i, s) in sources.iter().enumerate() {
        let (v, a) = tracks_of(i, s)?;
        if video.as_ref().is_some_and(|first| first.stsd != v.stsd) {
            break;
        }
        if let (Some(a), Some(first)) = (&a, &sound) {
            // Sound in another format: ends the export when the range already has sound.
            let heard = first.samples.iter().any(|p| p.at + u64::from(p.duration) >= from);
            if a.stsd != first.stsd && heard {
                break;
            }
        }
        match &mut video {
            Some(first) => first.samples.extend(v.samples),
            None => video = Some(v),
        }
        match (&mut sound, a) {
            (Some(first), Some(a)) if first.stsd == a.stsd => first.samples.extend(a.samples),
            (slot, Some(a)) => *slot = Some(a),
            (_, None) => {}
        }
        used = i + 1;
    }
    let Some(video) = video else { return Ok(None) };
    let v = &video.samples;
    // The frames of the range: middles in [from, to).
    let mid = |p: &Placed| p.at + u64::from(p.duration) / 2;
    let Some(first) = v.iter().position(|p| mid(p) >= from) else { return Ok(None) };
    let Some(last) = v.iter().rposition(|p| mid(p) < to) else { return Ok(None) };
    if last < first {
        return Ok(None);
    }
    let Some(key) = v[..=first].iter().rposition(|p| p.sync) else {
        return Err(Mp4Error::Malformed("no keyframe before the range's first frame"));
    };
    let frames = &v[key..=last];
    let end = v[last].at + u64::from(v[last].duration);
    let video_entries: Vec<SampleEntry> = frames
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let duration = match frames.get(i + 1) {
                Some(n) => n.at.saturating_sub(p.at),
                None => u64::from(p.duration),
            };
            SampleEntry { size: p.size, duration: duration.clamp(1, u64::from(u32::MAX)) as u32, sync: p.sync }
        })
        .collect();
    let video_edit = v[first].at - v[key].at;

    // The sound that plays with the presented frames, positioned like `av::AvFragments` does.
    let audio = sound.as_ref().map(|a| {
        let rate = a.timescale;
        let start = v[first].at;
        let heard: Vec<&Placed> = a
            .samples
            .iter()
            .filter(|p| {
                // Heard from the first frame on; the last one is in when its middle lies before
                // the video's end (the frames' rule), so the sound ends with the video ± half a frame.
                let d = u64::from(p.duration) * u64::from(TIMESCALE) / rate;
                p.at + d > start && p.at + d / 2 < end
            })
            .collect();
        let zero = heard.first().map_or(start, |p| p.at);
        let sample_of = |t: u64| (u128::from(t.saturating_sub(zero)) * u128::from(rate) / u128::from(TIMESCALE)) as u64;
        let mut written = 0u64;
        let entries: Vec<SampleEntry> = heard
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let own = u64::from(p.duration);
                let d = match heard.get(i + 1) {
                    Some(n) => sample_of(n.at).saturating_sub(written),
                    None => own,
                };
                let d = d.clamp(1, u64::from(u32::MAX));
                written += d;
                SampleEntry { size: p.size, duration: d as u32, sync: true }
            })
            .collect();
        let (empty, media_time) = if zero > start {
            ((zero - start) * u64::from(MOVIE_TIMESCALE) / u64::from(TIMESCALE), 0)
        } else {
            (0, sample_of(start))
        };
        (heard, entries, empty, media_time)
    });
    let audio = audio.filter(|(heard, ..)| !heard.is_empty());

    // Chunks: runs of samples back to back in one source, video and sound interleaved by time.
    let runs = |samples: &[&Placed]| -> Vec<(usize, u64, u64, u32, u64)> {
        let mut out: Vec<(usize, u64, u64, u32, u64)> = Vec::new(); // src, offset, len, count, at
        for p in samples {
            match out.last_mut() {
                Some(r) if r.0 == p.src && r.1 + r.2 == p.offset => {
                    r.2 += u64::from(p.size);
                    r.3 += 1;
                }
                _ => out.push((p.src, p.offset, u64::from(p.size), 1, p.at)),
            }
        }
        out
    };
    let video_refs: Vec<&Placed> = frames.iter().collect();
    let video_runs = runs(&video_refs);
    let audio_runs = audio.as_ref().map_or_else(Vec::new, |(heard, ..)| runs(heard));
    // Merge by time: (track, run).
    let mut order: Vec<(u8, usize)> = Vec::with_capacity(video_runs.len() + audio_runs.len());
    let (mut i, mut j) = (0, 0);
    while i < video_runs.len() || j < audio_runs.len() {
        let take_video = j >= audio_runs.len() || (i < video_runs.len() && video_runs[i].4 <= audio_runs[j].4);
        if take_video {
            order.push((0, i));
            i += 1;
        } else {
            order.push((1, j));
            j += 1;
        }
    }

    let ftyp = ftyp();
    let video_stsd = video.stsd.clone();
    let build = |base: u64| -> Vec<u8> {
        let mut chunks: [Vec<Chunk>; 2] = [Vec::new(), Vec::new()];
        let mut at = base;
        for &(track, r) in &order {
            let run = if track == 0 { &video_runs[r] } else { &audio_runs[r] };
            chunks[track as usize].push(Chunk { offset: at, samples: run.3 });
            at += run.2;
        }
        let mut headers = vec![TrackHeader {
            id: 1,
            stsd: &video_stsd,
            media: Media::Video { width: video.size.0, height: video.size.1 },
            timescale: TIMESCALE,
            empty_edit: 0,
            edit_media_time: video_edit,
        }];
        let mut tables = vec![Tables { samples: &video_entries, chunks: &chunks[0] }];
        if let (Some((_, entries, empty, media_time)), Some(a)) = (&audio, &sound) {
            headers.push(TrackHeader {
                id: 2,
                stsd: &a.stsd,
                media: Media::Audio,
                timescale: a.timescale as u32,
                empty_edit: *empty,
                edit_media_time: *media_time,
            });
            tables.push(Tables { samples: entries, chunks: &chunks[1] });
        }
        let mut w = Writer::with_capacity(1024 + 16 * (video_entries.len() + order.len()));
        write_moov(&mut w, &headers, Some(&tables));
        w.buf
    };
    // The chunk offsets depend on the moov's size (32- or 64-bit offsets): settle it.
    const MDAT_HEADER: u64 = 16;
    let mut moov = build(ftyp.len() as u64 + MDAT_HEADER);
    for _ in 0..2 {
        let again = build(ftyp.len() as u64 + moov.len() as u64 + MDAT_HEADER);
        let settled = again.len() == moov.len();
        moov = again;
        if settled {
            break;
        }
    }
    let payload: u64 = order.iter().map(|&(t, r)| if t == 0 { video_runs[r].2 } else { audio_runs[r].2 }).sum();
    let mut head = ftyp;
    head.extend_from_slice(&moov);
    head.extend_from_slice(&1u32.to_be_bytes());
    head.extend_from_slice(b"mdat");
    head.extend_from_slice(&(payload + MDAT_HEADER).to_be_bytes());
    let ranges = order
        .iter()
        .map(|&(t, r)| {
            let run = if t == 0 { &video_runs[r] } else { &audio_runs[r] };
            (run.0, run.1, run.2)
        })
        .collect();
    Ok(Some(ExportPlan {
        len: head.len() as u64 + payload,
        head,
        ranges,
        frames: (last - first + 1) as u64,
        first: v[first].at,
        end,
        sound: audio.is_some(),
        sources_used: used,
    }))
}

/// `ftyp` of an exported file: a plain ISO/MP4 with H.264.
fn ftyp() -> Vec<u8> {
    let mut w = Writer::with_capacity(32);
    let b = w.open(b"ftyp");
    w.bytes(b"isom");
    w.u32(0x200);
    for brand in [b"isom", b"iso2", b"avc1", b"mp41"] {
        w.bytes(brand);
    }
    w.close(b);
    w.buf
}
