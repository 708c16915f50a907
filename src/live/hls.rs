//! Live HLS of one camera: a packager task that follows the pre-roll buffer and cuts its
//! encoded frames into an LL-HLS window in RAM ([`super::hls_cutter`] into
//! [`super::hls_playlist::PlaylistWindow`]), and the waits that blocking playlist reloads
//! (`_HLS_msn`/`_HLS_part`) and preload-hinted parts need.
//!
//! The packager starts on the first request and stops after [`IDLE_STOP`] without one, freeing
//! its window: nobody watching costs nothing. It starts a few GOPs back in the pre-roll so the
//! first playlist already holds complete segments. Media sequence numbers continue across
//! packager sessions and start from the wall-clock second at daemon start, so a URI never
//! names two different segments (segments and parts are cached as immutable).
//!
//! Owns the HLS session state of one camera. Must never encode (the frames are the camera's
//! H.264), write to storage, block the async runtime (the lock is held only to cut or read a
//! few kilobytes), or wait without a deadline.

use super::hls_cutter::{CutConfig, Cutter};
use super::hls_playlist::{Fetch, PlaylistWindow, Readiness};
use crate::preroll::{Followed, PreRoll};
use crate::status::CameraStatus;
use bytes::Bytes;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// The packager stops this long after the last request.
pub const IDLE_STOP: Duration = Duration::from_secs(30);
/// A client counts as watching for this long after its last request.
pub const CLIENT_WINDOW: Duration = Duration::from_secs(10);
/// Complete segments kept in the window.
const MAX_SEGMENTS: usize = 6;
/// Bytes of complete segments kept (the newest one always stays).
const MAX_BYTES: usize = 24 << 20;
/// Client addresses remembered for the viewer count.
const MAX_CLIENTS: usize = 256;
/// How many keyframe intervals back in the pre-roll a new session starts.
const BACKFILL_GOPS: u32 = 3;

/// Why an HLS request cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum HlsError {
    /// The request asks for something it may not (too far ahead, `_HLS_part` alone).
    #[error("{0}")]
    BadRequest(String),
    /// No such segment or part (never was, or slid out of the window).
    #[error("{0}")]
    NotFound(String),
    /// Nothing to answer with within the wait limit (camera not delivering video).
    #[error("{0}")]
    Unavailable(String),
}

/// The live HLS stream of one camera.
pub struct Hls {
    shared: Arc<Shared>,
}

struct Shared {
    camera: String,
    preroll: Arc<PreRoll>,
    status: Arc<CameraStatus>,
    /// `keyframe_interval_s` from the config (what hindsight's own encoder is set to).
    configured_interval: Duration,
    state: Mutex<State>,
    /// Bumped whenever the window changes (or the packager stops).
    changed: watch::Sender<u64>,
}

struct State {
    /// `Some` while a packager runs.
    window: Option<PlaylistWindow>,
    last_request: Instant,
    clients: HashMap<IpAddr, Instant>,
    next_msn: u64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The keyframe interval segments are cut at: the configured one, or the GOP measured on
    /// the stream when longer (a passed-through camera keeps its own GOP whatever the config
    /// says; a target duration below it would leave frames out between segments).
    fn keyframe_interval(&self) -> Duration {
        let measured = self.status.stream().gop_s.and_then(|g| Duration::try_from_secs_f64(g).ok());
        measured.map_or(self.configured_interval, |m| m.max(self.configured_interval))
    }
}

impl Hls {
    /// The stream of camera `camera`, read from `preroll`; nothing runs until a request.
    pub fn new(camera: &str, preroll: Arc<PreRoll>, status: Arc<CameraStatus>, keyframe_interval_s: f64) -> Self {
        let first_msn = u64::try_from(crate::time::wall_now_ms() / 1000).unwrap_or(0);
        Hls {
            shared: Arc::new(Shared {
                camera: camera.to_string(),
                preroll,
                status,
                configured_interval: Duration::try_from_secs_f64(keyframe_interval_s).unwrap_or(Duration::from_secs(1)),
                state: Mutex::new(State {
                    window: None,
                    last_request: Instant::now(),
                    clients: HashMap::new(),
                    next_msn: first_msn,
                }),
                changed: watch::channel(0).0,
            }),
        }
    }

    /// Whether a packager is running.
    pub fn active(&self) -> bool {
        self.shared.lock().window.is_some()
    }

    /// Distinct client addresses with a request in the last [`CLIENT_WINDOW`].
    pub fn clients(&self) -> usize {
        let now = Instant::now();
        self.shared.lock().clients.values().filter(|t| now.duration_since(**t) < CLIENT_WINDOW).count()
    }

    /// How long a request waits for a part, a segment or a playlist update: three target
    /// durations (at least 3 s).
    pub fn wait_limit(&self) -> Duration {
        let target = self.shared.keyframe_interval().as_secs_f64().ceil().max(1.0);
        Duration::from_secs_f64(3.0 * target)
    }

    /// Note a request from `client` and start the packager if it is not running.
    fn touch(&self, client: Option<IpAddr>) {
        let now = Instant::now();
        let mut st = self.shared.lock();
        st.last_request = now;
        if let Some(ip) = client {
            if st.clients.len() >= MAX_CLIENTS && !st.clients.contains_key(&ip) {
                st.clients.retain(|_, t| now.duration_since(*t) < CLIENT_WINDOW);
            }
            if st.clients.len() < MAX_CLIENTS || st.clients.contains_key(&ip) {
                st.clients.insert(ip, now);
            }
        }
        if st.window.is_some() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        let fps = self.shared.status.format().map_or(0, |f| f.fps);
        let cfg = CutConfig::new(self.shared.keyframe_interval().as_secs_f64(), fps);
        st.window = Some(PlaylistWindow::new(cfg.window(MAX_SEGMENTS, MAX_BYTES), st.next_msn));
        log::info!("HLS {}: packager started (first segment {})", self.shared.camera, st.next_msn);
        rt.spawn(package(self.shared.clone(), cfg));
    }

    /// Wait (at most [`Hls::wait_limit`]) until `check` answers from the window.
    async fn wait<T>(
        &self,
        mut check: impl FnMut(&PlaylistWindow) -> Option<Result<T, HlsError>>,
    ) -> Result<T, HlsError> {
        let mut rx = self.shared.changed.subscribe();
        let limit = self.wait_limit();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            {
                let st = self.shared.lock();
                let Some(w) = st.window.as_ref() else {
                    return Err(HlsError::Unavailable(format!("camera {}: HLS packager stopped", self.shared.camera)));
                };
                if let Some(r) = check(w) {
                    return r;
                }
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => {
                    return Err(HlsError::Unavailable(format!(
                        "camera {}: no video within {} s (is the camera running?)",
                        self.shared.camera,
                        limit.as_secs()
                    )))
                }
            }
        }
    }

    /// The media playlist; with `msn` (and `part`), once it holds that segment (part) or later.
    pub async fn playlist(
        &self,
        client: Option<IpAddr>,
        msn: Option<u64>,
        part: Option<u64>,
    ) -> Result<String, HlsError> {
        if part.is_some() && msn.is_none() {
            return Err(HlsError::BadRequest("_HLS_part needs _HLS_msn".into()));
        }
        self.touch(client);
        self.wait(|w| match msn {
            None => w.playlist().map(Ok),
            Some(m) => match w.readiness(m, part) {
                Readiness::Ready => w.playlist().map(Ok),
                Readiness::Wait => None,
                Readiness::TooFar(why) => Some(Err(HlsError::BadRequest(why))),
            },
        })
        .await
    }

    /// The init segment (`version` as in `init.mp4?v=N`; the newest when `None`).
    pub async fn init(&self, client: Option<IpAddr>, version: Option<u32>) -> Result<Bytes, HlsError> {
        self.touch(client);
        self.wait(|w| match (w.init(version), w.init(None)) {
            (Some(b), _) => Some(Ok(b)),
            (None, Some(_)) => {
                Some(Err(HlsError::NotFound(format!("no init segment version {}", version.unwrap_or(0)))))
            }
            (None, None) => None,
        })
        .await
    }

    /// Part `idx` of segment `msn`, waiting while it is being produced.
    pub async fn part(&self, client: Option<IpAddr>, msn: u64, idx: u64) -> Result<Bytes, HlsError> {
        self.touch(client);
        self.wait(|w| fetched(w.part(msn, idx), || format!("part {msn}.{idx}"))).await
    }

    /// Segment `msn`, waiting while it is the open one.
    pub async fn segment(&self, client: Option<IpAddr>, msn: u64) -> Result<Bytes, HlsError> {
        self.touch(client);
        self.wait(|w| fetched(w.segment(msn), || format!("segment {msn}"))).await
    }
}

fn fetched(f: Fetch, what: impl FnOnce() -> String) -> Option<Result<Bytes, HlsError>> {
    match f {
        Fetch::Ready(b) => Some(Ok(b)),
        Fetch::Pending => None,
        Fetch::Gone => Some(Err(HlsError::NotFound(format!("{} has left the live window", what())))),
        Fetch::Unknown => Some(Err(HlsError::NotFound(format!("no {} in the live window", what())))),
    }
}

/// The packager of one session: follow the pre-roll, cut, publish; stop when idle.
async fn package(shared: Arc<Shared>, cfg: CutConfig) {
    let (width, height) = shared.status.format().map_or((0, 0), |f| (f.width, f.height));
    let mut cutter = Cutter::new(cfg, width, height);
    // A microphone that is delivering now: the first init segment has its track (a track
    // that never gets sound would stall players waiting for it).
    if let Some(f) = shared.status.audio.format().filter(|_| shared.status.audio.live(Duration::from_secs(3))) {
        cutter.hear(&f);
    }
    let newest = shared.preroll.lock().iter().last().map(|f| f.pts);
    let mut follower = match newest {
        // Sound that left its encoder up to a second before the keyframe may play after it.
        Some(t) => shared
            .preroll
            .follow_av_from_time(t.saturating_sub(shared.keyframe_interval() * BACKFILL_GOPS), Duration::from_secs(1)),
        None => shared.preroll.follow_live().with_audio(),
    };
    let mut idle = tokio::time::interval(Duration::from_secs(1));
    idle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            next = follower.next() => {
                let mut st = shared.lock();
                if matches!(next, Followed::Timeout) {
                    // The buffer is gone (camera dropped).
                    stop(&shared, &mut st);
                    break;
                }
                let Some(w) = st.window.as_mut() else { break };
                let before = w.changes();
                match next {
                    Followed::Frame(f) => cutter.push(f, w, &crate::time::wall_ms),
                    Followed::Audio(a) => cutter.push_audio(a),
                    Followed::Lagged { skipped } => {
                        log::warn!("HLS {}: packager fell behind, skipped {skipped} frames", shared.camera);
                        cutter.gap(w);
                    }
                    Followed::Timeout => {}
                }
                let changed = w.changes() != before;
                drop(st);
                if changed {
                    shared.changed.send_modify(|v| *v = v.wrapping_add(1));
                }
            }
            _ = idle.tick() => {
                let mut st = shared.lock();
                let now = Instant::now();
                st.clients.retain(|_, t| now.duration_since(*t) < CLIENT_WINDOW);
                if now.duration_since(st.last_request) >= IDLE_STOP {
                    stop(&shared, &mut st);
                    break;
                }
            }
        }
    }
    shared.changed.send_modify(|v| *v = v.wrapping_add(1));
}

/// End the session: keep the numbering, free the window.
fn stop(shared: &Shared, st: &mut State) {
    if let Some(w) = st.window.take() {
        st.next_msn = w.next_msn();
        log::info!("HLS {}: packager stopped (no request for {} s)", shared.camera, IDLE_STOP.as_secs());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::EncodedFrame;

    fn frame(i: u64) -> EncodedFrame {
        let mut data = vec![0, 0, 0, 1, 0x67, 0x4d, 0x40, 0x1e, 0x96, 0, 0, 0, 1, 0x68, 0xee, 0x3c, 0x80];
        data.extend([0, 0, 0, 1, if i.is_multiple_of(30) { 0x65 } else { 0x41 }, 0x88]);
        let pts = Duration::from_secs(100) + Duration::from_nanos(i * 33_333_333);
        EncodedFrame {
            data: Bytes::from(data),
            pts,
            dts: pts,
            duration: Duration::from_nanos(33_333_333),
            keyframe: i.is_multiple_of(30),
            seq: i,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn starts_on_request_answers_blocking_reloads_and_stops_when_idle() {
        let preroll = Arc::new(PreRoll::new(Duration::from_secs(10), 1 << 24));
        let hls = Arc::new(Hls::new("cam0", preroll.clone(), Arc::new(CameraStatus::default()), 1.0));
        for i in 0..100 {
            preroll.push(frame(i));
        }
        assert!(!hls.active());
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        // Backfill: the first playlist holds complete segments at once.
        let pl = hls.playlist(Some(ip), None, None).await.unwrap();
        assert!(hls.active());
        assert_eq!(hls.clients(), 1);
        assert!(pl.contains("#EXTINF:"), "{pl}");
        let hint = pl.lines().last().unwrap().to_string();
        let (m, p) = hint.split("URI=\"part").nth(1).unwrap().trim_end_matches(".m4s\"").split_once('.').unwrap();
        let (m, p): (u64, u64) = (m.parse().unwrap(), p.parse().unwrap());
        // A blocking reload for the hinted part waits until frames make it.
        let h2 = hls.clone();
        let waiting = tokio::spawn(async move { h2.playlist(None, Some(m), Some(p)).await });
        let part = {
            let h3 = hls.clone();
            tokio::spawn(async move { h3.part(None, m, p).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiting.is_finished() && !part.is_finished());
        for i in 100..110 {
            preroll.push(frame(i));
        }
        let pl2 = waiting.await.unwrap().unwrap();
        assert!(pl2.contains(&format!("URI=\"part{m}.{p}.m4s\"")), "{pl2}");
        assert!(part.await.unwrap().unwrap().len() > 8);
        assert!(matches!(hls.playlist(None, Some(m + 3), Some(0)).await, Err(HlsError::BadRequest(_))));
        assert!(matches!(hls.playlist(None, None, Some(0)).await, Err(HlsError::BadRequest(_))));
        assert!(matches!(hls.segment(None, 1).await, Err(HlsError::NotFound(_))));
        // Nothing new: a blocked request gives up after the wait limit.
        let r = hls.playlist(None, Some(m + 1), Some(0)).await;
        assert!(matches!(r, Err(HlsError::Unavailable(_))), "{r:?}");
        // Idle: the packager stops and frees its window; numbering continues next time.
        let next = { hls.shared.lock().window.as_ref().unwrap().next_msn() };
        tokio::time::sleep(IDLE_STOP + Duration::from_secs(2)).await;
        assert!(!hls.active());
        assert_eq!(hls.clients(), 0);
        let pl3 = hls.playlist(None, None, None).await.unwrap();
        assert!(pl3.contains(&format!("#EXT-X-MEDIA-SEQUENCE:{next}\n")), "{pl3}");
    }
}
