//! [`LogServer`]: the in-process API of the log server role, shared by its gRPC service
//! (`service.rs`) and its process (`process.rs`).
//!
//! A log server holds one [`CommitLog`] and a [`Fence`]. The coordinator of the generation the
//! log is locked at appends records ([`LogServer::append`], made durable by
//! [`LogServer::sync`] and readable by [`LogServer::publish`], in order) and says how far the
//! generation is known committed ([`LogServer::note_committed`]). Storage servers follow the
//! log ([`LogServer::feed`]) only up to the *servable* version: the newest version both
//! published here and known committed, so a storage server never applies a version that a
//! recovery could still discard (one not yet durable on every log server of its generation).
//!
//! A recovery [`lock`](LogServer::lock)s the log at its new generation: the fence is persisted
//! before the answer, appends of older generations are refused from then on
//! ([`Error::Fenced`]), and everything in the log is durable and readable when the answer says
//! where it ends. The recovery then reads records ([`LogServer::read_records`]) to copy them to
//! other log servers, or [`reset`](LogServer::reset)s a log it recruits from scratch.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use ferrisdb_core::{Error, KeyRange, Result, Version};
use ferrisdb_storage::vfs::SharedFs;
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

use super::feed::MutationFeed;
use super::fence::Fence;
use super::{CommitLog, LogOptions, LogStats, LoggedBatch, Submitted, clip};

/// Bytes of records a recovery read returns when it asks for no particular amount.
pub const DEFAULT_READ_BYTES: u64 = 4 << 20;
/// Most bytes of records a recovery read may ask for.
pub const MAX_READ_BYTES: u64 = 32 << 20;

/// Longest a [`LogServer::lock`] waits for records already durable to become readable.
const PUBLISH_WAIT: Duration = Duration::from_secs(5);
/// Fewest seconds between two warnings that the retention budget dropped versions some
/// storage server lacks.
const BUDGET_WARNING_EVERY: Duration = Duration::from_secs(10);

/// What a [`LogServer::lock`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockState {
    /// The log server's id.
    pub log_id: String,
    /// The newest record in the log (durable).
    pub durable_version: Version,
    /// Versions at or below this are no longer held.
    pub retained_from: Version,
    /// The newest version the log knew committed.
    pub known_committed: Version,
}

/// A status snapshot (see `LogState` in `log.proto`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogServerState {
    /// The log server's id.
    pub log_id: String,
    /// The generation the log is locked at.
    pub locked_epoch: u64,
    /// The newest record submitted.
    pub durable_version: Version,
    /// The newest version known committed.
    pub known_committed: Version,
    /// Versions at or below this are no longer held.
    pub retained_from: Version,
    /// Log counters.
    pub stats: LogStats,
    /// The retention budget (0: none; see [`LogServer::set_retention_budget`]).
    pub retention_budget_bytes: u64,
}

/// A running log server (see the module docs). Share as `Arc<LogServer>`.
#[derive(Debug)]
pub struct LogServer {
    id: String,
    /// Where the log and its fence live (the OS, or a simulated disk).
    fs: SharedFs,
    dir: PathBuf,
    log: Arc<CommitLog>,
    /// Changed only under this lock; appends check it under the same lock, so none of an older
    /// generation lands after a lock has answered.
    fence: Mutex<Fence>,
    /// The newest version known committed.
    known_committed: Mutex<Version>,
    /// The newest published version.
    published: watch::Sender<Version>,
    /// `min(published, known committed)`: what feeds serve.
    servable: watch::Sender<Version>,
    /// The log is truncated (or being truncated) through this version.
    truncated: Mutex<Version>,
    /// Retained bytes past which versions only lagging storage servers need are dropped
    /// (0: no budget).
    retention_budget: AtomicU64,
    /// When the budget last dropped versions some storage server lacked (for rate-limited
    /// warnings).
    last_budget_warning: Mutex<Option<Instant>>,
    /// Storage servers allowed to follow the log (the shard map's); `None` until known.
    followers: RwLock<Option<BTreeSet<String>>>,
    stopping: watch::Sender<bool>,
    /// Why the log can no longer take writes (a write or fsync error), once it cannot.
    failure: watch::Sender<Option<String>>,
}

impl LogServer {
    /// Opens the log in `dir` (replaying it) as log server `id`. Blocking.
    pub fn open(dir: &Path, id: String, opts: LogOptions) -> Result<Arc<LogServer>> {
        LogServer::open_on(ferrisdb_storage::vfs::os(), dir, id, opts)
    }

    /// [`open`](Self::open) on the file system `fs` (the simulator's disk, say).
    pub fn open_on(
        fs: SharedFs,
        dir: &Path,
        id: String,
        opts: LogOptions,
    ) -> Result<Arc<LogServer>> {
        fs.create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating the log dir {}", dir.display()), e))?;
        let fence = Fence::load(&*fs, dir)?;
        let (log, recovered) = CommitLog::open_on(&fs, dir, opts, fence.reset_start)?;
        tracing::info!(
            log_id = %id,
            locked_epoch = fence.locked_epoch,
            last_version = %recovered.last_version,
            retained_from = %recovered.retained_from,
            batches = recovered.batches,
            "log recovered"
        );
        // Only what every storage server made durable was truncated, so it was committed;
        // anything newer is known committed again once a generation says so.
        let committed = recovered.retained_from;
        Ok(Arc::new(LogServer {
            id,
            fs,
            dir: dir.to_path_buf(),
            published: watch::channel(recovered.last_version).0,
            servable: watch::channel(committed.min(recovered.last_version)).0,
            log: Arc::new(log),
            fence: Mutex::new(fence),
            known_committed: Mutex::new(committed),
            truncated: Mutex::new(recovered.retained_from),
            retention_budget: AtomicU64::new(0),
            last_budget_warning: Mutex::new(None),
            followers: RwLock::new(None),
            stopping: watch::channel(false).0,
            failure: watch::channel(None).0,
        }))
    }

    /// The log server's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The generation the log is locked at.
    pub fn locked_epoch(&self) -> u64 {
        self.fence.lock().locked_epoch
    }

    /// Checks that `epoch` is the generation the log is locked at.
    fn check_epoch(fence: &Fence, epoch: u64) -> Result<()> {
        if epoch < fence.locked_epoch {
            return Err(Error::Fenced(format!(
                "generation {epoch} is over: this log server is locked by generation {}",
                fence.locked_epoch
            )));
        }
        if epoch > fence.locked_epoch {
            return Err(Error::InvalidArgument(format!(
                "generation {epoch} has not locked this log server (it is locked at {}): lock \
                 it first",
                fence.locked_epoch
            )));
        }
        Ok(())
    }

    /// Queues an encoded record of generation `epoch`: it must follow the newest record.
    /// Durable after [`sync`](Self::sync), readable after [`publish`](Self::publish).
    pub fn append(&self, epoch: u64, record: &[u8]) -> Result<Submitted> {
        let fence = self.fence.lock();
        Self::check_epoch(&fence, epoch)?;
        self.log.submit_record(record)
    }

    /// Blocks until record `seq` (and every one before it) is durable.
    pub fn sync(&self, seq: u64) -> Result<()> {
        self.log.sync(seq)
    }

    /// Makes a durable batch readable (in append order).
    pub fn publish(&self, batch: Arc<LoggedBatch>) {
        let version = batch.version;
        self.log.publish(batch);
        self.published.send_replace(version);
        self.refresh_servable();
    }

    /// Sets the retention budget: while the log holds more than `bytes`, it drops versions up
    /// to the *redundant* version the coordinator sends (durable on at least one replica of
    /// every shard) even though some storage servers (lagging, or gone for good) still lack
    /// them; those can then no longer catch up from the log and must be re-replicated. A
    /// storage server gone for good thus cannot make the log grow for ever, and no shard ever
    /// loses its last copy of a version. 0: no budget (the log keeps what any storage server
    /// of the shard map lacks).
    pub fn set_retention_budget(&self, bytes: u64) {
        self.retention_budget.store(bytes, Ordering::Relaxed);
    }

    /// Records that generation `epoch` knows every version up to `known_committed` committed,
    /// that every storage server made every version up to `truncate_through` durable, and
    /// that every shard has every version up to `redundant_through` durable on at least one
    /// replica. Returns the version to [`truncate`](Self::truncate) through when that allows
    /// dropping something: `truncate_through`, or `redundant_through` while the log holds
    /// more than its retention budget; never past what is known committed here. Does no I/O.
    pub fn note_committed(
        &self,
        epoch: u64,
        known_committed: Version,
        truncate_through: Version,
        redundant_through: Version,
    ) -> Result<Option<Version>> {
        {
            let fence = self.fence.lock();
            Self::check_epoch(&fence, epoch)?;
            let mut kc = self.known_committed.lock();
            *kc = (*kc).max(known_committed);
        }
        self.refresh_servable();
        let servable = *self.servable.borrow();
        let budget = self.retention_budget.load(Ordering::Relaxed);
        let retained = self.log.stats().retained_bytes;
        let over_budget = budget > 0 && retained > budget;
        let mut target = truncate_through;
        if over_budget && redundant_through > truncate_through {
            target = redundant_through;
        }
        let target = target.min(servable);
        let mut truncated = self.truncated.lock();
        if target <= *truncated {
            return Ok(None);
        }
        if target > truncate_through {
            self.warn_budget_drop(retained, budget, truncate_through, target);
        }
        *truncated = target;
        Ok(Some(target))
    }

    /// Says (at most every 10 s) that the budget dropped versions some storage server lacks.
    fn warn_budget_drop(&self, retained: u64, budget: u64, all_durable: Version, target: Version) {
        let mut last = self.last_budget_warning.lock();
        if last.is_some_and(|t| t.elapsed() < BUDGET_WARNING_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        tracing::warn!(
            retained_bytes = retained,
            retention_budget_bytes = budget,
            every_storage_server_durable_through = %all_durable,
            dropping_through = %target,
            "the log is over its retention budget: dropping versions that lagging storage \
             servers still lack (every shard keeps a replica durable past them); those servers \
             can no longer catch up from the log and must be re-replicated"
        );
    }

    /// Drops every record at or below `version` (from [`note_committed`](Self::note_committed)).
    /// Blocking I/O.
    pub fn truncate(&self, version: Version) -> Result<()> {
        self.log.truncate_through(version)
    }

    fn refresh_servable(&self) {
        let servable = (*self.published.borrow()).min(*self.known_committed.lock());
        self.servable.send_if_modified(|v| {
            if *v == servable {
                false
            } else {
                *v = servable;
                true
            }
        });
    }

    /// Locks the log at generation `epoch` (persisting the fence first), makes everything in
    /// it durable and readable, and says where it ends. [`Error::Fenced`] if a newer generation
    /// locked it already.
    pub async fn lock(self: &Arc<Self>, epoch: u64) -> Result<LockState> {
        let me = self.clone();
        let durable = crate::exec::blocking("the lock task", move || -> Result<Version> {
            let mut fence = me.fence.lock();
            if epoch < fence.locked_epoch {
                return Err(Error::Fenced(format!(
                    "generation {epoch} is over: this log server is locked by generation {}",
                    fence.locked_epoch
                )));
            }
            if epoch > fence.locked_epoch {
                let next = Fence {
                    locked_epoch: epoch,
                    ..*fence
                };
                next.store(&*me.fs, &me.dir)?;
                *fence = next;
            }
            me.log.sync_all()?;
            Ok(me.log.last_submitted())
        })
        .await??;
        // Records of the old generation's stream that were durable but not yet published are
        // published by that stream's syncer as soon as its own fsync returns.
        let mut published = self.published.subscribe();
        tokio::time::timeout(PUBLISH_WAIT, published.wait_for(|v| *v >= durable))
            .await
            .map_err(|_| {
                Error::Unavailable(format!(
                    "the log holds durable records up to {durable} that did not become readable \
                     within {PUBLISH_WAIT:?}"
                ))
            })?
            .map_err(|_| Error::Internal("the log's publish watch closed".into()))?;
        Ok(LockState {
            log_id: self.id.clone(),
            durable_version: durable,
            retained_from: self.log.retained_from(),
            known_committed: *self.known_committed.lock(),
        })
    }

    /// The records of `(after, through]` (chained from `after`), up to about `max_bytes`, for
    /// the recovery of generation `epoch` (the one the log is locked at); 0 bytes means
    /// [`DEFAULT_READ_BYTES`], and no read returns more than about [`MAX_READ_BYTES`].
    pub fn read_records(
        &self,
        epoch: u64,
        after: Version,
        through: Version,
        max_bytes: u64,
    ) -> Result<Vec<Vec<u8>>> {
        Self::check_epoch(&self.fence.lock(), epoch)?;
        let max_bytes = match max_bytes {
            0 => DEFAULT_READ_BYTES,
            n => n.min(MAX_READ_BYTES),
        };
        self.log.read_records(after, through, max_bytes)
    }

    /// Empties the log for generation `epoch` (the one it is locked at): it starts after
    /// `start`, known committed through `start`. The fence records `start` first. Blocking.
    pub fn reset(&self, epoch: u64, start: Version) -> Result<()> {
        let mut fence = self.fence.lock();
        Self::check_epoch(&fence, epoch)?;
        let next = Fence {
            reset_start: start,
            ..*fence
        };
        next.store(&*self.fs, &self.dir)?;
        *fence = next;
        self.log.reset(start)?;
        *self.known_committed.lock() = start;
        *self.truncated.lock() = start;
        self.published.send_replace(start);
        self.servable.send_replace(start);
        tracing::info!(epoch, start = %start, "log reset");
        Ok(())
    }

    /// Sets the storage servers allowed to follow the log (the shard map's).
    pub fn set_followers(&self, ids: BTreeSet<String>) {
        *self.followers.write() = Some(ids);
    }

    /// The feed storage server `storage_id` follows: committed mutations after `after`,
    /// clipped to `ranges`. Refused for a storage server outside the shard map.
    pub fn feed(
        &self,
        storage_id: &str,
        after: Version,
        ranges: Vec<KeyRange>,
        max_bytes: u64,
    ) -> Result<MutationFeed> {
        match &*self.followers.read() {
            None => {
                return Err(Error::Unavailable(
                    "the log server has not learned the shard map yet".into(),
                ));
            }
            Some(ids) if !ids.contains(storage_id) => {
                return Err(Error::InvalidArgument(format!(
                    "{storage_id:?} is not a storage server of the shard map"
                )));
            }
            Some(_) => {}
        }
        Ok(MutationFeed::new(
            self.log.clone(),
            self.servable.subscribe(),
            self.stopping.subscribe(),
            after,
            clip::normalize(ranges),
            max_bytes,
        ))
    }

    /// A status snapshot.
    pub fn state(&self) -> LogServerState {
        LogServerState {
            log_id: self.id.clone(),
            locked_epoch: self.locked_epoch(),
            durable_version: self.log.last_submitted(),
            known_committed: *self.known_committed.lock(),
            retained_from: self.log.retained_from(),
            stats: self.log.stats(),
            retention_budget_bytes: self.retention_budget.load(Ordering::Relaxed),
        }
    }

    /// The newest version feeds may serve.
    pub fn servable(&self) -> Version {
        *self.servable.borrow()
    }

    /// Records that the log failed to write or sync (`err`, an I/O error): the WAL refuses
    /// every write from now on. The first reason is kept. Other errors are not failures.
    pub fn note_error(&self, err: &Error) {
        if !matches!(err, Error::Io { .. }) {
            return;
        }
        self.failure.send_if_modified(|f| {
            if f.is_some() {
                return false;
            }
            tracing::error!(error = %err, "the log can no longer take writes");
            *f = Some(format!("the commit log failed: {err}"));
            true
        });
    }

    /// Why the log can no longer take writes (`None` while it can): a receiver that sees it
    /// when it happens.
    pub fn failure(&self) -> watch::Receiver<Option<String>> {
        self.failure.subscribe()
    }

    /// Ends every feed so the server can drain.
    pub fn begin_shutdown(&self) {
        self.stopping.send_replace(true);
    }
}

#[cfg(test)]
mod tests;
