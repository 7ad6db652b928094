//! [`Coordinator`]: the in-process API of the transaction coordinator, shared as
//! [`CoordinatorHandle`] by the gRPC service and by anything else in the process (the public
//! `KV` service builds on [`Coordinator::read_version`] and [`Coordinator::commit`]).
//!
//! It runs the commit pipeline of the generation it serves and tracks the durable version each
//! storage server reports. Two ways to serve:
//!
//! - **In a cluster** ([`Coordinator::in_cluster`]) it holds no log: it waits until the
//!   controller's recovery recruits it for a generation ([`Coordinator::start_generation`]),
//!   whose log servers hold the log ([`super::replicated_log`]). A newer generation replaces
//!   the one served; until the first, commits and read versions fail with `Recovering`.
//! - **Alone** ([`Coordinator::open`]: tests, and a coordinator started without a
//!   controller) it writes its own [`CommitLog`], serves it to pulls and mutation feeds, and
//!   recovers from it when reopened.
//!
//! The log is truncated through the smallest durable version over the storage servers of the
//! controller's shard map, and only once every one of them has reported; until the shard map is
//! known, nothing is truncated.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

use ferrisdb_client::{Database, Priority};
use ferrisdb_core::{Commit, Committed, IdempotencyId};
use ferrisdb_core::{Error, KeyRange, Result, Version};
use parking_lot::Mutex;
use tokio::sync::watch;

use super::clock::{Clock, SystemClock};
use super::commit::{BatchLimits, LogWriter, Pipeline, PipelineStats};
use super::idempotency;
use super::replicated_log::{LogMember, ReplicatedLog};
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
    reported: BTreeMap<String, (Version, Instant)>,
    /// When this coordinator opened (the age of a storage server that never reported).
    opened: Instant,
    /// Storage servers of the shard map; `None` until known.
    storage: Option<BTreeSet<String>>,
    /// The replicas of each shard of the shard map; empty until known.
    shards: Vec<Vec<String>>,
    /// [`CoordinatorHandle::redundant_through`] last sent to the log servers.
    redundant: Version,
    /// The log has been (or is being) truncated through this version.
    truncated: Version,
}

/// The generation a coordinator serves: its pipeline and where its versions begin.
#[derive(Debug)]
struct Serving {
    /// The generation (0: a coordinator outside a cluster).
    epoch: u64,
    pipeline: Pipeline,
    /// The generation's first version (its recovery commit): the idempotency table holds
    /// every id committed after it.
    start: Version,
    /// The generation's log servers (`None` outside a cluster).
    replicated: Option<Arc<ReplicatedLog>>,
}

/// What a recovery recruits a coordinator for (see `StartGenerationRequest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationStart {
    /// The generation.
    pub epoch: u64,
    /// Its log servers.
    pub logs: Vec<LogMember>,
    /// Every log server holds every version up to it; the first record follows it.
    pub recovery_version: Version,
    /// The generation's first version.
    pub start_version: Version,
}

/// A running transaction coordinator (see the module docs).
#[derive(Debug)]
pub struct Coordinator {
    /// The coordinator's own log, outside a cluster.
    local_log: Option<Arc<CommitLog>>,
    recovered: Recovered,
    serving: parking_lot::RwLock<Option<Arc<Serving>>>,
    /// Held while a generation starts.
    starting: tokio::sync::Mutex<()>,
    clock: Arc<dyn Clock>,
    batch: BatchLimits,
    /// How long idempotency ids are remembered after their commit.
    id_retention: Duration,
    /// A client of the cluster, to look up idempotency ids committed before this generation
    /// (set once the coordinator joins a cluster).
    cluster: OnceLock<Database>,
    durability: Mutex<Durability>,
    stopping: watch::Sender<bool>,
}

/// Settings of a coordinator in a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterCoordinatorOptions {
    /// Batch size limits.
    pub batch: BatchLimits,
    /// How long idempotency ids are remembered after their commit.
    pub idempotency_retention: Duration,
}

impl Default for ClusterCoordinatorOptions {
    fn default() -> Self {
        ClusterCoordinatorOptions {
            batch: BatchLimits::default(),
            idempotency_retention: idempotency::DEFAULT_RETENTION,
        }
    }
}

impl Coordinator {
    /// Opens the coordinator's own log (replaying it) and starts the pipeline with the system
    /// clock: a coordinator outside a cluster. Blocking: call before serving or from
    /// `spawn_blocking`, inside a tokio runtime (the commit batcher runs on it as a task).
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
        let clock: Arc<dyn Clock> = Arc::new(clock);
        let mut sequencer = if recovered.last_version == Version::ZERO {
            Sequencer::new(clock.clone())
        } else {
            Sequencer::recover(clock.clone(), recovered.last_version)
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
        let coordinator = Self::new(
            Some(log),
            recovered,
            clock,
            opts.batch,
            opts.idempotency_retention,
        );
        *coordinator.serving.write() = Some(Arc::new(Serving {
            epoch: 0,
            pipeline,
            start,
            replicated: None,
        }));
        Ok(coordinator)
    }

    /// A coordinator of a cluster: it serves nothing until a recovery recruits it
    /// ([`start_generation`](Self::start_generation)).
    pub fn in_cluster(opts: ClusterCoordinatorOptions) -> CoordinatorHandle {
        Self::in_cluster_with_clock(opts, Arc::new(SystemClock))
    }

    /// [`in_cluster`](Self::in_cluster) with `clock` as the wall clock its commit versions
    /// follow.
    pub fn in_cluster_with_clock(
        opts: ClusterCoordinatorOptions,
        clock: Arc<dyn Clock>,
    ) -> CoordinatorHandle {
        Self::new(
            None,
            Recovered {
                last_version: Version::ZERO,
                batches: 0,
                retained_from: Version::ZERO,
            },
            clock,
            opts.batch,
            opts.idempotency_retention,
        )
    }

    fn new(
        local_log: Option<Arc<CommitLog>>,
        recovered: Recovered,
        clock: Arc<dyn Clock>,
        batch: BatchLimits,
        id_retention: Duration,
    ) -> CoordinatorHandle {
        Arc::new(Coordinator {
            local_log,
            recovered,
            serving: parking_lot::RwLock::new(None),
            starting: tokio::sync::Mutex::new(()),
            clock,
            batch,
            id_retention,
            cluster: OnceLock::new(),
            durability: Mutex::new(Durability {
                reported: BTreeMap::new(),
                opened: Instant::now(),
                storage: None,
                shards: Vec::new(),
                redundant: Version::ZERO,
                truncated: recovered.retained_from,
            }),
            stopping: watch::channel(false).0,
        })
    }

    /// Serves generation `g`, replacing the one served (whose commits in flight then fail
    /// with `CommitUnknownResult` or `Unavailable`): opens an append stream to each of its
    /// log servers, makes the generation's recovery commit durable on all of them and starts
    /// a pipeline whose versions begin there. Idempotent for the generation already served;
    /// [`Error::Fenced`] for an older one.
    pub async fn start_generation(&self, g: GenerationStart) -> Result<()> {
        if self.local_log.is_some() {
            return Err(Error::InvalidArgument(
                "this coordinator keeps its own log (it was started outside a cluster)".into(),
            ));
        }
        let _starting = self.starting.lock().await;
        if let Some(current) = self.serving.read().clone() {
            if current.epoch > g.epoch {
                return Err(Error::Fenced(format!(
                    "generation {} is over: this coordinator serves generation {}",
                    g.epoch, current.epoch
                )));
            }
            if current.epoch == g.epoch {
                return Ok(());
            }
        }
        let old = self.serving.write().take();
        if let Some(old) = old {
            tracing::info!(epoch = old.epoch, "stopped serving generation");
            old.pipeline.shutdown().await;
        }
        let log = ReplicatedLog::open(g.epoch, g.logs.clone(), g.recovery_version).await?;
        let mut sequencer =
            Sequencer::recover(self.clock.clone(), g.start_version.saturating_sub(1));
        let start = sequencer.next_version()?;
        let submitted = log.submit(start, Vec::new())?;
        log.sync(submitted.seq).await?;
        log.publish(submitted.batch);
        let pipeline = Pipeline::start(
            log.clone() as Arc<dyn LogWriter>,
            start,
            sequencer,
            Resolver::starting_at(ResolverConfig::default(), start),
            self.batch,
            idempotency::retention_versions(self.id_retention),
        )?;
        tracing::info!(
            epoch = g.epoch,
            recovery_version = %g.recovery_version,
            generation_start = %start,
            logs = ?g.logs.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(),
            "serving generation"
        );
        {
            let d = self.durability.lock();
            log.set_truncate_through(d.truncated);
            log.set_redundant_through(d.redundant);
        }
        *self.serving.write() = Some(Arc::new(Serving {
            epoch: g.epoch,
            pipeline,
            start,
            replicated: Some(log),
        }));
        Ok(())
    }

    /// The generation served.
    fn current(&self) -> Result<Arc<Serving>> {
        self.serving.read().clone().ok_or_else(|| {
            Error::Recovering(
                "the transaction system is recovering: no generation is serving on this \
                 coordinator yet"
                    .into(),
            )
        })
    }

    /// The generation served (0: none, or a coordinator outside a cluster).
    pub fn serving_epoch(&self) -> u64 {
        self.serving.read().as_ref().map_or(0, |s| s.epoch)
    }

    /// Why the generation served can no longer commit (`None` while it can, or when none is
    /// served).
    pub fn generation_failure(&self) -> Option<String> {
        let serving = self.serving.read().clone()?;
        let failure = serving.pipeline.failure().borrow().clone();
        failure.or_else(|| serving.replicated.as_ref().and_then(|r| r.failure()))
    }

    /// What recovery found when the coordinator opened (before its recovery commit).
    pub fn recovered(&self) -> Recovered {
        self.recovered
    }

    /// The read version for a new transaction: the newest committed version, so the
    /// transaction sees every commit acknowledged before it asked.
    pub fn read_version(&self) -> Version {
        self.serving
            .read()
            .as_ref()
            .map_or(Version::ZERO, |s| s.pipeline.committed_version())
    }

    /// [`read_version`](Self::read_version) asked for at `priority`: a batch-priority request
    /// waits while the commit queue is more than half full (polling every
    /// [`BATCH_PRIORITY_POLL`]), so background work yields to other work under load; the
    /// others never wait. `Recovering` while no generation is served.
    pub async fn read_version_for(&self, priority: Priority) -> Result<Version> {
        let serving = self.current()?;
        // A read version is handed out only once the log servers confirmed that no newer
        // generation has locked them since the request arrived: one from a generation that
        // was replaced could be older than the newer generation's commits.
        if let Some(log) = &serving.replicated {
            let confirmed = match self.generation_failure() {
                Some(failure) => Err(Error::Unavailable(failure)),
                None => log.confirm_epoch().await,
            };
            if let Err(e) = confirmed {
                return Err(Error::Recovering(format!(
                    "generation {} of the transaction system can no longer commit ({e}); the \
                     controller recovers it",
                    serving.epoch
                )));
            }
        }
        if priority == Priority::Batch {
            let stopping = self.stopping.subscribe();
            while serving.pipeline.queue_over_half() && !*stopping.borrow() {
                tokio::time::sleep(BATCH_PRIORITY_POLL).await;
            }
        }
        Ok(serving.pipeline.committed_version())
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
        let serving = self.current()?;
        if let Some(idm) = &commit.idempotency
            && let Some(earlier) = self.committed_before_this_generation(&serving, idm).await?
        {
            return Ok(earlier);
        }
        serving.pipeline.commit(commit).await
    }

    /// The commit an idempotency id had under an earlier process of this coordinator, if its
    /// first attempt may be that old (the batcher's table holds only this process's commits):
    /// looked up in the storage servers, where the id's record went with the commit. Also
    /// refuses a first attempt newer than any committed version, and one older than the
    /// retention before scanning for it.
    async fn committed_before_this_generation(
        &self,
        serving: &Serving,
        idm: &IdempotencyId,
    ) -> Result<Option<Committed>> {
        let newest = serving.pipeline.committed_version();
        let first = idm.first_read_version;
        if first > newest {
            return Err(Error::InvalidArgument(format!(
                "the idempotency id's first attempt read at version {first}, newer than the \
                 newest committed version {newest}; get read versions from GetReadVersion"
            )));
        }
        if first >= serving.start {
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
        let through = serving.start.saturating_sub(1);
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

    /// Why the commit pipeline of the generation served failed (`None` while it has not);
    /// see [`Pipeline::failure`]. For a coordinator outside a cluster, whose one generation
    /// lasts as long as the process; `None` when no generation is served.
    pub fn failure(&self) -> Option<watch::Receiver<Option<String>>> {
        self.serving.read().as_ref().map(|s| s.pipeline.failure())
    }

    /// The coordinator's own log, or an error saying that the log servers hold it.
    fn local_log(&self) -> Result<&Arc<CommitLog>> {
        self.local_log.as_ref().ok_or_else(|| {
            Error::InvalidArgument(
                "this coordinator keeps no log: storage servers follow the log servers of the \
                 current generation"
                    .into(),
            )
        })
    }

    /// Committed mutations after `pull.after`, clipped to `pull.ranges`; waits up to
    /// `pull.wait` when nothing newer is committed. `TransactionTooOld` when the log no longer
    /// holds versions right after `pull.after`.
    pub async fn pull(&self, pull: Pull) -> Result<Pulled> {
        let log = self.local_log()?.clone();
        let ranges = clip::normalize(pull.ranges);
        let mut committed = self.current()?.pipeline.subscribe();
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
        read_pulled(&log, pull.after, through, &ranges, pull.max_bytes)
    }

    /// The feed of committed mutations after `after`, clipped to `ranges`, that a storage
    /// server follows (see [`MutationFeed`]); only from a coordinator's own log.
    pub fn mutation_feed(
        &self,
        after: Version,
        ranges: Vec<KeyRange>,
        max_bytes: u64,
    ) -> Result<MutationFeed> {
        Ok(MutationFeed::new(
            self.local_log()?.clone(),
            self.current()?.pipeline.subscribe(),
            self.stopping.subscribe(),
            after,
            clip::normalize(ranges),
            max_bytes,
        ))
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
            if let Some(storage) = &d.storage
                && !storage.contains(storage_id)
            {
                return Err(Error::InvalidArgument(format!(
                    "{storage_id:?} is not a storage server of the shard map; only they report \
                     durability"
                )));
            }
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

    /// Sets the shard map's replica sets: their storage servers gate truncation
    /// ([`set_storage_servers`](Self::set_storage_servers)), and each shard's most durable
    /// replica gives [`redundant_through`](Self::redundant_through).
    pub async fn set_shards(&self, shards: Vec<Vec<String>>) -> Result<()> {
        {
            let mut d = self.durability.lock();
            d.storage = Some(shards.iter().flatten().cloned().collect());
            d.shards = shards;
        }
        self.maybe_truncate().await
    }

    /// The newest version every shard has durable on at least one replica (`None` before the
    /// shards are known). A log server over its retention budget may drop versions up to it:
    /// replicas that lack them are then rebuilt from one that has them, never lost.
    pub fn redundant_through(&self) -> Option<Version> {
        let d = self.durability.lock();
        Self::redundant_in(&d)
    }

    fn redundant_in(d: &Durability) -> Option<Version> {
        if d.shards.is_empty() {
            return None;
        }
        d.shards
            .iter()
            .map(|replicas| {
                replicas
                    .iter()
                    .filter_map(|id| d.reported.get(id).map(|r| r.0))
                    .max()
                    .unwrap_or(Version::ZERO)
            })
            .min()
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
        self.maybe_send_redundant();
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
        if let Some(log) = self.local_log.clone() {
            return crate::exec::blocking("the log truncation task", move || {
                log.truncate_through(target)
            })
            .await?;
        }
        let replicated = self.replicated_log();
        if let Some(log) = replicated {
            log.set_truncate_through(target);
        }
        Ok(())
    }

    /// The log servers of the generation served, if any.
    fn replicated_log(&self) -> Option<Arc<ReplicatedLog>> {
        self.serving
            .read()
            .as_ref()
            .and_then(|s| s.replicated.clone())
    }

    /// Tells the generation's log servers a newer [`redundant_through`](Self::redundant_through)
    /// (a coordinator's own log has no retention budget).
    fn maybe_send_redundant(&self) {
        let redundant = {
            let mut d = self.durability.lock();
            match Self::redundant_in(&d) {
                Some(v) if v > d.redundant => {
                    d.redundant = v;
                    v
                }
                _ => return,
            }
        };
        let replicated = self.replicated_log();
        if let Some(log) = replicated {
            log.set_redundant_through(redundant);
        }
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
        let serving = self.serving.read().clone();
        CoordinatorStats {
            committed_version: self.read_version(),
            pipeline: serving
                .as_ref()
                .map(|s| s.pipeline.stats())
                .unwrap_or_default(),
            log: match (
                &self.local_log,
                serving.as_ref().and_then(|s| s.replicated.as_ref()),
            ) {
                (Some(log), _) => log.stats(),
                (None, Some(replicated)) => replicated.stats(),
                (None, None) => LogStats::default(),
            },
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
        let serving = self.serving.read().clone();
        if let Some(serving) = serving {
            serving.pipeline.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests;
