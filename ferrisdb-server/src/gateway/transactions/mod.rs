//! The public `ferrisdb.v1.Transactions` service (`proto/ferrisdb/v1/transactions.proto`):
//! interactive, strictly serializable transactions for clients in any language.
//!
//! The service keeps no per-transaction state, so any gateway can serve any request of a
//! transaction, and a recovery that replaces the coordinator loses nothing here. `Begin` hands
//! out a read version from the current generation's coordinator (at the request's priority);
//! `Get`, `GetRange` and `GetKey` read at the version the client names, through the gateway's
//! client of the cluster (routed to the storage servers by the shard map, exactly as the Rust
//! client reads), and answer with the read conflict range the read implies; `Commit` takes
//! the client's mutations, the read conflict ranges it collected and an optional idempotency
//! id, adds the write conflict ranges the mutations imply ([`commit`]) and sends the commit to
//! the coordinator once ([`Database::commit_prepared`]): a retry is the client's. A client
//! therefore gets the Rust client's guarantees by keeping three lists: see
//! `docs/grpc-transactions.md` and `examples/python/bank_transfer.py`.
//!
//! Every request is validated before anything runs (sizes, system keys, selector offsets,
//! limits); reads are bounded by [`READ_TIMEOUT`].

pub mod commit;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use ferrisdb_client::{
    Database, KeySelector, Priority, RangeOptions, Transaction, TransactionOption,
};
use ferrisdb_core::{Error, KeyRange, Version};
use ferrisdb_proto::status::to_status;
use ferrisdb_proto::v1;
use ferrisdb_proto::v1::transactions_server::Transactions;
use tonic::{Request, Response, Status};

use crate::grpc::priority_from_proto;

/// Longest one read may wait for the storage servers.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Most pairs one `GetRange` returns (also its default).
pub const MAX_RANGE_PAIRS: u32 = 10_000;
/// Largest key selector offset (either way) `GetKey` accepts: resolving one reads that many
/// keys.
pub const MAX_SELECTOR_OFFSET: i32 = 10_000;

/// The service over the gateway's client of the cluster.
#[derive(Debug, Clone)]
pub struct TransactionsService {
    db: Database,
    /// The newest version known committed: the newest read version handed out or commit
    /// version seen (a read version above it may still be valid, from another gateway).
    newest_seen: Arc<AtomicU64>,
}

impl TransactionsService {
    /// Serves transactions through `db`.
    pub fn new(db: Database) -> Self {
        TransactionsService {
            db,
            newest_seen: Arc::new(AtomicU64::new(0)),
        }
    }

    fn saw(&self, version: Version) {
        self.newest_seen.fetch_max(version.get(), Ordering::Relaxed);
    }

    /// Refuses a read version newer than every committed version: one above what this
    /// gateway has seen is checked against a fresh read version first (it may come from
    /// another gateway).
    async fn check_not_future(&self, read_version: u64) -> Result<(), Status> {
        if read_version <= self.newest_seen.load(Ordering::Relaxed) {
            return Ok(());
        }
        let newest = self
            .db
            .read_version(Priority::Immediate)
            .await
            .map_err(to_status)?;
        self.saw(newest);
        if read_version > newest.get() {
            return Err(to_status(Error::InvalidArgument(format!(
                "read_version {read_version} is newer than the newest committed version \
                 {newest}; get read versions from Begin"
            ))));
        }
        Ok(())
    }

    /// A transaction reading at `read_version` (with system-key access if asked).
    async fn reader(&self, read_version: u64, system: bool) -> Result<Transaction, Status> {
        if read_version == 0 {
            return Err(to_status(Error::InvalidArgument(
                "read_version is 0: reads happen at a read version from Begin".into(),
            )));
        }
        self.check_not_future(read_version).await?;
        let tx = self.db.create_transaction();
        tx.set_read_version(Version(read_version));
        if system {
            tx.set_option(TransactionOption::AccessSystemKeys);
        }
        Ok(tx)
    }
}

/// Runs a read within [`READ_TIMEOUT`].
async fn bounded<T>(
    read: impl std::future::Future<Output = ferrisdb_core::Result<T>>,
) -> Result<T, Status> {
    match tokio::time::timeout(READ_TIMEOUT, read).await {
        Ok(result) => result.map_err(to_status),
        Err(_) => Err(to_status(Error::TimedOut(format!(
            "the storage servers did not answer within {READ_TIMEOUT:?}"
        )))),
    }
}

/// The one read conflict range a transaction's reads so far imply (see [`commit::cover`]).
fn read_range(tx: &Transaction) -> Option<v1::KeyRange> {
    commit::cover(&tx.read_conflict_ranges()).map(|r| commit::range_to_proto(&r))
}

#[tonic::async_trait]
impl Transactions for TransactionsService {
    async fn begin(
        &self,
        request: Request<v1::BeginRequest>,
    ) -> Result<Response<v1::BeginResponse>, Status> {
        let priority = priority_from_proto(request.into_inner().priority)?;
        let version = self.db.read_version(priority).await.map_err(to_status)?;
        self.saw(version);
        Ok(Response::new(v1::BeginResponse {
            read_version: version.get(),
        }))
    }

    async fn get(
        &self,
        request: Request<v1::TransactionGetRequest>,
    ) -> Result<Response<v1::TransactionGetResponse>, Status> {
        let req = request.into_inner();
        let tx = self
            .reader(req.read_version, req.access_system_keys)
            .await?;
        let value = bounded(tx.get(&req.key)).await?;
        Ok(Response::new(v1::TransactionGetResponse {
            present: value.is_some(),
            value: value.unwrap_or_default(),
            read_range: Some(commit::range_to_proto(&KeyRange::single(&req.key))),
        }))
    }

    async fn get_range(
        &self,
        request: Request<v1::TransactionGetRangeRequest>,
    ) -> Result<Response<v1::TransactionGetRangeResponse>, Status> {
        let req = request.into_inner();
        if req.limit > MAX_RANGE_PAIRS {
            return Err(to_status(Error::InvalidArgument(format!(
                "limit {} is above the most one GetRange returns ({MAX_RANGE_PAIRS}); read \
                 on from the last key of each reply",
                req.limit
            ))));
        }
        let limit = if req.limit == 0 {
            MAX_RANGE_PAIRS
        } else {
            req.limit
        } as usize;
        let tx = self
            .reader(req.read_version, req.access_system_keys)
            .await?;
        let mut options = RangeOptions::default().limit(limit + 1);
        if req.reverse {
            options = options.reverse();
        }
        let mut pairs = bounded(tx.get_range(&req.begin, &req.end, options).collect_vec()).await?;
        let more = pairs.len() > limit;
        pairs.truncate(limit);
        // The conflict range of exactly the pairs returned: up to the last one when cut short.
        let mut range = commit::cover(&tx.read_conflict_ranges());
        if let (true, Some(last), Some(r)) = (more, pairs.last(), range.as_mut()) {
            if req.reverse {
                r.begin = last.key.clone();
            } else {
                r.end = Bytes::from(ferrisdb_core::key_after(&last.key));
            }
        }
        Ok(Response::new(v1::TransactionGetRangeResponse {
            pairs: pairs
                .into_iter()
                .map(|kv| v1::KeyValue {
                    key: kv.key,
                    value: kv.value,
                })
                .collect(),
            more,
            read_range: range.map(|r| commit::range_to_proto(&r)),
        }))
    }

    async fn get_key(
        &self,
        request: Request<v1::TransactionGetKeyRequest>,
    ) -> Result<Response<v1::TransactionGetKeyResponse>, Status> {
        let req = request.into_inner();
        let selector = req.selector.ok_or_else(|| {
            to_status(Error::InvalidArgument(
                "selector is missing: GetKey needs a key selector".into(),
            ))
        })?;
        if selector.offset.unsigned_abs() > MAX_SELECTOR_OFFSET.unsigned_abs() {
            return Err(to_status(Error::InvalidArgument(format!(
                "selector offset {} is beyond ±{MAX_SELECTOR_OFFSET}: resolving it would \
                 read that many keys; use GetRange",
                selector.offset
            ))));
        }
        let tx = self
            .reader(req.read_version, req.access_system_keys)
            .await?;
        let selector = KeySelector::new(&selector.key, selector.or_equal, selector.offset);
        let key = bounded(tx.get_key(&selector)).await?;
        Ok(Response::new(v1::TransactionGetKeyResponse {
            key,
            read_range: read_range(&tx),
        }))
    }

    async fn commit(
        &self,
        request: Request<v1::TransactionCommitRequest>,
    ) -> Result<Response<v1::CommitResponse>, Status> {
        let commit = commit::commit_from_request(request.into_inner()).map_err(to_status)?;
        let committed = self.db.commit_prepared(commit).await.map_err(to_status)?;
        self.saw(committed.version);
        Ok(Response::new(v1::CommitResponse::from(committed)))
    }
}
