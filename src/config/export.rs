//! `[export]`: copy each saved clip to S3-compatible object storage ([`ExportConfig`]).
//!
//! Data only: must never connect anywhere (that is `crate::offsite`). The secret key never
//! leaves this struct in a `Debug` print.

use super::ByteSize;
use serde::{Deserialize, Serialize};

/// `[export]`
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportConfig {
    /// `s3` (AWS S3, MinIO, Garage, Ceph RGW, Backblaze B2, Cloudflare R2, …).
    pub kind: ExportKind,
    /// The service's address, e.g. `https://s3.eu-central-1.amazonaws.com` or
    /// `http://nas.lan:9000`; plain `http://` only to a loopback or LAN address you trust.
    pub endpoint: String,
    /// Signing region.
    #[serde(default = "default_region")]
    pub region: String,
    /// Bucket (it must exist).
    pub bucket: String,
    /// Key prefix, e.g. `hindsight/garage` (no leading or trailing `/`); empty: none.
    #[serde(default)]
    pub prefix: String,
    /// Access key id.
    pub access_key: String,
    /// Secret access key.
    pub secret_key: String,
    /// `https://endpoint/bucket/key` (true: MinIO, Garage, Ceph) or `https://bucket.endpoint/key`.
    #[serde(default = "super::default_true")]
    pub path_style: bool,
    /// Files larger than this go in parts of this size (multipart upload).
    #[serde(default = "default_part_size")]
    pub part_size: ByteSize,
    /// Upload bandwidth limit in kbit/s; 0: none.
    #[serde(default)]
    pub max_kbps: u32,
    /// Delete a clip's video here once it is in the bucket (the poster and the index entry
    /// stay; the video is then served from the bucket). Pinned clips stay.
    #[serde(default)]
    pub delete_local: bool,
}

/// Where clips are exported to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportKind {
    /// S3-compatible object storage.
    S3,
}

impl std::fmt::Debug for ExportConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportConfig")
            .field("kind", &self.kind)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("access_key", &self.access_key)
            .field("secret_key", &"***")
            .field("path_style", &self.path_style)
            .field("part_size", &self.part_size)
            .field("max_kbps", &self.max_kbps)
            .field("delete_local", &self.delete_local)
            .finish()
    }
}

fn default_region() -> String {
    "us-east-1".into()
}
fn default_part_size() -> ByteSize {
    ByteSize(8 << 20)
}
