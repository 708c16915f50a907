//! The `test` source: a moving I420 pattern, paced by the monotonic clock, that carries its
//! frame number in a stripe a test can read back after encode and decode ([`read_seq`]).
//!
//! The stripe is the top 32 rows: 32 cells across, rows 0–15 hold the sequence number's bits
//! (MSB first, white = 1), rows 16–31 the inverted bits, so a damaged stripe is detected rather
//! than misread. The next 32 rows hold, the same way, the frame's capture time in ms on
//! CLOCK_MONOTONIC (its low 32 bits, [`read_capture_ms`]): a browser on the same machine reads it
//! from a canvas to measure glass-to-glass latency (frames at least 128 rows high). Below them a box moves 8 px per frame over a
//! gradient. The frame captured
//! nearest each whole second of the monotonic clock flashes: its bottom quarter is white (the
//! `test` audio source beeps at the same instants, so a clip's sync can be measured).

use super::{CaptureError, Source};
use crate::frame::{Frame, PixelFormat, VideoFormat};
use crate::time::mono_now;
use bytes::{Bytes, BytesMut};
use std::time::Duration;

const BITS: usize = 32;
const STRIPE_ROWS: usize = 32;
const WHITE: u8 = 235;
const BLACK: u8 = 16;

/// Generates frames at `fps` on the monotonic clock.
pub struct TestPattern {
    format: VideoFormat,
    background: Vec<u8>,
    start: Duration,
    seq: u64,
    period: Duration,
}

impl TestPattern {
    /// A pattern of `width`×`height` at `fps`, starting now.
    pub fn new(width: u32, height: u32, fps: u32) -> Self {
        let format = VideoFormat { pixel: PixelFormat::I420, width, height, fps: fps.max(1) };
        let (w, h) = (width as usize, height as usize);
        let size = PixelFormat::I420.frame_size(width, height).unwrap_or(0);
        let mut background = vec![128u8; size];
        for y in 0..h {
            let v = 40 + (y * 150 / h.max(1)) as u8;
            background[y * w..(y + 1) * w].fill(v);
        }
        TestPattern {
            format,
            background,
            start: mono_now(),
            seq: 0,
            period: Duration::from_nanos(1_000_000_000 / fps.max(1) as u64),
        }
    }

    fn due(&self, seq: u64) -> Duration {
        self.start + self.period * seq as u32
    }

    /// Whether frame `seq` is the one captured nearest a whole second.
    pub fn flashes(&self, seq: u64) -> bool {
        let into = self.due(seq).subsec_nanos() as u64;
        let half = self.period.as_nanos() as u64 / 2;
        into < half || 1_000_000_000 - into <= half
    }

    /// Render frame `seq` (public for tests and benchmarks).
    pub fn render(&self, seq: u64) -> Bytes {
        let (w, h) = (self.format.width as usize, self.format.height as usize);
        let mut buf = BytesMut::with_capacity(self.background.len());
        buf.extend_from_slice(&self.background);
        // Moving box.
        let bw = (w / 8).max(2);
        let bh = (h / 4).max(2);
        // In u64: on 32-bit boards `seq as usize * 8` would overflow after 2^29 frames.
        let x0 = (seq.wrapping_mul(8) % (w.saturating_sub(bw).max(1) as u64)) as usize;
        let y0 = h / 2 - bh / 2;
        for y in y0..(y0 + bh).min(h) {
            buf[y * w + x0..y * w + x0 + bw].fill(220);
        }
        if self.flashes(seq) {
            buf[w * (h - h / 4)..w * h].fill(WHITE);
        }
        stamp(&mut buf[..w * h], w, 0, seq);
        if h >= 4 * STRIPE_ROWS {
            // Only where it leaves the flash (the bottom quarter) alone.
            stamp(&mut buf[..w * h], w, STRIPE_ROWS, self.due(seq).as_millis() as u64);
        }
        buf.freeze()
    }
}

/// Write the low 32 bits of `seq` into the stripe starting at row `top` of a luma plane.
fn stamp(luma: &mut [u8], w: usize, top: usize, seq: u64) {
    let cell = (w / BITS).max(1);
    let h = luma.len() / w.max(1);
    for row in 0..STRIPE_ROWS.min(h.saturating_sub(top)) {
        let inverted = row >= STRIPE_ROWS / 2;
        let line = &mut luma[(top + row) * w..(top + row + 1) * w];
        line.fill(BLACK);
        for bit in 0..BITS.min(w) {
            let one = (seq >> (BITS - 1 - bit)) & 1 == 1;
            let v = if one != inverted { WHITE } else { BLACK };
            line[bit * cell..((bit + 1) * cell).min(w)].fill(v);
        }
    }
}

/// Read the frame number back from a decoded luma plane (`stride` bytes per row). `None` when
/// the stripe is not intact (its inverted half disagrees).
pub fn read_seq(luma: &[u8], width: usize, height: usize, stride: usize) -> Option<u64> {
    read_stripe(luma, width, height, stride, 0)
}

/// Read the capture time back (ms on CLOCK_MONOTONIC, low 32 bits); `None` as [`read_seq`].
pub fn read_capture_ms(luma: &[u8], width: usize, height: usize, stride: usize) -> Option<u64> {
    read_stripe(luma, width, height, stride, STRIPE_ROWS)
}

fn read_stripe(luma: &[u8], width: usize, height: usize, stride: usize, top: usize) -> Option<u64> {
    if height < top + STRIPE_ROWS || width < BITS {
        return None;
    }
    let cell = width / BITS;
    let sample = |rows: std::ops::Range<usize>, bit: usize| -> Option<bool> {
        let x0 = bit * cell + cell / 4;
        let x1 = (bit * cell + cell * 3 / 4).max(x0 + 1);
        let mut sum = 0u64;
        let mut n = 0u64;
        for r in rows {
            for x in x0..x1 {
                sum += *luma.get(r * stride + x)? as u64;
                n += 1;
            }
        }
        Some(sum / n.max(1) > 128)
    };
    let mut seq = 0u64;
    for bit in 0..BITS {
        let one = sample(top + 4..top + 12, bit)?;
        let inv = sample(top + 20..top + 28, bit)?;
        if one == inv {
            return None;
        }
        seq = (seq << 1) | one as u64;
    }
    Some(seq)
}

impl Source for TestPattern {
    fn format(&self) -> VideoFormat {
        self.format
    }

    fn next_frame(&mut self, wait: Duration) -> Result<Option<Frame>, CaptureError> {
        let now = mono_now();
        // Fell more than a second behind (machine overloaded): skip, like a camera would.
        // Shorter delays are caught up with nominal timestamps, so spacing stays exact.
        while now > self.due(self.seq) + Duration::from_secs(1) {
            self.seq += 1;
        }
        let due = self.due(self.seq);
        if due > now {
            let ahead = due - now;
            if ahead > wait {
                std::thread::sleep(wait);
                return Ok(None);
            }
            std::thread::sleep(ahead);
        }
        let seq = self.seq;
        self.seq += 1;
        Ok(Some(Frame { data: self.render(seq), format: self.format, captured: due, seq }))
    }

    fn describe(&self) -> String {
        format!("test pattern {}x{}@{}", self.format.width, self.format.height, self.format.fps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_frame_flashes_nearest_each_whole_second() {
        let p = TestPattern::new(64, 64, 30);
        let flashes: Vec<u64> = (0..300).filter(|&s| p.flashes(s)).collect();
        assert!((9..=11).contains(&flashes.len()), "{flashes:?}");
        for w in flashes.windows(2) {
            assert_eq!(w[1] - w[0], 30, "{flashes:?}");
        }
        for &s in &flashes {
            let into = p.due(s).subsec_millis();
            assert!(!(17..=983).contains(&into), "frame {s} at {into} ms into its second");
            let f = p.render(s);
            assert_eq!(f[64 * 63], WHITE);
        }
        assert_ne!(p.render(flashes[0] + 1)[64 * 63], WHITE);
    }

    #[test]
    fn stamp_reads_back() {
        let p = TestPattern::new(1280, 720, 30);
        for seq in [0u64, 1, 29, 30, 12345, 0xDEAD_BEEF] {
            let f = p.render(seq);
            assert_eq!(f.len(), 1280 * 720 * 3 / 2);
            assert_eq!(read_seq(&f, 1280, 720, 1280), Some(seq));
            let ms = p.due(seq).as_millis() as u64 & 0xFFFF_FFFF;
            assert_eq!(read_capture_ms(&f, 1280, 720, 1280), Some(ms), "frame {seq}'s capture time");
        }
    }

    #[test]
    fn damaged_stripe_is_not_misread() {
        let p = TestPattern::new(320, 240, 30);
        let mut f = p.render(77).to_vec();
        f[20 * 320..28 * 320].fill(BLACK);
        assert_eq!(read_seq(&f, 320, 240, 320), None);
    }

    #[test]
    fn frames_are_paced_and_stamped() {
        let mut p = TestPattern::new(64, 64, 20);
        let mut got = Vec::new();
        while got.len() < 3 {
            if let Some(f) = p.next_frame(Duration::from_millis(50)).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got[1].captured - got[0].captured, Duration::from_millis(50));
        assert_eq!(read_seq(&got[2].data, 64, 64, 64), Some(got[2].seq));
    }
}
