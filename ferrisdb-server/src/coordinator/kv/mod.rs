//! The public `ferrisdb.v1.KV` service (`proto/ferrisdb/v1/kv.proto`), served by the
//! coordinator process.
//!
//! Every call is a real transaction of the Rust client ([`ferrisdb_client::Database`],
//! connected to the controller): reads go to the storage servers at a read version, writes
//! commit through the coordinator's commit path like any client's. `Put`, `Delete` and
//! `DeleteRange` are blind writes (no read conflicts, so they never conflict); `Txn` reads its
//! compare keys and `Get` ops as conflict-checked reads, so compare-then-write is atomic and
//! serializable; `Range` streams at one read version, in batches.
//!
//! Requests are validated by `ferrisdb_proto::convert` before anything runs. Each call is
//! bounded: at most [`RETRY_LIMIT`] retries and [`CALL_TIMEOUT`] in all (`ABORTED` when
//! conflicts use up the retries, `DEADLINE_EXCEEDED` when time runs out). Nothing here panics on
//! input.
//!
//! Files: [`run`] (the retry loop that also reports the version), [`txn`] (compares and ops),
//! [`range`] (the streaming read), [`service`] (the gRPC handlers).

pub mod range;
pub mod run;
pub mod service;
pub mod txn;

use std::time::Duration;

use ferrisdb_client::{Database, DatabaseOptions};
use ferrisdb_core::Result;

pub use service::KvService;

/// Longest a KV call may take, retries included (and longest one step of a `Range` stream
/// may wait for a storage server).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Most retries of one KV call after retryable errors (conflicts, unavailable servers).
pub const RETRY_LIMIT: u32 = 10;

/// A client of the cluster whose controller replicas are at `controller` (comma-separated
/// `host:port`), with the KV service's bounds. Connects lazily (no I/O here).
pub fn connect(controller: &str) -> Result<Database> {
    let db = Database::connect_all(
        controller
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty()),
    )?;
    Ok(db.with_options(DatabaseOptions {
        retry_limit: Some(RETRY_LIMIT),
        timeout: Some(CALL_TIMEOUT),
        max_backoff: Duration::from_millis(200),
        ..DatabaseOptions::default()
    }))
}
