//! [`Database`]: the handle applications hold, and the retry loop [`Database::run`].
//!
//! A `Database` is an `Arc` around the shared backend (cached cluster state and one gRPC
//! channel per address, connected lazily on first use) plus the options; cloning it is cheap
//! and clones share connections. Opening one does no I/O besides reading a cluster file.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use ferrisdb_core::{Commit, Committed, Error, ErrorCode, Result, Version, Versionstamp};

use crate::backend::Backend;
use crate::cluster_file::{ClusterFile, check_address};
use crate::grpc::GrpcBackend;
use crate::{DatabaseOptions, Priority, Transaction};

/// A connection to a FerrisDB cluster. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct Database {
    pub(crate) backend: Arc<dyn Backend>,
    options: Arc<DatabaseOptions>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Database {
    /// A database reached through the cluster controller at `controller` (`host:port`).
    /// Connects lazily: errors reaching the cluster surface on the first transaction.
    pub fn connect(controller: impl Into<String>) -> Result<Database> {
        Self::connect_all([controller.into()])
    }

    /// Like [`connect`](Self::connect) with several controller addresses, tried in order.
    pub fn connect_all(
        controllers: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<Database> {
        let file = ClusterFile::new(controllers)?;
        Ok(Self::from_backend(
            Arc::new(GrpcBackend::new(file.controllers)),
            DatabaseOptions::default(),
        ))
    }

    /// A database named by a cluster file (see [`ClusterFile`] for the format).
    pub fn from_cluster_file(path: impl AsRef<Path>) -> Result<Database> {
        let file = ClusterFile::load(path)?;
        Self::connect_all(file.controllers)
    }

    /// Opens `target`: a cluster file if a file exists at that path, otherwise one or more
    /// comma-separated controller addresses.
    pub fn open(target: &str) -> Result<Database> {
        if Path::new(target).is_file() {
            return Self::from_cluster_file(target);
        }
        let addrs: Vec<&str> = target.split(',').map(str::trim).collect();
        for a in &addrs {
            check_address(a).map_err(|_| {
                Error::InvalidArgument(format!(
                    "{target:?} is neither a cluster file nor host:port controller addresses"
                ))
            })?;
        }
        Self::connect_all(addrs)
    }

    pub(crate) fn from_backend(backend: Arc<dyn Backend>, options: DatabaseOptions) -> Self {
        Database {
            backend,
            options: Arc::new(options),
        }
    }

    /// This database with other options (sharing the connections).
    pub fn with_options(&self, options: DatabaseOptions) -> Database {
        Database {
            backend: self.backend.clone(),
            options: Arc::new(options),
        }
    }

    /// The options transactions of this handle use.
    pub fn options(&self) -> &DatabaseOptions {
        &self.options
    }

    /// A new transaction, to drive by hand (most code uses [`run`](Self::run)).
    pub fn create_transaction(&self) -> Transaction {
        Transaction::new(self.clone())
    }

    /// A fresh read version at `priority`, outside any transaction: for services that keep
    /// their own clients' transactions (FerrisDB's gateway answers `Transactions.Begin` with
    /// it). Applications use [`Transaction::get_read_version`]. One attempt, no retry; after
    /// an error that shows the cached cluster state stale (a replaced coordinator), the next
    /// call looks it up again.
    pub async fn read_version(&self, priority: Priority) -> Result<Version> {
        let result = self.backend.read_version(priority).await;
        if let Err(e) = &result {
            self.backend.invalidate(e);
        }
        result
    }

    /// Sends `commit` to the transaction coordinator exactly as built, once: for services
    /// that collect a transaction's mutations and conflict ranges themselves (FerrisDB's
    /// gateway, for `Transactions.Commit`). Nothing is added or checked here: the caller owns
    /// the read version, the conflict ranges the mutations imply and the idempotency id
    /// (applications use [`Transaction::commit`], which does all of that). Fails like
    /// `Transaction::commit`: `NotCommitted` on a conflict, `CommitUnknownResult` when the
    /// outcome could not be learned; no retry.
    pub async fn commit_prepared(&self, commit: Commit) -> Result<Committed> {
        let result = self.backend.commit(commit).await;
        if let Err(e) = &result {
            self.backend.invalidate(e);
        }
        result
    }

    /// Runs `f` in a transaction and commits it, retrying on retryable errors.
    ///
    /// Each attempt calls `f` with a fresh view of the same [`Transaction`] (a cheap handle),
    /// then commits. On an error, [`Transaction::on_error`] decides: retryable errors
    /// (conflicts, too old, future version, recovering, unavailable, wrong shard, commit
    /// unknown) back off and run `f` again; others are returned. `f` may therefore run several
    /// times and must not have side effects outside the transaction. It should not keep the
    /// `Transaction` beyond the attempt. The whole loop is bounded by
    /// [`DatabaseOptions::timeout`] and [`DatabaseOptions::retry_limit`]. A
    /// `CommitUnknownResult` is retried too: a transaction that must not apply twice (a
    /// transfer, an append) sets [`TransactionOption::AutomaticIdempotency`] (or an id of its
    /// own, [`Transaction::set_idempotency_id`]) so the retry of an attempt that did commit
    /// is answered "already committed", or checks [`Transaction::maybe_committed`].
    ///
    /// [`TransactionOption::AutomaticIdempotency`]: crate::TransactionOption::AutomaticIdempotency
    ///
    /// `async move` blocks move captured values out of `f`, so clone non-`Copy` captures
    /// first: `db.run(|tx| { let k = k.clone(); async move { tx.get(&k).await } })`.
    ///
    /// ```no_run
    /// # async fn demo() -> ferrisdb_client::Result<()> {
    /// use ferrisdb_client::Database;
    /// let db = Database::connect("127.0.0.1:4500")?;
    /// let previous = db
    ///     .run(|tx| async move {
    ///         let old = tx.get("greeting").await?;
    ///         tx.set("greeting", "hello")?;
    ///         Ok(old)
    ///     })
    ///     .await?;
    /// println!("was {previous:?}");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn run<F, Fut, T>(&self, f: F) -> Result<T>
    where
        F: FnMut(Transaction) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        Ok(self.run_with_outcome(f).await?.value)
    }

    /// [`run`](Self::run), also saying how it went: the commit version (`None` for a
    /// transaction that wrote nothing, which commits without the coordinator) and why each
    /// retry happened. In `f`, [`Transaction::maybe_committed`] tells whether an earlier
    /// attempt may have committed.
    pub async fn run_with_outcome<F, Fut, T>(&self, mut f: F) -> Result<RunOutcome<T>>
    where
        F: FnMut(Transaction) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let tx = self.create_transaction();
        loop {
            // The transaction's own timeout, if `f` set one, from the next attempt on. A
            // timeout too large to add to an instant (e.g. `Duration::MAX`) means no bound.
            let timeout = tx.timeout();
            let deadline = timeout.and_then(|t| tx.started().checked_add(t));
            let attempt = async {
                let value = f(tx.clone()).await?;
                tx.commit().await?;
                Ok(value)
            };
            let result = match deadline {
                Some(d) => match tokio::time::timeout_at(d, attempt).await {
                    Ok(r) => r,
                    Err(_) => {
                        return Err(Error::TimedOut(format!(
                            "transaction did not finish within {:?} ({} retries); if it was \
                             committing, its outcome is unknown",
                            timeout.unwrap_or_default(),
                            tx.retries()
                        )));
                    }
                },
                None => attempt.await,
            };
            match result {
                Ok(value) => {
                    return Ok(RunOutcome {
                        value,
                        commit_version: tx.committed_version(),
                        versionstamp: tx.versionstamp(),
                        already_committed: tx.already_committed(),
                        retries: tx.retry_reasons(),
                    });
                }
                Err(e) => tx.on_error(e).await?,
            }
        }
    }
}

/// What [`Database::run_with_outcome`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome<T> {
    /// What the closure returned on the attempt that committed.
    pub value: T,
    /// The commit version; `None` when the transaction wrote nothing.
    pub commit_version: Option<Version>,
    /// The transaction's versionstamp; `None` when it wrote nothing.
    pub versionstamp: Option<Versionstamp>,
    /// True when the last attempt was answered from its idempotency id: an earlier attempt
    /// (whose result was unknown) had committed, and `value` comes from an attempt whose
    /// writes were not applied. See [`Transaction::already_committed`].
    pub already_committed: bool,
    /// Each error code that caused a retry, with how many retries it caused.
    pub retries: Vec<(ErrorCode, u32)>,
}
