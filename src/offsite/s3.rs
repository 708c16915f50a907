//! The few S3 calls the exporter makes, signed by `rusty-s3` (presigned URLs, so every
//! `x-amz-*` header is signed before the request) and sent with `reqwest` on rustls.
//!
//! Must never let a URL reach a log or an error: a presigned URL carries the access key and a
//! signature (errors are built from the status and the service's error code only).

use crate::config::ExportConfig;
use rusty_s3::actions::{CreateMultipartUpload, ListParts};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use std::time::Duration;

/// How long a signed request stays valid (it is sent at once).
const SIGNED_FOR: Duration = Duration::from_secs(15 * 60);
/// A service that stops answering (hung, paused, a dead NAT mapping) fails a request after
/// this long without a byte read, then the request is retried with back-off.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The slowest uplink a request's whole-time limit allows for (16 KiB/s, 128 kbit/s): a part of
/// 8 MiB may take 30 s + 512 s.
const MIN_RATE: u64 = 16 << 10;

/// The metadata header with the object's SHA-256 (hex): how a finished object is recognised.
pub const SHA_HEADER: &str = "x-amz-meta-sha256";

/// What went wrong with one request.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what}: {why}")]
pub struct S3Error {
    /// The call (`PUT object`, `upload part 3`, …).
    pub what: String,
    /// The HTTP status, if an answer came.
    pub status: Option<u16>,
    /// The service's error code (`AccessDenied`, `NoSuchBucket`, …) or the transport error.
    pub why: String,
}

impl S3Error {
    /// The credentials or the permissions were refused: retrying will not help until the
    /// config changes.
    pub fn is_auth(&self) -> bool {
        self.status == Some(403)
    }
}

/// A bucket to write to.
pub struct S3 {
    bucket: Bucket,
    creds: Credentials,
    http: reqwest::Client,
    /// `max_kbps`: upload bodies are paced to it (0: not paced).
    kbps: u32,
    /// The schedule of every paced body.
    pacer: std::sync::Arc<Pacer>,
}

/// The piece a paced body is sent in: small enough that a part of 64 KiB is paced too.
const PACED_CHUNK: usize = 16 << 10;

/// The uplink's schedule when `max_kbps` is set: one for every body the exporter sends, so the
/// rate holds across parts and objects, not only within one body.
struct Pacer {
    kbps: u32,
    /// When the next piece may go.
    next: std::sync::Mutex<tokio::time::Instant>,
}

impl Pacer {
    fn new(kbps: u32) -> Pacer {
        Pacer { kbps: kbps.max(1), next: std::sync::Mutex::new(tokio::time::Instant::now()) }
    }

    /// When a piece of `len` bytes may go: now if the uplink has been idle, else once the
    /// pieces before it have had their time (`len` bytes at `kbps` take len × 8 / (kbps × 1000) s).
    fn slot(&self, len: usize) -> tokio::time::Instant {
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let due = (*next).max(tokio::time::Instant::now());
        *next = due + Duration::from_micros(len as u64 * 8000 / u64::from(self.kbps));
        due
    }
}

/// `data` in [`PACED_CHUNK`] pieces, each released at its slot on `pacer` (the average rate
/// holds within one piece, with no burst at line speed).
fn paced(
    data: Vec<u8>,
    pacer: std::sync::Arc<Pacer>,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    let data = bytes::Bytes::from(data);
    futures_util::stream::unfold(0usize, move |off| {
        let data = data.clone();
        let pacer = pacer.clone();
        async move {
            if off >= data.len() {
                return None;
            }
            let end = (off + PACED_CHUNK).min(data.len());
            tokio::time::sleep_until(pacer.slot(end - off)).await;
            Some((Ok(data.slice(off..end)), end))
        }
    })
}

/// An object being read from the bucket.
pub struct Fetched {
    /// 200, or 206 for a range.
    pub status: u16,
    pub content_length: Option<u64>,
    pub content_range: Option<String>,
    /// The bytes as they arrive.
    pub body: std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send>>,
}

/// A part already uploaded: number, ETag, size.
pub type Part = (u16, String, u64);

impl S3 {
    /// From `[export]` (validated).
    pub fn new(cfg: &ExportConfig) -> Result<S3, String> {
        let endpoint: reqwest::Url = cfg.endpoint.parse().map_err(|e| format!("export.endpoint: {e}"))?;
        let style = if cfg.path_style { UrlStyle::Path } else { UrlStyle::VirtualHost };
        let bucket = Bucket::new(endpoint, style, cfg.bucket.clone(), cfg.region.clone())
            .map_err(|e| format!("export.bucket: {e}"))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(READ_TIMEOUT)
            .build()
            .map_err(|e| format!("HTTP client: {}", e.without_url()))?;
        let creds = Credentials::new(cfg.access_key.clone(), cfg.secret_key.clone());
        Ok(S3 { bucket, creds, http, kbps: cfg.max_kbps, pacer: std::sync::Arc::new(Pacer::new(cfg.max_kbps)) })
    }

    /// A request body of `data`, paced to `max_kbps`.
    fn body(&self, data: Vec<u8>) -> reqwest::Body {
        if self.kbps == 0 {
            data.into()
        } else {
            reqwest::Body::wrap_stream(paced(data, self.pacer.clone()))
        }
    }

    /// Send a request carrying `len` bytes.
    async fn send(&self, what: String, req: reqwest::RequestBuilder, len: u64) -> Result<reqwest::Response, S3Error> {
        // (Paced: twice the time the bytes take at max_kbps, if that is longer.)
        let paced_ms = if self.kbps > 0 { len * 8 / u64::from(self.kbps) } else { 0 };
        let limit = READ_TIMEOUT + Duration::from_secs(len / MIN_RATE).max(Duration::from_millis(2 * paced_ms));
        self.send_within(what, req.timeout(limit)).await
    }

    /// Send a request (whatever time limit it carries); an error answer becomes an [`S3Error`]
    /// with the service's error code.
    async fn send_within(&self, what: String, req: reqwest::RequestBuilder) -> Result<reqwest::Response, S3Error> {
        let resp = req.send().await.map_err(|e| S3Error { what: what.clone(), status: None, why: transport(&e) })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let body = read_bounded(&what, resp, MAX_ERROR_BODY).await.unwrap_or_default();
        Err(S3Error { what, status: Some(status), why: error_code(status, &body) })
    }

    /// The object's size and SHA-256 metadata; `None` if there is none.
    pub async fn head(&self, key: &str) -> Result<Option<(u64, Option<String>)>, S3Error> {
        let url = self.bucket.head_object(Some(&self.creds), key).sign(SIGNED_FOR);
        match self.send("HEAD object".into(), self.http.head(url), 0).await {
            Ok(r) => {
                // (The header, not `content_length()`: that is the body's length, 0 for HEAD.)
                let size = r
                    .headers()
                    .get(reqwest::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .unwrap_or(0);
                let sha = r.headers().get(SHA_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
                Ok(Some((size, sha)))
            }
            Err(e) if e.status == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Read `key` (`range`: an HTTP `Range` value passed on). No whole-time limit: a phone
    /// may play a long clip slowly; a service silent for 30 s still fails it.
    pub async fn get(&self, key: &str, range: Option<&str>) -> Result<Fetched, S3Error> {
        use futures_util::StreamExt;
        let url = self.bucket.get_object(Some(&self.creds), key).sign(SIGNED_FOR);
        let mut req = self.http.get(url);
        if let Some(r) = range {
            req = req.header(reqwest::header::RANGE, r);
        }
        let resp = self.send_within("GET object".into(), req).await?;
        let status = resp.status().as_u16();
        let header =
            |h: reqwest::header::HeaderName| resp.headers().get(h).and_then(|v| v.to_str().ok()).map(str::to_string);
        let content_range = header(reqwest::header::CONTENT_RANGE);
        let content_length = resp.content_length();
        let body = resp.bytes_stream().map(|r| r.map_err(|e| std::io::Error::other(transport(&e))));
        Ok(Fetched { status, content_length, content_range, body: Box::pin(body) })
    }

    /// Upload `body` as `key` in one request.
    pub async fn put(&self, key: &str, body: Vec<u8>, sha: &str, content_type: &str) -> Result<(), S3Error> {
        let mut action = self.bucket.put_object(Some(&self.creds), key);
        action.headers_mut().insert(SHA_HEADER, sha.to_string());
        action.headers_mut().insert("content-type", content_type.to_string());
        let url = action.sign(SIGNED_FOR);
        let len = body.len() as u64;
        let req = self
            .http
            .put(url)
            .header(SHA_HEADER, sha)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .header(reqwest::header::CONTENT_LENGTH, body.len())
            .body(self.body(body));
        self.send("PUT object".into(), req, len).await.map(|_| ())
    }

    /// Start a multipart upload of `key`; its upload id.
    pub async fn create(&self, key: &str, sha: &str, content_type: &str) -> Result<String, S3Error> {
        let mut action = self.bucket.create_multipart_upload(Some(&self.creds), key);
        action.headers_mut().insert(SHA_HEADER, sha.to_string());
        action.headers_mut().insert("content-type", content_type.to_string());
        let url = action.sign(SIGNED_FOR);
        let req = self.http.post(url).header(SHA_HEADER, sha).header(reqwest::header::CONTENT_TYPE, content_type);
        let what = "create multipart upload".to_string();
        let body = read_bounded(&what, self.send(what.clone(), req, 0).await?, MAX_ANSWER).await?;
        let parsed = CreateMultipartUpload::parse_response(&body).map_err(|e| bad(&what, e.to_string()))?;
        Ok(parsed.upload_id().to_string())
    }

    /// Upload part `n` (from 1); its ETag.
    pub async fn upload_part(&self, key: &str, upload_id: &str, n: u16, body: Vec<u8>) -> Result<String, S3Error> {
        let url = self.bucket.upload_part(Some(&self.creds), key, n, upload_id).sign(SIGNED_FOR);
        let what = format!("upload part {n}");
        let len = body.len() as u64;
        let req = self.http.put(url).header(reqwest::header::CONTENT_LENGTH, body.len()).body(self.body(body));
        let resp = self.send(what.clone(), req, len).await?;
        let etag = resp.headers().get(reqwest::header::ETAG).and_then(|v| v.to_str().ok());
        etag.map(str::to_string).ok_or_else(|| bad(&what, "no ETag in the answer".into()))
    }

    /// The parts uploaded so far; `None` if the upload is gone (completed, aborted, expired).
    pub async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Option<Vec<Part>>, S3Error> {
        let mut parts = Vec::new();
        let mut marker = None;
        loop {
            let mut action = self.bucket.list_parts(Some(&self.creds), key, upload_id);
            if let Some(m) = marker {
                action.set_part_number_marker(m);
            }
            let url = action.sign(SIGNED_FOR);
            let what = "list parts".to_string();
            let body = match self.send(what.clone(), self.http.get(url), 0).await {
                Ok(r) => read_bounded(&what, r, MAX_ANSWER).await?,
                Err(e) if e.status == Some(404) => return Ok(None),
                Err(e) => return Err(e),
            };
            // moto (the test server) names the root element `ListPartsResponse`, AWS and MinIO
            // `ListPartsResult`: accept both.
            let page = ListParts::parse_response(&body)
                .or_else(|e| {
                    let renamed = body.replace("ListPartsResponse", "ListPartsResult");
                    if renamed == body {
                        Err(e)
                    } else {
                        ListParts::parse_response(&renamed)
                    }
                })
                .map_err(|e| bad(&what, e.to_string()))?;
            parts.extend(page.parts.iter().map(|p| (p.number, p.etag.clone(), p.size)));
            match page.next_part_number_marker {
                Some(m) if !page.parts.is_empty() && marker != Some(m) => marker = Some(m),
                _ => return Ok(Some(parts)),
            }
        }
    }

    /// Finish a multipart upload from its parts' ETags, in order.
    pub async fn complete(&self, key: &str, upload_id: &str, etags: &[String]) -> Result<(), S3Error> {
        let action =
            self.bucket.complete_multipart_upload(Some(&self.creds), key, upload_id, etags.iter().map(String::as_str));
        let url = action.sign(SIGNED_FOR);
        let body = action.body();
        let req = self.http.post(url).header(reqwest::header::CONTENT_LENGTH, body.len()).body(body);
        let what = "complete multipart upload".to_string();
        // S3 may answer 200 with an error document when completion fails late.
        let text = read_bounded(&what, self.send(what.clone(), req, 0).await?, MAX_ANSWER).await?;
        if text.contains("<Error>") {
            return Err(bad(&what, error_code(200, &text)));
        }
        Ok(())
    }
}

impl S3 {
    /// The multipart uploads of exactly `key` still open (neither completed nor aborted): their
    /// ids, from the first page of ListMultipartUploads (up to 1000).
    pub async fn open_uploads(&self, key: &str) -> Result<Vec<String>, S3Error> {
        let query = [("prefix", key), ("uploads", "")];
        let url = rusty_s3::signing::sign(
            &jiff::Timestamp::now(),
            rusty_s3::Method::Get,
            self.bucket.base_url().clone(),
            self.creds.key(),
            self.creds.secret(),
            self.creds.token(),
            self.bucket.region(),
            SIGNED_FOR.as_secs(),
            query.into_iter(),
            std::iter::empty(),
        );
        let what = "list multipart uploads".to_string();
        let body = read_bounded(&what, self.send(what.clone(), self.http.get(url), 0).await?, MAX_ANSWER).await?;
        Ok(uploads_of(&body, key))
    }

    /// Abort the multipart upload `upload_id` of `key` (its parts are deleted).
    pub async fn abort(&self, key: &str, upload_id: &str) -> Result<(), S3Error> {
        let url = self.bucket.abort_multipart_upload(Some(&self.creds), key, upload_id).sign(SIGNED_FOR);
        match self.send("abort multipart upload".into(), self.http.delete(url), 0).await {
            Err(e) if e.status == Some(404) => Ok(()),
            r => r.map(|_| ()),
        }
    }
}

/// The upload ids for exactly `key` in a ListMultipartUploads answer (a prefix also lists
/// longer keys).
fn uploads_of(xml: &str, key: &str) -> Vec<String> {
    let field = |block: &str, tag: &str| -> Option<String> {
        let open = format!("<{tag}>");
        let start = block.find(&open)? + open.len();
        let end = start + block[start..].find(&format!("</{tag}>"))?;
        Some(unescape(&block[start..end]))
    };
    xml.split("<Upload>")
        .skip(1)
        .filter_map(|b| {
            let b = b.split("</Upload>").next()?;
            (field(b, "Key")? == key).then(|| field(b, "UploadId")).flatten()
        })
        .collect()
}

/// XML text with its five predefined entities replaced.
fn unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

/// Largest answer read (a ListParts page of 1000 parts is ~250 KB).
const MAX_ANSWER: usize = 1 << 20;
/// Largest error document read.
const MAX_ERROR_BODY: usize = 64 << 10;

/// The answer's body as text, at most `max` bytes (a service, or something posing as one,
/// cannot make the exporter hold more).
async fn read_bounded(what: &str, mut r: reqwest::Response, max: usize) -> Result<String, S3Error> {
    let mut buf = Vec::new();
    while let Some(c) = r.chunk().await.map_err(|e| bad(what, transport(&e)))? {
        if buf.len() + c.len() > max {
            return Err(bad(what, format!("answer over {} KiB", max >> 10)));
        }
        buf.extend_from_slice(&c);
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn bad(what: &str, why: String) -> S3Error {
    S3Error { what: what.to_string(), status: None, why }
}

/// A transport error without its URL (a presigned URL holds the key and the signature).
fn transport(e: &reqwest::Error) -> String {
    let mut why = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        why = format!("{why}: {s}");
        src = s.source();
    }
    crate::redact::redact(&why).into_owned()
}

/// `403 AccessDenied: message` from an S3 error document (at most 200 characters of it).
fn error_code(status: u16, body: &str) -> String {
    let tag = |t: &str| {
        let open = format!("<{t}>");
        let start = body.find(&open)? + open.len();
        let end = body[start..].find(&format!("</{t}>"))? + start;
        Some(body[start..end].chars().take(200).collect::<String>())
    };
    match (tag("Code"), tag("Message")) {
        (Some(c), Some(m)) => format!("{status} {c}: {m}"),
        (Some(c), None) => format!("{status} {c}"),
        _ => format!("HTTP {status}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn paced_bodies_keep_to_the_rate_piece_by_piece_and_one_after_another() {
        use futures_util::StreamExt;
        // 64 KiB + 1 at 2048 kbit/s: 16 KiB pieces of 64 ms each (the last of 1 byte), released
        // at 0, 64, 128, 192, 256 ms; a second body sent at once goes on where the first stopped
        // (no burst per part; the timer rounds 256.004 ms up to 257).
        let pacer = std::sync::Arc::new(Pacer::new(2048));
        let data: Vec<u8> = (0..(64 << 10) + 1).map(|i| i as u8).collect();
        let start = tokio::time::Instant::now();
        let mut at = Vec::new();
        for _ in 0..2 {
            let mut s = std::pin::pin!(paced(data.clone(), pacer.clone()));
            let mut got = Vec::new();
            while let Some(piece) = s.next().await {
                at.push(start.elapsed().as_millis());
                got.extend_from_slice(&piece.unwrap());
            }
            assert_eq!(got, data);
        }
        assert_eq!(at, [0, 64, 128, 192, 256, 257, 321, 385, 449, 513]);
        // After a pause longer than the backlog, the next piece goes at once.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle = tokio::time::Instant::now();
        assert_eq!(pacer.slot(16 << 10), idle);
        assert_eq!(pacer.slot(16 << 10) - idle, Duration::from_millis(64));
    }

    #[test]
    fn open_uploads_of_exactly_the_key_are_found() {
        let xml = "<?xml version=\"1.0\"?><ListMultipartUploadsResult><Bucket>b</Bucket>\
            <Upload><Key>a/c.mp4</Key><UploadId>one</UploadId></Upload>\
            <Upload><Key>a/c.mp4.x</Key><UploadId>longer</UploadId></Upload>\
            <Upload><UploadId>two&amp;</UploadId><Key>a/c.mp4</Key></Upload></ListMultipartUploadsResult>";
        assert_eq!(uploads_of(xml, "a/c.mp4"), ["one", "two&"]);
        assert!(uploads_of("<Error><Code>x</Code></Error>", "a/c.mp4").is_empty());
    }

    #[test]
    fn error_documents_are_summed_up_without_urls() {
        let doc = "<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match</Message></Error>";
        assert_eq!(
            error_code(403, doc),
            "403 SignatureDoesNotMatch: The request signature we calculated does not match"
        );
        assert_eq!(error_code(500, "oops"), "HTTP 500");
        assert!(S3Error { what: "x".into(), status: Some(403), why: String::new() }.is_auth());
    }
}
