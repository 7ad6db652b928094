//! A machine's wall clock in the simulation: it follows the simulated clock from a start
//! drawn from the seed, and can be stepped forwards or backwards ([`SimClock::jump`]), as
//! NTP or an operator steps a real one. The coordinator's commit versions follow it.

use std::sync::atomic::{AtomicI64, Ordering};

use ferrisdb_server::coordinator::Clock;
use tokio::time::Instant;

/// A simulated wall clock; see the module docs.
#[derive(Debug)]
pub struct SimClock {
    /// Microseconds since the Unix epoch at `start`.
    base_micros: u64,
    start: Instant,
    /// The sum of every jump, in microseconds.
    offset_micros: AtomicI64,
}

impl SimClock {
    /// A clock reading `base_micros` now (call inside the simulation's runtime).
    pub fn new(base_micros: u64) -> SimClock {
        SimClock {
            base_micros,
            start: Instant::now(),
            offset_micros: AtomicI64::new(0),
        }
    }

    /// Steps the clock by `micros` (negative: backwards).
    pub fn jump(&self, micros: i64) {
        self.offset_micros.fetch_add(micros, Ordering::SeqCst);
    }
}

impl Clock for SimClock {
    fn now_micros(&self) -> u64 {
        let elapsed = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        let reading = self.base_micros.saturating_add(elapsed);
        let offset = self.offset_micros.load(Ordering::SeqCst);
        if offset >= 0 {
            reading.saturating_add(offset.unsigned_abs())
        } else {
            reading.saturating_sub(offset.unsigned_abs())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn follows_simulated_time_and_jumps_both_ways() {
        let clock = SimClock::new(1_000_000);
        tokio::time::advance(Duration::from_millis(3)).await;
        assert_eq!(clock.now_micros(), 1_003_000);
        clock.jump(5_000_000);
        assert_eq!(clock.now_micros(), 6_003_000);
        clock.jump(-6_000_000);
        assert_eq!(clock.now_micros(), 3_000);
        clock.jump(-10_000);
        assert_eq!(clock.now_micros(), 0, "a clock before the epoch reads 0");
    }
}
