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
    a_key.cmp(b_key).then_with(|| b_version.cmp(&a_version))
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

    #[test]
    fn value_kind_tags_round_trip() {
        for kind in [ValueKind::Tombstone, ValueKind::Put] {
            assert_eq!(ValueKind::from_u8(kind as u8), Some(kind));
        }
        assert_eq!(ValueKind::from_u8(7), None);
    }
}
