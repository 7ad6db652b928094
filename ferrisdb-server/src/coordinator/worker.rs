//! The coordinator as a cluster worker: a stable worker id persisted in the data directory,
//! registration with the controller, heartbeats carrying the coordinator's status, and
//! following the shard map (its storage servers gate log truncation).
//!
//! The loop runs in the background and never stops the process: while the controller is
//! unreachable it retries, and the coordinator keeps serving commits meanwhile.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use ferrisdb_core::{Error, Result};
use ferrisdb_proto::v1;
use ferrisdb_proto::v1::cluster_controller_client::ClusterControllerClient;
use tonic::transport::{Channel, Endpoint};

use super::handle::CoordinatorHandle;

/// File in the data directory holding the worker id.
pub const WORKER_ID_FILE: &str = "worker_id";
/// Wait between attempts while the controller is unreachable.
const RETRY: Duration = Duration::from_millis(500);

/// Reads the worker id from `dir`, or creates and durably stores a new one.
pub fn load_or_create_worker_id(dir: &Path) -> Result<String> {
    let path = dir.join(WORKER_ID_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim().to_owned();
            let valid = !id.is_empty()
                && id.len() <= 128
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid {
                return Err(Error::corruption(&path, 0, "not a valid worker id"));
            }
            Ok(id)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = format!("coord-{:032x}", rand::random::<u128>());
            let tmp = dir.join(format!("{WORKER_ID_FILE}.tmp"));
            let write = || -> std::io::Result<()> {
                let mut f = fs::File::create(&tmp)?;
                f.write_all(id.as_bytes())?;
                f.sync_all()?;
                fs::rename(&tmp, &path)?;
                fs::File::open(dir)?.sync_all()
            };
            write().map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
            Ok(id)
        }
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

/// Registers with the controller at `controller`, then heartbeats forever (run it as a task).
pub async fn run(
    coordinator: CoordinatorHandle,
    controller: String,
    worker_id: String,
    advertise: String,
) {
    let endpoint = match Endpoint::from_shared(format!("http://{controller}")) {
        Ok(e) => e
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5)),
        Err(e) => {
            tracing::error!(%controller, "invalid controller address: {e}");
            return;
        }
    };
    let mut client = ClusterControllerClient::new(endpoint.connect_lazy());
    let mut shard_map_version = 0u64;
    let mut last_warning: Option<Instant> = None;
    let mut warn = |what: &str, err: &tonic::Status| {
        if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
            tracing::warn!(%controller, "{what} failed (retrying): {}", err.message());
            last_warning = Some(Instant::now());
        }
    };
    'register: loop {
        let req = v1::RegisterWorkerRequest {
            worker_id: worker_id.clone(),
            role: v1::WorkerRole::Coordinator as i32,
            address: advertise.clone(),
        };
        let interval = match client.register_worker(req).await {
            Ok(resp) => {
                let resp = resp.into_inner();
                tracing::info!(cluster_id = %resp.cluster_id, %worker_id, "registered with the controller");
                Duration::from_millis(u64::from(resp.heartbeat_interval_ms.max(10)))
            }
            Err(e) => {
                warn("registration", &e);
                tokio::time::sleep(RETRY).await;
                continue 'register;
            }
        };
        let mut last = (Instant::now(), coordinator.stats().pipeline.commits);
        loop {
            let stats = coordinator.stats();
            let elapsed = last.0.elapsed().as_secs_f64().max(1e-3);
            let rate = stats.pipeline.commits.saturating_sub(last.1) as f64 / elapsed;
            last = (Instant::now(), stats.pipeline.commits);
            let req = v1::HeartbeatRequest {
                worker_id: worker_id.clone(),
                status: Some(v1::WorkerStatus {
                    status: Some(v1::worker_status::Status::Coordinator(
                        v1::CoordinatorStatus {
                            committed_version: stats.committed_version.get(),
                            commits_per_second: rate,
                            avg_batch_size: stats.pipeline.avg_batch_size(),
                            log_bytes: stats.log.retained_bytes,
                        },
                    )),
                }),
            };
            match client.heartbeat(req).await {
                Ok(resp) => {
                    let resp = resp.into_inner();
                    if resp.must_register {
                        tracing::info!("controller asked to register again");
                        continue 'register;
                    }
                    if resp.shard_map_version != shard_map_version {
                        match fetch_storage_servers(&mut client).await {
                            Ok((version, ids)) => {
                                if let Err(e) = coordinator.set_storage_servers(ids).await {
                                    tracing::warn!("log truncation failed: {e}");
                                }
                                shard_map_version = version;
                            }
                            Err(e) => warn("fetching the cluster state", &e),
                        }
                    }
                }
                Err(e) => warn("heartbeat", &e),
            }
            tokio::time::sleep(interval).await;
        }
    }
}

/// The shard map's version and the set of storage servers holding a replica.
async fn fetch_storage_servers(
    client: &mut ClusterControllerClient<Channel>,
) -> std::result::Result<(u64, BTreeSet<String>), tonic::Status> {
    let state = client
        .get_cluster_state(v1::GetClusterStateRequest {})
        .await?
        .into_inner();
    let map = state.shard_map.unwrap_or_default();
    let ids = map.shards.into_iter().flat_map(|s| s.storage_ids).collect();
    Ok((map.version, ids))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_id_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let id = load_or_create_worker_id(dir.path()).unwrap();
        assert!(id.starts_with("coord-"));
        assert_eq!(load_or_create_worker_id(dir.path()).unwrap(), id);
        fs::write(dir.path().join(WORKER_ID_FILE), "bad id!").unwrap();
        let err = load_or_create_worker_id(dir.path()).unwrap_err();
        assert!(matches!(err, Error::Corruption { .. }), "{err}");
    }
}
