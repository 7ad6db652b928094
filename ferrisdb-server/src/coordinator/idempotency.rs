//! Idempotency ids: how a retried commit that had already landed is recognised.
//!
//! A commit may carry an id (1 to 255 bytes, chosen by the client, the same on every retry of
//! one logical transaction) and the read version of the first attempt that carried it. When
//! the commit batcher accepts such a transaction it
//!
//! 1. adds the record `\xff\x02/idmp/<versionstamp>` → id to the transaction's mutations
//!    (so the record is durable, and committed, exactly when the transaction is), and
//! 2. remembers id → versionstamp in the [`IdempotencyTable`], which covers every commit of
//!    this process younger than the retention.
//!
//! A later commit with the same id is then answered with the first commit's version and
//! stamp and `already_committed`, without being resolved or applied. Ids of commits made
//! before this process started (a retry after the coordinator was restarted) are not in the
//! table: [`find_stored`] reads the records of the versions between the first attempt and
//! the process's first version from the storage servers (every such commit is durable in the
//! recovered log, so storage servers serve it). A first attempt older than the retention
//! cannot be checked any more and fails with `CommitUnknownResultFatal`; [`clean_expired`]
//! clears the records past the retention.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use ferrisdb_client::{Database, RangeOptions, TransactionOption};
use ferrisdb_core::{Error, Result, Version, Versionstamp, system_keys};

/// How long ids are remembered by default: longer than the client library's default
/// transaction timeout (30 s), so every retry of a default `Database::run` can be checked.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(60);

/// Extra time stored records are kept past the retention, so a lookup that checked the
/// retention a moment before the cleaner ran still finds them.
const CLEANER_MARGIN: Duration = Duration::from_secs(10);

/// The retention in versions.
pub fn retention_versions(retention: Duration) -> u64 {
    let micros = u64::try_from(retention.as_micros()).unwrap_or(u64::MAX);
    micros.saturating_mul(Version::PER_SECOND / 1_000_000)
}

/// The refusal of a commit whose first attempt is older than the retention.
pub fn expired(first_read: Version, newest: Version, retention: u64) -> Error {
    Error::CommitUnknownResultFatal(format!(
        "the transaction's first attempt read at version {first_read}, more than the \
         idempotency retention ({:?}) before the newest version {newest}: whether it \
         committed can no longer be checked, so retrying it is not safe",
        Duration::from_micros(retention.saturating_mul(1_000_000) / Version::PER_SECOND)
    ))
}

/// Ids of recent commits (owned by the commit batcher; see the module docs).
#[derive(Debug)]
pub struct IdempotencyTable {
    by_id: HashMap<Bytes, Versionstamp>,
    /// Ids in commit order, for expiry.
    by_age: VecDeque<(Versionstamp, Bytes)>,
    retention: u64,
}

impl IdempotencyTable {
    /// An empty table keeping ids for `retention` versions.
    pub fn new(retention: u64) -> Self {
        IdempotencyTable {
            by_id: HashMap::new(),
            by_age: VecDeque::new(),
            retention,
        }
    }

    /// The retention in versions.
    pub fn retention(&self) -> u64 {
        self.retention
    }

    /// The stamp of the commit that carried `id`, if it is remembered.
    pub fn lookup(&self, id: &[u8]) -> Option<Versionstamp> {
        self.by_id.get(id).copied()
    }

    /// Remembers that the commit stamped `stamp` carried `id` (stamps arrive in order).
    pub fn record(&mut self, id: Bytes, stamp: Versionstamp) {
        self.by_id.insert(id.clone(), stamp);
        self.by_age.push_back((stamp, id));
    }

    /// Forgets ids committed more than the retention before `newest`.
    pub fn expire(&mut self, newest: Version) {
        let oldest_kept = newest.saturating_sub(self.retention);
        while let Some((stamp, _)) = self.by_age.front() {
            if stamp.version() >= oldest_kept {
                break;
            }
            if let Some((stamp, id)) = self.by_age.pop_front()
                && self.by_id.get(&id) == Some(&stamp)
            {
                self.by_id.remove(&id);
            }
        }
    }

    /// Ids remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether no id is remembered.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// The stamp of a stored idempotency record for `id` among commits at versions in
/// `(after, through]`, read from the storage servers.
pub async fn find_stored(
    db: &Database,
    id: &Bytes,
    after: Version,
    through: Version,
) -> Result<Option<Versionstamp>> {
    let range = system_keys::idempotency_range(after, through);
    if range.is_empty() {
        return Ok(None);
    }
    let tx = db.create_transaction();
    tx.set_option(TransactionOption::AccessSystemKeys);
    let mut pairs = tx
        .snapshot()
        .get_range(&range.begin, &range.end, RangeOptions::default());
    while let Some(pair) = pairs.try_next().await? {
        if pair.value == *id {
            return system_keys::idempotency_stamp(&pair.key)
                .map(Some)
                .ok_or_else(|| {
                    Error::Internal(format!(
                        "idempotency record key {} is not the prefix and a 10-byte stamp",
                        ferrisdb_core::keys::escape(&pair.key)
                    ))
                });
        }
    }
    Ok(None)
}

/// Clears stored idempotency records older than the retention (plus a margin), every
/// quarter of the retention. `newest` gives the newest committed version; the task ends when
/// it gives `None` (the coordinator is gone).
pub async fn clean_expired(
    db: Database,
    retention: Duration,
    newest: impl Fn() -> Option<Version>,
) {
    let keep = retention_versions(retention.saturating_add(CLEANER_MARGIN));
    let period = (retention / 4).max(Duration::from_secs(1));
    loop {
        tokio::time::sleep(period).await;
        let Some(newest) = newest() else {
            return;
        };
        let cutoff = newest.saturating_sub(keep);
        if cutoff == Version::ZERO {
            continue;
        }
        let range = system_keys::idempotency_range(Version::ZERO, cutoff);
        let result = db
            .run(|tx| {
                let range = range.clone();
                async move {
                    tx.set_option(TransactionOption::AccessSystemKeys);
                    tx.clear_range(&range.begin, &range.end)
                }
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, %cutoff, "clearing expired idempotency records failed; retrying later");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(v: u64, i: u16) -> Versionstamp {
        Versionstamp::new(Version(v), i)
    }

    #[test]
    fn remembers_ids_until_they_pass_the_retention() {
        let mut t = IdempotencyTable::new(100);
        t.record("a".into(), stamp(10, 0));
        t.record("b".into(), stamp(50, 3));
        assert_eq!(t.lookup(b"a"), Some(stamp(10, 0)));
        t.expire(Version(110));
        assert_eq!(
            t.lookup(b"a"),
            Some(stamp(10, 0)),
            "10 >= 110 - 100 is kept"
        );
        t.expire(Version(111));
        assert_eq!(t.lookup(b"a"), None);
        assert_eq!(t.lookup(b"b"), Some(stamp(50, 3)));
        assert_eq!(t.len(), 1);
        t.expire(Version(1000));
        assert!(t.is_empty());
    }

    #[test]
    fn an_id_reused_later_keeps_its_newest_commit() {
        let mut t = IdempotencyTable::new(100);
        t.record("a".into(), stamp(10, 0));
        t.record("a".into(), stamp(90, 1));
        t.expire(Version(150));
        assert_eq!(t.lookup(b"a"), Some(stamp(90, 1)));
    }

    #[test]
    fn retention_converts_to_versions() {
        assert_eq!(retention_versions(Duration::from_secs(60)), 60_000_000);
        assert_eq!(retention_versions(Duration::MAX), u64::MAX);
        let err = expired(Version(1), Version(70_000_000), 60_000_000);
        assert!(matches!(err, Error::CommitUnknownResultFatal(_)));
        assert!(err.to_string().contains("(60s)"), "{err}");
    }
}
