//! `ferrisdb status`: the cluster as the controller sees it (`GetClusterState`: processes,
//! health, the storage servers' and coordinator's last reported status, the shard map) plus
//! the coordinator's latest committed version (`GetReadVersion`).
//!
//! [`fetch`] does the network calls, [`build`] turns the answers into a [`Report`] (the
//! stable `--json` form, documented in `docs/cli.md`) and [`render`] prints it as tables.
//! Storage and coordinator figures are those of the last heartbeat (about once per interval).

mod render;
#[cfg(test)]
mod tests;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferrisdb_core::keys::escape;
use ferrisdb_proto::status::from_status;
use ferrisdb_proto::v1;
use ferrisdb_proto::v1::cluster_controller_client::ClusterControllerClient;
use ferrisdb_proto::v1::controller_group_client::ControllerGroupClient;
use ferrisdb_proto::v1::transaction_coordinator_client::TransactionCoordinatorClient;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

pub use render::render;

/// Bound on each status RPC, connection included.
const RPC_TIMEOUT: Duration = Duration::from_secs(3);

/// How far (in seconds of versions) a storage server's durable version may trail the
/// coordinator's committed version before `status` says it is holding the commit log back.
/// Storage servers report every 200 ms, so a healthy one is well inside this.
pub const LOG_HOLD_WARNING_SECONDS: f64 = 10.0;

/// The whole status report (`ferrisdb status --json`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The cluster's id.
    pub cluster_id: String,
    /// The controller that answered.
    pub controller: String,
    /// Every process healthy and every shard fully replicated.
    pub healthy: bool,
    /// The coordinator's latest committed version (`null` if it could not be reached).
    pub latest_version: Option<u64>,
    /// The transaction system's generation (0 before the first); the same as `generation`.
    pub epoch: u64,
    /// The transaction system's generation: one more with each recovery (0 before the first).
    pub generation: u64,
    /// What the recovery of the transaction system is doing: `waiting: …`, `locking logs`,
    /// `copying logs`, `starting coordinator`, `accepting commits` (the generation commits;
    /// storage servers are still catching up to its first version) or `fully recovered`.
    pub recovery_state: String,
    /// Why the last recovery began (empty if none since the controller leader took office).
    pub recovery_reason: String,
    /// How long the last recovery took, until its coordinator accepted commits (`null` if
    /// none since the controller leader took office).
    pub last_recovery_ms: Option<u64>,
    /// The generation's versions: every version acknowledged before it is at or below
    /// `recovery_version`; its first version is `start_version` (`null` before the first).
    pub generation_versions: Option<GenerationVersions>,
    /// Every log server, with whether it serves the current generation.
    pub log_servers: Vec<LogServer>,
    /// Replicas per shard the cluster is configured for.
    pub replication: u32,
    /// Storage servers the cluster waits for before bootstrapping.
    pub expected_storage_servers: u32,
    /// Fewest healthy replicas of any shard, minus one (`null` before bootstrap or when a
    /// shard has no healthy replica): how many more storage failures every shard survives.
    pub fault_tolerance: Option<u32>,
    /// Every replica of the controller group, as the leader that answered sees them.
    pub controllers: Vec<ControllerReplica>,
    /// Every process: the controller replicas, coordinators, log servers, storage servers and
    /// gateways.
    pub processes: Vec<Process>,
    /// The coordinator's commit statistics, if one is registered.
    pub coordinator: Option<Coordinator>,
    /// Each storage server's versions and data size.
    pub storage_servers: Vec<StorageServer>,
    /// The shard-map version (0 before bootstrap).
    pub shard_map_version: u64,
    /// Every shard with its replicas.
    pub shards: Vec<ShardStatus>,
    /// Problems found while gathering the report.
    pub messages: Vec<String>,
}

/// One replica of the controller group.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ControllerReplica {
    /// `host:port`.
    pub address: String,
    /// Its Raft node id.
    pub node_id: u64,
    /// `leader`, `follower`, `candidate`, `learner` or `unreachable`.
    pub role: String,
    /// Its Raft term (0 when unreachable).
    pub term: u64,
    /// Index of the last Raft entry it applied (0 when unreachable).
    pub last_applied_index: u64,
}

/// One process.
#[derive(Debug, Clone, Serialize)]
pub struct Process {
    /// `controller`, `coordinator`, `log`, `storage` or `gateway`.
    pub role: String,
    /// Worker id (empty for the controller).
    pub id: String,
    /// `host:port`.
    pub address: String,
    /// Heard from recently (the controller: it answered).
    pub healthy: bool,
    /// Seconds since the process registered (`null` if unknown).
    pub uptime_seconds: Option<f64>,
    /// Milliseconds since its last heartbeat (`null` for the controller).
    pub ms_since_heartbeat: Option<u64>,
    /// Why it is unhealthy (`null` when healthy): what it reported, or its silence.
    pub unhealthy_reason: Option<String>,
    /// A coordinator that does not serve the current generation: it stands by for a
    /// recovery.
    pub standby: bool,
}

/// Where a generation's versions begin.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct GenerationVersions {
    /// Every version acknowledged before the generation is at or below it.
    pub recovery_version: u64,
    /// The generation's first version.
    pub start_version: u64,
}

/// One log server's last reported state.
#[derive(Debug, Clone, Serialize)]
pub struct LogServer {
    /// Worker id.
    pub id: String,
    /// `host:port`.
    pub address: String,
    /// Heard from recently.
    pub healthy: bool,
    /// One of the current generation's log servers.
    pub in_generation: bool,
    /// The generation it is locked at.
    pub locked_epoch: Option<u64>,
    /// Its newest record.
    pub durable_version: Option<u64>,
    /// The newest version it knows committed (what storage servers may read from it).
    pub known_committed: Option<u64>,
    /// Versions at or below this are no longer held.
    pub retained_from: Option<u64>,
    /// Bytes of the records held.
    pub retained_bytes: Option<u64>,
    /// Past this many bytes held it drops versions only lagging storage servers lack (0: no
    /// budget).
    pub retention_budget_bytes: Option<u64>,
}

/// The coordinator's last reported commit statistics.
#[derive(Debug, Clone, Serialize)]
pub struct Coordinator {
    /// Worker id.
    pub id: String,
    /// `host:port`.
    pub address: String,
    /// Heard from recently.
    pub healthy: bool,
    /// Committed version at its last heartbeat.
    pub committed_version: Option<u64>,
    /// Commits per second.
    pub commits_per_second: Option<f64>,
    /// Average transactions per commit batch.
    pub avg_batch_size: Option<f64>,
    /// Bytes held in the commit log (in a cluster: the most any log server of the generation
    /// holds).
    pub log_bytes: Option<u64>,
    /// Transactions committed since the coordinator started.
    pub commits_total: Option<u64>,
    /// Commit batches since the coordinator started.
    pub batches_total: Option<u64>,
    /// Commit-log fdatasyncs since the coordinator started.
    pub log_fsyncs_total: Option<u64>,
    /// Versions at or below this one have left the commit log.
    pub log_truncated_through: Option<u64>,
    /// The storage servers whose durable versions gate log truncation.
    pub log_holders: Vec<LogHolder>,
    /// Mean time per committed transaction in each stage of the commit pipeline, in
    /// microseconds, since the coordinator started (`null` before its first commit).
    pub commit_stage_means_us: Option<CommitStageMeans>,
}

/// Mean microseconds per committed transaction in each stage of the coordinator's commit
/// pipeline: waiting for the batcher, resolving and submitting, until an fsync covered it,
/// and back to the request handler.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct CommitStageMeans {
    /// Waiting in the queue for the batcher.
    pub queue: f64,
    /// Version, resolution and log submission.
    pub resolve: f64,
    /// Until an fsync covered the record.
    pub durable: f64,
    /// From the fsync to the handler having the answer.
    pub reply: f64,
}

/// The mean stage times of a coordinator's status (`None` before its first commit).
fn stage_means(c: &v1::CoordinatorStatus) -> Option<CommitStageMeans> {
    let s = c.commit_stages.as_ref()?;
    if c.commits_total == 0 {
        return None;
    }
    let n = c.commits_total as f64;
    Some(CommitStageMeans {
        queue: s.queue_us as f64 / n,
        resolve: s.resolve_us as f64 / n,
        durable: s.durable_us as f64 / n,
        reply: s.reply_us as f64 / n,
    })
}

/// A storage server whose durable version gates the commit log's truncation.
#[derive(Debug, Clone, Serialize)]
pub struct LogHolder {
    /// Worker id.
    pub storage_id: String,
    /// Newest version it reported durable (`null`: none since the coordinator started).
    pub durable_version: Option<u64>,
    /// Seconds of versions its durable version trails the committed version (`null` if it
    /// has not reported).
    pub seconds_behind: Option<f64>,
    /// Seconds since its last report (since the coordinator started if it has not reported).
    pub seconds_since_report: f64,
    /// Whether it keeps the log from truncating: more than [`LOG_HOLD_WARNING_SECONDS`]
    /// behind, or silent that long.
    pub holding_log: bool,
}

/// One storage server's last reported status.
#[derive(Debug, Clone, Serialize)]
pub struct StorageServer {
    /// Worker id.
    pub id: String,
    /// `host:port`.
    pub address: String,
    /// Heard from recently.
    pub healthy: bool,
    /// Newest applied (readable) version.
    pub applied_version: Option<u64>,
    /// Newest durable version.
    pub durable_version: Option<u64>,
    /// `latest_version - applied_version`, in versions (1,000,000 per second); `null` when
    /// unknown (the latest version or the applied version is not known, or the server has
    /// applied nothing yet).
    pub lag_versions: Option<u64>,
    /// The lag in seconds.
    pub lag_seconds: Option<f64>,
    /// Bytes of data held (SSTables plus memtables).
    pub data_bytes: Option<u64>,
    /// Point reads served since the process started.
    pub point_reads_total: Option<u64>,
    /// `Get`/`GetBatch` calls that carried them (reads per call: the clients' batching).
    pub point_read_calls_total: Option<u64>,
    /// Shards it is a replica of.
    pub shards: u32,
    /// Shards it is taking over (in their move's destination team, not yet a replica).
    pub incoming_shards: u32,
    /// Excluded by an operator (`ferrisdb cluster exclude`): its shards move away.
    pub excluded: bool,
}

/// One shard.
#[derive(Debug, Clone, Serialize)]
pub struct ShardStatus {
    /// First key, escaped.
    pub begin: String,
    /// End key (exclusive), escaped; empty: the end of the key space.
    pub end: String,
    /// Worker ids of the replicas.
    pub replicas: Vec<String>,
    /// How many replicas are healthy.
    pub healthy_replicas: u32,
    /// `healthy_replicas >= replication`.
    pub fully_replicated: bool,
    /// While the data distributor moves the shard: the team taking it over (empty
    /// otherwise).
    pub moving_to: Vec<String>,
    /// Approximate bytes held, as its replicas last reported (`None`: no report yet).
    pub bytes: Option<u64>,
    /// While it moves: how far the slowest server taking it over has got.
    pub move_progress: Option<MoveProgress>,
}

/// How far a shard's move has got: the slowest of the servers taking it over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MoveProgress {
    /// `fetching` (reading the shard from a current replica), `catching up` (fetched; the
    /// writes buffered meanwhile are folded in and made durable) or `ready` (the next
    /// distributor round hands it over).
    pub stage: String,
    /// Bytes fetched so far.
    pub fetched_bytes: u64,
}

/// Fetches the cluster state from the controller group's leader (following the replicas'
/// hints), then the latest version from the coordinator. When no leader answers, says how
/// many replicas are reachable.
pub async fn fetch(controllers: &[String]) -> Result<Report, String> {
    let mut errors = Vec::new();
    let mut queue: std::collections::VecDeque<String> = controllers.iter().cloned().collect();
    let mut tried = std::collections::HashSet::new();
    while let Some(addr) = queue.pop_front() {
        if !tried.insert(addr.clone()) {
            continue;
        }
        match cluster_state(&addr).await {
            Ok(state) => {
                let mut messages = Vec::new();
                let latest = match &state.coordinator {
                    Some(c) => match read_version(&c.address).await {
                        Ok(v) => Some(v),
                        Err(e) => {
                            messages.push(format!("coordinator {}: {e}", c.address));
                            None
                        }
                    },
                    None => None,
                };
                let now_ms = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0);
                let mut report = build(&addr, state, latest, now_ms);
                report.messages.splice(0..0, messages);
                report.healthy &= report.messages.is_empty();
                return Ok(report);
            }
            Err((e, leader)) => {
                if let Some(leader) = leader {
                    queue.push_front(leader);
                }
                errors.push(format!("{addr}: {e}"));
            }
        }
    }
    if controllers.is_empty() {
        return Err("no controller address".into());
    }
    Err(unavailable(controllers, &errors).await)
}

/// "cluster unavailable: 1 of 3 controllers reachable", with each replica's state.
async fn unavailable(controllers: &[String], errors: &[String]) -> String {
    let mut answers = Vec::new();
    for addr in controllers {
        answers.push((addr.clone(), identify(addr).await));
    }
    unavailable_message(&answers, errors)
}

/// The message for a group without a leader, from each replica's `Identify` answer (or why
/// it gave none) and the errors of the state requests. Pure.
pub fn unavailable_message(
    answers: &[(String, Result<v1::ControllerReplica, String>)],
    errors: &[String],
) -> String {
    let reachable = answers.iter().filter(|(_, a)| a.is_ok()).count();
    let lines: Vec<String> = answers
        .iter()
        .map(|(addr, answer)| match answer {
            Ok(r) => format!(
                "  {addr}: {} (node {}, term {}, applied {})",
                r.role, r.node_id, r.term, r.last_applied_index
            ),
            Err(e) => format!("  {addr}: unreachable ({e})"),
        })
        .collect();
    format!(
        "cluster unavailable: {reachable} of {} controllers reachable, and no leader answered\n{}\n({})",
        answers.len(),
        lines.join("\n"),
        errors.join("; ")
    )
}

async fn identify(addr: &str) -> Result<v1::ControllerReplica, String> {
    let mut client = ControllerGroupClient::new(channel(addr)?);
    let call = client.identify(v1::IdentifyRequest {});
    match tokio::time::timeout(RPC_TIMEOUT, call).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(s)) => Err(from_status(&s).to_string()),
        Err(_) => Err(format!("no answer within {RPC_TIMEOUT:?}")),
    }
}

fn channel(addr: &str) -> Result<Channel, String> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("bad address {addr:?}: {e}"))?
        .connect_timeout(RPC_TIMEOUT)
        .timeout(RPC_TIMEOUT)
        .connect_lazy())
}

/// The leader's answer, or the error and the leader a follower named.
async fn cluster_state(
    addr: &str,
) -> Result<v1::GetClusterStateResponse, (String, Option<String>)> {
    let mut client = ClusterControllerClient::new(channel(addr).map_err(|e| (e, None))?);
    let call = client.get_cluster_state(v1::GetClusterStateRequest {});
    match tokio::time::timeout(RPC_TIMEOUT, call).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(s)) => {
            let e = from_status(&s);
            let leader = match &e {
                ferrisdb_core::Error::NotLeader(l) if !l.is_empty() => Some(l.clone()),
                _ => None,
            };
            Err((e.to_string(), leader))
        }
        Err(_) => Err((format!("no answer within {RPC_TIMEOUT:?}"), None)),
    }
}

async fn read_version(addr: &str) -> Result<u64, String> {
    let mut client = TransactionCoordinatorClient::new(channel(addr)?);
    let call = client.get_read_version(v1::GetReadVersionRequest {
        priority: v1::Priority::Immediate as i32,
    });
    match tokio::time::timeout(RPC_TIMEOUT, call).await {
        Ok(Ok(r)) => Ok(r.into_inner().version),
        Ok(Err(s)) => Err(from_status(&s).to_string()),
        Err(_) => Err(format!("no answer within {RPC_TIMEOUT:?}")),
    }
}

/// Builds the report from a controller's answer, the coordinator's latest version (if
/// reached) and the current Unix time in milliseconds. Pure.
pub fn build(
    controller: &str,
    state: v1::GetClusterStateResponse,
    latest_version: Option<u64>,
    now_unix_ms: u64,
) -> Report {
    let mut messages = Vec::new();
    let controllers: Vec<ControllerReplica> = if state.controllers.is_empty() {
        // A controller that does not report its group: the one that answered.
        vec![ControllerReplica {
            address: controller.to_owned(),
            node_id: 0,
            role: "leader".into(),
            term: 0,
            last_applied_index: 0,
        }]
    } else {
        state
            .controllers
            .iter()
            .map(|c| ControllerReplica {
                address: c.address.clone(),
                node_id: c.node_id,
                role: c.role.clone(),
                term: c.term,
                last_applied_index: c.last_applied_index,
            })
            .collect()
    };
    let mut processes = Vec::new();
    for c in &controllers {
        let reachable = c.role != "unreachable";
        processes.push(Process {
            role: "controller".into(),
            id: if c.node_id == 0 {
                String::new()
            } else {
                c.node_id.to_string()
            },
            address: c.address.clone(),
            healthy: reachable,
            uptime_seconds: None,
            ms_since_heartbeat: None,
            unhealthy_reason: (!reachable).then(|| "does not answer".to_string()),
            standby: false,
        });
        if !reachable {
            messages.push(format!(
                "controller replica {} (node {}) is unreachable",
                c.address, c.node_id
            ));
        }
    }
    let mut coordinator = None;
    // The serving coordinator's own status, for the log-holding messages.
    let mut serving_status: Option<v1::CoordinatorStatus> = None;
    let mut storage_servers = Vec::new();
    let mut log_servers = Vec::new();
    let generation_logs: Vec<String> = state
        .generation
        .iter()
        .flat_map(|g| g.logs.iter().map(|l| l.log_id.clone()))
        .collect();
    // The coordinator serving the generation (others registered stand by for a recovery).
    let serving_coordinator: Option<String> = state
        .generation
        .as_ref()
        .map(|g| g.coordinator_id.clone())
        .filter(|id| !id.is_empty())
        .or_else(|| state.coordinator.as_ref().map(|c| c.worker_id.clone()));
    let mut workers = state.workers;
    let coordinator_role = v1::WorkerRole::Coordinator as i32;
    workers.sort_by(|a, b| {
        (a.role != coordinator_role, &a.address).cmp(&(b.role != coordinator_role, &b.address))
    });
    for w in &workers {
        let role = v1::WorkerRole::try_from(w.role).unwrap_or(v1::WorkerRole::Unspecified);
        let uptime = (w.start_time_unix_ms > 0)
            .then(|| now_unix_ms.saturating_sub(w.start_time_unix_ms) as f64 / 1000.0);
        processes.push(Process {
            role: match role {
                v1::WorkerRole::Storage => "storage",
                v1::WorkerRole::Coordinator => "coordinator",
                v1::WorkerRole::Log => "log",
                v1::WorkerRole::Gateway => "gateway",
                v1::WorkerRole::Unspecified => "unknown",
            }
            .into(),
            id: w.worker_id.clone(),
            address: w.address.clone(),
            healthy: w.healthy,
            uptime_seconds: uptime,
            ms_since_heartbeat: Some(w.ms_since_heartbeat),
            unhealthy_reason: (!w.healthy).then(|| unhealthy_reason(w)),
            standby: false,
        });
        if let Some(reason) = processes.last().and_then(|p| p.unhealthy_reason.as_ref()) {
            messages.push(format!(
                "{} {} ({}) is unhealthy: {reason}",
                processes
                    .last()
                    .map(|p| p.role.as_str())
                    .unwrap_or("worker"),
                w.worker_id,
                w.address,
            ));
        }
        let status = w.status.as_ref().and_then(|s| s.status.as_ref());
        match role {
            v1::WorkerRole::Storage => {
                let s = match status {
                    Some(v1::worker_status::Status::Storage(s)) => Some(s),
                    _ => None,
                };
                let applied = s.map(|s| s.applied_version);
                // A server that has applied nothing has no meaningful lag.
                let lag = latest_version
                    .zip(applied.filter(|&a| a > 0))
                    .map(|(l, a)| l.saturating_sub(a));
                storage_servers.push(StorageServer {
                    id: w.worker_id.clone(),
                    address: w.address.clone(),
                    healthy: w.healthy,
                    applied_version: applied,
                    durable_version: s.map(|s| s.durable_version),
                    lag_versions: lag,
                    lag_seconds: lag.map(|l| l as f64 / ferrisdb_core::Version::PER_SECOND as f64),
                    data_bytes: s.map(|s| s.data_bytes),
                    point_reads_total: s.map(|s| s.point_reads_total),
                    point_read_calls_total: s.map(|s| s.point_read_calls_total),
                    shards: 0,
                    incoming_shards: 0,
                    excluded: state.excluded.contains(&w.worker_id),
                });
            }
            v1::WorkerRole::Coordinator => {
                let c = match status {
                    Some(v1::worker_status::Status::Coordinator(c)) => Some(c),
                    _ => None,
                };
                let serving = serving_coordinator.as_deref() == Some(w.worker_id.as_str());
                if serving_coordinator.is_some() && !serving {
                    // A standby: listed among the processes only.
                    if let Some(p) = processes.last_mut() {
                        p.standby = true;
                    }
                    continue;
                }
                serving_status = c.cloned();
                coordinator = Some(Coordinator {
                    id: w.worker_id.clone(),
                    address: w.address.clone(),
                    healthy: w.healthy,
                    committed_version: c.map(|c| c.committed_version),
                    commits_per_second: c.map(|c| c.commits_per_second),
                    avg_batch_size: c.map(|c| c.avg_batch_size),
                    log_bytes: c.map(|c| c.log_bytes),
                    commits_total: c.map(|c| c.commits_total),
                    batches_total: c.map(|c| c.batches_total),
                    log_fsyncs_total: c.map(|c| c.log_fsyncs_total),
                    log_truncated_through: c.map(|c| c.log_truncated_through),
                    log_holders: c.map(log_holders).unwrap_or_default(),
                    commit_stage_means_us: c.and_then(stage_means),
                });
            }
            v1::WorkerRole::Log => {
                let l = match status {
                    Some(v1::worker_status::Status::Log(l)) => Some(l),
                    _ => None,
                };
                log_servers.push(LogServer {
                    id: w.worker_id.clone(),
                    address: w.address.clone(),
                    healthy: w.healthy,
                    in_generation: generation_logs.contains(&w.worker_id),
                    locked_epoch: l.map(|l| l.locked_epoch),
                    durable_version: l.map(|l| l.durable_version),
                    known_committed: l.map(|l| l.known_committed),
                    retained_from: l.map(|l| l.retained_from),
                    retained_bytes: l.map(|l| l.retained_bytes),
                    retention_budget_bytes: l.map(|l| l.retention_budget_bytes),
                });
            }
            v1::WorkerRole::Gateway | v1::WorkerRole::Unspecified => {}
        }
    }
    if coordinator.is_none() {
        messages.push("no transaction coordinator has registered".into());
    }
    // In a cluster the generation's log servers hold the log: their largest hold is its size.
    let generation_held = log_servers
        .iter()
        .filter(|l| l.in_generation)
        .filter_map(|l| l.retained_bytes)
        .max();
    if let (Some(c), Some(held)) = (coordinator.as_mut(), generation_held) {
        c.log_bytes = Some(c.log_bytes.unwrap_or(0).max(held));
    }
    if let Some(c) = &serving_status {
        let held = c.log_bytes.max(generation_held.unwrap_or(0));
        let budget = log_servers
            .iter()
            .filter(|l| l.in_generation)
            .filter_map(|l| l.retention_budget_bytes)
            .filter(|b| *b > 0)
            .min();
        messages.extend(log_hold_messages(c, held, budget));
    }
    let healthy_ids: std::collections::HashSet<&str> = workers
        .iter()
        .filter(|w| w.healthy)
        .map(|w| w.worker_id.as_str())
        .collect();
    let map = state.shard_map.unwrap_or_default();
    let storage_status = |id: &str| {
        workers.iter().find(|w| w.worker_id == id).and_then(|w| {
            match w.status.as_ref()?.status.as_ref()? {
                v1::worker_status::Status::Storage(s) => Some(s),
                _ => None,
            }
        })
    };
    let shards: Vec<ShardStatus> = map
        .shards
        .iter()
        .map(|s| {
            let range = s.range.clone().unwrap_or_default();
            let bytes = s
                .storage_ids
                .iter()
                .filter_map(|id| storage_status(id))
                .flat_map(|st| st.shard_sizes.iter())
                .filter(|z| z.range.as_ref() == Some(&range))
                .map(|z| z.bytes)
                .max();
            let move_progress = s
                .moving_to
                .iter()
                .filter(|id| !s.storage_ids.contains(id))
                .map(|id| take_over_progress(storage_status(id), &range))
                .min_by_key(|p| (stage_rank(&p.stage), p.fetched_bytes));
            let healthy = s
                .storage_ids
                .iter()
                .filter(|id| healthy_ids.contains(id.as_str()))
                .count() as u32;
            ShardStatus {
                begin: escape(&range.begin),
                end: escape(&range.end),
                replicas: s.storage_ids.clone(),
                healthy_replicas: healthy,
                fully_replicated: healthy >= state.replication,
                moving_to: s.moving_to.clone(),
                bytes,
                move_progress,
            }
        })
        .collect();
    for server in &mut storage_servers {
        for s in &map.shards {
            if s.storage_ids.contains(&server.id) {
                server.shards += 1;
            } else if s.moving_to.contains(&server.id) {
                server.incoming_shards += 1;
            }
        }
        if server.excluded {
            let held = server.shards + server.incoming_shards;
            messages.push(if held == 0 {
                format!(
                    "storage server {} ({}) is excluded and holds no shard: safe to turn off",
                    server.id, server.address
                )
            } else {
                format!(
                    "storage server {} ({}) is excluded: {held} shard(s) still to move away",
                    server.id, server.address
                )
            });
        }
    }
    if shards.is_empty() {
        messages.push(format!(
            "no shard map yet: waiting for {} storage servers to register",
            state.expected_storage_servers
        ));
    }
    let under = shards.iter().filter(|s| !s.fully_replicated).count();
    if under > 0 {
        messages.push(format!(
            "{under} of {} shards lack healthy replicas",
            shards.len()
        ));
    }
    if !state.recovery_state.is_empty()
        && state.recovery_state != "accepting commits"
        && state.recovery_state != "fully recovered"
    {
        messages.push(format!(
            "the transaction system is recovering ({}): {}",
            state.recovery_reason, state.recovery_state
        ));
    }
    if state.epoch == 0 && state.recovery_state.is_empty() {
        messages.push("the transaction system has not started yet".into());
    }
    let min_healthy = shards.iter().map(|s| s.healthy_replicas).min();
    let fault_tolerance = min_healthy.and_then(|m| m.checked_sub(1));
    Report {
        cluster_id: state.cluster_id,
        controller: controller.to_owned(),
        healthy: messages.is_empty(),
        controllers,
        epoch: state.epoch,
        generation: state.epoch,
        recovery_state: state.recovery_state,
        recovery_reason: state.recovery_reason,
        last_recovery_ms: (state.last_recovery_ms > 0).then_some(state.last_recovery_ms),
        generation_versions: state.generation.as_ref().map(|g| GenerationVersions {
            recovery_version: g.recovery_version,
            start_version: g.start_version,
        }),
        log_servers,
        latest_version,
        replication: state.replication,
        expected_storage_servers: state.expected_storage_servers,
        fault_tolerance,
        processes,
        coordinator,
        storage_servers,
        shard_map_version: map.version,
        shards,
        messages,
    }
}

/// Why a worker the controller reports unhealthy is so: its own reason, or (from a controller
/// that does not say) its silence.
fn unhealthy_reason(w: &v1::WorkerInfo) -> String {
    if w.unhealthy_reason.is_empty() {
        format!(
            "not heard from for {:.1} s",
            w.ms_since_heartbeat as f64 / 1000.0
        )
    } else {
        w.unhealthy_reason.clone()
    }
}

/// The storage servers gating the coordinator's log truncation, as last reported.
fn log_holders(c: &v1::CoordinatorStatus) -> Vec<LogHolder> {
    let per_second = ferrisdb_core::Version::PER_SECOND as f64;
    c.log_holders
        .iter()
        .map(|h| {
            let durable = (h.durable_version > 0).then_some(h.durable_version);
            let behind = durable.map(|d| c.committed_version.saturating_sub(d) as f64 / per_second);
            let since = h.ms_since_report as f64 / 1000.0;
            LogHolder {
                storage_id: h.storage_id.clone(),
                durable_version: durable,
                seconds_behind: behind,
                seconds_since_report: since,
                holding_log: behind.unwrap_or(since) > LOG_HOLD_WARNING_SECONDS,
            }
        })
        .collect()
}

/// One message per storage server that keeps the commit log from truncating.
/// Why the log cannot truncate: each storage server holding it back. `held` is what the log
/// holds; `budget` the log servers' retention budget, if they have one.
fn log_hold_messages(c: &v1::CoordinatorStatus, held: u64, budget: Option<u64>) -> Vec<String> {
    log_holders(c)
        .into_iter()
        .filter(|h| h.holding_log)
        .map(|h| {
            let state = match (h.durable_version, h.seconds_behind) {
                (Some(v), Some(behind)) => format!(
                    "has made nothing durable past version {v} ({behind:.1} s behind; last \
                     report {:.1} s ago)",
                    h.seconds_since_report
                ),
                _ => format!(
                    "has not reported durable since the coordinator started {:.1} s ago",
                    h.seconds_since_report
                ),
            };
            let fate = match budget {
                Some(b) => format!(
                    "; past the log servers' retention budget of {}, they drop versions only \
                     it lacks and it must then be re-replicated",
                    crate::cli::table::bytes(b)
                ),
                None => String::new(),
            };
            format!(
                "the commit log cannot truncate: storage server {} {state}; the log holds {} \
                 and grows with every write until it catches up or leaves the shard map{fate}",
                h.storage_id,
                crate::cli::table::bytes(held)
            )
        })
        .collect()
}

/// How far the storage server reporting `status` has got taking `range` over.
fn take_over_progress(status: Option<&v1::StorageStatus>, range: &v1::KeyRange) -> MoveProgress {
    let Some(status) = status else {
        return MoveProgress {
            stage: "fetching".into(),
            fetched_bytes: 0,
        };
    };
    let take_over = status
        .take_overs
        .iter()
        .find(|t| t.range.as_ref() == Some(range));
    let fetched_bytes = take_over.map_or(0, |t| t.fetched_bytes);
    let stage = if status.ready_ranges.contains(range) {
        "ready"
    } else if take_over.is_some_and(|t| t.fetched) {
        "catching up"
    } else {
        "fetching"
    };
    MoveProgress {
        stage: stage.into(),
        fetched_bytes,
    }
}

/// Orders move stages from the least advanced.
fn stage_rank(stage: &str) -> u8 {
    match stage {
        "fetching" => 0,
        "catching up" => 1,
        _ => 2,
    }
}
