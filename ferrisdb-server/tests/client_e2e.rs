//! The Rust client (`ferrisdb-client`) against a real multi-process cluster: a controller, a
//! coordinator and storage servers started from this package's binaries on 127.0.0.1.
//!
//! - `transactions`: bank transfers under contention, write skew, read-your-writes and
//!   snapshot reads, range reads and range clears across shard boundaries;
//! - `atomics`: concurrent `add`s and the other atomic operations as the storage servers apply
//!   them, compared with the client's own folding;
//! - `versions`: reads at old versions, `TransactionTooOld`, `FutureVersion`, stale commits,
//!   watches;
//! - `failures`: a storage replica and the coordinator SIGKILLed under a running client;
//! - `examples`: the client's examples (`ferrisdb-client/examples`) run against the cluster;
//! - `tuples`: keys packed with the tuple layer read back in tuple order across shards;
//! - `selectors`: key selectors and prefix ranges across shards, with local writes;
//! - `idempotency`: idempotency ids answered "already committed", versionstamped keys and
//!   values, read-version priorities and cancellation.

mod common;

#[path = "client_e2e/atomics.rs"]
mod atomics;
#[path = "client_e2e/examples.rs"]
mod examples;
#[path = "client_e2e/failures.rs"]
mod failures;
#[path = "client_e2e/idempotency.rs"]
mod idempotency;
#[path = "client_e2e/selectors.rs"]
mod selectors;
#[path = "client_e2e/transactions.rs"]
mod transactions;
#[path = "client_e2e/tuples.rs"]
mod tuples;
#[path = "client_e2e/versions.rs"]
mod versions;

use std::collections::BTreeMap;

use bytes::Bytes;
use common::cluster::TestCluster;
use ferrisdb_client::{Database, RangeOptions, Transaction};

/// A three-shard cluster (split at first bytes 0x55 and 0xaa) with `replication`, and a
/// client connected to it.
async fn cluster(replication: usize) -> (TestCluster, Database) {
    let cluster = TestCluster::start(3, replication).await;
    let db = Database::connect(cluster.controller.addr.to_string()).expect("controller address");
    (cluster, db)
}

/// A key whose first byte is `first` (so it lands in the shard holding that byte).
fn key(first: u8, rest: &str) -> Bytes {
    let mut k = vec![first];
    k.extend_from_slice(rest.as_bytes());
    Bytes::from(k)
}

/// The little-endian `i64` stored at a key (absent: 0).
fn as_i64(v: Option<Bytes>) -> i64 {
    v.map(|v| {
        let arr: [u8; 8] = v[..].try_into().expect("an 8-byte balance");
        i64::from_le_bytes(arr)
    })
    .unwrap_or(0)
}

/// Everything in `[begin, end)` as seen by a fresh transaction, read with `options`.
async fn read_range(
    db: &Database,
    begin: &[u8],
    end: &[u8],
    options: RangeOptions,
) -> Vec<(Bytes, Bytes)> {
    let (begin, end) = (begin.to_vec(), end.to_vec());
    db.run(|tx| {
        let (begin, end) = (begin.clone(), end.clone());
        async move { pairs(&tx, &begin, &end, options).await }
    })
    .await
    .expect("range read")
}

/// A range read of `tx` as `(key, value)` pairs.
async fn pairs(
    tx: &Transaction,
    begin: &[u8],
    end: &[u8],
    options: RangeOptions,
) -> ferrisdb_client::Result<Vec<(Bytes, Bytes)>> {
    Ok(tx
        .get_range(begin, end, options)
        .collect_vec()
        .await?
        .into_iter()
        .map(|kv| (kv.key, kv.value))
        .collect())
}

/// The pairs of `model` inside `[begin, end)` (empty end: unbounded), in read order, limited.
fn model_range(
    model: &BTreeMap<Bytes, Bytes>,
    begin: &[u8],
    end: &[u8],
    options: RangeOptions,
) -> Vec<(Bytes, Bytes)> {
    let inside = |k: &Bytes| k.as_ref() >= begin && (end.is_empty() || k.as_ref() < end);
    let mut out: Vec<_> = model
        .iter()
        .filter(|(k, _)| inside(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if options.reverse {
        out.reverse();
    }
    if let Some(limit) = options.limit {
        out.truncate(limit);
    }
    out
}
