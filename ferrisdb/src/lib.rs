//! FerrisDB, the crate applications depend on: it re-exports the client library.

pub use ferrisdb_client::*;
