//! The login rate limiter: failed logins counted per peer address (an IPv6 client's /64) in a
//! sliding window, with a bounded number of addresses remembered.
//!
//! Pure bookkeeping over addresses and instants (the caller passes `now`): no clock, no I/O,
//! no HTTP; it must never grow without bound.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failed logins allowed per address within [`FAIL_WINDOW`].
pub const MAX_FAILURES: usize = 5;
/// The window login failures are counted in.
pub const FAIL_WINDOW: Duration = Duration::from_secs(300);
/// Most addresses the rate limiter remembers.
pub(super) const LIMITER_CAPACITY: usize = 4096;

/// The rate limiter's key for `ip`: the address, or its /64 for IPv6 (one home network's
/// prefix; a client can pick any address within it).
pub fn limit_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
        v4 => v4,
    }
}

/// Login failures per address in a sliding window, with a bounded number of addresses.
pub struct RateLimiter {
    max: usize,
    window: Duration,
    capacity: usize,
    failures: HashMap<IpAddr, VecDeque<Instant>>,
}

impl RateLimiter {
    /// `max` failures per `window`, remembering at most `capacity` addresses.
    pub fn new(max: usize, window: Duration, capacity: usize) -> Self {
        RateLimiter { max, window, capacity, failures: HashMap::new() }
    }

    fn expire(&mut self, ip: IpAddr, now: Instant) {
        if let Some(q) = self.failures.get_mut(&ip) {
            while q.front().is_some_and(|t| now.duration_since(*t) >= self.window) {
                q.pop_front();
            }
            if q.is_empty() {
                self.failures.remove(&ip);
            }
        }
    }

    /// `Err(retry_after)` when `ip` has used up its failures.
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        self.expire(ip, now);
        match self.failures.get(&ip) {
            Some(q) if q.len() >= self.max => {
                let oldest = q.front().copied().unwrap_or(now);
                Err(self.window.saturating_sub(now.duration_since(oldest)).max(Duration::from_secs(1)))
            }
            _ => Ok(()),
        }
    }

    /// Count a failure from `ip`.
    pub fn fail(&mut self, ip: IpAddr, now: Instant) {
        if !self.failures.contains_key(&ip) && self.failures.len() >= self.capacity {
            let window = self.window;
            self.failures.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
            if self.failures.len() >= self.capacity {
                // Still full: forget the address whose last failure is oldest.
                let victim = self.failures.iter().min_by_key(|(_, q)| q.back().copied()).map(|(ip, _)| *ip);
                if let Some(v) = victim {
                    self.failures.remove(&v);
                }
            }
        }
        let q = self.failures.entry(ip).or_default();
        q.push_back(now);
        while q.len() > self.max {
            q.pop_front();
        }
    }

    /// Forget `ip`'s failures (after a successful login).
    pub fn clear(&mut self, ip: IpAddr) {
        self.failures.remove(&ip);
    }

    /// Addresses remembered.
    pub fn len(&self) -> usize {
        self.failures.len()
    }

    /// Whether no address is remembered.
    pub fn is_empty(&self) -> bool {
        self.failures.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn limiter_blocks_after_max_and_forgets_after_window() {
        let mut l = RateLimiter::new(5, Duration::from_secs(300), 4);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..5 {
            assert!(l.check(ip, t0 + Duration::from_secs(i)).is_ok());
            l.fail(ip, t0 + Duration::from_secs(i));
        }
        let wait = l.check(ip, t0 + Duration::from_secs(10)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(290));
        assert!(l.check("10.0.0.2".parse().unwrap(), t0).is_ok(), "other addresses are not limited");
        assert!(l.check(ip, t0 + Duration::from_secs(301)).is_ok(), "the oldest failure aged out");
        l.clear(ip);
        assert!(l.is_empty());
    }

    #[test]
    fn limiter_is_bounded() {
        let mut l = RateLimiter::new(5, Duration::from_secs(300), 4);
        let t0 = Instant::now();
        for i in 0..100u8 {
            l.fail(IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)), t0 + Duration::from_millis(i.into()));
        }
        assert!(l.len() <= 4);
        assert!(l.failures.contains_key(&IpAddr::V4(Ipv4Addr::new(10, 0, 0, 99))));
    }

    #[test]
    fn rate_limit_key_is_the_ipv6_prefix() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::7".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(limit_key(a), limit_key(b));
        assert_ne!(limit_key(a), limit_key(other));
        let v4: IpAddr = "192.168.1.20".parse().unwrap();
        assert_eq!(limit_key(v4), v4);
        assert_eq!(limit_key("::ffff:192.168.1.20".parse().unwrap()), v4);
    }
}
