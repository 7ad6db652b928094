//! The controller's state machine: cluster identity, membership and the shard map, with the
//! bootstrap rule. Pure and synchronous; [`super::Controller`] adds locking and persistence.

use std::time::Instant;

use ferrisdb_core::Error;

use super::membership::{Liveness, Membership, RoleStatus, WorkerRecord};
use super::metadata::Metadata;
use super::shard_map::ShardMap;

/// What a heartbeat tells the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatReply {
    /// The current shard-map version.
    pub shard_map_version: u64,
    /// The controller does not know the worker: it must register again.
    pub must_register: bool,
}

/// The cluster as the controller knows it.
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
    /// Id of the registered coordinator (the most recent one to register).
    coordinator_id: Option<String>,
}

impl ClusterState {
    /// State rebuilt from persisted metadata by a controller starting at `started`.
    pub fn from_metadata(meta: Metadata, liveness: Liveness, started: Instant) -> Self {
        let coordinator_id = meta
            .workers
            .iter()
            .rev()
            .find(|w| w.role == super::membership::Role::Coordinator)
            .map(|w| w.id.clone());
        ClusterState {
            cluster_id: meta.cluster_id,
            expected_storage_servers: meta.expected_storage_servers,
            replication: meta.replication,
            shard_map: meta.shard_map,
            membership: Membership::new(meta.workers, liveness, started),
            coordinator_id,
        }
    }

    /// What must be persisted.
    pub fn metadata(&self) -> Metadata {
        Metadata {
            cluster_id: self.cluster_id.clone(),
            expected_storage_servers: self.expected_storage_servers,
            replication: self.replication,
            shard_map: self.shard_map.clone(),
            workers: self.membership.records(),
        }
    }

    /// Registers a worker; bootstraps the shard map once enough storage servers registered.
    pub fn register(
        &mut self,
        record: WorkerRecord,
        now: Instant,
        now_unix_ms: u64,
    ) -> Result<(), Error> {
        let is_coordinator = record.role == super::membership::Role::Coordinator;
        let id = record.id.clone();
        self.membership.register(record, now, now_unix_ms)?;
        if is_coordinator {
            // One coordinator serves the cluster: one registering under a new id (a
            // replacement, e.g. on a fresh data directory) takes over from the old one, which
            // is forgotten rather than listed as unhealthy for ever.
            for old in self.membership.remove_other_coordinators(&id) {
                tracing::warn!(old = %old.id, old_address = %old.address, new = %id, "a new coordinator replaces the old one");
            }
            self.coordinator_id = Some(id);
        }
        self.maybe_bootstrap()
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

    /// Builds the first shard map once `expected_storage_servers` storage servers are known.
    /// Uses the first ones in registration order; does nothing once bootstrapped.
    fn maybe_bootstrap(&mut self) -> Result<(), Error> {
        if self.shard_map.is_bootstrapped() {
            return Ok(());
        }
        let mut ids = self.membership.storage_ids();
        let wanted = self.expected_storage_servers as usize;
        if ids.len() < wanted {
            return Ok(());
        }
        ids.truncate(wanted);
        // The version comes from the metadata file: a damaged one may hold any value.
        let version = self.shard_map.version.checked_add(1).ok_or_else(|| {
            Error::Internal(format!(
                "shard map version {} from the controller metadata cannot be incremented",
                self.shard_map.version
            ))
        })?;
        self.shard_map = ShardMap::bootstrap(&ids, self.replication as usize, version)?;
        tracing::info!(
            shards = self.shard_map.shards.len(),
            replication = self.replication,
            version = self.shard_map.version,
            "bootstrapped the shard map"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::membership::Role;
    use std::time::Duration;

    fn fresh() -> ClusterState {
        let meta = Metadata {
            cluster_id: "c1".into(),
            expected_storage_servers: 3,
            replication: 2,
            shard_map: ShardMap::default(),
            workers: vec![],
        };
        let liveness = Liveness {
            heartbeat_interval: Duration::from_millis(100),
            missed_heartbeats: 3,
        };
        ClusterState::from_metadata(meta, liveness, Instant::now())
    }

    fn rec(id: &str, role: Role) -> WorkerRecord {
        WorkerRecord {
            id: id.into(),
            role,
            address: format!("{id}:4500"),
        }
    }

    #[test]
    fn bootstraps_once_after_the_expected_storage_servers() {
        let mut s = fresh();
        let now = Instant::now();
        s.register(rec("coord", Role::Coordinator), now, 1).unwrap();
        s.register(rec("a", Role::Storage), now, 1).unwrap();
        s.register(rec("b", Role::Storage), now, 1).unwrap();
        assert!(!s.shard_map.is_bootstrapped());
        s.register(rec("c", Role::Storage), now, 1).unwrap();
        assert_eq!(s.shard_map.version, 1);
        assert_eq!(s.shard_map.shards.len(), 3);
        s.register(rec("d", Role::Storage), now, 1).unwrap();
        assert_eq!(
            s.shard_map.version, 1,
            "a late storage server does not reshard"
        );
        assert!(
            s.shard_map
                .shards
                .iter()
                .all(|sh| !sh.storage_ids.contains(&"d".into()))
        );
        assert_eq!(s.coordinator().unwrap().record.id, "coord");
        let reply = s.heartbeat("a", None, None, now).unwrap();
        assert_eq!(
            reply,
            HeartbeatReply {
                shard_map_version: 1,
                must_register: false
            }
        );
        assert!(s.heartbeat("zz", None, None, now).unwrap().must_register);
    }

    #[test]
    fn a_replacement_coordinator_removes_the_old_one_from_membership() {
        let mut s = fresh();
        let now = Instant::now();
        s.register(rec("coord-1", Role::Coordinator), now, 1)
            .unwrap();
        s.register(rec("a", Role::Storage), now, 1).unwrap();
        s.register(rec("coord-2", Role::Coordinator), now, 2)
            .unwrap();
        assert_eq!(s.coordinator().unwrap().record.id, "coord-2");
        let ids: Vec<_> = s.metadata().workers.into_iter().map(|w| w.id).collect();
        assert_eq!(ids, ["a", "coord-2"]);
        assert!(
            s.heartbeat("coord-1", None, None, now)
                .unwrap()
                .must_register
        );
    }

    #[test]
    fn an_exhausted_shard_map_version_fails_bootstrap_without_panicking() {
        // A damaged controller.json: not bootstrapped, version already at the maximum.
        let mut s = fresh();
        s.shard_map.version = u64::MAX;
        let now = Instant::now();
        s.register(rec("a", Role::Storage), now, 1).unwrap();
        s.register(rec("b", Role::Storage), now, 1).unwrap();
        let err = s.register(rec("c", Role::Storage), now, 1).unwrap_err();
        assert!(matches!(err, Error::Internal(_)), "{err:?}");
        assert!(!s.shard_map.is_bootstrapped());
        assert_eq!(s.shard_map.version, u64::MAX);
    }

    #[test]
    fn metadata_round_trip_keeps_identity_and_coordinator() {
        let mut s = fresh();
        let now = Instant::now();
        for id in ["a", "b", "c"] {
            s.register(rec(id, Role::Storage), now, 1).unwrap();
        }
        s.register(rec("coord", Role::Coordinator), now, 1).unwrap();
        let meta = s.metadata();
        let back = ClusterState::from_metadata(meta.clone(), s.membership.liveness(), now);
        assert_eq!(back.metadata(), meta);
        assert_eq!(back.coordinator().unwrap().record.id, "coord");
        assert!(!back.membership.is_healthy(back.coordinator().unwrap(), now));
    }
}
