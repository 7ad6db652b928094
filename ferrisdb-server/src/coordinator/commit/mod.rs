//! The commit pipeline: group commit with one commit version and one log record per batch.
//!
//! Two stages, connected by a short bounded channel:
//!
//! 1. The **batcher**, a task on the async runtime, waits for a commit request, then takes
//!    everything else already queued (up to [`BatchLimits`]): that is the batch. It draws one
//!    commit version from the [`Sequencer`], resolves the transactions in queue order with the
//!    [`Resolver`] (conflict → `NotCommitted`, read version too old → `TransactionTooOld`,
//!    answered at once), and submits the accepted transactions' mutations to the
//!    [`CommitLog`] as one record. It never waits on the disk (the log write goes to the OS;
//!    only sealing a full segment, once per segment, syncs), so it runs on the runtime: a
//!    request handler queueing a commit wakes it as a task, where a dedicated thread would
//!    need an OS wake-up and a free CPU first (measured at 128 clients: ~+10% commits/s).
//! 2. The **syncer** (`syncer.rs`) waits for that record to be durable (one fsync, shared by
//!    any records queued behind it; in a cluster, every log server's acknowledgement),
//!    publishes the batch, advances the committed version (a `watch` channel read by
//!    `GetReadVersion` and by mutation feeds) and only then answers the batch's transactions.
//!    Over the coordinator's own log it is a dedicated thread (an fsync blocks) and publishing
//!    makes the batch readable to the mutation feeds; over log servers it is a task of the
//!    runtime and publishing is a notice to them, sent after the answers ([`LogPlace`]).
//!
//! While the syncer waits for an fsync the batcher already resolves and submits the next
//! batches, and new requests keep queueing for the ones after: batches grow with load. Both
//! stages handle batches in commit-version order, so versions become visible strictly in
//! order. A batch whose transactions all failed writes nothing and publishes nothing.
//!
//! Each accepted transaction gets a versionstamp: the batch's commit version and its position in
//! the batch. The batcher fills it into versionstamped mutations (which the log then holds as
//! plain sets) and, for a transaction with an idempotency id, adds the id's record and
//! remembers the id (see [`super::idempotency`]); a later transaction with a remembered id is
//! answered with the earlier commit, once that is durable, instead of being resolved.
//!
//! Failure: a log write or fsync error poisons the pipeline. Transactions whose record may have
//! reached the disk get `CommitUnknownResult`; every later commit fails with `Unavailable`
//! until the process restarts and recovers from the log. [`Pipeline::failure`] says why, so
//! the process can report itself unhealthy and exit to be restarted (`coordinator::server`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use ferrisdb_core::{Commit, Committed, system_keys};
use ferrisdb_core::{Error, Mutation, Result, Version, Versionstamp};
use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, oneshot, watch};

use super::clock::Clock;
use super::idempotency::{self, IdempotencyTable};
use super::resolver::Resolver;
use super::sequencer::Sequencer;
use crate::log::{CommitLog, LogStats, LoggedBatch, Submitted};

/// The log the pipeline writes each batch to: the coordinator's own [`CommitLog`] outside a
/// cluster, or the generation's log servers (`super::super::replicated_log`) in one.
/// `submit` is called by the batcher in version order, `sync` and `publish` by the syncer in
/// the same order.
pub trait LogWriter: Send + Sync + std::fmt::Debug {
    /// Queues the batch's record; never waits for the disk.
    fn submit(&self, version: Version, mutations: Vec<Mutation>) -> Result<Submitted>;
    /// Completes once the record `seq` (and every one before it) is durable everywhere it
    /// must be before the batch is acknowledged. It blocks its thread (an fsync) when the log
    /// is [`LogPlace::Local`].
    fn sync(&self, seq: u64) -> BoxFuture<'_, Result<()>>;
    /// Where the log is, which decides how the syncer runs (see [`LogPlace`]).
    fn place(&self) -> LogPlace;
    /// The durable batch is committed: make it readable (and known committed).
    fn publish(&self, batch: Arc<LoggedBatch>);
    /// Counters.
    fn stats(&self) -> LogStats;
}

impl LogWriter for CommitLog {
    fn submit(&self, version: Version, mutations: Vec<Mutation>) -> Result<Submitted> {
        CommitLog::submit(self, version, mutations)
    }

    fn sync(&self, seq: u64) -> BoxFuture<'_, Result<()>> {
        Box::pin(std::future::ready(CommitLog::sync(self, seq)))
    }

    fn place(&self) -> LogPlace {
        LogPlace::Local
    }

    fn publish(&self, batch: Arc<LoggedBatch>) {
        CommitLog::publish(self, batch)
    }

    fn stats(&self) -> LogStats {
        CommitLog::stats(self)
    }
}

/// Where a [`LogWriter`] keeps its records, and so how the pipeline's syncer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogPlace {
    /// On this process's disk ([`CommitLog`]): `sync` is an fsync, so the syncer runs on a
    /// thread of its own (`crate::exec::spawn_worker`), and `publish` makes the batch readable
    /// to this process's mutation feeds, so it comes before the committed version covers it.
    Local,
    /// On the log servers: `sync` awaits their answers, so the syncer runs as a task of the
    /// runtime (its wake-ups from the answers and to the request handlers need no OS thread
    /// switch), and `publish` only tells the log servers, so it comes after the answers.
    Remote,
}

/// How large one batch may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Most transactions per batch.
    pub max_txns: usize,
    /// A batch stops taking transactions once their mutations reach this many bytes (one
    /// transaction is always taken, whatever its size).
    pub max_bytes: usize,
    /// Commit requests that may wait in the queue before callers are held back.
    pub queue: usize,
}

/// Most transactions per batch: a versionstamp numbers them with 2 bytes, and the last
/// number ([`READ_ONLY_BATCH_INDEX`]) is left for read-only commits.
const MAX_BATCH_TXNS: usize = u16::MAX as usize;

/// The batch index of a read-only commit's stamp (it joins no batch): no writing transaction
/// gets it, so the stamp never names another transaction's commit.
pub const READ_ONLY_BATCH_INDEX: u16 = u16::MAX;

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            max_txns: 4096,
            max_bytes: 8 << 20,
            queue: 16 * 1024,
        }
    }
}

/// Counters of the pipeline.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PipelineStats {
    /// Transactions committed (acknowledged).
    pub commits: u64,
    /// Transactions aborted on a conflict.
    pub conflicts: u64,
    /// Transactions rejected as too old.
    pub too_old: u64,
    /// Transactions answered "already committed" from their idempotency id.
    pub already_committed: u64,
    /// Read-only commits answered without the log.
    pub read_only: u64,
    /// Batches resolved (including batches in which every transaction failed).
    pub batches: u64,
    /// Transactions resolved, over all batches.
    pub batched_txns: u64,
    /// Log records written (batches with at least one accepted transaction).
    pub log_records: u64,
    /// Where committed transactions spent their time, summed over them (see
    /// [`CommitStages`]).
    pub stages: CommitStages,
}

impl PipelineStats {
    /// Average transactions per resolved batch (0 before the first batch).
    pub fn avg_batch_size(&self) -> f64 {
        if self.batches == 0 {
            0.0
        } else {
            self.batched_txns as f64 / self.batches as f64
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    commits: AtomicU64,
    conflicts: AtomicU64,
    too_old: AtomicU64,
    already_committed: AtomicU64,
    read_only: AtomicU64,
    batches: AtomicU64,
    batched_txns: AtomicU64,
    log_records: AtomicU64,
    /// Requests handed to the batcher so far (tests wait on it).
    queued: AtomicU64,
    /// Sums of [`CommitStages`], in nanoseconds, over committed transactions.
    queue_ns: AtomicU64,
    resolve_ns: AtomicU64,
    durable_ns: AtomicU64,
    /// Whole time from the request's enqueueing to the handler having the answer.
    total_ns: AtomicU64,
}

type Reply = oneshot::Sender<Result<Committed>>;

struct Pending {
    commit: Commit,
    reply: Reply,
    /// When the request was queued.
    queued_at: Instant,
}

enum Msg {
    Commit(Pending),
    /// Sent by the idle ticker: commit an empty batch if nothing else is queued.
    Tick,
    Stop,
}

/// Batches the batcher may hand on while the syncer is busy: every record written meanwhile is
/// covered by the syncer's next fsync.
const JOB_QUEUE: usize = 16;
/// How long a commit whose read version is newer than the committed version waits for the
/// committed version to catch up before it is refused as never handed out.
const READ_VERSION_CATCH_UP: Duration = Duration::from_millis(100);

pub use ferrisdb_core::version::IDLE_TICK;

enum Job {
    Batch {
        seq: u64,
        batch: Arc<LoggedBatch>,
        /// Each answer is sent once the batch is durable.
        replies: Vec<(Reply, Committed)>,
        /// When the batcher submitted the record.
        submitted: Instant,
        /// Replies that acknowledge a new commit (not "already committed").
        fresh: u64,
    },
    Stop,
}

/// State shared by the pipeline threads and the handle.
struct Shared {
    log: Arc<dyn LogWriter>,
    counters: Counters,
    /// Set after a log failure: nothing may be acknowledged any more.
    failed: AtomicBool,
    /// Why the pipeline failed (set once, with `failed`).
    failure: watch::Sender<Option<String>>,
    /// Held by a test to keep the batcher from taking a batch.
    #[cfg(test)]
    gate: tokio::sync::Mutex<()>,
    /// Set once a shutdown has queued its stop request (tests wait on it).
    #[cfg(test)]
    stop_queued: AtomicBool,
}

/// The running pipeline. Dropping it without [`shutdown`](Self::shutdown) leaves the threads
/// to finish what is queued on their own.
pub struct Pipeline {
    tx: mpsc::Sender<Msg>,
    committed: watch::Receiver<Version>,
    shared: Arc<Shared>,
    closing: AtomicBool,
    /// Ends (yields `None`) once the batcher and the syncer have both finished and let go of
    /// the log: each holds a sender, dropped after everything else it owns.
    stopped: tokio::sync::Mutex<mpsc::Receiver<()>>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("committed", &*self.committed.borrow())
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// Starts the batcher and syncer threads over `log`, whose newest durable version is
    /// `committed`; versions come from `sequencer`. Idempotency ids are remembered for
    /// `id_retention` versions.
    pub fn start<C: Clock + 'static>(
        log: Arc<dyn LogWriter>,
        committed: Version,
        sequencer: Sequencer<C>,
        resolver: Resolver,
        mut limits: BatchLimits,
        id_retention: u64,
    ) -> Result<Pipeline> {
        limits.max_txns = limits.max_txns.clamp(1, MAX_BATCH_TXNS);
        let (tx, rx) = mpsc::channel(limits.queue.max(1));
        let (committed_tx, committed_rx) = watch::channel(committed);
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::Internal("the commit pipeline must be started inside a tokio runtime".into())
        })?;
        let (job_tx, job_rx) = mpsc::channel(JOB_QUEUE);
        let (stopped_tx, stopped_rx) = mpsc::channel::<()>(1);
        let shared = Arc::new(Shared {
            log,
            counters: Counters::default(),
            failed: AtomicBool::new(false),
            failure: watch::channel(None).0,
            #[cfg(test)]
            gate: tokio::sync::Mutex::new(()),
            #[cfg(test)]
            stop_queued: AtomicBool::new(false),
        });
        let batcher = Batcher {
            rx,
            jobs: job_tx,
            sequencer,
            resolver,
            ids: IdempotencyTable::new(id_retention),
            limits,
            shared: shared.clone(),
            _running: stopped_tx.clone(),
        };
        runtime.spawn(batcher.run());
        let syncer_shared = shared.clone();
        let place = shared.log.place();
        let syncer = async move {
            run_syncer(job_rx, syncer_shared, committed_tx).await;
            drop(stopped_tx);
        };
        match place {
            LogPlace::Local => crate::exec::spawn_worker("commit-syncer", syncer)?,
            LogPlace::Remote => drop(runtime.spawn(syncer)),
        }
        runtime.spawn(run_idle_ticker(tx.downgrade(), committed_rx.clone()));
        Ok(Pipeline {
            tx,
            committed: committed_rx,
            shared,
            closing: AtomicBool::new(false),
            stopped: tokio::sync::Mutex::new(stopped_rx),
        })
    }

    /// The newest committed (durable, published) version.
    pub fn committed_version(&self) -> Version {
        *self.committed.borrow()
    }

    /// A receiver that sees every advance of the committed version.
    pub fn subscribe(&self) -> watch::Receiver<Version> {
        self.committed.clone()
    }

    /// Commits a validated transaction; returns its commit version and versionstamp once it
    /// is durable (or, for an idempotency id already committed, the earlier commit's).
    ///
    /// A transaction without mutations and write conflict ranges is read-only: it commits at
    /// its read version without touching the log.
    pub async fn commit(&self, commit: Commit) -> Result<Committed> {
        if self.closing.load(Ordering::Acquire) {
            return Err(Error::Unavailable(
                "the coordinator is shutting down".into(),
            ));
        }
        if self.shared.failed.load(Ordering::Acquire) {
            return Err(self.shared.failed_error());
        }
        let mut committed = self.committed_version();
        if commit.read_version > committed {
            // A storage server's newest version, which a client may take as its read version
            // (`ferrisdb-client/src/first_read.rs`), can run a moment ahead of this watch: the
            // syncer publishes a batch to the log servers just before it advances it.
            let mut watch = self.committed.clone();
            let caught_up = watch.wait_for(|v| *v >= commit.read_version);
            if let Ok(Ok(v)) = tokio::time::timeout(READ_VERSION_CATCH_UP, caught_up).await {
                committed = *v;
            }
        }
        if commit.read_version > committed {
            return Err(Error::InvalidArgument(format!(
                "read version {} is newer than the newest committed version {committed}; \
                 get read versions from GetReadVersion",
                commit.read_version
            )));
        }
        if commit.mutations.is_empty() && commit.write_conflict_ranges.is_empty() {
            self.shared
                .counters
                .read_only
                .fetch_add(1, Ordering::Relaxed);
            return Ok(Committed::new(commit.read_version, READ_ONLY_BATCH_INDEX));
        }
        let (reply, answer) = oneshot::channel();
        let queued_at = Instant::now();
        self.tx
            .send(Msg::Commit(Pending {
                commit,
                reply,
                queued_at,
            }))
            .await
            .map_err(|_| Error::Unavailable("the coordinator is shutting down".into()))?;
        self.shared.counters.queued.fetch_add(1, Ordering::Release);
        let answer = answer.await.unwrap_or_else(|_| {
            Err(Error::CommitUnknownResult(
                "the commit pipeline stopped before answering".into(),
            ))
        });
        if answer.as_ref().is_ok_and(|c| !c.already_committed) {
            self.shared
                .counters
                .total_ns
                .fetch_add(nanos(queued_at.elapsed()), Ordering::Relaxed);
        }
        answer
    }

    /// Whether more than half of the commit queue is taken: the pipeline is saturated, and
    /// batch-priority read versions wait.
    pub fn queue_over_half(&self) -> bool {
        let max = self.tx.max_capacity();
        max - self.tx.capacity() > max / 2
    }

    /// Why the pipeline failed (`None` while it has not): a receiver that sees the failure
    /// when it happens. After a failure every commit is refused until the process restarts.
    pub fn failure(&self) -> watch::Receiver<Option<String>> {
        self.shared.failure.subscribe()
    }

    /// Snapshot of the counters.
    pub fn stats(&self) -> PipelineStats {
        let c = &self.shared.counters;
        PipelineStats {
            commits: c.commits.load(Ordering::Relaxed),
            conflicts: c.conflicts.load(Ordering::Relaxed),
            too_old: c.too_old.load(Ordering::Relaxed),
            already_committed: c.already_committed.load(Ordering::Relaxed),
            read_only: c.read_only.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            batched_txns: c.batched_txns.load(Ordering::Relaxed),
            log_records: c.log_records.load(Ordering::Relaxed),
            stages: {
                let ns = |a: &AtomicU64| Duration::from_nanos(a.load(Ordering::Relaxed));
                let (queue, resolve, durable) =
                    (ns(&c.queue_ns), ns(&c.resolve_ns), ns(&c.durable_ns));
                CommitStages {
                    queue,
                    resolve,
                    durable,
                    // The rest of each commit's whole time: measured as the difference, so
                    // the four always add up to the total.
                    reply: ns(&c.total_ns).saturating_sub(queue + resolve + durable),
                }
            },
        }
    }

    /// Refuses new commits, lets the threads finish every batch already queued (so each is
    /// durable and answered), and waits for them. Idempotent.
    pub async fn shutdown(&self) {
        self.closing.store(true, Ordering::Release);
        let _ = self.tx.send(Msg::Stop).await;
        #[cfg(test)]
        self.shared.stop_queued.store(true, Ordering::Release);
        // Nothing is ever sent: `recv` returns `None` once both stages are gone.
        let _ = self.stopped.lock().await.recv().await;
    }

    #[cfg(test)]
    async fn gate(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.shared.gate.lock().await
    }

    #[cfg(test)]
    fn queued(&self) -> u64 {
        self.shared.counters.queued.load(Ordering::Acquire)
    }

    /// Whether a shutdown has queued its stop request.
    #[cfg(test)]
    fn stop_queued(&self) -> bool {
        self.shared.stop_queued.load(Ordering::Acquire)
    }
}

impl Shared {
    /// What a commit refused after the failure gets.
    fn failed_error(&self) -> Error {
        let reason = self.failure.borrow().clone().unwrap_or_default();
        Error::Unavailable(format!(
            "the commit log failed earlier ({reason}); this generation of the transaction \
             system accepts no more commits (a coordinator outside a cluster exits to be \
             restarted once its log directory accepts writes again; in a cluster the \
             controller recovers the transaction system)"
        ))
    }

    /// Refuses every commit from now on; the first reason is kept.
    fn fail(&self, reason: String) {
        self.failed.store(true, Ordering::Release);
        self.failure.send_if_modified(|failure| {
            if failure.is_some() {
                return false;
            }
            *failure = Some(reason);
            true
        });
    }
}

struct Batcher<C: Clock> {
    rx: mpsc::Receiver<Msg>,
    jobs: mpsc::Sender<Job>,
    sequencer: Sequencer<C>,
    resolver: Resolver,
    /// Idempotency ids of recent commits.
    ids: IdempotencyTable,
    limits: BatchLimits,
    shared: Arc<Shared>,
    /// Dropped last (fields drop in order): tells [`Pipeline::shutdown`] the batcher is gone.
    _running: mpsc::Sender<()>,
}

impl<C: Clock> Batcher<C> {
    async fn run(mut self) {
        loop {
            let mut batch = Vec::new();
            let mut bytes = 0;
            match self.rx.recv().await {
                Some(Msg::Commit(p)) => {
                    bytes += p.commit.size();
                    batch.push(p);
                }
                Some(Msg::Tick) => {}
                Some(Msg::Stop) | None => break,
            }
            #[cfg(test)]
            drop(self.shared.gate.lock().await);
            // BUGGIFY: the batch is held back a little, so that more commits gather in it
            // (and conflict within it).
            if ferrisdb_core::buggify!() {
                let wait = Duration::from_millis(ferrisdb_core::random::up_to(20));
                tokio::time::sleep(wait).await;
            }
            let mut stop = false;
            while batch.len() < self.limits.max_txns && bytes < self.limits.max_bytes {
                match self.rx.try_recv() {
                    Ok(Msg::Commit(p)) => {
                        bytes += p.commit.size();
                        batch.push(p);
                    }
                    Ok(Msg::Tick) => {}
                    Ok(Msg::Stop) => {
                        stop = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.process(batch).await;
            if stop {
                break;
            }
        }
        let _ = self.jobs.send(Job::Stop).await;
        // Requests that raced with the shutdown were never resolved: they did not commit.
        self.rx.close();
        while let Ok(msg) = self.rx.try_recv() {
            if let Msg::Commit(p) = msg {
                let _ = p.reply.send(Err(Error::Unavailable(
                    "the coordinator is shutting down".into(),
                )));
            }
        }
    }

    /// Resolves and logs one batch. An empty batch (from the idle ticker) is logged too, so
    /// the committed version keeps following the clock.
    async fn process(&mut self, batch: Vec<Pending>) {
        let counters = &self.shared.counters;
        let tick = batch.is_empty();
        let taken = Instant::now();
        if self.shared.failed.load(Ordering::Acquire) {
            for p in batch {
                let _ = p.reply.send(Err(self.shared.failed_error()));
            }
            return;
        }
        let version = match self.sequencer.next_version() {
            Ok(v) => v,
            Err(e) => {
                for p in batch {
                    let _ = p.reply.send(Err(Error::Internal(e.to_string())));
                }
                return;
            }
        };
        counters.batches.fetch_add(1, Ordering::Relaxed);
        counters
            .batched_txns
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let mut mutations: Vec<Mutation> = Vec::new();
        let mut replies = Vec::with_capacity(batch.len());
        let mut queued_ns = 0u64;
        let oldest_checkable = version.saturating_sub(self.ids.retention());
        for (index, p) in batch.into_iter().enumerate() {
            let c = p.commit;
            let waited = nanos(taken.saturating_duration_since(p.queued_at));
            if let Some(idm) = &c.idempotency {
                if idm.first_read_version < oldest_checkable {
                    let _ = p.reply.send(Err(idempotency::expired(
                        idm.first_read_version,
                        version,
                        self.ids.retention(),
                    )));
                    continue;
                }
                // Only a commit after the first attempt's read version can be one of this
                // transaction's attempts (an id reused by a later transaction is not).
                if let Some(stamp) = self
                    .ids
                    .lookup(&idm.id)
                    .filter(|s| s.version() > idm.first_read_version)
                {
                    counters.already_committed.fetch_add(1, Ordering::Relaxed);
                    // Answered with this batch, so only once the earlier commit is durable.
                    replies.push((
                        p.reply,
                        Committed {
                            version: stamp.version(),
                            stamp,
                            already_committed: true,
                        },
                    ));
                    continue;
                }
            }
            // At most MAX_BATCH_TXNS transactions per batch (clamped in `start`).
            let stamp = Versionstamp::new(version, index as u16);
            let filled = match c
                .mutations
                .into_iter()
                .map(|m| m.with_versionstamp(stamp))
                .collect::<Result<Vec<_>>>()
            {
                Ok(filled) => filled,
                Err(e) => {
                    let _ = p.reply.send(Err(e));
                    continue;
                }
            };
            match self.resolver.resolve(
                c.read_version,
                &c.read_conflict_ranges,
                &c.write_conflict_ranges,
                version,
            ) {
                Ok(()) => {
                    mutations.extend(filled);
                    if let Some(idm) = c.idempotency {
                        mutations.push(Mutation::Set {
                            key: system_keys::idempotency_key(stamp),
                            value: idm.id.clone(),
                        });
                        // A copy: the id decoded from the request points into the request's
                        // buffer, which the table would otherwise keep for the retention.
                        self.ids
                            .record(bytes::Bytes::copy_from_slice(&idm.id), stamp);
                    }
                    replies.push((p.reply, Committed::new(version, index as u16)));
                    queued_ns += waited;
                }
                Err(e) => {
                    let err = Error::from(e);
                    match err {
                        Error::NotCommitted => &counters.conflicts,
                        _ => &counters.too_old,
                    }
                    .fetch_add(1, Ordering::Relaxed);
                    let _ = p.reply.send(Err(err));
                }
            }
        }
        self.ids.expire(version);
        if replies.is_empty() && !tick {
            return;
        }
        match self.shared.log.submit(version, mutations) {
            Ok(submitted) => {
                // Stage sums count transactions that will be acknowledged as new commits;
                // a failure later leaves them slightly high, and the pipeline is then dead.
                let fresh = replies.iter().filter(|(_, c)| !c.already_committed).count() as u64;
                let now = Instant::now();
                counters.queue_ns.fetch_add(queued_ns, Ordering::Relaxed);
                counters.resolve_ns.fetch_add(
                    nanos(now.saturating_duration_since(taken)).saturating_mul(fresh),
                    Ordering::Relaxed,
                );
                let job = Job::Batch {
                    seq: submitted.seq,
                    batch: submitted.batch,
                    replies,
                    submitted: now,
                    fresh,
                };
                if let Err(mpsc::error::SendError(Job::Batch { replies, .. })) =
                    self.jobs.send(job).await
                {
                    for (r, _) in replies {
                        let _ = r.send(Err(Error::CommitUnknownResult(
                            "the commit syncer stopped".into(),
                        )));
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, %version, "commit log write failed; refusing further commits");
                self.shared
                    .fail(format!("the commit log write failed: {e}"));
                for (r, committed) in replies {
                    let _ = r.send(Err(if committed.already_committed {
                        // The earlier commit's record was written before; whether it reached
                        // the disk is what this failure leaves unknown.
                        Error::CommitUnknownResult(format!(
                            "the commit log write failed ({e}) before the earlier commit with \
                             this idempotency id was known durable"
                        ))
                    } else {
                        Error::Unavailable(format!(
                            "the commit log write failed ({e}); the transaction did not commit"
                        ))
                    }));
                }
            }
        }
    }
}

mod stages;
mod syncer;

pub use stages::CommitStages;
use stages::nanos;
use syncer::{run_idle_ticker, run_syncer};

#[cfg(test)]
mod tests;
