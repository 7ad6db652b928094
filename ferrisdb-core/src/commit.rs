//! What the commit path carries: a [`Commit`] (a transaction's request to commit, as the
//! coordinator resolves and logs it) and [`VersionedMutations`] (the mutations of one commit
//! version, as a storage server applies them). Conversions to and from the wire live in
//! `ferrisdb-proto`.

use crate::{KeyRange, Mutation, Version};

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
