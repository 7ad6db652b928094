//! Membership and failure detection: the workers that registered, their addresses, roles,
//! latest status and when they were last heard from.
//!
//! A worker is healthy while it was heard from (registration or heartbeat) within
//! `heartbeat_interval × missed_heartbeats`. Workers known only from the metadata file of a
//! previous controller process are unhealthy until they heartbeat again. Time is passed in
//! explicitly so the rules are testable without sleeping.

use std::time::{Duration, Instant};

use ferrisdb_core::{Error, Version};
use serde::{Deserialize, Serialize};

/// Longest accepted worker id.
pub const MAX_WORKER_ID_LEN: usize = 128;
/// Longest accepted advertised address.
pub const MAX_ADDRESS_LEN: usize = 256;

/// What a worker process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A storage server.
    Storage,
    /// The transaction coordinator.
    Coordinator,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Storage => "storage",
            Role::Coordinator => "coordinator",
        })
    }
}

/// A storage server's reported status.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StorageStatus {
    /// Newest applied version.
    pub applied_version: Version,
    /// Newest durable version.
    pub durable_version: Version,
    /// Bytes of data held.
    pub data_bytes: u64,
}

/// The coordinator's reported status.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CoordinatorStatus {
    /// Newest committed version.
    pub committed_version: Version,
    /// Recent commit rate.
    pub commits_per_second: f64,
    /// Average transactions per commit batch.
    pub avg_batch_size: f64,
    /// Bytes in the commit log.
    pub log_bytes: u64,
    /// Transactions committed since the coordinator started.
    pub commits_total: u64,
    /// Commit batches since the coordinator started.
    pub batches_total: u64,
    /// Commit-log fdatasyncs since the coordinator started.
    pub log_fsyncs_total: u64,
}

/// The role-specific status a worker reports with its heartbeats.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RoleStatus {
    /// From a storage server.
    Storage(StorageStatus),
    /// From the coordinator.
    Coordinator(CoordinatorStatus),
}

impl RoleStatus {
    /// The role this status belongs to.
    pub fn role(&self) -> Role {
        match self {
            RoleStatus::Storage(_) => Role::Storage,
            RoleStatus::Coordinator(_) => Role::Coordinator,
        }
    }
}

/// The persisted identity of a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRecord {
    /// Stable id the worker keeps in its data directory.
    pub id: String,
    /// Its role.
    pub role: Role,
    /// Where it serves gRPC (`host:port`).
    pub address: String,
}

/// A known worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Worker {
    /// Identity and address.
    pub record: WorkerRecord,
    /// When it last registered with this controller process (Unix ms).
    pub registered_at_unix_ms: Option<u64>,
    /// When it was last heard from by this controller process.
    pub last_seen: Option<Instant>,
    /// The latest status it reported.
    pub status: Option<RoleStatus>,
    /// The health last logged, to log transitions once.
    pub logged_healthy: bool,
}

/// Failure-detection settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    /// How often workers heartbeat.
    pub heartbeat_interval: Duration,
    /// Intervals without a heartbeat after which a worker is unhealthy.
    pub missed_heartbeats: u32,
}

impl Liveness {
    /// How long a worker may stay silent and still be healthy.
    pub fn timeout(&self) -> Duration {
        self.heartbeat_interval
            .saturating_mul(self.missed_heartbeats)
    }
}

/// The set of known workers, in first-registration order.
#[derive(Debug, Clone)]
pub struct Membership {
    workers: Vec<Worker>,
    liveness: Liveness,
    /// When this controller process started (ages of never-seen workers count from here).
    started: Instant,
}

impl Membership {
    /// Membership of a controller starting at `started` that knows `records` from disk.
    pub fn new(records: Vec<WorkerRecord>, liveness: Liveness, started: Instant) -> Self {
        let workers = records
            .into_iter()
            .map(|record| Worker {
                record,
                registered_at_unix_ms: None,
                last_seen: None,
                status: None,
                logged_healthy: false,
            })
            .collect();
        Membership {
            workers,
            liveness,
            started,
        }
    }

    /// Registers a worker or refreshes it (a new address replaces the old one).
    /// Fails on a malformed id or address, or if the id is known with another role.
    pub fn register(
        &mut self,
        record: WorkerRecord,
        now: Instant,
        now_unix_ms: u64,
    ) -> Result<(), Error> {
        check_id(&record.id)?;
        check_address(&record.address)?;
        match self.workers.iter_mut().find(|w| w.record.id == record.id) {
            Some(w) if w.record.role != record.role => Err(Error::InvalidArgument(format!(
                "worker {:?} is registered as {}, not {}",
                record.id, w.record.role, record.role
            ))),
            Some(w) => {
                w.record.address = record.address;
                w.registered_at_unix_ms = Some(now_unix_ms);
                w.last_seen = Some(now);
                Ok(())
            }
            None => {
                self.workers.push(Worker {
                    record,
                    registered_at_unix_ms: Some(now_unix_ms),
                    last_seen: Some(now),
                    status: None,
                    logged_healthy: false,
                });
                Ok(())
            }
        }
    }

    /// Records a heartbeat. Returns `Ok(false)` if the worker is unknown (it must register);
    /// fails for an id registration would refuse, or a status of another role.
    pub fn heartbeat(
        &mut self,
        id: &str,
        status: Option<RoleStatus>,
        now: Instant,
    ) -> Result<bool, Error> {
        check_id(id)?;
        let Some(w) = self.workers.iter_mut().find(|w| w.record.id == id) else {
            return Ok(false);
        };
        if let Some(s) = status {
            if s.role() != w.record.role {
                return Err(Error::InvalidArgument(format!(
                    "worker {id:?} is a {} but reported {} status",
                    w.record.role,
                    s.role()
                )));
            }
            w.status = Some(s);
        }
        w.last_seen = Some(now);
        Ok(true)
    }

    /// True if `w` was heard from within the liveness timeout.
    pub fn is_healthy(&self, w: &Worker, now: Instant) -> bool {
        w.last_seen
            .is_some_and(|t| now.saturating_duration_since(t) <= self.liveness.timeout())
    }

    /// Time since `w` was last heard from (since controller start if never).
    pub fn silence(&self, w: &Worker, now: Instant) -> Duration {
        now.saturating_duration_since(w.last_seen.unwrap_or(self.started))
    }

    /// Every known worker, in first-registration order.
    pub fn workers(&self) -> &[Worker] {
        &self.workers
    }

    /// The persisted identities, in first-registration order.
    pub fn records(&self) -> Vec<WorkerRecord> {
        self.workers.iter().map(|w| w.record.clone()).collect()
    }

    /// Ids of the storage workers, in first-registration order.
    pub fn storage_ids(&self) -> Vec<String> {
        self.workers
            .iter()
            .filter(|w| w.record.role == Role::Storage)
            .map(|w| w.record.id.clone())
            .collect()
    }

    /// The failure-detection settings.
    pub fn liveness(&self) -> Liveness {
        self.liveness
    }

    /// Workers whose health changed since the last call, with their new health.
    pub fn health_changes(&mut self, now: Instant) -> Vec<(WorkerRecord, bool)> {
        let timeout = self.liveness.timeout();
        let mut changes = Vec::new();
        for w in &mut self.workers {
            let healthy = w
                .last_seen
                .is_some_and(|t| now.saturating_duration_since(t) <= timeout);
            if healthy != w.logged_healthy {
                w.logged_healthy = healthy;
                changes.push((w.record.clone(), healthy));
            }
        }
        changes
    }
}

fn check_id(id: &str) -> Result<(), Error> {
    if id.is_empty() || id.len() > MAX_WORKER_ID_LEN || id.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(format!(
            "worker id must be 1..={MAX_WORKER_ID_LEN} printable characters, got {id:?}"
        )));
    }
    Ok(())
}

fn check_address(address: &str) -> Result<(), Error> {
    let port_ok = address
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !port_ok || address.len() > MAX_ADDRESS_LEN || address.chars().any(char::is_whitespace) {
        return Err(Error::InvalidArgument(format!(
            "worker address must be host:port, got {address:?}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVENESS: Liveness = Liveness {
        heartbeat_interval: Duration::from_millis(100),
        missed_heartbeats: 3,
    };

    fn rec(id: &str, role: Role, address: &str) -> WorkerRecord {
        WorkerRecord {
            id: id.into(),
            role,
            address: address.into(),
        }
    }

    #[test]
    fn register_heartbeat_and_failure_detection() {
        let t0 = Instant::now();
        let mut m = Membership::new(vec![], LIVENESS, t0);
        m.register(rec("s1", Role::Storage, "127.0.0.1:1"), t0, 5)
            .unwrap();
        let w = &m.workers()[0];
        assert!(m.is_healthy(w, t0 + Duration::from_millis(300)));
        assert!(!m.is_healthy(w, t0 + Duration::from_millis(301)));
        let status = RoleStatus::Storage(StorageStatus {
            data_bytes: 7,
            ..Default::default()
        });
        let t1 = t0 + Duration::from_millis(250);
        assert!(m.heartbeat("s1", Some(status), t1).unwrap());
        let w = &m.workers()[0];
        assert!(m.is_healthy(w, t1 + Duration::from_millis(300)));
        assert_eq!(w.status, Some(status));
        assert_eq!(
            m.silence(w, t1 + Duration::from_millis(40)),
            Duration::from_millis(40)
        );
        assert!(!m.heartbeat("nobody", None, t1).unwrap());
    }

    #[test]
    fn reregistration_updates_address_and_rejects_role_change() {
        let t0 = Instant::now();
        let mut m = Membership::new(vec![], LIVENESS, t0);
        m.register(rec("s1", Role::Storage, "h:1"), t0, 1).unwrap();
        m.register(rec("s1", Role::Storage, "h:2"), t0, 2).unwrap();
        assert_eq!(m.records(), vec![rec("s1", Role::Storage, "h:2")]);
        let err = m
            .register(rec("s1", Role::Coordinator, "h:2"), t0, 3)
            .unwrap_err();
        assert!(err.to_string().contains("registered as storage"), "{err}");
        let coord = RoleStatus::Coordinator(CoordinatorStatus::default());
        assert!(m.heartbeat("s1", Some(coord), t0).is_err());
    }

    #[test]
    fn rejects_bad_ids_and_addresses() {
        let t0 = Instant::now();
        let mut m = Membership::new(vec![], LIVENESS, t0);
        for (id, addr) in [
            ("", "h:1"),
            ("a\nb", "h:1"),
            ("ok", "nohost"),
            ("ok", ":1"),
            ("ok", "h:0"),
            ("ok", "h:x"),
        ] {
            assert!(
                m.register(rec(id, Role::Storage, addr), t0, 0).is_err(),
                "{id:?} {addr:?}"
            );
        }
        let long = "x".repeat(MAX_WORKER_ID_LEN + 1);
        assert!(m.register(rec(&long, Role::Storage, "h:1"), t0, 0).is_err());
        assert!(
            m.register(rec("ok", Role::Storage, "[::1]:4501"), t0, 0)
                .is_ok()
        );
    }

    #[test]
    fn workers_from_disk_are_unhealthy_until_heard_from() {
        let t0 = Instant::now();
        let mut m = Membership::new(vec![rec("s1", Role::Storage, "h:1")], LIVENESS, t0);
        assert!(!m.is_healthy(&m.workers()[0], t0));
        assert!(m.health_changes(t0).is_empty());
        m.heartbeat("s1", None, t0).unwrap();
        assert_eq!(m.health_changes(t0).len(), 1);
        assert!(m.health_changes(t0).is_empty());
        let later = t0 + Duration::from_secs(1);
        assert_eq!(
            m.health_changes(later),
            vec![(rec("s1", Role::Storage, "h:1"), false)]
        );
        assert_eq!(m.storage_ids(), vec!["s1".to_string()]);
    }
}
