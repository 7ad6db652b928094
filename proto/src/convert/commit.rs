//! Whole requests of the commit and log-pull paths: [`Commit`] ↔ `v1::CommitRequest` and
//! [`VersionedMutations`] ↔ `v1::VersionedMutations` (the domain types live in
//! `ferrisdb_core::commit`).

use ferrisdb_core::{
    Commit, Committed, Error, IdempotencyId, Mutation, Version, VersionedMutations, Versionstamp,
    limits, versionstamp,
};

use super::range::{ranges_from_proto, ranges_to_proto};
use crate::v1;

impl TryFrom<v1::CommitRequest> for Commit {
    type Error = Error;

    /// Validates every mutation and range, the idempotency id, then the total transaction
    /// size.
    fn try_from(req: v1::CommitRequest) -> Result<Self, Error> {
        let idempotency = idempotency_from_proto(
            req.idempotency_id,
            req.first_attempt_read_version,
            req.read_version,
        )?;
        let commit = Commit {
            read_version: Version(req.read_version),
            mutations: req
                .mutations
                .into_iter()
                .map(Mutation::try_from)
                .collect::<Result<_, _>>()?,
            read_conflict_ranges: ranges_from_proto(req.read_conflict_ranges)?,
            write_conflict_ranges: ranges_from_proto(req.write_conflict_ranges)?,
            idempotency,
        };
        limits::check_transaction_size(commit.size())?;
        Ok(commit)
    }
}

/// The idempotency id of a commit request (`None` for an empty id): checks its length and
/// that the first attempt's read version is known (`first_attempt_read_version`, or the
/// request's own read version when that is 0).
pub fn idempotency_from_proto(
    id: bytes::Bytes,
    first_attempt_read_version: u64,
    read_version: u64,
) -> Result<Option<IdempotencyId>, Error> {
    if id.is_empty() {
        return Ok(None);
    }
    limits::check_idempotency_id(&id)?;
    let first = match first_attempt_read_version {
        0 => read_version,
        v => v,
    };
    if read_version != 0 && first > read_version {
        return Err(Error::InvalidArgument(format!(
            "first_attempt_read_version {first} is after this attempt's read version \
             {read_version}: it must be the read version of the first attempt that carried \
             the idempotency id"
        )));
    }
    if first == 0 {
        return Err(Error::InvalidArgument(
            "a commit with an idempotency id needs the read version of its first attempt: set \
             read_version (or first_attempt_read_version on a retry)"
                .into(),
        ));
    }
    Ok(Some(IdempotencyId {
        id,
        first_read_version: Version(first),
    }))
}

impl From<Committed> for v1::CommitResponse {
    fn from(c: Committed) -> Self {
        v1::CommitResponse {
            commit_version: c.version.get(),
            versionstamp: c.stamp.bytes().to_vec().into(),
            already_committed: c.already_committed,
        }
    }
}

impl TryFrom<v1::CommitResponse> for Committed {
    type Error = Error;

    /// Checks that the versionstamp is 10 bytes naming the commit version.
    fn try_from(r: v1::CommitResponse) -> Result<Self, Error> {
        let stamp: [u8; versionstamp::LEN] = r.versionstamp.as_ref().try_into().map_err(|_| {
            Error::Internal(format!(
                "the coordinator answered a commit with a {}-byte versionstamp (expected 10)",
                r.versionstamp.len()
            ))
        })?;
        let stamp = Versionstamp::from_bytes(stamp);
        if stamp.version().get() != r.commit_version {
            return Err(Error::Internal(format!(
                "the coordinator answered commit version {} with a versionstamp of version {}",
                r.commit_version,
                stamp.version()
            )));
        }
        Ok(Committed {
            version: Version(r.commit_version),
            stamp,
            already_committed: r.already_committed,
        })
    }
}

impl From<Commit> for v1::CommitRequest {
    fn from(c: Commit) -> Self {
        let (idempotency_id, first_attempt_read_version) = match c.idempotency {
            Some(i) => (i.id, i.first_read_version.get()),
            None => (bytes::Bytes::new(), 0),
        };
        v1::CommitRequest {
            read_version: c.read_version.get(),
            mutations: c.mutations.into_iter().map(v1::Mutation::from).collect(),
            read_conflict_ranges: ranges_to_proto(&c.read_conflict_ranges),
            write_conflict_ranges: ranges_to_proto(&c.write_conflict_ranges),
            idempotency_id,
            first_attempt_read_version,
        }
    }
}

impl TryFrom<v1::VersionedMutations> for VersionedMutations {
    type Error = Error;

    /// Also refuses versionstamped mutations: the coordinator fills every stamp in before
    /// logging, so one in the log would be a bug.
    fn try_from(b: v1::VersionedMutations) -> Result<Self, Error> {
        let mutations: Vec<Mutation> = b
            .mutations
            .into_iter()
            .map(Mutation::try_from)
            .collect::<Result<_, _>>()?;
        if mutations.iter().any(Mutation::is_versionstamped) {
            return Err(Error::InvalidArgument(format!(
                "version {} carries a versionstamped mutation, which only a commit request may \
                 hold (the coordinator logs it as a plain set)",
                b.version
            )));
        }
        Ok(VersionedMutations {
            version: Version(b.version),
            mutations,
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
            idempotency: None,
        }
    }

    #[test]
    fn idempotency_id_round_trips_and_is_checked() {
        let mut c = sample();
        c.idempotency = Some(IdempotencyId {
            id: "transfer-17".into(),
            first_read_version: Version(5),
        });
        assert_eq!(
            Commit::try_from(v1::CommitRequest::from(c.clone())).unwrap(),
            c
        );
        // A first attempt: the read version stands for the first attempt's.
        let mut req = v1::CommitRequest::from(sample());
        req.idempotency_id = "id".into();
        let first = Commit::try_from(req.clone()).unwrap().idempotency.unwrap();
        assert_eq!(first.first_read_version, Version(7));
        req.idempotency_id = vec![1u8; limits::MAX_IDEMPOTENCY_ID_BYTES + 1].into();
        assert!(matches!(
            Commit::try_from(req.clone()),
            Err(Error::InvalidArgument(_))
        ));
        req.idempotency_id = "id".into();
        req.first_attempt_read_version = 8;
        let err = Commit::try_from(req.clone()).unwrap_err();
        assert!(
            err.to_string()
                .contains("after this attempt's read version"),
            "{err}"
        );
        req.first_attempt_read_version = 0;
        req.read_version = 0;
        let err = Commit::try_from(req).unwrap_err();
        assert!(err.to_string().contains("first attempt"), "{err}");
    }

    #[test]
    fn commit_response_round_trips_and_checks_the_stamp() {
        let c = Committed::new(Version(77), 3);
        assert_eq!(Committed::try_from(v1::CommitResponse::from(c)).unwrap(), c);
        let mut r = v1::CommitResponse::from(c);
        r.commit_version = 78;
        assert!(Committed::try_from(r).is_err());
        let mut r = v1::CommitResponse::from(c);
        r.versionstamp = vec![0u8; 9].into();
        assert!(Committed::try_from(r).is_err());
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
        let stamped = v1::VersionedMutations {
            version: 9,
            mutations: vec![v1::Mutation::from(Mutation::SetVersionstampedValue {
                key: "k".into(),
                value: [&[0u8; 10][..], &0u32.to_le_bytes()].concat().into(),
            })],
        };
        assert!(VersionedMutations::try_from(stamped).is_err());
    }
}
