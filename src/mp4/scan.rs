//! Reading back what [`super::FragmentedMp4`] wrote: the duration patches of a fragmented file,
//! and the recovery scan that finds the end of the last complete fragment, or tells that the
//! file was finalized (and which box-type flips are still pending).
//!
//! Works on the [`Bytes`] the caller read (a slice, or a [`super::FileView`]); must never do
//! I/O, modify its input, or trust a box size without bounds checks (a crashed file may end
//! anywhere, in garbage).

use super::boxes::{be_u32, be_var, child, path, BoxRef, Bytes};
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
    /// Samples in the complete fragments.
    pub samples: u64,
    /// Sum of their durations (media timescale).
    pub media_duration: u64,
    /// `elst` media time (media timescale), 0 without an edit list.
    pub edit_media_time: u64,
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

/// Offsets of every duration field in the init segment, plus what is needed to compute them.
pub(super) struct InitLayout {
    mvhd_duration: Field,
    movie_timescale: u64,
    tkhd_duration: Field,
    /// `elst` first entry's segment_duration, and its media time (negative = empty edit → 0).
    pub(super) elst: Option<(Field, u64)>,
    mdhd_duration: Field,
    pub(super) media_timescale: u64,
    mehd_duration: Option<Field>,
}

pub(super) fn layout<D: Bytes + ?Sized>(data: &D) -> Result<InitLayout, Mp4Error> {
    let moov = find_init(data)?;
    let mvhd = child(data, &moov, b"mvhd")?;
    let movie_ts = Field::of(data, &mvhd, 8, 16)?;
    let trak = child(data, &moov, b"trak")?;
    let tkhd = child(data, &trak, b"tkhd")?;
    let mdhd = path(data, &trak, &[b"mdia", b"mdhd"])?;
    let media_ts = Field::of(data, &mdhd, 8, 16)?;
    let elst = match path(data, &trak, &[b"edts", b"elst"]) {
        Ok(elst) if be_u32(data, elst.body + 4)? > 0 => {
            let wide = version(data, &elst)? == 1;
            let seg = Field { at: elst.body + 8, wide };
            let media_time = Field { at: elst.body + 8 + if wide { 8 } else { 4 }, wide };
            let raw = media_time.read(data)?;
            let signed = if wide { raw as i64 } else { i64::from(raw as u32 as i32) };
            Some((seg, signed.max(0) as u64))
        }
        Ok(_) | Err(Mp4Error::MissingBox(_)) => None,
        Err(e) => return Err(e),
    };
    let mehd = match path(data, &moov, &[b"mvex", b"mehd"]) {
        Ok(mehd) => Some(Field::of(data, &mehd, 0, 0)?),
        Err(Mp4Error::MissingBox(_)) => None,
        Err(e) => return Err(e),
    };
    let read_ts = |f: Field| -> Result<u64, Mp4Error> {
        let ts = u64::from(be_u32(data, f.at)?);
        if ts == 0 {
            Err(Mp4Error::Malformed("timescale 0"))
        } else {
            Ok(ts)
        }
    };
    Ok(InitLayout {
        mvhd_duration: Field::of(data, &mvhd, 12, 20)?,
        movie_timescale: read_ts(movie_ts)?,
        tkhd_duration: Field::of(data, &tkhd, 16, 24)?,
        elst,
        mdhd_duration: Field::of(data, &mdhd, 12, 20)?,
        media_timescale: read_ts(media_ts)?,
        mehd_duration: mehd,
    })
}

/// In-place patches `(file offset, bytes)` that make the file state its durations:
/// `mvhd`, `tkhd` and `elst.segment_duration` get the presented duration (media duration minus
/// the edit's media time, in the movie timescale); `mdhd` and `mehd` get `media_duration`.
/// `init` is the start of the file (at least `ftyp` + `moov`).
pub fn duration_patches<D: Bytes + ?Sized>(init: &D, media_duration: u64) -> Result<Vec<(u64, Vec<u8>)>, Mp4Error> {
    let l = layout(init)?;
    let media_time = l.elst.as_ref().map_or(0, |e| e.1);
    let presented = media_duration.saturating_sub(media_time);
    let movie = (u128::from(presented) * u128::from(l.movie_timescale) + u128::from(l.media_timescale / 2))
        / u128::from(l.media_timescale);
    let movie = u64::try_from(movie).unwrap_or(u64::MAX);
    let mut out = vec![l.mvhd_duration.patch(movie), l.tkhd_duration.patch(movie)];
    if let Some((seg, _)) = &l.elst {
        out.push(seg.patch(movie));
    }
    out.push(l.mdhd_duration.patch(media_duration));
    if let Some(mehd) = &l.mehd_duration {
        out.push(mehd.patch(media_duration));
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
    let trailer = p.trailer.filter(|t| regular_moov(file, &p).is_ok_and(|m| file.at(t.start..t.end) == Some(&m[..])));
    let pending_flips = match trailer {
        Some(_) => pending_flips(file, &p),
        None => Vec::new(),
    };
    Ok(Scan {
        init_len: p.init.end as u64,
        valid_len: trailer.map_or(p.fragments_end, |t| t.end) as u64,
        fragments: p.moofs.len() as u64,
        samples: p.samples.len() as u64,
        media_duration: p.samples.iter().map(|s| u64::from(s.duration)).sum(),
        edit_media_time: l.elst.map_or(0, |e| e.1),
        finalized: trailer.is_some(),
        pending_flips,
    })
}
