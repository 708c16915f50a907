//! The HTTP API on warp: health, cameras and camera control (docs/API.md, "HTTP API").
//!
//! Handlers only read shared state or hand blocking work (joining threads) to
//! `spawn_blocking`; they never wait on a camera from the async runtime. Every error leaves as
//! `{"error": "..."}` with a status from one place, [`ApiError::status`]: 4xx for the client's
//! mistakes with a message that says what to fix, 5xx only for ours.
//!
//! [`serve`](mod@serve) is the one serving path (plain HTTP or HTTPS via [`tls`], peer address for every
//! filter through [`peer`]); [`app`] puts the [`auth`] guard in front of [`routes`].

pub mod assets;
pub mod auth;
pub mod clips;
pub mod events;
pub mod export;
pub mod hls;
pub mod login;
pub mod metrics;
pub mod mjpeg;
pub mod phone;
pub mod recordings;
pub mod serve;
pub mod tls;
pub mod tus;
pub mod uploads;
pub mod whep;

#[cfg(test)]
mod fuzz_tests;

pub use serve::{peer, Peer};

use crate::camera::registry::Registry;
use crate::camera::Camera;
use crate::clip::store::ClipStore;
use crate::control::{CameraVerb, Control, ControlError};
use crate::index::{Index, IndexError};
use crate::storage::StorageError;
use serde::Serialize;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

/// What the handlers share.
pub struct AppState {
    /// The cameras and their recorders (config order, then those phones added), to read.
    pub registry: Arc<Registry>,
    /// Every action on them (triggers, recording, camera start/stop, phone cameras).
    pub control: Arc<Control>,
    /// Clip files and index.
    pub store: Arc<ClipStore>,
    /// Clip storage directory (for health's storage figures).
    pub storage_path: PathBuf,
    /// tus uploads in progress and recently finished.
    pub uploads: Arc<crate::upload::Uploads>,
    /// The WebRTC (WHEP) live view; `None` when it is off or its port could not be bound.
    pub webrtc: Option<Arc<crate::live::webrtc::Webrtc>>,
    /// The export to S3-compatible storage; `None` without `[export]`.
    pub exporter: Option<Arc<crate::offsite::Exporter>>,
    /// The box's health and alerts (`/api/health/system`).
    pub monitor: Arc<crate::monitor::Monitor>,
}

impl AppState {
    /// The clip index (opened on first use; a missing mount answers 507).
    fn index(&self) -> Result<Index, ApiError> {
        self.store.index().map_err(ApiError::from)
    }

    fn camera(&self, id: &str) -> Result<Arc<Camera>, ApiError> {
        self.registry.get(id).map(|e| e.camera).ok_or_else(|| ApiError::NotFound(format!("no camera {id:?}")))
    }
}

/// Errors a handler can answer with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Unknown camera, clip or route.
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The request conflicts with the current state (camera stopped, already recording).
    #[error("{0}")]
    Conflict(String),
    /// Storage cannot take it (full and nothing to free, or the mount is missing).
    #[error("{0}")]
    InsufficientStorage(String),
    /// A `Range` outside the file (the file's size).
    #[error("requested range not satisfiable (file is {0} bytes)")]
    RangeNotSatisfiable(u64),
    /// Temporarily unable to answer (no camera frame to show yet, too many live viewers,
    /// shutting down): retry later.
    #[error("{0}")]
    Unavailable(String),
    /// A service behind the appliance (the export bucket) failed or could not be reached.
    #[error("{0}")]
    BadGateway(String),
    /// No or wrong credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// Credentials are fine but the request is refused (cross-site).
    #[error("{0}")]
    Forbidden(String),
    /// Too many failed attempts: retry after this many seconds.
    #[error("too many failed attempts: try again in {0} s")]
    TooManyRequests(u64),
    /// Triggers from this client over `[triggers]`'s rate: retry after this many seconds.
    #[error("too many triggers from this client (triggers.rate_per_min): try again in {0} s")]
    TooManyTriggers(u64),
    /// The body is larger than allowed (uploads over `uploads.max_bytes`).
    #[error("{0}")]
    PayloadTooLarge(String),
    /// None of the formats the client can take is one we can send (WHEP: no common H.264 profile).
    #[error("{0}")]
    NotAcceptable(String),
    /// The content is of a kind we do not take (an upload that is not a video).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A required precondition header is wrong (tus: `Tus-Resumable`).
    #[error("{0}")]
    PreconditionFailed(String),
    /// tus checksum extension: the chunk's `Upload-Checksum` does not match (460).
    #[error("{0}")]
    ChecksumMismatch(String),
    /// Our fault.
    #[error("{0}")]
    Internal(String),
}

impl From<IndexError> for ApiError {
    fn from(e: IndexError) -> Self {
        match e {
            IndexError::BadQuery(m) => ApiError::BadRequest(m),
            other => ApiError::Internal(format!("index: {other}")),
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Full { .. } | StorageError::MountMissing(_) => ApiError::InsufficientStorage(e.to_string()),
            StorageError::Index(i) => ApiError::from(i),
            other => ApiError::Internal(crate::status::error_chain(&other)),
        }
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::UnknownCamera(_) => ApiError::NotFound(e.to_string()),
            ControlError::BadId(_) => ApiError::BadRequest(e.to_string()),
            ControlError::Conflict(_) => ApiError::Conflict(e.to_string()),
            ControlError::Forbidden(_) => ApiError::Forbidden(e.to_string()),
            ControlError::ShuttingDown => ApiError::Unavailable(e.to_string()),
            ControlError::Start { .. } => ApiError::Internal(e.to_string()),
        }
    }
}

impl warp::reject::Reject for ApiError {}

impl ApiError {
    /// The one mapping from error kind to HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::RangeNotSatisfiable(_) => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::TooManyRequests(_) | ApiError::TooManyTriggers(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            // tus checksum extension's "Checksum Mismatch".
            ApiError::ChecksumMismatch(_) => StatusCode::from_u16(460).unwrap_or(StatusCode::BAD_REQUEST),
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

pub(crate) fn json_error(status: StatusCode, msg: impl Into<String>) -> warp::reply::Response {
    warp::reply::with_status(warp::reply::json(&ErrorBody { error: msg.into() }), status).into_response()
}

/// An error as a JSON response (with `Content-Range` / `Retry-After` where they apply).
pub(crate) fn error_response(e: &ApiError) -> warp::reply::Response {
    if e.status().is_server_error() {
        log::error!("request failed: {e}");
    }
    let mut resp = json_error(e.status(), e.to_string());
    let extra = match e {
        ApiError::RangeNotSatisfiable(size) => Some((warp::http::header::CONTENT_RANGE, format!("bytes */{size}"))),
        ApiError::TooManyRequests(secs) | ApiError::TooManyTriggers(secs) => {
            Some((warp::http::header::RETRY_AFTER, secs.to_string()))
        }
        _ => None,
    };
    if let Some((name, value)) = extra {
        if let Ok(v) = warp::http::HeaderValue::from_str(&value) {
            resp.headers_mut().insert(name, v);
        }
    }
    resp
}

/// Every rejection becomes a JSON error.
pub(crate) async fn recover(r: Rejection) -> Result<warp::reply::Response, Infallible> {
    let resp = if let Some(e) = r.find::<ApiError>() {
        error_response(e)
    } else if let Some(e) = r.find::<warp::reject::PayloadTooLarge>() {
        json_error(StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
    } else if r.is_not_found() {
        json_error(StatusCode::NOT_FOUND, "no such route")
    } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
        json_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this route")
    } else if let Some(e) = r.find::<warp::filters::body::BodyDeserializeError>() {
        json_error(StatusCode::BAD_REQUEST, format!("bad JSON body: {e}"))
    } else {
        json_error(StatusCode::BAD_REQUEST, format!("{r:?}"))
    };
    Ok(resp)
}

/// `GET /api/health`: the control's health plus, with `[export]`, the export summary (refused
/// credentials make it `degraded`).
fn health(s: &AppState) -> serde_json::Value {
    let mut v = serde_json::to_value(s.control.health()).unwrap_or_default();
    if let (Some(x), Some(m)) = (&s.exporter, v.as_object_mut()) {
        let summary = x.summary();
        if summary.state == "auth_error" {
            m.insert("status".into(), "degraded".into());
        }
        m.insert("export".into(), serde_json::to_value(summary).unwrap_or_default());
    }
    v
}

/// Camera control verbs.
/// All routes, with JSON errors.
pub fn routes(state: Arc<AppState>) -> impl Filter<Extract = (warp::reply::Response,), Error = Infallible> + Clone {
    let st = warp::any().map(move || state.clone());

    let health = warp::path!("api" / "health")
        .and(warp::get())
        .and(st.clone())
        .map(|s: Arc<AppState>| warp::reply::json(&health(&s)).into_response());

    let system = warp::path!("api" / "health" / "system")
        .and(warp::get())
        .and(st.clone())
        .map(|s: Arc<AppState>| warp::reply::json(&s.monitor.report()).into_response());

    let list = warp::path!("api" / "cameras").and(warp::get()).and(st.clone()).map(|s: Arc<AppState>| {
        let v: Vec<_> = s.registry.snapshot().iter().map(|e| e.info()).collect();
        warp::reply::json(&v).into_response()
    });

    let one = warp::path!("api" / "cameras" / String).and(warp::get()).and(st.clone()).and_then(
        |id: String, s: Arc<AppState>| async move {
            let e = s.registry.get(&id).ok_or_else(|| ApiError::NotFound(format!("no camera {id:?}")))?;
            Ok::<_, Rejection>(warp::reply::json(&e.info()).into_response())
        },
    );

    let ctl = warp::path!("api" / "cameras" / String / String).and(warp::post()).and(st.clone()).and_then(
        |id: String, verb: String, s: Arc<AppState>| async move {
            let Ok(verb) = verb.parse::<CameraVerb>() else { return Err(warp::reject::not_found()) };
            let info = s.control.camera(&id, verb).await.map_err(ApiError::from)?;
            Ok(warp::reply::json(&info).into_response())
        },
    );

    let clip_routes = clips::routes(st.clone());
    let mjpeg_routes = mjpeg::routes(st.clone());
    health
        .or(system)
        .unify()
        .or(list)
        .unify()
        .or(one)
        .unify()
        .or(clip_routes)
        .unify()
        .or(mjpeg_routes)
        .unify()
        .or(hls::routes(st.clone()))
        .unify()
        .or(export::routes(st.clone()))
        .unify()
        .or(recordings::routes(st.clone()))
        .unify()
        .or(events::routes(st.clone()))
        .unify()
        .or(metrics::routes(st.clone()))
        .unify()
        .or(phone::routes(st.clone()))
        .unify()
        .or(uploads::routes(st.clone()))
        .unify()
        .or(whep::routes(st.clone()))
        .unify()
        .or(ctl)
        .unify()
        .or(assets::routes())
        .unify()
        .recover(recover)
        .unify()
}

/// The whole application: the login routes, then the guard in front of everything else.
/// With auth off the guard lets every request through, so this is exactly [`routes`].
pub fn app(
    state: Arc<AppState>,
    auth: Arc<crate::auth::Auth>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Infallible> + Clone {
    login::public_routes(auth.clone())
        .or(auth::guard(auth.clone()).and(login::routes(auth).or(routes(state)).unify()))
        .unify()
        .recover(auth::recover)
        .unify()
}

/// Bind `addr` and serve the app until `shutdown` resolves (HTTPS when `tls` is given); returns
/// the bound address at once.
pub fn serve(
    state: Arc<AppState>,
    auth: Arc<crate::auth::Auth>,
    addr: SocketAddr,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, impl std::future::Future<Output = ()> + Send + 'static)> {
    serve::serve(app(state, auth), addr, tls, shutdown)
}

/// A request body of at most `max` bytes, read as it streams: a larger one — declared by
/// `Content-Length` or sent chunked without one — is this route's 400 after at most `max` bytes
/// were read, never buffered whole. Never rejects (the answer belongs to this route).
pub(crate) fn limited_body(
    max: usize,
    what: &'static str,
) -> impl Filter<Extract = (Result<bytes::Bytes, ApiError>,), Error = Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and(warp::body::stream())
        .then(move |declared: Option<u64>, stream| read_limited(declared, stream, max, what))
}

async fn read_limited<B: bytes::Buf>(
    declared: Option<u64>,
    stream: impl futures_util::Stream<Item = Result<B, warp::Error>>,
    max: usize,
    what: &'static str,
) -> Result<bytes::Bytes, ApiError> {
    use futures_util::StreamExt;
    let too_large = || ApiError::BadRequest(format!("{what} larger than {} KiB", max / 1024));
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let mut stream = std::pin::pin!(stream);
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let mut chunk = chunk.map_err(|e| ApiError::BadRequest(format!("{what}: {e}")))?;
        if buf.len() + chunk.remaining() > max {
            return Err(too_large());
        }
        while chunk.has_remaining() {
            let n = chunk.chunk().len();
            buf.extend_from_slice(chunk.chunk());
            chunk.advance(n);
        }
    }
    Ok(buf.freeze())
}

/// Request headers from `(name, value)` pairs (unit tests of the header parsers).
#[cfg(test)]
pub(crate) fn test_headers(pairs: &[(&'static str, &str)]) -> warp::http::HeaderMap {
    let mut h = warp::http::HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, warp::http::HeaderValue::from_str(v).expect("a valid header value"));
    }
    h
}
