//! [`Coordinator`]: the in-process API of the transaction coordinator, shared as
//! [`CoordinatorHandle`] by the gRPC service and by anything else in the process (the public
//! `KV` service builds on [`Coordinator::read_version`] and [`Coordinator::commit`]).
//!
//! It owns the commit log and the commit pipeline, serves log pulls and mutation feeds (clipped to
//! the caller's ranges, waiting on the committed version) and tracks the durable version each
//! storage server reports. The log is truncated through the smallest durable version over the
//! storage servers of the controller's shard map, and only once every one of them has reported;
//! until the shard map is known, nothing is truncated.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use ferrisdb_client::{Database, Priority};
use ferrisdb_core::{Commit, Committed, IdempotencyId};
use ferrisdb_core::{Error, KeyRange, Result, Version};
use parking_lot::Mutex;
use tokio::sync::watch;

use super::clock::{Clock, SystemClock};
use super::commit::{BatchLimits, Pipeline, PipelineStats};
use super::idempotency;
use super::resolver::{Resolver, ResolverConfig};
use super::sequencer::Sequencer;
use crate::log::{CommitLog, LogOptions, LogStats, Recovered};

use crate::log::clip;
use crate::log::feed::read_pulled;
pub use crate::log::feed::{MutationFeed, Pulled};

/// How often a batch-priority read version checks whether the commit queue has drained.
pub const BATCH_PRIORITY_POLL: Duration = Duration::from_millis(2);

/// Longest a pull waits for a new commit.
pub const MAX_PULL_WAIT: Duration = Duration::from_secs(5);
pub use crate::log::feed::{DEFAULT_PULL_BYTES, MAX_PULL_BATCHES, MAX_PULL_BYTES};

/// Shared handle to a running coordinator.
pub type CoordinatorHandle = Arc<Coordinator>;

/// Settings of a [`Coordinator`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorOptions {
    /// Directory of the commit log segments.
    pub log_dir: PathBuf,
    /// Log settings.
    pub log: LogOptions,
    /// Batch size limits.
    pub batch: BatchLimits,
    /// How long idempotency ids are remembered after their commit.
    pub idempotency_retention: Duration,
}

impl CoordinatorOptions {
    /// Defaults with the log in `log_dir`.
    pub fn new(log_dir: impl Into<PathBuf>) -> Self {
        CoordinatorOptions {
            log_dir: log_dir.into(),
            log: LogOptions::default(),
            batch: BatchLimits::default(),
            idempotency_retention: idempotency::DEFAULT_RETENTION,
        }
    }
}

/// A pull request, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pull {
    /// Return versions strictly greater than this.
    pub after: Version,
    /// The caller's key ranges.
    pub ranges: Vec<KeyRange>,
    /// Soft response size cap (0 = default).
    pub max_bytes: u64,
    /// How long to wait for a commit when nothing newer exists (capped at [`MAX_PULL_WAIT`]).
    pub wait: Duration,
}

/// Everything a status report or heartbeat needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CoordinatorStats {
    /// The newest committed version.
    pub committed_version: Version,
    /// Pipeline counters.
    pub pipeline: PipelineStats,
    /// Log counters.
    pub log: LogStats,
}

/// A storage server whose durable version gates log truncation (see
/// [`Coordinator::log_holders`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogHolder {
    /// The storage server.
    pub storage_id: String,
    /// Newest version it reported durable, if it reported since the coordinator opened.
    pub durable: Option<Version>,
    /// Time since its last report (since the coordinator opened if it has not reported).
    pub since_report: Duration,
}

#[derive(Debug)]
struct Durability {
    /// Newest durable version reported per storage server, and when it last reported.
    reported: HashMap<String, (Version, Instant)>,
    /// When this coordinator opened (the age of a storage server that never reported).
    opened: Instant,
    /// Storage servers of the shard map; `None` until known.
    storage: Option<BTreeSet<String>>,
    /// The log has been (or is being) truncated through this version.
    truncated: Version,
}

/// A running transaction coordinator (see the module docs).
#[derive(Debug)]
pub struct Coordinator {
    log: Arc<CommitLog>,
    pipeline: Pipeline,
    recovered: Recovered,
    /// The first version of this process (its recovery commit): the idempotency table holds
    /// every id committed after it.
    generation_start: Version,
    /// How long idempotency ids are remembered after their commit.
    id_retention: Duration,
    /// A client of the cluster, to look up idempotency ids committed before this process
    /// started (set once the coordinator joins a cluster).
    cluster: OnceLock<Database>,
    durability: Mutex<Durability>,
    stopping: watch::Sender<bool>,
}

impl Coordinator {
    /// Opens the log (replaying it) and starts the pipeline with the system clock.
    /// Blocking: call before serving or from `spawn_blocking`, inside a tokio runtime (the
    /// commit batcher runs on it as a task).
    pub fn open(opts: CoordinatorOptions) -> Result<CoordinatorHandle> {
        Self::open_with_clock(opts, SystemClock)
    }

    /// [`open`](Self::open) with an injected clock for the sequencer.
    pub fn open_with_clock<C: Clock + 'static>(
        opts: CoordinatorOptions,
        clock: C,
    ) -> Result<CoordinatorHandle> {
        let (log, recovered) = CommitLog::open(&opts.log_dir, opts.log)?;
        let log = Arc::new(log);
        let mut sequencer = if recovered.last_version == Version::ZERO {
            Sequencer::new(clock)
        } else {
            Sequencer::recover(clock, recovered.last_version)
        };
        // The recovery commit: an empty, durable batch at the first version of this
        // generation. Read versions handed out from now on are at least this one; the
        // resolver refuses older ones (from the previous generation) as too old.
        let start = sequencer.next_version()?;
        let submitted = log.submit(start, Vec::new())?;
        log.sync(submitted.seq)?;
        log.publish(submitted.batch);
        tracing::info!(
            last_version = %recovered.last_version,
            generation_start = %start,
            batches = recovered.batches,
            retained_from = %recovered.retained_from,
            "commit log recovered"
        );
        let pipeline = Pipeline::start(
            log.clone(),
            start,
            sequencer,
            Resolver::starting_at(ResolverConfig::default(), start),
            opts.batch,
            idempotency::retention_versions(opts.idempotency_retention),
        )?;
        Ok(Arc::new(Coordinator {
            log,
            pipeline,
            recovered,
            generation_start: start,
            id_retention: opts.idempotency_retention,
            cluster: OnceLock::new(),
            durability: Mutex::new(Durability {
                reported: HashMap::new(),
                opened: Instant::now(),
                storage: None,
                truncated: recovered.retained_from,
            }),
            stopping: watch::channel(false).0,
        }))
    }

    /// What recovery found when the coordinator opened (before its recovery commit).
    pub fn recovered(&self) -> Recovered {
        self.recovered
    }

    /// The read version for a new transaction: the newest committed version, so the
    /// transaction sees every commit acknowledged before it asked.
    pub fn read_version(&self) -> Version {
        self.pipeline.committed_version()
    }

    /// [`read_version`](Self::read_version) asked for at `priority`: a batch-priority request
    /// waits while the commit queue is more than half full (polling every
    /// [`BATCH_PRIORITY_POLL`]), so background work yields to other work under load; the
    /// others never wait.
    pub async fn read_version_for(&self, priority: Priority) -> Version {
        if priority == Priority::Batch {
            let stopping = self.stopping.subscribe();
            while self.pipeline.queue_over_half() && !*stopping.borrow() {
                tokio::time::sleep(BATCH_PRIORITY_POLL).await;
            }
        }
        self.read_version()
    }

    /// Commits a validated transaction; returns its commit version and versionstamp once
    /// durable. A transaction whose idempotency id already committed gets that commit back,
    /// marked `already_committed` (see [`idempotency`]). Errors: `NotCommitted` (conflict),
    /// `TransactionTooOld`, `InvalidArgument` (read version never handed out), `Unavailable`
    /// (shutting down or failed: did not commit; or the storage servers could not be asked
    /// about an id), `CommitUnknownResult` (the log failed while this commit was being
    /// written), `CommitUnknownResultFatal` (an id whose first attempt is older than the
    /// retention).
    pub async fn commit(&self, commit: Commit) -> Result<Committed> {
        if let Some(idm) = &commit.idempotency
            && let Some(earlier) = self.committed_before_this_process(idm).await?
        {
            return Ok(earlier);
        }
        self.pipeline.commit(commit).await
    }

    /// The commit an idempotency id had under an earlier process of this coordinator, if its
    /// first attempt may be that old (the batcher's table holds only this process's commits):
    /// looked up in the storage servers, where the id's record went with the commit. Also
    /// refuses a first attempt newer than any committed version, and one older than the
    /// retention before scanning for it.
    async fn committed_before_this_process(
        &self,
        idm: &IdempotencyId,
    ) -> Result<Option<Committed>> {
        let newest = self.read_version();
        let first = idm.first_read_version;
        if first > newest {
            return Err(Error::InvalidArgument(format!(
                "the idempotency id's first attempt read at version {first}, newer than the \
                 newest committed version {newest}; get read versions from GetReadVersion"
            )));
        }
        if first >= self.generation_start {
            return Ok(None);
        }
        let retention = idempotency::retention_versions(self.id_retention);
        if first < newest.saturating_sub(retention) {
            return Err(idempotency::expired(first, newest, retention));
        }
        let Some(db) = self.cluster.get() else {
            return Err(Error::Unavailable(
                "this coordinator restarted since the transaction's first attempt and is not \
                 part of a cluster, so it cannot look up the idempotency id"
                    .into(),
            ));
        };
        let through = self.generation_start.saturating_sub(1);
        let found = idempotency::find_stored(db, &idm.id, first, through)
            .await
            .map_err(|e| {
                Error::Unavailable(format!(
                    "looking up the idempotency id in the storage servers failed: {e}"
                ))
            })?;
        Ok(found.map(|stamp| Committed {
            version: stamp.version(),
            stamp,
            already_committed: true,
        }))
    }

    /// Lets the coordinator read from the cluster (idempotency ids committed before this
    /// process started) and starts clearing expired idempotency records; the first call wins.
    /// Must be called inside a tokio runtime.
    pub fn attach_cluster(self: &Arc<Self>, db: Database) {
        if self.cluster.set(db.clone()).is_ok() {
            let me = Arc::downgrade(self);
            tokio::spawn(idempotency::clean_expired(
                db,
                self.id_retention,
                move || me.upgrade().map(|c| c.read_version()),
            ));
        }
    }

    /// Why the commit pipeline failed (`None` while it has not); see [`Pipeline::failure`].
    pub fn failure(&self) -> watch::Receiver<Option<String>> {
        self.pipeline.failure()
    }

    /// Committed mutations after `pull.after`, clipped to `pull.ranges`; waits up to
    /// `pull.wait` when nothing newer is committed. `TransactionTooOld` when the log no longer
    /// holds versions right after `pull.after`.
    pub async fn pull(&self, pull: Pull) -> Result<Pulled> {
        let ranges = clip::normalize(pull.ranges);
        let mut committed = self.pipeline.subscribe();
        let wait = pull.wait.min(MAX_PULL_WAIT);
        if *committed.borrow() <= pull.after && !wait.is_zero() {
            let mut stopping = self.stopping.subscribe();
            let _ = tokio::time::timeout(wait, async {
                tokio::select! {
                    _ = committed.wait_for(|v| *v > pull.after) => {}
                    _ = stopping.wait_for(|s| *s) => {}
                }
            })
            .await;
        }
        let through = *committed.borrow();
        read_pulled(&self.log, pull.after, through, &ranges, pull.max_bytes)
    }

    /// The feed of committed mutations after `after`, clipped to `ranges`, that a storage
    /// server follows (see [`MutationFeed`]).
    pub fn mutation_feed(
        &self,
        after: Version,
        ranges: Vec<KeyRange>,
        max_bytes: u64,
    ) -> MutationFeed {
        MutationFeed::new(
            self.log.clone(),
            self.pipeline.subscribe(),
            self.stopping.subscribe(),
            after,
            clip::normalize(ranges),
            max_bytes,
        )
    }

    /// Records that `storage_id` has made every version up to `durable` durable, and truncates
    /// the log if every storage server of the shard map is now past its oldest batch.
    pub async fn report_durable(&self, storage_id: &str, durable: Version) -> Result<()> {
        if storage_id.is_empty() {
            return Err(Error::InvalidArgument(
                "storage_id must not be empty".into(),
            ));
        }
        let committed = self.read_version();
        {
            let mut d = self.durability.lock();
            let entry = d
                .reported
                .entry(storage_id.to_owned())
                .or_insert((Version::ZERO, Instant::now()));
            *entry = (entry.0.max(durable.min(committed)), Instant::now());
        }
        self.maybe_truncate().await
    }

    /// Sets the storage servers whose durable versions gate truncation (from the shard map).
    pub async fn set_storage_servers(&self, ids: BTreeSet<String>) -> Result<()> {
        self.durability.lock().storage = Some(ids);
        self.maybe_truncate().await
    }

    /// The version every storage server of the shard map has made durable, if all reported.
    pub fn min_durable(&self) -> Option<Version> {
        let d = self.durability.lock();
        let storage = d.storage.as_ref().filter(|s| !s.is_empty())?;
        storage
            .iter()
            .map(|id| d.reported.get(id).map(|r| r.0))
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .min()
    }

    async fn maybe_truncate(&self) -> Result<()> {
        let Some(target) = self.min_durable() else {
            return Ok(());
        };
        {
            let mut d = self.durability.lock();
            if target <= d.truncated {
                return Ok(());
            }
            d.truncated = target;
        }
        let log = self.log.clone();
        tokio::task::spawn_blocking(move || log.truncate_through(target))
            .await
            .map_err(|e| Error::Internal(format!("log truncation task failed: {e}")))?
    }

    /// The storage servers whose durable versions gate log truncation (the shard map's), with
    /// what each reported and how long ago (`None`: nothing since this coordinator opened; the
    /// age then counts from the opening), and the version the log is truncated through.
    pub fn log_holders(&self) -> (Vec<LogHolder>, Version) {
        let d = self.durability.lock();
        let holders = d
            .storage
            .iter()
            .flatten()
            .map(|id| {
                let reported = d.reported.get(id);
                LogHolder {
                    storage_id: id.clone(),
                    durable: reported.map(|r| r.0),
                    since_report: reported.map_or(d.opened, |r| r.1).elapsed(),
                }
            })
            .collect();
        (holders, d.truncated)
    }

    /// Snapshot of the counters.
    pub fn stats(&self) -> CoordinatorStats {
        CoordinatorStats {
            committed_version: self.read_version(),
            pipeline: self.pipeline.stats(),
            log: self.log.stats(),
        }
    }

    /// Pulls waiting for a commit plus open mutation feeds (each watches for the shutdown).
    #[cfg(test)]
    fn shutdown_watchers(&self) -> usize {
        self.stopping.receiver_count()
    }

    /// Wakes long-polling pulls and ends mutation feeds so a server can drain quickly; commits
    /// still run.
    pub fn begin_shutdown(&self) {
        self.stopping.send_replace(true);
    }

    /// Refuses new commits, finishes (makes durable and answers) every batch already queued,
    /// and stops the pipeline threads.
    pub async fn shutdown(&self) {
        self.begin_shutdown();
        self.pipeline.shutdown().await;
    }
}

#[cfg(test)]
mod tests;
