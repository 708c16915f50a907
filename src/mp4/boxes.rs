//! ISO BMFF box plumbing for the MP4 writer: a growable writer whose boxes patch their own size
//! when closed, and a bounds-checked reader that walks boxes in a file's [`Bytes`] (a byte
//! slice, or the parts of a file [`super::FileView`] loaded).
//!
//! Owns only byte layout (big-endian integers, box headers). It must never know about H.264,
//! fragments or durations, and never does I/O.

use super::Mp4Error;
use std::ops::Range;

/// A file's bytes as the readers see them: whole (a byte slice) or only in part
/// ([`super::FileView`]). Offsets are file offsets; a range that is not at hand (past the end,
/// or not loaded) reads as missing, exactly like a range past the end of a slice.
pub trait Bytes {
    /// The file's length.
    fn size(&self) -> usize;
    /// The bytes of `range`, if all of them are at hand.
    fn at(&self, range: Range<usize>) -> Option<&[u8]>;
}

impl Bytes for [u8] {
    fn size(&self) -> usize {
        self.len()
    }
    fn at(&self, range: Range<usize>) -> Option<&[u8]> {
        self.get(range)
    }
}

impl Bytes for Vec<u8> {
    fn size(&self) -> usize {
        self.len()
    }
    fn at(&self, range: Range<usize>) -> Option<&[u8]> {
        self.get(range)
    }
}

impl<const N: usize> Bytes for [u8; N] {
    fn size(&self) -> usize {
        N
    }
    fn at(&self, range: Range<usize>) -> Option<&[u8]> {
        self.get(range)
    }
}

/// The first `end` bytes of a file (what [`children`] walks).
struct Prefix<'a, D: ?Sized> {
    data: &'a D,
    end: usize,
}

impl<D: Bytes + ?Sized> Bytes for Prefix<'_, D> {
    fn size(&self) -> usize {
        self.end
    }
    fn at(&self, range: Range<usize>) -> Option<&[u8]> {
        if range.end > self.end {
            return None;
        }
        self.data.at(range)
    }
}

/// Appends big-endian fields; [`Writer::open`]/[`Writer::close`] bracket a box.
#[derive(Default)]
pub(crate) struct Writer {
    pub(crate) buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Writer { buf: Vec::with_capacity(n) }
    }
    /// Start a box; returns its offset for [`Writer::close`].
    pub(crate) fn open(&mut self, typ: &[u8; 4]) -> usize {
        let at = self.buf.len();
        self.u32(0);
        self.bytes(typ);
        at
    }
    /// Start a full box (version + 24-bit flags).
    pub(crate) fn open_full(&mut self, typ: &[u8; 4], version: u8, flags: u32) -> usize {
        let at = self.open(typ);
        self.u32((u32::from(version) << 24) | (flags & 0x00ff_ffff));
        at
    }
    /// Finish the box opened at `at` by writing its 32-bit size.
    pub(crate) fn close(&mut self, at: usize) {
        let size = u32::try_from(self.buf.len() - at).expect("box larger than 4 GiB");
        self.buf[at..at + 4].copy_from_slice(&size.to_be_bytes());
    }
    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub(crate) fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }
    pub(crate) fn zeros(&mut self, n: usize) {
        self.buf.resize(self.buf.len() + n, 0);
    }
    /// The identity transformation matrix (tkhd, mvhd).
    pub(crate) fn unity_matrix(&mut self) {
        for v in [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
            self.u32(v);
        }
    }
}

/// One box found by [`children`]: its type and where it lies (offsets into the walked slice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BoxRef {
    pub(crate) typ: [u8; 4],
    /// Offset of the box header.
    pub(crate) start: usize,
    /// Offset of the payload (after size, type and any 64-bit size).
    pub(crate) body: usize,
    /// Offset just past the box.
    pub(crate) end: usize,
}

/// The header of the box at `pos` in `data`, and whether the whole box fits in `data`.
/// `Ok(None)` when fewer than 8 (or 16 for a 64-bit size) bytes remain; `Err` when the header
/// is nonsense (size smaller than the header, or 0 = "to end of file", which this writer never
/// emits and recovery cannot trust).
pub(crate) fn header<D: Bytes + ?Sized>(data: &D, pos: usize) -> Result<Option<(BoxRef, bool)>, Mp4Error> {
    let Some(h) = data.at(pos..pos.saturating_add(8)) else { return Ok(None) };
    let size32 = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
    let typ = [h[4], h[5], h[6], h[7]];
    let (size, hlen) = match size32 {
        0 => return Err(Mp4Error::Malformed("box with size 0 (to end of file)")),
        1 => match data.at(pos + 8..pos + 16) {
            Some(l) => (u64::from_be_bytes(l.try_into().expect("8 bytes")), 16),
            None => return Ok(None),
        },
        n => (u64::from(n), 8),
    };
    if size < hlen as u64 {
        return Err(Mp4Error::Malformed("box size smaller than its header"));
    }
    let end = (pos as u64).saturating_add(size);
    let complete = end <= data.size() as u64;
    let end = usize::try_from(end).unwrap_or(usize::MAX);
    Ok(Some((BoxRef { typ, start: pos, body: pos + hlen, end }, complete)))
}

/// All boxes laid end to end in `data[from..to]`; every one must be complete.
pub(crate) fn children<D: Bytes + ?Sized>(data: &D, from: usize, to: usize) -> Result<Vec<BoxRef>, Mp4Error> {
    if to > data.size() {
        return Err(Mp4Error::Truncated("box"));
    }
    let data = Prefix { data, end: to };
    let mut out = Vec::new();
    let mut pos = from;
    while pos < to {
        match header(&data, pos)? {
            Some((b, true)) => {
                out.push(b);
                pos = b.end;
            }
            _ => return Err(Mp4Error::Truncated("child box")),
        }
    }
    Ok(out)
}

/// The first child of `parent` of type `typ`.
pub(crate) fn child<D: Bytes + ?Sized>(data: &D, parent: &BoxRef, typ: &[u8; 4]) -> Result<BoxRef, Mp4Error> {
    children(data, parent.body, parent.end)?
        .into_iter()
        .find(|b| &b.typ == typ)
        .ok_or(Mp4Error::MissingBox(std::str::from_utf8(typ).unwrap_or("????").to_owned()))
}

/// Follow a path of box types down from `parent`.
pub(crate) fn path<D: Bytes + ?Sized>(data: &D, parent: &BoxRef, types: &[&[u8; 4]]) -> Result<BoxRef, Mp4Error> {
    let mut cur = *parent;
    for t in types {
        cur = child(data, &cur, t)?;
    }
    Ok(cur)
}

/// Big-endian reads that fail with [`Mp4Error::Truncated`] instead of panicking.
pub(crate) fn be_u32<D: Bytes + ?Sized>(data: &D, at: usize) -> Result<u32, Mp4Error> {
    data.at(at..at.saturating_add(4))
        .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")))
        .ok_or(Mp4Error::Truncated("field"))
}

pub(crate) fn be_u64<D: Bytes + ?Sized>(data: &D, at: usize) -> Result<u64, Mp4Error> {
    data.at(at..at.saturating_add(8))
        .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
        .ok_or(Mp4Error::Truncated("field"))
}

/// A field that is 64-bit in version 1 of its full box and 32-bit in version 0.
pub(crate) fn be_var<D: Bytes + ?Sized>(data: &D, at: usize, v1: bool) -> Result<u64, Mp4Error> {
    if v1 {
        be_u64(data, at)
    } else {
        be_u32(data, at).map(u64::from)
    }
}
