//! What the commit path carries: a [`Commit`] (a transaction's request to commit, as the
//! coordinator resolves and logs it) and [`VersionedMutations`] (the mutations of one commit
//! version, as a storage server applies them). Conversions to and from the wire live in
//! `ferrisdb-proto`.

use bytes::Bytes;

use crate::{KeyRange, Mutation, Version, Versionstamp};

/// A validated commit request: what the coordinator resolves and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// The version the transaction read at.
    pub read_version: Version,
    /// The writes, in the order the client issued them.
    pub mutations: Vec<Mutation>,
    /// Ranges read; checked for conflicts.
    pub read_conflict_ranges: Vec<KeyRange>,
    /// Ranges written; recorded for later conflict checks.
    pub write_conflict_ranges: Vec<KeyRange>,
    /// The transaction's idempotency id, if it has one: the coordinator records it with the
    /// commit and answers a later commit carrying the same id "already committed".
    pub idempotency: Option<IdempotencyId>,
}

/// An idempotency id and the read version of the first attempt that carried it (the id's
/// commit, if any, has a newer version: the coordinator looks for it from there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyId {
    /// 1 to [`crate::limits::MAX_IDEMPOTENCY_ID_BYTES`] bytes chosen by the client.
    pub id: Bytes,
    /// The read version of the first attempt that used `id`.
    pub first_read_version: Version,
}

/// What a successful commit returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// The commit version.
    pub version: Version,
    /// The transaction's versionstamp (commit version and order in its batch).
    pub stamp: Versionstamp,
    /// True when this request did not commit itself because an earlier request with the
    /// same idempotency id already had: `version` and `stamp` are that commit's.
    pub already_committed: bool,
}

impl Committed {
    /// A fresh commit at position `batch_index` of the batch at `version`.
    pub fn new(version: Version, batch_index: u16) -> Self {
        Committed {
            version,
            stamp: Versionstamp::new(version, batch_index),
            already_committed: false,
        }
    }
}

impl Commit {
    /// Bytes counted against [`crate::limits::MAX_TRANSACTION_BYTES`]: mutations plus both ends of
    /// every conflict range.
    pub fn size(&self) -> usize {
        let ranges = self
            .read_conflict_ranges
            .iter()
            .chain(&self.write_conflict_ranges);
        self.mutations.iter().map(Mutation::size).sum::<usize>()
            + ranges.map(|r| r.begin.len() + r.end.len()).sum::<usize>()
            + self.idempotency.as_ref().map_or(0, |i| i.id.len())
    }
}

/// The mutations of one commit version, as pulled by a storage server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionedMutations {
    /// The commit version.
    pub version: Version,
    /// The mutations, in commit order.
    pub mutations: Vec<Mutation>,
}
