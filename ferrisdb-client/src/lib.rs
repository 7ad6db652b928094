//! The FerrisDB Rust client.
//!
//! Planned (see DESIGN.md): `Database` and `Transaction` with read-your-writes, snapshot reads,
//! range reads, atomic operations and the `db.run(|tx| ...)` retry loop. Today this crate
//! re-exports the shared types applications use.

pub use ferrisdb_core::{AtomicOp, Error, ErrorCode, KeyRange, Mutation, Result, Version, limits};
