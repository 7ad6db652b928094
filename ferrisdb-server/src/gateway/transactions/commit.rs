//! A `TransactionCommitRequest` checked and turned into the [`Commit`] the pipeline resolves:
//! every mutation validated, system keys refused without `access_system_keys`, and the write
//! conflict ranges the mutations imply added to the request's own.

use bytes::Bytes;
use ferrisdb_client::key_space::{SYSTEM_KEYS_BEGIN, checked_key, checked_range};
use ferrisdb_core::{
    Commit, Error, KeyRange, Mutation, Result, Version, limits, system_keys, versionstamp,
};
use ferrisdb_proto::convert::{idempotency_from_proto, ranges_from_proto};
use ferrisdb_proto::v1;

/// The commit a request asks for (see the module docs).
pub fn commit_from_request(req: v1::TransactionCommitRequest) -> Result<Commit> {
    let system = req.access_system_keys;
    let idempotency = idempotency_from_proto(
        req.idempotency_id,
        req.first_attempt_read_version,
        req.read_version,
    )?;
    let read_conflict_ranges = ranges_from_proto(req.read_conflict_ranges)?;
    if req.read_version == 0 && !read_conflict_ranges.is_empty() {
        return Err(Error::InvalidArgument(
            "read_version is 0 but the commit has read conflict ranges: reads happen at a \
             read version from Begin, and the commit must name it"
                .into(),
        ));
    }
    let mut write_conflict_ranges = Vec::new();
    for r in ranges_from_proto(req.write_conflict_ranges)? {
        write_conflict_ranges.push(checked_range(&r.begin, &r.end, system)?);
    }
    let mut mutations = Vec::with_capacity(req.mutations.len());
    for (i, m) in req.mutations.into_iter().enumerate() {
        let m = Mutation::try_from(m)
            .map_err(|e| Error::InvalidArgument(format!("mutation {i}: {e}")))?;
        let (m, written) = checked_mutation(m, system)
            .map_err(|e| Error::InvalidArgument(format!("mutation {i}: {e}")))?;
        if written.intersects(&system_keys::idempotency_records()) {
            return Err(Error::InvalidArgument(format!(
                "mutation {i} writes the idempotency records (\\xff\\x02/idmp/), which only \
                 the coordinator writes, even with access_system_keys"
            )));
        }
        write_conflict_ranges.push(written);
        mutations.push(m);
    }
    let commit = Commit {
        read_version: Version(req.read_version),
        mutations,
        read_conflict_ranges,
        write_conflict_ranges,
        idempotency,
    };
    limits::check_transaction_size(commit.size())?;
    Ok(commit)
}

/// A validated mutation with the system-key rule applied (a clear to the end of the key
/// space stops at `\xff` without system-key access, as in the Rust client) and the range it
/// writes.
fn checked_mutation(m: Mutation, system: bool) -> Result<(Mutation, KeyRange)> {
    Ok(match m {
        Mutation::Set { key, value } => {
            checked_key(&key, system)?;
            let range = KeyRange::single(&key);
            (Mutation::Set { key, value }, range)
        }
        Mutation::Clear { key } => {
            checked_key(&key, system)?;
            let range = KeyRange::single(&key);
            (Mutation::Clear { key }, range)
        }
        Mutation::Atomic { op, key, operand } => {
            checked_key(&key, system)?;
            let range = KeyRange::single(&key);
            (Mutation::Atomic { op, key, operand }, range)
        }
        Mutation::ClearRange { begin, end } => {
            let range = checked_range(&begin, &end, system)?;
            (
                Mutation::ClearRange {
                    begin: range.begin.clone(),
                    end: range.end.clone(),
                },
                range,
            )
        }
        Mutation::SetVersionstampedValue { key, value } => {
            checked_key(&key, system)?;
            let range = KeyRange::single(&key);
            (Mutation::SetVersionstampedValue { key, value }, range)
        }
        Mutation::SetVersionstampedKey { key, value } => {
            let range = versionstamp::key_range(&key)?;
            // Every key the stamp can give must be allowed: checking both ends suffices.
            checked_key(&range.begin, system)?;
            if !system && range.end.as_ref() > SYSTEM_KEYS_BEGIN {
                return Err(Error::InvalidArgument(format!(
                    "the versionstamped key \"{}\" can reach the system key space (\\xff); \
                     set access_system_keys to write there",
                    ferrisdb_core::keys::escape(&range.end)
                )));
            }
            (Mutation::SetVersionstampedKey { key, value }, range)
        }
    })
}

/// `range` on the wire.
pub fn range_to_proto(range: &KeyRange) -> v1::KeyRange {
    v1::KeyRange {
        begin: range.begin.clone(),
        end: range.end.clone(),
    }
}

/// One range covering every range of `ranges` (`None` for none): a read's conflict ranges
/// are one contiguous range in practice; should they not be, the cover is a superset, which
/// is still serializable (it can only add conflicts).
pub fn cover(ranges: &[KeyRange]) -> Option<KeyRange> {
    let begin = ranges.iter().map(|r| r.begin.clone()).min()?;
    // An empty end is unbounded: it covers every other end.
    let end = if ranges.iter().any(|r| r.end.is_empty()) {
        Bytes::new()
    } else {
        ranges.iter().map(|r| r.end.clone()).max()?
    };
    Some(KeyRange { begin, end })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(mutations: Vec<Mutation>) -> v1::TransactionCommitRequest {
        v1::TransactionCommitRequest {
            read_version: 10,
            mutations: mutations.into_iter().map(v1::Mutation::from).collect(),
            ..Default::default()
        }
    }

    fn stamped_key(prefix: &[u8]) -> Bytes {
        let mut k = prefix.to_vec();
        k.extend_from_slice(&[0u8; 10]);
        k.extend_from_slice(&(prefix.len() as u32).to_le_bytes());
        k.into()
    }

    #[test]
    fn mutations_imply_their_write_conflict_ranges() {
        let commit = commit_from_request(request(vec![
            Mutation::Set {
                key: "a".into(),
                value: "1".into(),
            },
            Mutation::ClearRange {
                begin: "m".into(),
                end: "".into(),
            },
            Mutation::SetVersionstampedKey {
                key: stamped_key(b"q/"),
                value: "v".into(),
            },
        ]))
        .unwrap();
        assert_eq!(commit.write_conflict_ranges[0], KeyRange::single(b"a"));
        // A clear to the end stops at the system key space.
        assert_eq!(
            commit.write_conflict_ranges[1],
            KeyRange::new("m", Bytes::from_static(b"\xff")).unwrap()
        );
        assert_eq!(
            commit.mutations[1],
            Mutation::ClearRange {
                begin: "m".into(),
                end: Bytes::from_static(b"\xff"),
            }
        );
        assert!(
            commit.write_conflict_ranges[2].contains(b"q/\x00\x00\x00\x00\x00\x00\x00\x05\x00\x01")
        );
    }

    #[test]
    fn system_keys_need_the_flag_and_errors_name_the_mutation() {
        let sys = || {
            request(vec![
                Mutation::Set {
                    key: "ok".into(),
                    value: "1".into(),
                },
                Mutation::Set {
                    key: Bytes::from_static(b"\xff/conf"),
                    value: "1".into(),
                },
            ])
        };
        let err = commit_from_request(sys()).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)));
        assert!(err.to_string().contains("mutation 1"), "{err}");
        let mut allowed = sys();
        allowed.access_system_keys = true;
        commit_from_request(allowed).unwrap();
        let err = commit_from_request(request(vec![Mutation::SetVersionstampedKey {
            key: stamped_key(b""),
            value: "v".into(),
        }]))
        .unwrap_err();
        assert!(err.to_string().contains("system key space"), "{err}");
    }

    #[test]
    fn the_idempotency_records_are_refused_even_with_system_keys() {
        let mut req = request(vec![Mutation::ClearRange {
            begin: Bytes::from_static(b"\xff"),
            end: Bytes::from_static(b"\xff\xff"),
        }]);
        req.access_system_keys = true;
        let err = commit_from_request(req).unwrap_err();
        assert!(err.to_string().contains("idempotency records"), "{err}");
    }

    #[test]
    fn reads_need_a_read_version_and_ids_need_a_first_attempt() {
        let mut req = request(vec![]);
        req.read_version = 0;
        req.read_conflict_ranges.push(v1::KeyRange {
            begin: "a".into(),
            end: "b".into(),
        });
        assert!(commit_from_request(req).is_err());
        let mut req = request(vec![]);
        req.read_version = 0;
        req.idempotency_id = "id".into();
        assert!(commit_from_request(req).is_err());
    }

    #[test]
    fn cover_spans_every_range() {
        assert_eq!(cover(&[]), None);
        let a = KeyRange::new("b", "c").unwrap();
        let b = KeyRange::new("a", "bb").unwrap();
        assert_eq!(
            cover(&[a.clone(), b]),
            Some(KeyRange::new("a", "c").unwrap())
        );
        let open = KeyRange::new("x", "").unwrap();
        assert_eq!(cover(&[a, open]).unwrap().end, Bytes::new());
    }
}
