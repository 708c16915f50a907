//! Reading back what [`super::FragmentedMp4`] wrote: the duration patches applied at finish and
//! after a crash, and the recovery scan that finds the end of the last complete fragment.
//!
//! Works on byte slices the caller read; must never do I/O, modify its input, or trust a box
//! size without bounds checks (a crashed file may end anywhere, in garbage).

use super::boxes::{be_u32, be_var, child, children, header, path, BoxRef};
use super::Mp4Error;

/// What [`scan`] found in a possibly truncated file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    /// Bytes of `ftyp` + `moov` (and anything before `moov`).
    pub init_len: u64,
    /// End of the last complete `moof` + `mdat` pair (`init_len` if there is none).
    pub valid_len: u64,
    /// Complete fragments.
    pub fragments: u64,
    /// Samples in the complete fragments.
    pub samples: u64,
    /// Sum of their durations (media timescale).
    pub media_duration: u64,
    /// `elst` media time (media timescale), 0 without an edit list.
    pub edit_media_time: u64,
}

/// Where the init segment's `moov` lies; checks that the file starts with `ftyp`.
fn find_moov(data: &[u8]) -> Result<BoxRef, Mp4Error> {
    match header(data, 0) {
        Ok(Some((b, _))) if &b.typ != b"ftyp" => return Err(Mp4Error::NotMp4),
        Ok(Some((_, true))) => {}
        Ok(Some((_, false))) | Ok(None) => return Err(Mp4Error::Truncated("ftyp")),
        Err(_) => return Err(Mp4Error::NotMp4),
    }
    let mut pos = 0;
    loop {
        match header(data, pos)? {
            Some((b, true)) if &b.typ == b"moov" => return Ok(b),
            Some((b, _)) if matches!(&b.typ, b"moof" | b"mdat") => return Err(Mp4Error::MissingBox("moov".into())),
            Some((b, true)) => pos = b.end,
            Some((_, false)) | None => return Err(Mp4Error::Truncated("moov")),
        }
    }
}

/// A duration field to patch: file offset, 64-bit or not.
struct Field {
    at: usize,
    wide: bool,
}

impl Field {
    /// In the full box `b`, the field at `v0`/`v1` bytes after version+flags.
    fn of(data: &[u8], b: &BoxRef, v0: usize, v1: usize) -> Result<Field, Mp4Error> {
        let wide = version(data, b)? == 1;
        let at = b.body + 4 + if wide { v1 } else { v0 };
        let len = if wide { 8 } else { 4 };
        if at + len > b.end {
            return Err(Mp4Error::Malformed("full box too short for its version"));
        }
        Ok(Field { at, wide })
    }
    fn read(&self, data: &[u8]) -> Result<u64, Mp4Error> {
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

fn version(data: &[u8], b: &BoxRef) -> Result<u8, Mp4Error> {
    data.get(b.body).copied().ok_or(Mp4Error::Truncated("full box"))
}

/// Offsets of every duration field in the init segment, plus what is needed to compute them.
struct InitLayout {
    mvhd_duration: Field,
    movie_timescale: u64,
    tkhd_duration: Field,
    /// `elst` first entry's segment_duration, and its media time (negative = empty edit → 0).
    elst: Option<(Field, u64)>,
    mdhd_duration: Field,
    media_timescale: u64,
    mehd_duration: Option<Field>,
}

fn layout(data: &[u8]) -> Result<InitLayout, Mp4Error> {
    let moov = find_moov(data)?;
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
pub fn duration_patches(init: &[u8], media_duration: u64) -> Result<Vec<(u64, Vec<u8>)>, Mp4Error> {
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
/// incomplete; otherwise counts the complete `moof` + `mdat` pairs and stops at the first
/// incomplete or inconsistent one (a torn tail is ignored, never an error).
pub fn scan(file: &[u8]) -> Result<Scan, Mp4Error> {
    let l = layout(file)?;
    let moov = find_moov(file)?;
    let default_duration =
        path(file, &moov, &[b"mvex", b"trex"]).ok().and_then(|t| be_u32(file, t.body + 12).ok()).unwrap_or(0);
    let mut s = Scan {
        init_len: moov.end as u64,
        valid_len: moov.end as u64,
        fragments: 0,
        samples: 0,
        media_duration: 0,
        edit_media_time: l.elst.map_or(0, |e| e.1),
    };
    let mut pos = moov.end;
    while let Ok(Some((b, true))) = header(file, pos) {
        match &b.typ {
            b"moof" => {
                let Ok(Some((mdat, true))) = header(file, b.end) else { break };
                if &mdat.typ != b"mdat" {
                    break;
                }
                let Some((n, dur)) = fragment(file, &b, &mdat, default_duration) else { break };
                s.fragments += 1;
                s.samples += n;
                s.media_duration += dur;
                s.valid_len = mdat.end as u64;
                pos = mdat.end;
            }
            b"free" | b"skip" | b"styp" | b"sidx" | b"prft" | b"emsg" => pos = b.end,
            _ => break,
        }
    }
    Ok(s)
}

/// Samples and duration of one `moof` whose sample data must lie inside `mdat`; `None` if the
/// `moof` does not parse or points outside its `mdat`.
fn fragment(data: &[u8], moof: &BoxRef, mdat: &BoxRef, trex_duration: u32) -> Option<(u64, u64)> {
    let (mut samples, mut duration) = (0u64, 0u64);
    for traf in children(data, moof.body, moof.end).ok()?.iter().filter(|b| &b.typ == b"traf") {
        let kids = children(data, traf.body, traf.end).ok()?;
        let tfhd = kids.iter().find(|b| &b.typ == b"tfhd")?;
        let flags = be_u32(data, tfhd.body).ok()? & 0xff_ffff;
        if flags & 0x01 != 0 {
            return None; // explicit base-data-offset: never written here
        }
        let mut at = tfhd.body + 8 + if flags & 0x02 != 0 { 4 } else { 0 };
        let default_duration = if flags & 0x08 != 0 { be_u32(data, at).ok()? } else { trex_duration };
        at += if flags & 0x08 != 0 { 4 } else { 0 };
        let default_size = if flags & 0x10 != 0 { be_u32(data, at).ok()? } else { 0 };
        for trun in kids.iter().filter(|b| &b.typ == b"trun") {
            let f = be_u32(data, trun.body).ok()? & 0xff_ffff;
            let count = be_u32(data, trun.body + 4).ok()?;
            let mut at = trun.body + 8;
            let offset = if f & 0x01 != 0 {
                at += 4;
                i64::from(be_u32(data, at - 4).ok()? as i32)
            } else {
                (mdat.body - moof.start) as i64
            };
            if f & 0x04 != 0 {
                at += 4;
            }
            let per = [0x100, 0x200, 0x400, 0x800].iter().filter(|&&b| f & b != 0).count() * 4;
            if trun.end < at || ((trun.end - at) as u64) < u64::from(count) * per as u64 {
                return None;
            }
            let mut bytes = 0u64;
            for _ in 0..count {
                let mut field = |bit: u32, default: u32| -> Option<u32> {
                    if f & bit == 0 {
                        return Some(default);
                    }
                    at += 4;
                    be_u32(data, at - 4).ok()
                };
                duration += u64::from(field(0x100, default_duration)?);
                bytes += u64::from(field(0x200, default_size)?);
                field(0x400, 0)?;
                field(0x800, 0)?;
            }
            samples += u64::from(count);
            let start = moof.start as i64 + offset;
            if start < mdat.body as i64 || start as u64 + bytes > mdat.end as u64 {
                return None;
            }
        }
    }
    Some((samples, duration))
}
