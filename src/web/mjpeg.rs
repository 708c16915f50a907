//! MJPEG routes: `GET /api/cameras/{id}/mjpeg` (a `multipart/x-mixed-replace` stream, one part
//! per JPEG with `Content-Type` and `Content-Length`) and `GET /api/cameras/{id}/snapshot.jpg`.
//!
//! Each stream holds one [`Viewer`] guard: hyper polls the body only when the connection can
//! take more, so a slow client gets the newest JPEG when it is ready (the ones in between are
//! skipped) and a stalled one pins at most the JPEG being written. When the client goes away
//! hyper drops the body, and with it the guard: the viewer count drops at once.
//!
//! Must never copy a JPEG per viewer or buffer JPEGs for a viewer.

use super::{ApiError, AppState};
use crate::live::jpeg::Jpeg;
use crate::live::mjpeg::{PreviewError, Viewer};
use bytes::Bytes;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use warp::http::{header, HeaderValue, StatusCode};
use warp::hyper::Body;
use warp::{Filter, Rejection, Reply};

/// The multipart boundary.
pub const BOUNDARY: &str = "hindsightframe";
/// How long a snapshot waits for a JPEG to be encoded.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(5);

impl From<PreviewError> for ApiError {
    fn from(e: PreviewError) -> Self {
        match e {
            PreviewError::TooManyViewers { .. } | PreviewError::NoFrame { .. } | PreviewError::Closed(_) => {
                ApiError::Unavailable(e.to_string())
            }
            PreviewError::Spawn { .. } => ApiError::Internal(crate::status::error_chain(&e)),
        }
    }
}

/// The part header in front of a JPEG.
fn part_header(j: &Jpeg) -> Bytes {
    Bytes::from(format!("--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n", j.data.len()))
}

/// The body of one MJPEG stream: header, JPEG (shared, not copied), CRLF, for every JPEG the
/// viewer is handed.
fn stream_body(viewer: Viewer) -> Body {
    let parts = futures_util::stream::unfold((viewer, VecDeque::with_capacity(2)), |(mut v, mut pending)| async move {
        if let Some(b) = pending.pop_front() {
            return Some((Ok::<Bytes, Infallible>(b), (v, pending)));
        }
        let j = v.next().await?;
        let head = part_header(&j);
        pending.push_back(j.data);
        pending.push_back(Bytes::from_static(b"\r\n"));
        Some((Ok(head), (v, pending)))
    });
    Body::wrap_stream(parts)
}

fn no_cache(resp: &mut warp::reply::Response) {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-store, must-revalidate, private"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

async fn mjpeg(state: Arc<AppState>, id: String) -> Result<warp::reply::Response, Rejection> {
    let cam = state.camera(&id)?;
    let viewer = cam.preview.watch().map_err(ApiError::from)?;
    let mut resp = warp::reply::Response::new(stream_body(viewer));
    let ct = format!("multipart/x-mixed-replace; boundary={BOUNDARY}");
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&ct).map_err(|e| ApiError::Internal(format!("content type: {e}")))?,
    );
    no_cache(&mut resp);
    *resp.status_mut() = StatusCode::OK;
    Ok(resp)
}

async fn snapshot(state: Arc<AppState>, id: String) -> Result<warp::reply::Response, Rejection> {
    let cam = state.camera(&id)?;
    let j = cam.preview.snapshot(SNAPSHOT_WAIT).await.map_err(ApiError::from)?;
    let mut resp = warp::reply::Response::new(Body::from(j.data));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
    no_cache(&mut resp);
    Ok(resp)
}

/// `GET /api/cameras/{id}/mjpeg` and `GET /api/cameras/{id}/snapshot.jpg`.
pub fn routes(
    st: impl Filter<Extract = (Arc<AppState>,), Error = Infallible> + Clone + Send + Sync + 'static,
) -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    let stream = warp::path!("api" / "cameras" / String / "mjpeg")
        .and(warp::get())
        .and(st.clone())
        .and_then(|id: String, s: Arc<AppState>| mjpeg(s, id));
    let snap = warp::path!("api" / "cameras" / String / "snapshot.jpg")
        .and(warp::get())
        .and(st)
        .and_then(|id: String, s: Arc<AppState>| snapshot(s, id));
    stream.or(snap).unify().map(|r: warp::reply::Response| r.into_response()).boxed()
}
