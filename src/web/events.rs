//! `GET /api/events`: server-sent events for the web app, so a saved clip shows up at once
//! instead of at the next poll.
//!
//! Events: `clip` (the saved clip's metadata, as `/api/clips/{id}`), `recording`
//! (`{"camera","on"}`), `clip_failed` (`{"camera","clip_id","error"}`), `export` and `alert` (an
//! alert raised or cleared, as in `/api/health/system`), plus a keep-alive
//! comment every 15 s. A slow browser that falls behind the bounded broadcast channel skips
//! the events it missed (it re-reads the list on the next page load) — it never makes the
//! recorder wait. Streams end when the daemon shuts down, so HTTP can drain.

use super::AppState;
use crate::clip_meta::ClipEvent;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use warp::{Filter, Reply};

/// The SSE form of one clip event (`None` if it cannot be serialized).
fn to_sse(ev: &ClipEvent) -> Option<warp::sse::Event> {
    let e = warp::sse::Event::default();
    match ev {
        ClipEvent::Saved(meta) => e.event("clip").json_data(meta.as_ref()),
        ClipEvent::Recording { camera, on } => {
            e.event("recording").json_data(serde_json::json!({"camera": camera, "on": on}))
        }
        ClipEvent::Failed { camera, clip_id, error } => {
            e.event("clip_failed").json_data(serde_json::json!({"camera": camera, "clip_id": clip_id, "error": error}))
        }
        ClipEvent::Exported { .. } => e.event("export").json_data(crate::clip_meta::export_json(ev)),
        ClipEvent::Alert { json, changed: true, .. } => e.event("alert").json_data(json.as_ref()),
        // Seen for the first time, not raised: nothing happened.
        ClipEvent::Alert { changed: false, .. } => return None,
    }
    .ok()
}

/// `GET /api/events`.
pub fn routes(
    st: impl Filter<Extract = (Arc<AppState>,), Error = Infallible> + Clone + Send + Sync + 'static,
) -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    warp::path!("api" / "events")
        .and(warp::get())
        .and(st)
        .map(|s: Arc<AppState>| {
            let rx = s.registry.events().subscribe();
            let closing = Box::pin(s.registry.closing());
            let stream = futures_util::stream::unfold((rx, closing), |(mut rx, mut closing)| async move {
                loop {
                    let ev = tokio::select! {
                        _ = &mut closing => return None,
                        ev = rx.recv() => ev,
                    };
                    match ev {
                        Ok(ev) => {
                            if let Some(sse) = to_sse(&ev) {
                                return Some((Ok::<_, Infallible>(sse), (rx, closing)));
                            }
                        }
                        Err(RecvError::Lagged(_)) => continue,
                        Err(RecvError::Closed) => return None,
                    }
                }
            });
            let keep = warp::sse::keep_alive().interval(Duration::from_secs(15));
            warp::sse::reply(keep.stream(stream)).into_response()
        })
        .boxed()
}
