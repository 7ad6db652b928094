//! The MVCC key, defined once.
//!
//! Every entry the engine stores is an *internal key* — a user key plus the version that wrote
//! it — with a [`ValueKind`] (a value or a tombstone). Internal keys are ordered by user key
//! ascending, then version **descending**, so that for any user key the newest version comes
//! first and a read at version `v` is "seek to (key, v), take the first entry of that key".

use std::cmp::Ordering;

/// What an entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ValueKind {
    /// A deletion marker: hides older versions of the key.
    Tombstone = 0,
    /// A value.
    Put = 1,
}

impl ValueKind {
    /// Decodes the on-disk tag; `None` for an unknown tag (a corruption).
    pub fn from_u8(tag: u8) -> Option<ValueKind> {
        match tag {
            0 => Some(ValueKind::Tombstone),
            1 => Some(ValueKind::Put),
            _ => None,
        }
    }
}

/// Compares two internal keys: user key ascending, then version descending.
#[inline]
pub fn compare_internal(a_key: &[u8], a_version: u64, b_key: &[u8], b_version: u64) -> Ordering {
    compare_keys(a_key, b_key).then_with(|| b_version.cmp(&a_version))
}

/// Compares two user keys bytewise, exactly like `a.cmp(b)`.
///
/// Keys are mostly short (tens of bytes) and compared on every step of every search, where a
/// call to the C library's `memcmp` costs more than the comparison itself: this compares 8
/// bytes at a time inline (as big-endian integers, which order like the bytes) and leaves
/// only long keys to `memcmp`.
#[inline]
pub fn compare_keys(a: &[u8], b: &[u8]) -> Ordering {
    const INLINE_MAX: usize = 64;
    let common = a.len().min(b.len());
    if common > INLINE_MAX {
        return a.cmp(b);
    }
    let (mut a_rest, mut b_rest) = (&a[..common], &b[..common]);
    while let (Some((a_word, a_tail)), Some((b_word, b_tail))) = (
        a_rest.split_first_chunk::<8>(),
        b_rest.split_first_chunk::<8>(),
    ) {
        if a_word != b_word {
            return u64::from_be_bytes(*a_word).cmp(&u64::from_be_bytes(*b_word));
        }
        (a_rest, b_rest) = (a_tail, b_tail);
    }
    for (x, y) in a_rest.iter().zip(b_rest) {
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

/// A borrowed internal key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InternalKeyRef<'a> {
    /// The user key.
    pub key: &'a [u8],
    /// The version that wrote the entry.
    pub version: u64,
}

impl<'a> InternalKeyRef<'a> {
    /// A borrowed internal key.
    pub fn new(key: &'a [u8], version: u64) -> Self {
        InternalKeyRef { key, version }
    }

    /// Converts to an owned key.
    pub fn to_owned(self) -> InternalKey {
        InternalKey {
            key: self.key.to_vec(),
            version: self.version,
        }
    }
}

impl Ord for InternalKeyRef<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_internal(self.key, self.version, other.key, other.version)
    }
}

impl PartialOrd for InternalKeyRef<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// An owned internal key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct InternalKey {
    /// The user key.
    pub key: Vec<u8>,
    /// The version that wrote the entry.
    pub version: u64,
}

impl InternalKey {
    /// An owned internal key.
    pub fn new(key: impl Into<Vec<u8>>, version: u64) -> Self {
        InternalKey {
            key: key.into(),
            version,
        }
    }

    /// Borrows it.
    pub fn as_ref(&self) -> InternalKeyRef<'_> {
        InternalKeyRef {
            key: &self.key,
            version: self.version,
        }
    }
}

impl Ord for InternalKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_ref().cmp(&other.as_ref())
    }
}

impl PartialOrd for InternalKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_version_of_a_key_sorts_first() {
        let mut keys = [
            InternalKey::new("b", 1),
            InternalKey::new("a", 1),
            InternalKey::new("a", 9),
            InternalKey::new("ab", 5),
        ];
        keys.sort();
        let order: Vec<_> = keys.iter().map(|k| (k.key.as_slice(), k.version)).collect();
        assert_eq!(
            order,
            vec![(&b"a"[..], 9), (b"a", 1), (b"ab", 5), (b"b", 1)]
        );
    }

    proptest::proptest! {
        #[test]
        fn compare_keys_matches_slice_order(
            prefix in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
            a in proptest::collection::vec(0u8..4, 0..20),
            b in proptest::collection::vec(0u8..4, 0..20),
        ) {
            let a = [&prefix[..], &a[..]].concat();
            let b = [&prefix[..], &b[..]].concat();
            proptest::prop_assert_eq!(compare_keys(&a, &b), a.cmp(&b));
            proptest::prop_assert_eq!(compare_keys(&b, &a), b.cmp(&a));
            proptest::prop_assert_eq!(compare_keys(&a, &a), std::cmp::Ordering::Equal);
        }
    }

    #[test]
    fn compare_keys_orders_bytes_unsigned_and_prefixes_first() {
        assert_eq!(compare_keys(b"", b""), Ordering::Equal);
        assert_eq!(compare_keys(b"", b"\0"), Ordering::Less);
        assert_eq!(compare_keys(b"abcdefgh", b"abcdefgh\0"), Ordering::Less);
        assert_eq!(compare_keys(b"abcdefgh\xff", b"abcdefgi"), Ordering::Less);
        assert_eq!(compare_keys(&[0x80; 9], &[0x7f; 9]), Ordering::Greater);
        assert_eq!(compare_keys(&[1; 100], &[1; 99]), Ordering::Greater);
    }

    #[test]
    fn value_kind_tags_round_trip() {
        for kind in [ValueKind::Tombstone, ValueKind::Put] {
            assert_eq!(ValueKind::from_u8(kind as u8), Some(kind));
        }
        assert_eq!(ValueKind::from_u8(7), None);
    }
}
