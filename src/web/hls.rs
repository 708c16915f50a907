//! HLS routes under `GET`/`HEAD /api/cameras/{id}/hls/`: `live.m3u8` (with LL-HLS blocking reload:
//! `_HLS_msn=N[&_HLS_part=M]`), `init.mp4` (`?v=N` after a parameter-set change),
//! `seg{N}.m4s` and `part{N}.{M}.m4s` (a part still being produced is held until complete).
//!
//! Playlists are `no-cache`; segments and parts are immutable once served (their numbers are
//! never reused) and cacheable; the init segment is cacheable for less than the packager's idle
//! stop, after which it may be rebuilt. File names and query values are parsed strictly
//! (digits only): anything else is a 404 or a 400 with a message, never a panic.
//!
//! Must never wait without the packager's deadline, nor hold frames or segments per client.

use super::{ApiError, AppState};
use crate::live::hls::HlsError;
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use warp::http::{header, HeaderValue};
use warp::hyper::Body;
use warp::{Filter, Rejection};

/// `Content-Type` of the playlist.
pub const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";
/// `Content-Type` of segments and parts.
pub const SEGMENT_TYPE: &str = "video/iso.segment";

impl From<HlsError> for ApiError {
    fn from(e: HlsError) -> Self {
        match e {
            HlsError::BadRequest(m) => ApiError::BadRequest(m),
            HlsError::NotFound(m) => ApiError::NotFound(m),
            HlsError::Unavailable(m) => ApiError::Unavailable(m),
        }
    }
}

/// A file under `hls/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum File {
    Playlist,
    Init,
    Segment(u64),
    Part(u64, u64),
}

/// A non-negative decimal number: ASCII digits only (no sign, no spaces) that fit a u64
/// (any u64, as the property test in `fuzz_tests` checks; more digits are refused unread).
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

pub(super) fn parse_file(name: &str) -> Option<File> {
    match name {
        "live.m3u8" => Some(File::Playlist),
        "init.mp4" => Some(File::Init),
        _ => {
            if let Some(n) = name.strip_prefix("seg").and_then(|r| r.strip_suffix(".m4s")) {
                return number(n).map(File::Segment);
            }
            let (m, p) = name.strip_prefix("part")?.strip_suffix(".m4s")?.split_once('.')?;
            Some(File::Part(number(m)?, number(p)?))
        }
    }
}

/// The query values the HLS routes understand.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Query {
    pub(super) msn: Option<u64>,
    pub(super) part: Option<u64>,
    pub(super) version: Option<u32>,
}

pub(super) fn parse_query(raw: &str) -> Result<Query, ApiError> {
    let mut q = Query::default();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match k {
            "_HLS_msn" => &mut q.msn,
            "_HLS_part" => &mut q.part,
            "v" => {
                let n = number(v).and_then(|n| u32::try_from(n).ok());
                q.version =
                    Some(n.ok_or_else(|| ApiError::BadRequest(format!("v={v:?}: expected an init version number")))?);
                continue;
            }
            _ => continue, // _HLS_skip and anything else: ignored
        };
        *slot =
            Some(number(v).ok_or_else(|| ApiError::BadRequest(format!("{k}={v:?}: expected a non-negative integer")))?);
    }
    Ok(q)
}

fn reply(body: impl Into<Body>, content_type: &'static str, cache: &'static str) -> warp::reply::Response {
    let mut resp = warp::reply::Response::new(body.into());
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    resp
}

async fn serve(
    s: Arc<AppState>,
    id: String,
    name: String,
    raw: String,
    remote: Option<SocketAddr>,
) -> Result<warp::reply::Response, Rejection> {
    let cam = s.camera(&id)?;
    let file = parse_file(&name).ok_or_else(|| {
        ApiError::NotFound(format!("no HLS file {name:?} (live.m3u8, init.mp4, seg{{N}}.m4s, part{{N}}.{{M}}.m4s)"))
    })?;
    let q = parse_query(&raw)?;
    let client = remote.map(|a| a.ip());
    let hls = &cam.hls;
    let resp = match file {
        File::Playlist => {
            let text = hls.playlist(client, q.msn, q.part).await.map_err(ApiError::from)?;
            reply(text, PLAYLIST_TYPE, "no-cache")
        }
        File::Init => {
            let b: Bytes = hls.init(client, q.version).await.map_err(ApiError::from)?;
            reply(b, "video/mp4", "max-age=20")
        }
        File::Segment(n) => reply(hls.segment(client, n).await.map_err(ApiError::from)?, SEGMENT_TYPE, "max-age=60"),
        File::Part(n, m) => reply(hls.part(client, n, m).await.map_err(ApiError::from)?, SEGMENT_TYPE, "max-age=60"),
    };
    Ok(resp)
}

/// The HLS routes.
pub fn routes(
    st: impl Filter<Extract = (Arc<AppState>,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static,
) -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    warp::path!("api" / "cameras" / String / "hls" / String)
        .and(warp::get().or(warp::head()).unify())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(super::peer())
        .and(st)
        .and_then(|id, name, raw, remote, s| serve(s, id, name, raw, remote))
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        assert_eq!(parse_file("live.m3u8"), Some(File::Playlist));
        assert_eq!(parse_file("init.mp4"), Some(File::Init));
        assert_eq!(parse_file("seg1700000000.m4s"), Some(File::Segment(1_700_000_000)));
        assert_eq!(parse_file("part12.3.m4s"), Some(File::Part(12, 3)));
        for bad in [
            "seg.m4s",
            "seg+1.m4s",
            "seg-1.m4s",
            "seg1.mp4",
            "part1.m4s",
            "part1..m4s",
            "part.1.m4s",
            "part1.2.3.m4s",
            "seg99999999999999999999.m4s",
            "part1.-2.m4s",
            "../live.m3u8",
            "LIVE.m3u8",
            "seg 1.m4s",
            "",
        ] {
            assert_eq!(parse_file(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn queries() {
        assert_eq!(parse_query("").unwrap(), Query::default());
        assert_eq!(
            parse_query("_HLS_msn=5&_HLS_part=2&_HLS_skip=YES").unwrap(),
            Query { msn: Some(5), part: Some(2), version: None }
        );
        assert_eq!(parse_query("v=3&x=y").unwrap(), Query { msn: None, part: None, version: Some(3) });
        for bad in ["_HLS_msn=", "_HLS_msn=-1", "_HLS_msn=a", "_HLS_part=1e3", "v=99999999999", "_HLS_msn"] {
            let e = parse_query(bad).unwrap_err();
            assert!(matches!(e, ApiError::BadRequest(_)), "{bad}: {e:?}");
        }
    }
}
