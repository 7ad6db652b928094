//! Keys and half-open key ranges.

use bytes::Bytes;

use crate::error::Error;

/// The smallest key strictly greater than `key` (appends a zero byte).
pub fn key_after(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.extend_from_slice(key);
    k.push(0);
    k
}

/// A half-open range of keys `[begin, end)`. An empty `end` means "to the end of the key space".
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyRange {
    /// First key in the range (inclusive).
    pub begin: Bytes,
    /// First key after the range (exclusive); empty for unbounded.
    pub end: Bytes,
}

impl KeyRange {
    /// A range `[begin, end)`; `end` empty means unbounded. Rejects inverted ranges.
    pub fn new(begin: impl Into<Bytes>, end: impl Into<Bytes>) -> Result<Self, Error> {
        let range = KeyRange {
            begin: begin.into(),
            end: end.into(),
        };
        if !range.end.is_empty() && range.begin > range.end {
            return Err(Error::InvalidRange(format!(
                "begin {:?} is after end {:?}",
                escape(&range.begin),
                escape(&range.end)
            )));
        }
        Ok(range)
    }

    /// The whole key space.
    pub fn all() -> Self {
        KeyRange {
            begin: Bytes::new(),
            end: Bytes::new(),
        }
    }

    /// The range holding exactly `key`.
    pub fn single(key: &[u8]) -> Self {
        KeyRange {
            begin: Bytes::copy_from_slice(key),
            end: Bytes::from(key_after(key)),
        }
    }

    /// True if the end is unbounded.
    pub fn is_unbounded(&self) -> bool {
        self.end.is_empty()
    }

    /// True if `key` lies in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= &self.begin[..] && (self.end.is_empty() || key < &self.end[..])
    }

    /// True if the range holds no key.
    pub fn is_empty(&self) -> bool {
        !self.end.is_empty() && self.begin >= self.end
    }

    /// True if the two ranges share at least one key.
    pub fn intersects(&self, other: &KeyRange) -> bool {
        let self_before_other_end = other.end.is_empty() || self.begin < other.end;
        let other_before_self_end = self.end.is_empty() || other.begin < self.end;
        !self.is_empty() && !other.is_empty() && self_before_other_end && other_before_self_end
    }
}

/// Renders bytes printably: ASCII graphic characters as-is, everything else as `\xNN`.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_graphic() && b != b'\\' || b == b' ' {
            out.push(b as char);
        } else if b == b'\\' {
            out.push_str("\\\\");
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Parses the form produced by [`escape`] (`\xNN` and `\\` escapes) back into bytes.
pub fn unescape(text: &str) -> Result<Vec<u8>, Error> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        match bytes.get(i + 1) {
            Some(b'\\') => {
                out.push(b'\\');
                i += 2;
            }
            Some(b'x') => {
                let hex = text.get(i + 2..i + 4).ok_or_else(|| {
                    Error::InvalidArgument(format!("truncated \\x escape at byte {i}"))
                })?;
                let b = u8::from_str_radix(hex, 16).map_err(|_| {
                    Error::InvalidArgument(format!("bad hex digits {hex:?} at byte {i}"))
                })?;
                out.push(b);
                i += 4;
            }
            Some(b'n') => {
                out.push(b'\n');
                i += 2;
            }
            Some(b't') => {
                out.push(b'\t');
                i += 2;
            }
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "unknown escape at byte {i}"
                )));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn range_contains_and_intersects() {
        let r = KeyRange::new("b", "d").unwrap();
        assert!(r.contains(b"b") && r.contains(b"c\xff") && !r.contains(b"d"));
        assert!(!r.contains(b"a"));
        assert!(r.intersects(&KeyRange::new("c", "").unwrap()));
        assert!(!r.intersects(&KeyRange::new("d", "e").unwrap()));
        assert!(KeyRange::all().contains(b"\xff\xff"));
        assert!(KeyRange::new("z", "a").is_err());
        assert!(KeyRange::new("a", "a").unwrap().is_empty());
        assert!(KeyRange::single(b"k").contains(b"k"));
        assert!(!KeyRange::single(b"k").contains(b"k\x00"));
    }

    proptest! {
        #[test]
        fn escape_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(unescape(&escape(&bytes)).unwrap(), bytes);
        }
    }

    #[test]
    fn unescape_rejects_bad_input() {
        assert!(unescape("\\x4").is_err());
        assert!(unescape("\\xzz").is_err());
        assert!(unescape("\\q").is_err());
    }
}
