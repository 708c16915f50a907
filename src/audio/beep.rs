//! The `test` kind's sound: a 1 kHz beep of 100 ms at every whole second of the monotonic
//! clock, generated here and fed to the pipeline's `appsrc` in 10 ms buffers dated on that
//! clock (the pipeline's running time is the clock itself: base time 0).
//!
//! Not `audiotestsrc wave=ticks`: its ticks are counted from the instant the element starts,
//! which a pipeline cannot place on the clock, so a test could not know where they are. The
//! `test` video source flashes at the same whole seconds, so a clip's sync can be measured.

use gstreamer as gst;
use gstreamer_app as gst_app;
use std::time::Duration;

/// Samples per second generated (audioresample converts to the configured rate).
pub const RATE: u64 = 48_000;
/// Samples per buffer: 10 ms.
const CHUNK: u64 = RATE / 100;

/// The `appsrc` the generator feeds, as a pipeline's first element.
pub fn element() -> String {
    format!("appsrc name=beep is-live=true format=time do-timestamp=false block=false max-bytes=96000 caps=audio/x-raw,format=S16LE,layout=interleaved,rate={RATE},channels=1")
}

/// Sample `n` counted from 0 on the monotonic clock: the beep or silence.
pub fn sample(n: u64) -> i16 {
    let in_second = n % RATE;
    if in_second >= RATE / 10 {
        return 0;
    }
    let phase = (in_second as f64) * 1000.0 / RATE as f64;
    (f64::sin(phase * std::f64::consts::TAU) * 16_000.0) as i16
}

/// Feeds `appsrc` with every 10 ms of sound that has been captured by now.
pub struct Beeper {
    src: gst_app::AppSrc,
    /// The next sample to push (sample n plays at n / RATE s of the clock).
    next: u64,
}

impl Beeper {
    /// Start at the current 10 ms of the clock.
    pub fn new(src: gst_app::AppSrc, now: Duration) -> Self {
        let n = now.as_nanos() as u64 * RATE / 1_000_000_000;
        Beeper { src, next: n - n % CHUNK }
    }

    /// Push every whole buffer that ends by `now`; how long until the next one is due.
    pub fn feed(&mut self, now: Duration) -> Result<Duration, String> {
        let due = now.as_nanos() as u64 * RATE / 1_000_000_000;
        // Far behind (the machine stalled): skip ahead, like a microphone's overrun.
        if due > self.next + RATE {
            self.next = due - due % CHUNK;
        }
        while self.next + CHUNK <= due {
            let mut data = Vec::with_capacity(CHUNK as usize * 2);
            for n in self.next..self.next + CHUNK {
                data.extend_from_slice(&sample(n).to_le_bytes());
            }
            let mut buffer = gst::Buffer::from_mut_slice(data);
            if let Some(b) = buffer.get_mut() {
                b.set_pts(gst::ClockTime::from_nseconds(self.next * 1_000_000_000 / RATE));
                b.set_duration(gst::ClockTime::from_nseconds(CHUNK * 1_000_000_000 / RATE));
            }
            self.src.push_buffer(buffer).map_err(|e| format!("the test sound's appsrc refused a buffer: {e:?}"))?;
            self.next += CHUNK;
        }
        let next_due = (self.next + CHUNK) * 1_000_000_000 / RATE;
        Ok(Duration::from_nanos(next_due.saturating_sub(now.as_nanos() as u64)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beeps_for_100_ms_on_every_whole_second() {
        assert_eq!(sample(0), 0, "a sine starts at 0");
        let loud = |from: u64, to: u64| (from..to).any(|n| sample(n).unsigned_abs() > 10_000);
        for s in [0, 1, 7] {
            assert!(loud(s * RATE, s * RATE + 48), "second {s}");
            assert!(loud(s * RATE + RATE / 10 - 48, s * RATE + RATE / 10));
            assert!(!loud(s * RATE + RATE / 10, (s + 1) * RATE));
        }
    }
}
