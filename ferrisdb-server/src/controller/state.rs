//! The controller's state: the replicated cluster state's rules ([`apply_command`]: worker
//! registration and the bootstrap rule, applied identically on every replica) and the
//! leader's view ([`ClusterState`]), which adds what is not replicated: when each worker was
//! last heard from and what it reported. Pure and synchronous.

use std::time::Instant;

use ferrisdb_core::Error;

use super::membership::{self, Liveness, Membership, Role, RoleStatus, WorkerRecord};
use super::metadata::{Generation, Metadata};
use super::raft::Command;
use super::shard_map::ShardMap;

/// What a heartbeat tells the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatReply {
    /// The current shard-map version.
    pub shard_map_version: u64,
    /// The controller does not know the worker: it must register again.
    pub must_register: bool,
}

/// Applies a committed command to the replicated state. Deterministic: every replica reaches
/// the same state from the same commands. A refused command leaves the state unchanged.
pub fn apply_command(cluster: &mut Option<Metadata>, command: Command) -> Result<(), Error> {
    match command {
        Command::CreateCluster(meta) => {
            if cluster.is_none() {
                meta.validate()?;
                *cluster = Some(meta);
            }
            Ok(())
        }
        Command::RegisterWorker(record) => {
            let meta = cluster
                .as_mut()
                .ok_or_else(|| Error::Unavailable("the cluster has not been created yet".into()))?;
            let mut next = meta.clone();
            register_in(&mut next, record)?;
            *meta = next;
            Ok(())
        }
        Command::NewGeneration {
            coordinator_id,
            incarnation,
        } => {
            let meta = cluster
                .as_mut()
                .ok_or_else(|| Error::Unavailable("the cluster has not been created yet".into()))?;
            let registered = meta
                .workers
                .iter()
                .any(|w| w.role == Role::Coordinator && w.id == coordinator_id);
            if !registered {
                return Err(Error::InvalidArgument(format!(
                    "{coordinator_id:?} is not the registered coordinator"
                )));
            }
            if incarnation.is_empty() || meta.generation.coordinator_incarnation == incarnation {
                return Ok(());
            }
            let epoch = meta.generation.epoch.checked_add(1).ok_or_else(|| {
                Error::Internal("the transaction system's generation number is exhausted".into())
            })?;
            meta.generation = Generation {
                epoch,
                coordinator_incarnation: incarnation,
            };
            Ok(())
        }
    }
}

/// Whether registering `record` would change `meta`; fails as applying it would.
pub fn registration_changes(meta: &Metadata, record: &WorkerRecord) -> Result<bool, Error> {
    let mut next = meta.clone();
    register_in(&mut next, record.clone())?;
    Ok(next != *meta)
}

/// Registers a worker (a new address replaces the old one; a new coordinator replaces the
/// others) and bootstraps the shard map once enough storage servers are known.
fn register_in(meta: &mut Metadata, record: WorkerRecord) -> Result<(), Error> {
    membership::check_id(&record.id)?;
    membership::check_address(&record.address)?;
    match meta.workers.iter_mut().find(|w| w.id == record.id) {
        Some(w) if w.role != record.role => {
            return Err(Error::InvalidArgument(format!(
                "worker {:?} is registered as {}, not {}",
                record.id, w.role, record.role
            )));
        }
        Some(w) => w.address = record.address.clone(),
        None => meta.workers.push(record.clone()),
    }
    if record.role == Role::Coordinator {
        // One coordinator serves the cluster: one registering under a new id (a replacement,
        // e.g. on a fresh data directory) takes over from the old one, which is forgotten
        // rather than listed as unhealthy for ever.
        meta.workers
            .retain(|w| w.role != Role::Coordinator || w.id == record.id);
    }
    maybe_bootstrap(meta)
}

/// Builds the first shard map once `expected_storage_servers` storage servers are known.
/// Uses the first ones in registration order; does nothing once bootstrapped.
fn maybe_bootstrap(meta: &mut Metadata) -> Result<(), Error> {
    if meta.shard_map.is_bootstrapped() {
        return Ok(());
    }
    let mut ids: Vec<String> = meta
        .workers
        .iter()
        .filter(|w| w.role == Role::Storage)
        .map(|w| w.id.clone())
        .collect();
    let wanted = meta.expected_storage_servers as usize;
    if ids.len() < wanted {
        return Ok(());
    }
    ids.truncate(wanted);
    // The version may come from an imported metadata file: a damaged one may hold any value.
    let version = meta.shard_map.version.checked_add(1).ok_or_else(|| {
        Error::Internal(format!(
            "shard map version {} from the controller metadata cannot be incremented",
            meta.shard_map.version
        ))
    })?;
    meta.shard_map = ShardMap::bootstrap(&ids, meta.replication as usize, version)?;
    Ok(())
}

/// The cluster as the leader knows it: the replicated state plus each worker's liveness.
#[derive(Debug, Clone)]
pub struct ClusterState {
    /// The cluster's identity.
    pub cluster_id: String,
    /// Storage servers the cluster bootstraps with.
    pub expected_storage_servers: u32,
    /// Replicas per shard.
    pub replication: u32,
    /// The current shard map (empty until bootstrap).
    pub shard_map: ShardMap,
    /// Known workers and their liveness.
    pub membership: Membership,
    /// Id of the registered coordinator.
    coordinator_id: Option<String>,
    /// The transaction system's generation.
    pub generation: Generation,
}

impl ClusterState {
    /// The view of a leader that took office at `started` over replicated state `meta`: every
    /// worker is unhealthy until heard from.
    pub fn from_metadata(meta: Metadata, liveness: Liveness, started: Instant) -> Self {
        let mut state = ClusterState {
            cluster_id: String::new(),
            expected_storage_servers: 0,
            replication: 0,
            shard_map: ShardMap::default(),
            membership: Membership::new(Vec::new(), liveness, started),
            coordinator_id: None,
            generation: Generation::default(),
        };
        state.adopt(&meta);
        state
    }

    /// The replicated part.
    pub fn metadata(&self) -> Metadata {
        Metadata {
            cluster_id: self.cluster_id.clone(),
            expected_storage_servers: self.expected_storage_servers,
            replication: self.replication,
            shard_map: self.shard_map.clone(),
            workers: self.membership.records(),
            generation: self.generation.clone(),
        }
    }

    /// Takes the replicated state as it now is, keeping the liveness of workers still known.
    pub fn adopt(&mut self, meta: &Metadata) {
        if self.shard_map.version != meta.shard_map.version && meta.shard_map.is_bootstrapped() {
            tracing::info!(
                shards = meta.shard_map.shards.len(),
                replication = meta.replication,
                version = meta.shard_map.version,
                "shard map version {}",
                meta.shard_map.version
            );
        }
        self.cluster_id = meta.cluster_id.clone();
        self.expected_storage_servers = meta.expected_storage_servers;
        self.replication = meta.replication;
        self.shard_map = meta.shard_map.clone();
        self.generation = meta.generation.clone();
        self.membership.adopt_records(&meta.workers);
        self.coordinator_id = meta
            .workers
            .iter()
            .rev()
            .find(|w| w.role == Role::Coordinator)
            .map(|w| w.id.clone());
    }

    /// Records that worker `id` registered (its registration is in the replicated state).
    pub fn registered(&mut self, id: &str, now: Instant, now_unix_ms: u64) {
        self.membership.mark_registered(id, now, now_unix_ms);
    }

    /// Records a heartbeat and the problem it reports (`None`: none).
    pub fn heartbeat(
        &mut self,
        id: &str,
        status: Option<RoleStatus>,
        problem: Option<String>,
        now: Instant,
    ) -> Result<HeartbeatReply, Error> {
        let known = self.membership.heartbeat(id, status, problem, now)?;
        Ok(HeartbeatReply {
            shard_map_version: self.shard_map.version,
            must_register: !known,
        })
    }

    /// The registered coordinator, if any.
    pub fn coordinator(&self) -> Option<&super::membership::Worker> {
        let id = self.coordinator_id.as_deref()?;
        self.membership.workers().iter().find(|w| w.record.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn fresh() -> Metadata {
        Metadata {
            cluster_id: "c1".into(),
            expected_storage_servers: 3,
            replication: 2,
            shard_map: ShardMap::default(),
            workers: vec![],
            generation: Generation::default(),
        }
    }

    fn liveness() -> Liveness {
        Liveness {
            heartbeat_interval: Duration::from_millis(100),
            missed_heartbeats: 3,
        }
    }

    fn rec(id: &str, role: Role) -> WorkerRecord {
        WorkerRecord {
            id: id.into(),
            role,
            address: format!("{id}:4500"),
        }
    }

    fn register(cluster: &mut Option<Metadata>, id: &str, role: Role) -> Result<(), Error> {
        apply_command(cluster, Command::RegisterWorker(rec(id, role)))
    }

    #[test]
    fn bootstraps_once_after_the_expected_storage_servers() {
        let mut c = Some(fresh());
        register(&mut c, "coord", Role::Coordinator).unwrap();
        register(&mut c, "a", Role::Storage).unwrap();
        register(&mut c, "b", Role::Storage).unwrap();
        assert!(!c.as_ref().unwrap().shard_map.is_bootstrapped());
        register(&mut c, "c", Role::Storage).unwrap();
        let meta = c.clone().unwrap();
        assert_eq!(meta.shard_map.version, 1);
        assert_eq!(meta.shard_map.shards.len(), 3);
        register(&mut c, "d", Role::Storage).unwrap();
        let meta = c.clone().unwrap();
        assert_eq!(
            meta.shard_map.version, 1,
            "a late storage server does not reshard"
        );
        assert!(
            meta.shard_map
                .shards
                .iter()
                .all(|sh| !sh.storage_ids.contains(&"d".into()))
        );
        let now = Instant::now();
        let mut view = ClusterState::from_metadata(meta, liveness(), now);
        assert_eq!(view.coordinator().unwrap().record.id, "coord");
        let reply = view.heartbeat("a", None, None, now).unwrap();
        assert_eq!(
            reply,
            HeartbeatReply {
                shard_map_version: 1,
                must_register: false
            }
        );
        assert!(view.heartbeat("zz", None, None, now).unwrap().must_register);
    }

    #[test]
    fn a_replacement_coordinator_removes_the_old_one() {
        let mut c = Some(fresh());
        register(&mut c, "coord-1", Role::Coordinator).unwrap();
        register(&mut c, "a", Role::Storage).unwrap();
        register(&mut c, "coord-2", Role::Coordinator).unwrap();
        let meta = c.unwrap();
        let ids: Vec<_> = meta.workers.iter().map(|w| w.id.as_str()).collect();
        assert_eq!(ids, ["a", "coord-2"]);
        let now = Instant::now();
        let mut view = ClusterState::from_metadata(meta, liveness(), now);
        assert_eq!(view.coordinator().unwrap().record.id, "coord-2");
        assert!(
            view.heartbeat("coord-1", None, None, now)
                .unwrap()
                .must_register
        );
    }

    #[test]
    fn refused_commands_change_nothing() {
        let mut none = None;
        assert!(register(&mut none, "a", Role::Storage).is_err());
        assert!(none.is_none());
        let mut c = Some(fresh());
        register(&mut c, "a", Role::Storage).unwrap();
        let before = c.clone();
        let err = register(&mut c, "a", Role::Coordinator).unwrap_err();
        assert!(err.to_string().contains("registered as storage"), "{err}");
        assert!(register(&mut c, "bad id\n", Role::Storage).is_err());
        assert_eq!(c, before);
        // A second creation (a leader that had not seen the first) changes nothing.
        let other = Metadata {
            cluster_id: "c2".into(),
            ..fresh()
        };
        apply_command(&mut c, Command::CreateCluster(other)).unwrap();
        assert_eq!(c, before);
    }

    #[test]
    fn each_coordinator_incarnation_begins_a_generation_once() {
        let mut c = Some(fresh());
        let start = |c: &mut Option<Metadata>, id: &str, inc: &str| {
            apply_command(
                c,
                Command::NewGeneration {
                    coordinator_id: id.into(),
                    incarnation: inc.into(),
                },
            )
        };
        assert!(start(&mut c, "coord", "i1").is_err(), "not registered yet");
        register(&mut c, "coord", Role::Coordinator).unwrap();
        start(&mut c, "coord", "i1").unwrap();
        assert_eq!(c.as_ref().unwrap().generation.epoch, 1);
        start(&mut c, "coord", "i1").unwrap();
        assert_eq!(
            c.as_ref().unwrap().generation.epoch,
            1,
            "re-registration: same one"
        );
        start(&mut c, "coord", "i2").unwrap();
        assert_eq!(c.as_ref().unwrap().generation.epoch, 2, "a restart");
        register(&mut c, "coord-b", Role::Coordinator).unwrap();
        assert!(start(&mut c, "coord", "i3").is_err(), "the replaced one");
        start(&mut c, "coord-b", "j1").unwrap();
        let generation = c.unwrap().generation;
        assert_eq!(
            generation,
            Generation {
                epoch: 3,
                coordinator_incarnation: "j1".into()
            }
        );
    }

    #[test]
    fn an_exhausted_shard_map_version_fails_bootstrap_without_panicking() {
        // A damaged imported metadata file: not bootstrapped, version already at the maximum.
        let mut meta = fresh();
        meta.shard_map.version = u64::MAX;
        let mut c = Some(meta);
        register(&mut c, "a", Role::Storage).unwrap();
        register(&mut c, "b", Role::Storage).unwrap();
        let err = register(&mut c, "c", Role::Storage).unwrap_err();
        assert!(matches!(err, Error::Internal(_)), "{err:?}");
        let meta = c.unwrap();
        assert!(!meta.shard_map.is_bootstrapped());
        assert_eq!(meta.shard_map.version, u64::MAX);
        assert_eq!(
            meta.workers.len(),
            2,
            "the refused registration is not kept"
        );
    }

    #[test]
    fn a_new_leaders_view_keeps_identity_and_liveness_of_known_workers() {
        let mut c = Some(fresh());
        for id in ["a", "b", "c"] {
            register(&mut c, id, Role::Storage).unwrap();
        }
        register(&mut c, "coord", Role::Coordinator).unwrap();
        let meta = c.clone().unwrap();
        let now = Instant::now();
        let mut view = ClusterState::from_metadata(meta.clone(), liveness(), now);
        assert_eq!(view.metadata(), meta);
        assert!(!view.membership.is_healthy(view.coordinator().unwrap(), now));
        view.registered("coord", now, 1);
        assert!(view.membership.is_healthy(view.coordinator().unwrap(), now));
        register(&mut c, "d", Role::Storage).unwrap();
        view.adopt(c.as_ref().unwrap());
        assert!(view.membership.is_healthy(view.coordinator().unwrap(), now));
        assert_eq!(view.membership.workers().len(), 5);
        assert!(!registration_changes(c.as_ref().unwrap(), &rec("d", Role::Storage)).unwrap());
        assert!(registration_changes(c.as_ref().unwrap(), &rec("e", Role::Storage)).unwrap());
    }
}
