//! The coordinator as a cluster worker, on the shared controller session
//! ([`crate::worker`]): heartbeats carry the coordinator's status (committed version, commit
//! rate, batch size, retained log bytes, how far the log is truncated and what each storage
//! server reported durable), and every new shard map tells the commit log which storage
//! servers must report durability before it may truncate.
//!
//! The session retries in the background while the controller is unreachable; the
//! coordinator keeps serving commits meanwhile.

use std::sync::Arc;
use tokio::time::Instant;

use ferrisdb_core::{Result, Version};
use ferrisdb_proto::v1;
use parking_lot::Mutex;

use super::handle::CoordinatorHandle;
use crate::health::RoleHealth;
use crate::worker::{ControllerSession, DataDir, StatusSource, load_or_create_worker_id};

/// Heartbeat status of a coordinator: its counters, with the commit rate measured between
/// two heartbeats.
struct CoordinatorStatusSource {
    coordinator: CoordinatorHandle,
    last_sample: Mutex<(Instant, u64)>,
}

impl StatusSource for CoordinatorStatusSource {
    fn status(&self) -> v1::WorkerStatus {
        let stats = self.coordinator.stats();
        let commits = stats.pipeline.commits;
        let rate = {
            let mut last = self.last_sample.lock();
            let elapsed = last.0.elapsed().as_secs_f64().max(1e-3);
            let rate = commits.saturating_sub(last.1) as f64 / elapsed;
            *last = (Instant::now(), commits);
            rate
        };
        let (holders, truncated) = self.coordinator.log_holders();
        v1::WorkerStatus {
            unhealthy_reason: String::new(),
            status: Some(v1::worker_status::Status::Coordinator(
                v1::CoordinatorStatus {
                    committed_version: stats.committed_version.get(),
                    commits_per_second: rate,
                    avg_batch_size: stats.pipeline.avg_batch_size(),
                    log_bytes: stats.log.retained_bytes,
                    commits_total: stats.pipeline.commits,
                    batches_total: stats.pipeline.batches,
                    log_fsyncs_total: stats.log.fsyncs,
                    log_truncated_through: truncated.get(),
                    commit_stages: Some({
                        let s = stats.pipeline.stages;
                        let us = |d: std::time::Duration| {
                            u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
                        };
                        v1::CommitStages {
                            queue_us: us(s.queue),
                            resolve_us: us(s.resolve),
                            durable_us: us(s.durable),
                            reply_us: us(s.reply),
                        }
                    }),
                    serving_epoch: self.coordinator.serving_epoch(),
                    generation_failure: self.coordinator.generation_failure().unwrap_or_default(),
                    log_holders: holders
                        .into_iter()
                        .map(|h| v1::StorageDurability {
                            storage_id: h.storage_id,
                            durable_version: h.durable.map_or(0, Version::get),
                            ms_since_report: u64::try_from(h.since_report.as_millis())
                                .unwrap_or(u64::MAX),
                        })
                        .collect(),
                },
            )),
        }
    }
}

/// Joins the cluster at `controller`: registers (with the worker id kept in `data_dir`),
/// heartbeats, and follows the shard map. Returns the session (dropping it leaves) and the
/// task that follows the shard map.
pub async fn join(
    coordinator: CoordinatorHandle,
    controller: &str,
    data_dir: DataDir,
    advertise: String,
    health: RoleHealth,
) -> Result<(ControllerSession, tokio::task::JoinHandle<()>)> {
    let dir = data_dir.clone();
    let id = crate::exec::blocking("loading the worker id", move || {
        load_or_create_worker_id(dir.fs.as_ref(), &dir.path, "coord")
    })
    .await??;
    let status = Arc::new(CoordinatorStatusSource {
        coordinator: coordinator.clone(),
        last_sample: Mutex::new((Instant::now(), coordinator.stats().pipeline.commits)),
    });
    let session = ControllerSession::start(
        controller,
        id,
        data_dir,
        v1::WorkerRole::Coordinator,
        advertise,
        status,
        health,
    )?;
    let mut view = session.view();
    let follower = tokio::spawn(async move {
        let mut known_version = None;
        loop {
            let (version, shards) = {
                let v = view.borrow_and_update();
                let shards: Vec<Vec<String>> = v
                    .shard_map
                    .shards
                    .iter()
                    .map(|s| s.storage_ids.clone())
                    .collect();
                (v.shard_map.version, shards)
            };
            if version > 0 && known_version != Some(version) {
                if let Err(e) = coordinator.set_shards(shards).await {
                    tracing::warn!("log truncation failed: {e}");
                }
                known_version = Some(version);
            }
            if view.changed().await.is_err() {
                return;
            }
        }
    });
    Ok((session, follower))
}
