//! The one task that owns every WebRTC session, the UDP socket and each watched camera's
//! current GOP: commands from the handle, access units from the feeders, datagrams and timers
//! in; datagrams out.
//!
//! Must never wait on anything but its inputs (one `select!`), and never keep a camera's
//! feeder running without a viewer.

use super::net::{host_addresses, Udp};
use super::opus::OpusEncoder;
use super::session::Session;
use super::{Answer, CameraFeed, Command, Settings, StartAt, Unit, WhepError};
use crate::frame::AudioFrame;
use crate::mp4::h264::SpsInfo;
use crate::preroll::{Followed, Lookup};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::config::DtlsCert;
use str0m::net::{Protocol, Receive};
use str0m::Input;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Sessions over all cameras at once (each camera also has `webrtc_max_viewers`).
const MAX_SESSIONS: usize = 64;
/// A GOP longer than this many access units is not kept whole (new viewers wait for the next
/// keyframe instead): 20 s at 30 fps.
const MAX_GOP_UNITS: usize = 600;
/// Keyframe requests to a camera at most this often (every viewer's PLI would ask)...
const KEYFRAME_REQUEST_EVERY: Duration = Duration::from_secs(1);
/// ... or this often for a viewer that starts at the next keyframe (it would otherwise wait a
/// GOP behind a request another viewer's PLI made).
const START_KEYFRAME_EVERY: Duration = Duration::from_millis(250);
/// The longest the loop sleeps while sessions run (the setup deadline is checked then).
const MAX_SLEEP: Duration = Duration::from_millis(500);
/// The loop's sleep without a session.
const IDLE_SLEEP: Duration = Duration::from_secs(3600);

/// What a camera's feeder sends.
enum Fed {
    Frame {
        camera: Arc<str>,
        generation: u64,
        unit: (Arc<[u8]>, Duration, bool),
    },
    Lagged {
        camera: Arc<str>,
        generation: u64,
    },
    /// 20 ms of the camera's sound as Opus, captured at the time given.
    Sound {
        camera: Arc<str>,
        generation: u64,
        opus: Bytes,
        at: Duration,
    },
}

/// A watched camera.
struct Feed {
    feed: CameraFeed,
    generation: u64,
    gop: VecDeque<Arc<Unit>>,
    next_index: u64,
    task: JoinHandle<()>,
    last_keyframe_request: Option<Instant>,
    /// Whether a viewer takes sound (the feeder transcodes only then).
    sound: Arc<AtomicBool>,
}

struct State {
    udp: Udp,
    cert: DtlsCert,
    settings: Settings,
    sessions: Vec<Session>,
    feeds: HashMap<Arc<str>, Feed>,
    /// Remote address → session id, learnt from the first datagram `accepts` matched.
    routes: HashMap<SocketAddr, String>,
    fed: mpsc::Sender<Fed>,
    generation: u64,
    /// Sessions that ended lately (camera, id): a DELETE after the viewer closed is answered
    /// as done, not 404.
    ended: VecDeque<(Arc<str>, String)>,
}

pub(super) async fn run(udp: Udp, cert: DtlsCert, settings: Settings, mut commands: mpsc::Receiver<Command>) {
    let (fed, mut units) = mpsc::channel(256);
    let mut st = State {
        udp,
        cert,
        settings,
        sessions: Vec::new(),
        feeds: HashMap::new(),
        routes: HashMap::new(),
        fed,
        generation: 0,
        ended: VecDeque::new(),
    };
    let mut buf = vec![0u8; 2048];
    loop {
        let now = Instant::now();
        // No session: nothing to time (an idle daemon does not wake for WebRTC).
        let wake = match st.sessions.iter().map(|s| s.wake).min() {
            Some(w) => w.min(now + MAX_SLEEP),
            None => now + IDLE_SLEEP,
        };
        tokio::select! {
            c = commands.recv() => match c {
                Some(Command::Shutdown { reply }) => {
                    st.close_all("the daemon is stopping");
                    let _ = reply.send(());
                    break;
                }
                Some(c) => st.command(c),
                None => {
                    st.close_all("the daemon is stopping");
                    break;
                }
            },
            Some(f) = units.recv() => st.fed(f),
            r = st.udp.readable() => match r {
                Ok(()) => st.read(&mut buf),
                Err(e) => log::warn!("webrtc: UDP socket: {e}"),
            },
            _ = tokio::time::sleep_until(wake.into()) => st.tick(),
        }
        st.reap();
    }
}

impl State {
    fn command(&mut self, c: Command) {
        match c {
            Command::Offer { feed, sdp, start, reply } => {
                let _ = reply.send(self.offer(feed, &sdp, start));
            }
            Command::Close { camera, session, reply } => {
                let now = Instant::now();
                let found =
                    self.sessions.iter_mut().find(|s| s.id == session && s.camera == camera && s.ended.is_none());
                let r = match found {
                    Some(s) => {
                        s.close(&self.udp, now, "ended by the viewer (DELETE)");
                        Ok(())
                    }
                    None if self.ended.iter().any(|(c, id)| *c == camera && *id == session) => Ok(()),
                    None => Err(WhepError::NotFound(format!("no WebRTC session {session:?} of camera {camera:?}"))),
                };
                let _ = reply.send(r);
            }
            Command::Shutdown { .. } => {}
        }
    }

    fn offer(&mut self, feed: CameraFeed, sdp: &str, start: StartAt) -> Result<Answer, WhepError> {
        let max = self.settings.max_viewers;
        let watching = self.sessions.iter().filter(|s| s.camera == feed.id && s.ended.is_none()).count();
        if watching >= max {
            return Err(WhepError::Unavailable(format!(
                "{watching} WebRTC viewers already watch camera {:?} (http.webrtc_max_viewers = {max}); use HLS",
                feed.id
            )));
        }
        if self.sessions.len() >= MAX_SESSIONS {
            return Err(WhepError::Unavailable(format!("{MAX_SESSIONS} WebRTC sessions already run; use HLS")));
        }
        let sps = newest_sps(&feed).ok_or_else(|| {
            WhepError::Unavailable(format!("camera {:?} has no picture yet; try again in a moment", feed.id))
        })?;
        let addrs = host_addresses(&self.settings.addresses);
        if addrs.is_empty() {
            return Err(WhepError::Unavailable("no network address to offer (no interface is up)".into()));
        }
        let start = match start {
            StartAt::Auto if feed.status.encoder() == "passthrough" => StartAt::Newest,
            StartAt::Auto => StartAt::Next,
            s => s,
        };
        let id = session_id();
        let now = Instant::now();
        let (session, sdp) =
            Session::new(id.clone(), feed.id.clone(), sdp, sps, start, &self.cert, &addrs, self.udp.port(), now)?;
        log::info!(
            "webrtc: camera {} viewer {id} answered: H.264 {} ({:06x}), {} address(es) on port {}",
            feed.id,
            sps.profile(),
            session.profile_level_id,
            addrs.len(),
            self.udp.port()
        );
        self.sessions.push(session);
        self.watch(feed);
        Ok(Answer { session: id, sdp })
    }

    /// Start following a camera's pre-roll (once, for its first viewer).
    fn watch(&mut self, feed: CameraFeed) {
        if !self.feeds.contains_key(&feed.id) {
            self.generation += 1;
            let generation = self.generation;
            let sound = Arc::new(AtomicBool::new(false));
            let task = tokio::spawn(follow(feed.clone(), generation, self.fed.clone(), sound.clone()));
            let f = Feed {
                feed,
                generation,
                gop: VecDeque::new(),
                next_index: 0,
                task,
                last_keyframe_request: None,
                sound,
            };
            self.feeds.insert(f.feed.id.clone(), f);
        }
        self.count_viewers();
    }

    fn fed(&mut self, f: Fed) {
        let now = Instant::now();
        let (camera, generation) = match &f {
            Fed::Frame { camera, generation, .. } | Fed::Lagged { camera, generation } => (camera.clone(), *generation),
            Fed::Sound { camera, generation, .. } => (camera.clone(), *generation),
        };
        let Some(feed) = self.feeds.get_mut(&camera).filter(|c| c.generation == generation) else { return };
        match f {
            Fed::Lagged { .. } => {
                feed.gop.clear();
                for s in self.sessions.iter_mut().filter(|s| s.camera == camera) {
                    s.lost_frames();
                }
            }
            Fed::Sound { opus, at, .. } => {
                let opus: Arc<[u8]> = Arc::from(&opus[..]);
                for s in self.sessions.iter_mut().filter(|s| s.camera == camera) {
                    s.write_sound(&self.udp, &opus, at, now);
                }
            }
            Fed::Frame { unit: (data, pts, keyframe), .. } => {
                if keyframe || feed.gop.len() >= MAX_GOP_UNITS {
                    feed.gop.clear();
                }
                if feed.gop.is_empty() && !keyframe {
                    return;
                }
                let index = feed.next_index;
                feed.next_index += 1;
                feed.gop.push_back(Arc::new(Unit { index, data, pts, keyframe }));
                for s in self.sessions.iter_mut().filter(|s| s.camera == camera) {
                    s.write(&self.udp, &feed.gop, now);
                }
                self.keyframe_requests(now);
            }
        }
    }

    /// Read every datagram waiting and hand each to its session.
    fn read(&mut self, buf: &mut [u8]) {
        let now = Instant::now();
        loop {
            let r = match self.udp.try_recv(buf) {
                Ok(r) => r,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    // The next readable event tries again; never spin on an error here.
                    log::debug!("webrtc: receive: {e}");
                    break;
                }
            };
            let data = &buf[..r.len];
            let Ok(recv) = Receive::new(Protocol::Udp, r.source, r.destination, data) else { continue };
            let input = Input::Receive(now, recv);
            let known = self.routes.get(&r.source).and_then(|id| self.sessions.iter().position(|s| &s.id == id));
            let at = match known.filter(|&i| self.sessions[i].accepts(&input)) {
                Some(i) => Some(i),
                None => self.sessions.iter().position(|s| s.accepts(&input)),
            };
            let Some(i) = at else { continue };
            self.routes.insert(r.source, self.sessions[i].id.clone());
            let s = &mut self.sessions[i];
            s.receive(&self.udp, now, r.source, r.destination, data);
            if s.just_connected {
                log::info!("webrtc: camera {} viewer {} connected from {}", s.camera, s.id, r.source);
                if let Some(feed) = self.feeds.get(&s.camera) {
                    s.write(&self.udp, &feed.gop, now);
                }
            }
        }
        self.keyframe_requests(now);
    }

    fn tick(&mut self) {
        let now = Instant::now();
        for s in self.sessions.iter_mut().filter(|s| s.due(now)) {
            s.tick(&self.udp, now);
        }
        self.keyframe_requests(now);
    }

    /// Ask cameras for the keyframes their viewers want (at most once a second each).
    fn keyframe_requests(&mut self, now: Instant) {
        for s in self.sessions.iter_mut().filter(|s| s.wants_keyframe) {
            s.wants_keyframe = false;
            let every = if std::mem::take(&mut s.starting) { START_KEYFRAME_EVERY } else { KEYFRAME_REQUEST_EVERY };
            if let Some(feed) = self.feeds.get_mut(&s.camera) {
                if feed.last_keyframe_request.is_none_or(|t| now.duration_since(t) >= every) {
                    feed.last_keyframe_request = Some(now);
                    feed.feed.status.request_keyframe();
                }
            }
        }
    }

    /// Drop the sessions that ended, and the feeds nobody watches.
    fn reap(&mut self) {
        if self.sessions.iter().all(|s| s.ended.is_none()) {
            return;
        }
        let ended = &mut self.ended;
        self.sessions.retain(|s| {
            if let Some(why) = s.ended {
                ended.push_back((s.camera.clone(), s.id.clone()));
                if ended.len() > 64 {
                    ended.pop_front();
                }
                log::info!(
                    "webrtc: camera {} viewer {} ended: {why} ({} frames sent, {} datagrams dropped)",
                    s.camera,
                    s.id,
                    s.frames,
                    s.send_drops
                );
            }
            s.ended.is_none()
        });
        let live: Vec<&str> = self.sessions.iter().map(|s| s.id.as_str()).collect();
        self.routes.retain(|_, id| live.contains(&id.as_str()));
        let sessions = &self.sessions;
        self.feeds.retain(|cam, f| {
            let watched = sessions.iter().any(|s| &s.camera == cam);
            if !watched {
                f.task.abort();
                f.feed.status.webrtc_viewers.store(0, Ordering::Relaxed);
            }
            watched
        });
        self.count_viewers();
    }

    fn count_viewers(&self) {
        for (cam, f) in &self.feeds {
            let watching = || self.sessions.iter().filter(|s| &s.camera == cam && s.ended.is_none());
            f.feed.status.webrtc_viewers.store(watching().count(), Ordering::Relaxed);
            f.sound.store(watching().any(|s| s.wants_sound()), Ordering::Relaxed);
        }
    }

    fn close_all(&mut self, why: &'static str) {
        let now = Instant::now();
        for s in &mut self.sessions {
            s.close(&self.udp, now, why);
        }
        self.reap();
    }
}

/// The SPS of the newest keyframe the camera holds.
fn newest_sps(feed: &CameraFeed) -> Option<SpsInfo> {
    let p = feed.preroll.lock();
    match p.get(p.newest_keyframe()?) {
        Lookup::Frame(f) => SpsInfo::of(&f.data),
        _ => None,
    }
}

/// 128 random bits as hex: a session's URL cannot be guessed.
fn session_id() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        // Unreachable on Linux (getrandom); a session id is not a secret the API relies on
        // alone (the routes need a login too).
        b = crate::time::mono_now().as_nanos().to_le_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A camera's feeder: from the newest keyframe held, every access unit, copied once; and,
/// while a viewer takes sound, the camera's AAC transcoded to Opus.
async fn follow(feed: CameraFeed, generation: u64, tx: mpsc::Sender<Fed>, sound: Arc<AtomicBool>) {
    let mut f = feed.preroll.follow_from_time(Duration::MAX).with_audio();
    let camera = feed.id.clone();
    let mut opus: Option<OpusEncoder> = None;
    let mut no_opus = false;
    loop {
        let msg = match f.next().await {
            Followed::Frame(fr) => {
                Fed::Frame { camera: camera.clone(), generation, unit: (Arc::from(&fr.data[..]), fr.pts, fr.keyframe) }
            }
            Followed::Lagged { .. } => Fed::Lagged { camera: camera.clone(), generation },
            Followed::Audio(a) => {
                if !sound.load(Ordering::Relaxed) || no_opus {
                    opus = None;
                    continue;
                }
                if opus.as_ref().is_none_or(|o| o.format.config != a.format.config) {
                    opus = start_opus(&camera, generation, &a, tx.clone()).await;
                    no_opus = opus.is_none();
                }
                if let Some(o) = &opus {
                    o.push(&a);
                }
                continue;
            }
            Followed::Timeout => return,
        };
        if tx.send(msg).await.is_err() {
            return;
        }
    }
}

/// The camera's transcoder to Opus, started off the runtime; `None` (logged) when this system
/// cannot (no AAC decoder or Opus encoder): viewers then get the picture alone.
async fn start_opus(
    camera: &Arc<str>,
    generation: u64,
    first: &AudioFrame,
    tx: mpsc::Sender<Fed>,
) -> Option<OpusEncoder> {
    let (format, base, cam) = (first.format.clone(), first.pts, camera.clone());
    let made = tokio::task::spawn_blocking(move || {
        OpusEncoder::new(format, base, move |opus, at| {
            // From GStreamer's thread: a full channel drops 20 ms of sound, never blocks.
            let _ = tx.try_send(Fed::Sound { camera: cam.clone(), generation, opus, at });
        })
    })
    .await;
    match made {
        Ok(Ok(o)) => Some(o),
        Ok(Err(e)) => {
            log::warn!("webrtc: camera {camera}: no sound for WebRTC viewers: {e}");
            None
        }
        Err(_) => None,
    }
}
