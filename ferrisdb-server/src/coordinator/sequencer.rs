//! The sequencer: hands out commit versions.
//!
//! Versions track wall time in microseconds, so they advance about [`Version::PER_SECOND`] per
//! second and the MVCC window ([`Version::MVCC_WINDOW`], 5 s) means the same in versions and in
//! time. Each version is `max(last + 1, now_micros)`: strictly increasing, and never backwards
//! even when the wall clock jumps back (versions then advance by one per call until the clock
//! catches up). After a restart, [`Sequencer::recover`] starts right after the last durable
//! version (or at the clock, if later). Transactions that read in the previous generation must
//! not commit against conflict history the new generation never saw: the resolver of the new
//! generation refuses every read version below its first version
//! ([`super::resolver::Resolver::starting_at`]). Versions therefore keep following the
//! clock across restarts, which keeps idempotency-id retention (counted in versions) close to
//! wall time however often the coordinator restarts.

use ferrisdb_core::{Error, Version};

use super::clock::{Clock, SystemClock};

/// Hands out strictly increasing versions that follow the wall clock.
#[derive(Debug)]
pub struct Sequencer<C: Clock = SystemClock> {
    clock: C,
    /// The last version handed out (or the floor set by recovery, minus one).
    last: Version,
}

impl<C: Clock> Sequencer<C> {
    /// A sequencer for a brand-new database: nothing handed out yet.
    pub fn new(clock: C) -> Self {
        Sequencer {
            clock,
            last: Version::ZERO,
        }
    }

    /// A sequencer for a database whose last durable commit is `last_durable`: the first
    /// version handed out is `max(last_durable + 1, now)`.
    pub fn recover(clock: C, last_durable: Version) -> Self {
        let floor = last_durable.get().saturating_add(1);
        let start = floor.max(clock.now_micros());
        Sequencer {
            clock,
            last: Version(start).saturating_sub(1),
        }
    }

    /// The next version: `max(last + 1, now)`.
    ///
    /// Fails only when the version space is exhausted (`u64::MAX`, about 584,000 years of
    /// microseconds).
    pub fn next_version(&mut self) -> Result<Version, Error> {
        let after_last = self
            .last
            .get()
            .checked_add(1)
            .ok_or_else(|| Error::Internal("version space exhausted".into()))?;
        self.last = Version(after_last.max(self.clock.now_micros()));
        Ok(self.last)
    }

    /// The last version handed out (the recovery floor minus one before the first call).
    pub fn last_version(&self) -> Version {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::clock::ManualClock;

    #[test]
    fn follows_the_clock_and_stays_strictly_increasing() {
        let clock = ManualClock::new(1_000);
        let mut s = Sequencer::new(clock.clone());
        assert_eq!(s.next_version().unwrap(), Version(1_000));
        // Same microsecond: still strictly increasing.
        assert_eq!(s.next_version().unwrap(), Version(1_001));
        clock.advance(500);
        assert_eq!(s.next_version().unwrap(), Version(1_500));
        assert_eq!(s.last_version(), Version(1_500));
    }

    #[test]
    fn never_goes_backwards_when_the_clock_does() {
        let clock = ManualClock::new(10_000);
        let mut s = Sequencer::new(clock.clone());
        assert_eq!(s.next_version().unwrap(), Version(10_000));
        clock.set(5);
        assert_eq!(s.next_version().unwrap(), Version(10_001));
        assert_eq!(s.next_version().unwrap(), Version(10_002));
        clock.set(20_000);
        assert_eq!(s.next_version().unwrap(), Version(20_000));
    }

    #[test]
    fn recovery_continues_after_the_last_durable_version() {
        // Clock behind the old generation: the next version after it.
        let clock = ManualClock::new(100);
        let mut s = Sequencer::recover(clock.clone(), Version(7_000_000));
        assert_eq!(s.next_version().unwrap(), Version(7_000_001));
        // Clock far ahead: the clock decides.
        clock.set(50_000_000);
        let mut s = Sequencer::recover(clock, Version(7_000_000));
        assert_eq!(s.next_version().unwrap(), Version(50_000_000));
    }

    #[test]
    fn exhausted_version_space_is_an_error_not_a_repeat() {
        let clock = ManualClock::new(u64::MAX);
        let mut s = Sequencer::new(clock);
        assert_eq!(s.next_version().unwrap(), Version::MAX);
        assert!(matches!(s.next_version(), Err(Error::Internal(_))));
    }
}
