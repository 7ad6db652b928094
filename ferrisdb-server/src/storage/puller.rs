//! Pulls committed mutations for this server's ranges from the coordinator's log, in version
//! order, and applies each version to the engine as one atomic batch, readable at once but not
//! yet synced. Every [`REPORT_EVERY`] it syncs the engine (one fsync for everything applied
//! since), persists the applied version and reports it durable, so the log can drop what every
//! replica holds. Until then the coordinator's log is what makes those versions durable (as
//! FoundationDB's storage servers lag their transaction logs), so the pull loop never waits on
//! this server's disk and reads at fresh versions are not held behind an fsync.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrisdb_core::{Error, Mutation};
use ferrisdb_proto::convert::ranges_to_proto;
use ferrisdb_proto::v1;
use ferrisdb_proto::v1::transaction_coordinator_client::TransactionCoordinatorClient;
use ferrisdb_storage::engine::Engine;
use tokio::sync::watch;
use tonic::transport::Channel;

use super::apply::build_batch;
use super::progress::Progress;
use crate::worker::ClusterView;

/// Most bytes of mutations asked for per pull.
const PULL_MAX_BYTES: u64 = 8 << 20;
/// How long one pull may wait on the coordinator for new commits.
const PULL_WAIT_MS: u32 = 500;
/// How often durability is persisted and reported.
const REPORT_EVERY: Duration = Duration::from_millis(200);

/// Runs until the task is aborted: pull, apply, report; reconnects on any failure.
pub async fn run(
    worker_id: String,
    engine: Arc<Engine>,
    progress: Arc<Progress>,
    mut view: watch::Receiver<ClusterView>,
) {
    let mut backoff = Duration::from_millis(20);
    loop {
        let (coordinator, owned) = {
            let v = view.borrow_and_update();
            let owned: Vec<_> = v
                .shard_map
                .shards
                .iter()
                .filter(|s| s.storage_ids.contains(&worker_id))
                .map(|s| s.range.clone())
                .collect();
            (v.coordinator_address.clone(), owned)
        };
        progress.set_owned(owned.clone());
        let (Some(coordinator), false) = (coordinator, owned.is_empty()) else {
            // Not bootstrapped yet, or no coordinator: wait for the view to change.
            let _ = tokio::time::timeout(Duration::from_secs(1), view.changed()).await;
            continue;
        };
        match pull_loop(
            &worker_id,
            &coordinator,
            &engine,
            &progress,
            &owned,
            &mut view,
        )
        .await
        {
            Ok(()) => backoff = Duration::from_millis(20),
            Err(e) => {
                tracing::warn!(coordinator = %coordinator, "pulling from the coordinator: {e}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Pulls from one coordinator until the cluster view changes (Ok) or an error occurs.
async fn pull_loop(
    worker_id: &str,
    coordinator: &str,
    engine: &Arc<Engine>,
    progress: &Arc<Progress>,
    owned: &[ferrisdb_core::KeyRange],
    view: &mut watch::Receiver<ClusterView>,
) -> Result<(), Error> {
    let channel = crate::worker::endpoint(coordinator)?.connect_lazy();
    // A pull answer holds whole commits (up to 10 MB each): tonic's 4 MiB default would
    // refuse one and wedge this server behind it forever.
    let mut client = TransactionCoordinatorClient::new(channel)
        .max_decoding_message_size(crate::grpc::MAX_MESSAGE_BYTES);
    let mut last_report = Instant::now();
    let mut reported = 0;
    loop {
        if view.has_changed().unwrap_or(false) {
            return Ok(());
        }
        let request = v1::PullMutationsRequest {
            storage_id: worker_id.to_string(),
            after_version: progress.applied(),
            ranges: ranges_to_proto(owned),
            max_bytes: PULL_MAX_BYTES,
            wait_ms: PULL_WAIT_MS,
        };
        let reply = client
            .pull_mutations(request)
            .await
            .map_err(|s| ferrisdb_proto::status::from_status(&s))?
            .into_inner();
        let fresh: Vec<_> = reply
            .batches
            .into_iter()
            .filter(|b| b.version > progress.applied())
            .collect();
        if !fresh.is_empty() {
            let engine = engine.clone();
            let progress = progress.clone();
            tokio::task::spawn_blocking(move || apply_versions(&engine, &progress, fresh))
                .await
                .map_err(|e| Error::Internal(format!("apply task failed: {e}")))??;
        }
        progress.advance(reply.committed_through);
        let applied = progress.applied();
        if applied > reported && last_report.elapsed() >= REPORT_EVERY {
            report_durable(&mut client, worker_id, engine, progress, applied).await?;
            reported = applied;
            last_report = Instant::now();
        }
    }
}

/// Applies each version as one atomic engine batch, readable at once; `report_durable` syncs.
fn apply_versions(
    engine: &Engine,
    progress: &Progress,
    batches: Vec<v1::VersionedMutations>,
) -> Result<(), Error> {
    for batch in batches {
        let mutations = batch
            .mutations
            .into_iter()
            .map(Mutation::try_from)
            .collect::<Result<Vec<_>, Error>>()?;
        engine.apply_unsynced(batch.version, &build_batch(engine, &mutations)?)?;
        progress.advance(batch.version);
    }
    Ok(())
}

/// Syncs the engine, then persists `applied` and tells the coordinator. Every version up to
/// `applied` that touched this server was applied to the engine before `applied` was read
/// (the applied version only moves after its batch is in), so the sync covers them all; the
/// persisted file must never claim a version the engine could lose in a crash.
async fn report_durable(
    client: &mut TransactionCoordinatorClient<Channel>,
    worker_id: &str,
    engine: &Arc<Engine>,
    progress: &Arc<Progress>,
    applied: u64,
) -> Result<(), Error> {
    let (engine, p) = (engine.clone(), progress.clone());
    tokio::task::spawn_blocking(move || {
        engine.sync()?;
        p.persist(applied)
    })
    .await
    .map_err(|e| Error::Internal(format!("persist task failed: {e}")))??;
    client
        .report_durable(v1::ReportDurableRequest {
            storage_id: worker_id.to_string(),
            durable_version: applied,
        })
        .await
        .map_err(|s| ferrisdb_proto::status::from_status(&s))?;
    Ok(())
}
