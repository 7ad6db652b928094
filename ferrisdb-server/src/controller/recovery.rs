//! Recovery of the transaction system, run by the controller group's leader (FoundationDB's
//! master recovery, `design/recovery-internals.md`, in FerrisDB's shape).
//!
//! A generation is one coordinator and `log_replication` log servers. Every commit is durable
//! on *all* of the generation's log servers before its coordinator acknowledges it, and each
//! log server holds a prefix of the generation's chain of records. So:
//!
//! - locking **any one** log server of the old generation stops it for good (its coordinator
//!   can no longer reach all of them), and
//! - every acknowledged version is on every log server of the old generation, so the largest
//!   durable end among the locked ones, the **recovery version**, is at or above every
//!   acknowledged version; nothing above it was acknowledged (it is on no locked log).
//!
//! When the generation fails ([`needs_recovery`]: its coordinator silent, restarted,
//! replaced or reporting its generation broken, or one of its log servers silent), the leader:
//!
//! 1. takes the next epoch through Raft (`BeginRecovery`: two recoveries never share one);
//! 2. locks the old generation's log servers at that epoch and reads their durable ends;
//!    at least one must answer, under the id the generation recorded (a log server whose disk
//!    was replaced comes back under a new id and does not count);
//! 3. [`plan`]s the new generation: the recovery version, its log servers (the locked ones
//!    first, then other healthy log servers) and its first version, one MVCC window above the
//!    recovery version (read versions of the old generation are then too old);
//! 4. brings each new log server to the recovery version: a locked one gets the records it
//!    lacks, any other is reset to start where the best locked log starts and gets all of its
//!    records;
//! 5. records the new generation through Raft (`CompleteRecovery`, refused if a newer
//!    recovery began meanwhile), and only then
//! 6. once [`RECOVERY_LEASE_WAIT`] has passed since the locks were answered (the old
//!    coordinator's read-version lease has run out by then), recruits the coordinator
//!    (`StartGeneration`), which confirms the record, appends the recovery commit to every
//!    new log server and starts accepting commits.
//!
//! Storage servers read only versions known committed ([`crate::log::server`]), which are at
//! or below the recovery version, so none ever holds a version the recovery discards: nothing
//! is rolled back. Waiting states (no log server of the old generation answers, too few
//! healthy log servers, no healthy coordinator) are reported in `status` and retried.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use ferrisdb_core::{Error, Version};
use ferrisdb_proto::v1;
use ferrisdb_proto::v1::log_server_client::LogServerClient;
use ferrisdb_proto::v1::transaction_coordinator_client::TransactionCoordinatorClient;
use tonic::transport::Channel;

use super::cluster::Controller;
use super::membership::{Role, RoleStatus};
use super::metadata::Generation;
use super::raft::Command;
use super::state::ClusterState;
use crate::coordinator::replicated_log::RECOVERY_LEASE_WAIT;

/// Most log servers a generation may have.
pub const MAX_LOG_REPLICATION: u32 = 5;
/// How long a recovery waits for one log server's answer.
const LOG_CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a recovery waits for the coordinator to start the generation.
const START_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes of records copied per read.
const COPY_CHUNK_BYTES: u64 = 4 << 20;

/// What this leader's recovery is doing, for `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryProgress {
    /// In words: "waiting: …", "locking logs", "copying logs", "starting coordinator",
    /// "accepting commits" (empty before the first recovery this leader ran).
    pub state: String,
    /// Why the last recovery began.
    pub reason: String,
    /// When the current recovery began (`None` while none runs).
    pub started: Option<Instant>,
    /// How long the last finished recovery took.
    pub last_duration: Option<Duration>,
    /// When the last recovery finished (its coordinator's heartbeats may still report the
    /// previous generation for a moment after).
    pub finished: Option<Instant>,
}

/// Why the current generation must be replaced, if it must. `None` also while there is no
/// registered coordinator to recruit.
pub fn needs_recovery(state: &ClusterState, now: Instant) -> Option<String> {
    let coordinator = state.coordinator()?;
    let g = &state.generation;
    if g.epoch == 0 {
        return Some("the transaction system has not started yet".into());
    }
    if g.coordinator_id != coordinator.record.id {
        return Some(format!(
            "the generation's coordinator {} is no longer registered",
            g.coordinator_id
        ));
    }
    let m = &state.membership;
    if m.is_silent(coordinator, now) {
        return Some(format!(
            "coordinator {} silent for {:.1} s",
            coordinator.record.id,
            m.silence(coordinator, now).as_secs_f64()
        ));
    }
    // Right after a recovery the coordinator's heartbeats may still describe the previous
    // generation for up to a liveness timeout.
    let settling = state
        .recovery
        .finished
        .is_some_and(|t| now.saturating_duration_since(t) <= m.liveness().timeout());
    if let Some(RoleStatus::Coordinator(s)) = &coordinator.status
        && !settling
    {
        if s.serving_epoch != g.epoch {
            return Some(format!(
                "coordinator {} serves generation {}, not {}",
                coordinator.record.id, s.serving_epoch, g.epoch
            ));
        }
        if let Some(failure) = &s.generation_failure {
            return Some(format!("generation {} failed: {failure}", g.epoch));
        }
    }
    for id in &g.logs {
        match m.workers().iter().find(|w| &w.record.id == id) {
            None => return Some(format!("log server {id} is no longer registered")),
            Some(w) if m.is_silent(w, now) => {
                return Some(format!(
                    "log server {id} silent for {:.1} s",
                    m.silence(w, now).as_secs_f64()
                ));
            }
            Some(_) => {}
        }
    }
    None
}

/// A log server the recovery locked, and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockedLog {
    /// Worker id.
    pub id: String,
    /// Address.
    pub address: String,
    /// Its newest record.
    pub durable: Version,
    /// Versions at or below this are no longer held.
    pub retained_from: Version,
}

/// A log server that may join the new generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogCandidate {
    /// Worker id.
    pub id: String,
    /// Address.
    pub address: String,
}

/// A log server of the new generation and how it reaches the recovery version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLog {
    /// Worker id.
    pub id: String,
    /// Address.
    pub address: String,
    /// `Some(v)`: a locked log holding every version up to `v`, which gets the records after
    /// it; `None`: a log reset to start where the source starts, which gets all its records.
    pub holds_through: Option<Version>,
}

/// The new generation a recovery builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Every acknowledged version is at or below it.
    pub recovery_version: Version,
    /// The new generation's first version.
    pub start_version: Version,
    /// The locked log holding the most (records are copied from it); `None` for the first
    /// generation.
    pub source: Option<LockedLog>,
    /// The new generation's log servers.
    pub logs: Vec<NewLog>,
}

/// Plans the new generation from the old generation's log servers (`old_logs`), those of them
/// the recovery locked, the other healthy log servers, the replication wanted and the wall
/// clock (`now`, in versions). `Err` says what the recovery waits for.
pub fn plan(
    old_logs: &[String],
    locked: &[LockedLog],
    healthy: &[LogCandidate],
    replication: usize,
    now: Version,
) -> Result<Plan, String> {
    if !old_logs.is_empty() && locked.is_empty() {
        return Err(format!(
            "none of the {} log servers of the old generation ({}) can be locked",
            old_logs.len(),
            old_logs.join(", ")
        ));
    }
    let source = locked.iter().max_by_key(|l| l.durable).cloned();
    let recovery_version = source.as_ref().map_or(Version::ZERO, |s| s.durable);
    let mut by_data: Vec<&LockedLog> = locked.iter().collect();
    by_data.sort_by(|a, b| b.durable.cmp(&a.durable).then(a.id.cmp(&b.id)));
    let mut logs: Vec<NewLog> = by_data
        .into_iter()
        .map(|l| NewLog {
            id: l.id.clone(),
            address: l.address.clone(),
            holds_through: Some(l.durable),
        })
        .collect();
    let mut others: Vec<&LogCandidate> = healthy
        .iter()
        .filter(|c| !locked.iter().any(|l| l.id == c.id))
        .collect();
    others.sort_by(|a, b| a.id.cmp(&b.id));
    logs.extend(others.into_iter().map(|c| NewLog {
        id: c.id.clone(),
        address: c.address.clone(),
        holds_through: None,
    }));
    if logs.len() < replication {
        return Err(format!(
            "{replication} log servers are needed, {} are healthy",
            logs.len()
        ));
    }
    logs.truncate(replication);
    let start_version = Version(
        recovery_version
            .get()
            .saturating_add(Version::MVCC_WINDOW)
            .max(now.get())
            .max(recovery_version.get().saturating_add(1)),
    );
    Ok(Plan {
        recovery_version,
        start_version,
        source,
        logs,
    })
}

/// What a recovery needs from the leader's view, taken once at its start.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The generation being replaced.
    pub old: Generation,
    /// The epoch the recovery takes.
    pub epoch: u64,
    /// Log servers per generation.
    pub replication: usize,
    /// Address of every registered log server, by id.
    pub log_addresses: BTreeMap<String, String>,
    /// Registered log servers heard from recently.
    pub healthy_logs: Vec<LogCandidate>,
    /// The coordinator to recruit: id and address (`None`: none is healthy).
    pub coordinator: Option<(String, String)>,
}

impl Inputs {
    /// Reads the inputs from the leader's view.
    pub fn from_state(state: &ClusterState, now: Instant) -> Inputs {
        let m = &state.membership;
        let logs = m.workers().iter().filter(|w| w.record.role == Role::Log);
        Inputs {
            old: state.generation.clone(),
            epoch: state
                .recovering_epoch
                .max(state.generation.epoch)
                .saturating_add(1),
            replication: state.log_replication.max(1) as usize,
            log_addresses: logs
                .clone()
                .map(|w| (w.record.id.clone(), w.record.address.clone()))
                .collect(),
            // Heard from lately and reporting no problem (a log server whose disk failed
            // says so).
            healthy_logs: logs
                .filter(|w| m.is_healthy(w, now))
                .map(|w| LogCandidate {
                    id: w.record.id.clone(),
                    address: w.record.address.clone(),
                })
                .collect(),
            // The generation's coordinator if it is healthy, else the healthy one registered
            // last (a standby).
            coordinator: m
                .workers()
                .iter()
                .rev()
                .filter(|w| w.record.role == Role::Coordinator && m.is_healthy(w, now))
                .min_by_key(|w| w.record.id != state.generation.coordinator_id)
                .map(|c| (c.record.id.clone(), c.record.address.clone())),
        }
    }
}

/// A client of the log server at `address`.
fn log_client(address: &str) -> Result<LogServerClient<Channel>, Error> {
    Ok(LogServerClient::new(ferrisdb_proto::transport::channel(
        &crate::worker::endpoint(address)?,
    ))
    .max_decoding_message_size(crate::grpc::MAX_MESSAGE_BYTES)
    .max_encoding_message_size(crate::grpc::MAX_MESSAGE_BYTES))
}

fn from_status(s: &tonic::Status) -> Error {
    ferrisdb_proto::status::from_status(s)
}

/// Locks the log server `id` at `address` at `epoch`; `None` if it cannot be reached in time
/// or answers under another id (its disk was replaced).
async fn lock_log(id: &str, address: &str, epoch: u64) -> Option<LockedLog> {
    let mut client = log_client(address).ok()?;
    let call = client.lock(v1::LockRequest { epoch });
    match tokio::time::timeout(LOG_CALL_TIMEOUT, call).await {
        Ok(Ok(reply)) => {
            let r = reply.into_inner();
            if r.log_id != id {
                tracing::warn!(expected = id, found = %r.log_id, %address, "a different log server answers at this address");
                return None;
            }
            Some(LockedLog {
                id: id.to_string(),
                address: address.to_string(),
                durable: Version(r.durable_version),
                retained_from: Version(r.retained_from),
            })
        }
        Ok(Err(status)) => {
            tracing::warn!(log = id, %address, "locking the log server: {}", from_status(&status));
            None
        }
        Err(_) => {
            tracing::warn!(log = id, %address, "locking the log server timed out");
            None
        }
    }
}

/// Locks the old generation's log servers at `epoch` (concurrently).
pub async fn lock_old_logs(inputs: &Inputs) -> Vec<LockedLog> {
    let calls = inputs.old.logs.iter().filter_map(|id| {
        let address = inputs.log_addresses.get(id)?.clone();
        let (id, epoch) = (id.clone(), inputs.epoch);
        Some(async move { lock_log(&id, &address, epoch).await })
    });
    futures_util::future::join_all(calls)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Brings every log server of the plan to the recovery version (see the module docs).
pub async fn fill_logs(plan: &Plan, epoch: u64) -> Result<(), Error> {
    let fills = plan.logs.iter().map(|log| fill_log(plan, log, epoch));
    for result in futures_util::future::join_all(fills).await {
        result?;
    }
    Ok(())
}

async fn fill_log(plan: &Plan, log: &NewLog, epoch: u64) -> Result<(), Error> {
    let rv = plan.recovery_version;
    let after = match log.holds_through {
        Some(v) => v,
        None => {
            // Recruited from outside the old generation: lock it at this epoch (so it takes
            // this generation's appends) and start it where the source starts.
            lock_log(&log.id, &log.address, epoch)
                .await
                .ok_or_else(|| {
                    Error::Unavailable(format!(
                        "log server {} at {} could not be locked",
                        log.id, log.address
                    ))
                })?;
            let start = plan
                .source
                .as_ref()
                .map_or(Version::ZERO, |s| s.retained_from);
            let mut client = log_client(&log.address)?;
            tokio::time::timeout(
                LOG_CALL_TIMEOUT,
                client.reset(v1::ResetRequest {
                    epoch,
                    start_version: start.get(),
                }),
            )
            .await
            .map_err(|_| Error::TimedOut(format!("resetting log server {}", log.id)))?
            .map_err(|s| from_status(&s))?;
            start
        }
    };
    let Some(source) = plan.source.as_ref().filter(|_| after < rv) else {
        return Ok(());
    };
    copy_records(source, log, after, rv, epoch).await
}

/// Copies the records of `(after, through]` from `source` to `target` over one append stream
/// and waits until the target has them durable.
async fn copy_records(
    source: &LockedLog,
    target: &NewLog,
    after: Version,
    through: Version,
    epoch: u64,
) -> Result<(), Error> {
    let mut from = log_client(&source.address)?;
    let mut to = log_client(&target.address)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<v1::AppendRequest>(16);
    let outgoing =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) });
    let mut answers = tokio::time::timeout(LOG_CALL_TIMEOUT, to.append(outgoing))
        .await
        .map_err(|_| Error::TimedOut(format!("opening an append stream to {}", target.id)))?
        .map_err(|s| from_status(&s))?
        .into_inner();
    let mut next = after;
    while next < through {
        let read = tokio::time::timeout(
            LOG_CALL_TIMEOUT,
            from.read_records(v1::ReadRecordsRequest {
                epoch,
                after_version: next.get(),
                through_version: through.get(),
                max_bytes: COPY_CHUNK_BYTES,
            }),
        )
        .await
        .map_err(|_| Error::TimedOut(format!("reading records from {}", source.id)))?
        .map_err(|s| from_status(&s))?
        .into_inner();
        let Some(last) = read.records.last() else {
            return Err(Error::Internal(format!(
                "log server {} holds records up to {through} but returned none after {next}",
                source.id
            )));
        };
        let last = crate::log::record::decode(last)
            .map_err(|e| Error::Internal(format!("a copied record does not decode: {e}")))?
            .version;
        for record in read.records {
            tx.send(v1::AppendRequest {
                epoch,
                record,
                known_committed: 0,
                truncate_through: 0,
                probe: 0,
                redundant_through: 0,
            })
            .await
            .map_err(|_| Error::Unavailable(format!("the append stream to {} ended", target.id)))?;
        }
        next = last;
    }
    drop(tx);
    loop {
        let answer = tokio::time::timeout(LOG_CALL_TIMEOUT, answers.message())
            .await
            .map_err(|_| Error::TimedOut(format!("copying records to {}", target.id)))?
            .map_err(|s| from_status(&s))?;
        match answer {
            Some(a) if a.durable_version >= through.get() => return Ok(()),
            Some(_) => {}
            None => {
                return Err(Error::Unavailable(format!(
                    "log server {} ended the copy before it was durable",
                    target.id
                )));
            }
        }
    }
}

/// Recruits the coordinator at `address` for the recorded generation `g`.
pub async fn start_coordinator(
    address: &str,
    g: &Generation,
    log_addresses: &BTreeMap<String, String>,
) -> Result<(), Error> {
    let mut client = TransactionCoordinatorClient::new(ferrisdb_proto::transport::channel(
        &crate::worker::endpoint(address)?,
    ));
    let request = v1::StartGenerationRequest {
        epoch: g.epoch,
        logs: g
            .logs
            .iter()
            .map(|id| v1::GenerationLog {
                log_id: id.clone(),
                address: log_addresses.get(id).cloned().unwrap_or_default(),
            })
            .collect(),
        recovery_version: g.recovery_version,
        start_version: g.start_version,
    };
    tokio::time::timeout(START_TIMEOUT, client.start_generation(request))
        .await
        .map_err(|_| {
            Error::TimedOut(format!(
                "the coordinator at {address} did not start the generation"
            ))
        })?
        .map_err(|s| from_status(&s))?;
    Ok(())
}

/// How often the leader checks whether the transaction system needs a recovery.
pub const CHECK_EVERY: Duration = Duration::from_millis(100);

/// Checks the transaction system every [`CHECK_EVERY`] while this replica leads and recovers
/// it when it needs it. Runs until the task is aborted.
pub async fn run(controller: std::sync::Arc<Controller>) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !controller.group().believes_it_leads() {
            continue;
        }
        let needed = controller
            .view(|state, now| {
                needs_recovery(state, now).map(|r| (r, Inputs::from_state(state, now)))
            })
            .await;
        let (reason, inputs) = match needed {
            Ok(Some(needed)) => needed,
            Ok(None) => {
                // The generation serves again by itself (the coordinator a recovery waited
                // for came back healthy and still serves it): nothing is waited for any more.
                controller
                    .update_recovery(|p| {
                        if p.state.starts_with("waiting") {
                            p.state = "accepting commits".into();
                        }
                    })
                    .await;
                continue;
            }
            Err(_) => continue,
        };
        if let Err(e) = recover(&controller, &reason, inputs).await {
            tracing::warn!(%reason, "recovery of the transaction system did not finish: {e}");
            controller
                .update_recovery(|p| {
                    if !p.state.starts_with("waiting") {
                        p.state = format!("waiting: {e}");
                    }
                    p.started = None;
                })
                .await;
            // Every attempt takes an epoch: do not spin.
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
    }
}

/// One recovery (see the module docs).
async fn recover(controller: &Controller, reason: &str, inputs: Inputs) -> Result<(), Error> {
    let began = Instant::now();
    let Some((coordinator_id, coordinator_address)) = inputs.coordinator.clone() else {
        controller
            .update_recovery(|p| {
                p.state = "waiting: no healthy coordinator to recruit".into();
                p.reason = reason.to_string();
            })
            .await;
        return Ok(());
    };
    tracing::info!(epoch = inputs.epoch, %reason, "recovering the transaction system");
    controller
        .update_recovery(|p| {
            // A retry keeps saying what the last attempt waited for until it gets further.
            if !p.state.starts_with("waiting") {
                p.state = "locking logs".into();
            }
            p.reason = reason.to_string();
            p.started = Some(began);
        })
        .await;
    controller
        .propose_checked(Command::BeginRecovery {
            epoch: inputs.epoch,
        })
        .await?;
    let locked = lock_old_logs(&inputs).await;
    // The old coordinator may hand out read versions for a lease after sending its last
    // confirmed probe, which every log server answered before it took a lock; a lock answered
    // by now was taken after that probe was sent, so this generation waits out the lease from
    // here before it accepts commits (`coordinator/replicated_log.rs`). Timing from the lock
    // requests' sending would not do: a delayed lock may land after a later probe.
    let lease_over = tokio::time::Instant::now() + RECOVERY_LEASE_WAIT;
    let plan = match plan(
        &inputs.old.logs,
        &locked,
        &inputs.healthy_logs,
        inputs.replication,
        controller.now_version(),
    ) {
        Ok(plan) => plan,
        Err(why) => {
            controller
                .update_recovery(|p| p.state = format!("waiting: {why}"))
                .await;
            return Err(Error::Unavailable(why));
        }
    };
    tracing::info!(
        epoch = inputs.epoch,
        recovery_version = %plan.recovery_version,
        start_version = %plan.start_version,
        locked = locked.len(),
        logs = ?plan.logs.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(),
        "old generation locked"
    );
    controller
        .update_recovery(|p| p.state = "copying logs".into())
        .await;
    // BUGGIFY: a slow recovery: the old generation stays locked and the new one not yet
    // started for a while longer.
    if ferrisdb_core::buggify!() {
        tokio::time::sleep(Duration::from_millis(ferrisdb_core::random::up_to(500))).await;
    }
    fill_logs(&plan, inputs.epoch).await?;
    let generation = Generation {
        epoch: inputs.epoch,
        coordinator_id,
        logs: plan.logs.iter().map(|l| l.id.clone()).collect(),
        recovery_version: plan.recovery_version.get(),
        start_version: plan.start_version.get(),
    };
    controller
        .update_recovery(|p| p.state = "starting coordinator".into())
        .await;
    controller
        .propose_checked(Command::CompleteRecovery {
            generation: generation.clone(),
            forget_logs: inputs
                .log_addresses
                .keys()
                .filter(|id| !inputs.healthy_logs.iter().any(|l| &l.id == *id))
                .filter(|id| !generation.logs.contains(id))
                .cloned()
                .collect(),
        })
        .await?;
    if !inputs.old.logs.is_empty() {
        tokio::time::sleep_until(lease_over).await;
    }
    start_coordinator(&coordinator_address, &generation, &inputs.log_addresses).await?;
    let took = began.elapsed();
    tracing::info!(
        epoch = generation.epoch,
        took_ms = took.as_millis() as u64,
        "the transaction system accepts commits"
    );
    controller
        .update_recovery(|p| {
            p.state = "accepting commits".into();
            p.started = None;
            p.last_duration = Some(took);
            p.finished = Some(Instant::now());
        })
        .await;
    Ok(())
}

#[cfg(test)]
mod tests;
