//! One stop signal that async tasks and plain threads can both observe, plus back-off sleeps
//! that wake at once when it fires.
//!
//! A [`StopToken`] is cheap to clone. The daemon has one for shutdown; each camera has its own,
//! stopped by the daemon's on shutdown and by `POST /api/cameras/{id}/stop`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// A flag that, once set, stays set; waiters wake immediately.
#[derive(Clone)]
pub struct StopToken {
    inner: Arc<Inner>,
}

struct Inner {
    stopped: AtomicBool,
    lock: Mutex<()>,
    cond: Condvar,
    tx: watch::Sender<bool>,
}

impl Default for StopToken {
    fn default() -> Self {
        Self::new()
    }
}

impl StopToken {
    /// A token not yet stopped.
    pub fn new() -> Self {
        StopToken {
            inner: Arc::new(Inner {
                stopped: AtomicBool::new(false),
                lock: Mutex::new(()),
                cond: Condvar::new(),
                tx: watch::channel(false).0,
            }),
        }
    }

    /// Fire: every waiter wakes.
    pub fn stop(&self) {
        self.inner.stopped.store(true, Ordering::SeqCst);
        let _g = self.inner.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.inner.cond.notify_all();
        self.inner.tx.send_replace(true);
    }

    /// Whether it has fired.
    pub fn is_stopped(&self) -> bool {
        self.inner.stopped.load(Ordering::SeqCst)
    }

    /// Sleep for `d` on a plain thread, or less if stopped. Returns true if stopped.
    pub fn sleep(&self, d: Duration) -> bool {
        let deadline = std::time::Instant::now() + d;
        let mut g = self.inner.lock.lock().unwrap_or_else(|p| p.into_inner());
        while !self.is_stopped() {
            let now = std::time::Instant::now();
            if now >= deadline {
                break;
            }
            g = self.inner.cond.wait_timeout(g, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
        self.is_stopped()
    }

    /// Wait (async) until stopped.
    pub async fn stopped(&self) {
        let mut rx = self.inner.tx.subscribe();
        while !*rx.borrow_and_update() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}

/// Exponential back-off between retries: 0.5 s doubling to 30 s; reset after success.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: Self::FIRST }
    }
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(30);

    /// The delay to wait now; the following one doubles.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        d
    }

    /// Back to the shortest delay.
    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn backoff_doubles_to_max_and_resets() {
        let mut b = Backoff::default();
        let v: Vec<u64> = (0..9).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(v, vec![500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(500));
    }

    #[test]
    fn sleep_wakes_on_stop() {
        let t = StopToken::new();
        let t2 = t.clone();
        let h = std::thread::spawn(move || t2.sleep(Duration::from_secs(3600)));
        t.stop();
        assert!(h.join().unwrap());
    }
}
