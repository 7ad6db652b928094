//! The resolver: optimistic, serializable conflict detection for the commit path.
//!
//! A transaction read its read conflict ranges at its read version and wants to commit at a
//! newer commit version. It conflicts if any of its read ranges intersects a range written by a
//! transaction that committed at a version greater than its read version: what it read has
//! changed since. Transactions are resolved one at a time in commit order; the transactions of
//! one commit batch share a commit version, and an accepted transaction's writes are visible to
//! the later transactions of the same batch (they are serialized before them).
//!
//! The resolver keeps recently committed write ranges: single-key writes in an ordered map
//! (key → newest write version) and wider ranges in a queue ordered by version, which a check
//! scans newest first and stops at the read version. Everything at or below the *oldest
//! resolvable version* is pruned: ranges and the memory accounting at once, point entries in
//! amortized sweeps (an entry at or below the oldest version can never conflict, since every
//! checked read version is at least that old, so it may linger until the next sweep). That version is at least `newest commit − window` (the MVCC
//! window) and is pushed further forward when the retained history exceeds the memory cap. A
//! transaction with read conflict ranges whose read version is older than it fails with
//! `TransactionTooOld`, because the writes it would have to be checked against are gone.
//! Blind writes (no read ranges) never conflict and are never too old, as in FoundationDB.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;

use ferrisdb_core::{Error, KeyRange, Version};

/// Approximate bookkeeping bytes per retained write, on top of its key bytes.
const ENTRY_OVERHEAD: usize = 64;

/// Resolver tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolverConfig {
    /// How far (in versions) a read version may lie behind the newest commit version.
    pub window: u64,
    /// Cap on retained history, in approximate bytes; beyond it the oldest resolvable version
    /// advances early instead of the history growing.
    pub max_retained_bytes: usize,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        ResolverConfig {
            window: Version::MVCC_WINDOW,
            max_retained_bytes: 256 << 20,
        }
    }
}

/// Why a transaction may not commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveError {
    /// A read range was written by a transaction committed after the read version.
    Conflict,
    /// The read version is older than the oldest resolvable version.
    TooOld {
        /// The transaction's read version.
        read_version: Version,
        /// The oldest read version the resolver can still check.
        oldest: Version,
    },
    /// The commit version is older than one already resolved (a caller bug).
    VersionRegression {
        /// The commit version passed in.
        commit_version: Version,
        /// The newest commit version resolved so far.
        newest: Version,
    },
}

impl From<ResolveError> for Error {
    fn from(e: ResolveError) -> Self {
        match e {
            ResolveError::Conflict => Error::NotCommitted,
            ResolveError::TooOld {
                read_version,
                oldest,
            } => Error::TransactionTooOld {
                read_version: read_version.get(),
                oldest: oldest.get(),
            },
            ResolveError::VersionRegression {
                commit_version,
                newest,
            } => Error::Internal(format!(
                "resolver got commit version {commit_version} after {newest}"
            )),
        }
    }
}

/// The conflict ranges of one transaction, for [`Resolver::resolve_batch`].
#[derive(Debug, Clone, Copy)]
pub struct TxnConflicts<'a> {
    /// The version the transaction read at.
    pub read_version: Version,
    /// Ranges read.
    pub read_ranges: &'a [KeyRange],
    /// Ranges written.
    pub write_ranges: &'a [KeyRange],
}

/// The writes recorded at one commit version, in the expiry queue.
#[derive(Debug)]
struct Recorded {
    version: Version,
    /// Approximate bytes accounted for them.
    bytes: usize,
    /// How many were single-key writes (entries of `points`, perhaps since overwritten).
    points: usize,
}

/// Point entries are swept once at least this many expired, and at least half the map.
const MIN_SWEEP: usize = 1024;

/// Conflict detection over recently committed writes.
#[derive(Debug)]
pub struct Resolver {
    config: ResolverConfig,
    /// Single-key writes: key → newest version it was written at. Keys are copied out of the
    /// request (a `Bytes` would keep the whole request buffer alive for the window).
    points: BTreeMap<Box<[u8]>, Version>,
    /// Point writes pruned from the accounting but perhaps still in `points`.
    expired_points: usize,
    /// Wider range writes, in commit order.
    ranges: VecDeque<(KeyRange, Version)>,
    /// The retained writes per commit version, oldest first, for pruning.
    expiry: VecDeque<Recorded>,
    /// Writes at or below this version are pruned; older read versions are too old.
    oldest: Version,
    /// The newest commit version resolved.
    newest: Version,
    /// Approximate bytes retained.
    retained: usize,
}

impl Resolver {
    /// An empty resolver.
    pub fn new(config: ResolverConfig) -> Self {
        Resolver {
            config,
            points: BTreeMap::new(),
            expired_points: 0,
            ranges: VecDeque::new(),
            expiry: VecDeque::new(),
            oldest: Version::ZERO,
            newest: Version::ZERO,
            retained: 0,
        }
    }

    /// An empty resolver for a generation whose first version is `first`: it has no history
    /// from before `first`, so read versions below it are refused as too old (a transaction
    /// that read in an earlier generation could conflict with writes this resolver never
    /// saw).
    pub fn starting_at(config: ResolverConfig, first: Version) -> Self {
        let mut r = Resolver::new(config);
        r.oldest = first;
        r
    }

    /// Resolves one transaction committing at `commit_version`; on success records its write
    /// ranges at that version.
    ///
    /// Commit versions must not decrease between calls (the transactions of one batch share
    /// one); `read_version` is expected to be below `commit_version`.
    pub fn resolve(
        &mut self,
        read_version: Version,
        read_ranges: &[KeyRange],
        write_ranges: &[KeyRange],
        commit_version: Version,
    ) -> Result<(), ResolveError> {
        if commit_version < self.newest {
            return Err(ResolveError::VersionRegression {
                commit_version,
                newest: self.newest,
            });
        }
        self.newest = commit_version;
        self.advance_oldest(commit_version.saturating_sub(self.config.window));
        if !read_ranges.is_empty() && read_version < self.oldest {
            return Err(ResolveError::TooOld {
                read_version,
                oldest: self.oldest,
            });
        }
        if read_ranges
            .iter()
            .any(|r| self.written_after(r, read_version))
        {
            return Err(ResolveError::Conflict);
        }
        for w in write_ranges {
            self.record(w, commit_version);
        }
        self.enforce_cap();
        Ok(())
    }

    /// Resolves the transactions of one batch in order, all at `commit_version`.
    pub fn resolve_batch(
        &mut self,
        commit_version: Version,
        txns: &[TxnConflicts<'_>],
    ) -> Vec<Result<(), ResolveError>> {
        txns.iter()
            .map(|t| {
                self.resolve(
                    t.read_version,
                    t.read_ranges,
                    t.write_ranges,
                    commit_version,
                )
            })
            .collect()
    }

    /// The oldest read version that can still be resolved.
    pub fn oldest_version(&self) -> Version {
        self.oldest
    }

    /// The newest commit version resolved.
    pub fn newest_version(&self) -> Version {
        self.newest
    }

    /// Approximate bytes of retained history.
    pub fn retained_bytes(&self) -> usize {
        self.retained
    }

    /// True if a retained write newer than `read_version` intersects `range`.
    fn written_after(&self, range: &KeyRange, read_version: Version) -> bool {
        if range.is_empty() {
            return false;
        }
        let end = if range.is_unbounded() {
            Bound::Unbounded
        } else {
            Bound::Excluded(&range.end[..])
        };
        let bounds: (Bound<&[u8]>, Bound<&[u8]>) = (Bound::Included(&range.begin[..]), end);
        if self
            .points
            .range::<[u8], _>(bounds)
            .any(|(_, v)| *v > read_version)
        {
            return true;
        }
        self.ranges
            .iter()
            .rev()
            .take_while(|(_, v)| *v > read_version)
            .any(|(w, _)| w.intersects(range))
    }

    /// Records a write range at `version`.
    fn record(&mut self, range: &KeyRange, version: Version) {
        if range.is_empty() {
            return;
        }
        let (size, point) = if is_single_key(range) {
            match self.points.get_mut(&range.begin[..]) {
                Some(newest) => *newest = version,
                None => {
                    self.points.insert(Box::from(&range.begin[..]), version);
                }
            }
            (range.begin.len() + ENTRY_OVERHEAD, 1)
        } else {
            self.ranges.push_back((range.clone(), version));
            (range.begin.len() + range.end.len() + ENTRY_OVERHEAD, 0)
        };
        match self.expiry.back_mut() {
            Some(last) if last.version == version => {
                last.bytes += size;
                last.points += point;
            }
            _ => self.expiry.push_back(Recorded {
                version,
                bytes: size,
                points: point,
            }),
        }
        self.retained += size;
    }

    /// Raises the oldest resolvable version to `to` and prunes the writes at or below it.
    fn advance_oldest(&mut self, to: Version) {
        // Records at or below the oldest version can still be queued: transactions of one
        // batch share a commit version, and the memory cap may have made that version the
        // oldest after the first of them. They are pruned like any other.
        let stale = self
            .expiry
            .front()
            .is_some_and(|r| r.version <= self.oldest);
        if to <= self.oldest && !stale {
            return;
        }
        self.oldest = self.oldest.max(to);
        let to = self.oldest;
        while let Some(front) = self.expiry.front() {
            if front.version > to {
                break;
            }
            self.retained -= front.bytes;
            self.expired_points += front.points;
            self.expiry.pop_front();
        }
        while self.ranges.front().is_some_and(|(_, v)| *v <= to) {
            self.ranges.pop_front();
        }
        if self.expired_points >= MIN_SWEEP.max(self.points.len() / 2) || self.expiry.is_empty() {
            self.points.retain(|_, v| *v > to);
            self.expired_points = 0;
        }
    }

    /// Prunes whole versions, oldest first, until the history fits the memory cap.
    fn enforce_cap(&mut self) {
        while self.retained > self.config.max_retained_bytes {
            let Some(version) = self.expiry.front().map(|r| r.version) else {
                break;
            };
            self.advance_oldest(version);
        }
    }
}

/// True if `range` holds exactly one key (`[k, k\0)`).
fn is_single_key(range: &KeyRange) -> bool {
    range.end.len() == range.begin.len() + 1
        && range.end.starts_with(&range.begin)
        && range.end.last() == Some(&0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn r(begin: &str, end: &str) -> KeyRange {
        KeyRange::new(begin.to_owned(), end.to_owned()).unwrap()
    }

    fn key(k: &str) -> KeyRange {
        KeyRange::single(k.as_bytes())
    }

    fn resolver(window: u64) -> Resolver {
        Resolver::new(ResolverConfig {
            window,
            max_retained_bytes: usize::MAX,
        })
    }

    #[test]
    fn a_batch_sharing_a_commit_version_past_the_memory_cap_is_pruned() {
        // The first write alone exceeds the cap, which makes its commit version the oldest;
        // the second, in the same batch, queues a record at that version. Pruning it used to
        // loop for ever (the coordinator would hang).
        let mut res = Resolver::new(ResolverConfig {
            window: 1_000,
            max_retained_bytes: 10,
        });
        let big = KeyRange::new(vec![b'a'; 50], vec![b'b'; 50]).unwrap();
        res.resolve(Version(5), &[], std::slice::from_ref(&big), Version(10))
            .unwrap();
        res.resolve(Version(5), &[], std::slice::from_ref(&big), Version(10))
            .unwrap();
        assert!(res.retained_bytes() <= 10);
        let err = res
            .resolve(Version(5), std::slice::from_ref(&big), &[], Version(11))
            .unwrap_err();
        assert!(matches!(err, ResolveError::TooOld { .. }), "{err:?}");
        res.resolve(Version(10), &[big], &[], Version(11)).unwrap();
    }

    #[test]
    fn read_after_newer_write_conflicts_older_write_does_not() {
        let mut res = resolver(100);
        res.resolve(Version(0), &[], &[key("a")], Version(10))
            .unwrap();
        // Read at 10 saw the write at 10: no conflict.
        assert_eq!(
            res.resolve(Version(10), &[key("a")], &[], Version(11)),
            Ok(())
        );
        // Read at 9 did not: conflict.
        assert_eq!(
            res.resolve(Version(9), &[key("a")], &[], Version(12)),
            Err(ResolveError::Conflict)
        );
        // Other keys are unaffected.
        assert_eq!(
            res.resolve(Version(9), &[key("b")], &[], Version(13)),
            Ok(())
        );
    }

    #[test]
    fn ranges_intersect_points_and_ranges() {
        let mut res = resolver(100);
        res.resolve(Version(0), &[], &[r("m", "p")], Version(10))
            .unwrap();
        res.resolve(Version(0), &[], &[key("c")], Version(11))
            .unwrap();
        assert_eq!(
            res.resolve(Version(5), &[key("n")], &[], Version(12)),
            Err(ResolveError::Conflict)
        );
        assert_eq!(
            res.resolve(Version(5), &[r("a", "d")], &[], Version(12)),
            Err(ResolveError::Conflict)
        );
        assert_eq!(
            res.resolve(Version(5), &[r("p", "")], &[], Version(12)),
            Ok(())
        );
        assert_eq!(
            res.resolve(Version(5), &[r("o", "")], &[], Version(12)),
            Err(ResolveError::Conflict)
        );
        assert_eq!(
            res.resolve(Version(5), &[r("d", "m")], &[], Version(12)),
            Ok(())
        );
    }

    #[test]
    fn accepted_writes_are_visible_within_the_batch() {
        let mut res = resolver(100);
        let w = [key("x")];
        let txns = [
            TxnConflicts {
                read_version: Version(5),
                read_ranges: &w,
                write_ranges: &w,
            },
            TxnConflicts {
                read_version: Version(5),
                read_ranges: &w,
                write_ranges: &w,
            },
            TxnConflicts {
                read_version: Version(5),
                read_ranges: &[],
                write_ranges: &w,
            },
        ];
        let out = res.resolve_batch(Version(10), &txns);
        assert_eq!(out, vec![Ok(()), Err(ResolveError::Conflict), Ok(())]);
    }

    #[test]
    fn reads_older_than_the_window_are_too_old_and_history_is_pruned() {
        let mut res = resolver(100);
        res.resolve(Version(0), &[], &[key("a"), r("b", "c")], Version(10))
            .unwrap();
        assert!(res.retained_bytes() > 0);
        let err = res
            .resolve(Version(50), &[key("z")], &[], Version(200))
            .unwrap_err();
        assert_eq!(
            err,
            ResolveError::TooOld {
                read_version: Version(50),
                oldest: Version(100)
            }
        );
        assert_eq!(
            Error::from(err).code(),
            ferrisdb_core::ErrorCode::TransactionTooOld
        );
        assert_eq!(res.retained_bytes(), 0);
        // Blind writes are never too old.
        assert_eq!(
            res.resolve(Version(1), &[], &[key("a")], Version(201)),
            Ok(())
        );
    }

    #[test]
    fn expired_point_writes_are_swept_and_never_conflict_meanwhile() {
        let mut res = resolver(1_000);
        let keys =
            |v: u64| (0..10u64).map(move |i| KeyRange::single(format!("k{v}-{i}").as_bytes()));
        for v in 1..=20_000u64 {
            let writes: Vec<KeyRange> = keys(v).collect();
            res.resolve(Version(v - 1), &[], &writes, Version(v))
                .unwrap();
            // Live: 1,000 versions × 10 keys; expired entries wait for a sweep, which comes
            // once at least half the map (and MIN_SWEEP entries) has expired.
            assert!(
                res.points.len() <= 2 * 10_000 + MIN_SWEEP + 10,
                "{}",
                res.points.len()
            );
            // A key written just before the window's start may still be in the map, but a
            // read at the oldest version does not conflict with it.
            if v > 1_001 {
                let old: Vec<KeyRange> = keys(v - 1_000).collect();
                assert_eq!(
                    res.resolve(Version(v - 1_000), &old, &[], Version(v)),
                    Ok(())
                );
            }
        }
        // With everything expired, one advance empties the history.
        res.resolve(Version(0), &[], &[], Version(40_000)).unwrap();
        assert!(res.points.is_empty());
        assert_eq!(res.retained_bytes(), 0);
    }

    #[test]
    fn memory_cap_advances_the_oldest_version() {
        let mut res = Resolver::new(ResolverConfig {
            window: 1_000,
            max_retained_bytes: 300,
        });
        for v in 1..=10u64 {
            res.resolve(Version(0), &[], &[key(&format!("k{v}"))], Version(v))
                .unwrap();
            assert!(res.retained_bytes() <= 300);
        }
        assert!(res.oldest_version() > Version::ZERO);
        let oldest = res.oldest_version();
        let err = res.resolve(oldest.saturating_sub(1), &[key("q")], &[], Version(11));
        assert!(matches!(err, Err(ResolveError::TooOld { .. })));
        // Recent writes are still checked.
        assert_eq!(
            res.resolve(Version(9), &[key("k10")], &[], Version(11)),
            Err(ResolveError::Conflict)
        );
    }

    #[test]
    fn commit_version_regression_is_rejected() {
        let mut res = resolver(100);
        res.resolve(Version(0), &[], &[], Version(10)).unwrap();
        let err = res.resolve(Version(0), &[], &[], Version(9)).unwrap_err();
        assert!(matches!(Error::from(err), Error::Internal(_)));
    }

    #[test]
    fn single_key_detection() {
        assert!(is_single_key(&key("abc")));
        assert!(is_single_key(&key("")));
        assert!(!is_single_key(&r("abc", "abd")));
        assert!(!is_single_key(&r("a", "")));
    }

    /// Brute-force model: every accepted write, forever.
    #[derive(Default)]
    struct Model {
        writes: Vec<(KeyRange, Version)>,
    }

    impl Model {
        fn conflicts(&self, read_version: Version, reads: &[KeyRange]) -> bool {
            self.writes
                .iter()
                .any(|(w, v)| *v > read_version && reads.iter().any(|rr| rr.intersects(w)))
        }
    }

    fn arb_key() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(b'a'..=b'd', 0..3)
    }

    fn arb_range() -> impl Strategy<Value = KeyRange> {
        prop_oneof![
            arb_key().prop_map(|k| KeyRange::single(&k)),
            (arb_key(), arb_key(), any::<bool>()).prop_map(|(a, b, unbounded)| {
                let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
                let hi = if unbounded { Vec::new() } else { hi };
                KeyRange {
                    begin: lo.into(),
                    end: hi.into(),
                }
            }),
        ]
    }

    fn arb_txn() -> impl Strategy<Value = (u64, u64, Vec<KeyRange>, Vec<KeyRange>)> {
        (
            0u64..3,
            1u64..14,
            proptest::collection::vec(arb_range(), 0..3),
            proptest::collection::vec(arb_range(), 0..3),
        )
    }

    proptest! {
        #[test]
        fn matches_brute_force_model(
            txns in proptest::collection::vec(arb_txn(), 1..60),
            small_cap in any::<bool>(),
        ) {
            const WINDOW: u64 = 10;
            let cap = if small_cap { 400 } else { usize::MAX };
            let mut res = Resolver::new(ResolverConfig { window: WINDOW, max_retained_bytes: cap });
            let mut model = Model::default();
            let mut commit = 20u64;
            for (step, lag, reads, writes) in txns {
                commit += step;
                let read_version = Version(commit.saturating_sub(lag));
                let commit_version = Version(commit);
                let window_oldest = commit_version.saturating_sub(WINDOW);
                let got = res.resolve(read_version, &reads, &writes, commit_version);
                let model_too_old = !reads.is_empty() && read_version < window_oldest;
                let model_conflict = model.conflicts(read_version, &reads);
                match &got {
                    Ok(()) => {
                        prop_assert!(!model_too_old && !model_conflict);
                        model.writes.extend(writes.iter().map(|w| (w.clone(), commit_version)));
                    }
                    Err(ResolveError::Conflict) => prop_assert!(model_conflict),
                    Err(ResolveError::TooOld { oldest, .. }) => {
                        prop_assert!(read_version < *oldest && !reads.is_empty());
                        prop_assert!(small_cap || model_too_old);
                    }
                    Err(e) => prop_assert!(false, "unexpected {e:?}"),
                }
                if !small_cap {
                    let expected = if model_too_old {
                        Err(ResolveError::TooOld { read_version, oldest: window_oldest })
                    } else if model_conflict {
                        Err(ResolveError::Conflict)
                    } else {
                        Ok(())
                    };
                    prop_assert_eq!(got, expected);
                }
                prop_assert!(res.retained_bytes() <= cap);
            }
        }
    }
}
