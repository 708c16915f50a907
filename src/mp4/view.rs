//! A file on disk as [`super::scan`] and [`super::finalize_from_file`] need it, without reading it
//! whole: a clip or an upload may be gigabytes, and recovery runs at every start on a board with
//! 512 MB of RAM.
//!
//! [`FileView::read`] walks the top-level boxes with seeks: it reads each box's header (and the
//! first bytes of its payload, enough to tell a retyped `free`), and loads whole only the boxes
//! the readers look into — `ftyp`, `moov`, `moof`, and a `free` that was one of them. `mdat`
//! payloads are never read. A box beyond its bound ([`MAX_MOOV`], [`MAX_BOX`]) is not loaded, so
//! the readers see it as unreadable (an init segment that is too big is an error, a trailer or
//! fragment that is too big a torn tail), and the walk stops after [`MAX_BOXES`] boxes or
//! [`MAX_LOADED`] bytes: what lies beyond reads as a torn tail too.
//!
//! Reads only, through any `Read + Seek`; never writes, never trusts a size before checking it
//! against the file's length and the bounds.

use super::boxes::{header, Bytes};
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;

/// Largest `moov` loaded (the init segment's, or a finalized clip's trailer): an hour at 240 fps
/// needs about 12 MiB. A bigger one is corrupt.
pub const MAX_MOOV: u64 = 64 << 20;
/// Largest other box loaded (`ftyp`, `moof`).
pub const MAX_BOX: u64 = 16 << 20;
/// Most top-level boxes walked (two per fragment; an hour-long clip has a few thousand).
pub const MAX_BOXES: usize = 1 << 18;
/// Most bytes loaded in all.
pub const MAX_LOADED: usize = 96 << 20;
/// Bytes read at the start of a box that is not loaded whole: a 64-bit header and the first
/// child's header.
const HEAD: u64 = 24;

/// The parts of a file that [`FileView::read`] loaded (see the module docs).
#[derive(Debug, Default)]
pub struct FileView {
    /// The file's length (or less, after [`FileView::truncate`]).
    len: usize,
    /// Loaded ranges in file order, disjoint: (file offset, offset in `bytes`, length).
    segments: Vec<(usize, usize, usize)>,
    bytes: Vec<u8>,
}

impl FileView {
    /// Walk `file` from its start (see the module docs). Only I/O errors fail; a file that is
    /// not an MP4 gives a view the readers reject.
    pub fn read<R: Read + Seek>(file: &mut R) -> std::io::Result<FileView> {
        let len = file.seek(SeekFrom::End(0))?;
        let len_usize = usize::try_from(len).map_err(|_| std::io::Error::other("file too large"))?;
        let mut view = FileView { len: len_usize, ..FileView::default() };
        let mut pos = 0u64;
        while pos < len && view.segments.len() < MAX_BOXES {
            let head = view.load(file, pos, HEAD.min(len - pos))?;
            let Ok(Some((b, complete))) = header(&view.bytes[head.clone()], 0) else { break };
            let size = (b.end - b.start) as u64;
            // `header` judged completeness against the head only: against the file here.
            let complete = complete || pos.checked_add(size).is_some_and(|end| end <= len);
            if !complete {
                break; // a torn last box: its head is all the readers may see
            }
            let body = &view.bytes[head.start + (b.body - b.start)..head.end];
            let retyped = &b.typ == b"free" && matches!(body.get(4..8), Some(b"mvhd" | b"mfhd"));
            let limit = match &b.typ {
                b"moov" => MAX_MOOV,
                b"ftyp" | b"moof" => MAX_BOX,
                b"free" if retyped && body.get(4..8) == Some(b"mvhd") => MAX_MOOV,
                b"free" if retyped => MAX_BOX,
                _ => 0,
            };
            if size > head.len() as u64 && size <= limit && view.bytes.len() as u64 + size <= MAX_LOADED as u64 {
                // Replace the head by the whole box (the head is the last thing loaded).
                view.bytes.truncate(head.start);
                view.segments.pop();
                view.load(file, pos, size)?;
            }
            if view.bytes.len() >= MAX_LOADED {
                break;
            }
            pos += size;
        }
        view.bytes.shrink_to_fit();
        view.segments.shrink_to_fit();
        Ok(view)
    }

    /// Read `n` bytes at `pos` into a new segment; returns its range in `bytes`.
    fn load<R: Read + Seek>(&mut self, file: &mut R, pos: u64, n: u64) -> std::io::Result<Range<usize>> {
        let at = self.bytes.len();
        let n = usize::try_from(n).map_err(|_| std::io::Error::other("box too large"))?;
        file.seek(SeekFrom::Start(pos))?;
        self.bytes.try_reserve(n).map_err(|_| std::io::Error::other("out of memory"))?;
        self.bytes.resize(at + n, 0);
        file.read_exact(&mut self.bytes[at..])?;
        self.segments.push((pos as usize, at, n));
        Ok(at..at + n)
    }

    /// Make the view end at `len` (as a file truncated there would), e.g. at
    /// [`super::Scan::valid_len`] before [`super::finalize_from_file`].
    pub fn truncate(&mut self, len: u64) {
        let len = usize::try_from(len).unwrap_or(usize::MAX).min(self.len);
        self.len = len;
        self.segments.retain(|&(start, _, _)| start < len);
        if let Some(last) = self.segments.last_mut() {
            last.2 = last.2.min(len - last.0);
        }
    }

    /// Bytes loaded (for tests and logs).
    pub fn loaded(&self) -> usize {
        self.bytes.len()
    }
}

impl Bytes for FileView {
    fn size(&self) -> usize {
        self.len
    }

    fn at(&self, range: Range<usize>) -> Option<&[u8]> {
        if range.start > range.end || range.end > self.len {
            return None;
        }
        // The last segment starting at or before `range.start`.
        let i = self.segments.partition_point(|s| s.0 <= range.start).checked_sub(1)?;
        let (start, at, n) = self.segments[i];
        if range.end > start + n {
            return None;
        }
        self.bytes.get(at + range.start - start..at + range.end - start)
    }
}
