//! One logical transaction driven by hand, so its outcome is known exactly: `Ok`, `Fail`
//! (definitely not committed) or `Unknown` (commit-unknown, or the commit timed out).
//!
//! Unlike `Database::run`, a commit-unknown result is *not* retried: retrying a non-idempotent
//! transaction whose first attempt landed would apply it twice, which the checkers would
//! (rightly) flag. Every attempt is bounded ([`ATTEMPT_TIMEOUT`]) so a paused process cannot
//! hold a client forever; an attempt that times out before committing is retried, one that
//! times out while committing is `Unknown`.

use std::future::Future;
use std::time::Duration;

use ferrisdb_client::{Database, Error, Result, Transaction};
use tokio::time::{Instant, timeout};

/// Bound on one attempt's reads, and separately on its commit call.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// How a logical transaction ended.
#[derive(Debug)]
pub enum Ended<T> {
    /// Committed; the body's value.
    Ok(T),
    /// Definitely not committed; the last error.
    Fail(Error),
    /// May or may not have committed.
    Unknown(Error),
}

/// Runs `body` then commits, retrying definite failures until `deadline`.
pub async fn run_once<F, Fut, T>(db: &Database, deadline: Instant, mut body: F) -> Ended<T>
where
    F: FnMut(Transaction) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let tx = db.create_transaction();
    loop {
        let read = match timeout(ATTEMPT_TIMEOUT, body(tx.clone())).await {
            Ok(r) => r,
            Err(_) => Err(Error::Unavailable("attempt timed out before commit".into())),
        };
        let err = match read {
            Ok(value) => match timeout(ATTEMPT_TIMEOUT, tx.commit()).await {
                Ok(Ok(())) => return Ended::Ok(value),
                Ok(Err(e)) if e.is_commit_unknown() || !e.is_retryable() => {
                    // A client-side refusal (too large, invalid) never reached the server.
                    return match e {
                        Error::CommitUnknownResult(_) | Error::TimedOut(_) | Error::Internal(_) => {
                            Ended::Unknown(e)
                        }
                        e => Ended::Fail(e),
                    };
                }
                // Every other retryable error is the server's (or the client's, before
                // sending) verdict that the transaction did not commit.
                Ok(Err(e)) => e,
                Err(_) => return Ended::Unknown(Error::TimedOut("commit call timed out".into())),
            },
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Ended::Fail(err);
        }
        if let Err(e) = tx.on_error(err).await {
            return Ended::Fail(e);
        }
    }
}
