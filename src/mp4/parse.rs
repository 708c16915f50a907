//! Walking a file written by [`super::FragmentedMp4`] at any stage of its life: fragmented and
//! possibly torn at the end (a crash while recording), fragmented with a trailing regular
//! `moov` (a crash during finalization), or finalized (init `moov` and every `moof` retyped
//! `free`). Collects the per-sample table the regular `moov` needs from each `trun`, per track
//! (the video, and the sound when the clip has it).
//!
//! Works on the [`Bytes`] the caller read (a slice, or a [`super::FileView`]); must never do
//! I/O, modify its input, or trust a box size or sample count without bounds checks (a crashed
//! file may end anywhere, in garbage).

use super::boxes::{be_u32, child, children, header, BoxRef, Bytes};
use super::moov::{Chunk, SampleEntry};
use super::Mp4Error;

/// `trun`/`tfhd`/`trex` sample flags bit: `sample_is_non_sync_sample`.
const NON_SYNC: u32 = 0x0001_0000;

/// Most samples taken from one file: an hour (the longest clip) at 240 fps is 864 000, its
/// sound at 48 kHz 168 750 AAC frames. More is
/// garbage, and stops the walk like a torn fragment (a `trun` without per-sample fields could
/// otherwise claim 4 billion samples in a few bytes).
pub(crate) const MAX_SAMPLES: u64 = 1 << 20;

/// What [`parse`] found.
#[derive(Debug, Clone)]
pub(crate) struct Parsed {
    /// The init segment's `moov` (typed `moov`, or `free` once finalized).
    pub(crate) init: BoxRef,
    /// Every complete fragment: its `moof` offset and whether it is still typed `moof`.
    pub(crate) moofs: Vec<(usize, bool)>,
    /// The samples of those fragments, per track of the init `moov` (in `trak` order).
    pub(crate) tracks: Vec<TrackSamples>,
    /// Some `trun` has composition time offsets (never written here; not finalizable).
    pub(crate) composition_offsets: bool,
    /// End of the last complete fragment (`init.end` if none).
    pub(crate) fragments_end: usize,
    /// A complete `moov` without `mvex` right after the fragments (a regular `moov`).
    pub(crate) trailer: Option<BoxRef>,
}

/// One track's samples, in order, and its chunks (one per `trun`).
#[derive(Debug, Clone, Default)]
pub(crate) struct TrackSamples {
    /// `tkhd.track_ID`.
    pub(crate) id: u32,
    pub(crate) samples: Vec<SampleEntry>,
    pub(crate) chunks: Vec<Chunk>,
    /// `trex` defaults.
    defaults: Defaults,
}

impl Parsed {
    /// Samples of every track.
    pub(crate) fn sample_count(&self) -> usize {
        self.tracks.iter().map(|t| t.samples.len()).sum()
    }
}

/// Whether `b` is a `free` box whose payload starts with a child box of type `first`: a box
/// this module retyped (`mvhd` → the init `moov`, `mfhd` → a `moof`).
fn retyped<D: Bytes + ?Sized>(data: &D, b: &BoxRef, first: &[u8; 4]) -> bool {
    &b.typ == b"free" && b.end >= b.body + 8 && data.at(b.body + 4..b.body + 8) == Some(&first[..])
}

/// Where the init segment's `moov` lies (possibly retyped `free`); checks that the file starts
/// with `ftyp`.
pub(crate) fn find_init<D: Bytes + ?Sized>(data: &D) -> Result<BoxRef, Mp4Error> {
    match header(data, 0) {
        Ok(Some((b, _))) if &b.typ != b"ftyp" => return Err(Mp4Error::NotMp4),
        Ok(Some((_, true))) => {}
        Ok(Some((_, false))) | Ok(None) => return Err(Mp4Error::Truncated("ftyp")),
        Err(_) => return Err(Mp4Error::NotMp4),
    }
    let mut pos = 0;
    loop {
        match header(data, pos)? {
            Some((b, true)) if &b.typ == b"moov" || retyped(data, &b, b"mvhd") => return Ok(b),
            Some((b, _)) if matches!(&b.typ, b"moof" | b"mdat") => return Err(Mp4Error::MissingBox("moov".into())),
            Some((b, true)) => pos = b.end,
            Some((_, false)) | None => return Err(Mp4Error::Truncated("moov")),
        }
    }
}

/// `trex`-style defaults: duration, size, flags.
#[derive(Debug, Clone, Copy, Default)]
struct Defaults {
    duration: u32,
    size: u32,
    flags: u32,
}

/// Walk the file: the init segment (must be complete), then `moof` + `mdat` pairs up to the
/// first incomplete or inconsistent one, then an optional trailing regular `moov`.
pub(crate) fn parse<D: Bytes + ?Sized>(file: &D) -> Result<Parsed, Mp4Error> {
    let init = find_init(file)?;
    let mut tracks = Vec::new();
    let kids = children(file, init.body, init.end)?;
    for trak in kids.iter().filter(|b| &b.typ == b"trak") {
        let tkhd = child(file, trak, b"tkhd")?;
        let v1 = file.at(tkhd.body..tkhd.body + 1) == Some(&[1][..]);
        tracks.push(TrackSamples { id: be_u32(file, tkhd.body + if v1 { 20 } else { 12 })?, ..Default::default() });
    }
    if tracks.is_empty() {
        return Err(Mp4Error::MissingBox("trak".into()));
    }
    if let Some(mvex) = kids.iter().find(|b| &b.typ == b"mvex") {
        for trex in children(file, mvex.body, mvex.end)?.iter().filter(|b| &b.typ == b"trex") {
            let id = be_u32(file, trex.body + 4)?;
            if let Some(t) = tracks.iter_mut().find(|t| t.id == id) {
                t.defaults = Defaults {
                    duration: be_u32(file, trex.body + 12)?,
                    size: be_u32(file, trex.body + 16)?,
                    flags: be_u32(file, trex.body + 20)?,
                };
            }
        }
    }
    let mut p =
        Parsed { init, moofs: Vec::new(), tracks, composition_offsets: false, fragments_end: init.end, trailer: None };
    let mut pos = init.end;
    while let Ok(Some((b, true))) = header(file, pos) {
        match &b.typ {
            b"moof" | b"free" if &b.typ == b"moof" || retyped(file, &b, b"mfhd") => {
                let Ok(Some((mdat, true))) = header(file, b.end) else { break };
                if &mdat.typ != b"mdat" || !fragment(file, &b, &mdat, &mut p) {
                    break;
                }
                p.moofs.push((b.start, &b.typ == b"moof"));
                p.fragments_end = mdat.end;
                pos = mdat.end;
            }
            b"moov" => {
                let regular = children(file, b.body, b.end).is_ok_and(|k| k.iter().all(|c| &c.typ != b"mvex"));
                if regular {
                    p.trailer = Some(b);
                }
                break;
            }
            b"free" | b"skip" | b"styp" | b"sidx" | b"prft" | b"emsg" => pos = b.end,
            _ => break,
        }
    }
    Ok(p)
}

/// Append the samples and chunks of one `moof` whose sample data must lie inside `mdat` to
/// `p`; `false` (and `p` untouched) if the `moof` does not parse, names a track the init
/// segment does not have, or points outside its `mdat`.
fn fragment<D: Bytes + ?Sized>(data: &D, moof: &BoxRef, mdat: &BoxRef, p: &mut Parsed) -> bool {
    let mut found: Vec<TrackSamples> =
        p.tracks.iter().map(|t| TrackSamples { id: t.id, defaults: t.defaults, ..Default::default() }).collect();
    let room = MAX_SAMPLES.saturating_sub(p.sample_count() as u64);
    let Some(cts) = fragment_into(data, moof, mdat, room, &mut found) else { return false };
    for (t, f) in p.tracks.iter_mut().zip(found) {
        t.samples.extend(f.samples);
        t.chunks.extend(f.chunks);
    }
    p.composition_offsets |= cts;
    true
}

/// [`fragment`]'s walk: at most `room` samples in all; returns whether some `trun` has
/// composition time offsets.
fn fragment_into<D: Bytes + ?Sized>(
    data: &D,
    moof: &BoxRef,
    mdat: &BoxRef,
    room: u64,
    tracks: &mut [TrackSamples],
) -> Option<bool> {
    let mut cts = false;
    let mut taken = 0u64;
    for traf in children(data, moof.body, moof.end).ok()?.iter().filter(|b| &b.typ == b"traf") {
        let kids = children(data, traf.body, traf.end).ok()?;
        let tfhd = kids.iter().find(|b| &b.typ == b"tfhd")?;
        let flags = be_u32(data, tfhd.body).ok()? & 0xff_ffff;
        let id = be_u32(data, tfhd.body + 4).ok()?;
        let track = tracks.iter_mut().find(|t| t.id == id)?;
        let trex = track.defaults;
        if flags & 0x01 != 0 {
            return None; // explicit base-data-offset: never written here
        }
        let mut at = tfhd.body + 8 + if flags & 0x02 != 0 { 4 } else { 0 };
        let mut default = |bit: u32, trex_value: u32| -> Option<u32> {
            if flags & bit == 0 {
                return Some(trex_value);
            }
            at += 4;
            be_u32(data, at - 4).ok()
        };
        let defaults = Defaults {
            duration: default(0x08, trex.duration)?,
            size: default(0x10, trex.size)?,
            flags: default(0x20, trex.flags)?,
        };
        // Without a data offset, a trun's data follows the previous one's (the first: mdat).
        let mut next_data = mdat.body as u64;
        for trun in kids.iter().filter(|b| &b.typ == b"trun") {
            let f = be_u32(data, trun.body).ok()? & 0xff_ffff;
            let count = be_u32(data, trun.body + 4).ok()?;
            let mut at = trun.body + 8;
            let start = if f & 0x01 != 0 {
                at += 4;
                moof.start as i64 + i64::from(be_u32(data, at - 4).ok()? as i32)
            } else {
                next_data as i64
            };
            let first_flags = if f & 0x04 != 0 {
                at += 4;
                Some(be_u32(data, at - 4).ok()?)
            } else {
                None
            };
            let per = [0x100, 0x200, 0x400, 0x800].iter().filter(|&&b| f & b != 0).count() * 4;
            if trun.end < at || ((trun.end - at) as u64) < u64::from(count) * per as u64 {
                return None;
            }
            if taken + u64::from(count) > room {
                return None;
            }
            taken += u64::from(count);
            cts |= f & 0x800 != 0;
            let mut bytes = 0u64;
            for i in 0..count {
                let mut field = |bit: u32, default: u32| -> Option<u32> {
                    if f & bit == 0 {
                        return Some(default);
                    }
                    at += 4;
                    be_u32(data, at - 4).ok()
                };
                let duration = field(0x100, defaults.duration)?;
                let size = field(0x200, defaults.size)?;
                let default_flags = if i == 0 { first_flags.unwrap_or(defaults.flags) } else { defaults.flags };
                let sample_flags = field(0x400, default_flags)?;
                field(0x800, 0)?;
                bytes += u64::from(size);
                track.samples.push(SampleEntry { size, duration, sync: sample_flags & NON_SYNC == 0 });
            }
            if start < mdat.body as i64 || start as u64 + bytes > mdat.end as u64 {
                return None;
            }
            if count > 0 {
                track.chunks.push(Chunk { offset: start as u64, samples: count });
            }
            next_data = start as u64 + bytes;
        }
    }
    Some(cts)
}
