//! Exponential backoff with jitter for the retry loop and for watches.
//!
//! The n-th delay (from 0) is drawn uniformly from `[d/2, d]` where
//! `d = min(initial · 2ⁿ, max)`: retries spread out instead of stampeding, and no delay ever
//! exceeds `max`.

use std::time::Duration;

/// The delay sequence of one retry loop.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// A sequence starting at `initial` and capped at `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial.min(max);
        Backoff { next: initial, max }
    }

    /// Caps every later delay at `max`.
    pub fn set_max(&mut self, max: Duration) {
        self.max = max;
        self.next = self.next.min(max);
    }

    /// The next delay to sleep.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        let half = ceiling / 2;
        let spread = u64::try_from((ceiling - half).as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(ferrisdb_core::random::up_to(spread))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_exponentially_within_jitter_bounds_and_cap() {
        let initial = Duration::from_millis(1);
        let max = Duration::from_secs(1);
        for _ in 0..20 {
            let mut b = Backoff::new(initial, max);
            for n in 0..40u32 {
                let d = b.next_delay();
                let ceiling = initial.saturating_mul(2u32.saturating_pow(n)).min(max);
                assert!(d <= ceiling, "delay {n} = {d:?} above {ceiling:?}");
                assert!(
                    d >= ceiling / 2,
                    "delay {n} = {d:?} below {:?}",
                    ceiling / 2
                );
            }
            // Far along, delays sit between max/2 and max.
            let d = b.next_delay();
            assert!(d >= max / 2 && d <= max);
            assert!(Backoff::new(initial, max).next_delay() <= initial);
        }
    }

    #[test]
    fn an_initial_above_the_cap_is_capped() {
        let mut b = Backoff::new(Duration::from_secs(5), Duration::from_millis(10));
        assert!(b.next_delay() <= Duration::from_millis(10));
    }
}
