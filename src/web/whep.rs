//! WHEP (WebRTC-HTTP egress, draft-ietf-wish-whep, on RFC 9725's mechanics):
//! `POST /api/cameras/{id}/whep` with an SDP offer → `201` with the answer and the session's
//! `Location`; `DELETE` on it ends the session; `PATCH` (trickle ICE) is not needed by an
//! ICE-lite server and answers 405.
//!
//! `?start=auto|newest|next` picks where the picture starts (see [`StartAt`]). The answer carries
//! `X-Hindsight-Clock-Offset-Ms`: RTP timestamps are capture times on the daemon's monotonic
//! clock (90 kHz), and adding this offset to them (in ms) gives wall-clock ms — the web app
//! shows glass-to-glass latency with it.
//!
//! Must never wait on a camera: the offer is answered by the WebRTC task from RAM.

use super::{ApiError, AppState};
use crate::live::webrtc::{CameraFeed, StartAt, WhepError};
use std::sync::Arc;
use warp::http::{header, HeaderValue, StatusCode};
use warp::{Filter, Rejection};

/// Largest offer taken (a browser's is 3–10 KiB).
const MAX_OFFER: usize = 64 * 1024;
/// The SDP media type.
pub const SDP_TYPE: &str = "application/sdp";

impl From<WhepError> for ApiError {
    fn from(e: WhepError) -> Self {
        match e {
            WhepError::BadOffer(m) => ApiError::BadRequest(m),
            WhepError::NoCodec(m) => ApiError::NotAcceptable(m),
            WhepError::Unavailable(m) => ApiError::Unavailable(m),
            WhepError::NotFound(m) => ApiError::NotFound(m),
        }
    }
}

fn start_at(raw: &str) -> Result<StartAt, ApiError> {
    let mut start = StartAt::default();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        if let Some(v) = pair.strip_prefix("start=") {
            start = v.parse().map_err(ApiError::BadRequest)?;
        }
    }
    Ok(start)
}

async fn offer(
    s: Arc<AppState>,
    id: String,
    raw: String,
    content_type: Option<String>,
    body: Result<bytes::Bytes, ApiError>,
) -> Result<warp::reply::Response, Rejection> {
    let cam = s.camera(&id)?;
    let start = start_at(&raw)?;
    let ct = content_type.unwrap_or_default();
    if !ct.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case(SDP_TYPE)) {
        return Err(ApiError::UnsupportedMediaType(format!("an SDP offer is sent as {SDP_TYPE}, not {ct:?}")).into());
    }
    let body = body?;
    let sdp = std::str::from_utf8(&body).map_err(|_| ApiError::BadRequest("the offer is not UTF-8 text".into()))?;
    let rtc = s.webrtc.as_ref().ok_or_else(|| {
        ApiError::Unavailable(
            "WebRTC is off (http.webrtc_max_viewers = 0, or its UDP port could not be bound); use HLS".into(),
        )
    })?;
    let feed = CameraFeed { id: id.as_str().into(), preroll: cam.preroll.clone(), status: cam.status.clone() };
    let answer = rtc.offer(feed, sdp.to_owned(), start).await.map_err(ApiError::from)?;
    let mut resp = warp::reply::Response::new(answer.sdp.into());
    *resp.status_mut() = StatusCode::CREATED;
    let location = format!("/api/cameras/{id}/whep/{}", answer.session);
    let offset = crate::time::wall_now_ms() as f64 - crate::time::mono_now().as_secs_f64() * 1000.0;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(SDP_TYPE));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for (k, v) in [("location", location), ("x-hindsight-clock-offset-ms", format!("{offset:.3}"))] {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
    Ok(resp)
}

async fn close(s: Arc<AppState>, id: String, session: String) -> Result<warp::reply::Response, Rejection> {
    s.camera(&id)?;
    let rtc = s.webrtc.as_ref().ok_or_else(|| ApiError::NotFound(format!("no WebRTC session {session:?}")))?;
    rtc.close(&id, &session).await.map_err(ApiError::from)?;
    let mut resp = warp::reply::Response::new(Default::default());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    Ok(resp)
}

/// The WHEP routes.
pub fn routes(
    st: impl Filter<Extract = (Arc<AppState>,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static,
) -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    let post = warp::path!("api" / "cameras" / String / "whep")
        .and(warp::post())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::optional::<String>("content-type"))
        .and(super::limited_body(MAX_OFFER, "an SDP offer"))
        .and(st.clone())
        .and_then(|id, raw, ct, body, s| offer(s, id, raw, ct, body));
    let delete = warp::path!("api" / "cameras" / String / "whep" / String)
        .and(warp::delete())
        .and(st)
        .and_then(|id, session, s| close(s, id, session));
    let patch = warp::path!("api" / "cameras" / String / "whep" / String).and(warp::patch()).map(|_, _| {
        let mut r = super::json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "trickle ICE is not needed: the daemon is ICE-lite and learns the browser's address from its checks",
        );
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("DELETE"));
        r
    });
    post.or(delete).unify().or(patch).unify().boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_query() {
        assert_eq!(start_at("").unwrap(), StartAt::Auto);
        assert_eq!(start_at("start=auto").unwrap(), StartAt::Auto);
        assert_eq!(start_at("start=next").unwrap(), StartAt::Next);
        assert_eq!(start_at("x=1&start=newest").unwrap(), StartAt::Newest);
        assert!(matches!(start_at("start=soon"), Err(ApiError::BadRequest(_))));
    }
}
