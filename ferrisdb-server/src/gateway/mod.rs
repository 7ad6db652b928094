//! The gateway role: FerrisDB's public gRPC endpoint, `ferrisdb.v1.KV` ([`kv`], etcd-style
//! calls) and `ferrisdb.v1.Transactions` ([`transactions`], interactive transactions for any
//! language), served by a stateless process (binary `ferrisdb-gateway`).
//!
//! A gateway is a client of the cluster like any other: it follows the controller group to
//! the current generation's coordinator (read versions, commits) and reads from the storage
//! servers by the shard map ([`ferrisdb_client::Database`]). It keeps nothing on disk but its worker id, and no
//! per-transaction state, so a recovery that replaces the coordinator or the log servers
//! changes nothing for a user pointed at a gateway's address: calls in flight during the
//! recovery wait (within their bound) or fail with a retryable error, and the next call goes
//! to the new generation. Run as many gateways as clients need; `ferrisdb cluster up` runs
//! one at base port + 1. [`server`] is the process body.

pub mod kv;
pub mod server;
pub mod transactions;

use std::time::Duration;

use ferrisdb_client::{Database, DatabaseOptions};
use ferrisdb_core::Result;

pub use server::{GatewayConfig, serve, serve_on};

/// A client of the cluster whose controller replicas are at `controller` (comma-separated
/// `host:port`), with the KV calls' bounds: [`kv::CALL_TIMEOUT`] per call, retries included,
/// and at most [`kv::RETRY_LIMIT`] retries. Connects lazily (no I/O here).
pub fn connect(controller: &str) -> Result<Database> {
    let db = Database::connect_all(
        controller
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty()),
    )?;
    Ok(db.with_options(DatabaseOptions {
        retry_limit: Some(kv::RETRY_LIMIT),
        timeout: Some(kv::CALL_TIMEOUT),
        max_backoff: Duration::from_millis(200),
        ..DatabaseOptions::default()
    }))
}
