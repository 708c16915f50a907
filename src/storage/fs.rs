//! File-system helpers of [`crate::storage`]: the mount check, statvfs figures, directory sizes,
//! counted removal, and the one crash-safe small-file write ([`write_private`], with
//! [`owner_of_dir`]) used for state files, markers and sidecars.

use super::{io_err, FsStats, StorageError};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Whether `path` is a mount point: its device differs from its parent's (or it is `/`).
pub fn is_mount_point(path: &Path) -> std::io::Result<bool> {
    let path = path.canonicalize()?;
    let meta = std::fs::metadata(&path)?;
    let Some(parent) = path.parent() else {
        return Ok(true);
    };
    let pmeta = std::fs::metadata(parent)?;
    Ok(meta.dev() != pmeta.dev() || meta.ino() == pmeta.ino())
}

/// Whether `path` (or, before it exists, its nearest existing ancestor) is on the root
/// filesystem — on a Raspberry Pi the boot SD card.
pub fn on_root_filesystem(path: &Path) -> bool {
    let abs =
        if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir().unwrap_or_default().join(path) };
    let dev = abs.ancestors().find_map(|p| std::fs::metadata(p).ok()).map(|m| m.dev());
    dev.is_some() && dev == std::fs::metadata("/").ok().map(|m| m.dev())
}

pub(super) fn statvfs_stats(path: &Path) -> Option<FsStats> {
    let abs = if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir().ok()?.join(path) };
    abs.ancestors().find_map(|p| {
        let s = nix::sys::statvfs::statvfs(p).ok()?;
        let frag = s.fragment_size() as u64;
        Some(FsStats::new((s.blocks() as u64).saturating_mul(frag), (s.blocks_available() as u64).saturating_mul(frag)))
    })
}

/// Bytes of the files in `dir` and its subdirectories (two levels at most; missing: 0).
pub(super) fn dir_bytes(dir: &Path) -> u64 {
    fn walk(dir: &Path, depth: u32) -> u64 {
        let Ok(rd) = std::fs::read_dir(dir) else { return 0 };
        rd.flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_file() => m.len(),
                Ok(m) if m.is_dir() && depth < 2 => walk(&e.path(), depth + 1),
                _ => 0,
            })
            .fold(0u64, u64::saturating_add)
    }
    walk(dir, 0)
}

/// Remove a file, counting its size; a missing file is fine.
pub(super) fn remove_file_counted(path: &Path) -> Result<u64, StorageError> {
    let size = match std::fs::symlink_metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err(path)(e)),
    };
    match std::fs::remove_file(path) {
        Ok(()) => Ok(size),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Give `file` (about to become `path`) the owner of `path`'s directory when root writes it
/// into a directory someone else owns: `sudo hindsight token create` must leave a tokens file
/// the daemon's own user (who owns its state directory) can still read (issue 11).
pub fn owner_of_dir(file: &std::fs::File, path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => std::fs::metadata(d)?,
        None => return Ok(()),
    };
    if dir.uid() == 0 {
        return Ok(());
    }
    std::os::unix::fs::fchown(file, Some(dir.uid()), Some(dir.gid()))
}

/// Write `data` to `path` atomically with `mode`: a temporary file of this process (two
/// writers — the daemon and the `token` CLI — never share one), fsync, rename, fsync of the
/// directory (so the rename survives a power cut).
pub fn write_private(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("{}.{n}.tmp", std::process::id()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        owner_of_dir(&f, path)?;
        std::io::Write::write_all(&mut f, data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Create `dir` (and its parents); when it is new, fsync the `levels` directories above it, so
/// its entries survive a power cut (a clip's date folder, a recording's hour folder).
pub fn create_dir_durable(dir: &Path, levels: usize) -> std::io::Result<()> {
    let new_dir = !dir.exists();
    std::fs::create_dir_all(dir)?;
    if new_dir {
        for d in dir.ancestors().skip(1).take(levels) {
            fsync_dir(d);
        }
    }
    Ok(())
}

/// The files exactly `depth` directories below `dir` (`clips/{camera}/{date}/file`: 2), sorted;
/// anything unreadable is skipped.
pub fn files_at_depth(dir: &Path, depth: usize) -> Vec<std::path::PathBuf> {
    fn walk(dir: &Path, depth: usize, out: &mut Vec<std::path::PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() && depth > 0 => walk(&e.path(), depth - 1, out),
                Ok(t) if t.is_file() && depth == 0 => out.push(e.path()),
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, depth, &mut out);
    out.sort();
    out
}

/// fsync a directory so a rename or new file in it survives a power cut (best effort).
pub fn fsync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}
