//! The store a benchmark drives: FerrisDB (through the client's `Database::run`, each
//! operation one transaction) or an etcd member (through its gRPC KV API, see [`super::etcd`]).
//! Both get the same operations from the same load generator; the store only decides how an
//! operation becomes requests, and counts the retries an optimistic transaction needed.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use ferrisdb_client::{Database, RangeOptions};

use super::etcd::{self, EtcdStore};
use super::workload::{Op, key, value};
use crate::cli::connect::Target;

/// Most records FerrisDB loads per transaction (the byte budget usually binds first).
const FERRISDB_MAX_LOAD_BATCH: usize = 1000;

/// Which store `--store` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// The FerrisDB cluster of the global connection flags.
    FerrisDb,
    /// An etcd member (`--etcd-endpoint`).
    Etcd,
}

impl FromStr for StoreKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "ferrisdb" => Ok(StoreKind::FerrisDb),
            "etcd" => Ok(StoreKind::Etcd),
            other => Err(format!("unknown store {other:?} (ferrisdb, etcd)")),
        }
    }
}

/// How to reach the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// FerrisDB.
    FerrisDb,
    /// etcd at `endpoint` (`HOST:PORT`); `serializable` point and range reads instead of
    /// linearizable ones.
    Etcd {
        /// `HOST:PORT` of the member's client URL.
        endpoint: String,
        /// Serve plain reads from the member's local state.
        serializable: bool,
    },
}

impl StoreConfig {
    /// The name in reports: `ferrisdb`, `etcd` or `etcd-serializable`.
    pub fn name(&self) -> &'static str {
        match self {
            StoreConfig::FerrisDb => "ferrisdb",
            StoreConfig::Etcd {
                serializable: false,
                ..
            } => "etcd",
            StoreConfig::Etcd {
                serializable: true, ..
            } => "etcd-serializable",
        }
    }
}

/// One operation to run, with its keys and values already chosen.
#[derive(Debug, Clone)]
pub struct Request {
    /// What to do.
    pub op: Op,
    /// The record's key (the first one for [`Op::ReadModifyWrite2`]; a scan's start).
    pub key: Bytes,
    /// The value written by updates, inserts and read-modify-writes.
    pub value: Bytes,
    /// The second, different key of [`Op::ReadModifyWrite2`] (empty otherwise).
    pub key2: Bytes,
    /// The value written to `key2`.
    pub value2: Bytes,
    /// Keys a scan reads at most.
    pub scan_len: usize,
    /// Where a scan stops: the key `scan_len` records after its start, so every store reads
    /// a bounded range of the same keys (an open-ended range with a limit makes etcd count
    /// every key to the end of the data set).
    pub scan_end: Bytes,
}

/// How an operation ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Attempts beyond the first (conflicts, other retryable errors).
    pub retries: u64,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// An opened store, shared (cloned) by every client task.
#[derive(Clone)]
pub enum Store {
    /// A FerrisDB cluster.
    FerrisDb(Database),
    /// An etcd member behind one shared gRPC channel.
    Etcd(EtcdStore),
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Store::FerrisDb(_) => f.write_str("Store::FerrisDb"),
            Store::Etcd(e) => write!(f, "Store::Etcd({})", e.endpoint()),
        }
    }
}

impl Store {
    /// Opens the store. etcd is contacted at once, so a wrong endpoint fails here.
    pub async fn open(target: &Target, cfg: &StoreConfig) -> Result<Store, String> {
        match cfg {
            StoreConfig::FerrisDb => Ok(Store::FerrisDb(target.connect()?.db)),
            StoreConfig::Etcd {
                endpoint,
                serializable,
            } => Ok(Store::Etcd(
                EtcdStore::connect(endpoint, *serializable, target.timeout).await?,
            )),
        }
    }

    /// Most records one load transaction may hold.
    pub fn max_load_batch(&self) -> usize {
        match self {
            Store::FerrisDb(_) => FERRISDB_MAX_LOAD_BATCH,
            Store::Etcd(_) => etcd::request::MAX_TXN_OPS,
        }
    }

    /// Writes records `range` in one transaction.
    pub async fn load(
        &self,
        range: Range<u64>,
        key_size: usize,
        value_size: usize,
    ) -> Result<(), String> {
        let records = || {
            range
                .clone()
                .map(|i| (key(i, key_size), value(value_size, i)))
        };
        match self {
            Store::FerrisDb(db) => db
                .run(|tx| {
                    let records = records();
                    async move {
                        for (k, v) in records {
                            tx.set(k, v)?;
                        }
                        Ok(())
                    }
                })
                .await
                .map_err(|e| e.to_string()),
            Store::Etcd(etcd) => {
                let puts: Vec<(Bytes, Bytes)> = records()
                    .map(|(k, v)| (Bytes::from(k), Bytes::from(v)))
                    .collect();
                etcd.put_all(&puts).await
            }
        }
    }

    /// Runs one operation to completion (retrying conflicts).
    pub async fn execute(&self, req: &Request) -> Outcome {
        match self {
            Store::FerrisDb(db) => ferrisdb_execute(db, req).await,
            Store::Etcd(etcd) => etcd.execute(req).await,
        }
    }
}

/// The FerrisDB side: each operation is one transaction through `Database::run`.
async fn ferrisdb_execute(db: &Database, req: &Request) -> Outcome {
    let attempts = AtomicU64::new(0);
    let result = db
        .run(|tx| {
            attempts.fetch_add(1, Ordering::Relaxed);
            async move {
                match req.op {
                    Op::Read => tx.get(&req.key).await.map(drop),
                    Op::Update | Op::Insert => tx.set(&req.key, &req.value),
                    Op::Scan => tx
                        .get_range(
                            &req.key,
                            &req.scan_end,
                            RangeOptions::default().limit(req.scan_len),
                        )
                        .collect_vec()
                        .await
                        .map(drop),
                    Op::ReadModifyWrite => {
                        tx.get(&req.key).await?;
                        tx.set(&req.key, &req.value)
                    }
                    Op::ReadModifyWrite2 => {
                        let (a, b) = tokio::join!(tx.get(&req.key), tx.get(&req.key2));
                        a?;
                        b?;
                        tx.set(&req.key, &req.value)?;
                        tx.set(&req.key2, &req.value2)
                    }
                }
            }
        })
        .await;
    Outcome {
        retries: attempts.load(Ordering::Relaxed).saturating_sub(1),
        error: result.err().map(|e| e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_names_and_parsing() {
        assert_eq!("FerrisDB".parse(), Ok(StoreKind::FerrisDb));
        assert_eq!("etcd".parse(), Ok(StoreKind::Etcd));
        assert!("redis".parse::<StoreKind>().is_err());
        assert_eq!(StoreConfig::FerrisDb.name(), "ferrisdb");
        let etcd = |serializable| StoreConfig::Etcd {
            endpoint: "127.0.0.1:2379".into(),
            serializable,
        };
        assert_eq!(etcd(false).name(), "etcd");
        assert_eq!(etcd(true).name(), "etcd-serializable");
    }
}
