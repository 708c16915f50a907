//! Writing a PATCH body to an upload's `{id}.bin`: the blocking writer thread's side. It
//! truncates the file to the PATCH's offset (bytes past it are from a write that was not
//! accepted), asks for room on disk as bytes arrive (in [`ROOM_STEP`]s, never for bytes that
//! have not come), appends the chunks it is handed in ≤ 1 MiB batches (hashing them when a
//! checksum is due), starts the disk's writeback as it goes, and fdatasyncs at the end.
//!
//! Runs on a blocking thread; the connection side (reading the HTTP body, the idle timeout, the
//! rollback of a bad chunk) is `web::uploads`. Must never run on the async runtime and never
//! touch the registry.

use std::path::Path;

/// Bytes gathered before one write to the file.
const WRITE_BATCH: usize = 1 << 20;

/// The writer starts the disk on every this many bytes as they arrive (see [`start_writeback`]).
const WRITEBACK_EVERY: u64 = 8 << 20;

/// Room on disk is made (retention, the free-space check) for this many bytes at a time, when
/// the first of them arrives.
pub const ROOM_STEP: u64 = 64 << 20;

/// Ask the kernel to start writing `len` bytes of `file` from `offset` to the disk now, without
/// waiting: the disk works while the network delivers the next bytes, the fdatasync at the end of
/// the PATCH only waits for the tail, and dirty pages do not pile up (a 2 GB upload on a board
/// with 1 GB of RAM). Best effort: on failure the final fdatasync still writes everything.
fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(off), Ok(n)) = (i64::try_from(offset), i64::try_from(len)) else { return };
    // SAFETY: `file` is an open descriptor for the whole call; the kernel reads only the
    // integer arguments and touches no memory of ours.
    let r = unsafe { libc::sync_file_range(file.as_raw_fd(), off, n, libc::SYNC_FILE_RANGE_WRITE) };
    if r != 0 {
        log::debug!("sync_file_range: {}", std::io::Error::last_os_error());
    }
}

/// What the writer thread did.
pub struct Written {
    /// The file, open for writing.
    pub file: std::fs::File,
    /// Bytes appended.
    pub bytes: u64,
    /// Digest of those bytes, when a checksum kind was given.
    pub digest: Option<Vec<u8>>,
}

/// A digest a tus client may ask a chunk to be checked against (`Upload-Checksum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumKind {
    /// SHA-1.
    Sha1,
    /// SHA-256.
    Sha256,
    /// MD5.
    Md5,
}

impl ChecksumKind {
    /// The kind for a tus algorithm name (`sha1`, `sha256`, `md5`).
    pub fn from_tus(name: &str) -> Option<ChecksumKind> {
        match name {
            "sha1" => Some(ChecksumKind::Sha1),
            "sha256" => Some(ChecksumKind::Sha256),
            "md5" => Some(ChecksumKind::Md5),
            _ => None,
        }
    }

    fn hasher(self) -> Option<gstreamer::glib::Checksum> {
        gstreamer::glib::Checksum::new(match self {
            ChecksumKind::Sha1 => gstreamer::glib::ChecksumType::Sha1,
            ChecksumKind::Sha256 => gstreamer::glib::ChecksumType::Sha256,
            ChecksumKind::Md5 => gstreamer::glib::ChecksumType::Md5,
        })
    }
}

/// The writer thread's side: truncate to `start`, append every chunk (hashing it), fdatasync.
/// Before the bytes of each [`ROOM_STEP`] (at most the `expected` bytes of this PATCH) are
/// written, `make_room(n)` must make room for `n` more bytes; its error ends the write.
pub fn write_chunks(
    path: &Path,
    start: u64,
    kind: Option<ChecksumKind>,
    mut rx: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    expected: u64,
    mut make_room: impl FnMut(u64) -> std::io::Result<()>,
) -> std::io::Result<Written> {
    use std::io::{Seek, Write};
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    // Whatever lies past the offset is from a write we did not accept.
    file.set_len(start)?;
    let mut w = std::io::BufWriter::with_capacity(WRITE_BATCH, file);
    w.seek(std::io::SeekFrom::Start(start))?;
    let mut hasher = kind.and_then(ChecksumKind::hasher);
    let mut bytes = 0u64;
    let mut kicked = start;
    let mut roomy = 0u64; // bytes of this PATCH that room was made for
    while let Some(chunk) = rx.blocking_recv() {
        let n = chunk.len() as u64;
        if bytes + n > roomy {
            let step = ROOM_STEP.min(expected.saturating_sub(roomy)).max(bytes + n - roomy);
            make_room(step)?;
            roomy += step;
        }
        if let Some(h) = hasher.as_mut() {
            h.update(&chunk);
        }
        w.write_all(&chunk)?;
        bytes += n;
        let on_file = start + bytes - w.buffer().len() as u64;
        if on_file - kicked >= WRITEBACK_EVERY {
            start_writeback(w.get_ref(), kicked, on_file - kicked);
            kicked = on_file;
        }
    }
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.sync_data()?;
    Ok(Written { file, bytes, digest: hasher.map(|h| h.digest()) })
}
