//! [`Controller`]: what the `ClusterController` service calls into. Only the group's leader
//! serves workers and clients: each call first confirms leadership with a quorum (a deposed
//! leader learns it before it answers), changes to the cluster state are Raft proposals
//! applied on every replica, and the liveness of workers (heartbeats) lives in the leader's
//! memory only, rebuilt when a replica takes office: every worker is unhealthy until it
//! heartbeats to the new leader.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use ferrisdb_core::Error;
use ferrisdb_storage::dir_lock::DirLock;
use tokio::sync::{Mutex, MutexGuard};

use super::config::ControllerConfig;
use super::distributor::Limits;
use super::group::ControllerGroup;
use super::membership::{Liveness, RoleStatus, WorkerRecord};
use super::metadata::{self, Metadata};
use super::raft::Command;
use super::shard_map::ShardMap;
use super::state::{ClusterState, HeartbeatReply, registration_changes};
use crate::clock::{Clock, SystemClock};
use crate::worker::DataDir;

/// What a registering worker is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterReply {
    /// The cluster's identity.
    pub cluster_id: String,
    /// The current shard-map version.
    pub shard_map_version: u64,
    /// How often to heartbeat.
    pub heartbeat_interval: Duration,
    /// The transaction system's generation (for a coordinator: the one it serves).
    pub epoch: u64,
}

/// The leader's view and the term it belongs to.
#[derive(Debug, Default)]
struct LeaderView {
    term: u64,
    state: Option<ClusterState>,
}

/// A controller replica, shared by its gRPC handlers.
#[derive(Debug)]
pub struct Controller {
    group: ControllerGroup,
    view: Mutex<LeaderView>,
    /// The cluster this replica creates if it leads a group that has none yet.
    initial: Metadata,
    /// The group to form or join.
    peers: Vec<String>,
    /// Never form a group, only join one.
    join_only: bool,
    /// Whether this replica creates the cluster when its group has none: the replica that
    /// forms the group (the first of `peers`), or one importing a single controller's
    /// metadata file. Others never do, so a replica that happens to win the first election
    /// cannot create a cluster with another identity.
    creates_cluster: bool,
    /// Held while the controller runs: one controller per data directory.
    _lock: DirLock,
    /// Where its state lives.
    data: DataDir,
    /// The wall clock: a new generation's first version, registration times.
    clock: Arc<dyn Clock>,
    heartbeat_interval: Duration,
    liveness: Liveness,
    storage_failure_timeout: Duration,
    distribution_limits: Limits,
}

impl Controller {
    /// Opens the data directory and starts this replica's Raft node. A metadata file left by
    /// a single controller of an earlier release is imported when this replica creates the
    /// cluster.
    pub async fn open(config: &ControllerConfig) -> Result<Self, Error> {
        Self::open_with_fs(config, ferrisdb_storage::vfs::os()).await
    }

    /// [`open`](Self::open) with `config.data_dir` on the file system `fs`.
    pub async fn open_with_fs(
        config: &ControllerConfig,
        fs: ferrisdb_storage::vfs::SharedFs,
    ) -> Result<Self, Error> {
        Self::open_with(config, fs, Arc::new(SystemClock)).await
    }

    /// [`open_with_fs`](Self::open_with_fs), reading the wall clock from `clock` (the
    /// simulated machine's, in simulation).
    pub async fn open_with(
        config: &ControllerConfig,
        fs: ferrisdb_storage::vfs::SharedFs,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Error> {
        config.validate()?;
        let data = DataDir {
            fs,
            path: config.data_dir.clone(),
        };
        let dir = data.clone();
        let (lock, legacy) = blocking(move || {
            let (fs, path) = (dir.fs.as_ref(), &dir.path);
            fs.create_dir_all(path)
                .map_err(|e| Error::io(format!("creating data directory {}", path.display()), e))?;
            let lock = DirLock::acquire_in(fs, path, "the controller's state")?;
            Ok((lock, metadata::load(fs, path)?))
        })
        .await?;
        let imports = legacy.is_some();
        let initial = match legacy {
            Some(meta) => {
                tracing::info!(cluster_id = %meta.cluster_id, "found a single controller's metadata file: the group imports it");
                meta
            }
            None => Metadata {
                cluster_id: format!(
                    "{:032x}",
                    u128::from_le_bytes(ferrisdb_core::random::bytes16())
                ),
                expected_storage_servers: config.storage_servers,
                replication: config.replication,
                shard_map: ShardMap::default(),
                workers: Vec::new(),
                generation: Default::default(),
                recovering_epoch: 0,
                log_replication: config.log_replication,
                excluded: Vec::new(),
            },
        };
        let group = ControllerGroup::open(
            &data,
            config.advertised_address(),
            config.raft,
            config.peer_source_ip,
        )
        .await?;
        Ok(Controller {
            group,
            view: Mutex::new(LeaderView::default()),
            initial,
            peers: config.peers.clone(),
            join_only: config.join_only,
            creates_cluster: imports
                || (!config.join_only
                    && config
                        .peers
                        .first()
                        .is_none_or(|first| *first == config.advertised_address())),
            _lock: lock,
            data,
            clock,
            heartbeat_interval: config.heartbeat_interval,
            liveness: config.liveness(),
            storage_failure_timeout: config.storage_failure_timeout,
            distribution_limits: Limits {
                shard_bytes: config.max_shard_bytes,
                shard_write_bytes_per_second: config.max_shard_write_bytes_per_second,
            },
        })
    }

    /// How long a storage server may be silent before its shards are re-replicated.
    pub fn storage_failure_timeout(&self) -> Duration {
        self.storage_failure_timeout
    }

    /// The data distributor's split and merge thresholds.
    pub fn distribution_limits(&self) -> Limits {
        self.distribution_limits
    }

    /// Where this replica keeps its state.
    pub fn data_dir(&self) -> &DataDir {
        &self.data
    }

    /// The wall clock in versions (microseconds since the Unix epoch): where a new
    /// generation's versions start, at the least.
    pub fn now_version(&self) -> ferrisdb_core::Version {
        ferrisdb_core::Version(self.clock.now_micros())
    }

    /// This replica's place in the group.
    pub fn group(&self) -> &ControllerGroup {
        &self.group
    }

    /// Forms or joins the group (see [`ControllerGroup::form_or_join`]); returns once this
    /// replica belongs to one.
    pub async fn form_or_join(&self) {
        self.group
            .form_or_join(self.peers.clone(), self.join_only)
            .await;
    }

    /// Creates the cluster when this replica's new group has none yet, if it is the replica
    /// that creates it (through the leader when another replica leads). Returns once the
    /// group has a cluster.
    pub async fn create_cluster_when_leading(&self) {
        let existing = loop {
            if let Some(existing) = self.group.cluster() {
                break existing;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            if !self.creates_cluster || !self.group.is_voter() {
                continue;
            }
            match self.group.create_cluster_via_leader(&self.initial).await {
                Ok(()) => {
                    if let Some(c) = self.group.cluster() {
                        tracing::info!(cluster_id = %c.cluster_id, "created the cluster");
                    }
                }
                Err(e) => tracing::debug!("creating the cluster: {e}"),
            }
        };
        let same = existing.expected_storage_servers == self.initial.expected_storage_servers
            && existing.replication == self.initial.replication;
        if !same {
            tracing::warn!(
                replicated_storage_servers = existing.expected_storage_servers,
                replicated_replication = existing.replication,
                "the cluster already exists; ignoring --storage-servers/--replication"
            );
        }
    }

    /// The replicated cluster, waiting briefly for a new group's leader to create it.
    async fn created_cluster(&self) -> Result<Metadata, Error> {
        for _ in 0..100 {
            if let Some(meta) = self.group.cluster() {
                return Ok(meta);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(Error::Unavailable(
            "the controller group is still creating the cluster".into(),
        ))
    }

    /// The leader's view, after confirming leadership; rebuilt when the term changed.
    async fn leading_view(&self) -> Result<MutexGuard<'_, LeaderView>, Error> {
        self.group.confirm_leadership().await?;
        self.view_as_applied().await
    }

    /// The leader's view over the state applied here, once leadership was confirmed (or a
    /// proposal committed); rebuilt when the term changed.
    async fn view_as_applied(&self) -> Result<MutexGuard<'_, LeaderView>, Error> {
        let meta = self.created_cluster().await?;
        let term = self.group.term();
        let mut view = self.view.lock().await;
        let same_term = view.term == term;
        match &mut view.state {
            Some(state) if same_term => state.adopt(&meta),
            _ => {
                tracing::info!(
                    term,
                    "leading the controller group: workers are unhealthy until they heartbeat here"
                );
                view.state = Some(ClusterState::from_metadata(
                    meta,
                    self.liveness,
                    Instant::now(),
                ));
                view.term = term;
            }
        }
        Ok(view)
    }

    /// Registers a worker (see [`super::state::apply_command`]) through the group. A worker
    /// that says it belongs to another cluster (`claimed_cluster`, empty on its first
    /// registration) is refused. Registering begins no generation: the recovery recruits
    /// coordinators and log servers (`super::recovery`).
    pub async fn register(
        &self,
        record: WorkerRecord,
        claimed_cluster: &str,
    ) -> Result<RegisterReply, Error> {
        self.group.confirm_leadership().await?;
        let meta = self.created_cluster().await?;
        if !claimed_cluster.is_empty() && claimed_cluster != meta.cluster_id {
            return Err(Error::InvalidArgument(format!(
                "worker {} belongs to cluster {claimed_cluster}, but this controller serves \
                 cluster {}: start it with this cluster's controllers, or on an empty data \
                 directory to join this one",
                record.id, meta.cluster_id
            )));
        }
        if registration_changes(&meta, &record)? {
            let outcome = self
                .group
                .propose(Command::RegisterWorker(record.clone()))
                .await?;
            if let Some(reason) = outcome.refused {
                return Err(Error::InvalidArgument(reason));
            }
        }
        // Leadership was confirmed above (and any proposal since committed in this term).
        let mut view = self.view_as_applied().await?;
        let Some(state) = view.state.as_mut() else {
            return Err(Error::Internal(
                "no leader view after confirming leadership".into(),
            ));
        };
        state.registered(&record.id, Instant::now(), self.clock.now_micros() / 1000);
        tracing::info!(worker = %record.id, role = %record.role, address = %record.address, "worker registered");
        Ok(RegisterReply {
            cluster_id: state.cluster_id.clone(),
            shard_map_version: state.shard_map.version,
            heartbeat_interval: self.heartbeat_interval,
            epoch: state.generation.epoch,
        })
    }

    /// Records a heartbeat and the problem it reports (`None`: none).
    pub async fn heartbeat(
        &self,
        id: &str,
        status: Option<RoleStatus>,
        problem: Option<String>,
    ) -> Result<HeartbeatReply, Error> {
        let mut view = self.leading_view().await?;
        let Some(state) = view.state.as_mut() else {
            return Err(Error::Internal(
                "no leader view after confirming leadership".into(),
            ));
        };
        state.heartbeat(id, status, problem, Instant::now())
    }

    /// Runs `f` on the leader's view and the current time.
    pub async fn view<R>(&self, f: impl FnOnce(&ClusterState, Instant) -> R) -> Result<R, Error> {
        let view = self.leading_view().await?;
        let Some(state) = view.state.as_ref() else {
            return Err(Error::Internal(
                "no leader view after confirming leadership".into(),
            ));
        };
        Ok(f(state, Instant::now()))
    }

    /// Excludes the storage servers registered at `addresses` (or includes them again) and
    /// says what each still holds. An address no storage server registered at is refused.
    pub async fn exclude(
        &self,
        addresses: &[String],
        exclude: bool,
    ) -> Result<Vec<super::distributor::Exclusion>, Error> {
        let ids = self
            .view(|state, _| super::distributor::storage_ids_at(state, addresses))
            .await??;
        self.propose_checked(Command::SetExcluded {
            ids: ids.clone(),
            excluded: exclude,
        })
        .await?;
        self.view(|state, _| super::distributor::exclusions(state, &ids))
            .await
    }

    /// Proposes `command` and fails with its refusal if the state refused it.
    pub async fn propose_checked(&self, command: Command) -> Result<(), Error> {
        let outcome = self.group.propose(command).await?;
        match outcome.refused {
            Some(reason) => Err(Error::InvalidArgument(reason)),
            None => Ok(()),
        }
    }

    /// Changes what the leader's view says about the recovery (nothing when not leading).
    pub async fn update_recovery(&self, f: impl FnOnce(&mut super::recovery::RecoveryProgress)) {
        let mut view = self.view.lock().await;
        if let Some(state) = view.state.as_mut() {
            f(&mut state.recovery);
        }
    }

    /// How often workers heartbeat.
    pub fn heartbeat_interval(&self) -> Duration {
        self.heartbeat_interval
    }

    /// Logs every worker whose health changed since the last call (while leading).
    pub async fn log_health_changes(&self) {
        if !self.group.believes_it_leads() {
            return;
        }
        let term = self.group.term();
        let mut view = self.view.lock().await;
        if view.term != term {
            return;
        }
        let Some(state) = view.state.as_mut() else {
            return;
        };
        for (w, reason) in state.membership.health_changes(Instant::now()) {
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
}

/// Runs blocking file I/O off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    crate::exec::blocking("the metadata I/O task", f).await?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::group::RaftTimings;
    use crate::controller::membership::Role;
    use std::sync::Arc;

    fn config(dir: &std::path::Path) -> ControllerConfig {
        ControllerConfig {
            listen: ([127, 0, 0, 1], 4999).into(),
            advertise: None,
            data_dir: dir.to_path_buf(),
            peers: vec![],
            join_only: false,
            raft: RaftTimings::default(),
            peer_source_ip: None,
            storage_servers: 2,
            replication: 2,
            log_replication: 2,
            heartbeat_interval: Duration::from_millis(100),
            missed_heartbeats: 3,
            max_connections: None,
            storage_failure_timeout: Duration::from_secs(30),
            max_shard_bytes: None,
            max_shard_write_bytes_per_second: 1_000_000,
        }
    }

    fn rec(id: &str) -> WorkerRecord {
        WorkerRecord {
            id: id.into(),
            role: Role::Storage,
            address: format!("{id}:1"),
        }
    }

    /// A group of one, formed and with its cluster created.
    async fn started(config: &ControllerConfig) -> Arc<Controller> {
        let c = Arc::new(Controller::open(config).await.unwrap());
        c.form_or_join().await;
        let creator = tokio::spawn({
            let c = c.clone();
            async move { c.create_cluster_when_leading().await }
        });
        for _ in 0..200 {
            if c.group().cluster().is_some() {
                creator.abort();
                let _ = creator.await;
                return c;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the cluster was not created");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn identity_and_shard_map_survive_reopen_and_flags_cannot_change_them() {
        let dir = tempfile::tempdir().unwrap();
        let c = started(&config(dir.path())).await;
        let first = c.register(rec("a"), "").await.unwrap();
        let second = c.register(rec("b"), &first.cluster_id).await.unwrap();
        let err = c.register(rec("c"), "another-cluster").await.unwrap_err();
        assert!(
            err.to_string()
                .contains("belongs to cluster another-cluster"),
            "{err}"
        );
        assert_eq!(
            c.view(|s, _| s.membership.workers().len()).await.unwrap(),
            2
        );
        assert_eq!(first.cluster_id, second.cluster_id);
        assert_eq!((first.shard_map_version, second.shard_map_version), (0, 1));
        // Registering a coordinator begins no generation: recoveries do.
        let record = WorkerRecord {
            id: "coord".into(),
            role: Role::Coordinator,
            address: "coord:1".into(),
        };
        assert_eq!(c.register(record, "").await.unwrap().epoch, 0);
        let map = c.view(|s, _| s.shard_map.clone()).await.unwrap();
        c.group().shutdown().await;
        drop(c);

        let changed = ControllerConfig {
            storage_servers: 3,
            ..config(dir.path())
        };
        let c = started(&changed).await;
        let (id, again, expected) = c
            .view(|s, _| {
                (
                    s.cluster_id.clone(),
                    s.shard_map.clone(),
                    s.expected_storage_servers,
                )
            })
            .await
            .unwrap();
        assert_eq!((id, again, expected), (first.cluster_id, map, 2));
        c.group().shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_single_controllers_metadata_file_is_imported() {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<String> = vec!["ss-0".into(), "ss-1".into()];
        let meta = Metadata {
            cluster_id: "feedface".into(),
            expected_storage_servers: 2,
            replication: 2,
            shard_map: ShardMap::bootstrap(&ids, 2, 4).unwrap(),
            workers: ids
                .iter()
                .map(|id| WorkerRecord {
                    id: id.clone(),
                    role: Role::Storage,
                    address: format!("{id}:1"),
                })
                .collect(),
            generation: Default::default(),
            recovering_epoch: 0,
            log_replication: 2,
            excluded: vec![],
        };
        metadata::store(&ferrisdb_storage::vfs::OsFs, dir.path(), &meta).unwrap();
        let c = started(&config(dir.path())).await;
        let back = c.view(|s, _| s.metadata()).await.unwrap();
        assert_eq!(back, meta);
        c.group().shutdown().await;
    }

    #[tokio::test]
    async fn corrupt_raft_state_fails_open_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path()
                .join(crate::controller::raft::journal::JOURNAL_FILE),
            b"garbage that is long enough",
        )
        .unwrap();
        let err = Controller::open(&config(dir.path())).await.unwrap_err();
        assert!(err.to_string().contains("raft-journal"), "{err}");
    }
}
