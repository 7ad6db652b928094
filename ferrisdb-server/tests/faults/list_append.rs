//! The list-append workload: clients run short transactions over a small window of keys, each
//! micro-op reading a key's list or appending a unique element to it (twice, sometimes, to
//! exercise intermediate reads), and record every invocation and completion in a shared
//! [`Recorder`]. A list is stored as big-endian `u64` elements; appending is a read and a
//! write of the key inside the transaction.
//!
//! The key window slides every [`TXNS_PER_WINDOW`] transactions, so lists stay far below the
//! value size limit in long soaks.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use ferrisdb_check::{MicroOp, OpType, Recorder};
use ferrisdb_client::{Database, Error, Transaction};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use super::attempt::{Ended, run_once};
use super::{Counts, spread};

/// Keys a transaction chooses from at a time: few, so transactions conflict often.
const KEYS: u64 = 6;
/// Transactions after which the key window moves on by one key.
const TXNS_PER_WINDOW: u64 = 40;
/// Longest a logical transaction keeps retrying definite failures.
const TXN_DEADLINE: Duration = Duration::from_secs(20);

/// State shared by the workload's clients.
pub struct Shared {
    /// The history.
    pub recorder: Recorder,
    next_element: AtomicU64,
    txns: AtomicU64,
}

impl Shared {
    /// A fresh workload.
    pub fn new() -> Arc<Shared> {
        Arc::new(Shared {
            recorder: Recorder::new(),
            next_element: AtomicU64::new(1),
            txns: AtomicU64::new(0),
        })
    }

    /// Every key any transaction may have used.
    pub fn keys_used(&self) -> std::ops::Range<u64> {
        0..self.txns.load(Ordering::Relaxed) / TXNS_PER_WINDOW + KEYS
    }
}

/// The database key of list `k`, spread over the shards by its first byte.
pub fn key(k: u64) -> Bytes {
    let mut key = vec![spread(k), b'l', b'/'];
    key.extend_from_slice(&k.to_be_bytes());
    Bytes::from(key)
}

/// Decodes a stored list; a value that is not whole elements decodes with a `u64::MAX`
/// marker, which the checker reports as an element nobody appended.
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

/// A random transaction: 1–4 micro-ops on distinct keys of the current window.
fn generate(shared: &Shared, rng: &mut StdRng) -> Vec<MicroOp> {
    let base = shared.txns.fetch_add(1, Ordering::Relaxed) / TXNS_PER_WINDOW;
    let n = rng.random_range(1..=4);
    let mut keys = BTreeSet::new();
    let mut ops = Vec::new();
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
            let times = if rng.random_bool(0.2) { 2 } else { 1 };
            for _ in 0..times {
                let value = shared.next_element.fetch_add(1, Ordering::Relaxed);
                ops.push(MicroOp::Append { key: k, value });
            }
        }
    }
    ops
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

/// Runs one recorded transaction as `process`; returns how it ended and, unless it
/// committed, the last error.
pub async fn transact(
    db: &Database,
    shared: &Shared,
    process: u64,
    ops: Vec<MicroOp>,
) -> (OpType, Option<Error>) {
    shared.recorder.record(process, OpType::Invoke, ops.clone());
    let deadline = Instant::now() + TXN_DEADLINE;
    let ended = run_once(db, deadline, |tx| apply(tx, ops.clone())).await;
    let (kind, value, error) = match ended {
        Ended::Ok(done) => (OpType::Ok, done, None),
        Ended::Fail(e) => (OpType::Fail, ops, Some(e)),
        Ended::Unknown(e) => (OpType::Info, ops, Some(e)),
    };
    shared.recorder.record(process, kind, value);
    (kind, error)
}

/// One client: transactions until `until`. Client `id` of `clients` starts as process `id`
/// and moves to a fresh process after each unknown outcome (Jepsen's convention).
pub async fn client(
    db: Database,
    shared: Arc<Shared>,
    id: u64,
    clients: u64,
    seed: u64,
    until: Instant,
) -> Counts {
    let mut rng = StdRng::seed_from_u64(seed ^ (0x1157 + id));
    let mut process = id;
    let mut counts = Counts::default();
    while Instant::now() < until {
        let ops = generate(&shared, &mut rng);
        let (kind, _) = transact(&db, &shared, process, ops).await;
        counts.add(kind);
        if kind == OpType::Info {
            process += clients;
        }
    }
    counts
}

/// Reads every list ever used, a few keys per transaction, recorded as ordinary transactions:
/// these are the reads that prove acknowledged appends were not lost.
pub async fn final_reads(db: &Database, shared: &Shared, process: u64) {
    let keys: Vec<u64> = shared.keys_used().collect();
    for chunk in keys.chunks(16) {
        let ops: Vec<MicroOp> = chunk
            .iter()
            .map(|&k| MicroOp::Read {
                key: k,
                value: None,
            })
            .collect();
        let (kind, error) = transact(db, shared, process, ops).await;
        assert_eq!(
            kind,
            OpType::Ok,
            "a final read failed after healing: {error:?}"
        );
    }
}

#[test]
fn decodes_whole_and_torn_lists() {
    assert_eq!(decode(None), Vec::<u64>::new());
    let mut v = 1u64.to_be_bytes().to_vec();
    v.extend_from_slice(&7u64.to_be_bytes());
    assert_eq!(decode(Some(Bytes::from(v.clone()))), vec![1, 7]);
    v.push(0);
    assert_eq!(decode(Some(Bytes::from(v))), vec![1, 7, u64::MAX]);
}
