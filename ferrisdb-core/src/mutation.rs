//! Mutations: the writes a transaction carries to the commit path, and the semantics of
//! atomic operations (applied by storage servers, in version order, FoundationDB-style).

use bytes::Bytes;

use crate::error::Error;
use crate::limits;

/// An atomic read-modify-write operation. None adds a read conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AtomicOp {
    /// Little-endian unsigned addition, wrapping, truncated to the operand's length.
    Add,
    /// Bitwise AND (a missing value acts as the operand itself).
    BitAnd,
    /// Bitwise OR.
    BitOr,
    /// Bitwise XOR.
    BitXor,
    /// Larger of the two as little-endian unsigned integers.
    Max,
    /// Smaller of the two as little-endian unsigned integers (a missing value gives the operand).
    Min,
    /// Lexicographically larger byte string.
    ByteMax,
    /// Lexicographically smaller byte string (a missing value gives the operand).
    ByteMin,
    /// Clears the key if its value equals the operand.
    CompareAndClear,
}

impl AtomicOp {
    /// Every atomic operation, in declaration order.
    pub const ALL: [AtomicOp; 9] = [
        AtomicOp::Add,
        AtomicOp::BitAnd,
        AtomicOp::BitOr,
        AtomicOp::BitXor,
        AtomicOp::Max,
        AtomicOp::Min,
        AtomicOp::ByteMax,
        AtomicOp::ByteMin,
        AtomicOp::CompareAndClear,
    ];

    /// Applies the operation to the current value (None if absent); returns the new value, or
    /// None if the key ends up cleared.
    pub fn apply(self, existing: Option<&[u8]>, operand: &[u8]) -> Option<Vec<u8>> {
        let n = operand.len();
        // The existing value zero-extended or truncated to the operand's length.
        let padded = |e: &[u8]| -> Vec<u8> {
            let mut v = e[..e.len().min(n)].to_vec();
            v.resize(n, 0);
            v
        };
        match self {
            AtomicOp::Add => {
                let mut out = padded(existing.unwrap_or(&[]));
                let mut carry = 0u16;
                for (o, &p) in out.iter_mut().zip(operand) {
                    let sum = *o as u16 + p as u16 + carry;
                    *o = sum as u8;
                    carry = sum >> 8;
                }
                Some(out)
            }
            AtomicOp::BitAnd | AtomicOp::BitOr | AtomicOp::BitXor => {
                let Some(e) = existing else {
                    return Some(operand.to_vec());
                };
                let mut out = padded(e);
                for (o, &p) in out.iter_mut().zip(operand) {
                    *o = match self {
                        AtomicOp::BitAnd => *o & p,
                        AtomicOp::BitOr => *o | p,
                        _ => *o ^ p,
                    };
                }
                Some(out)
            }
            AtomicOp::Max | AtomicOp::Min => {
                let Some(e) = existing else {
                    return Some(operand.to_vec());
                };
                let current = padded(e);
                // Compare as little-endian: most significant byte last.
                let ord = current.iter().rev().cmp(operand.iter().rev());
                let keep_current = match self {
                    AtomicOp::Max => ord.is_ge(),
                    _ => ord.is_le(),
                };
                Some(if keep_current {
                    current
                } else {
                    operand.to_vec()
                })
            }
            AtomicOp::ByteMax | AtomicOp::ByteMin => {
                let Some(e) = existing else {
                    return Some(operand.to_vec());
                };
                let keep_current = match self {
                    AtomicOp::ByteMax => e >= operand,
                    _ => e <= operand,
                };
                Some(if keep_current {
                    e.to_vec()
                } else {
                    operand.to_vec()
                })
            }
            AtomicOp::CompareAndClear => match existing {
                Some(e) if e == operand => None,
                Some(e) => Some(e.to_vec()),
                None => None,
            },
        }
    }
}

/// One write of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    /// Sets a key to a value.
    Set {
        /// The key.
        key: Bytes,
        /// The value.
        value: Bytes,
    },
    /// Removes a key.
    Clear {
        /// The key.
        key: Bytes,
    },
    /// Removes every key in `[begin, end)`; an empty `end` means to the end of the key space.
    ClearRange {
        /// First key removed.
        begin: Bytes,
        /// First key kept after the range.
        end: Bytes,
    },
    /// An atomic operation on a key.
    Atomic {
        /// The operation.
        op: AtomicOp,
        /// The key.
        key: Bytes,
        /// The operand.
        operand: Bytes,
    },
    /// Sets a key holding a versionstamp placeholder (see [`crate::versionstamp`]): the key
    /// ends with the placeholder's 4-byte little-endian offset. The coordinator fills in the
    /// stamp and logs a plain [`Mutation::Set`]; no other role ever sees this kind.
    SetVersionstampedKey {
        /// The key with its placeholder and trailing offset.
        key: Bytes,
        /// The value.
        value: Bytes,
    },
    /// Sets a key to a value holding a versionstamp placeholder (the value ends with the
    /// placeholder's offset); filled in by the coordinator like
    /// [`Mutation::SetVersionstampedKey`].
    SetVersionstampedValue {
        /// The key.
        key: Bytes,
        /// The value with its placeholder and trailing offset.
        value: Bytes,
    },
}

impl Mutation {
    /// Applies this mutation to `data` (key → value) as a storage server applies it: a set
    /// or clear, a cleared range, an atomic operation against the current value. A
    /// versionstamped set, whose stamp the coordinator fills in first, is refused.
    pub fn apply_to(
        &self,
        data: &mut std::collections::BTreeMap<Bytes, Bytes>,
    ) -> Result<(), Error> {
        match self {
            Mutation::Set { key, value } => {
                data.insert(key.clone(), value.clone());
            }
            Mutation::Clear { key } => {
                data.remove(key);
            }
            Mutation::ClearRange { begin, end } => {
                let range = crate::KeyRange::new(begin.clone(), end.clone())?;
                let doomed: Vec<Bytes> = data
                    .range(range.begin.clone()..)
                    .take_while(|(k, _)| range.contains(k))
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in doomed {
                    data.remove(&key);
                }
            }
            Mutation::Atomic { op, key, operand } => {
                match op.apply(data.get(key).map(|v| &v[..]), operand) {
                    Some(v) => data.insert(key.clone(), Bytes::from(v)),
                    None => data.remove(key),
                };
            }
            Mutation::SetVersionstampedKey { .. } | Mutation::SetVersionstampedValue { .. } => {
                return Err(Error::InvalidArgument(
                    "a versionstamped set must have its stamp filled in before it is applied"
                        .into(),
                ));
            }
        }
        Ok(())
    }

    /// Bytes this mutation counts against the transaction size limit.
    pub fn size(&self) -> usize {
        match self {
            Mutation::Set { key, value } => key.len() + value.len(),
            Mutation::Clear { key } => key.len(),
            Mutation::ClearRange { begin, end } => begin.len() + end.len(),
            Mutation::Atomic { key, operand, .. } => key.len() + operand.len(),
            Mutation::SetVersionstampedKey { key, value }
            | Mutation::SetVersionstampedValue { key, value } => key.len() + value.len(),
        }
    }

    /// Checks key and value sizes and range order.
    pub fn validate(&self) -> Result<(), Error> {
        match self {
            Mutation::Set { key, value } => {
                limits::check_key(key)?;
                limits::check_value(value)
            }
            Mutation::Clear { key } => limits::check_key(key),
            Mutation::ClearRange { begin, end } => {
                limits::check_key(begin)?;
                limits::check_range_end(end)?;
                crate::KeyRange::new(begin.clone(), end.clone()).map(|_| ())
            }
            Mutation::Atomic { key, operand, .. } => {
                limits::check_key(key)?;
                limits::check_value(operand)
            }
            Mutation::SetVersionstampedKey { key, value } => {
                crate::versionstamp::placeholder_offset(key, "key")?;
                limits::check_key(&key[..key.len() - crate::versionstamp::OFFSET_LEN])?;
                limits::check_value(value)
            }
            Mutation::SetVersionstampedValue { key, value } => {
                limits::check_key(key)?;
                crate::versionstamp::placeholder_offset(value, "value")?;
                limits::check_value(&value[..value.len() - crate::versionstamp::OFFSET_LEN])
            }
        }
    }

    /// Whether the coordinator must fill in a versionstamp before logging this mutation.
    pub fn is_versionstamped(&self) -> bool {
        matches!(
            self,
            Mutation::SetVersionstampedKey { .. } | Mutation::SetVersionstampedValue { .. }
        )
    }

    /// This mutation as it is logged once committed with `stamp`: a versionstamped set
    /// becomes a plain [`Mutation::Set`]; every other kind is unchanged.
    pub fn with_versionstamp(
        self,
        stamp: crate::versionstamp::Versionstamp,
    ) -> Result<Self, Error> {
        use crate::versionstamp::fill;
        Ok(match self {
            Mutation::SetVersionstampedKey { key, value } => Mutation::Set {
                key: fill(&key, stamp, "key")?,
                value,
            },
            Mutation::SetVersionstampedValue { key, value } => Mutation::Set {
                key,
                value: fill(&value, stamp, "value")?,
            },
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn mutations_apply_to_a_map_as_a_storage_server_applies_them() {
        let b = |s: &str| Bytes::copy_from_slice(s.as_bytes());
        let mut data: std::collections::BTreeMap<Bytes, Bytes> =
            [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]
                .into_iter()
                .map(|(k, v)| (b(k), b(v)))
                .collect();
        let apply = |m: Mutation, data: &mut std::collections::BTreeMap<Bytes, Bytes>| {
            m.apply_to(data).unwrap()
        };
        apply(
            Mutation::ClearRange {
                begin: b("b"),
                end: b("d"),
            },
            &mut data,
        );
        apply(
            Mutation::Set {
                key: b("e"),
                value: b("5"),
            },
            &mut data,
        );
        apply(Mutation::Clear { key: b("a") }, &mut data);
        apply(
            Mutation::Atomic {
                op: AtomicOp::Add,
                key: b("d"),
                operand: Bytes::from_static(&[1]),
            },
            &mut data,
        );
        let left: Vec<(Bytes, Bytes)> = data.clone().into_iter().collect();
        assert_eq!(left, vec![(b("d"), b("5")), (b("e"), b("5"))]);
        apply(
            Mutation::ClearRange {
                begin: b("e"),
                end: Bytes::new(),
            },
            &mut data,
        );
        assert_eq!(data.len(), 1);
        let stamped = Mutation::SetVersionstampedKey {
            key: b("k"),
            value: b("v"),
        };
        assert!(stamped.apply_to(&mut data).is_err());
    }

    use super::*;

    fn le(v: u64) -> Vec<u8> {
        v.to_le_bytes().to_vec()
    }

    #[test]
    fn add_is_little_endian_with_carry_and_wraps() {
        assert_eq!(AtomicOp::Add.apply(None, &le(5)), Some(le(5)));
        assert_eq!(AtomicOp::Add.apply(Some(&le(255)), &le(1)), Some(le(256)));
        assert_eq!(
            AtomicOp::Add.apply(Some(&le(u64::MAX)), &le(2)),
            Some(le(1))
        );
        // A shorter existing value is zero-extended; a longer one truncated.
        assert_eq!(AtomicOp::Add.apply(Some(&[1]), &le(1)), Some(le(2)));
        assert_eq!(AtomicOp::Add.apply(Some(&le(0x0102)), &[1]), Some(vec![3]));
    }

    #[test]
    fn bitwise_min_max_and_bytes() {
        assert_eq!(
            AtomicOp::BitAnd.apply(Some(&[0b1100]), &[0b1010]),
            Some(vec![0b1000])
        );
        assert_eq!(AtomicOp::BitAnd.apply(None, &[7]), Some(vec![7]));
        assert_eq!(
            AtomicOp::BitOr.apply(Some(&[0b1100]), &[0b1010]),
            Some(vec![0b1110])
        );
        assert_eq!(
            AtomicOp::BitXor.apply(Some(&[0b1100]), &[0b1010]),
            Some(vec![0b0110])
        );
        assert_eq!(AtomicOp::Max.apply(Some(&le(300)), &le(7)), Some(le(300)));
        assert_eq!(AtomicOp::Max.apply(Some(&le(3)), &le(7)), Some(le(7)));
        assert_eq!(AtomicOp::Min.apply(Some(&le(300)), &le(7)), Some(le(7)));
        assert_eq!(AtomicOp::Min.apply(None, &le(7)), Some(le(7)));
        assert_eq!(
            AtomicOp::ByteMax.apply(Some(b"b"), b"ab"),
            Some(b"b".to_vec())
        );
        assert_eq!(
            AtomicOp::ByteMin.apply(Some(b"b"), b"ab"),
            Some(b"ab".to_vec())
        );
    }

    #[test]
    fn compare_and_clear() {
        assert_eq!(AtomicOp::CompareAndClear.apply(Some(b"x"), b"x"), None);
        assert_eq!(
            AtomicOp::CompareAndClear.apply(Some(b"y"), b"x"),
            Some(b"y".to_vec())
        );
        assert_eq!(AtomicOp::CompareAndClear.apply(None, b"x"), None);
    }

    #[test]
    fn validate_checks_limits_and_ranges() {
        let big = Bytes::from(vec![0u8; limits::MAX_KEY_BYTES + 1]);
        assert!(Mutation::Clear { key: big }.validate().is_err());
        let inverted = Mutation::ClearRange {
            begin: "z".into(),
            end: "a".into(),
        };
        assert!(matches!(inverted.validate(), Err(Error::InvalidRange(_))));
        let ok = Mutation::Set {
            key: "k".into(),
            value: "v".into(),
        };
        assert!(ok.validate().is_ok());
        assert_eq!(ok.size(), 2);
    }
}
