//! tus 1.0 at `/api/uploads` (core, creation, creation-with-upload, termination, checksum,
//! expiration), the upload status/list routes, and the devices routes (`/api/devices`).
//!
//! PATCH bodies are streamed: chunks are hashed (when `Upload-Checksum` is given) and written
//! in ≤ 1 MiB batches as they arrive (by [`crate::upload::body`]'s writer thread), so memory
//! does not grow with the upload's size. A chunk that fails its checksum (or carries more bytes
//! than announced) is truncated away before the offset moves. Every tus answer — errors
//! included — carries `Tus-Resumable: 1.0.0`; errors are the usual `{"error": ...}` with the
//! status from [`ApiError::status`]. The tus headers are parsed by [`super::tus`].

use super::tus::{
    check_tus, header, http_date, parse_checksum, parse_u64, upload_id, Checksum, CHECKSUM_ALGORITHMS,
    OFFSET_OCTET_STREAM, TUS_EXTENSIONS, TUS_VERSION,
};
use super::{json_error, ApiError, AppState};
use crate::clip_meta::{ClipMeta, ClipSource};
use crate::upload::body::write_chunks;
use crate::upload::{self, parse_metadata, valid_device_name, UploadError, Uploads};
use bytes::Buf;
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use warp::http::{HeaderMap, HeaderValue, Response, StatusCode};
use warp::{Filter, Rejection, Reply};

impl From<UploadError> for ApiError {
    fn from(e: UploadError) -> Self {
        match e {
            UploadError::NotFound(_) => ApiError::NotFound(e.to_string()),
            UploadError::Disabled => ApiError::NotFound(e.to_string()),
            UploadError::BadRequest(_) => ApiError::BadRequest(e.to_string()),
            UploadError::TooLarge(_) => ApiError::PayloadTooLarge(e.to_string()),
            UploadError::Conflict(_) => ApiError::Conflict(e.to_string()),
            // Temporary: the uploads in progress must finish first.
            UploadError::Busy(_) => ApiError::InsufficientStorage(e.to_string()),
            UploadError::Checksum(_) => ApiError::ChecksumMismatch(e.to_string()),
            UploadError::NotVideo(_) => ApiError::UnsupportedMediaType(e.to_string()),
            UploadError::Storage(s) => ApiError::from(s),
            // The disk filled up under a PATCH (other writers, a misjudged reserve): 507, so
            // the client knows to retry later rather than that the server broke.
            UploadError::Io { ref source, .. }
                if matches!(source.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded) =>
            {
                ApiError::InsufficientStorage(e.to_string())
            }
            UploadError::Io { .. } => ApiError::Internal(e.to_string()),
        }
    }
}

type Reply_ = Result<Response<warp::hyper::Body>, ApiError>;

/// Add the tus headers to an answer (or a JSON error).
fn tus(r: Reply_) -> warp::reply::Response {
    let mut resp = match r {
        Ok(r) => r,
        Err(e) => {
            if e.status().is_server_error() {
                log::error!("upload request failed: {e}");
            }
            let mut r = json_error(e.status(), e.to_string());
            if matches!(e, ApiError::PreconditionFailed(_)) {
                r.headers_mut().insert("tus-version", HeaderValue::from_static(TUS_VERSION));
            }
            r
        }
    };
    resp.headers_mut().insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
    resp
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::Internal(format!("task failed: {e}")))?
}

/// Chunks queued between the connection and the writer thread (backpressure: the body is read
/// no faster than the disk takes it; memory is bounded by this many chunks).
const QUEUE_CHUNKS: usize = 8;
/// A PATCH body that sends nothing for this long counts as interrupted: the bytes so far are
/// kept (the client resumes from them) and the upload takes PATCHes again.
const BODY_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

/// Stream `body` into `path` from `start` (at most `room` bytes): the connection task reads
/// chunks and hands them (no copy) to a blocking writer thread through a bounded queue. On
/// success the bytes are on disk (fdatasync) and their count is returned; a checksum mismatch,
/// too many bytes or an interrupted checksummed chunk truncate the file back to `start`.
async fn write_body<B: Buf>(
    up: &Arc<Uploads>,
    path: &Path,
    start: u64,
    room: u64,
    body: impl Stream<Item = Result<B, warp::Error>>,
    checksum: Option<Checksum>,
) -> Result<u64, UploadError> {
    let io = |e: std::io::Error| UploadError::Io { path: path.to_path_buf(), source: e };
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(QUEUE_CHUNKS);
    let kind = checksum.as_ref().map(|c| c.kind);
    let p = path.to_path_buf();
    let up2 = up.clone();
    // Room on disk for the bytes as they arrive (retention may delete old clips for them).
    let make_room = move |n: u64| {
        up2.make_room_for(n).map_err(|e| std::io::Error::new(std::io::ErrorKind::StorageFull, e.to_string()))
    };
    let writer = tokio::task::spawn_blocking(move || write_chunks(&p, start, kind, rx, room, make_room));
    let mut received: u64 = 0;
    let mut too_large = false;
    let mut interrupted = false;
    futures_util::pin_mut!(body);
    loop {
        let item = match tokio::time::timeout(BODY_IDLE, body.next()).await {
            Ok(Some(item)) => item,
            Ok(None) => break,
            Err(_) => {
                log::info!("upload {}: no bytes for {} s, after {received} bytes", path.display(), BODY_IDLE.as_secs());
                interrupted = true;
                break;
            }
        };
        let mut buf = match item {
            Ok(b) => b,
            Err(e) => {
                log::info!("upload {}: body interrupted after {received} bytes: {e}", path.display());
                interrupted = true;
                break;
            }
        };
        let n = buf.remaining() as u64;
        if received + n > room {
            too_large = true;
            break;
        }
        received += n;
        if tx.send(buf.copy_to_bytes(n as usize)).await.is_err() {
            break; // the writer failed: its error is reported below
        }
    }
    drop(tx);
    let written = writer.await.map_err(|e| io(std::io::Error::other(format!("writer thread: {e}"))))?;
    let rollback = |file: Option<std::fs::File>, err: UploadError| async move {
        let p = path.to_path_buf();
        let _ = tokio::task::spawn_blocking(move || {
            let f = match file {
                Some(f) => f,
                None => std::fs::OpenOptions::new().write(true).open(&p)?,
            };
            f.set_len(start)?;
            f.sync_data()
        })
        .await;
        Err(err)
    };
    let w = match written {
        Ok(w) => w,
        Err(e) => return rollback(None, io(e)).await,
    };
    if too_large {
        let msg = format!("the body carries more than the {room} bytes left of the Upload-Length");
        return rollback(Some(w.file), UploadError::TooLarge(msg)).await;
    }
    if let Some(c) = checksum {
        if interrupted {
            let msg = "the checksummed chunk was interrupted; send it again".to_string();
            return rollback(Some(w.file), UploadError::Conflict(msg)).await;
        }
        if w.digest.as_deref() != Some(c.expected.as_slice()) {
            let msg =
                format!("{} of the {} bytes received differs from Upload-Checksum; chunk discarded", c.algo, w.bytes);
            return rollback(Some(w.file), UploadError::Checksum(msg)).await;
        }
    }
    Ok(w.bytes)
}

/// After bytes landed at `offset`: the early type check, and the hand-off when complete.
async fn after_write(up: &Arc<Uploads>, id: &str, offset: u64) -> Result<Option<&'static str>, ApiError> {
    let Some((typefind_due, complete)) = up.end_patch(id, offset) else {
        let path = up.file(id);
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_file(path)).await;
        return Err(ApiError::NotFound(format!("upload {id} was terminated")));
    };
    let result = follow_up(up, id, typefind_due, complete).await;
    up.settled(id);
    result
}

async fn follow_up(
    up: &Arc<Uploads>,
    id: &str,
    typefind_due: bool,
    complete: bool,
) -> Result<Option<&'static str>, ApiError> {
    if typefind_due {
        let path = up.file(id);
        let checked = tokio::task::spawn_blocking(move || upload::typefind(&path))
            .await
            .unwrap_or_else(|e| Err(UploadError::BadRequest(format!("type check task failed: {e}"))));
        match checked {
            Ok(()) => up.set_typefound(id),
            Err(e @ UploadError::NotVideo(_)) => {
                let (up2, id2) = (up.clone(), id.to_string());
                let _ = tokio::task::spawn_blocking(move || up2.reject(&id2)).await;
                log::info!("upload {id} refused: {e}");
                return Err(e.into());
            }
            // Our problem, not the file's: keep the bytes. The check runs again after the
            // next PATCH; a complete upload goes to finalize, which judges the whole file.
            Err(e) => log::warn!("upload {id}: type check failed ({e}); the bytes are kept"),
        }
    }
    if complete {
        up.finish(id);
        return Ok(Some("processing"));
    }
    Ok(None)
}

/// Write a PATCH body at `start` and settle the upload, on a task of its own: a client that
/// goes away mid-request (an HTTP/2 reset, a killed connection) drops the request handler, not
/// this, so the upload is never left busy and a complete one always reaches finalize.
async fn write_and_settle<B: Buf + Send + 'static>(
    up: Arc<Uploads>,
    id: String,
    start: u64,
    body: impl Stream<Item = Result<B, warp::Error>> + Send + 'static,
    checksum: Option<Checksum>,
) -> Result<(u64, Option<&'static str>), ApiError> {
    let slot = up.patch_slots.clone().try_acquire_owned().map_err(|_| {
        ApiError::Unavailable(format!("{} uploads are streaming already; retry in a moment", upload::MAX_PATCHES))
    })?;
    let (path, room) = up.begin_patch(&id, start)?;
    let task = tokio::spawn(async move {
        let _slot = slot;
        match write_body(&up, &path, start, room, body, checksum).await {
            Ok(n) => after_write(&up, &id, start + n).await.map(|st| (n, st)),
            Err(e) => {
                up.end_patch(&id, start);
                up.settled(&id);
                Err(e.into())
            }
        }
    });
    task.await.map_err(|e| ApiError::Internal(format!("upload task failed: {e}")))?
}

fn offset_reply(status: StatusCode, up: &Uploads, id: &str, offset: u64) -> Response<warp::hyper::Body> {
    let mut r = Response::builder().status(status).header("upload-offset", offset);
    if let Some(ms) = up.expires_ms(id) {
        r = r.header("upload-expires", http_date(ms));
    }
    r.body(warp::hyper::Body::empty()).unwrap_or_default()
}

async fn create<B: Buf + Send + 'static>(
    s: Arc<AppState>,
    h: HeaderMap,
    body: impl Stream<Item = Result<B, warp::Error>> + Send + 'static,
) -> Reply_ {
    check_tus(&h)?;
    if header(&h, "upload-defer-length").is_some() {
        return Err(ApiError::BadRequest("Upload-Defer-Length is not supported: send Upload-Length".into()));
    }
    let length =
        parse_u64(&h, "upload-length")?.ok_or_else(|| ApiError::BadRequest("Upload-Length required".into()))?;
    if length == 0 {
        return Err(ApiError::BadRequest("Upload-Length is 0: an empty file is not a video".into()));
    }
    let meta = header(&h, "upload-metadata").map(parse_metadata).transpose()?.unwrap_or_default();
    // Every header is checked before anything is created: a bad one leaves no orphan upload.
    let with_body = header(&h, "content-type").is_some_and(|t| t.starts_with(OFFSET_OCTET_STREAM))
        && parse_u64(&h, "content-length")?.is_none_or(|n| n > 0);
    let checksum = if with_body { parse_checksum(&h)? } else { None };
    let up = s.uploads.clone();
    let up2 = up.clone();
    let st = blocking(move || up2.create(length, meta).map_err(ApiError::from)).await?;
    up.ensure_sweeper();
    let id = st.id.clone();
    let location = format!("/api/uploads/{id}");
    // creation-with-upload: a body with the offset+octet-stream type is the first chunk.
    let mut state = None;
    let mut offset = 0;
    if with_body {
        match write_and_settle(up.clone(), id.clone(), 0, body, checksum).await {
            Ok(r) => (offset, state) = r,
            // Not a video: the upload is gone, say why.
            Err(e @ ApiError::UnsupportedMediaType(_)) => return Err(e),
            // The upload exists but its first chunk did not land (a checksum mismatch, a cut):
            // 201 with the offset it holds, so the client resumes with PATCH (tus creation-with-upload).
            Err(e) => match up.status(&id) {
                Some(st) => {
                    log::info!("upload {id}: the chunk sent with the creation was not stored: {e}");
                    offset = st.offset;
                }
                None => return Err(e),
            },
        }
    }
    let mut r = offset_reply(StatusCode::CREATED, &up, &id, offset);
    r.headers_mut()
        .insert("location", HeaderValue::from_str(&location).map_err(|e| ApiError::Internal(e.to_string()))?);
    if let Some(st) = state {
        r.headers_mut().insert("hindsight-upload-state", HeaderValue::from_static(st));
    }
    Ok(r)
}

async fn patch<B: Buf + Send + 'static>(
    s: Arc<AppState>,
    id: String,
    h: HeaderMap,
    body: impl Stream<Item = Result<B, warp::Error>> + Send + 'static,
) -> Reply_ {
    check_tus(&h)?;
    upload_id(&id)?;
    if !header(&h, "content-type").is_some_and(|t| t.starts_with(OFFSET_OCTET_STREAM)) {
        return Err(ApiError::UnsupportedMediaType(format!("Content-Type must be {OFFSET_OCTET_STREAM}")));
    }
    let offset =
        parse_u64(&h, "upload-offset")?.ok_or_else(|| ApiError::BadRequest("Upload-Offset required".into()))?;
    let checksum = parse_checksum(&h)?;
    let up = s.uploads.clone();
    let (written, state) = write_and_settle(up.clone(), id.clone(), offset, body, checksum).await?;
    let mut r = offset_reply(StatusCode::NO_CONTENT, &up, &id, offset + written);
    if let Some(st) = state {
        r.headers_mut().insert("hindsight-upload-state", HeaderValue::from_static(st));
    }
    Ok(r)
}

fn head(s: &AppState, id: &str, h: &HeaderMap) -> Reply_ {
    check_tus(h)?;
    upload_id(id)?;
    let st = s.uploads.status(id).ok_or_else(|| ApiError::NotFound(format!("no upload {id:?}")))?;
    let mut r = offset_reply(StatusCode::OK, &s.uploads, id, st.offset);
    let hm = r.headers_mut();
    hm.insert("upload-length", HeaderValue::from(st.length));
    hm.insert("cache-control", HeaderValue::from_static("no-store"));
    Ok(r)
}

fn options(s: &AppState) -> Reply_ {
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .header("tus-version", TUS_VERSION)
        .header("tus-extension", TUS_EXTENSIONS)
        .header("tus-max-size", s.uploads.config().max_bytes.0)
        .header("tus-checksum-algorithm", CHECKSUM_ALGORITHMS)
        .body(warp::hyper::Body::empty())
        .map_err(|e| ApiError::Internal(e.to_string()))
}

fn json(status: StatusCode, v: &impl Serialize) -> warp::reply::Response {
    warp::reply::with_status(warp::reply::json(v), status).into_response()
}

/// One device (or user) that uploaded clips.
#[derive(Debug, Serialize)]
struct Device {
    name: String,
    uploads: usize,
    bytes: u64,
    last_upload_at: String,
}

fn uploaded(s: &AppState) -> Result<Vec<ClipMeta>, ApiError> {
    Ok(s.index()?.all()?.into_iter().filter(|c| c.source == ClipSource::Upload).collect())
}

fn devices(s: &AppState) -> Result<Vec<Device>, ApiError> {
    let mut by: BTreeMap<String, Device> = BTreeMap::new();
    let mut last_ms: BTreeMap<String, i64> = BTreeMap::new();
    for c in uploaded(s)? {
        let name = c.device.clone().unwrap_or_else(|| "unknown".into());
        let d = by.entry(name.clone()).or_insert_with(|| Device {
            name: name.clone(),
            uploads: 0,
            bytes: 0,
            last_upload_at: String::new(),
        });
        d.uploads += 1;
        d.bytes += c.size_bytes;
        let l = last_ms.entry(name).or_insert(i64::MIN);
        if c.start_ms > *l {
            *l = c.start_ms;
            d.last_upload_at = c.start_at.clone();
        }
    }
    let mut v: Vec<Device> = by.into_values().collect();
    v.sort_by(|a, b| b.last_upload_at.cmp(&a.last_upload_at));
    Ok(v)
}

fn device_clips(s: &AppState, name: &str) -> Result<Vec<ClipMeta>, ApiError> {
    let v: Vec<ClipMeta> =
        uploaded(s)?.into_iter().filter(|c| c.device.as_deref().unwrap_or("unknown") == name).collect();
    if v.is_empty() {
        return Err(ApiError::NotFound(format!("no uploads from device {name:?}")));
    }
    Ok(v)
}

#[derive(serde::Deserialize)]
struct Rename {
    name: String,
}

fn rename_device(s: &AppState, old: &str, new: &str) -> Result<serde_json::Value, ApiError> {
    if !valid_device_name(new) {
        return Err(ApiError::BadRequest(format!(
            "name {new:?}: must be 1..=64 characters without control characters or outer spaces"
        )));
    }
    let clips = device_clips(s, old)?;
    let index = s.index()?;
    for mut c in clips.iter().cloned() {
        c.device = Some(new.to_string());
        index.insert(&c)?;
    }
    Ok(serde_json::json!({"name": new, "renamed": clips.len()}))
}

fn delete_device(s: &AppState, name: &str) -> Result<serde_json::Value, ApiError> {
    let clips = device_clips(s, name)?;
    let index = s.index()?;
    let mut deleted = 0;
    for c in &clips {
        if s.store.storage.delete_clip(&index, &c.id)?.is_some() {
            deleted += 1;
        }
    }
    Ok(serde_json::json!({"name": name, "deleted": deleted}))
}

fn path_name(raw: &str) -> Result<String, ApiError> {
    super::clips::percent_decode(raw).ok_or_else(|| ApiError::BadRequest("bad encoding in the device name".into()))
}

/// tus, upload status and devices routes.
pub fn routes(
    st: impl Filter<Extract = (Arc<AppState>,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static,
) -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    let headers = warp::header::headers_cloned();
    let opts =
        warp::path!("api" / "uploads").and(warp::options()).and(st.clone()).map(|s: Arc<AppState>| tus(options(&s)));
    let post = warp::path!("api" / "uploads")
        .and(warp::post())
        .and(st.clone())
        .and(headers.clone())
        .and(warp::body::stream())
        .then(|s, h, body| async move { tus(create(s, h, body).await) });
    let list = warp::path!("api" / "uploads")
        .and(warp::get())
        .and(st.clone())
        .map(|s: Arc<AppState>| json(StatusCode::OK, &s.uploads.list()));
    let head = warp::path!("api" / "uploads" / String)
        .and(warp::head())
        .and(st.clone())
        .and(headers.clone())
        .map(|id: String, s: Arc<AppState>, h: HeaderMap| tus(head(&s, &id, &h)));
    let patch = warp::path!("api" / "uploads" / String)
        .and(warp::patch())
        .and(st.clone())
        .and(headers.clone())
        .and(warp::body::stream())
        .then(|id, s, h, body| async move { tus(patch(s, id, h, body).await) });
    let delete = warp::path!("api" / "uploads" / String).and(warp::delete()).and(st.clone()).and(headers).then(
        |id: String, s: Arc<AppState>, h: HeaderMap| async move {
            let r = async {
                check_tus(&h)?;
                upload_id(&id)?;
                let up = s.uploads.clone();
                blocking(move || up.terminate(&id).map_err(ApiError::from)).await?;
                Response::builder()
                    .status(StatusCode::NO_CONTENT)
                    .body(warp::hyper::Body::empty())
                    .map_err(|e| ApiError::Internal(e.to_string()))
            }
            .await;
            tus(r)
        },
    );
    let status = warp::path!("api" / "uploads" / String / "status").and(warp::get()).and(st.clone()).and_then(
        |id: String, s: Arc<AppState>| async move {
            upload_id(&id)?;
            let v = s.uploads.status(&id).ok_or_else(|| ApiError::NotFound(format!("no upload {id:?}")))?;
            Ok::<_, Rejection>(json(StatusCode::OK, &v))
        },
    );
    let dev_list =
        warp::path!("api" / "devices").and(warp::get()).and(st.clone()).and_then(|s: Arc<AppState>| async move {
            let v = blocking(move || devices(&s)).await?;
            Ok::<_, Rejection>(json(StatusCode::OK, &v))
        });
    let dev_rename = warp::path!("api" / "devices" / String)
        .and(warp::patch())
        .and(st.clone())
        .and(super::limited_body(4096, "device rename body"))
        .and_then(|raw: String, s: Arc<AppState>, body: Result<bytes::Bytes, ApiError>| async move {
            let body: Rename =
                serde_json::from_slice(&body?).map_err(|e| ApiError::BadRequest(format!("bad JSON body: {e}")))?;
            let old = path_name(&raw)?;
            let v = blocking(move || rename_device(&s, &old, body.name.trim())).await?;
            Ok::<_, Rejection>(json(StatusCode::OK, &v))
        });
    let dev_delete = warp::path!("api" / "devices" / String).and(warp::delete()).and(st).and_then(
        |raw: String, s: Arc<AppState>| async move {
            let name = path_name(&raw)?;
            let v = blocking(move || delete_device(&s, &name)).await?;
            Ok::<_, Rejection>(json(StatusCode::OK, &v))
        },
    );
    opts.or(post)
        .unify()
        .or(list)
        .unify()
        .or(head)
        .unify()
        .or(patch)
        .unify()
        .or(delete)
        .unify()
        .or(status)
        .unify()
        .or(dev_list)
        .unify()
        .or(dev_rename)
        .unify()
        .or(dev_delete)
        .unify()
        .boxed()
}
