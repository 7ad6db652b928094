//! Cancelling a transaction from any task: operations in flight end, later ones are
//! refused, until `reset`.

use std::future::Future;

use ferrisdb_core::{Error, Result};

use super::Transaction;

impl Transaction {
    /// Runs a network operation of this transaction, ending it with `TransactionCancelled`
    /// if the transaction is (or gets) cancelled first.
    pub(crate) async fn guarded<T>(&self, op: impl Future<Output = Result<T>>) -> Result<T> {
        let mut cancelled = self.inner.cancelled.subscribe();
        if *cancelled.borrow() {
            return Err(Error::TransactionCancelled);
        }
        tokio::select! {
            result = op => result,
            _ = cancelled.wait_for(|c| *c) => Err(Error::TransactionCancelled),
        }
    }

    /// Cancels the transaction: operations in flight and every later one (reads, writes,
    /// commit) fail with `TransactionCancelled`, which [`on_error`](Self::on_error) does not
    /// retry, until [`reset`](Self::reset). A commit already sent may still take effect (as
    /// in FoundationDB): cancelling only stops this handle waiting for it.
    pub fn cancel(&self) {
        self.inner.cancelled.send_replace(true);
    }

    /// Whether [`cancel`](Self::cancel) was called (and the transaction not reset since).
    pub fn is_cancelled(&self) -> bool {
        *self.inner.cancelled.borrow()
    }
}
