//! The FerrisDB Rust client: [`Database`], [`Transaction`] and the retry loop
//! [`Database::run`], with FoundationDB's semantics (see `docs/client.md`).
//!
//! - **Transactions** read at one read version (fetched lazily from the coordinator) straight
//!   from the storage servers, using a cached shard map, and buffer writes locally until
//!   commit. They are strictly serializable: the coordinator rejects a commit whose read
//!   conflict ranges were written after its read version (`NotCommitted`).
//! - **Read-your-writes**: reads see the transaction's own sets, clears, range clears and
//!   atomic operations (applied on top of the stored value).
//! - **Snapshot reads** ([`Transaction::snapshot`]) add no read conflict ranges; atomic
//!   operations add none either.
//! - **Limits** (key 10,000 B, value 100,000 B, transaction 10,000,000 B) are checked before
//!   any network call.
//!
//! ```no_run
//! use ferrisdb_client::{Database, RangeOptions};
//!
//! # async fn demo() -> ferrisdb_client::Result<()> {
//! let db = Database::connect("127.0.0.1:4500")?;
//! db.run(|tx| async move {
//!     tx.set("user/1", "ada")?;
//!     tx.add("users", 1u64.to_le_bytes())?;
//!     Ok(())
//! })
//! .await?;
//! let users = db
//!     .run(|tx| async move {
//!         tx.get_range("user/", "user0", RangeOptions::default().limit(10))
//!             .collect_vec()
//!             .await
//!     })
//!     .await?;
//! assert_eq!(users.len(), 1);
//! # Ok(())
//! # }
//! ```
//!
//! This crate does not panic on input from the network or the user; every failure is an
//! [`Error`] whose [`Error::is_retryable`] tells whether running the transaction again may
//! succeed.

#![deny(missing_docs)]

mod backend;
mod backoff;
mod call_batch;
pub mod cluster_file;
mod database;
mod first_read;
mod grpc;
pub mod key_space;
mod options;
mod range;
mod read_version;
mod routing;
mod selector;
mod session;
mod transaction;
pub mod tuple;
mod watch;
mod write_map;

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

use bytes::Bytes;

pub use cluster_file::ClusterFile;
pub use database::{Database, RunOutcome};
pub use ferrisdb_core::{
    AtomicOp, Error, ErrorCode, KeyRange, Mutation, Result, Version, Versionstamp, key_after,
    limits,
};
pub use options::{DatabaseOptions, Priority, RangeOptions, TransactionOption};
pub use range::RangeStream;
pub use selector::{KeySelector, prefix_range};
pub use transaction::Transaction;
pub use watch::Watch;

/// One key and its value, as returned by range reads.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyValue {
    /// The key.
    pub key: Bytes,
    /// The value.
    pub value: Bytes,
}

/// A read-only view of a [`Transaction`] whose reads add no read conflict ranges.
///
/// Reads still see the transaction's own writes and use its read version. Use it for reads
/// whose result does not decide what the transaction writes, to avoid needless conflicts.
#[derive(Debug, Clone)]
pub struct Snapshot {
    tx: Transaction,
}

impl Snapshot {
    pub(crate) fn new(tx: Transaction) -> Self {
        Snapshot { tx }
    }

    /// Reads a key without adding a read conflict.
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        self.tx.get_impl(key.as_ref(), true).await
    }

    /// Reads `[begin, end)` without adding a read conflict (see [`Transaction::get_range`]).
    pub fn get_range(
        &self,
        begin: impl AsRef<[u8]>,
        end: impl AsRef<[u8]>,
        options: RangeOptions,
    ) -> RangeStream {
        self.tx
            .range_impl(begin.as_ref(), end.as_ref(), options, true)
    }

    /// The transaction's read version.
    pub async fn get_read_version(&self) -> Result<Version> {
        self.tx.get_read_version().await
    }
}
