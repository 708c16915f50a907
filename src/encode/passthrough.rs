//! Pass-through: a camera's own H.264 access units go into the pre-roll as they are — no
//! decode, no encode (`encoder = "passthrough"`, or `auto` with an H.264 source).
//!
//! The stage still owns what an encoder would: the frame's timing (its capture time as PTS and
//! DTS), the keyframe flag (read from the NAL headers, [`crate::mp4::h264`]), and a decodable
//! stream: after a frame lost on the way (a sequence gap) nothing is passed on until the next
//! IDR, so the pre-roll never holds a frame whose reference is missing. It measures what the
//! camera does — GOP, profile, level, bitrate — for `/api/cameras`, and warns once, with the
//! figures, when the camera's GOP is longer than `pre_s` or the pre-roll's byte cap cannot hold
//! `pre_s` plus a GOP at the measured bitrate.
//!
//! A camera cannot be asked for a keyframe: a request is dropped (a new clip or viewer waits for
//! the camera's next IDR). Frames out of presentation order (B-frames) are refused with an error
//! that says so: clips and HLS here carry no composition offsets.

use super::EncodeError;
use crate::frame::{EncodedFrame, Frame};
use crate::mp4::h264::{self, SpsInfo};
use crate::preroll::PreRoll;
use crate::status::{CameraStatus, StreamInfo};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// What the warnings compare against.
#[derive(Debug, Clone, Copy)]
pub struct Expectations {
    /// Seconds kept before a trigger.
    pub pre_s: f64,
    /// The pre-roll's byte cap.
    pub cap_bytes: usize,
}

/// The pass-through stage's state for one source session.
pub struct Passthrough {
    id: String,
    preroll: Arc<PreRoll>,
    status: Arc<CameraStatus>,
    expect: Expectations,
    /// Frames are held back until an IDR (at start, and after a lost frame).
    waiting_for_key: bool,
    last_seq: Option<u64>,
    last_pts: Option<Duration>,
    last_key: Option<Duration>,
    /// Bytes since the last keyframe (the bitrate over the last GOP).
    gop_bytes: usize,
    info: StreamInfo,
    warned: bool,
}

impl Passthrough {
    /// A fresh session (the first frame passed on will be an IDR).
    pub fn new(id: &str, preroll: Arc<PreRoll>, status: Arc<CameraStatus>, expect: Expectations) -> Self {
        status.set_encoder("passthrough");
        Passthrough {
            id: id.into(),
            preroll,
            status,
            expect,
            waiting_for_key: true,
            last_seq: None,
            last_pts: None,
            last_key: None,
            gop_bytes: 0,
            info: StreamInfo { codec: Some("h264".into()), ..StreamInfo::default() },
            warned: false,
        }
    }

    /// One access unit from the source.
    pub fn push(&mut self, frame: Frame) -> Result<(), EncodeError> {
        let key = h264::is_idr(&frame.data);
        if self.last_seq.is_some_and(|s| frame.seq != s + 1) && !key {
            // A frame was lost before us: what follows refers to it.
            self.waiting_for_key = true;
        }
        self.last_seq = Some(frame.seq);
        if self.waiting_for_key && !key {
            if self.last_key.is_some() {
                self.status.frames_dropped_encoder.fetch_add(1, Ordering::Relaxed);
            }
            return Ok(());
        }
        self.waiting_for_key = false;
        if let Some(last) = self.last_pts {
            if frame.captured <= last {
                self.waiting_for_key = true;
                self.last_pts = None;
                return Err(EncodeError::Stream(
                    "the camera sends frames out of presentation order (B-frames); hindsight passes \
                     H.264 through without reordering: turn B-frames off in the camera's encoder \
                     settings, or set encoder = \"x264enc\" (or the board's encoder) to re-encode"
                        .into(),
                ));
            }
        }
        let fps = frame.format.fps;
        let duration = match (fps, self.last_pts) {
            (f, _) if f > 0 => Duration::from_nanos(1_000_000_000 / u64::from(f)),
            (_, Some(last)) => frame.captured - last,
            _ => Duration::from_millis(33),
        };
        if key {
            self.keyframe(&frame);
        }
        self.gop_bytes += frame.data.len();
        self.last_pts = Some(frame.captured);
        self.preroll.push(EncodedFrame {
            data: frame.data,
            pts: frame.captured,
            dts: frame.captured,
            duration,
            keyframe: key,
            seq: frame.seq,
        });
        self.status.frame_encoded();
        Ok(())
    }

    fn keyframe(&mut self, frame: &Frame) {
        if let Some(sps) = SpsInfo::of(&frame.data) {
            self.info.profile = Some(sps.profile().into());
            self.info.level = Some(sps.level());
        }
        if let Some(prev) = self.last_key {
            let gop = frame.captured.saturating_sub(prev).as_secs_f64();
            if gop > 0.0 {
                self.info.gop_s = Some((gop * 100.0).round() / 100.0);
                let kbps = self.gop_bytes as f64 * 8.0 / gop / 1000.0;
                self.check(gop, kbps);
            }
        }
        self.last_key = Some(frame.captured);
        self.gop_bytes = 0;
        self.status.set_stream(self.info.clone());
    }

    /// Warn once when the camera's GOP or bitrate do not fit what the pre-roll was sized for.
    fn check(&mut self, gop: f64, kbps: f64) {
        if self.warned {
            return;
        }
        let e = self.expect;
        let need = (kbps * 1000.0 / 8.0 * (e.pre_s + gop)) as usize;
        if gop > e.pre_s || need > e.cap_bytes {
            self.warned = true;
            log::warn!(
                "camera {}: the camera's GOP is {gop:.2} s at {kbps:.0} kbit/s; holding pre_s = {} s plus a GOP \
                 needs ~{:.1} MiB of pre-roll, the cap is {:.1} MiB{}",
                self.id,
                e.pre_s,
                need as f64 / 1048576.0,
                e.cap_bytes as f64 / 1048576.0,
                if need > e.cap_bytes {
                    ": clips will start later than pre_s; raise preroll_max_bytes or bitrate_kbps, or shorten the camera's GOP (I-frame interval)"
                } else {
                    ": the GOP is longer than pre_s, so every clip carries up to a GOP of lead-in before it"
                }
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{PixelFormat, VideoFormat};

    const IDR: &[u8] = &[0, 0, 0, 1, 0x67, 77, 0x40, 31, 0xac, 0, 0, 1, 0x68, 0xce, 0, 0, 1, 0x65, 0x88];
    const P: &[u8] = &[0, 0, 0, 1, 0x41, 0x9a, 0x02];

    fn frame(seq: u64, ms: u64, key: bool) -> Frame {
        Frame {
            data: bytes::Bytes::from_static(if key { IDR } else { P }),
            format: VideoFormat { pixel: PixelFormat::H264, width: 640, height: 360, fps: 10 },
            captured: Duration::from_millis(ms),
            seq,
        }
    }

    fn rig() -> (Passthrough, Arc<PreRoll>, Arc<CameraStatus>) {
        let preroll = Arc::new(PreRoll::new(Duration::from_secs(30), 64 << 20));
        let status = Arc::new(CameraStatus::default());
        let e = Expectations { pre_s: 5.0, cap_bytes: 1 << 20 };
        (Passthrough::new("cam", preroll.clone(), status.clone(), e), preroll, status)
    }

    #[test]
    fn starts_on_an_idr_skips_to_the_next_after_a_loss_and_measures_the_gop() {
        let (mut p, preroll, status) = rig();
        // Joined mid-GOP: two P frames are held back (not counted as drops), then the IDR.
        for (seq, ms, key) in [(0, 0, false), (1, 100, false), (2, 200, true), (3, 300, false)] {
            p.push(frame(seq, ms, key)).unwrap();
        }
        // Frame 4 lost: 5 and 6 refer to it and are dropped; the IDR at 7 resumes.
        for (seq, ms, key) in [(5, 500, false), (6, 600, false), (7, 2200, true), (8, 2300, false)] {
            p.push(frame(seq, ms, key)).unwrap();
        }
        let kept: Vec<(u64, bool)> = preroll.lock().iter().map(|f| (f.seq, f.keyframe)).collect();
        assert_eq!(kept, vec![(2, true), (3, false), (7, true), (8, false)]);
        assert_eq!(status.frames_dropped_encoder.load(Ordering::Relaxed), 2);
        assert_eq!(status.frames_encoded.load(Ordering::Relaxed), 4);
        let info = status.stream();
        assert_eq!(info.gop_s, Some(2.0));
        assert_eq!((info.profile.as_deref(), info.level.as_deref()), (Some("main"), Some("3.1")));
        assert_eq!(status.encoder(), "passthrough");
        let f = preroll.lock().iter().next().cloned().unwrap();
        assert_eq!(
            (f.pts, f.dts, f.duration),
            (Duration::from_millis(200), Duration::from_millis(200), Duration::from_millis(100))
        );
    }

    #[test]
    fn frames_out_of_order_are_refused_and_the_stream_restarts_at_an_idr() {
        let (mut p, preroll, _) = rig();
        p.push(frame(0, 1000, true)).unwrap();
        p.push(frame(1, 1200, false)).unwrap();
        let e = p.push(frame(2, 1100, false)).unwrap_err();
        assert!(e.to_string().contains("B-frames"), "{e}");
        p.push(frame(3, 1300, false)).unwrap();
        p.push(frame(4, 1400, true)).unwrap();
        let kept: Vec<u64> = preroll.lock().iter().map(|f| f.seq).collect();
        assert_eq!(kept, vec![0, 1, 4]);
    }
}
