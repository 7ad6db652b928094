//! Unit tests of the transaction logic against the in-memory backend: the read-your-writes
//! merge (property test against a model), conflict-range bookkeeping, limits checked before
//! any network call, the retry loop and watches.

mod conflicts;
mod idempotency;
mod retry;
mod ryw;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::testing::MemBackend;
use crate::{Database, DatabaseOptions};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// A database over `data` split into three shards.
fn mem(data: &[(&str, &str)]) -> (Arc<MemBackend>, Database) {
    let data: BTreeMap<Bytes, Bytes> = data.iter().map(|(k, v)| (b(k), b(v))).collect();
    let backend = MemBackend::new(data, 3);
    let db = backend.database(DatabaseOptions::default());
    (backend, db)
}
