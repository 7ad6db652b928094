//! Versions: the MVCC timestamps of FerrisDB.
//!
//! The coordinator's sequencer hands out versions that advance about
//! [`Version::PER_SECOND`] per second of wall time and never go backwards. Every committed
//! transaction has one commit version; every read happens at one read version.

use std::fmt;
use std::time::Duration;

/// How long the committed version may stand still before the coordinator commits an empty
/// batch to move it. Read versions are the committed version, and the resolver's 5-second
/// window follows commit versions (≈ wall time): without these ticks a read version taken after
/// a quiet spell would already be too old. Followers of the log rely on it too: a live
/// coordinator's committed version moves at least this often, so a silent stream is dead.
pub const IDLE_TICK: Duration = Duration::from_millis(250);

/// A point in the database's history. Larger is newer.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Version(pub u64);

impl Version {
    /// The version before anything was written.
    pub const ZERO: Version = Version(0);
    /// The largest representable version.
    pub const MAX: Version = Version(u64::MAX);
    /// How many versions the sequencer advances per second of wall time.
    pub const PER_SECOND: u64 = 1_000_000;
    /// How far back (in versions) a read version may lie: the MVCC window, 5 seconds.
    pub const MVCC_WINDOW: u64 = 5 * Self::PER_SECOND;

    /// The raw number.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The next version, saturating at [`Version::MAX`].
    pub const fn next(self) -> Version {
        Version(self.0.saturating_add(1))
    }

    /// This version minus `n`, saturating at zero.
    pub const fn saturating_sub(self, n: u64) -> Version {
        Version(self.0.saturating_sub(n))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<u64> for Version {
    fn from(v: u64) -> Self {
        Version(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordering_and_arithmetic() {
        assert!(Version(2) > Version(1));
        assert_eq!(Version(5).next(), Version(6));
        assert_eq!(Version::MAX.next(), Version::MAX);
        assert_eq!(Version(3).saturating_sub(10), Version::ZERO);
        assert_eq!(Version::MVCC_WINDOW, 5_000_000);
        assert_eq!(Version(42).to_string(), "42");
    }
}
