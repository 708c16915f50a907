//! The MJPEG preview's input for a camera whose frames are already H.264 (a passed-through
//! RTSP camera, an H.264 webcam): the access units are read in order from the pre-roll — the
//! decoder needs every one since the last keyframe, which the latest-frame tap cannot give —
//! starting at the newest keyframe already held, so a new viewer's first picture needs no wait
//! for the camera's next keyframe.
//!
//! When the preview rate allows it (no more pictures a second than keyframes), only keyframes
//! are handed out: the decoder then does one picture per GOP instead of every frame.
//!
//! Owns no thread and copies nothing (the pre-roll's `Bytes` are shared).

use crate::frame::{Frame, VideoFormat};
use crate::preroll::{Followed, Follower, PreRoll};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A reader of the pre-roll for the preview thread.
#[derive(Default)]
pub struct H264Feed {
    follower: Option<Follower>,
}

impl H264Feed {
    /// The next access unit as a frame of `format`, waiting up to `timeout`; with
    /// `keyframes_only`, frames between keyframes are passed over.
    pub fn next(
        &mut self,
        preroll: &Arc<PreRoll>,
        format: VideoFormat,
        timeout: Duration,
        keyframes_only: bool,
    ) -> Option<Frame> {
        // The newest keyframe held (or, with none yet, the next frame to arrive).
        let follower = self.follower.get_or_insert_with(|| preroll.follow_from_time(Duration::MAX));
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match follower.next_blocking(left) {
                Followed::Frame(f) if keyframes_only && !f.keyframe => {}
                // The decoder starts again at the keyframe that follows (see `JpegEncoder::push`).
                Followed::Frame(f) => return Some(Frame { data: f.data, format, captured: f.pts, seq: f.seq }),
                Followed::Audio(_) | Followed::Lagged { .. } => {}
                Followed::Timeout => return None,
            }
        }
    }

    /// Forget the position (the preview stopped; the next start begins at the newest keyframe).
    pub fn reset(&mut self) {
        self.follower = None;
    }
}

/// Whether a preview of `preview_fps` can be made of keyframes alone, for a stream with a
/// keyframe every `gop_s` seconds.
pub fn keyframes_suffice(preview_fps: u32, gop_s: Option<f64>) -> bool {
    gop_s.is_some_and(|g| g > 0.0 && f64::from(preview_fps.max(1)) * g <= 1.0 + 1e-6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{EncodedFrame, PixelFormat};
    use bytes::Bytes;

    fn au(i: u64, key: bool) -> EncodedFrame {
        let t = Duration::from_millis(100 * i);
        EncodedFrame {
            data: Bytes::from(vec![i as u8; 4]),
            pts: t,
            dts: t,
            duration: Duration::from_millis(100),
            keyframe: key,
            seq: i,
        }
    }

    const FMT: VideoFormat = VideoFormat { pixel: PixelFormat::H264, width: 64, height: 48, fps: 10 };

    #[test]
    fn starts_at_the_newest_keyframe_and_reads_every_frame_in_order() {
        let p = Arc::new(PreRoll::new(Duration::from_secs(10), 1 << 20));
        for i in 0..25 {
            p.push(au(i, i % 10 == 0));
        }
        let mut feed = H264Feed::default();
        let got: Vec<u64> = std::iter::from_fn(|| feed.next(&p, FMT, Duration::ZERO, false)).map(|f| f.seq).collect();
        assert_eq!(got, (20..25).collect::<Vec<_>>(), "from the newest keyframe (20), each frame once");
        p.push(au(25, false));
        assert_eq!(feed.next(&p, FMT, Duration::ZERO, false).map(|f| (f.seq, f.format)), Some((25, FMT)));
    }

    #[test]
    fn keyframes_only_passes_over_the_rest() {
        let p = Arc::new(PreRoll::new(Duration::from_secs(10), 1 << 20));
        p.push(au(0, true));
        let mut feed = H264Feed::default();
        assert_eq!(feed.next(&p, FMT, Duration::ZERO, true).map(|f| f.seq), Some(0));
        for i in 1..25 {
            p.push(au(i, i % 10 == 0));
        }
        let got: Vec<u64> = std::iter::from_fn(|| feed.next(&p, FMT, Duration::ZERO, true)).map(|f| f.seq).collect();
        assert_eq!(got, vec![10, 20]);
    }

    #[test]
    fn keyframes_suffice_only_when_the_preview_is_that_slow() {
        assert!(keyframes_suffice(1, Some(1.0)));
        assert!(keyframes_suffice(2, Some(0.5)));
        assert!(!keyframes_suffice(1, Some(2.0)), "a keyframe every 2 s cannot make 1 picture a second");
        assert!(!keyframes_suffice(5, Some(1.0)));
        assert!(!keyframes_suffice(1, None), "GOP not measured yet: decode everything");
    }
}
