//! Clip and trigger routes: triggers and manual recording, clip list/metadata/video (single
//! `Range` requests)/thumbnail/delete/pin, and storage usage and cleanup.
//!
//! Ids are validated before any path is built; files are only opened through
//! `Storage::abs`, which refuses anything outside the storage directory. Blocking work (the
//! recorder, sled, file deletion) goes through `spawn_blocking`.

use super::{ApiError, AppState};
use crate::clip_meta::valid_clip_id;
use crate::index::{ClipQuery, Index};
use crate::trigger::{self, RejectCode, TriggerRejected, TriggerRequest};
use bytes::Bytes;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use warp::http::{header, Response, StatusCode};
use warp::{Filter, Rejection, Reply};

impl From<TriggerRejected> for ApiError {
    fn from(r: TriggerRejected) -> Self {
        match r.code {
            RejectCode::BadPayload | RejectCode::OutOfRange => ApiError::BadRequest(r.message),
            RejectCode::UnknownCamera => ApiError::NotFound(r.message),
            RejectCode::CameraStopped | RejectCode::Conflict => ApiError::Conflict(r.message),
            RejectCode::StorageFull | RejectCode::StorageError => ApiError::InsufficientStorage(r.message),
            RejectCode::RateLimited => ApiError::TooManyTriggers(1),
        }
    }
}

pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, Rejection> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(format!("task failed: {e}")))?
        .map_err(warp::reject::custom)
}

fn clip_id(id: &str) -> Result<(), ApiError> {
    if valid_clip_id(id) {
        Ok(())
    } else {
        Err(ApiError::BadRequest("not a clip id (ids look like 20261122T012301123Z-00a3f1)".into()))
    }
}

pub(super) fn json(status: StatusCode, v: &impl serde::Serialize) -> warp::reply::Response {
    warp::reply::with_status(warp::reply::json(v), status).into_response()
}

/// A client address as a rate-limit source: an IPv6 host picks addresses within its /64 at will.
/// Add `"export"` (the clip's export state, `null` when not queued) to a clip's JSON.
fn with_export(index: &Index, clip: &mut serde_json::Value) {
    let id = clip.get("id").and_then(|v| v.as_str()).map(str::to_string);
    if let (Some(id), Some(m)) = (id, clip.as_object_mut()) {
        m.insert("export".into(), crate::offsite::clip_export(index, &id).unwrap_or(serde_json::Value::Null));
    }
}

fn client_of(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or_else(String::new, |v4| v4.to_string()),
        std::net::IpAddr::V4(v4) => v4.to_string(),
    }
}

/// The largest trigger body read.
const TRIGGER_BODY_MAX: usize = 16 * 1024;

async fn trigger(
    s: Arc<AppState>,
    id: String,
    peer: Option<std::net::SocketAddr>,
    body: Result<Bytes, ApiError>,
) -> Result<warp::reply::Response, Rejection> {
    let body = body?;
    s.control.require(&id).map_err(ApiError::from)?;
    // Rate-limited per client address (every camera, every identity from it together).
    let source = format!("http:{}", peer.map_or_else(|| "unknown".to_string(), |p| client_of(p.ip())));
    if let Err(wait) = s.control.admit_trigger(&source) {
        return Err(ApiError::TooManyTriggers(wait.as_secs_f64().ceil().max(1.0) as u64).into());
    }
    // Same payloads as MQTT: empty, `ON`, or JSON.
    let req: TriggerRequest = trigger::parse_payload(&body).map_err(ApiError::from)?;
    let acc = blocking(move || s.control.trigger(&id, &req).map_err(ApiError::from)).await?;
    Ok(json(StatusCode::ACCEPTED, &acc))
}

async fn record(s: Arc<AppState>, id: String, verb: String) -> Result<warp::reply::Response, Rejection> {
    let control = s.control.clone();
    match verb.as_str() {
        "start" => {
            let cam = id.clone();
            let clip = blocking(move || control.record_start(&cam).map_err(ApiError::from)).await?;
            Ok(json(StatusCode::CREATED, &serde_json::json!({"clip_id": clip, "camera": id})))
        }
        "stop" => {
            let meta = blocking(move || control.record_stop(&id).map_err(ApiError::from)).await?;
            Ok(json(StatusCode::OK, &meta))
        }
        _ => Err(warp::reject::not_found()),
    }
}

/// Each continuously recording camera's own recording limits.
fn recording_limits(s: &AppState) -> std::collections::HashMap<String, crate::storage::RecordingLimits> {
    s.registry
        .snapshot()
        .iter()
        .filter_map(|e| {
            let c = e.camera.config().continuous.as_ref().filter(|c| c.enabled)?;
            let limits = crate::storage::RecordingLimits {
                retention_days: c.retention_days,
                max_bytes: c.max_bytes.map(|m| m.0),
            };
            Some((e.camera.id().to_string(), limits))
        })
        .collect()
}

/// A single byte range resolved against `size`: Ok(None) = whole file.
pub(super) fn parse_range(h: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(h) = h else { return Ok(None) };
    let Some(spec) = h.trim().strip_prefix("bytes=") else { return Ok(None) };
    if spec.contains(',') {
        return Ok(None); // multiple ranges: serve the whole file (allowed by RFC 9110)
    }
    let Some((a, b)) = spec.split_once('-') else { return Ok(None) };
    let (a, b) = (a.trim(), b.trim());
    let unsat = || ApiError::RangeNotSatisfiable(size);
    let range = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| unsat())?;
        if n == 0 || size == 0 {
            return Err(unsat());
        }
        (size.saturating_sub(n), size - 1)
    } else {
        let start: u64 = a.parse().map_err(|_| unsat())?;
        let end = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            b.parse::<u64>().map_err(|_| unsat())?.min(size.saturating_sub(1))
        };
        if start >= size || end < start {
            return Err(unsat());
        }
        (start, end)
    };
    Ok(Some(range))
}

pub(super) async fn file_reply(
    path: std::path::PathBuf,
    mime: &'static str,
    range: Option<String>,
) -> Result<warp::reply::Response, Rejection> {
    let mut f = tokio::fs::File::open(&path).await.map_err(|_| ApiError::NotFound("file missing".into()))?;
    let size = f.metadata().await.map_err(|e| ApiError::Internal(e.to_string()))?.len();
    let r = parse_range(range.as_deref(), size)?;
    let (status, start, len) = match r {
        Some((a, b)) => (StatusCode::PARTIAL_CONTENT, a, b - a + 1),
        None => (StatusCode::OK, 0, size),
    };
    f.seek(std::io::SeekFrom::Start(start)).await.map_err(|e| ApiError::Internal(e.to_string()))?;
    let stream = tokio_util::io::ReaderStream::with_capacity(f.take(len), 64 * 1024);
    let mut resp = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, mime)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_LENGTH, len)
        .header(header::CACHE_CONTROL, "private, max-age=3600");
    if status == StatusCode::PARTIAL_CONTENT {
        resp = resp.header(header::CONTENT_RANGE, format!("bytes {}-{}/{}", start, start + len - 1, size));
    }
    resp.body(warp::hyper::Body::wrap_stream(stream))
        .map_err(|e| warp::reject::custom(ApiError::Internal(e.to_string())))
}

/// The video of a clip only in the bucket (`[export] delete_local`), streamed from there.
async fn remote_video(s: &Arc<AppState>, id: &str, range: Option<String>) -> Result<warp::reply::Response, Rejection> {
    let Some(x) = &s.exporter else {
        return Err(ApiError::Conflict(format!(
            "clip {id}: its video is only in the export bucket, and [export] is not configured"
        ))
        .into());
    };
    let (s2, id2) = (s.clone(), id.to_string());
    let key = blocking(move || Ok(crate::offsite::clip_export(&s2.index()?, &id2)))
        .await?
        .and_then(|v| v["key"].as_str().map(str::to_string))
        .ok_or_else(|| ApiError::NotFound(format!("clip {id}: no export entry")))?;
    let f = x
        .fetch(&key, range.as_deref())
        .await
        .map_err(|e| ApiError::BadGateway(format!("clip {id}: the bucket: {e}")))?;
    let mut resp = Response::builder()
        .status(StatusCode::from_u16(f.status).unwrap_or(StatusCode::OK))
        .header(header::CONTENT_TYPE, "video/mp4")
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CACHE_CONTROL, "private, max-age=3600");
    if let Some(n) = f.content_length {
        resp = resp.header(header::CONTENT_LENGTH, n);
    }
    if let Some(r) = f.content_range {
        resp = resp.header(header::CONTENT_RANGE, r);
    }
    resp.body(warp::hyper::Body::wrap_stream(f.body))
        .map_err(|e| warp::reject::custom(ApiError::Internal(e.to_string())))
}

/// `POST /api/clips/{id}/export`: queue the clip for export (again); 202 with its export status.
async fn export_clip(s: &Arc<AppState>, id: &str) -> Result<warp::reply::Response, Rejection> {
    use crate::offsite::RequestError;
    let Some(x) = &s.exporter else {
        return Err(ApiError::Conflict("export is not configured ([export] in the config)".into()).into());
    };
    let (s2, clip) = (s.clone(), id.to_string());
    if blocking(move || s2.index()?.get(&clip).map_err(ApiError::from)).await?.is_none() {
        return Err(ApiError::NotFound(format!("no clip {id}")).into());
    }
    match x.request(id).await {
        Ok(status) => Ok(json(StatusCode::ACCEPTED, &status)),
        Err(RequestError::NotFound(id)) => Err(ApiError::NotFound(format!("no clip {id}")).into()),
        Err(e @ RequestError::Busy) => Err(ApiError::Unavailable(e.to_string()).into()),
        Err(RequestError::Failed(e)) => Err(ApiError::Internal(e).into()),
    }
}

/// Clip, trigger, recording and storage routes.
pub fn routes(
    st: impl Filter<Extract = (Arc<AppState>,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static,
) -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    // A trigger body is small JSON; bodies without Content-Length (empty POSTs, chunked) are
    // read up to the limit and no further.
    let body = super::limited_body(TRIGGER_BODY_MAX, "trigger body");
    let trig = warp::path!("api" / "cameras" / String / "trigger")
        .and(warp::post())
        .and(st.clone())
        .and(super::peer())
        .and(body)
        .and_then(|id, s, p, b| trigger(s, id, p, b));
    let rec = warp::path!("api" / "cameras" / String / "record" / String)
        .and(warp::post())
        .and(st.clone())
        .and_then(|id, verb, s| record(s, id, verb));
    let list = warp::path!("api" / "clips")
        .and(warp::get())
        .and(st.clone())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and_then(|s: Arc<AppState>, raw: String| async move {
            let q: ClipQuery = serde_urlencoded_query(&raw)?;
            let page = blocking(move || {
                let index = s.index()?;
                let page = index.list(&q).map_err(ApiError::from)?;
                let mut v = serde_json::to_value(&page).map_err(|e| ApiError::Internal(e.to_string()))?;
                if s.exporter.is_some() {
                    if let Some(clips) = v.get_mut("clips").and_then(|c| c.as_array_mut()) {
                        for c in clips {
                            with_export(&index, c);
                        }
                    }
                }
                Ok(v)
            })
            .await?;
            Ok::<_, Rejection>(json(StatusCode::OK, &page))
        });
    let meta = warp::path!("api" / "clips" / String).and(warp::get()).and(st.clone()).and_then(
        |id: String, s: Arc<AppState>| async move {
            clip_id(&id)?;
            let m = blocking(move || {
                let index = s.index()?;
                let m = index
                    .get(&id)
                    .map_err(ApiError::from)?
                    .ok_or_else(|| ApiError::NotFound(format!("no clip {id}")))?;
                let mut v = serde_json::to_value(&m).map_err(|e| ApiError::Internal(e.to_string()))?;
                if s.exporter.is_some() {
                    with_export(&index, &mut v);
                }
                Ok(v)
            })
            .await?;
            Ok::<_, Rejection>(json(StatusCode::OK, &m))
        },
    );
    let video = warp::path!("api" / "clips" / String / String)
        .and(warp::get())
        .and(st.clone())
        .and(warp::header::optional::<String>("range"))
        .and_then(|id: String, file: String, s: Arc<AppState>, range: Option<String>| async move {
            clip_id(&id)?;
            let mime = match file.as_str() {
                "video.mp4" => "video/mp4",
                "thumbnail.jpg" => "image/jpeg",
                _ => return Err(warp::reject::not_found()),
            };
            let s2 = s.clone();
            let id2 = id.clone();
            let m = blocking(move || {
                s2.index()?
                    .get(&id2)
                    .map_err(ApiError::from)?
                    .ok_or_else(|| ApiError::NotFound(format!("no clip {id2}")))
            })
            .await?;
            if m.remote_only && mime == "video/mp4" {
                return remote_video(&s, &id, range).await;
            }
            let mut path =
                s.store.storage.abs(&m.path).ok_or_else(|| ApiError::Internal("clip path outside storage".into()))?;
            if mime == "image/jpeg" {
                path = path.with_extension("jpg");
            }
            file_reply(path, mime, range).await
        });
    let delete = warp::path!("api" / "clips" / String).and(warp::delete()).and(st.clone()).and_then(
        |id: String, s: Arc<AppState>| async move {
            clip_id(&id)?;
            let m = blocking(move || {
                s.store
                    .storage
                    .delete_clip(&s.index()?, &id)
                    .map_err(ApiError::from)?
                    .ok_or_else(|| ApiError::NotFound(format!("no clip {id}")))
            })
            .await?;
            Ok::<_, Rejection>(json(StatusCode::OK, &serde_json::json!({"deleted": m.id})))
        },
    );
    let pin = warp::path!("api" / "clips" / String / String).and(warp::post()).and(st.clone()).and_then(
        |id: String, verb: String, s: Arc<AppState>| async move {
            clip_id(&id)?;
            let pinned = match verb.as_str() {
                "pin" => true,
                "unpin" => false,
                "export" => return export_clip(&s, &id).await,
                _ => return Err(warp::reject::not_found()),
            };
            let m = blocking(move || {
                s.index()?
                    .set_pinned(&id, pinned)
                    .map_err(ApiError::from)?
                    .ok_or_else(|| ApiError::NotFound(format!("no clip {id}")))
            })
            .await?;
            Ok(json(StatusCode::OK, &m))
        },
    );
    let usage =
        warp::path!("api" / "storage").and(warp::get()).and(st.clone()).and_then(|s: Arc<AppState>| async move {
            let u = blocking(move || s.store.storage.usage(&s.index()?).map_err(ApiError::from)).await?;
            Ok::<_, Rejection>(json(StatusCode::OK, &u))
        });
    let preview = warp::path!("api" / "storage" / "cleanup" / "preview").and(warp::get()).and(st.clone()).and_then(
        |s: Arc<AppState>| async move {
            let (p, r) = blocking(move || {
                let (index, now) = (s.index()?, crate::time::wall_now_ms());
                let limits = recording_limits(&s);
                let r = s.store.storage.recordings_plan(&index, &limits, 0, now).map_err(ApiError::from)?;
                Ok((s.store.storage.cleanup_plan(&index, 0, now).map_err(ApiError::from)?, r))
            })
            .await?;
            Ok::<_, Rejection>(json(
                StatusCode::OK,
                &serde_json::json!({"would_delete": p, "recordings_would_delete": r}),
            ))
        },
    );
    let cleanup =
        warp::path!("api" / "storage" / "cleanup").and(warp::post()).and(st).and_then(|s: Arc<AppState>| async move {
            let r = blocking(move || {
                let (index, now) = (s.index()?, crate::time::wall_now_ms());
                // Recordings first (they give way before clips), then the clips' own rules.
                let limits = recording_limits(&s);
                let rec = s.store.storage.recordings_plan(&index, &limits, 0, now).map_err(ApiError::from)?;
                let rec = s.store.storage.apply_recordings_plan(&index, &rec);
                let plan = s.store.storage.cleanup_plan(&index, 0, now).map_err(ApiError::from)?;
                let mut report = s.store.storage.apply_cleanup(&index, &plan).map_err(ApiError::from)?;
                report.recordings_freed_bytes = rec.iter().map(|p| p.segment.bytes).sum();
                report.recordings_deleted = rec;
                Ok(report)
            })
            .await?;
            Ok::<_, Rejection>(json(StatusCode::OK, &r))
        });
    trig.or(rec)
        .unify()
        .or(list)
        .unify()
        .or(meta)
        .unify()
        .or(video)
        .unify()
        .or(delete)
        .unify()
        .or(pin)
        .unify()
        .or(usage)
        .unify()
        .or(preview)
        .unify()
        .or(cleanup)
        .unify()
        .boxed()
}

/// Parse the query string, answering 400 with the parameter at fault.
fn serde_urlencoded_query(raw: &str) -> Result<ClipQuery, Rejection> {
    let mut q = ClipQuery::default();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v).ok_or_else(|| ApiError::BadRequest(format!("bad encoding in {k}")))?;
        match k {
            "camera" => q.camera = Some(v),
            "since" => q.since = Some(v),
            "until" => q.until = Some(v),
            "label" => q.label = Some(v),
            "q" => q.q = Some(v),
            "source" => q.source = Some(v),
            "device" => q.device = Some(v),
            "limit" => {
                q.limit = Some(v.parse().map_err(|_| ApiError::BadRequest(format!("limit: {v:?} is not a number")))?)
            }
            "cursor" => q.cursor = Some(v),
            other => {
                return Err(warp::reject::custom(ApiError::BadRequest(format!("unknown query parameter {other:?}"))))
            }
        }
    }
    Ok(q)
}

pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 100).unwrap(), None);
        assert_eq!(parse_range(Some("bytes=0-9"), 100).unwrap(), Some((0, 9)));
        assert_eq!(parse_range(Some("bytes=90-"), 100).unwrap(), Some((90, 99)));
        assert_eq!(parse_range(Some("bytes=-10"), 100).unwrap(), Some((90, 99)));
        assert_eq!(parse_range(Some("bytes=50-1000"), 100).unwrap(), Some((50, 99)));
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100).unwrap(), None);
        assert_eq!(parse_range(Some("items=0-1"), 100).unwrap(), None);
        for bad in ["bytes=100-", "bytes=200-300", "bytes=5-2", "bytes=-0", "bytes=x-y"] {
            assert!(matches!(parse_range(Some(bad), 100), Err(ApiError::RangeNotSatisfiable(100))), "{bad}");
        }
        assert_eq!(percent_decode("a%2Fb+c").as_deref(), Some("a/b c"));
        assert_eq!(percent_decode("%zz"), None);
    }
}
