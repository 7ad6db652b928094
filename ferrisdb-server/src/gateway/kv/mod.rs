//! The public `ferrisdb.v1.KV` service (`proto/ferrisdb/v1/kv.proto`), served by the gateway.
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
//! conflicts use up the retries, `DEADLINE_EXCEEDED` when time runs out). The retry limit is
//! set so that the time bound usually binds first: a call made while the transaction system
//! recovers (its coordinator unreachable, then replaced) keeps retrying and succeeds once the
//! new generation accepts commits. Nothing here panics on input.
//!
//! Files: [`run`] (the retry loop that also reports the version), [`txn`] (compares and ops),
//! [`range`] (the streaming read), [`service`] (the gRPC handlers).

pub mod range;
pub mod run;
pub mod service;
pub mod txn;

use std::time::Duration;

pub use service::KvService;

/// Longest a KV call may take, retries included (and longest one step of a `Range` stream
/// may wait for a storage server).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Most retries of one KV call after retryable errors (conflicts, unavailable servers):
/// enough backoff (capped at 200 ms per retry) to span [`CALL_TIMEOUT`].
pub const RETRY_LIMIT: u32 = 40;
