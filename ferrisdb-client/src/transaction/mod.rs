//! [`Transaction`]: buffered writes with read-your-writes, conflict-range bookkeeping, the
//! commit and the per-transaction half of the retry loop ([`Transaction::on_error`]).
//!
//! State lives behind an `Arc<Mutex<…>>`, so a `Transaction` is a cheap handle: clones share
//! one transaction. The mutex is never held across an `.await`. Reads go to storage servers at
//! the read version (fetched lazily, once); writes only touch the local
//! [`WriteMap`](crate::write_map::WriteMap) until [`Transaction::commit`]. Every limit is checked
//! here before any network call.
//!
//! Beside this file: [`atomics`] (atomic operations), [`versionstamps`] (versionstamped writes
//! and the commit's stamp), [`idempotency`] (idempotency ids across retries) and [`cancel`].

mod atomics;
mod cancel;
mod idempotency;
mod versionstamps;

use std::sync::Arc;
use tokio::time::Instant;

use bytes::Bytes;
use ferrisdb_core::{Commit, Committed, IdempotencyId};
use ferrisdb_core::{Error, ErrorCode, KeyRange, Mutation, Result, Version, limits};
use parking_lot::{Mutex, MutexGuard};
use tokio::sync::{OnceCell, watch};

use crate::backend::{Backend, FirstRead};
use crate::backoff::Backoff;
use crate::database::Database;
use crate::key_space::{checked_key, checked_range};
use crate::options::{Priority, TransactionOption};
use crate::range::RangeStream;
use crate::watch::Watch;
use crate::write_map::WriteMap;
use crate::{RangeOptions, Snapshot};
use idempotency::Idempotency;
use versionstamps::unreadable_error;

/// One transaction: reads at a single read version, buffered writes, commit.
///
/// Cheap to clone (an `Arc` inside); clones are the same transaction. Usually created by
/// [`Database::run`], which also retries it; [`Database::create_transaction`] gives one to
/// drive by hand with [`Transaction::commit`] and [`Transaction::on_error`].
#[derive(Clone)]
pub struct Transaction {
    inner: Arc<TxInner>,
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.lock();
        f.debug_struct("Transaction")
            .field("read_version", &st.read_version.get())
            .field("committed", &st.receipt)
            .field("attempts", &st.retry.attempts)
            .finish_non_exhaustive()
    }
}

struct TxInner {
    db: Database,
    state: Mutex<TxState>,
    /// True once [`Transaction::cancel`] was called (until [`Transaction::reset`]); every
    /// operation waiting on the network watches it.
    cancelled: watch::Sender<bool>,
}

/// How a read gets the transaction's read version ([`Transaction::read_version_plan`]).
pub(crate) enum ReadVersionPlan {
    /// The transaction has it.
    Known(Version),
    /// Fetch it (shared with concurrent transactions), then read.
    Fetch,
    /// Read beside the read-version request, then fix the version in the cell.
    Beside(Arc<OnceCell<Version>>, Priority),
}

/// Everything a transaction accumulates; reset between attempts.
struct TxState {
    /// Filled once, by the first read or the commit (or [`Transaction::set_read_version`]).
    read_version: Arc<OnceCell<Version>>,
    /// Whether this attempt's first reads go out beside its read-version request
    /// (decided by the first of them).
    first_read_beside: Option<bool>,
    writes: WriteMap,
    read_conflicts: Vec<KeyRange>,
    /// Explicit write conflict ranges (those implied by writes come from `writes`).
    extra_write_conflicts: Vec<KeyRange>,
    /// An upper bound of the commit's size; recomputed exactly when it passes the limit.
    size_bound: usize,
    committed: bool,
    /// What the commit returned (none for a read-only commit, which contacts no server).
    receipt: Option<Committed>,
    /// The first-attempt read version the last commit request sent with its idempotency id.
    sent_first_read: Option<Version>,
    /// The first write this attempt refused: the attempt can no longer commit (a commit
    /// without that write would apply the transaction partially).
    poisoned: Option<Error>,
    /// [`TransactionOption::AccessSystemKeys`]: kept across retries, cleared by `reset`.
    access_system_keys: bool,
    /// [`TransactionOption::ReadOnly`]: kept across retries, cleared by `reset`.
    read_only: bool,
    retry: RetryState,
}

/// What survives [`Transaction::on_error`]: the attempt count and why each retry happened,
/// whether an earlier attempt may have committed, the backoff, the start time.
struct RetryState {
    attempts: u32,
    /// Most retries (the database's, or [`TransactionOption::RetryLimit`]).
    retry_limit: Option<u32>,
    /// Bound on the whole loop (the database's, or [`TransactionOption::Timeout`]).
    timeout: Option<std::time::Duration>,
    /// Retries by the error that caused them, in first-seen order.
    reasons: Vec<(ErrorCode, u32)>,
    /// An earlier attempt ended in `CommitUnknownResult`: it may have committed.
    maybe_committed: bool,
    backoff: Backoff,
    started: Instant,
    /// [`TransactionOption::Priority`].
    priority: Priority,
    idempotency: Idempotency,
}

impl TxState {
    fn new(db: &Database) -> Self {
        let o = db.options();
        TxState {
            read_version: Arc::new(OnceCell::new()),
            first_read_beside: None,
            writes: WriteMap::default(),
            read_conflicts: Vec::new(),
            extra_write_conflicts: Vec::new(),
            size_bound: 0,
            committed: false,
            receipt: None,
            sent_first_read: None,
            poisoned: None,
            access_system_keys: false,
            read_only: false,
            retry: RetryState {
                attempts: 0,
                retry_limit: o.retry_limit,
                timeout: o.timeout,
                reasons: Vec::new(),
                maybe_committed: false,
                backoff: Backoff::new(o.initial_backoff, o.max_backoff),
                started: Instant::now(),
                priority: Priority::Default,
                idempotency: Idempotency::default(),
            },
        }
    }

    /// Clears everything an attempt accumulated, keeping the retry state.
    fn reset_attempt(&mut self) {
        self.read_version = Arc::new(OnceCell::new());
        self.first_read_beside = None;
        self.writes = WriteMap::default();
        self.read_conflicts.clear();
        self.extra_write_conflicts.clear();
        self.size_bound = 0;
        self.committed = false;
        self.receipt = None;
        self.sent_first_read = None;
        self.poisoned = None;
    }

    /// The commit's parts: mutations, read and write conflict ranges (coalesced).
    fn commit_parts(&self) -> (Vec<Mutation>, Vec<KeyRange>, Vec<KeyRange>) {
        let mut writes = self.writes.write_ranges();
        writes.extend(self.extra_write_conflicts.iter().cloned());
        (
            self.writes.mutations(),
            coalesce(self.read_conflicts.clone()),
            coalesce(writes),
        )
    }

    /// The exact size the commit would have now.
    fn exact_size(&self) -> usize {
        let (mutations, reads, writes) = self.commit_parts();
        Commit {
            read_version: Version::ZERO,
            mutations,
            read_conflict_ranges: reads,
            write_conflict_ranges: writes,
            idempotency: None,
        }
        .size()
    }

    /// Admits a write adding at most `added` bytes, or fails with `TransactionTooLarge`.
    fn admit(&mut self, added: usize) -> Result<()> {
        if self.committed {
            return Err(Error::InvalidArgument(
                "transaction already committed; reset it before writing again".into(),
            ));
        }
        let bound = self.size_bound.saturating_add(added);
        if bound > limits::MAX_TRANSACTION_BYTES {
            let exact = self.exact_size().saturating_add(added);
            limits::check_transaction_size(exact)?;
            self.size_bound = exact;
        } else {
            self.size_bound = bound;
        }
        Ok(())
    }
}

/// Sorts ranges and merges overlapping or touching ones; drops empty ones.
pub(crate) fn coalesce(mut ranges: Vec<KeyRange>) -> Vec<KeyRange> {
    ranges.retain(|r| !r.is_empty());
    ranges.sort_by(|a, b| a.begin.cmp(&b.begin));
    let mut out: Vec<KeyRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if last.end.is_empty() || last.end >= r.begin => {
                if !last.end.is_empty() && (r.end.is_empty() || r.end > last.end) {
                    last.end = r.end;
                }
            }
            _ => out.push(r),
        }
    }
    out
}

/// The same error again (a refused write's error is returned by the commit too). The
/// variants a write can be refused with are copied exactly; any other keeps its message.
fn copy_error(e: &Error) -> Error {
    match e {
        Error::InvalidArgument(m) => Error::InvalidArgument(m.clone()),
        Error::InvalidRange(m) => Error::InvalidRange(m.clone()),
        Error::KeyTooLarge { len, max } => Error::KeyTooLarge {
            len: *len,
            max: *max,
        },
        Error::ValueTooLarge { len, max } => Error::ValueTooLarge {
            len: *len,
            max: *max,
        },
        Error::TransactionTooLarge { len, max } => Error::TransactionTooLarge {
            len: *len,
            max: *max,
        },
        other => Error::InvalidArgument(other.to_string()),
    }
}

/// Bytes a single-key write adds: key and payload plus its write conflict range.
fn point_write_size(key: &[u8], payload: usize) -> usize {
    key.len() + payload + 2 * key.len() + 1
}

impl Transaction {
    pub(crate) fn new(db: Database) -> Self {
        let state = Mutex::new(TxState::new(&db));
        Transaction {
            inner: Arc::new(TxInner {
                db,
                state,
                cancelled: watch::channel(false).0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, TxState> {
        self.inner.state.lock()
    }

    pub(crate) fn backend(&self) -> &Arc<dyn Backend> {
        &self.inner.db.backend
    }

    /// The database this transaction belongs to.
    pub fn database(&self) -> &Database {
        &self.inner.db
    }

    // ---- versions -------------------------------------------------------------------------

    /// The read version: fetched from the coordinator on first use, then fixed for the
    /// transaction (until [`reset`](Self::reset) or a retry).
    pub async fn get_read_version(&self) -> Result<Version> {
        let (cell, priority) = {
            let st = self.lock();
            (st.read_version.clone(), st.retry.priority)
        };
        let backend = self.backend().clone();
        self.guarded(async move {
            cell.get_or_try_init(|| async move { backend.read_version(priority).await })
                .await
                .copied()
        })
        .await
    }

    /// How this read gets the transaction's read version: known already, fetched first, or
    /// (for this attempt's first reads, see
    /// [`Backend::try_first_read`](crate::backend::Backend::try_first_read)) beside the read.
    pub(crate) fn read_version_plan(&self) -> ReadVersionPlan {
        let backend = self.backend().clone();
        let mut st = self.lock();
        if let Some(version) = st.read_version.get() {
            return ReadVersionPlan::Known(*version);
        }
        let priority = st.retry.priority;
        let beside = *st
            .first_read_beside
            .get_or_insert_with(|| backend.try_first_read(priority));
        if beside {
            ReadVersionPlan::Beside(st.read_version.clone(), priority)
        } else {
            ReadVersionPlan::Fetch
        }
    }

    /// Fixes the read version from a first read made beside the read-version request (unless
    /// a concurrent read fixed it first) and returns it, with the read's answer if it was taken
    /// at that version. Concurrent first reads each go out; the first answer fixes the version
    /// and a read taken at another one must be read again.
    pub(crate) async fn settle_first_read<T>(
        cell: &OnceCell<Version>,
        first: FirstRead<T>,
    ) -> (Version, Option<T>) {
        let version = *cell.get_or_init(|| async { first.version }).await;
        let value = if version == first.version {
            first.value
        } else {
            None
        };
        (version, value)
    }

    /// The read version for a point read of `key`, perhaps with the key's value at it (read in
    /// the same round trip, see [`read_version_plan`](Self::read_version_plan)).
    async fn read_version_for_get(&self, key: &Bytes) -> Result<(Version, Option<Option<Bytes>>)> {
        match self.read_version_plan() {
            ReadVersionPlan::Known(version) => Ok((version, None)),
            ReadVersionPlan::Fetch => Ok((self.get_read_version().await?, None)),
            ReadVersionPlan::Beside(cell, priority) => {
                let backend = self.backend().clone();
                let first = self
                    .guarded(backend.first_read(priority, key.clone()))
                    .await?;
                Ok(Self::settle_first_read(&cell, first).await)
            }
        }
    }

    /// The read version if the transaction has one (from a read, a commit that needed one, or
    /// [`set_read_version`](Self::set_read_version)); never asks the coordinator. A blind
    /// write commits without one.
    pub fn known_read_version(&self) -> Option<Version> {
        self.lock().read_version.get().copied()
    }

    /// Uses `version` as the read version instead of asking the coordinator (for example to
    /// read at the same version as another transaction). Reads older than the MVCC window fail
    /// with `TransactionTooOld`.
    pub fn set_read_version(&self, version: Version) {
        self.lock().read_version = Arc::new(OnceCell::new_with(Some(version)));
    }

    /// The version the transaction committed at; `None` before a successful commit and for
    /// read-only transactions (which commit without contacting the cluster).
    pub fn committed_version(&self) -> Option<Version> {
        self.lock().receipt.map(|r| r.version)
    }

    // ---- reads ----------------------------------------------------------------------------

    /// Reads a key, seeing this transaction's own writes. Adds the read conflict
    /// `[key, key\0)` unless the local writes alone decide the value (a set or clear of the key,
    /// or a clear of a range holding it).
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        self.get_impl(key.as_ref(), false).await
    }

    pub(crate) async fn get_impl(&self, key: &[u8], snapshot: bool) -> Result<Option<Bytes>> {
        let key = checked_key(key, self.system_keys())?;
        if let Some(known) = self.lock().writes.known(&key) {
            return Ok(known);
        }
        if self.lock().writes.unreadable(&key) {
            return Err(unreadable_error(&key));
        }
        let (version, first) = self.read_version_for_get(&key).await?;
        let stored = match first {
            Some(stored) => stored,
            None => {
                self.guarded(self.backend().get(key.clone(), version))
                    .await?
            }
        };
        let mut st = self.lock();
        if !snapshot {
            st.read_conflicts.push(KeyRange::single(&key));
        }
        Ok(st.writes.resolve(&key, stored))
    }

    /// Reads the keys of `[begin, end)` (an empty `end` means the end of the key space) as a
    /// stream of pairs, seeing this transaction's own writes. See [`RangeStream`] for batching,
    /// shard boundaries and the read conflict range it adds.
    pub fn get_range(
        &self,
        begin: impl AsRef<[u8]>,
        end: impl AsRef<[u8]>,
        options: RangeOptions,
    ) -> RangeStream {
        self.range_impl(begin.as_ref(), end.as_ref(), options, false)
    }

    pub(crate) fn range_impl(
        &self,
        begin: &[u8],
        end: &[u8],
        options: RangeOptions,
        snapshot: bool,
    ) -> RangeStream {
        match checked_range(begin, end, self.system_keys()) {
            Ok(range) => RangeStream::new(self.clone(), range, options, snapshot),
            Err(e) => RangeStream::failed(e),
        }
    }

    /// A view of this transaction whose reads add no read conflict ranges (they still see the
    /// transaction's writes).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::new(self.clone())
    }

    /// The ranges this transaction's reads so far conflict on (sorted, merged): what its
    /// commit will send as read conflict ranges. A stateless service reading on a client's
    /// behalf hands them back to the client, which sends them with its commit.
    pub fn read_conflict_ranges(&self) -> Vec<KeyRange> {
        coalesce(self.lock().read_conflicts.clone())
    }

    /// Records that `range` was read (used by [`RangeStream`]).
    pub(crate) fn add_read_conflict(&self, range: KeyRange) {
        if !range.is_empty() {
            self.lock().read_conflicts.push(range);
        }
    }

    /// Merges a storage read of `[begin, end)` with the local writes (used by
    /// [`RangeStream`]). Fails with `AccessedUnreadable` when the region holds a key this
    /// transaction set with a versionstamped value.
    pub(crate) fn merge_local(
        &self,
        begin: &[u8],
        end: &[u8],
        stored: Vec<crate::KeyValue>,
        reverse: bool,
    ) -> Result<Vec<crate::KeyValue>> {
        let st = self.lock();
        if let Some(key) = st.writes.first_unreadable(begin, end) {
            return Err(unreadable_error(&key));
        }
        Ok(st.writes.merge(begin, end, stored, reverse))
    }

    /// Completes when the key's stored value differs from its value at this transaction's
    /// read version; see [`Watch`] for how (polling) and for its bounds.
    ///
    /// The baseline is read now (without adding a read conflict); the returned future polls.
    pub async fn watch(&self, key: impl AsRef<[u8]>) -> Result<Watch> {
        let key = checked_key(key.as_ref(), self.system_keys())?;
        let version = self.get_read_version().await?;
        let backend = self.backend().clone();
        let baseline = backend.get(key.clone(), version).await?;
        Ok(Watch::new(
            backend,
            key,
            baseline,
            self.inner.db.options().clone(),
        ))
    }

    // ---- writes ---------------------------------------------------------------------------

    /// Sets `key` to `value`. Fails at once on a key or value above the limits, a system key
    /// without [`TransactionOption::AccessSystemKeys`], or when the transaction would pass the
    /// 10 MB size limit; a refused write poisons the attempt (its commit fails the same way).
    pub fn set(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        let (key, value) = (key.as_ref(), value.as_ref());
        self.write(|st| {
            let key = checked_key(key, st.access_system_keys)?;
            limits::check_value(value)?;
            st.admit(point_write_size(&key, value.len()))?;
            st.writes.set(key, Bytes::copy_from_slice(value));
            Ok(())
        })
    }

    /// Removes `key`.
    pub fn clear(&self, key: impl AsRef<[u8]>) -> Result<()> {
        let key = key.as_ref();
        self.write(|st| {
            let key = checked_key(key, st.access_system_keys)?;
            st.admit(point_write_size(&key, 0))?;
            st.writes.clear(key);
            Ok(())
        })
    }

    /// Removes every key in `[begin, end)`. An empty `end` means the end of the key space:
    /// the start of the system key space (`\xff`) unless the transaction has
    /// [`TransactionOption::AccessSystemKeys`]; [`clear_range_from`](Self::clear_range_from)
    /// says it explicitly.
    pub fn clear_range(&self, begin: impl AsRef<[u8]>, end: impl AsRef<[u8]>) -> Result<()> {
        let (begin, end) = (begin.as_ref(), end.as_ref());
        self.write(|st| {
            let range = checked_range(begin, end, st.access_system_keys)?;
            if st.writes.splits_stamped_key(&range.begin, &range.end) {
                return Err(Error::InvalidArgument(format!(
                    "clear_range [\"{}\", \"{}\") covers only some of the keys a versionstamped \
                     key set earlier in this transaction can become, so what it clears would \
                     depend on the stamp: clear before setting the key, or clear every key it \
                     can become",
                    ferrisdb_core::keys::escape(&range.begin),
                    ferrisdb_core::keys::escape(&range.end)
                )));
            }
            st.admit(2 * (range.begin.len() + range.end.len()))?;
            st.writes.clear_range(range.begin, range.end);
            Ok(())
        })
    }

    /// Removes every key from `begin` to the end of the (user) key space.
    pub fn clear_range_from(&self, begin: impl AsRef<[u8]>) -> Result<()> {
        self.clear_range(begin, b"")
    }

    /// Sets an option of this transaction; options last until [`reset`](Self::reset).
    pub fn set_option(&self, option: TransactionOption) {
        let mut st = self.lock();
        match option {
            TransactionOption::AccessSystemKeys => st.access_system_keys = true,
            TransactionOption::Timeout(t) => st.retry.timeout = Some(t),
            TransactionOption::RetryLimit(n) => st.retry.retry_limit = Some(n),
            TransactionOption::MaxRetryDelay(d) => st.retry.backoff.set_max(d),
            TransactionOption::ReadOnly => st.read_only = true,
            TransactionOption::Priority(p) => st.retry.priority = p,
            TransactionOption::AutomaticIdempotency => st.retry.idempotency.set_automatic(),
        }
    }

    /// The bytes this transaction counts against the 10 MB limit so far: its mutations and
    /// the ends of its conflict ranges (FoundationDB's size estimate).
    pub fn approximate_size(&self) -> usize {
        self.lock().exact_size()
    }

    /// The bound on this transaction's retry loop (see [`TransactionOption::Timeout`]).
    pub(crate) fn timeout(&self) -> Option<std::time::Duration> {
        self.lock().retry.timeout
    }

    /// Whether [`TransactionOption::AccessSystemKeys`] is set.
    pub(crate) fn system_keys(&self) -> bool {
        self.lock().access_system_keys
    }

    /// Runs one write under the lock; a refused write poisons the attempt (see
    /// [`commit`](Self::commit)).
    fn write(&self, write: impl FnOnce(&mut TxState) -> Result<()>) -> Result<()> {
        if self.is_cancelled() {
            return Err(Error::TransactionCancelled);
        }
        let mut st = self.lock();
        let result = if st.read_only {
            Err(Error::InvalidArgument(
                "this transaction is read-only (TransactionOption::ReadOnly): writes are refused"
                    .into(),
            ))
        } else {
            write(&mut st)
        };
        if let Err(e) = &result
            && st.poisoned.is_none()
            && !st.committed
        {
            st.poisoned = Some(copy_error(e));
        }
        result
    }

    // ---- conflict ranges ------------------------------------------------------------------

    /// Makes the transaction conflict with any commit after its read version that writes into
    /// `[begin, end)`, as if it had read the range.
    pub fn add_read_conflict_range(
        &self,
        begin: impl AsRef<[u8]>,
        end: impl AsRef<[u8]>,
    ) -> Result<()> {
        let range = checked_range(begin.as_ref(), end.as_ref(), self.system_keys())?;
        self.add_read_conflict(range);
        Ok(())
    }

    /// Makes transactions that read `[begin, end)` conflict with this one, as if it had
    /// written the range.
    pub fn add_write_conflict_range(
        &self,
        begin: impl AsRef<[u8]>,
        end: impl AsRef<[u8]>,
    ) -> Result<()> {
        let (begin, end) = (begin.as_ref(), end.as_ref());
        self.write(|st| {
            let range = checked_range(begin, end, st.access_system_keys)?;
            st.admit(range.begin.len() + range.end.len())?;
            st.extra_write_conflicts.push(range);
            Ok(())
        })
    }

    // ---- commit and retry -----------------------------------------------------------------

    /// The commit request as it would be sent now (for tests).
    #[cfg(test)]
    pub(crate) fn pending_commit(&self) -> (Vec<Mutation>, Vec<KeyRange>, Vec<KeyRange>) {
        self.lock().commit_parts()
    }

    /// Commits the buffered writes. A transaction without writes or write conflict ranges
    /// commits locally. Fails with `TransactionTooLarge` before any network call when over
    /// the limit; `NotCommitted` on a conflict; `CommitUnknownResult` when the outcome could
    /// not be learned. An attempt in which a write was refused (a key over the limit, a
    /// system key) never commits: it fails with that write's error, so no partial
    /// transaction reaches the database.
    pub async fn commit(&self) -> Result<()> {
        if self.is_cancelled() {
            return Err(Error::TransactionCancelled);
        }
        let (mutations, reads, writes) = {
            let st = self.lock();
            if st.committed {
                return Err(Error::InvalidArgument(
                    "transaction already committed; reset it to reuse it".into(),
                ));
            }
            if let Some(refused) = &st.poisoned {
                return Err(copy_error(refused));
            }
            st.commit_parts()
        };
        if mutations.is_empty() && writes.is_empty() {
            self.lock().committed = true;
            return Ok(());
        }
        let id = {
            let mut st = self.lock();
            st.retry.idempotency.id_for_commit()
        };
        let mut commit = Commit {
            read_version: Version::ZERO,
            mutations,
            read_conflict_ranges: reads,
            write_conflict_ranges: writes,
            idempotency: id.clone().map(|id| IdempotencyId {
                id,
                first_read_version: Version::ZERO,
            }),
        };
        limits::check_transaction_size(commit.size())?;
        // A blind write (no read conflict ranges) is never checked against its read version,
        // so it needs none: skipping the GetReadVersion round trip halves its latency. A read
        // version the transaction already holds is still sent.
        let known = self.lock().read_version.get().copied();
        let read_version = match known {
            Some(v) => v,
            None if commit.read_conflict_ranges.is_empty() && id.is_none() => Version::ZERO,
            None => self.get_read_version().await?,
        };
        commit.read_version = read_version;
        if let Some(idm) = commit.idempotency.as_mut() {
            let mut st = self.lock();
            let first = st.retry.idempotency.first_read(read_version);
            idm.first_read_version = first;
            st.sent_first_read = Some(first);
        }
        let committed = self.guarded(self.backend().commit(commit)).await?;
        let mut st = self.lock();
        st.committed = true;
        st.receipt = Some(committed);
        Ok(())
    }

    /// Handles an error of this transaction: for a retryable one (see
    /// [`Error::is_retryable`]) it drops stale cluster state (the shard map after
    /// `WrongShard`), sleeps an exponential backoff with jitter (cut short, after an error that
    /// may mean a recovery of the transaction system, as soon as a new generation serves),
    /// resets the transaction and returns `Ok(())` so the caller runs it again; any other
    /// error is returned.
    ///
    /// Also returns the error when the retry limit is used up, and `TimedOut` when the backoff
    /// would pass the [`DatabaseOptions::timeout`](crate::DatabaseOptions::timeout).
    pub async fn on_error(&self, err: Error) -> Result<()> {
        if !err.is_retryable() {
            return Err(err);
        }
        let delay = {
            let mut st = self.lock();
            st.retry.attempts += 1;
            if st
                .retry
                .retry_limit
                .is_some_and(|limit| st.retry.attempts > limit)
            {
                return Err(err);
            }
            let code = err.code();
            match st.retry.reasons.iter_mut().find(|(c, _)| *c == code) {
                Some((_, n)) => *n += 1,
                None => st.retry.reasons.push((code, 1)),
            }
            st.retry.maybe_committed |= err.is_commit_unknown();
            if err.is_commit_unknown() {
                let sent = st.sent_first_read;
                st.retry.idempotency.commit_unknown(sent);
            }
            let delay = st.retry.backoff.next_delay();
            if let Some(timeout) = st.retry.timeout {
                let elapsed = st.retry.started.elapsed();
                if elapsed.saturating_add(delay) > timeout {
                    return Err(Error::TimedOut(format!(
                        "transaction gave up after {} attempts in {elapsed:?} (timeout \
                         {timeout:?}); last error: {err}",
                        st.retry.attempts
                    )));
                }
            }
            delay
        };
        self.backend().invalidate(&err);
        tracing::debug!(error = %err, ?delay, "retrying transaction");
        // After a failure that may mean the transaction system is being recovered, retry as
        // soon as a new generation serves rather than at the end of a long backoff step.
        let recovery = matches!(
            err,
            Error::Unavailable(_) | Error::Recovering(_) | Error::CommitUnknownResult(_)
        );
        if recovery {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.backend().recovered() => {}
            }
        } else {
            tokio::time::sleep(delay).await;
        }
        self.lock().reset_attempt();
        Ok(())
    }

    /// How many times [`on_error`](Self::on_error) has let this transaction retry.
    pub fn retries(&self) -> u32 {
        self.lock().retry.attempts
    }

    /// Why this transaction was retried: each error code with how many retries it caused,
    /// in the order first seen.
    pub fn retry_reasons(&self) -> Vec<(ErrorCode, u32)> {
        self.lock().retry.reasons.clone()
    }

    /// Whether an earlier attempt of this transaction ended with an unknown commit result, so
    /// its writes may already be in the database (FoundationDB's `MaybeCommitted`). A
    /// transaction that is not idempotent checks it before writing again, e.g. by reading a
    /// marker the earlier attempt would have written.
    pub fn maybe_committed(&self) -> bool {
        self.lock().retry.maybe_committed
    }

    /// Discards everything: writes, conflict ranges, read version, retry count, backoff,
    /// options and idempotency id; a cancelled transaction becomes usable again.
    pub fn reset(&self) {
        let fresh = TxState::new(&self.inner.db);
        *self.lock() = fresh;
        self.inner.cancelled.send_replace(false);
    }

    /// Records the start of a new attempt clock (used by [`Database::run`]).
    pub(crate) fn started(&self) -> Instant {
        self.lock().retry.started
    }
}
