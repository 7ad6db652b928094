//! Membership and failure detection: the workers that registered, their addresses, roles,
//! latest status and when they were last heard from.
//!
//! A worker is healthy while it was heard from (registration or heartbeat) within
//! `heartbeat_interval × missed_heartbeats` and its last heartbeat reported no reason it cannot
//! do its job. Workers known only from the metadata file of a previous controller process are
//! unhealthy until they heartbeat again. Time is passed in explicitly so the rules are testable
//! without sleeping.

use std::time::Duration;

use tokio::time::Instant;

use ferrisdb_core::{Error, Version};
use serde::{Deserialize, Serialize};

/// Longest accepted worker id.
pub const MAX_WORKER_ID_LEN: usize = 128;
/// Longest accepted advertised address.
pub const MAX_ADDRESS_LEN: usize = 256;
/// Longest accepted unhealthy reason in a heartbeat.
pub const MAX_PROBLEM_LEN: usize = 4096;

/// What a worker process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A storage server.
    Storage,
    /// The transaction coordinator.
    Coordinator,
    /// A log server.
    Log,
    /// A gateway (the public APIs; holds nothing).
    Gateway,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Storage => "storage",
            Role::Coordinator => "coordinator",
            Role::Log => "log",
            Role::Gateway => "gateway",
        })
    }
}

/// A storage server's reported status.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StorageStatus {
    /// Newest applied version.
    pub applied_version: Version,
    /// Newest durable version.
    pub durable_version: Version,
    /// Bytes of data held.
    pub data_bytes: u64,
    /// Ranges it is taking over that it holds durably (ready to be handed over).
    pub ready_ranges: Vec<ferrisdb_core::KeyRange>,
    /// The shard-map version `ready_ranges` were judged against.
    pub ready_map_version: u64,
    /// The approximate size of each shard it is a replica of.
    pub shard_sizes: Vec<ShardSize>,
    /// How far each take-over under way has got.
    pub take_overs: Vec<TakeOver>,
    /// Point reads served since the process started.
    pub point_reads_total: u64,
    /// Calls that carried them (`Get` and `GetBatch`).
    pub point_read_calls_total: u64,
}

/// How far a storage server has got taking one range over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakeOver {
    /// The range.
    pub range: ferrisdb_core::KeyRange,
    /// Bytes fetched so far.
    pub fetched_bytes: u64,
    /// Wholly fetched.
    pub fetched: bool,
    /// Installed in the engine.
    pub installed: bool,
}

/// The approximate size of one shard, as a replica reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardSize {
    /// The shard's keys.
    pub range: ferrisdb_core::KeyRange,
    /// Approximate bytes held.
    pub bytes: u64,
    /// Where to split it (`None`: too small to offer a split point).
    pub middle_key: Option<bytes::Bytes>,
    /// Bytes of mutations applied to it per second, recently.
    pub write_bytes_per_second: u64,
}

/// What a storage server has reported durable to the coordinator.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StorageDurability {
    /// The storage server.
    pub storage_id: String,
    /// Newest version it reported durable (0: none since the coordinator started).
    pub durable_version: Version,
    /// Milliseconds since its last report (since the coordinator started if none).
    pub ms_since_report: u64,
}

/// The coordinator's reported status.
#[derive(Debug, Clone, PartialEq, Default)]
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
    /// Versions at or below this one have left the commit log.
    pub log_truncated_through: Version,
    /// The storage servers whose durable versions gate log truncation.
    pub log_holders: Vec<StorageDurability>,
    /// Microseconds commits spent per pipeline stage, summed over `commits_total`.
    pub commit_stages: CommitStageTotals,
    /// The generation it serves (0: none).
    pub serving_epoch: u64,
    /// Why that generation can no longer commit (`None`: it can).
    pub generation_failure: Option<String>,
}

/// Microseconds committed transactions spent in each stage of the coordinator's pipeline,
/// summed over them (see `coordinator::commit::CommitStages`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommitStageTotals {
    /// Waiting for the batcher.
    pub queue_us: u64,
    /// Version, resolution and log submission.
    pub resolve_us: u64,
    /// Until an fsync covered the record.
    pub durable_us: u64,
    /// From the fsync to the handler.
    pub reply_us: u64,
}

/// A log server's reported status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogServerStatus {
    /// The generation the log is locked at.
    pub locked_epoch: u64,
    /// The newest record in the log.
    pub durable_version: Version,
    /// The newest version it knows committed.
    pub known_committed: Version,
    /// Versions at or below this are no longer held.
    pub retained_from: Version,
    /// Bytes of the records held.
    pub retained_bytes: u64,
    /// Its retention budget (0: none).
    pub retention_budget_bytes: u64,
}

/// The role-specific status a worker reports with its heartbeats.
#[derive(Debug, Clone, PartialEq)]
pub enum RoleStatus {
    /// From a storage server.
    Storage(StorageStatus),
    /// From the coordinator.
    Coordinator(CoordinatorStatus),
    /// From a log server.
    Log(LogServerStatus),
}

impl RoleStatus {
    /// The role this status belongs to.
    pub fn role(&self) -> Role {
        match self {
            RoleStatus::Storage(_) => Role::Storage,
            RoleStatus::Coordinator(_) => Role::Coordinator,
            RoleStatus::Log(_) => Role::Log,
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
    /// Why it cannot do its job, as its last heartbeat said (`None`: it can).
    pub reported_problem: Option<String>,
    /// Since when its heartbeats have reported a problem without a break (`None`: the last
    /// one reported none).
    pub problem_since: Option<Instant>,
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
                reported_problem: None,
                problem_since: None,
                logged_healthy: false,
            })
            .collect();
        Membership {
            workers,
            liveness,
            started,
        }
    }

    /// Takes the replicated worker records (their order and addresses), keeping what is known
    /// of the liveness of workers still among them.
    pub fn adopt_records(&mut self, records: &[WorkerRecord]) {
        let mut old: std::collections::HashMap<String, Worker> = std::mem::take(&mut self.workers)
            .into_iter()
            .map(|w| (w.record.id.clone(), w))
            .collect();
        self.workers = records
            .iter()
            .map(|record| match old.remove(&record.id) {
                Some(mut w) => {
                    w.record = record.clone();
                    w
                }
                None => Worker {
                    record: record.clone(),
                    registered_at_unix_ms: None,
                    last_seen: None,
                    status: None,
                    reported_problem: None,
                    problem_since: None,
                    logged_healthy: false,
                },
            })
            .collect();
    }

    /// Records that worker `id` registered at `now` (nothing if it is not known).
    pub fn mark_registered(&mut self, id: &str, now: Instant, now_unix_ms: u64) {
        if let Some(w) = self.workers.iter_mut().find(|w| w.record.id == id) {
            w.registered_at_unix_ms = Some(now_unix_ms);
            w.last_seen = Some(now);
        }
    }

    /// Records a heartbeat and the problem it reports (`None`: the worker can do its job).
    /// Returns `Ok(false)` if the worker is unknown (it must register); fails for an id
    /// registration would refuse, or a status of another role.
    pub fn heartbeat(
        &mut self,
        id: &str,
        status: Option<RoleStatus>,
        problem: Option<String>,
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
        if problem.as_ref().is_some_and(|p| p.len() > MAX_PROBLEM_LEN) {
            return Err(Error::InvalidArgument(format!(
                "an unhealthy reason is at most {MAX_PROBLEM_LEN} bytes"
            )));
        }
        w.problem_since = match (&problem, w.problem_since) {
            (None, _) => None,
            (Some(_), Some(since)) => Some(since),
            (Some(_), None) => Some(now),
        };
        w.reported_problem = problem;
        w.last_seen = Some(now);
        Ok(true)
    }

    /// How long `w` has been unable to do its job at `now`: silent (see [`Self::silence`]),
    /// or reporting a problem in every heartbeat since — whichever is longer.
    pub fn unhealthy_for(&self, w: &Worker, now: Instant) -> Duration {
        let troubled = w
            .problem_since
            .map_or(Duration::ZERO, |since| now.saturating_duration_since(since));
        self.silence(w, now).max(troubled)
    }

    /// True if `w` was heard from within the liveness timeout and reported no problem.
    pub fn is_healthy(&self, w: &Worker, now: Instant) -> bool {
        self.unhealthy_reason(w, now).is_none()
    }

    /// Why `w` is unhealthy at `now`: the problem it reported, or its silence; `None` if it
    /// is healthy.
    pub fn unhealthy_reason(&self, w: &Worker, now: Instant) -> Option<String> {
        let heard = w
            .last_seen
            .is_some_and(|t| now.saturating_duration_since(t) <= self.liveness.timeout());
        if !heard {
            let silence = self.silence(w, now).as_secs_f64();
            return Some(match w.last_seen {
                Some(_) => format!("not heard from for {silence:.1} s"),
                None => format!("not heard from since the controller started {silence:.1} s ago"),
            });
        }
        w.reported_problem.clone()
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

    /// Whether `w` has been silent longer than the liveness timeout at `now`, judged only once
    /// this view is older than twice the timeout (a leader that just took office has heard
    /// from nobody yet, and workers take a moment to find it: that silence is no failure).
    pub fn is_silent(&self, w: &Worker, now: Instant) -> bool {
        let timeout = self.liveness.timeout();
        now.saturating_duration_since(self.started) > timeout * 2 && self.silence(w, now) > timeout
    }

    /// The failure-detection settings.
    pub fn liveness(&self) -> Liveness {
        self.liveness
    }

    /// Workers whose health changed since the last call, with the reason they are now
    /// unhealthy (`None`: now healthy).
    pub fn health_changes(&mut self, now: Instant) -> Vec<(WorkerRecord, Option<String>)> {
        let mut changes = Vec::new();
        for i in 0..self.workers.len() {
            let reason = self.unhealthy_reason(&self.workers[i], now);
            let w = &mut self.workers[i];
            if reason.is_none() != w.logged_healthy {
                w.logged_healthy = reason.is_none();
                changes.push((w.record.clone(), reason));
            }
        }
        changes
    }
}

/// Checks a worker id: 1..=[`MAX_WORKER_ID_LEN`] printable characters.
pub fn check_id(id: &str) -> Result<(), Error> {
    if id.is_empty() || id.len() > MAX_WORKER_ID_LEN || id.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(format!(
            "worker id must be 1..={MAX_WORKER_ID_LEN} printable characters, got {id:?}"
        )));
    }
    Ok(())
}

/// Checks a worker address is `host:port`.
pub fn check_address(address: &str) -> Result<(), Error> {
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

    /// What the leader does once a registration is in the replicated state.
    fn register(m: &mut Membership, record: WorkerRecord, now: Instant, unix_ms: u64) {
        let mut records = m.records();
        match records.iter_mut().find(|r| r.id == record.id) {
            Some(r) => *r = record.clone(),
            None => records.push(record.clone()),
        }
        m.adopt_records(&records);
        m.mark_registered(&record.id, now, unix_ms);
    }

    #[test]
    fn register_heartbeat_and_failure_detection() {
        let t0 = Instant::now();
        let mut m = Membership::new(vec![], LIVENESS, t0);
        register(&mut m, rec("s1", Role::Storage, "127.0.0.1:1"), t0, 5);
        let w = &m.workers()[0];
        assert_eq!(w.registered_at_unix_ms, Some(5));
        assert!(m.is_healthy(w, t0 + Duration::from_millis(300)));
        assert!(!m.is_healthy(w, t0 + Duration::from_millis(301)));
        let status = RoleStatus::Storage(StorageStatus {
            data_bytes: 7,
            ready_ranges: Vec::new(),
            ready_map_version: 0,
            shard_sizes: Vec::new(),
            ..Default::default()
        });
        let t1 = t0 + Duration::from_millis(250);
        assert!(m.heartbeat("s1", Some(status.clone()), None, t1).unwrap());
        let w = &m.workers()[0];
        assert!(m.is_healthy(w, t1 + Duration::from_millis(300)));
        assert_eq!(w.status, Some(status));
        assert_eq!(
            m.silence(w, t1 + Duration::from_millis(40)),
            Duration::from_millis(40)
        );
        assert!(!m.heartbeat("nobody", None, None, t1).unwrap());
        let silent = m.unhealthy_reason(&m.workers()[0], t1 + Duration::from_secs(2));
        assert_eq!(silent.as_deref(), Some("not heard from for 2.0 s"));
    }

    #[test]
    fn a_reported_problem_makes_a_live_worker_unhealthy_until_it_clears() {
        let t0 = Instant::now();
        let mut m = Membership::new(vec![], LIVENESS, t0);
        register(&mut m, rec("c1", Role::Coordinator, "h:1"), t0, 1);
        assert!(m.is_healthy(&m.workers()[0], t0));
        assert_eq!(
            m.health_changes(t0),
            vec![(rec("c1", Role::Coordinator, "h:1"), None)]
        );
        m.heartbeat("c1", None, Some("commit log: disk full".into()), t0)
            .unwrap();
        let w = &m.workers()[0];
        assert!(!m.is_healthy(w, t0));
        assert_eq!(
            m.unhealthy_reason(w, t0).as_deref(),
            Some("commit log: disk full")
        );
        assert_eq!(
            m.health_changes(t0),
            vec![(
                rec("c1", Role::Coordinator, "h:1"),
                Some("commit log: disk full".into())
            )]
        );
        m.heartbeat("c1", None, None, t0).unwrap();
        assert!(m.is_healthy(&m.workers()[0], t0));
        assert_eq!(m.health_changes(t0).len(), 1);
        let long = "x".repeat(MAX_PROBLEM_LEN + 1);
        assert!(m.heartbeat("c1", None, Some(long), t0).is_err());
    }

    #[test]
    fn a_problem_reported_in_every_heartbeat_counts_from_the_first_one() {
        let t0 = Instant::now();
        let mut m = Membership::new(vec![], LIVENESS, t0);
        register(&mut m, rec("s1", Role::Storage, "h:1"), t0, 1);
        let ms = Duration::from_millis;
        let stranded = || Some("stranded: the log dropped versions it needs".to_string());
        m.heartbeat("s1", None, stranded(), t0 + ms(100)).unwrap();
        m.heartbeat("s1", None, stranded(), t0 + ms(400)).unwrap();
        let w = &m.workers()[0];
        // Heard from 100 ms ago, but troubled for 600 ms.
        assert_eq!(m.unhealthy_for(w, t0 + ms(700)), ms(600));
        // A heartbeat without the problem ends it; silence counts again after it.
        m.heartbeat("s1", None, None, t0 + ms(800)).unwrap();
        m.heartbeat("s1", None, stranded(), t0 + ms(900)).unwrap();
        assert_eq!(m.unhealthy_for(&m.workers()[0], t0 + ms(1000)), ms(100));
        m.heartbeat("s1", None, None, t0 + ms(1100)).unwrap();
        assert_eq!(m.unhealthy_for(&m.workers()[0], t0 + ms(3100)), ms(2000));
    }

    #[test]
    fn adopted_records_keep_liveness_take_new_addresses_and_drop_the_removed() {
        let t0 = Instant::now();
        let mut m = Membership::new(vec![], LIVENESS, t0);
        register(&mut m, rec("old", Role::Coordinator, "h:1"), t0, 1);
        register(&mut m, rec("s1", Role::Storage, "h:2"), t0, 1);
        m.adopt_records(&[
            rec("s1", Role::Storage, "h:9"),
            rec("new", Role::Coordinator, "h:3"),
        ]);
        let ids: Vec<_> = m.workers().iter().map(|w| w.record.id.as_str()).collect();
        assert_eq!(ids, ["s1", "new"]);
        assert_eq!(m.workers()[0].record.address, "h:9");
        assert!(m.is_healthy(&m.workers()[0], t0), "liveness kept");
        assert!(
            !m.is_healthy(&m.workers()[1], t0),
            "new: not heard from yet"
        );
        assert!(!m.heartbeat("old", None, None, t0).unwrap());
    }

    #[test]
    fn a_heartbeat_with_another_roles_status_is_refused() {
        let t0 = Instant::now();
        let mut m = Membership::new(vec![], LIVENESS, t0);
        register(&mut m, rec("s1", Role::Storage, "h:1"), t0, 1);
        let coord = RoleStatus::Coordinator(CoordinatorStatus::default());
        assert!(m.heartbeat("s1", Some(coord), None, t0).is_err());
        assert!(m.heartbeat("bad\nid", None, None, t0).is_err());
    }

    #[test]
    fn rejects_bad_ids_and_addresses() {
        for (id, addr) in [
            ("", "h:1"),
            ("a\nb", "h:1"),
            ("ok", "nohost"),
            ("ok", ":1"),
            ("ok", "h:0"),
            ("ok", "h:x"),
        ] {
            assert!(
                check_id(id).is_err() || check_address(addr).is_err(),
                "{id:?} {addr:?}"
            );
        }
        assert!(check_id(&"x".repeat(MAX_WORKER_ID_LEN + 1)).is_err());
        assert!(check_id("ok").is_ok() && check_address("[::1]:4501").is_ok());
    }

    #[test]
    fn workers_from_disk_are_unhealthy_until_heard_from() {
        let t0 = Instant::now();
        let mut m = Membership::new(vec![rec("s1", Role::Storage, "h:1")], LIVENESS, t0);
        assert!(!m.is_healthy(&m.workers()[0], t0));
        assert!(m.health_changes(t0).is_empty());
        m.heartbeat("s1", None, None, t0).unwrap();
        assert_eq!(m.health_changes(t0).len(), 1);
        assert!(m.health_changes(t0).is_empty());
        let later = t0 + Duration::from_secs(1);
        assert_eq!(
            m.health_changes(later),
            vec![(
                rec("s1", Role::Storage, "h:1"),
                Some("not heard from for 1.0 s".into())
            )]
        );
        assert_eq!(m.storage_ids(), vec!["s1".to_string()]);
    }
}
