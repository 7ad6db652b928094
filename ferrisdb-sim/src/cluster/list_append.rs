//! The list-append workload on the simulated cluster, beside the bank: clients run short
//! transactions that read lists or append unique elements to them, over a few keys at a
//! time so that they conflict, and record each one as an invocation and a completion. The
//! history goes to `ferrisdb_check::list_append` (Elle's method): dependency cycles (G0,
//! G1c, G-single, G2), aborted and intermediate reads, lost appends and duplicates.
//!
//! A list is stored as big-endian `u64` elements; an append reads the key and writes it
//! back longer, inside the transaction. Each logical transaction is driven by hand
//! (`run_once`) so that its outcome is known exactly: a commit whose result is unknown is
//! not retried (that could apply it twice) but recorded as unknown.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use ferrisdb_check::list_append::check;
use ferrisdb_check::{History, MicroOp, OpType};
use ferrisdb_client::{Database, Error, Transaction};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::{Instant, timeout};

/// Keys a transaction chooses from at a time: few, so that transactions conflict.
const KEYS: u64 = 5;
/// Transactions after which the key window moves on by one key (lists stay short).
const TXNS_PER_WINDOW: u64 = 30;
/// Bound on one attempt's reads, and separately on its commit.
const ATTEMPT_LIMIT: Duration = Duration::from_secs(5);
/// Longest a logical transaction retries definite failures.
const TXN_DEADLINE: Duration = Duration::from_secs(10);

/// How a logical transaction ended.
enum Ended {
    Ok(Vec<MicroOp>),
    Fail,
    Unknown,
}

/// Transactions by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcomes {
    /// Committed.
    pub ok: u64,
    /// Definitely not committed.
    pub failed: u64,
    /// Outcome unknown.
    pub unknown: u64,
}

/// The workload's shared state: the history and the element and transaction counters.
#[derive(Debug)]
pub struct ListAppend {
    history: Mutex<History>,
    start: Instant,
    next_element: AtomicU64,
    txns: AtomicU64,
}

/// The database key of list `k`.
fn key(k: u64) -> Bytes {
    let mut key = b"list/".to_vec();
    key.extend_from_slice(&k.to_be_bytes());
    Bytes::from(key)
}

/// Decodes a stored list; bytes that are not whole elements decode to a `u64::MAX` marker,
/// which the checker reports as an element nobody appended.
fn decode(value: Option<Bytes>) -> Vec<u64> {
    let Some(value) = value else {
        return Vec::new();
    };
    let mut list: Vec<u64> = value
        .chunks(8)
        .filter_map(|c| <[u8; 8]>::try_from(c).ok().map(u64::from_be_bytes))
        .collect();
    if value.len() % 8 != 0 {
        list.push(u64::MAX);
    }
    list
}

/// Runs the micro-ops in `tx`, returning them with the reads filled in.
async fn apply(tx: Transaction, ops: Vec<MicroOp>) -> ferrisdb_client::Result<Vec<MicroOp>> {
    let mut done = Vec::with_capacity(ops.len());
    for op in ops {
        match op {
            MicroOp::Read { key: k, .. } => {
                let list = decode(tx.get(key(k)).await?);
                done.push(MicroOp::Read {
                    key: k,
                    value: Some(list),
                });
            }
            MicroOp::Append { key: k, value } => {
                let mut stored = tx
                    .get(key(k))
                    .await?
                    .map(|v| v.to_vec())
                    .unwrap_or_default();
                stored.extend_from_slice(&value.to_be_bytes());
                tx.set(key(k), stored)?;
                done.push(MicroOp::Append { key: k, value });
            }
        }
    }
    Ok(done)
}

/// Runs `body` then commits, retrying definite failures until `deadline`; a commit whose
/// result is unknown (or that timed out) ends it as unknown.
async fn run_once<F, Fut>(db: &Database, deadline: Instant, mut body: F) -> Ended
where
    F: FnMut(Transaction) -> Fut,
    Fut: Future<Output = ferrisdb_client::Result<Vec<MicroOp>>>,
{
    let tx = db.create_transaction();
    loop {
        let read = match timeout(ATTEMPT_LIMIT, body(tx.clone())).await {
            Ok(read) => read,
            Err(_) => Err(Error::Unavailable("attempt timed out before commit".into())),
        };
        let err = match read {
            Ok(done) => match timeout(ATTEMPT_LIMIT, tx.commit()).await {
                Ok(Ok(())) => return Ended::Ok(done),
                Ok(Err(e)) if e.is_commit_unknown() || !e.is_retryable() => {
                    return match e {
                        Error::CommitUnknownResult(_) | Error::TimedOut(_) | Error::Internal(_) => {
                            Ended::Unknown
                        }
                        // A client-side refusal never reached the server.
                        _ => Ended::Fail,
                    };
                }
                // The server's (or the client's, before sending) verdict: not committed.
                Ok(Err(e)) => e,
                Err(_) => return Ended::Unknown,
            },
            Err(e) => e,
        };
        if Instant::now() >= deadline || tx.on_error(err).await.is_err() {
            return Ended::Fail;
        }
    }
}

impl ListAppend {
    /// A fresh workload (call inside the simulation: times are simulated).
    pub fn new() -> Arc<ListAppend> {
        Arc::new(ListAppend {
            history: Mutex::new(History::new()),
            start: Instant::now(),
            next_element: AtomicU64::new(1),
            txns: AtomicU64::new(0),
        })
    }

    fn record(&self, process: u64, kind: OpType, value: Vec<MicroOp>) {
        super::events::record(|| format!("list-append {process} {kind:?} {value:?}"));
        let mut history = self.history.lock();
        let time = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        history.push(process, time, kind, value);
    }

    /// A random transaction: 1-4 micro-ops on distinct keys of the current window, an
    /// append sometimes twice to the same key (for intermediate reads).
    fn generate(&self, rng: &mut StdRng) -> Vec<MicroOp> {
        let base = self.txns.fetch_add(1, Ordering::Relaxed) / TXNS_PER_WINDOW;
        let n = rng.random_range(1..=4);
        let (mut keys, mut ops) = (BTreeSet::new(), Vec::new());
        while keys.len() < n {
            let k = base + rng.random_range(0..KEYS);
            if !keys.insert(k) {
                continue;
            }
            if rng.random_bool(0.5) {
                ops.push(MicroOp::Read {
                    key: k,
                    value: None,
                });
            } else {
                for _ in 0..if rng.random_bool(0.2) { 2 } else { 1 } {
                    let value = self.next_element.fetch_add(1, Ordering::Relaxed);
                    ops.push(MicroOp::Append { key: k, value });
                }
            }
        }
        ops
    }

    /// Runs one recorded transaction as history process `process`.
    async fn transact(&self, db: &Database, process: u64, ops: Vec<MicroOp>) -> OpType {
        self.record(process, OpType::Invoke, ops.clone());
        let deadline = Instant::now() + TXN_DEADLINE;
        let (kind, value) = match run_once(db, deadline, |tx| apply(tx, ops.clone())).await {
            Ended::Ok(done) => (OpType::Ok, done),
            Ended::Fail => (OpType::Fail, ops),
            Ended::Unknown => (OpType::Info, ops),
        };
        self.record(process, kind, value);
        kind
    }

    /// One client, `id` of `clients`, running transactions until `until` (with 1-40 ms
    /// between them). It moves to a fresh history process after an unknown outcome, as
    /// Jepsen's clients do: the unknown transaction may still be in flight.
    pub async fn client(
        self: Arc<Self>,
        db: Database,
        id: u64,
        clients: u64,
        seed: u64,
        until: Instant,
    ) -> Outcomes {
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut process, mut outcomes) = (id, Outcomes::default());
        while Instant::now() < until {
            let ops = self.generate(&mut rng);
            match self.transact(&db, process, ops).await {
                OpType::Ok => outcomes.ok += 1,
                OpType::Fail => outcomes.failed += 1,
                _ => {
                    outcomes.unknown += 1;
                    process += clients;
                }
            }
            tokio::time::sleep(Duration::from_millis(rng.random_range(1..40))).await;
        }
        outcomes
    }

    /// Reads every list any transaction may have used (recorded, as history process
    /// `process`): the reads that show acknowledged appends were kept.
    pub async fn final_reads(&self, db: &Database, process: u64) -> Result<(), String> {
        let used = self.txns.load(Ordering::Relaxed) / TXNS_PER_WINDOW + KEYS;
        let keys: Vec<u64> = (0..used).collect();
        for chunk in keys.chunks(16) {
            let ops = chunk
                .iter()
                .map(|&k| MicroOp::Read {
                    key: k,
                    value: None,
                })
                .collect();
            if self.transact(db, process, ops).await != OpType::Ok {
                return Err("a final read of the lists did not commit".into());
            }
        }
        Ok(())
    }

    /// Checks the history; `Err` names the anomalies found.
    pub fn check(&self) -> Result<ferrisdb_check::list_append::Report, String> {
        let history = self.history.lock().clone();
        let report = check(&history).map_err(|e| format!("malformed list-append history: {e}"))?;
        match report.anomalies.first() {
            None => Ok(report),
            Some(first) => Err(format!(
                "{} list-append anomalies, first: {first}",
                report.anomalies.len()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_whole_and_torn_lists() {
        assert_eq!(decode(None), Vec::<u64>::new());
        let two = [1u64.to_be_bytes(), 2u64.to_be_bytes()].concat();
        assert_eq!(decode(Some(Bytes::from(two.clone()))), vec![1, 2]);
        let mut torn = two;
        torn.push(7);
        assert_eq!(decode(Some(Bytes::from(torn))), vec![1, 2, u64::MAX]);
    }

    #[test]
    fn transactions_use_distinct_keys_of_the_window_and_unique_elements() {
        let workload = ListAppend {
            history: Mutex::new(History::new()),
            start: Instant::now(),
            next_element: AtomicU64::new(1),
            txns: AtomicU64::new(0),
        };
        let mut rng = StdRng::seed_from_u64(3);
        let mut elements = BTreeSet::new();
        for _ in 0..200 {
            let ops = workload.generate(&mut rng);
            assert!((1..=8).contains(&ops.len()));
            for op in ops {
                if let MicroOp::Append { value, .. } = op {
                    assert!(elements.insert(value), "element {value} appended twice");
                }
            }
        }
        assert_eq!(workload.txns.load(Ordering::Relaxed), 200);
    }
}
