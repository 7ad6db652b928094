//! [`Controller`]: the shared, persistent handle on the cluster state that the gRPC service
//! calls into. Changes to persisted fields (workers, shard map) are written to the metadata
//! file before they take effect in memory, so nothing is published that a restart could lose.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferrisdb_core::Error;
use ferrisdb_storage::dir_lock::DirLock;
use tokio::sync::Mutex;

use super::config::ControllerConfig;
use super::membership::{RoleStatus, WorkerRecord};
use super::metadata::{self, Metadata};
use super::shard_map::ShardMap;
use super::state::{ClusterState, HeartbeatReply};

/// What a registering worker is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterReply {
    /// The cluster's identity.
    pub cluster_id: String,
    /// The current shard-map version.
    pub shard_map_version: u64,
    /// How often to heartbeat.
    pub heartbeat_interval: Duration,
}

/// The cluster controller's state, shared by its gRPC handlers.
#[derive(Debug)]
pub struct Controller {
    state: Mutex<ClusterState>,
    /// Held while the controller runs: one controller per data directory.
    _lock: DirLock,
    data_dir: PathBuf,
    heartbeat_interval: Duration,
}

impl Controller {
    /// Opens the data directory: loads the metadata file, or creates a new cluster identity
    /// (and persists it) on first start.
    pub async fn open(config: &ControllerConfig) -> Result<Self, Error> {
        config.validate()?;
        let dir = config.data_dir.clone();
        let (lock, meta) = blocking(move || {
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::io(format!("creating data directory {}", dir.display()), e))?;
            let lock = DirLock::acquire(&dir, "the controller's state")?;
            Ok((lock, metadata::load(&dir)?))
        })
        .await?;
        let meta = match meta {
            Some(meta) => reconcile(meta, config),
            None => {
                let meta = Metadata {
                    cluster_id: format!("{:032x}", rand::random::<u128>()),
                    expected_storage_servers: config.storage_servers,
                    replication: config.replication,
                    shard_map: ShardMap::default(),
                    workers: Vec::new(),
                };
                tracing::info!(cluster_id = %meta.cluster_id, "created a new cluster identity");
                meta
            }
        };
        let controller = Controller {
            _lock: lock,
            state: Mutex::new(ClusterState::from_metadata(
                meta.clone(),
                config.liveness(),
                Instant::now(),
            )),
            data_dir: config.data_dir.clone(),
            heartbeat_interval: config.heartbeat_interval,
        };
        controller.persist(meta).await?;
        Ok(controller)
    }

    /// Registers a worker (see [`ClusterState::register`]), persisting any change first.
    pub async fn register(&self, record: WorkerRecord) -> Result<RegisterReply, Error> {
        let mut state = self.state.lock().await;
        let mut next = state.clone();
        let (id, role, address) = (record.id.clone(), record.role, record.address.clone());
        next.register(record, Instant::now(), unix_ms())?;
        let meta = next.metadata();
        if meta != state.metadata() {
            self.persist(meta).await?;
        }
        *state = next;
        tracing::info!(worker = %id, %role, %address, "worker registered");
        Ok(RegisterReply {
            cluster_id: state.cluster_id.clone(),
            shard_map_version: state.shard_map.version,
            heartbeat_interval: self.heartbeat_interval,
        })
    }

    /// Records a heartbeat and the problem it reports (`None`: none).
    pub async fn heartbeat(
        &self,
        id: &str,
        status: Option<RoleStatus>,
        problem: Option<String>,
    ) -> Result<HeartbeatReply, Error> {
        self.state
            .lock()
            .await
            .heartbeat(id, status, problem, Instant::now())
    }

    /// Runs `f` on the current state and the current time.
    pub async fn view<R>(&self, f: impl FnOnce(&ClusterState, Instant) -> R) -> R {
        let state = self.state.lock().await;
        f(&state, Instant::now())
    }

    /// How often workers heartbeat.
    pub fn heartbeat_interval(&self) -> Duration {
        self.heartbeat_interval
    }

    /// Logs every worker whose health changed since the last call.
    pub async fn log_health_changes(&self) {
        let changes = self
            .state
            .lock()
            .await
            .membership
            .health_changes(Instant::now());
        for (w, reason) in changes {
            match reason {
                None => {
                    tracing::info!(worker = %w.id, role = %w.role, address = %w.address, "worker healthy");
                }
                Some(reason) => {
                    tracing::warn!(worker = %w.id, role = %w.role, address = %w.address, %reason, "worker unhealthy");
                }
            }
        }
    }

    async fn persist(&self, meta: Metadata) -> Result<(), Error> {
        let dir = self.data_dir.clone();
        blocking(move || metadata::store(&dir, &meta)).await
    }
}

/// Applies the flags to loaded metadata: before bootstrap they may change the layout; after
/// it the persisted layout wins.
fn reconcile(mut meta: Metadata, config: &ControllerConfig) -> Metadata {
    let same = meta.expected_storage_servers == config.storage_servers
        && meta.replication == config.replication;
    if !same && meta.shard_map.is_bootstrapped() {
        tracing::warn!(
            persisted_storage_servers = meta.expected_storage_servers,
            persisted_replication = meta.replication,
            "cluster already bootstrapped; ignoring --storage-servers/--replication"
        );
    } else {
        meta.expected_storage_servers = config.storage_servers;
        meta.replication = config.replication;
    }
    tracing::info!(
        cluster_id = %meta.cluster_id,
        shard_map_version = meta.shard_map.version,
        workers = meta.workers.len(),
        "loaded cluster metadata"
    );
    meta
}

/// Runs blocking file I/O off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("metadata I/O task failed: {e}")))?
}

/// Wall-clock milliseconds since the Unix epoch (0 for a clock before 1970).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::membership::Role;

    fn config(dir: &std::path::Path) -> ControllerConfig {
        ControllerConfig {
            listen: ([127, 0, 0, 1], 0).into(),
            data_dir: dir.to_path_buf(),
            storage_servers: 2,
            replication: 2,
            heartbeat_interval: Duration::from_millis(100),
            missed_heartbeats: 3,
            max_connections: None,
        }
    }

    fn rec(id: &str) -> WorkerRecord {
        WorkerRecord {
            id: id.into(),
            role: Role::Storage,
            address: format!("{id}:1"),
        }
    }

    #[tokio::test]
    async fn identity_and_shard_map_survive_reopen_and_flags_cannot_change_them() {
        let dir = tempfile::tempdir().unwrap();
        let c = Controller::open(&config(dir.path())).await.unwrap();
        let first = c.register(rec("a")).await.unwrap();
        let second = c.register(rec("b")).await.unwrap();
        assert_eq!(first.cluster_id, second.cluster_id);
        assert_eq!((first.shard_map_version, second.shard_map_version), (0, 1));
        let map = c.view(|s, _| s.shard_map.clone()).await;
        drop(c);

        let changed = ControllerConfig {
            storage_servers: 3,
            ..config(dir.path())
        };
        let c = Controller::open(&changed).await.unwrap();
        let (id, again, expected) = c
            .view(|s, _| {
                (
                    s.cluster_id.clone(),
                    s.shard_map.clone(),
                    s.expected_storage_servers,
                )
            })
            .await;
        assert_eq!((id, again, expected), (first.cluster_id, map, 2));
    }

    #[tokio::test]
    async fn corrupt_metadata_fails_open_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(metadata::path_in(dir.path()), b"garbage").unwrap();
        let err = Controller::open(&config(dir.path())).await.unwrap_err();
        assert!(err.to_string().contains(metadata::METADATA_FILE), "{err}");
    }
}
