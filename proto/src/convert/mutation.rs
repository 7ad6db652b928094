//! [`Mutation`] ↔ `v1::Mutation` and [`AtomicOp`] ↔ `v1::AtomicOp`.

use ferrisdb_core::{AtomicOp, Error, Mutation};

use crate::v1;
use crate::v1::mutation::Kind;

impl TryFrom<v1::AtomicOp> for AtomicOp {
    type Error = Error;

    fn try_from(op: v1::AtomicOp) -> Result<Self, Error> {
        Ok(match op {
            v1::AtomicOp::Unspecified => {
                return Err(Error::InvalidArgument("atomic op is unspecified".into()));
            }
            v1::AtomicOp::Add => AtomicOp::Add,
            v1::AtomicOp::BitAnd => AtomicOp::BitAnd,
            v1::AtomicOp::BitOr => AtomicOp::BitOr,
            v1::AtomicOp::BitXor => AtomicOp::BitXor,
            v1::AtomicOp::Max => AtomicOp::Max,
            v1::AtomicOp::Min => AtomicOp::Min,
            v1::AtomicOp::ByteMax => AtomicOp::ByteMax,
            v1::AtomicOp::ByteMin => AtomicOp::ByteMin,
            v1::AtomicOp::CompareAndClear => AtomicOp::CompareAndClear,
        })
    }
}

impl From<AtomicOp> for v1::AtomicOp {
    fn from(op: AtomicOp) -> Self {
        match op {
            AtomicOp::Add => v1::AtomicOp::Add,
            AtomicOp::BitAnd => v1::AtomicOp::BitAnd,
            AtomicOp::BitOr => v1::AtomicOp::BitOr,
            AtomicOp::BitXor => v1::AtomicOp::BitXor,
            AtomicOp::Max => v1::AtomicOp::Max,
            AtomicOp::Min => v1::AtomicOp::Min,
            AtomicOp::ByteMax => v1::AtomicOp::ByteMax,
            AtomicOp::ByteMin => v1::AtomicOp::ByteMin,
            AtomicOp::CompareAndClear => v1::AtomicOp::CompareAndClear,
        }
    }
}

impl TryFrom<v1::Mutation> for Mutation {
    type Error = Error;

    /// Rejects a mutation without a kind or with an unknown atomic op, then checks key and
    /// value sizes and range order with [`Mutation::validate`].
    fn try_from(m: v1::Mutation) -> Result<Self, Error> {
        let kind = m
            .kind
            .ok_or_else(|| Error::InvalidArgument("mutation has no kind set".into()))?;
        let mutation = match kind {
            Kind::Set(s) => Mutation::Set {
                key: s.key,
                value: s.value,
            },
            Kind::Clear(c) => Mutation::Clear { key: c.key },
            Kind::ClearRange(r) => Mutation::ClearRange {
                begin: r.begin,
                end: r.end,
            },
            Kind::Atomic(a) => {
                let op = v1::AtomicOp::try_from(a.op).map_err(|_| {
                    Error::InvalidArgument(format!("unknown atomic op number {}", a.op))
                })?;
                Mutation::Atomic {
                    op: op.try_into()?,
                    key: a.key,
                    operand: a.operand,
                }
            }
            Kind::SetVersionstampedKey(s) => Mutation::SetVersionstampedKey {
                key: s.key,
                value: s.value,
            },
            Kind::SetVersionstampedValue(s) => Mutation::SetVersionstampedValue {
                key: s.key,
                value: s.value,
            },
        };
        mutation.validate()?;
        Ok(mutation)
    }
}

impl From<Mutation> for v1::Mutation {
    fn from(m: Mutation) -> Self {
        let kind = match m {
            Mutation::Set { key, value } => Kind::Set(v1::mutation::Set { key, value }),
            Mutation::Clear { key } => Kind::Clear(v1::mutation::Clear { key }),
            Mutation::ClearRange { begin, end } => {
                Kind::ClearRange(v1::mutation::ClearRange { begin, end })
            }
            Mutation::Atomic { op, key, operand } => Kind::Atomic(v1::mutation::Atomic {
                op: v1::AtomicOp::from(op) as i32,
                key,
                operand,
            }),
            Mutation::SetVersionstampedKey { key, value } => {
                Kind::SetVersionstampedKey(v1::mutation::SetVersionstampedKey { key, value })
            }
            Mutation::SetVersionstampedValue { key, value } => {
                Kind::SetVersionstampedValue(v1::mutation::SetVersionstampedValue { key, value })
            }
        };
        v1::Mutation { kind: Some(kind) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrisdb_core::limits;

    const OPS: [AtomicOp; 9] = AtomicOp::ALL;

    #[test]
    fn every_kind_round_trips() {
        let mut all = vec![
            Mutation::Set {
                key: "k".into(),
                value: "v".into(),
            },
            Mutation::Clear { key: "k".into() },
            Mutation::ClearRange {
                begin: "a".into(),
                end: "".into(),
            },
        ];
        all.extend(OPS.map(|op| Mutation::Atomic {
            op,
            key: "c".into(),
            operand: "1".into(),
        }));
        let stamped = [&[7u8; 12][..], &1u32.to_le_bytes()].concat();
        all.push(Mutation::SetVersionstampedKey {
            key: stamped.clone().into(),
            value: "v".into(),
        });
        all.push(Mutation::SetVersionstampedValue {
            key: "k".into(),
            value: stamped.into(),
        });
        for m in all {
            assert_eq!(
                Mutation::try_from(v1::Mutation::from(m.clone())).unwrap(),
                m
            );
        }
    }

    #[test]
    fn rejects_missing_kind_unknown_op_and_limits() {
        assert!(Mutation::try_from(v1::Mutation { kind: None }).is_err());
        for op in [0, 99] {
            let m = v1::Mutation {
                kind: Some(Kind::Atomic(v1::mutation::Atomic {
                    op,
                    key: "k".into(),
                    operand: "1".into(),
                })),
            };
            assert!(matches!(
                Mutation::try_from(m),
                Err(Error::InvalidArgument(_))
            ));
        }
        let big = vec![0u8; limits::MAX_VALUE_BYTES + 1];
        let m = v1::Mutation::from(Mutation::Set {
            key: "k".into(),
            value: big.into(),
        });
        assert!(matches!(
            Mutation::try_from(m),
            Err(Error::ValueTooLarge { .. })
        ));
        let unplaced = v1::Mutation::from(Mutation::SetVersionstampedKey {
            key: "short".into(),
            value: "v".into(),
        });
        assert!(matches!(
            Mutation::try_from(unplaced),
            Err(Error::InvalidArgument(_))
        ));
        let inverted = v1::Mutation::from(Mutation::ClearRange {
            begin: "b".into(),
            end: "a".into(),
        });
        assert!(matches!(
            Mutation::try_from(inverted),
            Err(Error::InvalidRange(_))
        ));
    }
}
