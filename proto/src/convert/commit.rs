//! Whole requests of the commit and log-pull paths: [`Commit`] ↔ `v1::CommitRequest` and
//! [`VersionedMutations`] ↔ `v1::VersionedMutations` (the domain types live in
//! `ferrisdb_core::commit`).

use ferrisdb_core::{Commit, Error, Mutation, Version, VersionedMutations, limits};

use super::range::{ranges_from_proto, ranges_to_proto};
use crate::v1;

impl TryFrom<v1::CommitRequest> for Commit {
    type Error = Error;

    /// Validates every mutation and range, then the total transaction size.
    fn try_from(req: v1::CommitRequest) -> Result<Self, Error> {
        let commit = Commit {
            read_version: Version(req.read_version),
            mutations: req
                .mutations
                .into_iter()
                .map(Mutation::try_from)
                .collect::<Result<_, _>>()?,
            read_conflict_ranges: ranges_from_proto(req.read_conflict_ranges)?,
            write_conflict_ranges: ranges_from_proto(req.write_conflict_ranges)?,
        };
        limits::check_transaction_size(commit.size())?;
        Ok(commit)
    }
}

impl From<Commit> for v1::CommitRequest {
    fn from(c: Commit) -> Self {
        v1::CommitRequest {
            read_version: c.read_version.get(),
            mutations: c.mutations.into_iter().map(v1::Mutation::from).collect(),
            read_conflict_ranges: ranges_to_proto(&c.read_conflict_ranges),
            write_conflict_ranges: ranges_to_proto(&c.write_conflict_ranges),
        }
    }
}

impl TryFrom<v1::VersionedMutations> for VersionedMutations {
    type Error = Error;

    fn try_from(b: v1::VersionedMutations) -> Result<Self, Error> {
        Ok(VersionedMutations {
            version: Version(b.version),
            mutations: b
                .mutations
                .into_iter()
                .map(Mutation::try_from)
                .collect::<Result<_, _>>()?,
        })
    }
}

impl From<VersionedMutations> for v1::VersionedMutations {
    fn from(b: VersionedMutations) -> Self {
        v1::VersionedMutations {
            version: b.version.get(),
            mutations: b.mutations.into_iter().map(v1::Mutation::from).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use ferrisdb_core::KeyRange;

    use super::*;

    fn sample() -> Commit {
        Commit {
            read_version: Version(7),
            mutations: vec![Mutation::Set {
                key: "k".into(),
                value: "v".into(),
            }],
            read_conflict_ranges: vec![KeyRange::single(b"r")],
            write_conflict_ranges: vec![KeyRange::new("a", "c").unwrap()],
        }
    }

    #[test]
    fn commit_round_trips_and_counts_size() {
        let c = sample();
        assert_eq!(c.size(), 2 + 3 + 2);
        assert_eq!(
            Commit::try_from(v1::CommitRequest::from(c.clone())).unwrap(),
            c
        );
    }

    #[test]
    fn commit_rejects_too_large_and_bad_parts() {
        let mut c = sample();
        let value = bytes::Bytes::from(vec![0u8; limits::MAX_VALUE_BYTES]);
        let n = limits::MAX_TRANSACTION_BYTES / limits::MAX_VALUE_BYTES + 1;
        c.mutations = (0..n)
            .map(|_| Mutation::Set {
                key: "k".into(),
                value: value.clone(),
            })
            .collect();
        let err = Commit::try_from(v1::CommitRequest::from(c)).unwrap_err();
        assert!(matches!(err, Error::TransactionTooLarge { .. }), "{err}");

        let mut req = v1::CommitRequest::from(sample());
        req.write_conflict_ranges.push(v1::KeyRange {
            begin: "z".into(),
            end: "a".into(),
        });
        assert!(matches!(Commit::try_from(req), Err(Error::InvalidRange(_))));
    }

    #[test]
    fn versioned_mutations_round_trip() {
        let b = VersionedMutations {
            version: Version(9),
            mutations: vec![Mutation::Clear { key: "x".into() }],
        };
        assert_eq!(
            VersionedMutations::try_from(v1::VersionedMutations::from(b.clone())).unwrap(),
            b
        );
    }
}
