//! One WHEP viewer: a str0m `Rtc` (ICE-lite, passive DTLS) answering the browser's offer with
//! the camera's own H.264 profile, and the access units it writes from the camera's current GOP.
//!
//! Sans-IO: every method is one mutation of the `Rtc` followed by draining its output to the
//! next timeout (str0m's rule); datagrams go out through [`Udp::try_send`]. Nothing here waits.
//!
//! Must never write a frame the browser cannot decode: a viewer starts at a keyframe and, after
//! a PLI/FIR or falling behind, skips to the next one.

use super::net::Udp;
use super::{StartAt, Unit, WhepError};
use crate::mp4::h264::SpsInfo;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::change::SdpOffer;
use str0m::config::DtlsCert;
use str0m::format::Codec;
use str0m::media::{Frequency, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::Extension;
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

/// A session that is not connected this long after its answer is ended (UDP blocked, an
/// address the browser cannot reach).
pub const SETUP_DEADLINE: Duration = Duration::from_secs(15);

/// Sound older than this when it could be sent is dropped (see [`Session::write_sound`]).
const STALE_SOUND: Duration = Duration::from_millis(250);

/// The playout-delay header extension's id in our offer map (str0m maps it to the browser's).
const PLAYOUT_DELAY_EXT: u8 = 5;

/// The RTP payload type str0m answers for H.264 with packetization-mode 1, and its RTX one (the
/// answer takes the browser's numbers for a recvonly offer).
const H264_PT: u8 = 96;
const H264_RTX_PT: u8 = 97;

/// What the camera sends, for the answer: H.264 `profile-level-id` from its SPS.
pub fn profile_level_id(sps: &SpsInfo) -> Option<u32> {
    // The profile as RFC 6184 table 5 classifies it; str0m matches the browser's on it.
    let profile_iop: u32 = match (sps.profile_idc, sps.constrained) {
        (66, true) => 0x42e0,
        (66, false) => 0x4200,
        (77, _) => 0x4d00,
        (100, _) => 0x6400,
        _ => return None,
    };
    Some(profile_iop << 8 | u32::from(sps.level_idc))
}

/// Why a session ended (for the log).
pub type EndReason = &'static str;

/// One viewer.
pub struct Session {
    /// The resource id in the session's URL.
    pub id: String,
    /// Its camera.
    pub camera: Arc<str>,
    rtc: Rtc,
    mid: Mid,
    pt: Pt,
    /// The audio m-line and Opus payload, when the browser asked for sound.
    audio: Option<(Mid, Pt)>,
    created: Instant,
    start: StartAt,
    /// Whether ICE, DTLS and SRTP are up (writes before it are dropped).
    connected: bool,
    /// The next unit to write; `None` before the first.
    next: Option<u64>,
    /// Write nothing until a keyframe.
    wait_key: bool,
    /// The next time str0m wants a timeout input.
    pub wake: Instant,
    /// Set once the session is over; it is dropped by the server.
    pub ended: Option<EndReason>,
    /// Things the server acts on after a call: the camera should make a keyframe.
    pub wants_keyframe: bool,
    /// The keyframe wanted is the one this viewer starts at (asked for sooner than a PLI's).
    pub starting: bool,
    /// The session just connected (the server hands it the current GOP).
    pub just_connected: bool,
    /// The H.264 `profile-level-id` answered.
    pub profile_level_id: u32,
    /// Access units written.
    pub frames: u64,
    /// Datagrams the socket refused (full buffer).
    pub send_drops: u64,
}

impl Session {
    /// A session answering `offer` (SDP text) for a camera whose newest keyframe carries `sps`.
    /// The answer announces `addrs` on `port`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: String,
        camera: Arc<str>,
        offer: &str,
        sps: SpsInfo,
        start: StartAt,
        cert: &DtlsCert,
        addrs: &[IpAddr],
        port: u16,
        now: Instant,
    ) -> Result<(Session, String), WhepError> {
        let offer = one_stream(offer, &format!("hindsight-{camera}"));
        let offer = SdpOffer::from_sdp_string(&offer)
            .map_err(|e| WhepError::BadOffer(format!("not an SDP offer: {}", parse_error(&e))))?;
        let plid = profile_level_id(&sps).ok_or_else(|| {
            WhepError::NoCodec(format!(
                "the camera sends H.264 {} (profile_idc {}), which WebRTC browsers do not decode; use HLS",
                sps.profile(),
                sps.profile_idc
            ))
        })?;
        let mut cfg = Rtc::builder()
            .set_ice_lite(true)
            .clear_codecs()
            .enable_opus(true, false)
            .set_dtls_cert(cert.clone())
            .set_extension(PLAYOUT_DELAY_EXT, Extension::PlayoutDelay)
            .set_stats_interval(None)
            // ~600 KB of NACK history: a 1080p keyframe and what follows it.
            .set_send_buffer_video(500);
        cfg.codec_config().add_h264(Pt::new_with_value(H264_PT), Some(Pt::new_with_value(H264_RTX_PT)), true, plid);
        let mut rtc = cfg.build(now);
        for ip in addrs {
            if let Ok(c) = Candidate::host(SocketAddr::new(*ip, port), "udp") {
                rtc.add_local_candidate(c);
            }
        }
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| WhepError::BadOffer(format!("cannot answer this offer: {e}")))?;
        // The video m-line str0m accepted (str0m announces it as an event only once the
        // connection is up), and the one H.264 payload both sides agreed on.
        let answer = answer.to_sdp_string();
        let mid = media_mid(&answer, "video")
            .ok_or_else(|| WhepError::BadOffer("the offer has no video to receive".into()))?;
        let audio = media_mid(&answer, "audio").and_then(|m| {
            let pt = rtc.writer(m)?.payload_params().find(|p| p.spec().codec == Codec::Opus).map(|p| p.pt())?;
            Some((m, pt))
        });
        let pt = rtc
            .writer(mid)
            .and_then(|w| {
                w.payload_params()
                    .find(|p| p.spec().codec == Codec::H264 && p.spec().format.packetization_mode == Some(1))
                    .map(|p| p.pt())
            })
            .ok_or_else(|| {
                WhepError::NoCodec(format!(
                    "the camera sends H.264 {} (profile-level-id {plid:06x}) and this browser offers no matching \
                     H.264 profile; use HLS",
                    sps.profile()
                ))
            })?;
        let session = Session {
            id,
            camera,
            rtc,
            mid,
            pt,
            audio,
            created: now,
            start,
            connected: false,
            next: None,
            wait_key: true,
            wake: now,
            ended: None,
            wants_keyframe: false,
            starting: false,
            just_connected: false,
            profile_level_id: plid,
            frames: 0,
            send_drops: 0,
        };
        Ok((session, answer))
    }

    /// Whether a datagram belongs to this session (ICE credentials, or its nominated peer).
    pub fn accepts(&self, input: &Input) -> bool {
        self.ended.is_none() && self.rtc.accepts(input)
    }

    /// Hand str0m a datagram read from `from` to our `to`.
    pub fn receive(&mut self, udp: &Udp, now: Instant, from: SocketAddr, to: SocketAddr, data: &[u8]) {
        match Receive::new(Protocol::Udp, from, to, data) {
            Ok(r) => {
                if let Err(e) = self.rtc.handle_input(Input::Receive(now, r)) {
                    log::debug!("webrtc {}: input refused: {e}", self.id);
                }
            }
            Err(_) => return,
        }
        self.drain(udp, now);
    }

    /// Whether [`tick`](Self::tick) is due: str0m's timer, or the setup deadline.
    pub fn due(&self, now: Instant) -> bool {
        self.wake <= now || (!self.connected && now.duration_since(self.created) >= SETUP_DEADLINE)
    }

    /// str0m's timers (ICE consent, DTLS, RTCP), and the setup deadline.
    pub fn tick(&mut self, udp: &Udp, now: Instant) {
        if !self.connected && now.duration_since(self.created) >= SETUP_DEADLINE {
            self.end("not connected within 15 s (is the UDP port reachable?)");
            return;
        }
        if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
            log::debug!("webrtc {}: timeout: {e}", self.id);
        }
        self.drain(udp, now);
    }

    /// Where the session starts once connected: the newest keyframe held (`Newest`), or the
    /// next one to come (`Next`, after asking the camera for it).
    fn begin(&mut self, gop: &VecDeque<Arc<Unit>>) {
        self.wait_key = true;
        match (self.start, gop.front()) {
            (StartAt::Newest, Some(first)) => self.next = Some(first.index),
            _ => {
                self.next = gop.back().map(|u| u.index + 1);
                self.wants_keyframe = true;
                self.starting = true;
            }
        }
    }

    /// Write the units of the camera's current GOP this viewer has not had yet (`gop` starts
    /// at a keyframe).
    pub fn write(&mut self, udp: &Udp, gop: &VecDeque<Arc<Unit>>, now: Instant) {
        if !self.connected || self.ended.is_some() {
            return;
        }
        if self.just_connected {
            self.just_connected = false;
            self.begin(gop);
        }
        let Some(first) = gop.front() else { return };
        // Behind the GOP held (the camera moved on to a new keyframe): skip to it.
        let next = self.next.map_or(first.index, |n| n.max(first.index));
        let skip = (next - first.index) as usize;
        let mono = crate::time::mono_now();
        for u in gop.iter().skip(skip) {
            self.next = Some(u.index + 1);
            if self.wait_key && !u.keyframe {
                continue;
            }
            self.wait_key = false;
            let Some(w) = self.rtc.writer(self.mid) else {
                self.end("closing");
                return;
            };
            // The capture instant on `Instant`'s clock (both CLOCK_MONOTONIC on Linux).
            let wallclock = now.checked_sub(mono.saturating_sub(u.pts)).unwrap_or(now);
            let rtp_time = MediaTime::from_90khz(crate::time::ticks(u.pts));
            let w = w.playout_delay(MediaTime::ZERO, MediaTime::ZERO);
            if let Err(e) = w.write(self.pt, wallclock, rtp_time, u.data.clone()) {
                log::debug!("webrtc {}: write: {e}", self.id);
                self.wait_key = true;
            } else {
                self.frames += 1;
            }
            self.drain(udp, now);
        }
        if self.next.is_none() {
            self.next = Some(first.index);
        }
    }

    /// Whether the viewer takes sound (its offer had audio, and Opus was agreed).
    pub fn wants_sound(&self) -> bool {
        self.audio.is_some()
    }

    /// Write one Opus packet of the camera's sound captured at `at` (once its picture runs).
    pub fn write_sound(&mut self, udp: &Udp, opus: &Arc<[u8]>, at: Duration, now: Instant) {
        let Some((mid, pt)) = self.audio else { return };
        if !self.connected || self.ended.is_some() || self.frames == 0 {
            return;
        }
        let mono = crate::time::mono_now();
        // Sound from before the viewer joined (the GOP's, transcoded in a burst) would fill the
        // browser's jitter buffer and keep the sound that much behind: fresh packets only.
        if mono.saturating_sub(at) > STALE_SOUND {
            return;
        }
        let Some(w) = self.rtc.writer(mid) else { return };
        let wallclock = now.checked_sub(mono.saturating_sub(at)).unwrap_or(now);
        let rtp_time = MediaTime::new(crate::time::samples(at, 48_000), Frequency::FORTY_EIGHT_KHZ);
        if let Err(e) = w.write(pt, wallclock, rtp_time, opus.clone()) {
            log::debug!("webrtc {}: sound: {e}", self.id);
        }
        self.drain(udp, now);
    }

    /// The camera's stream skipped frames (the server fell behind the pre-roll): wait for the
    /// next keyframe.
    pub fn lost_frames(&mut self) {
        self.wait_key = true;
    }

    /// End it from our side (DELETE, shutdown): RTCP BYE and DTLS close_notify go out.
    pub fn close(&mut self, udp: &Udp, now: Instant, why: EndReason) {
        if self.ended.is_none() {
            let _ = self.rtc.close();
            self.drain(udp, now);
            self.end(why);
        }
    }

    fn end(&mut self, why: EndReason) {
        if self.ended.is_none() {
            self.ended = Some(why);
        }
    }

    /// Send what str0m has queued and act on its events, up to its next timeout.
    fn drain(&mut self, udp: &Udp, now: Instant) {
        loop {
            let out = match self.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    log::debug!("webrtc {}: {e}", self.id);
                    self.end("connection error");
                    return;
                }
            };
            match out {
                Output::Timeout(t) => {
                    self.wake = t.max(now);
                    break;
                }
                Output::Transmit(t) => {
                    if udp.try_send(t.source, t.destination, &t.contents).is_err() {
                        self.send_drops += 1;
                    }
                }
                Output::Event(e) => match e {
                    Event::Connected => {
                        self.connected = true;
                        self.just_connected = true;
                    }
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                        self.end("the viewer went away (ICE consent lost)")
                    }
                    Event::Closed => self.end("closed by the viewer"),
                    Event::KeyframeRequest(_) => {
                        self.wait_key = true;
                        self.wants_keyframe = true;
                    }
                    _ => {}
                },
            }
        }
        if !self.rtc.is_alive() {
            self.end("closed");
        }
    }
}

/// str0m's parse error without its parser's internals (a pointer offset), on one line.
fn parse_error(e: &dyn std::fmt::Display) -> String {
    let text = e.to_string();
    let lines: Vec<&str> =
        text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.contains("PointerOffset")).collect();
    lines.join("; ")
}

/// The offer with every m-section's `a=msid` naming `stream`: str0m answers each m-line with the
/// offer's stream (a random one for `-` or none), and a browser syncs sound and picture only
/// within one stream.
fn one_stream(offer: &str, stream: &str) -> String {
    let mut out = String::with_capacity(offer.len() + 128);
    let mut section: Vec<&str> = Vec::new();
    let flush = |section: &mut Vec<&str>, out: &mut String| {
        let media = section.first().and_then(|l| l.strip_prefix("m=")).map(|m| m.split(' ').next().unwrap_or(""));
        let has_msid = section.iter().any(|l| l.starts_with("a=msid:"));
        for line in section.drain(..) {
            match (media, line.strip_prefix("a=msid:")) {
                (Some(_), Some(rest)) => {
                    let track = rest.split_once(' ').map_or(rest, |(_, t)| t);
                    out.push_str(&format!("a=msid:{stream} {track}\r\n"));
                }
                _ => {
                    out.push_str(line);
                    out.push_str("\r\n");
                    if let (Some(kind), false, Some(mid)) = (media, has_msid, line.strip_prefix("a=mid:")) {
                        out.push_str(&format!("a=msid:{stream} {kind}-{mid}\r\n"));
                    }
                }
            }
        }
    };
    for line in offer.lines().map(str::trim_end) {
        if line.starts_with("m=") {
            flush(&mut section, &mut out);
        }
        section.push(line);
    }
    flush(&mut section, &mut out);
    out
}

/// The `a=mid` of the first `kind` (`video`, `audio`) m-line of an SDP that is not inactive.
fn media_mid(sdp: &str, kind: &str) -> Option<Mid> {
    let mut video = false;
    let mut mid = None;
    for line in sdp.lines().map(str::trim_end) {
        if let Some(m) = line.strip_prefix("m=") {
            if video && mid.is_some() {
                break;
            }
            // `… 0`: no codec in common; the payload check below answers that.
            video = m.strip_prefix(kind).is_some_and(|r| r.starts_with(' '));
            mid = None;
        } else if video {
            if let Some(v) = line.strip_prefix("a=mid:") {
                mid = Some(Mid::from(v));
            } else if line == "a=inactive" {
                video = false;
            }
        }
    }
    mid.filter(|_| video)
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
