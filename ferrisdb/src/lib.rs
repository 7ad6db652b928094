//! FerrisDB, the crate applications depend on: it re-exports the client library
//! (`ferrisdb-client`): [`Database`], [`Transaction`], [`ClusterFile`] and the shared types.
//! See `docs/client.md`.

pub use ferrisdb_client::*;

pub mod engine_bench;
