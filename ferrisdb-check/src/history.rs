//! The history model: every client transaction is an [`Op`] of type `invoke`, then one of
//! `ok`, `fail` (definitely not committed) or `info` (outcome unknown), carrying its micro-ops
//! (`[:append k v]`, `[:r k list]`).
//!
//! Invariants (checked by [`History::transactions`]): a process has at most one operation in
//! flight, and every completion follows an invocation of the same process. A process whose
//! operation ended `info` should not be reused (Jepsen's convention; the workload moves to a
//! fresh process id), since the unknown operation may still be running.

use std::sync::Mutex;
use std::time::Instant;

/// One step of a list-append transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MicroOp {
    /// Append the unique element `value` to the list at `key`.
    Append {
        /// The key.
        key: u64,
        /// The element appended (unique over the whole history).
        value: u64,
    },
    /// Read the list at `key`; `None` until the read is known (invocations, unknown outcomes).
    Read {
        /// The key.
        key: u64,
        /// The list read (an absent key reads as the empty list).
        value: Option<Vec<u64>>,
    },
}

/// The type of a history entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpType {
    /// The client is about to run the transaction.
    Invoke,
    /// It committed.
    Ok,
    /// It definitely did not commit.
    Fail,
    /// Its outcome is unknown (commit-unknown, timed out while committing).
    Info,
}

/// How a transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Committed (acknowledged).
    Ok,
    /// Definitely not committed.
    Fail,
    /// May or may not have committed.
    Info,
}

/// One history entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// Position in the history.
    pub index: usize,
    /// The logical client that ran it.
    pub process: u64,
    /// Nanoseconds since the history began.
    pub time: u64,
    /// Invocation or completion type.
    pub kind: OpType,
    /// The micro-ops (reads filled in on `ok` completions).
    pub value: Vec<MicroOp>,
}

/// A transaction: an invocation paired with its completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Txn {
    /// Index of the invocation in the history.
    pub invoke_index: usize,
    /// Index of the completion, if there was one (none: treated as `Info`).
    pub complete_index: Option<usize>,
    /// The process that ran it.
    pub process: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// The micro-ops: the completion's for `ok`, the invocation's otherwise.
    pub ops: Vec<MicroOp>,
}

/// A malformed history (a bug in the workload, not in the database).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryError {
    /// A process invoked a second operation before completing its first.
    DoubleInvoke {
        /// The process.
        process: u64,
        /// Index of the second invocation.
        index: usize,
    },
    /// A completion without an invocation in flight on its process.
    UnmatchedCompletion {
        /// The process.
        process: u64,
        /// Index of the completion.
        index: usize,
    },
}

impl std::fmt::Display for HistoryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HistoryError::DoubleInvoke { process, index } => {
                write!(
                    f,
                    "process {process} invoked again at {index} with an op in flight"
                )
            }
            HistoryError::UnmatchedCompletion { process, index } => {
                write!(
                    f,
                    "completion at {index} of process {process} has no invocation"
                )
            }
        }
    }
}

/// An ordered list of [`Op`]s.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    ops: Vec<Op>,
}

impl History {
    /// An empty history.
    pub fn new() -> History {
        History::default()
    }

    /// Appends an entry (its index is set to its position) and returns the index.
    pub fn push(&mut self, process: u64, time: u64, kind: OpType, value: Vec<MicroOp>) -> usize {
        let index = self.ops.len();
        self.ops.push(Op {
            index,
            process,
            time,
            kind,
            value,
        });
        index
    }

    /// Every entry, in order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Pairs invocations with completions, in invocation order. An invocation never completed
    /// becomes an `Info` transaction.
    pub fn transactions(&self) -> Result<Vec<Txn>, HistoryError> {
        let mut open: std::collections::HashMap<u64, usize> = Default::default();
        let mut txns: Vec<Txn> = Vec::new();
        for op in &self.ops {
            match op.kind {
                OpType::Invoke => {
                    if open.contains_key(&op.process) {
                        return Err(HistoryError::DoubleInvoke {
                            process: op.process,
                            index: op.index,
                        });
                    }
                    open.insert(op.process, txns.len());
                    txns.push(Txn {
                        invoke_index: op.index,
                        complete_index: None,
                        process: op.process,
                        outcome: Outcome::Info,
                        ops: op.value.clone(),
                    });
                }
                kind => {
                    let Some(t) = open.remove(&op.process) else {
                        return Err(HistoryError::UnmatchedCompletion {
                            process: op.process,
                            index: op.index,
                        });
                    };
                    let txn = &mut txns[t];
                    txn.complete_index = Some(op.index);
                    txn.outcome = match kind {
                        OpType::Ok => Outcome::Ok,
                        OpType::Fail => Outcome::Fail,
                        _ => Outcome::Info,
                    };
                    if kind == OpType::Ok {
                        txn.ops = op.value.clone();
                    }
                }
            }
        }
        Ok(txns)
    }
}

/// A thread-safe history being written by concurrent clients; times are taken from one clock.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    history: Mutex<History>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    /// An empty recorder whose clock starts now.
    pub fn new() -> Recorder {
        Recorder {
            start: Instant::now(),
            history: Mutex::new(History::new()),
        }
    }

    /// Records an entry now; returns its index.
    pub fn record(&self, process: u64, kind: OpType, value: Vec<MicroOp>) -> usize {
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        // Taken under the lock so times never go backwards along the history.
        let time = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        history.push(process, time, kind, value)
    }

    /// The history so far.
    pub fn snapshot(&self) -> History {
        self.history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(key: u64, value: u64) -> MicroOp {
        MicroOp::Append { key, value }
    }

    #[test]
    fn pairs_invocations_with_completions_per_process() {
        let mut h = History::new();
        h.push(0, 1, OpType::Invoke, vec![append(1, 1)]);
        h.push(
            1,
            2,
            OpType::Invoke,
            vec![MicroOp::Read {
                key: 1,
                value: None,
            }],
        );
        h.push(
            1,
            3,
            OpType::Ok,
            vec![MicroOp::Read {
                key: 1,
                value: Some(vec![]),
            }],
        );
        h.push(0, 4, OpType::Fail, vec![append(1, 1)]);
        h.push(2, 5, OpType::Invoke, vec![append(2, 2)]);
        let txns = h.transactions().unwrap();
        assert_eq!(txns.len(), 3);
        assert_eq!(
            (txns[0].outcome, txns[0].complete_index),
            (Outcome::Fail, Some(3))
        );
        assert_eq!(txns[1].outcome, Outcome::Ok);
        assert_eq!(
            txns[1].ops,
            vec![MicroOp::Read {
                key: 1,
                value: Some(vec![])
            }]
        );
        assert_eq!(
            (txns[2].outcome, txns[2].complete_index),
            (Outcome::Info, None)
        );
    }

    #[test]
    fn rejects_malformed_histories() {
        let mut h = History::new();
        h.push(0, 1, OpType::Invoke, vec![]);
        h.push(0, 2, OpType::Invoke, vec![]);
        assert_eq!(
            h.transactions(),
            Err(HistoryError::DoubleInvoke {
                process: 0,
                index: 1
            })
        );
        let mut h = History::new();
        h.push(3, 1, OpType::Ok, vec![]);
        assert_eq!(
            h.transactions(),
            Err(HistoryError::UnmatchedCompletion {
                process: 3,
                index: 0
            })
        );
    }

    #[test]
    fn the_recorder_numbers_entries_in_order() {
        let r = Recorder::new();
        assert_eq!(r.record(0, OpType::Invoke, vec![]), 0);
        assert_eq!(r.record(0, OpType::Ok, vec![]), 1);
        let h = r.snapshot();
        assert!(h.ops()[0].time <= h.ops()[1].time);
        assert_eq!(h.ops()[1].index, 1);
    }
}
