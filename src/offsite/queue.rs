//! The export queue's entries as they are recorded in the index (JSON, versioned by field
//! defaults), and the pure rules about them: object keys, part numbers, which listed parts to
//! keep.

use crate::clip_meta::ClipMeta;
use crate::storage::Storage;
use serde::{Deserialize, Serialize};

/// Where a clip's export stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportState {
    /// Waiting for its turn.
    Pending,
    /// An object is being sent.
    Uploading,
    /// The last attempt failed; it is tried again later.
    Retrying,
    /// The service refused the credentials or the permissions (403): tried every 5 minutes.
    AuthError,
    /// Every object is in the bucket.
    Done,
    /// Given up (the clip's file is gone).
    Failed,
}

impl ExportState {
    /// Still to be worked on.
    pub fn pending(self) -> bool {
        matches!(self, Self::Pending | Self::Uploading | Self::Retrying | Self::AuthError)
    }
}

/// One object of a clip.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Object {
    /// `video`, `poster` or `meta`.
    pub kind: String,
    /// The object key.
    pub key: String,
    /// Source file relative to the storage root (empty for `meta`).
    #[serde(default)]
    pub path: String,
    /// The metadata JSON itself (for `meta`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<String>,
    pub size: u64,
    /// Hex SHA-256 of the whole object.
    pub sha256: String,
    #[serde(default)]
    pub done: bool,
    /// The multipart upload under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_id: Option<String>,
    /// The part size of the multipart upload, fixed when it is created (a changed
    /// `part_size` applies to new uploads only).
    #[serde(default)]
    pub part_size: u64,
    /// Its finished parts: number, ETag, size.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<(u16, String, u64)>,
    /// The upload's parts were checked against the service in this run (after a restart
    /// they are listed once before going on).
    #[serde(skip)]
    pub checked: bool,
}

impl Object {
    /// The object's `Content-Type`.
    pub fn content_type(&self) -> &'static str {
        match self.kind.as_str() {
            "video" => "video/mp4",
            "poster" => "image/jpeg",
            _ => "application/json",
        }
    }
}

/// One clip in the queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportEntry {
    pub clip_id: String,
    pub camera: String,
    pub state: ExportState,
    pub objects: Vec<Object>,
    #[serde(default)]
    pub attempts: u32,
    /// Wall time (ms) of the next attempt.
    #[serde(default)]
    pub next_at_ms: i64,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub done_at: Option<String>,
}

/// A clip's export as `/api/clips` shows it.
#[derive(Debug, Serialize)]
pub struct ExportStatus {
    pub state: ExportState,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub attempts: u32,
    pub error: Option<String>,
    /// The video's object key.
    pub key: Option<String>,
    pub done_at: Option<String>,
}

impl ExportEntry {
    /// All objects' bytes.
    pub fn bytes_total(&self) -> u64 {
        self.objects.iter().map(|o| o.size).sum()
    }

    /// What `/api/clips` shows.
    pub fn status(&self) -> ExportStatus {
        let done: u64 =
            self.objects.iter().map(|o| if o.done { o.size } else { o.parts.iter().map(|p| p.2).sum() }).sum();
        ExportStatus {
            state: self.state,
            bytes_done: done,
            bytes_total: self.bytes_total(),
            attempts: self.attempts,
            error: self.error.clone(),
            key: self.objects.first().map(|o| o.key.clone()),
            done_at: self.done_at.clone(),
        }
    }
}

fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a file, read in 1 MiB pieces (blocking).
fn sha256_file(path: &std::path::Path) -> std::io::Result<(u64, String)> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let got = f.read(&mut buf)?;
        if got == 0 {
            break;
        }
        ctx.update(&buf[..got]);
        n += got as u64;
    }
    Ok((n, ctx.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect()))
}

/// `{prefix}/{camera}/{YYYY}/{MM}/{DD}/{clip_id}` (the date of the clip's start, UTC).
pub fn key_base(prefix: &str, meta: &ClipMeta) -> String {
    let date = meta.start_at.get(..10).unwrap_or("0000-00-00").replace('-', "/");
    let base = format!("{}/{date}/{}", meta.camera, meta.id);
    if prefix.is_empty() {
        base
    } else {
        format!("{prefix}/{base}")
    }
}

/// The queue entry of a saved clip: the video, its poster if there is one, then the metadata
/// (blocking: hashes the files).
pub fn entry_for(storage: &Storage, meta: &ClipMeta, prefix: &str) -> Result<ExportEntry, String> {
    let base = key_base(prefix, meta);
    let video = storage.abs(&meta.path).ok_or_else(|| format!("clip {}: bad path", meta.id))?;
    let (size, sha256) = sha256_file(&video).map_err(|e| format!("clip {}: {e}", meta.id))?;
    let mut objects = vec![Object {
        kind: "video".into(),
        key: format!("{base}.mp4"),
        path: meta.path.clone(),
        inline: None,
        size,
        sha256,
        done: false,
        upload_id: None,
        part_size: 0,
        parts: Vec::new(),
        checked: false,
    }];
    let poster_rel = std::path::Path::new(&meta.path).with_extension("jpg").to_string_lossy().into_owned();
    if let Some((size, sha256)) = storage.abs(&poster_rel).and_then(|p| sha256_file(&p).ok()) {
        objects.push(Object {
            kind: "poster".into(),
            key: format!("{base}.jpg"),
            path: poster_rel,
            inline: None,
            size,
            sha256,
            done: false,
            upload_id: None,
            part_size: 0,
            parts: Vec::new(),
            checked: false,
        });
    }
    let json = serde_json::to_string_pretty(meta).map_err(|e| e.to_string())?;
    objects.push(Object {
        kind: "meta".into(),
        key: format!("{base}.json"),
        path: String::new(),
        size: json.len() as u64,
        sha256: sha256_hex(json.as_bytes()),
        inline: Some(json),
        done: false,
        upload_id: None,
        part_size: 0,
        parts: Vec::new(),
        checked: false,
    });
    Ok(ExportEntry {
        clip_id: meta.id.clone(),
        camera: meta.camera.clone(),
        state: ExportState::Pending,
        objects,
        attempts: 0,
        next_at_ms: 0,
        error: None,
        done_at: None,
    })
}

/// S3 takes at most 10 000 parts: the part size for a file of `size` bytes, `configured` or
/// larger.
pub fn part_size_for(size: u64, configured: u64) -> u64 {
    configured.max(size.div_ceil(10_000)).max(1)
}

/// Parts of `part_size` a file of `size` bytes takes.
pub fn part_count(size: u64, part_size: u64) -> u16 {
    size.div_ceil(part_size.max(1)).clamp(1, 10_000) as u16
}

/// The parts to keep after a restart: those the service lists with the size this part should
/// have (a part cut off mid-way is sent again).
pub fn keep_listed(
    recorded: &[(u16, String, u64)],
    listed: &[(u16, String, u64)],
    part_size: u64,
    size: u64,
) -> Vec<(u16, String, u64)> {
    let _ = recorded;
    let want = |n: u16| part_size.min(size.saturating_sub(u64::from(n - 1) * part_size));
    let mut keep: Vec<(u16, String, u64)> = listed.iter().filter(|p| p.0 >= 1 && p.2 == want(p.0)).cloned().collect();
    keep.sort_by_key(|p| p.0);
    keep.dedup_by_key(|p| p.0);
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_and_resumption() {
        assert_eq!(part_count(10, 4), 3);
        assert_eq!(part_count(8, 4), 2);
        assert_eq!(part_count(0, 4), 1);
        // 1 GB in 64 KiB parts would be 15 259 parts: the parts grow to stay under 10 000.
        let ps = part_size_for(1_000_000_000, 64 << 10);
        assert_eq!(ps, 100_000);
        assert!(part_count(1_000_000_000, ps) <= 10_000);
        assert_eq!(part_size_for(10 << 20, 8 << 20), 8 << 20);
        let listed = vec![(1, "a".to_string(), 4), (2, "b".to_string(), 3), (3, "c".to_string(), 2)];
        // Part 2 was cut short (3 of 4 bytes): sent again; part 3 is the last (2 bytes): kept.
        assert_eq!(keep_listed(&[], &listed, 4, 10), vec![(1, "a".to_string(), 4), (3, "c".to_string(), 2)]);
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
