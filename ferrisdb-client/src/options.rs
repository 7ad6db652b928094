//! Tunables: [`DatabaseOptions`] (retry loop, backoff, watches), [`TransactionOption`]
//! (one transaction) and [`RangeOptions`] (one range read).

use std::time::Duration;

/// Settings shared by every transaction created from a [`crate::Database`] handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseOptions {
    /// Most retries [`crate::Database::run`] makes before returning the last error
    /// (`None`: unlimited).
    pub retry_limit: Option<u32>,
    /// Bound on the whole retry loop, retries and backoff included; exceeding it gives
    /// `Error::TimedOut` (`None`: no bound). Default 30 s.
    pub timeout: Option<Duration>,
    /// First backoff delay after a retryable error. Default 1 ms.
    pub initial_backoff: Duration,
    /// Largest backoff delay. Default 1 s.
    pub max_backoff: Duration,
    /// Longest pause between two polls of a watched key. Default 500 ms.
    pub watch_poll_max: Duration,
    /// How long a watch waits for a change before failing with `Error::TimedOut`.
    /// Default 300 s.
    pub watch_timeout: Duration,
}

impl Default for DatabaseOptions {
    fn default() -> Self {
        DatabaseOptions {
            retry_limit: None,
            timeout: Some(Duration::from_secs(30)),
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_secs(1),
            watch_poll_max: Duration::from_millis(500),
            watch_timeout: Duration::from_secs(300),
        }
    }
}

/// An option of one transaction ([`crate::Transaction::set_option`]). Options last until
/// [`crate::Transaction::reset`]: retries keep them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransactionOption {
    /// Lets the transaction read and write the system key space (keys from `\xff`),
    /// reserved for the database's own metadata (see `key_space`).
    AccessSystemKeys,
    /// Bounds this transaction's retry loop, counted from its start, instead of
    /// [`DatabaseOptions::timeout`]. Checked when a retry is decided and before each attempt
    /// of [`crate::Database::run`]; an attempt already running keeps the bound it started with.
    Timeout(Duration),
    /// Most retries, instead of [`DatabaseOptions::retry_limit`].
    RetryLimit(u32),
    /// Largest backoff delay between retries, instead of [`DatabaseOptions::max_backoff`].
    MaxRetryDelay(Duration),
    /// Refuses every write (and poisons the attempt like any refused write): for code that
    /// must not change anything.
    ReadOnly,
    /// How urgently the read version is wanted (see [`Priority`]).
    Priority(Priority),
    /// Gives the transaction a random 16-byte idempotency id (unless it has one from
    /// [`crate::Transaction::set_idempotency_id`]), kept across retries: a retry of a commit
    /// whose result was unknown is answered "already committed" instead of applying the
    /// transaction twice. See [`crate::Transaction::set_idempotency_id`].
    AutomaticIdempotency,
}

/// How urgently a transaction wants its read version (FoundationDB's priorities).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Priority {
    /// Ordinary work: read-version requests of concurrent transactions are batched.
    #[default]
    Default,
    /// Background work: the coordinator holds the request while its commit queue is more than
    /// half full, so batch work yields to default and immediate work under load.
    Batch,
    /// Never waits: its own request, answered at once (for operating the cluster itself).
    Immediate,
}

/// Options of one range read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeOptions {
    /// Most pairs to return (`None`: all of the range).
    pub limit: Option<usize>,
    /// Return pairs in descending key order (the limit then keeps the last keys).
    pub reverse: bool,
    /// Pairs asked of a storage server per request. Default 1,000.
    pub batch_size: usize,
}

impl Default for RangeOptions {
    fn default() -> Self {
        RangeOptions {
            limit: None,
            reverse: false,
            batch_size: 1000,
        }
    }
}

impl RangeOptions {
    /// These options with a limit.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// These options in descending order.
    pub fn reverse(mut self) -> Self {
        self.reverse = true;
        self
    }

    /// These options with another batch size (at least 1).
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }
}
