//! tus 1.0 headers, pure: the protocol constants, `Tus-Resumable`, `Upload-Length`,
//! `Upload-Offset` (any byte-count header), `Upload-Checksum`, the upload id in the path, and the
//! HTTP-date of `Upload-Expires`. `Upload-Metadata` is parsed by [`crate::upload::parse_metadata`].
//!
//! Functions of a [`HeaderMap`] (or a string) to a value or the [`ApiError`] to answer: must
//! never touch an upload, a file or the network (the handlers are [`super::uploads`]).

use super::ApiError;
use crate::upload::body::ChecksumKind;
use crate::upload::valid_upload_id;
use warp::http::HeaderMap;

pub(super) const TUS_VERSION: &str = "1.0.0";
pub(super) const TUS_EXTENSIONS: &str = "creation,creation-with-upload,termination,checksum,expiration";
pub(super) const CHECKSUM_ALGORITHMS: &str = "sha1,sha256,md5";
pub(super) const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";

pub(super) fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

pub(super) fn check_tus(h: &HeaderMap) -> Result<(), ApiError> {
    match header(h, "tus-resumable") {
        Some(TUS_VERSION) => Ok(()),
        Some(v) => Err(ApiError::PreconditionFailed(format!("Tus-Resumable {v:?} is not supported (use 1.0.0)"))),
        None => Err(ApiError::PreconditionFailed("Tus-Resumable: 1.0.0 header required".into())),
    }
}

pub(super) fn upload_id(id: &str) -> Result<(), ApiError> {
    if valid_upload_id(id) {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!("no upload {id:?}")))
    }
}

pub(super) fn parse_u64(h: &HeaderMap, name: &str) -> Result<Option<u64>, ApiError> {
    header(h, name)
        .map(|v| {
            v.trim().parse::<u64>().map_err(|_| ApiError::BadRequest(format!("{name}: {v:?} is not a byte count")))
        })
        .transpose()
}

/// RFC 9110 HTTP-date of Unix ms.
pub(super) fn http_date(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string())
        .unwrap_or_default()
}

/// `Upload-Checksum: ALGO BASE64`.
pub(super) struct Checksum {
    /// The algorithm as sent (`sha1`, `sha256`, `md5`).
    pub(super) algo: String,
    /// The same, for the body writer.
    pub(super) kind: ChecksumKind,
    /// The digest the chunk must have.
    pub(super) expected: Vec<u8>,
}

pub(super) fn parse_checksum(h: &HeaderMap) -> Result<Option<Checksum>, ApiError> {
    use base64::Engine;
    let Some(v) = header(h, "upload-checksum") else { return Ok(None) };
    let (algo, b64) = v
        .trim()
        .split_once(' ')
        .ok_or_else(|| ApiError::BadRequest("Upload-Checksum must be `ALGORITHM BASE64`".into()))?;
    let Some(kind) = ChecksumKind::from_tus(algo) else {
        return Err(ApiError::BadRequest(format!(
            "Upload-Checksum algorithm {algo:?} is not supported ({CHECKSUM_ALGORITHMS})"
        )));
    };
    let expected = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| ApiError::BadRequest("Upload-Checksum: the digest is not base64".into()))?;
    Ok(Some(Checksum { algo: algo.into(), kind, expected }))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::web::test_headers as headers;

    #[test]
    fn tus_resumable_must_be_1_0_0() {
        assert!(check_tus(&headers(&[("tus-resumable", "1.0.0")])).is_ok());
        assert!(matches!(check_tus(&headers(&[("tus-resumable", "0.2.2")])), Err(ApiError::PreconditionFailed(_))));
        assert!(matches!(check_tus(&headers(&[])), Err(ApiError::PreconditionFailed(_))));
    }

    #[test]
    fn byte_counts() {
        let h = headers(&[("upload-length", " 1234 "), ("upload-offset", "-1"), ("content-length", "x")]);
        assert_eq!(parse_u64(&h, "upload-length").unwrap(), Some(1234));
        assert!(matches!(parse_u64(&h, "upload-offset"), Err(ApiError::BadRequest(_))));
        assert!(matches!(parse_u64(&h, "content-length"), Err(ApiError::BadRequest(_))));
        assert_eq!(parse_u64(&h, "upload-defer-length").unwrap(), None);
        assert_eq!(header(&h, "upload-length"), Some(" 1234 "));
    }

    #[test]
    fn upload_ids_in_paths() {
        assert!(upload_id("0123456789abcdef").is_ok());
        assert!(matches!(upload_id("../../etc/passwd"), Err(ApiError::NotFound(_))));
        assert!(matches!(upload_id("0123456789ABCDEF"), Err(ApiError::NotFound(_))));
    }

    #[test]
    fn checksums() {
        assert!(parse_checksum(&headers(&[])).unwrap().is_none());
        // sha1 of "abc".
        let c = parse_checksum(&headers(&[("upload-checksum", "sha1 qZk+NkcGgWq6PiVxeFDCbJzQ2J0=")])).unwrap().unwrap();
        assert_eq!(c.algo, "sha1");
        assert_eq!(c.kind, ChecksumKind::Sha1);
        assert_eq!(c.expected.len(), 20);
        assert_eq!(c.expected[..3], [0xa9, 0x99, 0x3e]);
        for bad in ["sha1", "crc32 AAAA", "sha256 !!!"] {
            assert!(
                matches!(parse_checksum(&headers(&[("upload-checksum", bad)])), Err(ApiError::BadRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn expiry_is_an_http_date() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(1_700_000_000_000), "Tue, 14 Nov 2023 22:13:20 GMT");
    }
}
