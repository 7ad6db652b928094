//! The public `KV` service's requests (`kv.proto`) as validated values: [`KvOp`],
//! [`KvCompare`], [`KvTxn`] and [`RangeQuery`].
//!
//! Every conversion checks what the wire cannot: keys are non-empty (a JSON request that
//! misspells or forgets `key` must not silently write the empty key) and at most
//! [`limits::MAX_KEY_BYTES`]; values at most [`limits::MAX_VALUE_BYTES`]; ranges not inverted
//! (an empty `end` means the end of the key space; an empty `begin` its start); a `Txn` has at
//! most [`limits::MAX_TXN_OPS`] compares and operations per branch, no op without a kind, no
//! unknown compare target, and at most [`limits::MAX_TRANSACTION_BYTES`] of keys and values.
//! Messages of `InvalidArgument` / `InvalidRange` errors name the offending field
//! (`` `success[2].put.key` ``); size errors keep their own variant (and error code).

use bytes::Bytes;
use ferrisdb_core::{Error, KeyRange, limits};

use crate::v1;
use crate::v1::txn_op::Op;

/// One operation of a `Txn` branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvOp {
    /// Read a key (seeing the earlier writes of the same branch).
    Get {
        /// The key.
        key: Bytes,
    },
    /// Write a key.
    Put {
        /// The key.
        key: Bytes,
        /// The value.
        value: Bytes,
    },
    /// Remove a key.
    Delete {
        /// The key.
        key: Bytes,
    },
    /// Remove every key of a range.
    DeleteRange(KeyRange),
}

impl KvOp {
    /// Bytes of keys and values this op carries (counted against the transaction size).
    pub fn size(&self) -> usize {
        match self {
            KvOp::Get { key } | KvOp::Delete { key } => key.len(),
            KvOp::Put { key, value } => key.len() + value.len(),
            KvOp::DeleteRange(r) => r.begin.len() + r.end.len(),
        }
    }
}

/// What a [`KvCompare`] expects of its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompareTarget {
    /// The key exists with exactly this value.
    ValueEquals(Bytes),
    /// The key does not exist.
    Absent,
    /// The key exists, with any value.
    Present,
}

impl CompareTarget {
    /// Whether a key whose current value is `value` (`None`: absent) satisfies the target.
    pub fn holds(&self, value: Option<&[u8]>) -> bool {
        match self {
            CompareTarget::ValueEquals(expected) => value == Some(expected.as_ref()),
            CompareTarget::Absent => value.is_none(),
            CompareTarget::Present => value.is_some(),
        }
    }
}

/// A precondition of a `Txn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvCompare {
    /// The key checked.
    pub key: Bytes,
    /// What it must be.
    pub target: CompareTarget,
}

/// A validated `TxnRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KvTxn {
    /// Preconditions, all of which must hold for `success` to run.
    pub compares: Vec<KvCompare>,
    /// Run, in order, when every compare holds.
    pub success: Vec<KvOp>,
    /// Run, in order, otherwise.
    pub failure: Vec<KvOp>,
}

impl KvTxn {
    /// Bytes of keys and values in the whole request.
    pub fn size(&self) -> usize {
        let compares: usize = self
            .compares
            .iter()
            .map(|c| {
                c.key.len()
                    + match &c.target {
                        CompareTarget::ValueEquals(v) => v.len(),
                        CompareTarget::Absent | CompareTarget::Present => 0,
                    }
            })
            .sum();
        let ops: usize = self
            .success
            .iter()
            .chain(&self.failure)
            .map(KvOp::size)
            .sum();
        compares + ops
    }
}

/// A validated `RangeRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeQuery {
    /// The keys to return.
    pub range: KeyRange,
    /// Most pairs to return (`None`: no limit; the wire's 0).
    pub limit: Option<usize>,
    /// Descending key order.
    pub reverse: bool,
}

/// Checks a key of a KV request against the size limit; `field` names it in the error. The
/// empty key is a valid key, as in the Rust client and in FoundationDB (the system key space,
/// keys from `\xff`, is refused by the transaction the request runs in).
pub fn kv_key(key: Bytes) -> Result<Bytes, Error> {
    limits::check_key(&key)?;
    Ok(key)
}

/// Checks a value of a KV request against the size limit.
pub fn kv_value(value: Bytes) -> Result<Bytes, Error> {
    limits::check_value(&value)?;
    Ok(value)
}

/// Checks the range `[begin, end)` of a KV request: both ends within the key size limit and
/// `begin <= end` unless `end` is empty (the end of the key space).
pub fn kv_range(begin: Bytes, end: Bytes) -> Result<KeyRange, Error> {
    KeyRange::try_from(v1::KeyRange { begin, end })
}

/// Prefixes the message of an inverted-range error with `field`; other errors pass unchanged.
fn range_in_field(field: &str, err: Error) -> Error {
    match err {
        Error::InvalidRange(m) => Error::InvalidRange(format!("`{field}`: {m}")),
        other => other,
    }
}

/// Converts one wire op; `field` (such as `success[2]`) names it in errors.
fn op_from_wire(op: v1::TxnOp, field: &str) -> Result<KvOp, Error> {
    let op = op.op.ok_or_else(|| {
        Error::InvalidArgument(format!(
            "`{field}` has no operation: set one of get, put, delete, delete_range"
        ))
    })?;
    Ok(match op {
        Op::Get(g) => KvOp::Get {
            key: kv_key(g.key)?,
        },
        Op::Put(p) => KvOp::Put {
            key: kv_key(p.key)?,
            value: kv_value(p.value)?,
        },
        Op::Delete(d) => KvOp::Delete {
            key: kv_key(d.key)?,
        },
        Op::DeleteRange(r) => KvOp::DeleteRange(
            kv_range(r.begin, r.end)
                .map_err(|e| range_in_field(&format!("{field}.delete_range"), e))?,
        ),
    })
}

/// Converts one wire compare; `field` (such as `compare[0]`) names it in errors.
fn compare_from_wire(c: v1::Compare, field: &str) -> Result<KvCompare, Error> {
    let key = kv_key(c.key)?;
    let target = match v1::compare::Target::try_from(c.target) {
        Ok(v1::compare::Target::ValueEquals) => CompareTarget::ValueEquals(kv_value(c.value)?),
        Ok(v1::compare::Target::Absent) => CompareTarget::Absent,
        Ok(v1::compare::Target::Present) => CompareTarget::Present,
        Err(_) => {
            return Err(Error::InvalidArgument(format!(
                "`{field}.target` is {}: expected VALUE_EQUALS (0), ABSENT (1) or PRESENT (2)",
                c.target
            )));
        }
    };
    Ok(KvCompare { key, target })
}

fn ops_from_wire(ops: Vec<v1::TxnOp>, branch: &str) -> Result<Vec<KvOp>, Error> {
    limits::check_txn_ops(&format!("operations in `{branch}`"), ops.len())?;
    ops.into_iter()
        .enumerate()
        .map(|(i, op)| op_from_wire(op, &format!("{branch}[{i}]")))
        .collect()
}

impl TryFrom<v1::TxnRequest> for KvTxn {
    type Error = Error;

    /// Validates every compare and op, the list lengths and the total size.
    fn try_from(req: v1::TxnRequest) -> Result<Self, Error> {
        limits::check_txn_ops("compares", req.compare.len())?;
        let txn = KvTxn {
            compares: req
                .compare
                .into_iter()
                .enumerate()
                .map(|(i, c)| compare_from_wire(c, &format!("compare[{i}]")))
                .collect::<Result<_, _>>()?,
            success: ops_from_wire(req.success, "success")?,
            failure: ops_from_wire(req.failure, "failure")?,
        };
        limits::check_transaction_size(txn.size())?;
        Ok(txn)
    }
}

impl TryFrom<v1::RangeRequest> for RangeQuery {
    type Error = Error;

    /// Checks the range and the limit (zero means no limit; above `u32::MAX` is refused).
    fn try_from(req: v1::RangeRequest) -> Result<Self, Error> {
        Ok(RangeQuery {
            range: kv_range(req.begin, req.end)?,
            limit: limits::check_range_limit(req.limit)?,
            reverse: req.reverse,
        })
    }
}

#[cfg(test)]
mod tests;
