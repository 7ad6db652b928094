//! A transaction's first read in one round trip instead of two.
//!
//! A transaction needs a read version before it can read: one round trip to the coordinator,
//! then the read itself. The gRPC backend sends both at once: the `GetReadVersion` request, and
//! the read (a point read, or a range read's first piece) to a storage server with `newest`
//! set, which reads at the newest version that server has applied and reports it. Every version a storage server applies is committed
//! (log servers only serve committed versions), so when that version is at least the one the
//! coordinator handed out it is a valid read version — as new as every commit acknowledged
//! before the transaction began, and committed before the read answered — and the transaction
//! takes it, with the value already read. Otherwise (the replica had not yet applied what the
//! coordinator counts as committed) the transaction takes the coordinator's version and reads
//! again: correct either way, one extra read when it misses.
//!
//! The storage server waits briefly (50 ms) until it has applied at least
//! [`FirstReadPolicy::floor`], the newest version this client has seen committed or handed out,
//! so a client's read right after its own commit waits for that commit to arrive instead of
//! missing; a replica that lags further answers at once with its older version (a miss), so it
//! does not hold the transaction for its full future-version wait before the read again.
//!
//! The read-version requests are still shared between concurrent transactions
//! (`read_version.rs`), so under load this costs nothing extra while it hits: the same requests
//! and the same reads, with each transaction's two waits overlapped instead of added (a closed
//! loop of 128 clients reads ~30% more per second). Misses cost a storage read each, so
//! [`FirstReadPolicy`] stops trying while they are frequent (other clients' commits keep the
//! coordinator ahead of the replicas).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use ferrisdb_core::Version;

/// Added to the score by a miss.
const MISS_WEIGHT: u32 = 8;
/// Speculation is tried while the score is below this.
const TRY_BELOW: u32 = 8;
/// The score never climbs above this, so a run of misses is forgotten after this many
/// transactions.
const MAX_SCORE: u32 = 64;

/// When to read at a storage server's newest version, and the least version to ask for.
#[derive(Debug, Default)]
pub(crate) struct FirstReadPolicy {
    /// The newest version this client saw committed (its commits) or handed out (read versions).
    floor: AtomicU64,
    /// Recent misses weigh [`MISS_WEIGHT`], hits and skipped transactions take one off.
    score: AtomicU32,
}

impl FirstReadPolicy {
    /// Notes a version known committed (a read version or a commit version).
    pub fn saw(&self, version: Version) {
        self.floor.fetch_max(version.get(), Ordering::Relaxed);
    }

    /// The least version a first read asks a storage server for (at least 1, the first valid
    /// version).
    pub fn floor(&self) -> Version {
        Version(self.floor.load(Ordering::Relaxed).max(1))
    }

    /// Whether to read at the newest version this time. A transaction that does not try still
    /// takes one off the score, so trying resumes after a while.
    pub fn worth_trying(&self) -> bool {
        let score = self.score.load(Ordering::Relaxed);
        if score < TRY_BELOW {
            return true;
        }
        self.take_one();
        false
    }

    /// Records the outcome of a try: a hit when the newest version read was at least the
    /// coordinator's read version.
    pub fn record(&self, hit: bool) {
        if hit {
            self.take_one();
        } else {
            let _ = self
                .score
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                    Some((s + MISS_WEIGHT).min(MAX_SCORE))
                });
        }
    }

    fn take_one(&self) {
        let _ = self
            .score
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| s.checked_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_is_the_newest_version_seen_and_never_zero() {
        let p = FirstReadPolicy::default();
        assert_eq!(p.floor(), Version(1));
        p.saw(Version(50));
        p.saw(Version(20));
        assert_eq!(p.floor(), Version(50));
    }

    #[test]
    fn hits_keep_trying() {
        let p = FirstReadPolicy::default();
        for _ in 0..1000 {
            assert!(p.worth_trying());
            p.record(true);
        }
    }

    #[test]
    fn constant_misses_stop_most_tries_and_a_pause_lets_them_resume() {
        let p = FirstReadPolicy::default();
        let mut tries = 0;
        for _ in 0..1000 {
            if p.worth_trying() {
                tries += 1;
                p.record(false);
            }
        }
        // Each miss costs MISS_WEIGHT skipped transactions: about one try in nine.
        assert!((100..=130).contains(&tries), "{tries} tries in 1000");
        // Skips alone bring the score back under the threshold.
        let mut skipped = 0;
        while !p.worth_trying() {
            skipped += 1;
            assert!(skipped <= MAX_SCORE, "never tried again");
        }
    }

    #[test]
    fn occasional_misses_hardly_matter() {
        let p = FirstReadPolicy::default();
        let mut tries = 0;
        for i in 0..1000 {
            if p.worth_trying() {
                tries += 1;
                p.record(i % 10 != 0);
            }
        }
        assert!(tries >= 900, "{tries} tries in 1000 with one miss in ten");
    }
}
