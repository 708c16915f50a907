//! Continuous recording's routes: what a camera recorded over a time range (segments, gaps
//! with their reasons, coverage), a VOD HLS playlist per hour (fMP4 segments served by byte
//! range: each file's init segment, then its fragments), and the segment files themselves
//! (single `Range` requests).
//!
//! Times are RFC 3339 in, RFC 3339 out; hours are UTC, as the folders on disk. Ranges are
//! bounded (at most [`MAX_RANGE_DAYS`] days); a camera without recordings answers an empty list,
//! an unknown camera 404. Index reads go through `spawn_blocking`.

use super::clips::{blocking, file_reply, json};
use super::{ApiError, AppState};
use crate::segment_meta::SegmentMeta;
use crate::time::rfc3339_ms;
use serde::Serialize;
use std::fmt::Write;
use std::sync::Arc;
use warp::http::{header, Response, StatusCode};
use warp::{Filter, Rejection};

/// Longest range one listing covers.
pub const MAX_RANGE_DAYS: i64 = 31;
/// Most segments one listing gives (a day of 2 s segments); beyond, `truncated` and the
/// caller asks for a shorter range.
pub const MAX_LISTED: usize = 50_000;
/// Two segments further apart than this (ms) leave a gap on the timeline.
const GAP_MS: i64 = 250;

/// One segment in a listing.
#[derive(Debug, Serialize)]
pub struct SegmentInfo {
    /// First frame, RFC 3339.
    pub start: String,
    /// Last frame's end, RFC 3339.
    pub end: String,
    /// Seconds.
    pub duration_s: f64,
    /// File size.
    pub bytes: u64,
    /// Video frames.
    pub frames: u64,
    /// Whether it has sound.
    pub sound: bool,
    /// The file (`video/mp4`, fragmented).
    pub url: String,
}

/// A stretch without recording.
#[derive(Debug, Serialize)]
pub struct Gap {
    /// RFC 3339.
    pub start: String,
    /// RFC 3339.
    pub end: String,
    /// Why the recording stopped (`camera failed`, `recording started`, …), if known.
    pub reason: Option<String>,
}

/// A clip triggered during the range: a mark on the timeline.
#[derive(Debug, Serialize)]
pub struct Event {
    /// The trigger's time, RFC 3339.
    pub time: String,
    /// The clip's id.
    pub clip: String,
    /// The clip (`GET` gives its metadata; `/video.mp4` the file).
    pub url: String,
    /// `trigger` (MQTT, HTTP, the phone's button) or `manual` (record start/stop).
    pub source: crate::clip_meta::ClipSource,
    /// The trigger's label, if it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// Most events one listing gives (the newest).
pub const MAX_EVENTS: usize = 500;

/// `GET /api/cameras/{id}/recordings` answer.
#[derive(Debug, Serialize)]
pub struct Listing {
    /// Camera id.
    pub camera: String,
    /// The range asked, RFC 3339.
    pub from: String,
    /// RFC 3339.
    pub to: String,
    /// Seconds of the range that are recorded.
    pub covered_s: f64,
    /// Recorded bytes in the range's segments.
    pub bytes: u64,
    /// Segments overlapping the range, oldest first.
    pub segments: Vec<SegmentInfo>,
    /// Stretches of the range between segments (and before the first / after the last).
    pub gaps: Vec<Gap>,
    /// The hour playlists covering the range (`YYYY-MM-DD/HH` → URL).
    pub playlists: Vec<String>,
    /// More than [`MAX_LISTED`] segments: the first ones only (ask for a shorter range).
    pub truncated: bool,
    /// Clips triggered in the range (at most [`MAX_EVENTS`], the newest), oldest first.
    pub events: Vec<Event>,
}

fn segment_url(camera: &str, start_ms: i64) -> String {
    format!("/api/cameras/{camera}/recordings/segments/{start_ms}.mp4")
}

fn hour_of(ms: i64) -> i64 {
    ms.div_euclid(3_600_000)
}

fn hour_path(hour: i64) -> String {
    let ts = jiff::Timestamp::from_millisecond(hour * 3_600_000).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    ts.strftime("%Y-%m-%d/%H").to_string()
}

/// The listing of `segs` (a camera's, overlapping `[from, to)`).
pub fn listing(camera: &str, segs: &[SegmentMeta], from: i64, to: i64) -> Listing {
    let truncated = segs.len() > MAX_LISTED;
    let segs = &segs[..segs.len().min(MAX_LISTED)];
    let to = if truncated { segs.last().map_or(to, |s| s.end_ms) } else { to };
    let mut gaps = Vec::new();
    let mut covered = 0i64;
    let mut at = from;
    for s in segs {
        if s.start_ms - at > GAP_MS {
            gaps.push(Gap { start: rfc3339_ms(at), end: rfc3339_ms(s.start_ms), reason: s.gap_before.clone() });
        }
        covered += (s.end_ms.min(to) - s.start_ms.max(from).max(at)).max(0);
        at = at.max(s.end_ms);
    }
    if to - at > GAP_MS && at < crate::time::wall_now_ms() {
        gaps.push(Gap { start: rfc3339_ms(at), end: rfc3339_ms(to), reason: None });
    }
    let mut hours: Vec<i64> = segs.iter().map(|s| hour_of(s.start_ms)).collect();
    hours.dedup();
    Listing {
        camera: camera.into(),
        from: rfc3339_ms(from),
        to: rfc3339_ms(to),
        covered_s: covered.max(0) as f64 / 1000.0,
        bytes: segs.iter().map(|s| s.bytes).sum(),
        segments: segs
            .iter()
            .map(|s| SegmentInfo {
                start: rfc3339_ms(s.start_ms),
                end: rfc3339_ms(s.end_ms),
                duration_s: (s.end_ms - s.start_ms) as f64 / 1000.0,
                bytes: s.bytes,
                frames: s.frames,
                sound: s.sound,
                url: segment_url(camera, s.start_ms),
            })
            .collect(),
        gaps,
        playlists: hours
            .into_iter()
            .map(|h| format!("/api/cameras/{camera}/recordings/{}/playlist.m3u8", hour_path(h)))
            .collect(),
        truncated,
        events: Vec::new(),
    }
}

/// The clips of `camera` triggered in `[from, to)` (event clips and manual recordings; uploads
/// are not the camera's timeline), oldest first.
fn events(index: &crate::index::Index, camera: &str, from: i64, to: i64) -> Result<Vec<Event>, ApiError> {
    // A clip starts up to its pre-roll before its trigger; an hour covers the longest.
    let q = crate::index::ClipQuery {
        camera: Some(camera.into()),
        since: Some(rfc3339_ms(from - 3_600_000)),
        until: Some(rfc3339_ms(to)),
        limit: Some(MAX_EVENTS),
        ..Default::default()
    };
    let page = index.list(&q).map_err(ApiError::from)?;
    let mut out: Vec<Event> = page
        .clips
        .into_iter()
        .filter(|c| c.source != crate::clip_meta::ClipSource::Upload)
        .filter_map(|c| {
            let t = crate::time::parse_rfc3339_ms("trigger_at", &c.trigger_at).ok()?;
            (from..to).contains(&t).then(|| Event {
                time: rfc3339_ms(t),
                url: format!("/api/clips/{}", c.id),
                clip: c.id,
                source: c.source,
                label: c.label,
            })
        })
        .collect();
    out.reverse();
    Ok(out)
}

/// The VOD playlist of the segments that start in one hour: each segment is one media segment
/// (its fragments by byte range) after its own init segment (`EXT-X-MAP` by byte range); a
/// discontinuity where the recording stopped in between.
pub fn hour_playlist(camera: &str, segs: &[SegmentMeta]) -> String {
    let target = segs.iter().map(|s| (s.end_ms - s.start_ms + 999) / 1000).max().unwrap_or(1).max(1);
    let mut out = String::with_capacity(256 + segs.len() * 256);
    let _ = write!(
        out,
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-PLAYLIST-TYPE:VOD\n\
         #EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-INDEPENDENT-SEGMENTS\n"
    );
    let mut prev_end: Option<i64> = None;
    for s in segs {
        let url = segment_url(camera, s.start_ms);
        if prev_end.is_some_and(|e| s.start_ms - e > GAP_MS) || (prev_end.is_some() && s.gap_before.is_some()) {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        let media = s.bytes.saturating_sub(s.init_bytes);
        let _ = write!(
            out,
            "#EXT-X-MAP:URI=\"{url}\",BYTERANGE=\"{}@0\"\n#EXT-X-PROGRAM-DATE-TIME:{}\n#EXTINF:{:.3},\n\
             #EXT-X-BYTERANGE:{media}@{}\n{url}\n",
            s.init_bytes,
            rfc3339_ms(s.start_ms),
            (s.end_ms - s.start_ms) as f64 / 1000.0,
            s.init_bytes
        );
        prev_end = Some(s.end_ms);
    }
    out.push_str("#EXT-X-ENDLIST\n");
    out
}

fn parse_time(name: &str, v: &str) -> Result<i64, ApiError> {
    crate::time::parse_rfc3339_ms(name, v).map_err(ApiError::BadRequest)
}

/// `from`/`to` of a listing query (default: the last 24 hours).
fn range(query: &std::collections::HashMap<String, String>) -> Result<(i64, i64), ApiError> {
    let now = crate::time::wall_now_ms();
    let to = query.get("to").map(|v| parse_time("to", v)).transpose()?.unwrap_or(now);
    let from = query.get("from").map(|v| parse_time("from", v)).transpose()?.unwrap_or(to - 86_400_000);
    if to <= from {
        return Err(ApiError::BadRequest("to must be after from".into()));
    }
    if to - from > MAX_RANGE_DAYS * 86_400_000 {
        return Err(ApiError::BadRequest(format!("at most {MAX_RANGE_DAYS} days at once")));
    }
    Ok((from, to))
}

/// The hour (Unix ms of its start) `YYYY-MM-DD` / `HH` names.
fn parse_hour(day: &str, hour: &str) -> Result<i64, ApiError> {
    let bad = || ApiError::BadRequest(format!("{day}/{hour}: expected YYYY-MM-DD/HH (UTC)"));
    if hour.len() != 2 || !hour.bytes().all(|b| b.is_ascii_digit()) || day.len() != 10 {
        return Err(bad());
    }
    parse_time("hour", &format!("{day}T{hour}:00:00Z")).map_err(|_| bad())
}

/// The recording routes.
pub fn routes(
    st: impl Filter<Extract = (Arc<AppState>,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static,
) -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    let list = warp::path!("api" / "cameras" / String / "recordings")
        .and(warp::get())
        .and(st.clone())
        .and(warp::query::<std::collections::HashMap<String, String>>())
        .and_then(|id: String, s: Arc<AppState>, q: std::collections::HashMap<String, String>| async move {
            s.control.require(&id).map_err(ApiError::from)?;
            let (from, to) = range(&q)?;
            let l = blocking(move || {
                let index = s.index()?;
                let segs = index.segments(&id, from, to, MAX_LISTED + 1).map_err(ApiError::from)?;
                let mut l = listing(&id, &segs, from, to);
                l.events = events(&index, &id, from, to)?;
                Ok(l)
            })
            .await?;
            Ok::<_, Rejection>(json(StatusCode::OK, &l))
        });
    let playlist = warp::path!("api" / "cameras" / String / "recordings" / String / String / "playlist.m3u8")
        .and(warp::get())
        .and(st.clone())
        .and_then(|id: String, day: String, hour: String, s: Arc<AppState>| async move {
            s.control.require(&id).map_err(ApiError::from)?;
            let start = parse_hour(&day, &hour)?;
            let text = blocking(move || {
                // An hour holds at most 1800 segments (segment_s ≥ 2).
                let segs = s.index()?.segments(&id, start, start + 3_600_000, 4000).map_err(ApiError::from)?;
                let segs: Vec<SegmentMeta> =
                    segs.into_iter().filter(|g| hour_of(g.start_ms) == hour_of(start)).collect();
                if segs.is_empty() {
                    return Err(ApiError::NotFound(format!("camera {id} recorded nothing in {day} {hour}:00 UTC")));
                }
                Ok(hour_playlist(&id, &segs))
            })
            .await?;
            Response::builder()
                .header(header::CONTENT_TYPE, "application/vnd.apple.mpegurl")
                .header(header::CACHE_CONTROL, "no-cache")
                .body(warp::hyper::Body::from(text))
                .map_err(|e| warp::reject::custom(ApiError::Internal(e.to_string())))
        });
    let segment = warp::path!("api" / "cameras" / String / "recordings" / "segments" / String)
        .and(warp::get())
        .and(st.clone())
        .and(warp::header::optional::<String>("range"))
        .and_then(|id: String, file: String, s: Arc<AppState>, range: Option<String>| async move {
            s.control.require(&id).map_err(ApiError::from)?;
            let start: i64 = file
                .strip_suffix(".mp4")
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| ApiError::BadRequest("segments are named {start_ms}.mp4".into()))?;
            let s2 = s.clone();
            let seg = blocking(move || {
                let segs = s2.index()?.segments(&id, start, start + 1, 4).map_err(ApiError::from)?;
                segs.into_iter()
                    .find(|g| g.start_ms == start)
                    .ok_or_else(|| ApiError::NotFound("no such segment".into()))
            })
            .await?;
            let path = s
                .store
                .storage
                .abs(&seg.path)
                .ok_or_else(|| ApiError::Internal("segment path outside storage".into()))?;
            file_reply(path, "video/mp4", range).await
        });
    list.or(playlist).unify().or(segment).unify().boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(start_ms: i64, len: i64, gap: Option<&str>) -> SegmentMeta {
        SegmentMeta {
            camera: "cam0".into(),
            start_ms,
            end_ms: start_ms + len,
            path: crate::segment_meta::segment_rel_path("cam0", start_ms),
            bytes: 100_000,
            init_bytes: 700,
            frames: 300,
            sound: false,
            gap_before: gap.map(str::to_string),
        }
    }

    #[test]
    fn playlists_list_segments_by_byte_range_with_discontinuities_at_gaps() {
        let h = 1_796_598_000_000; // 2026-12-06T23:00:00Z
        let segs = [
            seg(h + 1000, 10_000, Some("recording started")),
            seg(h + 11_000, 10_000, None),
            seg(h + 40_000, 9_500, Some("camera failed")),
        ];
        let pl = hour_playlist("cam0", &segs);
        assert!(
            pl.starts_with("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:10\n#EXT-X-PLAYLIST-TYPE:VOD\n"),
            "{pl}"
        );
        assert!(pl.ends_with("#EXT-X-ENDLIST\n"));
        assert_eq!(pl.matches("#EXT-X-DISCONTINUITY").count(), 1, "only at the gap: {pl}");
        assert_eq!(pl.matches("#EXT-X-BYTERANGE:99300@700").count(), 3);
        assert!(pl.contains(
            "#EXT-X-MAP:URI=\"/api/cameras/cam0/recordings/segments/1796598011000.mp4\",BYTERANGE=\"700@0\""
        ));
        assert!(pl.contains("#EXT-X-PROGRAM-DATE-TIME:2026-12-06T23:00:01.000Z\n#EXTINF:10.000,\n"));
        let l = listing("cam0", &segs, h, h + 60_000);
        assert_eq!(l.covered_s, 29.5);
        let gaps: Vec<_> = l.gaps.iter().map(|g| (g.start.as_str(), g.reason.as_deref())).collect();
        assert_eq!(
            gaps,
            [
                ("2026-12-06T23:00:00.000Z", Some("recording started")),
                ("2026-12-06T23:00:21.000Z", Some("camera failed")),
                ("2026-12-06T23:00:49.500Z", None)
            ]
        );
        assert_eq!(l.playlists, ["/api/cameras/cam0/recordings/2026-12-06/23/playlist.m3u8"]);
        assert!(parse_hour("2026-12-06", "24").is_err() && parse_hour("2026-12-6", "01").is_err());
        assert_eq!(parse_hour("2026-12-06", "23").ok(), Some(h));
    }
}
