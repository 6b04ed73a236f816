//! The periodic schedule of `proc kill --every` and `proc pause --every`: ticks `every` apart
//! from the start, each moved by a uniform jitter of up to `jitter` either way, at most `max`.
//!
//! Ticks are planned from the start time (tick n is due at `start + n * every + jitter_n`), not
//! from the previous tick, so a late tick does not push every later one back: over 10 s at
//! `--every 1s` there are 10 ticks, whatever each one cost.
use std::time::Duration;

#[derive(Clone, Debug)]
pub(crate) struct Ticker {
    every_ns: u64,
    jitter_ns: u64,
    max: Option<u64>,
    start_ns: u64,
    fired: u64,
    next_ns: u64,
}

impl Ticker {
    /// Starts at `start_ns` (CLOCK_MONOTONIC); the first tick is due one period later.
    #[must_use]
    pub(crate) fn new(every: Duration, jitter: Option<Duration>, max: Option<u64>, start_ns: u64) -> Self {
        let every_ns = u64::try_from(every.as_nanos()).unwrap_or(u64::MAX).max(1);
        // A jitter of a whole period or more would let ticks swap places: keep it below.
        let jitter_ns = jitter.map_or(0, |j| u64::try_from(j.as_nanos()).unwrap_or(u64::MAX)).min(every_ns / 2);
        let mut ticker = Self { every_ns, jitter_ns, max, start_ns, fired: 0, next_ns: 0 };
        ticker.next_ns = ticker.due(1);
        ticker
    }

    fn due(&self, n: u64) -> u64 {
        let on_time = self.start_ns.saturating_add(self.every_ns.saturating_mul(n));
        if self.jitter_ns == 0 {
            return on_time;
        }
        let offset = (random_u64() % (2 * self.jitter_ns + 1)) as i64 - self.jitter_ns as i64;
        on_time.saturating_add_signed(offset)
    }

    /// When the next tick is due, or None once `max` ticks have fired.
    #[must_use]
    pub(crate) fn next_due_ns(&self) -> Option<u64> {
        if self.max.is_some_and(|max| self.fired >= max) {
            return None;
        }
        Some(self.next_ns)
    }

    /// Whether a tick is due at `now_ns`; if so it counts as fired and the next one is planned.
    pub(crate) fn take(&mut self, now_ns: u64) -> bool {
        match self.next_due_ns() {
            Some(due) if due <= now_ns => {
                self.fired += 1;
                self.next_ns = self.due(self.fired + 1);
                true
            }
            _ => false,
        }
    }

    #[cfg(test)]
    #[must_use]
    pub(crate) const fn fired(&self) -> u64 {
        self.fired
    }
}

/// A random u64 from the kernel (no seeding, no crate).
#[must_use]
pub(crate) fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: getrandom(2) into a local buffer of the length given.
    unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), 8, 0) };
    u64::from_ne_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn ticks_come_every_period_from_the_start() {
        let mut ticker = Ticker::new(Duration::from_secs(1), None, None, 100);
        assert!(!ticker.take(100 + SECOND - 1));
        assert!(ticker.take(100 + SECOND));
        assert_eq!(ticker.next_due_ns(), Some(100 + 2 * SECOND));
        // A late tick does not move the ones after it.
        assert!(ticker.take(100 + 2 * SECOND + SECOND / 2));
        assert_eq!(ticker.next_due_ns(), Some(100 + 3 * SECOND));
    }

    #[test]
    fn max_stops_the_ticks() {
        let mut ticker = Ticker::new(Duration::from_secs(1), None, Some(2), 0);
        assert!(ticker.take(SECOND));
        assert!(ticker.take(2 * SECOND));
        assert_eq!(ticker.next_due_ns(), None);
        assert!(!ticker.take(10 * SECOND));
        assert_eq!(ticker.fired(), 2);
    }

    #[test]
    fn jitter_stays_within_its_bounds_and_below_half_a_period() {
        for _ in 0..1000 {
            let ticker = Ticker::new(Duration::from_secs(1), Some(Duration::from_millis(200)), None, 0);
            let due = ticker.next_due_ns().unwrap();
            assert!((SECOND - SECOND / 5..=SECOND + SECOND / 5).contains(&due), "{due}");
        }
        let wide = Ticker::new(Duration::from_secs(1), Some(Duration::from_secs(5)), None, 0);
        assert!(wide.jitter_ns == SECOND / 2);
    }
}
