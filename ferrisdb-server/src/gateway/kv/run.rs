//! [`run_versioned`]: `Database::run` that also reports the versions the transaction used, which
//! every KV response carries.

use std::future::Future;

use ferrisdb_client::{Database, Transaction};
use ferrisdb_core::{Error, Result, Version};
use parking_lot::Mutex;

/// The result of a transaction and its versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    /// What the transaction's body returned.
    pub value: T,
    /// The read version of the attempt that committed.
    pub read_version: Version,
    /// The commit version, or the read version when the transaction wrote nothing.
    pub version: Version,
}

/// Runs `f` in `db`'s retry loop (see [`Database::run`]) and returns its value with the
/// versions of the attempt that committed.
pub async fn run_versioned<F, Fut, T>(db: &Database, mut f: F) -> Result<Versioned<T>>
where
    F: FnMut(Transaction) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let used: Mutex<Option<Transaction>> = Mutex::new(None);
    let value = db
        .run(|tx| {
            *used.lock() = Some(tx.clone());
            f(tx)
        })
        .await?;
    let tx = used
        .into_inner()
        .ok_or_else(|| Error::Internal("the transaction body never ran".into()))?;
    let read_version = match (tx.known_read_version(), tx.committed_version()) {
        (Some(read), _) => read,
        // A blind write committed without one: once it committed, nothing may turn the call
        // into a failure (the coordinator may be gone by now), so its commit version stands
        // in (every write before it is visible at it).
        (None, Some(committed)) => committed,
        // A transaction that did nothing gets one.
        (None, None) => tx.get_read_version().await?,
    };
    Ok(Versioned {
        value,
        read_version,
        version: tx.committed_version().unwrap_or(read_version),
    })
}
