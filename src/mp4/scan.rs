//! Reading back what [`super::FragmentedMp4`] wrote: the duration patches of a fragmented file,
//! and the recovery scan that finds the end of the last complete fragment, or tells that the
//! file was finalized (and which box-type flips are still pending).
//!
//! Works on the [`Bytes`] the caller read (a slice, or a [`super::FileView`]); must never do
//! I/O, modify its input, or trust a box size without bounds checks (a crashed file may end
//! anywhere, in garbage).

use super::boxes::{be_u32, be_var, child, children, path, BoxRef, Bytes};
use super::finalize::{pending_flips, regular_moov};
use super::parse::{find_init, parse};
use super::Mp4Error;

/// What [`scan`] found in a possibly truncated file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Bytes of `ftyp` + init `moov` (possibly retyped `free`), and anything before it.
    pub init_len: u64,
    /// What to keep: the end of the trailing regular `moov` if [`Scan::finalized`], else the
    /// end of the last complete `moof` + `mdat` pair (`init_len` if there is none).
    pub valid_len: u64,
    /// Complete fragments.
    pub fragments: u64,
    /// Video samples in the complete fragments.
    pub samples: u64,
    /// Sum of their durations (the video's media timescale).
    pub media_duration: u64,
    /// The video's `elst` media time (media timescale), 0 without an edit list.
    pub edit_media_time: u64,
    /// Audio samples in the complete fragments (0: no sound).
    pub audio_samples: u64,
    /// The file ends in its complete regular `moov` (step 1 of finalization is done).
    pub finalized: bool,
    /// When finalized: offsets of the box-type fields still to overwrite with `free` (the init
    /// `moov`, `moof`s) — step 2, idempotent. Empty when not finalized.
    pub pending_flips: Vec<u64>,
}

/// A duration field to patch: file offset, 64-bit or not.
pub(super) struct Field {
    at: usize,
    wide: bool,
}

impl Field {
    /// In the full box `b`, the field at `v0`/`v1` bytes after version+flags.
    fn of<D: Bytes + ?Sized>(data: &D, b: &BoxRef, v0: usize, v1: usize) -> Result<Field, Mp4Error> {
        let wide = version(data, b)? == 1;
        let at = b.body + 4 + if wide { v1 } else { v0 };
        let len = if wide { 8 } else { 4 };
        if at + len > b.end {
            return Err(Mp4Error::Malformed("full box too short for its version"));
        }
        Ok(Field { at, wide })
    }
    fn read<D: Bytes + ?Sized>(&self, data: &D) -> Result<u64, Mp4Error> {
        be_var(data, self.at, self.wide)
    }
    fn patch(&self, value: u64) -> (u64, Vec<u8>) {
        let bytes = if self.wide {
            value.to_be_bytes().to_vec()
        } else {
            (value.min(u64::from(u32::MAX)) as u32).to_be_bytes().to_vec()
        };
        (self.at as u64, bytes)
    }
}

fn version<D: Bytes + ?Sized>(data: &D, b: &BoxRef) -> Result<u8, Mp4Error> {
    data.at(b.body..b.body + 1).map(|v| v[0]).ok_or(Mp4Error::Truncated("full box"))
}

/// An edit list's media entry: its `segment_duration` field and media time, and the empty
/// edits before it ([`super::MOVIE_TIMESCALE`]).
pub(super) struct Elst {
    seg: Field,
    pub(super) media_time: u64,
    pub(super) empty: u64,
}

/// Offsets of one track's duration fields, plus what is needed to compute them.
pub(super) struct TrackLayout {
    /// The `trak` box.
    pub(super) trak: BoxRef,
    tkhd_duration: Field,
    pub(super) elst: Option<Elst>,
    mdhd_duration: Field,
    pub(super) media_timescale: u64,
}

/// Offsets of every duration field in the init segment, plus what is needed to compute them.
pub(super) struct InitLayout {
    mvhd_duration: Field,
    movie_timescale: u64,
    /// One per `trak`, in order.
    pub(super) tracks: Vec<TrackLayout>,
    mehd_duration: Option<Field>,
}

/// Most `elst` entries read (this writer writes one or two).
const MAX_EDITS: u32 = 8;

fn read_elst<D: Bytes + ?Sized>(data: &D, elst: &BoxRef) -> Result<Option<Elst>, Mp4Error> {
    let wide = version(data, elst)? == 1;
    let count = be_u32(data, elst.body + 4)?.min(MAX_EDITS);
    let entry = if wide { 20 } else { 12 };
    let mut empty = 0u64;
    for i in 0..count as usize {
        let at = elst.body + 8 + i * entry;
        if at + entry > elst.end {
            return Err(Mp4Error::Malformed("elst shorter than its entries"));
        }
        let seg = Field { at, wide };
        let raw = Field { at: at + if wide { 8 } else { 4 }, wide }.read(data)?;
        let signed = if wide { raw as i64 } else { i64::from(raw as u32 as i32) };
        if signed == -1 {
            empty = empty.saturating_add(seg.read(data)?);
            continue;
        }
        return Ok(Some(Elst { seg, media_time: signed.max(0) as u64, empty }));
    }
    Ok(None)
}

fn read_timescale<D: Bytes + ?Sized>(data: &D, f: Field) -> Result<u64, Mp4Error> {
    let ts = u64::from(be_u32(data, f.at)?);
    if ts == 0 {
        Err(Mp4Error::Malformed("timescale 0"))
    } else {
        Ok(ts)
    }
}

pub(super) fn layout<D: Bytes + ?Sized>(data: &D) -> Result<InitLayout, Mp4Error> {
    let moov = find_init(data)?;
    let mvhd = child(data, &moov, b"mvhd")?;
    let movie_ts = Field::of(data, &mvhd, 8, 16)?;
    let mut tracks = Vec::new();
    for trak in children(data, moov.body, moov.end)?.into_iter().filter(|b| &b.typ == b"trak") {
        let tkhd = child(data, &trak, b"tkhd")?;
        let mdhd = path(data, &trak, &[b"mdia", b"mdhd"])?;
        let elst = match path(data, &trak, &[b"edts", b"elst"]) {
            Ok(elst) => read_elst(data, &elst)?,
            Err(Mp4Error::MissingBox(_)) => None,
            Err(e) => return Err(e),
        };
        tracks.push(TrackLayout {
            trak,
            tkhd_duration: Field::of(data, &tkhd, 16, 24)?,
            elst,
            mdhd_duration: Field::of(data, &mdhd, 12, 20)?,
            media_timescale: read_timescale(data, Field::of(data, &mdhd, 8, 16)?)?,
        });
    }
    if tracks.is_empty() {
        return Err(Mp4Error::MissingBox("trak".into()));
    }
    let mehd = match path(data, &moov, &[b"mvex", b"mehd"]) {
        Ok(mehd) => Some(Field::of(data, &mehd, 0, 0)?),
        Err(Mp4Error::MissingBox(_)) => None,
        Err(e) => return Err(e),
    };
    Ok(InitLayout {
        mvhd_duration: Field::of(data, &mvhd, 12, 20)?,
        movie_timescale: read_timescale(data, movie_ts)?,
        tracks,
        mehd_duration: mehd,
    })
}

/// In-place patches `(file offset, bytes)` that make the file state its durations, given each
/// track's media duration (`trak` order; a missing one counts as 0): `tkhd` gets the track's
/// presented duration (its media duration minus the edit's media time, in the movie
/// timescale, after any empty edit), `elst.segment_duration` the same without the empty edit,
/// `mdhd` the media duration, and `mvhd` and `mehd` the longest track.
/// `init` is the start of the file (at least `ftyp` + `moov`).
pub fn duration_patches<D: Bytes + ?Sized>(init: &D, media_durations: &[u64]) -> Result<Vec<(u64, Vec<u8>)>, Mp4Error> {
    let l = layout(init)?;
    let mut out = Vec::new();
    let mut movie = 0u64;
    for (i, t) in l.tracks.iter().enumerate() {
        let media = media_durations.get(i).copied().unwrap_or(0);
        let (media_time, empty) = t.elst.as_ref().map_or((0, 0), |e| (e.media_time, e.empty));
        let segment = super::moov::presented_movie_duration(media, media_time, t.media_timescale, l.movie_timescale);
        let track = empty.saturating_add(segment);
        movie = movie.max(track);
        out.push(t.tkhd_duration.patch(track));
        if let Some(e) = &t.elst {
            out.push(e.seg.patch(segment));
        }
        out.push(t.mdhd_duration.patch(media));
    }
    out.insert(0, l.mvhd_duration.patch(movie));
    if let Some(mehd) = &l.mehd_duration {
        out.push(mehd.patch(movie));
    }
    Ok(out)
}

/// Recovery scan of a possibly truncated file. `Err` if `ftyp` + `moov` is missing or
/// incomplete; otherwise counts the complete `moof` + `mdat` pairs (also those already retyped
/// `free` by finalization) and stops at the first incomplete or inconsistent one (a torn tail
/// is ignored, never an error). A trailing regular `moov` counts as "finalized" only if it is
/// byte for byte the one [`super::finalize_from_file`] would append for these fragments, so a
/// torn append is a torn tail. `file`: the bytes, or a [`super::FileView`] of a file on disk.
pub fn scan<D: Bytes + ?Sized>(file: &D) -> Result<Scan, Mp4Error> {
    let l = layout(file)?;
    let p = parse(file)?;
    let video = p.tracks.first().ok_or(Mp4Error::MissingBox("trak".into()))?;
    let trailer = p.trailer.filter(|t| regular_moov(file, &p).is_ok_and(|m| file.at(t.start..t.end) == Some(&m[..])));
    let pending_flips = match trailer {
        Some(_) => pending_flips(file, &p),
        None => Vec::new(),
    };
    Ok(Scan {
        init_len: p.init.end as u64,
        valid_len: trailer.map_or(p.fragments_end, |t| t.end) as u64,
        fragments: p.moofs.len() as u64,
        samples: video.samples.len() as u64,
        media_duration: video.samples.iter().map(|s| u64::from(s.duration)).sum(),
        edit_media_time: l.tracks[0].elst.as_ref().map_or(0, |e| e.media_time),
        audio_samples: p.tracks.get(1).map_or(0, |t| t.samples.len() as u64),
        finalized: trailer.is_some(),
        pending_flips,
    })
}
