//! [`KeyRange`] ↔ `v1::KeyRange`.

use ferrisdb_core::{Error, KeyRange, limits};

use crate::v1;

impl TryFrom<v1::KeyRange> for KeyRange {
    type Error = Error;

    /// Checks both ends against the key size limit (the end may be one byte longer, see
    /// [`limits::check_range_end`]) and rejects inverted ranges.
    fn try_from(range: v1::KeyRange) -> Result<Self, Error> {
        limits::check_key(&range.begin)?;
        limits::check_range_end(&range.end)?;
        KeyRange::new(range.begin, range.end)
    }
}

impl From<KeyRange> for v1::KeyRange {
    fn from(range: KeyRange) -> Self {
        v1::KeyRange {
            begin: range.begin,
            end: range.end,
        }
    }
}

impl From<&KeyRange> for v1::KeyRange {
    fn from(range: &KeyRange) -> Self {
        v1::KeyRange {
            begin: range.begin.clone(),
            end: range.end.clone(),
        }
    }
}

/// Converts and validates a list of wire ranges.
pub fn ranges_from_proto(ranges: Vec<v1::KeyRange>) -> Result<Vec<KeyRange>, Error> {
    ranges.into_iter().map(KeyRange::try_from).collect()
}

/// Converts a list of ranges to the wire.
pub fn ranges_to_proto(ranges: &[KeyRange]) -> Vec<v1::KeyRange> {
    ranges.iter().map(v1::KeyRange::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(begin: &'static [u8], end: &'static [u8]) -> v1::KeyRange {
        v1::KeyRange {
            begin: begin.into(),
            end: end.into(),
        }
    }

    #[test]
    fn round_trips_and_keeps_unbounded_end() {
        let r = KeyRange::new("a", "").unwrap();
        assert_eq!(KeyRange::try_from(v1::KeyRange::from(&r)).unwrap(), r);
        let list = vec![wire(b"a", b"b"), wire(b"", b"")];
        let back = ranges_from_proto(list.clone()).unwrap();
        assert_eq!(ranges_to_proto(&back), list);
    }

    #[test]
    fn rejects_inverted_and_oversized() {
        assert!(matches!(
            KeyRange::try_from(wire(b"z", b"a")),
            Err(Error::InvalidRange(_))
        ));
        // The range holding only the longest key is valid; one byte more is not.
        let longest = vec![b'k'; limits::MAX_KEY_BYTES];
        let single = KeyRange::single(&longest);
        assert!(KeyRange::try_from(v1::KeyRange::from(&single)).is_ok());
        let r = v1::KeyRange {
            begin: Default::default(),
            end: vec![b'k'; limits::MAX_KEY_BYTES + 2].into(),
        };
        assert!(matches!(
            KeyRange::try_from(r),
            Err(Error::KeyTooLarge { .. })
        ));
        let big = vec![b'k'; limits::MAX_KEY_BYTES + 1];
        let r = v1::KeyRange {
            begin: big.into(),
            end: Default::default(),
        };
        assert!(matches!(
            KeyRange::try_from(r),
            Err(Error::KeyTooLarge { .. })
        ));
        assert!(ranges_from_proto(vec![wire(b"a", b"b"), wire(b"c", b"b")]).is_err());
    }
}
