//! Keys of the system key space (from `\xff` on) that the database itself writes.

use bytes::Bytes;

use crate::{KeyRange, Version, Versionstamp};

/// The first key of the system key space.
pub const BEGIN: &[u8] = b"\xff";

/// Prefix of the idempotency records: `\xff\x02/idmp/` + the commit's 10-byte versionstamp
/// → the idempotency id. Written by the coordinator with each commit that carries an id, so
/// ids outlive the coordinator's memory; ordered by commit version, so expired ones are one
/// range clear.
pub const IDEMPOTENCY_PREFIX: &[u8] = b"\xff\x02/idmp/";

/// Every idempotency record key: the keys starting with [`IDEMPOTENCY_PREFIX`].
pub fn idempotency_records() -> KeyRange {
    let mut end = IDEMPOTENCY_PREFIX.to_vec();
    // The prefix ends with '/', so incrementing its last byte bounds every key under it.
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    KeyRange {
        begin: Bytes::from_static(IDEMPOTENCY_PREFIX),
        end: Bytes::from(end),
    }
}

/// The idempotency record key of the commit stamped `stamp`.
pub fn idempotency_key(stamp: Versionstamp) -> Bytes {
    let mut key = IDEMPOTENCY_PREFIX.to_vec();
    key.extend_from_slice(&stamp.bytes());
    Bytes::from(key)
}

/// The idempotency records of commits at versions in `(after, through]`.
pub fn idempotency_range(after: Version, through: Version) -> KeyRange {
    let bound = |v: Version| {
        let mut key = IDEMPOTENCY_PREFIX.to_vec();
        key.extend_from_slice(&Versionstamp::new(v, 0).bytes());
        Bytes::from(key)
    };
    KeyRange {
        begin: bound(after.next()),
        end: bound(through.next()).max(bound(after.next())),
    }
}

/// The commit stamp an idempotency record key names (`None` for any other key).
pub fn idempotency_stamp(key: &[u8]) -> Option<Versionstamp> {
    let stamp = key.strip_prefix(IDEMPOTENCY_PREFIX)?;
    Some(Versionstamp::from_bytes(stamp.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_sort_by_stamp_and_fall_in_their_version_range() {
        let a = idempotency_key(Versionstamp::new(Version(10), 2));
        let b = idempotency_key(Versionstamp::new(Version(11), 0));
        assert!(a < b);
        assert!(a.starts_with(BEGIN));
        let range = idempotency_range(Version(9), Version(10));
        assert!(range.contains(&a));
        assert!(!range.contains(&b));
        assert!(!idempotency_range(Version(10), Version(12)).contains(&a));
        assert!(idempotency_range(Version(10), Version(12)).contains(&b));
        assert_eq!(
            idempotency_stamp(&b),
            Some(Versionstamp::new(Version(11), 0))
        );
        assert_eq!(idempotency_stamp(b"\xff\x02/idmp/short"), None);
        assert!(idempotency_range(Version(12), Version(3)).is_empty());
        let all = idempotency_records();
        assert!(all.contains(&a) && all.contains(&b));
        assert!(!all.contains(b"\xff\x02/idmq") && !all.contains(b"\xff\x02/idm"));
    }
}
