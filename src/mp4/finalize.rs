//! Finalization ("defragment in place"): turning a finished fragmented file into a regular MP4
//! with tiny writes, so players that ignore edit lists in fragmented files (ffmpeg 5.1,
//! Chromium's FFmpeg demuxer) present exactly from the edit's media time.
//!
//! 1. Append a regular `moov` (durations, edit list, complete sample tables: one chunk per
//!    fragment, no `mvex`) at the end of the file; sync.
//! 2. Overwrite the 4-byte type of the init `moov` and of every `moof` with `free` (sizes
//!    unchanged, so the file stays a valid box sequence); sync.
//!
//! A crash during step 1 leaves a torn tail that [`super::scan`] ignores (the file is still the
//! fragmented one); during step 2 [`super::scan`] reports `finalized` with the flips still
//! pending, and redoing them is idempotent. [`apply_finalize`] is the only function of the
//! `mp4` module that does file I/O.

use super::boxes::{be_u32, child, path, BoxRef, Bytes, Writer};
use super::moov::{write_moov, Media, Tables, TrackHeader};
use super::parse::{parse, Parsed};
use super::scan::layout;
use super::{Mp4Error, TIMESCALE};
use std::io::{Seek, SeekFrom, Write};

/// The plan that finalizes a fragmented file (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finalize {
    /// The regular `moov`, to append at the end of the file (empty: already there).
    pub moov: Vec<u8>,
    /// File offsets of 4-byte box-type fields to overwrite with `b"free"` once `moov` is
    /// durable: the init segment's `moov`, then every `moof`.
    pub flips: Vec<u64>,
}

/// Carry out `f` on `file` (opened for writing, positioned anywhere): append `f.moov` at the
/// end, `sync_all`, overwrite each flip with `free`, `sync_all`. Returns the final file size.
/// The file must end where the plan expects (the writer's last fragment, or
/// [`super::Scan::valid_len`] for [`finalize_from_file`]).
pub fn apply_finalize(file: &mut std::fs::File, f: &Finalize) -> std::io::Result<u64> {
    let end = file.seek(SeekFrom::End(0))?;
    if !f.moov.is_empty() {
        file.write_all(&f.moov)?;
        file.sync_all()?;
    }
    for &at in &f.flips {
        file.seek(SeekFrom::Start(at))?;
        file.write_all(b"free")?;
    }
    file.sync_all()?;
    Ok(end + f.moov.len() as u64)
}

/// Rebuild the plan of [`super::FragmentedMp4::finalize`] from a file it wrote, e.g. a clip
/// recovered after a crash. The file must end at [`super::Scan::valid_len`] (callers truncate
/// first, see [`super::FileView::truncate`]); anything else after the last complete fragment
/// is an error.
///
/// `Ok(None)`: nothing to do — no complete fragment, or already finalized with no flip
/// pending. A finalized file with flips pending gives an empty `moov` and those flips.
pub fn finalize_from_file<D: Bytes + ?Sized>(file: &D) -> Result<Option<Finalize>, Mp4Error> {
    let p = parse(file)?;
    if let Some(t) = p.trailer {
        let moov = regular_moov(file, &p)?;
        if t.end == file.size() && file.at(t.start..t.end) == Some(&moov[..]) {
            let flips = pending_flips(file, &p);
            return Ok((!flips.is_empty()).then_some(Finalize { moov: Vec::new(), flips }));
        }
    }
    if p.fragments_end != file.size() {
        return Err(Mp4Error::Malformed("bytes after the last complete fragment (truncate to valid_len first)"));
    }
    if p.moofs.is_empty() {
        return Ok(None);
    }
    Ok(Some(Finalize { moov: regular_moov(file, &p)?, flips: flips(&p) }))
}

/// Offsets of the type fields of the init `moov` and every `moof` (retyped or not).
pub(crate) fn flips(p: &Parsed) -> Vec<u64> {
    std::iter::once(p.init.start).chain(p.moofs.iter().map(|m| m.0)).map(|at| at as u64 + 4).collect()
}

/// [`flips`] whose box type is not `free` yet.
pub(crate) fn pending_flips<D: Bytes + ?Sized>(file: &D, p: &Parsed) -> Vec<u64> {
    flips(p).into_iter().filter(|&at| file.at(at as usize..at as usize + 4) != Some(b"free")).collect()
}

/// A track's `tkhd` width and height (16.16 fixed point, as written), by its version.
pub(crate) fn tkhd_size<D: Bytes + ?Sized>(file: &D, trak: &BoxRef) -> Result<(u32, u32), Mp4Error> {
    let tkhd = child(file, trak, b"tkhd")?;
    let wh = tkhd.body + if file.at(tkhd.body..tkhd.body + 1) == Some(&[1][..]) { 88 } else { 76 };
    if wh + 8 > tkhd.end {
        return Err(Mp4Error::Malformed("tkhd too short"));
    }
    Ok((be_u32(file, wh)?, be_u32(file, wh + 4)?))
}

/// The regular `moov` for the fragments `p` found in `file`, exactly as the writer builds it:
/// each track's `stsd`, `tkhd` dimensions, timescale and edits are copied from the init `moov`.
pub(crate) fn regular_moov<D: Bytes + ?Sized>(file: &D, p: &Parsed) -> Result<Vec<u8>, Mp4Error> {
    if p.composition_offsets {
        return Err(Mp4Error::Malformed("composition time offsets are not supported"));
    }
    let l = layout(file)?;
    if l.tracks.len() != p.tracks.len() {
        return Err(Mp4Error::Malformed("tracks changed between reads"));
    }
    let mut headers = Vec::with_capacity(l.tracks.len());
    for (t, samples) in l.tracks.iter().zip(&p.tracks) {
        let stsd = path(file, &t.trak, &[b"mdia", b"minf", b"stbl", b"stsd"])?;
        let hdlr = path(file, &t.trak, &[b"mdia", b"hdlr"])?;
        let media = match file.at(hdlr.body + 8..hdlr.body + 12) {
            Some(b"vide") => {
                if t.media_timescale != u64::from(TIMESCALE) {
                    return Err(Mp4Error::Malformed("video timescale is not 90 kHz"));
                }
                let (width, height) = tkhd_size(file, &t.trak)?;
                Media::Video { width, height }
            }
            Some(b"soun") => Media::Audio,
            _ => return Err(Mp4Error::Malformed("a track neither video nor sound")),
        };
        headers.push(TrackHeader {
            id: samples.id,
            stsd: file.at(stsd.start..stsd.end).ok_or(Mp4Error::Truncated("stsd"))?,
            media,
            timescale: u32::try_from(t.media_timescale).map_err(|_| Mp4Error::Malformed("timescale"))?,
            empty_edit: t.elst.as_ref().map_or(0, |e| e.empty),
            edit_media_time: t.elst.as_ref().map_or(0, |e| e.media_time),
        });
    }
    let tables: Vec<Tables> = p.tracks.iter().map(|t| Tables { samples: &t.samples, chunks: &t.chunks }).collect();
    let mut w =
        Writer::with_capacity(1024 + 4 * p.sample_count() + 4 * tables.iter().map(|t| t.chunks.len()).sum::<usize>());
    write_moov(&mut w, &headers, Some(&tables));
    Ok(w.buf)
}
