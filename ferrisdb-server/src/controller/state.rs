//! The controller's state: the replicated cluster state's rules ([`apply_command`]: worker
//! registration and the bootstrap rule, applied identically on every replica) and the
//! leader's view ([`ClusterState`]), which adds what is not replicated: when each worker was
//! last heard from and what it reported. Pure and synchronous.

use tokio::time::Instant;

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
    /// The transaction system's current generation.
    pub epoch: u64,
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
        Command::NewGeneration { .. } => Ok(()),
        Command::BeginRecovery { epoch } => {
            let meta = created(cluster)?;
            let newest = meta.recovering_epoch.max(meta.generation.epoch);
            let next = newest.checked_add(1).ok_or_else(|| {
                Error::Internal("the transaction system's generation number is exhausted".into())
            })?;
            if epoch != next {
                return Err(Error::InvalidArgument(format!(
                    "a recovery cannot take epoch {epoch}: epoch {newest} already began, the \
                     next one is {next}"
                )));
            }
            meta.recovering_epoch = epoch;
            Ok(())
        }
        Command::CompleteRecovery {
            generation,
            forget_logs,
        } => {
            let meta = created(cluster)?;
            check_generation(meta, &generation)?;
            // The coordinators it did not recruit, and the unreachable log servers outside it,
            // are forgotten rather than listed as unhealthy for ever (one that comes back
            // registers again: a standby).
            meta.workers.retain(|w| match w.role {
                Role::Coordinator => w.id == generation.coordinator_id,
                Role::Log => generation.logs.contains(&w.id) || !forget_logs.contains(&w.id),
                Role::Storage | Role::Gateway => true,
            });
            meta.generation = generation;
            Ok(())
        }
        Command::SetExcluded { ids, excluded } => {
            let meta = created(cluster)?;
            if let Some(unknown) = ids.iter().find(|id| {
                !meta
                    .workers
                    .iter()
                    .any(|w| w.id == **id && w.role == Role::Storage)
            }) {
                return Err(Error::InvalidArgument(format!(
                    "{unknown:?} is not a registered storage server"
                )));
            }
            meta.excluded.retain(|id| !ids.contains(id));
            if excluded {
                meta.excluded.extend(ids);
                meta.excluded.sort();
            }
            Ok(())
        }
        Command::UpdateShardMap { based_on, shards } => {
            let meta = created(cluster)?;
            let next = checked_shard_map(meta, based_on, &shards)?;
            meta.shard_map = next;
            Ok(())
        }
    }
}

/// The shard map an `UpdateShardMap` over `based_on` would install: refused unless the
/// current map is at that version, the new one keeps the map's invariants, and every server
/// it names is a registered storage server.
fn checked_shard_map(
    meta: &Metadata,
    based_on: u64,
    records: &[super::metadata::ShardRecord],
) -> Result<ShardMap, Error> {
    if meta.shard_map.version != based_on || !meta.shard_map.is_bootstrapped() {
        return Err(Error::InvalidArgument(format!(
            "the shard-map change was computed from version {based_on}, but the map is at \
             version {}",
            meta.shard_map.version
        )));
    }
    let version = based_on
        .checked_add(1)
        .ok_or_else(|| Error::Internal("the shard-map version is exhausted".into()))?;
    let map = ShardMap {
        version,
        shards: super::metadata::shards_from_records(records)?,
    };
    map.validate()
        .map_err(|e| Error::InvalidArgument(format!("bad shard map: {e}")))?;
    let is_storage = |id: &String| {
        meta.workers
            .iter()
            .any(|w| w.id == *id && w.role == Role::Storage)
    };
    if let Some(unknown) = map
        .shards
        .iter()
        .flat_map(|s| s.storage_ids.iter().chain(&s.moving_to))
        .find(|id| !is_storage(id))
    {
        return Err(Error::InvalidArgument(format!(
            "{unknown:?} is not a registered storage server"
        )));
    }
    Ok(map)
}

fn created(cluster: &mut Option<Metadata>) -> Result<&mut Metadata, Error> {
    cluster
        .as_mut()
        .ok_or_else(|| Error::Unavailable("the cluster has not been created yet".into()))
}

/// A finished recovery's generation may replace the current one only if it is the newest
/// recovery begun, newer than the current generation, served by the registered coordinator
/// and by `log_replication` distinct registered log servers, and starts after its recovery
/// version.
fn check_generation(meta: &Metadata, g: &Generation) -> Result<(), Error> {
    if g.epoch != meta.recovering_epoch || g.epoch <= meta.generation.epoch {
        return Err(Error::InvalidArgument(format!(
            "generation {} is not the newest recovery (epoch {} began; generation {} serves)",
            g.epoch, meta.recovering_epoch, meta.generation.epoch
        )));
    }
    let has = |id: &str, role: Role| meta.workers.iter().any(|w| w.id == id && w.role == role);
    if !has(&g.coordinator_id, Role::Coordinator) {
        return Err(Error::InvalidArgument(format!(
            "{:?} is not the registered coordinator",
            g.coordinator_id
        )));
    }
    let distinct: std::collections::BTreeSet<&String> = g.logs.iter().collect();
    if g.logs.is_empty() || distinct.len() != g.logs.len() {
        return Err(Error::InvalidArgument(format!(
            "a generation needs distinct log servers, got {:?}",
            g.logs
        )));
    }
    if let Some(unknown) = g.logs.iter().find(|id| !has(id, Role::Log)) {
        return Err(Error::InvalidArgument(format!(
            "{unknown:?} is not a registered log server"
        )));
    }
    if g.start_version <= g.recovery_version {
        return Err(Error::InvalidArgument(format!(
            "generation {} starts at {}, not after its recovery version {}",
            g.epoch, g.start_version, g.recovery_version
        )));
    }
    Ok(())
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
    // Coordinators other than the generation's stand by: a recovery may recruit one.
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
    /// The newest epoch a recovery began.
    pub recovering_epoch: u64,
    /// Log servers per generation.
    pub log_replication: u32,
    /// Storage servers excluded by an operator.
    pub excluded: Vec<String>,
    /// What this leader's recovery of the transaction system is doing (not replicated).
    pub recovery: super::recovery::RecoveryProgress,
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
            recovering_epoch: 0,
            log_replication: 0,
            excluded: Vec::new(),
            recovery: Default::default(),
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
            recovering_epoch: self.recovering_epoch,
            log_replication: self.log_replication,
            excluded: self.excluded.clone(),
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
        self.recovering_epoch = meta.recovering_epoch;
        self.log_replication = meta.log_replication;
        self.excluded = meta.excluded.clone();
        self.membership.adopt_records(&meta.workers);
        // The generation's coordinator while it is registered, else the newest one.
        self.coordinator_id = meta
            .workers
            .iter()
            .find(|w| w.role == Role::Coordinator && w.id == meta.generation.coordinator_id)
            .or_else(|| {
                meta.workers
                    .iter()
                    .rev()
                    .find(|w| w.role == Role::Coordinator)
            })
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
            epoch: self.generation.epoch,
            must_register: !known,
        })
    }

    /// The coordinator: the generation's while it is registered, else the one registered
    /// last (`None` if none is).
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
            recovering_epoch: 0,
            log_replication: 2,
            excluded: vec![],
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
                epoch: 0,
                must_register: false
            }
        );
        assert!(view.heartbeat("zz", None, None, now).unwrap().must_register);
    }

    #[test]
    fn coordinators_stand_by_until_a_recovery_recruits_one_and_forgets_the_others() {
        let mut c = Some(fresh());
        register(&mut c, "coord-1", Role::Coordinator).unwrap();
        register(&mut c, "a", Role::Storage).unwrap();
        register(&mut c, "la", Role::Log).unwrap();
        register(&mut c, "coord-2", Role::Coordinator).unwrap();
        let meta = c.clone().unwrap();
        let ids: Vec<_> = meta.workers.iter().map(|w| w.id.as_str()).collect();
        assert_eq!(ids, ["coord-1", "a", "la", "coord-2"]);
        let now = Instant::now();
        let view = ClusterState::from_metadata(meta, liveness(), now);
        assert_eq!(
            view.coordinator().unwrap().record.id,
            "coord-2",
            "no generation yet: the newest"
        );
        apply_command(&mut c, Command::BeginRecovery { epoch: 1 }).unwrap();
        apply_command(
            &mut c,
            Command::CompleteRecovery {
                generation: Generation {
                    coordinator_id: "coord-1".into(),
                    ..generation(1, &["la"])
                },
                forget_logs: vec![],
            },
        )
        .unwrap();
        let meta = c.clone().unwrap();
        let ids: Vec<_> = meta.workers.iter().map(|w| w.id.as_str()).collect();
        assert_eq!(
            ids,
            ["coord-1", "a", "la"],
            "the other coordinator is forgotten"
        );
        // It comes back: a standby; the generation's coordinator stays the coordinator.
        register(&mut c, "coord-2", Role::Coordinator).unwrap();
        let mut view = ClusterState::from_metadata(c.unwrap(), liveness(), now);
        assert_eq!(view.coordinator().unwrap().record.id, "coord-1");
        assert!(
            !view
                .heartbeat("coord-2", None, None, now)
                .unwrap()
                .must_register
        );
    }

    #[test]
    fn a_recovery_forgets_the_unreachable_log_servers_it_did_not_recruit() {
        let mut c = Some(fresh());
        register(&mut c, "coord", Role::Coordinator).unwrap();
        for id in ["la", "lb", "lc", "ld"] {
            register(&mut c, id, Role::Log).unwrap();
        }
        apply_command(&mut c, Command::BeginRecovery { epoch: 1 }).unwrap();
        apply_command(
            &mut c,
            Command::CompleteRecovery {
                generation: generation(1, &["la", "lb"]),
                // "lb" is in the generation: never forgotten by this list.
                forget_logs: vec!["lb".into(), "lc".into()],
            },
        )
        .unwrap();
        let ids: Vec<_> = c.unwrap().workers.iter().map(|w| w.id.clone()).collect();
        assert_eq!(ids, ["coord", "la", "lb", "ld"]);
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

    fn generation(epoch: u64, logs: &[&str]) -> Generation {
        Generation {
            epoch,
            coordinator_id: "coord".into(),
            logs: logs.iter().map(|l| l.to_string()).collect(),
            recovery_version: 100,
            start_version: 5_000_100,
        }
    }

    #[test]
    fn recoveries_take_each_epoch_once_and_only_the_newest_completes() {
        let mut c = Some(fresh());
        let begin =
            |c: &mut Option<Metadata>, epoch| apply_command(c, Command::BeginRecovery { epoch });
        let complete = |c: &mut Option<Metadata>, g: Generation| {
            apply_command(
                c,
                Command::CompleteRecovery {
                    generation: g,
                    forget_logs: vec![],
                },
            )
        };
        register(&mut c, "coord", Role::Coordinator).unwrap();
        register(&mut c, "la", Role::Log).unwrap();
        register(&mut c, "lb", Role::Log).unwrap();
        register(&mut c, "s", Role::Storage).unwrap();
        assert!(begin(&mut c, 2).is_err(), "epochs are not skipped");
        begin(&mut c, 1).unwrap();
        assert!(begin(&mut c, 1).is_err(), "an epoch is taken once");
        begin(&mut c, 2).unwrap();
        let err = complete(&mut c, generation(1, &["la", "lb"])).unwrap_err();
        assert!(err.to_string().contains("not the newest"), "{err}");
        for (bad, why) in [
            (generation(2, &[]), "distinct log servers"),
            (generation(2, &["la", "la"]), "distinct log servers"),
            (generation(2, &["la", "s"]), "not a registered log server"),
            (
                Generation {
                    coordinator_id: "s".into(),
                    ..generation(2, &["la"])
                },
                "not the registered coordinator",
            ),
            (
                Generation {
                    start_version: 100,
                    ..generation(2, &["la"])
                },
                "not after its recovery version",
            ),
        ] {
            let before = c.clone();
            let err = complete(&mut c, bad).unwrap_err();
            assert!(err.to_string().contains(why), "{err}");
            assert_eq!(c, before, "a refused command changes nothing");
        }
        complete(&mut c, generation(2, &["la", "lb"])).unwrap();
        let meta = c.clone().unwrap();
        assert_eq!(meta.generation, generation(2, &["la", "lb"]));
        assert!(
            complete(&mut c, generation(2, &["la"])).is_err(),
            "a generation completes once"
        );
        assert!(begin(&mut c, 2).is_err());
        begin(&mut c, 3).unwrap();
        // A legacy command replayed from an old journal changes nothing.
        let before = c.clone();
        apply_command(
            &mut c,
            Command::NewGeneration {
                coordinator_id: "coord".into(),
                incarnation: "x".into(),
            },
        )
        .unwrap();
        assert_eq!(c, before);
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
