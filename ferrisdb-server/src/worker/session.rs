//! The background session a worker keeps with the cluster controller.

use std::sync::Arc;
use std::time::Duration;

use ferrisdb_core::Error;
use ferrisdb_proto::v1;
use ferrisdb_proto::v1::cluster_controller_client::ClusterControllerClient;
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};

use crate::health::RoleHealth;
use ferrisdb_core::ShardMap;

/// Supplies the status a worker reports in each heartbeat.
pub trait StatusSource: Send + Sync + 'static {
    /// The current status of this worker's role.
    fn status(&self) -> v1::WorkerStatus;
}

/// What a worker knows of the cluster, refreshed when the shard map changes.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    /// The cluster's id (empty until the first registration succeeds).
    pub cluster_id: String,
    /// Address of the transaction coordinator, if one has registered.
    pub coordinator_address: Option<String>,
    /// The shard map (version 0 and no shards before bootstrap).
    pub shard_map: ShardMap,
}

/// Registration + heartbeats + cluster-state refresh, running on a background task.
pub struct ControllerSession {
    view: watch::Receiver<ClusterView>,
    task: tokio::task::JoinHandle<()>,
}

impl ControllerSession {
    /// Starts the session. It retries forever in the background; watch [`Self::view`].
    /// Heartbeats carry `status` and, while `health` has problems, the reason.
    pub fn start(
        controller: &str,
        worker_id: String,
        role: v1::WorkerRole,
        advertise: String,
        status: Arc<dyn StatusSource>,
        health: RoleHealth,
    ) -> Result<Self, Error> {
        let endpoint = endpoint(controller)?;
        let (tx, rx) = watch::channel(ClusterView::default());
        let worker = Worker {
            id: worker_id,
            role,
            advertise,
            status,
            health,
        };
        let task = tokio::spawn(run(endpoint, worker, tx));
        Ok(ControllerSession { view: rx, task })
    }

    /// A receiver of the latest cluster view.
    pub fn view(&self) -> watch::Receiver<ClusterView> {
        self.view.clone()
    }
}

impl Drop for ControllerSession {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A lazily connecting channel endpoint for `address` (`host:port` or a full URI).
pub fn endpoint(address: &str) -> Result<Endpoint, Error> {
    let uri = if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    };
    Endpoint::from_shared(uri)
        .map(|e| e.connect_timeout(Duration::from_secs(2)).tcp_nodelay(true))
        .map_err(|e| Error::InvalidArgument(format!("bad address {address:?}: {e}")))
}

/// Heartbeats between unconditional cluster-state refreshes.
const REFRESH_EVERY_BEATS: u64 = 4;

/// Who the session speaks for.
struct Worker {
    id: String,
    role: v1::WorkerRole,
    advertise: String,
    status: Arc<dyn StatusSource>,
    health: RoleHealth,
}

impl Worker {
    /// The status for the next heartbeat, with the health reason filled in.
    fn heartbeat_status(&self) -> v1::WorkerStatus {
        let mut status = self.status.status();
        status.unhealthy_reason = self.health.unhealthy_reason().unwrap_or_default();
        status
    }
}

async fn run(endpoint: Endpoint, worker: Worker, view: watch::Sender<ClusterView>) {
    let worker_id = worker.id.clone();
    let mut client = ClusterControllerClient::new(endpoint.connect_lazy());
    let mut backoff = Duration::from_millis(50);
    loop {
        // Register (again).
        let request = v1::RegisterWorkerRequest {
            worker_id: worker_id.clone(),
            role: worker.role as i32,
            address: worker.advertise.clone(),
        };
        let reply = match client.register_worker(request).await {
            Ok(r) => r.into_inner(),
            Err(e) => {
                tracing::debug!("registration with the controller failed: {e}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        tracing::info!(cluster = %reply.cluster_id, worker = %worker_id, "registered with the controller");
        let interval = Duration::from_millis(u64::from(reply.heartbeat_interval_ms.max(50)));
        let mut known_map_version = None;
        let mut wanted_map_version = reply.shard_map_version;
        let mut beats: u64 = 0;
        loop {
            // Refresh when the map changed, and every few beats anyway: the coordinator's
            // address can change without a new shard map.
            if known_map_version != Some(wanted_map_version)
                || beats.is_multiple_of(REFRESH_EVERY_BEATS)
            {
                match fetch_view(&mut client).await {
                    Ok(v) => {
                        known_map_version = Some(v.shard_map.version);
                        view.send_replace(v);
                    }
                    Err(e) => tracing::debug!("fetching the cluster state failed: {e}"),
                }
            }
            beats += 1;
            // The first heartbeat goes out at once: until it arrives the controller knows
            // this worker but not its status.
            let hb = v1::HeartbeatRequest {
                worker_id: worker_id.clone(),
                status: Some(worker.heartbeat_status()),
            };
            match client.heartbeat(hb).await {
                Ok(r) => {
                    let r = r.into_inner();
                    if r.must_register {
                        break;
                    }
                    wanted_map_version = r.shard_map_version;
                }
                Err(e) => {
                    tracing::debug!("heartbeat failed: {e}");
                    tokio::time::sleep(interval).await;
                    known_map_version = None;
                }
            }
            tokio::time::sleep(interval).await;
        }
    }
}

async fn fetch_view(client: &mut ClusterControllerClient<Channel>) -> Result<ClusterView, Error> {
    let state = client
        .get_cluster_state(v1::GetClusterStateRequest {})
        .await
        .map_err(|s| ferrisdb_proto::status::from_status(&s))?
        .into_inner();
    let shard_map = match state.shard_map {
        Some(m) => ShardMap::try_from(m)?,
        None => ShardMap::default(),
    };
    Ok(ClusterView {
        cluster_id: state.cluster_id,
        coordinator_address: state
            .coordinator
            .map(|c| c.address)
            .filter(|a| !a.is_empty()),
        shard_map,
    })
}
