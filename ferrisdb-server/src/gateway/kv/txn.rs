//! `Txn`: evaluates the compares inside the transaction, runs the chosen branch's ops in order
//! (with read-your-writes), and builds the response once the commit version is known.
//!
//! Compare keys are read with ordinary (conflict-checked) reads, so a commit of another
//! transaction that changes one of them after this transaction's read version makes the
//! commit fail with a conflict and the retry loop evaluates the compares again: the compare and
//! the writes that depend on it are atomic. Compares stop at the first that fails (the outcome
//! depends only on the keys read so far). `Get` ops are conflict-checked reads too.

use bytes::Bytes;
use ferrisdb_client::Transaction;
use ferrisdb_core::Result;
use ferrisdb_proto::convert::{KvOp, KvTxn};
use ferrisdb_proto::v1;
use ferrisdb_proto::v1::txn_op_result::Result as OpResult;

use super::run::Versioned;

/// What one op did, before the commit version is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A `Get`: the value it saw (`None`: absent).
    Get(Option<Bytes>),
    /// A `Put`.
    Put,
    /// A `Delete` or `DeleteRange`.
    Delete,
}

/// The result of one attempt of a `Txn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluated {
    /// Whether every compare held (and `success` ran).
    pub succeeded: bool,
    /// One outcome per op of the branch that ran.
    pub outcomes: Vec<Outcome>,
}

/// Evaluates `txn` in `tx`: the compares, then the ops of the chosen branch.
pub async fn evaluate(tx: &Transaction, txn: &KvTxn) -> Result<Evaluated> {
    let mut succeeded = true;
    for compare in &txn.compares {
        let value = tx.get(&compare.key).await?;
        if !compare.target.holds(value.as_deref()) {
            succeeded = false;
            break;
        }
    }
    let ops = if succeeded {
        &txn.success
    } else {
        &txn.failure
    };
    let mut outcomes = Vec::with_capacity(ops.len());
    for op in ops {
        outcomes.push(match op {
            KvOp::Get { key } => Outcome::Get(tx.get(key).await?),
            KvOp::Put { key, value } => {
                tx.set(key, value)?;
                Outcome::Put
            }
            KvOp::Delete { key } => {
                tx.clear(key)?;
                Outcome::Delete
            }
            KvOp::DeleteRange(range) => {
                tx.clear_range(&range.begin, &range.end)?;
                Outcome::Delete
            }
        });
    }
    Ok(Evaluated {
        succeeded,
        outcomes,
    })
}

/// The wire response of a committed `Txn`: `Get` results carry the read version, writes and
/// the response itself the commit version (the read version when nothing was written).
pub fn response(done: Versioned<Evaluated>) -> v1::TxnResponse {
    let read_version = done.read_version.get();
    let version = done.version.get();
    let results = done
        .value
        .outcomes
        .into_iter()
        .map(|outcome| v1::TxnOpResult {
            result: Some(match outcome {
                Outcome::Get(value) => OpResult::Get(v1::GetResponse {
                    found: value.is_some(),
                    value: value.unwrap_or_default(),
                    version: read_version,
                }),
                Outcome::Put => OpResult::Put(v1::PutResponse { version }),
                Outcome::Delete => OpResult::Delete(v1::DeleteResponse { version }),
            }),
        })
        .collect();
    v1::TxnResponse {
        succeeded: done.value.succeeded,
        results,
        version,
    }
}
