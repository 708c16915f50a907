//! Time, one name per idea: the monotonic clock frames are stamped with, the wall clock clips
//! are named and dated with, RFC 3339 text, and the 90 kHz media ticks of MP4 and HLS.
//!
//! - [`mono_now`]: CLOCK_MONOTONIC, the clock V4L2 drivers stamp frames with; every frame's
//!   `pts` and every deadline is on it. [`mono_ms`] is the same in milliseconds.
//! - [`wall_now_ms`]: Unix milliseconds now (ids, `trigger_at`, retention). [`wall_ms`]: Unix
//!   milliseconds of a monotonic instant (a frame's capture time on the wall clock).
//! - [`WALL_CLOCK_FLOOR_MS`], [`wall_clock_trusted`]: before 2026 the wall clock is not set yet
//!   (no RTC, no NTP sync); retention by age never acts on it.
//! - [`rfc3339_ms`]: Unix milliseconds as RFC 3339 UTC with milliseconds, the API's format.
//! - [`ticks`]: a duration in [`TIMESCALE`] (90 kHz) units.
//! - [`Clock`]: the two clocks behind a trait, so a stage (the clip recorder) runs on simulated
//!   time in unit tests; [`SystemClock`] is the real one.
//!
//! A leaf: imports nothing of the crate.

use std::time::Duration;

/// Now on CLOCK_MONOTONIC, the clock V4L2 drivers stamp frames with.
pub fn mono_now() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map(Duration::from).unwrap_or_default()
}

/// [`mono_now`] in milliseconds.
pub fn mono_ms() -> u64 {
    mono_now().as_millis() as u64
}

/// The wall clock is not trusted before 2026-01-01T00:00:00Z (Unix milliseconds): a board
/// without a real-time clock starts in 1970, or at systemd's build date, until NTP sets it.
/// Nothing is deleted by age on an untrusted clock, nor by a date taken from one.
pub const WALL_CLOCK_FLOOR_MS: i64 = 1_767_225_600_000;

/// Whether the wall clock reading `now_ms` can be trusted (it is not before
/// [`WALL_CLOCK_FLOOR_MS`]).
pub fn wall_clock_trusted(now_ms: i64) -> bool {
    now_ms >= WALL_CLOCK_FLOOR_MS
}

/// Unix milliseconds of RFC 3339 text `v`; the error names the parameter `name` and shows the
/// expected form (query parameters: `from`, `to`, …).
pub fn parse_rfc3339_ms(name: &str, v: &str) -> Result<i64, String> {
    v.parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|e| format!("{name}: {v:?} is not an RFC 3339 time like 2026-01-31T12:00:00Z ({e})"))
}

/// Wall-clock now in Unix milliseconds.
pub fn wall_now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Unix milliseconds of an instant on CLOCK_MONOTONIC (clips, HLS program date time).
pub fn wall_ms(pts: Duration) -> i64 {
    wall_ms_from(pts, mono_now(), wall_now_ms())
}

/// Unix milliseconds of `pts` when the monotonic clock reads `now_mono` at wall time `now_wall`.
fn wall_ms_from(pts: Duration, now_mono: Duration, now_wall: i64) -> i64 {
    if pts <= now_mono {
        now_wall - (now_mono - pts).as_millis() as i64
    } else {
        now_wall + (pts - now_mono).as_millis() as i64
    }
}

/// RFC 3339 in UTC with milliseconds for Unix milliseconds, e.g. `2026-05-01T12:00:00.000Z`
/// (empty when out of range).
pub fn rfc3339_ms(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map(|t| format!("{t:.3}")).unwrap_or_default()
}

/// Media timescale (MP4 `mdhd`, sample durations, `tfdt`, `elst.media_time`; HLS): 90 kHz, as
/// RTP/MPEG.
pub const TIMESCALE: u32 = 90_000;

/// `d` in samples at `rate` (Hz), rounded to the nearest.
pub fn samples(d: Duration, rate: u32) -> u64 {
    ((d.as_nanos() * u128::from(rate) + 500_000_000) / 1_000_000_000) as u64
}

/// How long `n` samples at `rate` (Hz) last.
pub fn of_samples(n: u64, rate: u32) -> Duration {
    Duration::from_nanos((u128::from(n) * 1_000_000_000 / u128::from(rate.max(1))) as u64)
}

/// A duration in [`TIMESCALE`] units.
pub fn ticks(d: Duration) -> u64 {
    (d.as_nanos() * u128::from(TIMESCALE) / 1_000_000_000) as u64
}

/// The clocks a stage reads, injected so tests can drive time.
pub trait Clock: Send + Sync {
    /// Now on the monotonic clock (see [`mono_now`]).
    fn mono(&self) -> Duration;
    /// Now in Unix milliseconds (see [`wall_now_ms`]).
    fn wall_now_ms(&self) -> i64;
    /// Unix milliseconds of a monotonic instant (see [`wall_ms`]).
    fn wall_ms(&self, pts: Duration) -> i64 {
        wall_ms_from(pts, self.mono(), self.wall_now_ms())
    }
}

/// The real clocks.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn mono(&self) -> Duration {
        mono_now()
    }
    fn wall_now_ms(&self) -> i64 {
        wall_now_ms()
    }
}

/// A clock that moves only when told to (tests): monotonic `mono`, wall = `wall_at_zero + mono`.
#[derive(Debug, Default)]
pub struct ManualClock {
    mono_ns: std::sync::atomic::AtomicU64,
    wall_at_zero_ms: i64,
}

impl ManualClock {
    /// A clock at monotonic `start`, whose wall clock read `wall_at_zero_ms` at monotonic zero.
    pub fn new(start: Duration, wall_at_zero_ms: i64) -> Self {
        ManualClock { mono_ns: (start.as_nanos() as u64).into(), wall_at_zero_ms }
    }
    /// Move both clocks forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.mono_ns.fetch_add(d.as_nanos() as u64, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn mono(&self) -> Duration {
        Duration::from_nanos(self.mono_ns.load(std::sync::atomic::Ordering::SeqCst))
    }
    fn wall_now_ms(&self) -> i64 {
        self.wall_at_zero_ms + self.mono().as_millis() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_converts() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_500), "1970-01-01T00:00:01.500Z");
        assert_eq!(rfc3339_ms(WALL_CLOCK_FLOOR_MS), "2026-01-01T00:00:00.000Z");
        assert!(wall_clock_trusted(WALL_CLOCK_FLOOR_MS) && !wall_clock_trusted(WALL_CLOCK_FLOOR_MS - 1));
        assert_eq!(ticks(Duration::from_millis(1500)), 135_000);
        let c = ManualClock::new(Duration::from_secs(10), 1_000_000);
        assert_eq!(c.wall_ms(Duration::from_secs(9)), 1_009_000);
        c.advance(Duration::from_secs(1));
        assert_eq!(c.mono(), Duration::from_secs(11));
        assert_eq!(c.wall_now_ms(), 1_011_000);
        assert_eq!(c.wall_ms(Duration::from_secs(12)), 1_012_000);
        let (m, w) = (mono_now(), wall_now_ms());
        assert!((wall_ms(m) - w).abs() < 1_000);
    }
}
