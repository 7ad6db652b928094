//! The background session a worker keeps with the cluster controller.

use std::sync::Arc;
use std::time::Duration;

use ferrisdb_core::Error;
use ferrisdb_proto::v1;
use ferrisdb_proto::v1::cluster_controller_client::ClusterControllerClient;
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};

use super::DataDir;
use crate::health::RoleHealth;
use ferrisdb_core::ShardMap;

/// Supplies the status a worker reports in each heartbeat.
pub trait StatusSource: Send + Sync + 'static {
    /// The current status of this worker's role.
    fn status(&self) -> v1::WorkerStatus;
}

/// What a worker knows of the cluster, refreshed when the shard map or the generation
/// changes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterView {
    /// The cluster's id (empty until the first registration succeeds).
    pub cluster_id: String,
    /// Address of the transaction coordinator, if one has registered.
    pub coordinator_address: Option<String>,
    /// The shard map (version 0 and no shards before bootstrap).
    pub shard_map: ShardMap,
    /// The transaction system's current generation (0: none yet).
    pub epoch: u64,
    /// Addresses of the current generation's log servers, which storage servers follow.
    pub log_addresses: Vec<String>,
    /// Storage servers' addresses by worker id (a storage server taking over a shard fetches
    /// it from a replica).
    pub storage_addresses: std::collections::BTreeMap<String, String>,
}

/// Registration + heartbeats + cluster-state refresh, running on a background task.
pub struct ControllerSession {
    view: watch::Receiver<ClusterView>,
    task: tokio::task::JoinHandle<()>,
}

impl ControllerSession {
    /// Starts the session with the controller group at `controllers` (one or more
    /// comma-separated `host:port`; the session follows the group's leader). It retries
    /// forever in the background; watch [`Self::view`]. Heartbeats carry `status` and, while
    /// `health` has problems, the reason.
    ///
    /// The worker keeps the id of the cluster it first registered with in `data_dir` and
    /// refuses a controller of another cluster (logged, and reported as its unhealthy reason).
    pub fn start(
        controllers: &str,
        worker_id: String,
        data_dir: DataDir,
        role: v1::WorkerRole,
        advertise: String,
        status: Arc<dyn StatusSource>,
        health: RoleHealth,
    ) -> Result<Self, Error> {
        let leader = LeaderFinder::new(controllers)?;
        let cluster_id = super::load_cluster_id(data_dir.fs.as_ref(), &data_dir.path)?;
        let (tx, rx) = watch::channel(ClusterView::default());
        let worker = Worker {
            id: worker_id,
            data_dir,
            cluster_id,
            incarnation: format!("{:016x}", ferrisdb_core::random::next_u64()),
            role,
            advertise,
            status,
            health,
        };
        let task = tokio::spawn(run(leader, worker, tx));
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

/// The local address this process's connections to other FerrisDB processes leave from
/// (`None`: the system's choice); set once at start.
static SOURCE_IP: std::sync::OnceLock<std::net::IpAddr> = std::sync::OnceLock::new();

/// Makes every connection [`endpoint`] opens from now on leave from `ip` (a host with several
/// interfaces, or a test that partitions processes by source address). The first call wins;
/// returns false if another address was set before.
pub fn set_source_ip(ip: std::net::IpAddr) -> bool {
    *SOURCE_IP.get_or_init(|| ip) == ip
}

/// A lazily connecting channel endpoint for `address` (`host:port` or a full URI), leaving
/// from the process's source address if one was set ([`set_source_ip`]).
pub fn endpoint(address: &str) -> Result<Endpoint, Error> {
    let uri = if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    };
    Endpoint::from_shared(uri)
        .map(|e| {
            e.connect_timeout(Duration::from_secs(2))
                .tcp_nodelay(true)
                .local_address(SOURCE_IP.get().copied())
        })
        .map_err(|e| Error::InvalidArgument(format!("bad address {address:?}: {e}")))
}

/// The controller replica the session talks to: the leader when known, else the next
/// address of the list in turn.
struct LeaderFinder {
    addresses: Vec<String>,
    current: usize,
    client: ClusterControllerClient<Channel>,
}

impl LeaderFinder {
    fn new(controllers: &str) -> Result<Self, Error> {
        let addresses: Vec<String> = controllers
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(String::from)
            .collect();
        let first = addresses
            .first()
            .ok_or_else(|| Error::InvalidArgument("no controller address given".into()))?;
        let client =
            ClusterControllerClient::new(ferrisdb_proto::transport::channel(&endpoint(first)?));
        for a in &addresses[1..] {
            endpoint(a)?;
        }
        Ok(LeaderFinder {
            addresses,
            current: 0,
            client,
        })
    }

    /// After a failed call: go to the leader the error names, or to the next address.
    fn after_error(&mut self, err: &Error) {
        let next = match err {
            Error::NotLeader(leader) if !leader.is_empty() => {
                match self.addresses.iter().position(|a| a == leader) {
                    Some(i) => i,
                    None => {
                        self.addresses.push(leader.clone());
                        self.addresses.len() - 1
                    }
                }
            }
            _ => (self.current + 1) % self.addresses.len(),
        };
        if next == self.current {
            return;
        }
        match endpoint(&self.addresses[next]) {
            Ok(e) => {
                tracing::debug!(controller = %self.addresses[next], "trying another controller replica");
                self.current = next;
                self.client = ClusterControllerClient::new(ferrisdb_proto::transport::channel(&e));
            }
            Err(e) => tracing::warn!("controller address {}: {e}", self.addresses[next]),
        }
    }
}

/// The health-problem source for a controller this worker must not serve.
const CLUSTER_PROBLEM: &str = "controller";

impl Worker {
    /// Accepts the cluster a controller answered for: records it on the first registration,
    /// refuses another one after that.
    async fn accept_cluster(&mut self, cluster_id: &str, controller: &str) -> Result<(), Error> {
        match &self.cluster_id {
            Some(ours) if ours == cluster_id => Ok(()),
            Some(ours) => Err(Error::InvalidArgument(format!(
                "the controller at {controller} serves cluster {cluster_id}, but this worker \
                 belongs to cluster {ours} (kept in {}): refusing it",
                self.data_dir.path.display()
            ))),
            None => {
                let dir = self.data_dir.clone();
                let id = cluster_id.to_string();
                crate::exec::blocking("storing the cluster id", move || {
                    super::store_cluster_id(dir.fs.as_ref(), &dir.path, &id)
                })
                .await??;
                self.cluster_id = Some(cluster_id.to_string());
                Ok(())
            }
        }
    }
}

/// Heartbeats between unconditional cluster-state refreshes.
const REFRESH_EVERY_BEATS: u64 = 4;

/// Who the session speaks for.
struct Worker {
    id: String,
    data_dir: DataDir,
    /// The cluster it belongs to (`None` until its first registration).
    cluster_id: Option<String>,
    /// Chosen at process start, sent with each registration.
    incarnation: String,
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

async fn run(mut leader: LeaderFinder, mut worker: Worker, view: watch::Sender<ClusterView>) {
    let worker_id = worker.id.clone();
    let mut backoff = Duration::from_millis(50);
    loop {
        // Register (again).
        let request = v1::RegisterWorkerRequest {
            worker_id: worker_id.clone(),
            role: worker.role as i32,
            address: worker.advertise.clone(),
            cluster_id: worker.cluster_id.clone().unwrap_or_default(),
            incarnation: worker.incarnation.clone(),
        };
        let reply = match leader.client.register_worker(request).await {
            Ok(r) => r.into_inner(),
            Err(s) => {
                let e = ferrisdb_proto::status::from_status(&s);
                tracing::debug!("registration with the controller failed: {e}");
                if let Error::InvalidArgument(reason) = &e {
                    // A controller that refuses this worker (another cluster, a role clash):
                    // nothing a retry changes by itself, so say it where operators look.
                    tracing::error!("the controller refused this worker: {reason}");
                    worker.health.set_problem(CLUSTER_PROBLEM, reason.clone());
                }
                let redirected = matches!(&e, Error::NotLeader(l) if !l.is_empty());
                leader.after_error(&e);
                if !redirected {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                continue;
            }
        };
        let controller = leader.addresses[leader.current].clone();
        if let Err(e) = worker.accept_cluster(&reply.cluster_id, &controller).await {
            tracing::error!("{e}");
            worker.health.set_problem(CLUSTER_PROBLEM, e.to_string());
            leader.after_error(&e);
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        worker.health.clear_problem(CLUSTER_PROBLEM);
        backoff = Duration::from_millis(50);
        tracing::info!(cluster = %reply.cluster_id, worker = %worker_id, epoch = reply.epoch, "registered with the controller");
        let interval = Duration::from_millis(u64::from(reply.heartbeat_interval_ms.max(50)));
        let mut known = None;
        let mut wanted = (reply.shard_map_version, reply.epoch);
        let mut beats: u64 = 0;
        loop {
            // Refresh when the map or the generation changed, and every few beats anyway: the
            // coordinator's address can change without either.
            if known != Some(wanted) || beats.is_multiple_of(REFRESH_EVERY_BEATS) {
                match fetch_view(&mut leader.client).await {
                    Ok(v) if worker.cluster_id.as_deref() != Some(v.cluster_id.as_str()) => {
                        tracing::warn!(cluster = %v.cluster_id, "ignoring the state of another cluster");
                        leader.after_error(&Error::Unavailable(String::new()));
                    }
                    Ok(v) => {
                        known = Some((v.shard_map.version, v.epoch));
                        // Shard-map versions and generations only grow: never step back.
                        view.send_if_modified(|current| {
                            if v.shard_map.version < current.shard_map.version
                                || v.epoch < current.epoch
                                || v == *current
                            {
                                return false;
                            }
                            *current = v;
                            true
                        });
                    }
                    Err(e) => {
                        tracing::debug!("fetching the cluster state failed: {e}");
                        leader.after_error(&e);
                    }
                }
            }
            beats += 1;
            // The first heartbeat goes out at once: until it arrives the controller knows
            // this worker but not its status.
            let hb = v1::HeartbeatRequest {
                worker_id: worker_id.clone(),
                status: Some(worker.heartbeat_status()),
            };
            match leader.client.heartbeat(hb).await {
                Ok(r) => {
                    let r = r.into_inner();
                    if r.must_register {
                        break;
                    }
                    wanted = (r.shard_map_version, r.epoch);
                }
                Err(s) => {
                    let e = ferrisdb_proto::status::from_status(&s);
                    tracing::debug!("heartbeat failed: {e}");
                    leader.after_error(&e);
                    // Another replica (a new leader) hears of this worker by registering.
                    break;
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
    let storage_addresses = state
        .workers
        .iter()
        .filter(|w| w.role == v1::WorkerRole::Storage as i32)
        .map(|w| (w.worker_id.clone(), w.address.clone()))
        .collect();
    Ok(ClusterView {
        storage_addresses,
        cluster_id: state.cluster_id,
        coordinator_address: state
            .coordinator
            .map(|c| c.address)
            .filter(|a| !a.is_empty()),
        shard_map,
        epoch: state.generation.as_ref().map_or(0, |g| g.epoch),
        log_addresses: state
            .generation
            .map(|g| g.logs.into_iter().map(|l| l.address).collect())
            .unwrap_or_default(),
    })
}
