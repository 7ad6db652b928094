//! Follows the commit log for this server's ranges from a log server of the current generation
//! (one `StreamMutations` call that carries every newer committed version, in order; another log
//! server of the generation when that one fails) and applies each version to the engine as one
//! atomic batch, readable at once but not yet synced. Log servers only serve versions known
//! committed, so nothing applied here is ever discarded by a recovery.
//!
//! Beside it, the durability loop wakes every `REPORT_EVERY`, syncs the engine (one fsync for
//! everything applied since), persists the applied version and reports it durable to the
//! coordinator, which lets the log servers drop what every replica holds. Until then the log
//! servers are what make those versions durable (as FoundationDB's storage servers lag their
//! transaction logs), so the pull loop never waits on this server's disk and reads at fresh
//! versions are not held behind an fsync: the two loops run concurrently and share only the
//! engine and the applied version.
//!
//! A server that lagged while the log servers were over their retention budget may find that
//! every log server of the generation dropped versions it lacks (`TransactionTooOld` from all
//! of them): it is then *stranded*. It says so (a health problem, so `status` shows it
//! unhealthy with the reason), refuses reads above its applied version with `UNAVAILABLE` so
//! clients read another replica, and keeps trying every few seconds; its shards keep their
//! other replicas, and it needs re-replicating.
//!
//! Only a successful sync lets a version be persisted or reported durable. A failure of the
//! engine itself (a write or fsync error, e.g. a full or read-only disk) poisons it for good,
//! so [`run`] then stops pulling and returns the error: nothing is persisted or reported after
//! it, and the log keeps every version this server has not reported. Network and log server
//! failures are retried, and so is a stream that stays silent for `STREAM_SILENCE` (while a
//! generation serves, its committed version moves at least every idle tick).

use std::sync::Arc;
use std::time::Duration;

use ferrisdb_core::version::IDLE_TICK;
use ferrisdb_core::{Error, Mutation};
use ferrisdb_proto::convert::ranges_to_proto;
use ferrisdb_proto::v1;
use ferrisdb_proto::v1::log_server_client::LogServerClient;
use ferrisdb_proto::v1::transaction_coordinator_client::TransactionCoordinatorClient;
use ferrisdb_storage::engine::Engine;
use tokio::sync::watch;
use tonic::transport::Channel;

use super::apply::build_batch;
use super::handoff::Handoff;
use super::progress::Progress;
use super::purge::Purger;
use super::sizes::ShardSizes;
use crate::health::RoleHealth;
use crate::worker::ClusterView;

/// Most bytes of mutations asked for per stream message.
const PULL_MAX_BYTES: u64 = 8 << 20;
/// A mutation stream silent this long is presumed dead (the log server or the coordinator hung, or the network
/// dropped it silently) and is reopened.
const STREAM_SILENCE: Duration = Duration::from_secs(5);
/// How often durability is persisted and reported.
const REPORT_EVERY: Duration = Duration::from_millis(200);
/// How often a stranded server asks the log servers again.
const STRANDED_RETRY: Duration = Duration::from_secs(5);
/// Health problem source of a stranded server.
const STRANDED: &str = "log retention";

/// Why a pull loop stopped.
enum PullError {
    /// A log server, the coordinator or the network failed: reconnect and try again.
    Retry(Error),
    /// The engine failed to apply or sync: nothing more can be applied until a restart.
    Engine(Error),
}

impl From<Error> for PullError {
    fn from(e: Error) -> Self {
        PullError::Retry(e)
    }
}

/// Pulls and applies, and (concurrently) syncs, persists and reports, until the task is
/// aborted, reconnecting on network or coordinator failures. Returns only when the engine
/// fails, with that error: from then on nothing is applied, persisted or reported.
pub async fn run(
    worker_id: String,
    engine: Arc<Engine>,
    progress: Arc<Progress>,
    handoff: Arc<Handoff>,
    sizes: Arc<ShardSizes>,
    view: watch::Receiver<ClusterView>,
    health: RoleHealth,
) -> Error {
    let durability = report_durability(
        worker_id.clone(),
        engine.clone(),
        progress.clone(),
        view.clone(),
    );
    let pulling = pull(worker_id, engine, progress, handoff, sizes, view, health);
    tokio::select! {
        err = durability => err,
        err = pulling => err,
    }
}

/// The pull loop of [`run`]: returns only when applying to the engine fails.
async fn pull(
    worker_id: String,
    engine: Arc<Engine>,
    progress: Arc<Progress>,
    handoff: Arc<Handoff>,
    sizes: Arc<ShardSizes>,
    mut view: watch::Receiver<ClusterView>,
    health: RoleHealth,
) -> Error {
    let purger = match Purger::start(engine.clone()) {
        Ok(purger) => purger,
        Err(e) => return e,
    };
    let mut backoff = Duration::from_millis(20);
    // Which log server of the generation to follow: the next one after a failure.
    let mut attempt = 0usize;
    // Log servers in a row that no longer hold the versions this server needs next.
    let mut too_old = 0usize;
    loop {
        let (logs, ranges) = {
            let v = view.borrow_and_update();
            let ranges = v.shard_map.is_bootstrapped().then(|| {
                (
                    v.shard_map.ranges_of(&worker_id),
                    v.shard_map.incoming_ranges_of(&worker_id),
                    v.shard_map.version,
                )
            });
            (v.log_addresses.clone(), ranges)
        };
        // A server that is a replica of nothing and takes nothing over holds nothing the
        // log must still bring up to date: it moves to the log's newest committed version
        // before it takes a range over (a new server, or one whose shards all moved away
        // while it lagged, would otherwise ask for versions the log dropped long ago).
        if let Some((owned, _, _)) = &ranges
            && owned.is_empty()
            && !handoff.taking_over()
            && let Some(log) = logs.first()
        {
            match committed_version(log).await {
                Ok(committed) => progress.advance(committed),
                Err(e) => {
                    tracing::debug!(log = %log, "asking a log server its committed version: {e}")
                }
            }
        }
        let plan = ranges.map(|(owned, incoming, map_version)| {
            handoff.plan(map_version, &owned, &incoming, progress.applied())
        });
        let follow = match plan {
            Some(plan) => {
                progress.set_readable(plan.readable);
                for fetch in plan.fetches {
                    tracing::info!(range = ?fetch.range, start = fetch.start, "taking over a range");
                    tokio::spawn(super::fetch::run(
                        fetch,
                        handoff.clone(),
                        progress.clone(),
                        view.clone(),
                    ));
                }
                plan.follow
            }
            None => Vec::new(),
        };
        if logs.is_empty() || follow.is_empty() {
            // Not bootstrapped yet, or no generation: wait for the view to change.
            let _ = tokio::time::timeout(Duration::from_secs(1), view.changed()).await;
            continue;
        }
        let log = logs[attempt % logs.len()].clone();
        let applied_before = progress.applied();
        let result = pull_loop(
            &worker_id,
            &log,
            &Local {
                engine: &engine,
                progress: &progress,
                handoff: &handoff,
                purger: &purger,
                sizes: &sizes,
            },
            &follow,
            &mut view,
        )
        .await;
        if progress.applied() > applied_before && progress.stranded().is_some() {
            progress.set_stranded(None);
            health.clear_problem(STRANDED);
        }
        match result {
            Ok(()) => backoff = Duration::from_millis(20),
            Err(PullError::Engine(e)) => return e,
            Err(PullError::Retry(Error::TransactionTooOld { .. }))
                if replica_of_nothing(&view, &worker_id) && handoff.can_restart() =>
            {
                // Only ranges being taken over, none installed: nothing here needs the
                // versions the log dropped. Move to the log's committed version and take
                // them over from there.
                match committed_version(&log).await {
                    Ok(committed) => {
                        progress.advance(committed);
                        handoff.restart(progress.applied());
                    }
                    Err(e) => {
                        tracing::debug!(log = %log, "asking a log server its committed version: {e}");
                        attempt += 1;
                        tokio::time::sleep(backoff).await;
                    }
                }
            }
            Err(PullError::Retry(e @ Error::TransactionTooOld { .. })) => {
                too_old += 1;
                attempt += 1;
                if too_old >= logs.len() {
                    let reason = format!(
                        "the log servers no longer hold the versions after {} that this server \
                         lacks (they dropped them over their retention budget while it \
                         lagged): it cannot catch up, and its shards must be re-replicated \
                         from their other replicas ({e})",
                        progress.applied()
                    );
                    if progress.stranded().is_none() {
                        tracing::error!("{reason}");
                    }
                    progress.set_stranded(Some(reason.clone()));
                    health.set_problem(STRANDED, reason);
                    too_old = 0;
                    tokio::time::sleep(STRANDED_RETRY).await;
                }
            }
            Err(PullError::Retry(e)) => {
                too_old = 0;
                tracing::warn!(log = %log, "pulling from the log server: {e}");
                attempt += 1;
                // A full round of the generation's log servers failed: back off.
                if attempt.is_multiple_of(logs.len()) {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }
}

/// Whether the map makes `worker_id` a replica of no shard.
fn replica_of_nothing(view: &watch::Receiver<ClusterView>, worker_id: &str) -> bool {
    view.borrow().shard_map.ranges_of(worker_id).is_empty()
}

/// The newest version the log server at `address` knows committed.
async fn committed_version(address: &str) -> Result<u64, Error> {
    let channel = ferrisdb_proto::transport::channel(&crate::worker::endpoint(address)?);
    let state = tokio::time::timeout(
        Duration::from_secs(2),
        LogServerClient::new(channel).get_log_state(v1::GetLogStateRequest {}),
    )
    .await
    .map_err(|_| Error::TimedOut(format!("the log server at {address} did not answer")))?
    .map_err(|s| ferrisdb_proto::status::from_status(&s))?;
    Ok(state.into_inner().known_committed)
}

/// What a pull loop applies to.
struct Local<'a> {
    engine: &'a Arc<Engine>,
    progress: &'a Arc<Progress>,
    handoff: &'a Arc<Handoff>,
    purger: &'a Purger,
    sizes: &'a Arc<ShardSizes>,
}

/// Pulls from one log server until the cluster view changes (Ok) or an error occurs.
async fn pull_loop(
    worker_id: &str,
    log: &str,
    local: &Local<'_>,
    follow: &[ferrisdb_core::KeyRange],
    view: &mut watch::Receiver<ClusterView>,
) -> Result<(), PullError> {
    let Local {
        engine,
        progress,
        handoff,
        purger,
        sizes,
    } = *local;
    let channel = ferrisdb_proto::transport::channel(&crate::worker::endpoint(log)?);
    // A pull answer holds whole commits (up to 10 MB each): tonic's 4 MiB default would
    // refuse one and wedge this server behind it forever.
    let mut client =
        LogServerClient::new(channel).max_decoding_message_size(crate::grpc::MAX_MESSAGE_BYTES);
    let request = v1::StreamMutationsRequest {
        storage_id: worker_id.to_string(),
        after_version: progress.applied(),
        ranges: ranges_to_proto(follow),
        // BUGGIFY: one version per message, so that a backlog arrives in many pieces.
        max_bytes: if ferrisdb_core::buggify!() {
            1
        } else {
            PULL_MAX_BYTES
        },
    };
    let mut stream = tokio::select! {
        opened = client.stream_mutations(request) => opened
            .map_err(|s| ferrisdb_proto::status::from_status(&s))?
            .into_inner(),
        Ok(()) = view.changed() => return Ok(()),
    };
    loop {
        let message = tokio::select! {
            biased;
            Ok(()) = view.changed() => return Ok(()),
            message = tokio::time::timeout(STREAM_SILENCE, stream.message()) => message,
        };
        let reply = match message {
            Ok(Ok(Some(reply))) => reply,
            Ok(Ok(None)) => {
                return Err(PullError::Retry(Error::Unavailable(
                    "the log server ended the mutation stream (shutting down)".into(),
                )));
            }
            Ok(Err(status)) => {
                return Err(PullError::Retry(ferrisdb_proto::status::from_status(
                    &status,
                )));
            }
            Err(_) => {
                return Err(PullError::Retry(Error::Unavailable(format!(
                    "no message on the mutation stream for {STREAM_SILENCE:?} (the committed \
                     version advances at least every {IDLE_TICK:?} while a generation serves)"
                ))));
            }
        };
        let fresh: Vec<_> = reply
            .batches
            .into_iter()
            .filter(|b| b.version > progress.applied())
            .collect();
        let committed = reply.committed_through;
        let hands_over = committed > progress.applied() && handoff.owes_work(committed);
        if !fresh.is_empty() || hands_over {
            let engine = engine.clone();
            let progress = progress.clone();
            let handoff = handoff.clone();
            let purger = purger.clone();
            let sizes = sizes.clone();
            crate::exec::blocking("the apply task", move || {
                apply_versions(&engine, &progress, &handoff, &sizes, fresh)?;
                if hands_over {
                    write_handoff(&engine, &handoff, &purger, committed)?;
                }
                Ok(())
            })
            .await
            .and_then(|applied| applied)
            .map_err(PullError::Engine)?;
        }
        progress.advance(committed);
    }
}

/// Applies each version as one atomic engine batch, readable at once; `report_durable` syncs.
/// The mutations of ranges being taken over are buffered by `handoff` instead; the others
/// are counted against their shards' write rates (`sizes`).
fn apply_versions(
    engine: &Engine,
    progress: &Progress,
    handoff: &Handoff,
    sizes: &ShardSizes,
    batches: Vec<v1::VersionedMutations>,
) -> Result<(), Error> {
    for batch in batches {
        let mut mutations = batch
            .mutations
            .into_iter()
            .map(Mutation::try_from)
            .collect::<Result<Vec<_>, Error>>()?;
        if handoff.buffering() {
            mutations = handoff.divert(batch.version, mutations);
        }
        if !mutations.is_empty() {
            engine.apply_unsynced(batch.version, &build_batch(engine, &mutations)?)?;
            sizes.record_writes(&mutations);
        }
        progress.advance(batch.version);
    }
    Ok(())
}

/// Writes what `handoff` owes (installs of fetched ranges, clears of ranges handed over) as
/// one batch at `version`, if no batch was written at it: every version up to it is applied.
/// The values of the ranges it clears are then purged in the background.
fn write_handoff(
    engine: &Engine,
    handoff: &Handoff,
    purger: &Purger,
    version: u64,
) -> Result<(), Error> {
    if engine.last_applied_version() >= version {
        return Ok(()); // The next committed version will do.
    }
    let pending = handoff.pending(version)?;
    if pending.is_empty() {
        return Ok(());
    }
    engine.apply_unsynced(version, &pending.batch)?;
    // Every key of the cleared ranges is deleted at `version` or before, and no reader needs
    // an older version of them.
    purger.purge(pending.cleared(), version);
    handoff.written(pending, version)
}

/// The durability loop of [`run`]: every [`REPORT_EVERY`], if the applied version moved,
/// syncs the engine, persists the applied version and reports it to the coordinator of the
/// current view. Returns only when the engine's sync fails; a failed persist or report is
/// retried on the next round.
async fn report_durability(
    worker_id: String,
    engine: Arc<Engine>,
    progress: Arc<Progress>,
    view: watch::Receiver<ClusterView>,
) -> Error {
    let mut reported = 0;
    let mut client: Option<(String, TransactionCoordinatorClient<Channel>)> = None;
    let mut tick = tokio::time::interval(REPORT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let applied = progress.applied();
        if applied <= reported {
            continue;
        }
        let Some(coordinator) = view.borrow().coordinator_address.clone() else {
            continue;
        };
        if client.as_ref().is_none_or(|(addr, _)| *addr != coordinator) {
            client = match crate::worker::endpoint(&coordinator) {
                Ok(e) => Some((
                    coordinator.clone(),
                    TransactionCoordinatorClient::new(ferrisdb_proto::transport::channel(&e)),
                )),
                Err(e) => {
                    tracing::warn!("coordinator address {coordinator:?}: {e}");
                    continue;
                }
            };
        }
        let Some((_, rpc)) = client.as_mut() else {
            continue;
        };
        match report_durable(rpc, &worker_id, &engine, &progress, applied).await {
            Ok(()) => reported = applied,
            Err(PullError::Engine(e)) => return e,
            Err(PullError::Retry(e)) => {
                tracing::debug!(coordinator = %coordinator, "reporting durability: {e}");
            }
        }
    }
}

/// Syncs the engine, then persists `applied` and tells the coordinator. Every version up to
/// `applied` that touched this server was applied to the engine before `applied` was read
/// (the applied version only moves after its batch is in), so the sync covers them all; the
/// persisted file must never claim a version the engine could lose in a crash. A failed sync
/// is an engine failure (nothing is persisted or reported); a failed persist or report is
/// retried with the next report.
async fn report_durable(
    client: &mut TransactionCoordinatorClient<Channel>,
    worker_id: &str,
    engine: &Arc<Engine>,
    progress: &Arc<Progress>,
    applied: u64,
) -> Result<(), PullError> {
    let synced = engine.clone();
    crate::exec::blocking("the sync task", move || synced.sync())
        .await
        .and_then(|synced| synced)
        .map_err(PullError::Engine)?;
    let p = progress.clone();
    crate::exec::blocking("the persist task", move || p.persist(applied)).await??;
    client
        .report_durable(v1::ReportDurableRequest {
            storage_id: worker_id.to_string(),
            durable_version: applied,
        })
        .await
        .map_err(|s| ferrisdb_proto::status::from_status(&s))?;
    Ok(())
}
