//! Continuous recording's export and delete routes:
//! `GET /api/cameras/{id}/recordings/export.mp4?from&to` streams a time range as one regular MP4
//! ([`crate::mp4::export`] plans it from the segments' boxes; the body is its head, then byte
//! ranges of the segment files, read off the async runtime and sent through a bounded channel —
//! no temporary copy), and `DELETE /api/cameras/{id}/recordings?from&to` removes the segments
//! overlapping a range.
//!
//! Both need `from` and `to` (RFC 3339); an export covers at most [`MAX_EXPORT_S`] (its sample
//! tables are built in memory) and at most [`MAX_EXPORTS`] stream at once (503 beyond), a delete
//! covers at most the listing's [`super::recordings::MAX_RANGE_DAYS`].
//! Nothing recorded: 404. Segment files are opened one at a time (an hour of 2 s segments would
//! need 1800 descriptors at once); retention removing one of them mid-download ends the
//! download with an error, never with wrong bytes.

use super::clips::{blocking, json};
use super::{ApiError, AppState};
use crate::mp4::export::{plan, ExportPlan, Source};
use crate::mp4::FileView;
use crate::time::rfc3339_ms;
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;
use warp::http::{header, Response, StatusCode};
use warp::{Filter, Rejection};

/// Longest range one export covers (seconds).
pub const MAX_EXPORT_S: i64 = 3600;
/// Most segments one export reads (an hour of 2 s segments, and the ones at its edges).
const MAX_EXPORT_SEGMENTS: usize = 1802;
/// Bytes read and sent at a time.
const PIECE: usize = 256 * 1024;
/// Pieces in flight between the reading thread and the connection.
const IN_FLIGHT: usize = 4;
/// 90 kHz ticks per ms (the export's timeline is Unix ms × 90).
const TICKS_PER_MS: u64 = 90;
/// Exports streaming at once (each holds a blocking thread and its sample tables); beyond, 503.
pub const MAX_EXPORTS: usize = 4;

/// Exports in progress.
static EXPORTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// One export's place among [`MAX_EXPORTS`], given back when dropped (the stream ended).
struct ExportSlot;

impl ExportSlot {
    fn take() -> Result<ExportSlot, ApiError> {
        use std::sync::atomic::Ordering::SeqCst;
        EXPORTS
            .fetch_update(SeqCst, SeqCst, |n| (n < MAX_EXPORTS).then_some(n + 1))
            .map(|_| ExportSlot)
            .map_err(|_| ApiError::Unavailable(format!("{MAX_EXPORTS} exports are running; try again when one ends")))
    }
}

impl Drop for ExportSlot {
    fn drop(&mut self) {
        EXPORTS.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The required `from` and `to` of an export or a delete, as Unix ms.
fn required_range(q: &HashMap<String, String>, max_ms: i64) -> Result<(i64, i64), ApiError> {
    let get = |k: &str| {
        let v = q.get(k).ok_or_else(|| ApiError::BadRequest(format!("{k} is required (RFC 3339)")))?;
        crate::time::parse_rfc3339_ms(k, v).map_err(ApiError::BadRequest)
    };
    let (from, to) = (get("from")?, get("to")?);
    if to <= from {
        return Err(ApiError::BadRequest("to must be after from".into()));
    }
    if to - from > max_ms {
        return Err(ApiError::BadRequest(format!("at most {} s at once", max_ms / 1000)));
    }
    if from < 0 {
        return Err(ApiError::BadRequest("from is before 1970".into()));
    }
    Ok((from, to))
}

/// An export planned: the plan and the segment files it reads.
struct Planned {
    plan: ExportPlan,
    files: Vec<std::path::PathBuf>,
}

/// Plan the export of `[from, to)` of camera `id` (blocking: reads the index and the files).
fn plan_export(s: &AppState, id: &str, from: i64, to: i64) -> Result<Planned, ApiError> {
    let segs = s.index()?.segments(id, from, to, MAX_EXPORT_SEGMENTS).map_err(ApiError::from)?;
    let mut files = Vec::with_capacity(segs.len());
    let mut views = Vec::with_capacity(segs.len());
    let mut starts = Vec::with_capacity(segs.len());
    for g in &segs {
        let Some(path) = s.store.storage.abs(&g.path) else { continue };
        // A segment removed since the index was read (retention) is skipped, not an error.
        let Ok(mut f) = std::fs::File::open(&path) else { continue };
        let view = FileView::read(&mut f).map_err(|e| ApiError::Internal(format!("{}: {e}", g.path)))?;
        files.push(path);
        views.push(view);
        starts.push(g.start_ms.max(0) as u64 * TICKS_PER_MS);
    }
    let sources: Vec<Source> =
        views.iter().zip(&starts).map(|(v, &start)| Source { file: v as &dyn crate::mp4::Bytes, start }).collect();
    let nothing = || {
        ApiError::NotFound(format!("camera {id} recorded nothing between {} and {}", rfc3339_ms(from), rfc3339_ms(to)))
    };
    let plan = plan(&sources, from as u64 * TICKS_PER_MS, to as u64 * TICKS_PER_MS)
        .map_err(|e| ApiError::Internal(format!("cannot export: {e}")))?
        .ok_or_else(nothing)?;
    files.truncate(plan.sources_used);
    Ok(Planned { plan, files })
}

/// Send the export's bytes through `tx` (blocking: reads the files); stops when the client left.
fn send_export(p: Planned, tx: tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>, _slot: ExportSlot) {
    if tx.blocking_send(Ok(bytes::Bytes::from(p.plan.head))).is_err() {
        return;
    }
    let mut open: Option<(usize, std::fs::File)> = None;
    for (src, at, len) in p.plan.ranges {
        let result = (|| {
            if open.as_ref().is_none_or(|(i, _)| *i != src) {
                let path = p.files.get(src).ok_or_else(|| std::io::Error::other("no such source"))?;
                open = Some((src, std::fs::File::open(path)?));
            }
            let Some((_, f)) = open.as_mut() else { return Err(std::io::Error::other("no file")) };
            f.seek(SeekFrom::Start(at))?;
            let mut left = len;
            while left > 0 {
                let mut buf = vec![0u8; PIECE.min(left as usize)];
                f.read_exact(&mut buf)?;
                left -= buf.len() as u64;
                if tx.blocking_send(Ok(bytes::Bytes::from(buf))).is_err() {
                    return Ok(false);
                }
            }
            Ok(true)
        })();
        match result {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                log::warn!("export: reading a segment failed: {e}");
                let _ = tx.blocking_send(Err(e));
                return;
            }
        }
    }
}

async fn export(s: Arc<AppState>, id: String, q: HashMap<String, String>) -> Result<warp::reply::Response, Rejection> {
    s.control.require(&id).map_err(ApiError::from)?;
    let (from, to) = required_range(&q, MAX_EXPORT_S * 1000)?;
    let slot = ExportSlot::take()?;
    let s2 = s.clone();
    let id2 = id.clone();
    let planned = blocking(move || plan_export(&s2, &id2, from, to)).await?;
    let p = &planned.plan;
    let (first_ms, end_ms) = ((p.first / TICKS_PER_MS) as i64, (p.end / TICKS_PER_MS) as i64);
    let name = format!("{id}-{}.mp4", rfc3339_ms(first_ms).replace([':', '-'], "").replace('.', "-"));
    let resp = Response::builder()
        .header(header::CONTENT_TYPE, "video/mp4")
        .header(header::CONTENT_LENGTH, p.len)
        .header(header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\""))
        .header(header::CACHE_CONTROL, "no-store")
        .header("x-hindsight-start", rfc3339_ms(first_ms))
        .header("x-hindsight-end", rfc3339_ms(end_ms))
        .header("x-hindsight-frames", p.frames);
    let (tx, mut rx) = tokio::sync::mpsc::channel(IN_FLIGHT);
    tokio::task::spawn_blocking(move || send_export(planned, tx, slot));
    let body = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    resp.body(warp::hyper::Body::wrap_stream(body)).map_err(|e| warp::reject::custom(ApiError::Internal(e.to_string())))
}

/// `DELETE …/recordings?from&to` answer.
#[derive(Debug, serde::Serialize)]
struct Deleted {
    /// Segments removed.
    removed: usize,
    /// Their bytes.
    bytes: u64,
    /// The span they covered (RFC 3339), when any.
    from: Option<String>,
    to: Option<String>,
}

async fn delete(s: Arc<AppState>, id: String, q: HashMap<String, String>) -> Result<warp::reply::Response, Rejection> {
    s.control.require(&id).map_err(ApiError::from)?;
    let (from, to) = required_range(&q, super::recordings::MAX_RANGE_DAYS * 86_400_000)?;
    let d = blocking(move || {
        let index = s.index()?;
        let segs = index.segments(&id, from, to, usize::MAX).map_err(ApiError::from)?;
        let mut d = Deleted { removed: 0, bytes: 0, from: None, to: None };
        for g in &segs {
            if s.store.storage.remove_segment(&index, g) {
                d.removed += 1;
                d.bytes += g.bytes;
            }
        }
        if d.removed > 0 {
            d.from = segs.first().map(|g| rfc3339_ms(g.start_ms));
            d.to = segs.last().map(|g| rfc3339_ms(g.end_ms));
            log::info!("camera {id}: {} recording segments removed ({} bytes) on request", d.removed, d.bytes);
        }
        Ok(d)
    })
    .await?;
    Ok(json(StatusCode::OK, &d))
}

/// The export and delete routes.
pub fn routes(
    st: impl Filter<Extract = (Arc<AppState>,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static,
) -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    let query = warp::query::<HashMap<String, String>>();
    let exp = warp::path!("api" / "cameras" / String / "recordings" / "export.mp4")
        .and(warp::get())
        .and(st.clone())
        .and(query)
        .and_then(|id, s, q| export(s, id, q));
    let del = warp::path!("api" / "cameras" / String / "recordings")
        .and(warp::delete())
        .and(st)
        .and(warp::query::<HashMap<String, String>>())
        .and_then(|id, s, q| delete(s, id, q));
    exp.or(del).unify().boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_four_exports_stream_at_once_and_a_finished_one_frees_its_place() {
        let slots: Vec<ExportSlot> = (0..MAX_EXPORTS).map(|_| ExportSlot::take().unwrap()).collect();
        let refused = ExportSlot::take().err().expect("a fifth export is refused");
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(refused.to_string().contains("exports are running"), "{refused}");
        drop(slots);
        let again = ExportSlot::take();
        assert!(again.is_ok(), "places are given back when the streams end");
    }

    #[test]
    fn a_range_must_be_named_ordered_and_short_enough() {
        let q =
            |f: &str, t: &str| HashMap::from([("from".to_string(), f.to_string()), ("to".to_string(), t.to_string())]);
        let hour = MAX_EXPORT_S * 1000;
        assert!(required_range(&HashMap::new(), hour).unwrap_err().to_string().contains("from is required"));
        let ok = required_range(&q("2026-12-07T10:00:00Z", "2026-12-07T10:00:07.300Z"), hour).unwrap();
        assert_eq!(ok.1 - ok.0, 7300);
        assert!(required_range(&q("2026-12-07T10:00:00Z", "2026-12-07T09:00:00Z"), hour).is_err());
        let long = required_range(&q("2026-12-07T10:00:00Z", "2026-12-07T11:00:01Z"), hour).unwrap_err();
        assert!(long.to_string().contains("at most 3600 s"), "{long}");
    }
}
