//! [`ReplicatedLog`]: the commit pipeline's log in a cluster, the log servers of the
//! generation the coordinator serves.
//!
//! Each batch is encoded once (`log/record.rs`) and sent on one `Append` stream per log
//! server; [`sync`](ReplicatedLog::sync) returns once **every** log server of the generation
//! has acknowledged it durable, so a commit is only ever acknowledged when all of them hold
//! it (a recovery may then lock any one of them). Publishing a batch tells every log server
//! that it is committed (`known_committed`), which is what lets storage servers read it; the
//! notice rides on its own small message so readers do not wait for the next batch. Every
//! message also carries the version every storage server has made durable, so the log
//! servers may truncate.
//!
//! Before the coordinator hands out a read version it confirms that its generation still
//! holds every log server's lock ([`ReplicatedLog::confirm_epoch`], FoundationDB's
//! confirmEpochLive): a probe, sent after the request arrived, that every log server answers
//! once it has checked the lock. A newer generation can only commit after locking at least
//! one of them, so a read version handed out after a confirmed probe is never older than a
//! commit of a newer generation. Probes are coalesced: one is in flight at a time, and it
//! covers every request that arrived before it was sent.
//!
//! A confirmed probe also grants a **read-version lease** of [`READ_VERSION_LEASE`] from the
//! moment it was sent: until then read versions are handed out without another probe (one is
//! sent in the background once half the lease has passed). This is safe because no newer
//! generation accepts a commit until [`RECOVERY_LEASE_WAIT`] (longer than the lease) after the
//! old generation's log servers answered its recovery's lock requests
//! (`controller/recovery.rs`): a log server answers the probe before it takes the lock, so
//! the lock is answered after the probe was sent, and every commit of a newer generation
//! comes after the lease ran out. Leases are measured
//! on monotonic clocks, which run on while a process is paused, so a coordinator resumed
//! after a pause finds its lease expired and probes again. One client's point read thus
//! costs two round trips (read version, storage server) instead of three.
//!
//! Any failure is final for the generation: a stream that ends or errs (the log server died,
//! was locked by a newer generation, or refused a record), or a batch not acknowledged within
//! [`ACK_TIMEOUT`] (a paused or partitioned log server), fails every `sync` from then on. The
//! pipeline then refuses commits and the coordinator reports the failure, and the controller
//! recovers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ferrisdb_core::{Error, Mutation, Result, Version};
use ferrisdb_proto::v1;
use ferrisdb_proto::v1::log_server_client::LogServerClient;
use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;

use super::commit::{LogPlace, LogWriter};
use crate::log::{LogStats, LoggedBatch, Submitted, record};

/// How long after a probe was sent that every log server of the generation answered the
/// coordinator may hand out read versions without probing again (see the module docs).
pub const READ_VERSION_LEASE: Duration = Duration::from_millis(80);

/// How long a recovery waits, after the old generation's log servers answered its lock
/// requests, before its coordinator may accept commits: longer than [`READ_VERSION_LEASE`]
/// by a margin for clock-rate differences between hosts.
pub const RECOVERY_LEASE_WAIT: Duration = Duration::from_millis(100);

const _: () = assert!(READ_VERSION_LEASE.as_millis() + 10 < RECOVERY_LEASE_WAIT.as_millis());

/// Longest a batch may wait for every log server's acknowledgement before the generation is
/// given up.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest opening the append streams may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(2);

/// One log server of the generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogMember {
    /// Its worker id.
    pub id: String,
    /// Its address.
    pub address: String,
}

#[derive(Debug)]
struct Acks {
    /// Newest version each log server acknowledged durable.
    durable: Vec<Version>,
    /// Newest probe each log server answered.
    probed: Vec<u64>,
    /// Why the generation's log failed, once it has.
    failure: Option<String>,
}

/// What probe waiters watch: the newest probe every log server answered, and whether the log
/// failed.
type ProbeProgress = (u64, bool);

#[derive(Debug)]
struct Shared {
    members: Vec<LogMember>,
    acks: Mutex<Acks>,
    /// Woken whenever an acknowledgement arrives or the log fails.
    changed: Notify,
    probes: watch::Sender<ProbeProgress>,
}

impl Shared {
    fn fail(&self, reason: String) {
        let mut acks = self.acks.lock();
        if acks.failure.is_none() {
            tracing::warn!(%reason, "the generation's log failed");
            acks.failure = Some(reason);
        }
        self.changed.notify_waiters();
        drop(acks);
        self.probes.send_modify(|p| p.1 = true);
    }
}

/// The probe rounds of one generation.
#[derive(Debug, Default)]
struct Prober {
    /// The newest probe sent (probes are numbered from 1).
    sent: Mutex<u64>,
    /// Wakes the probing task: a read version waits for the next probe.
    wanted: Notify,
    /// When the newest probe that every log server answered was sent (the lease's start).
    confirmed: Mutex<Option<Instant>>,
}

/// The log servers of one generation, as a [`LogWriter`].
#[derive(Debug)]
pub struct ReplicatedLog {
    epoch: u64,
    shared: Arc<Shared>,
    senders: Vec<mpsc::UnboundedSender<v1::AppendRequest>>,
    prober: Arc<Prober>,
    /// Ends the probing task when the log is dropped.
    _probing: AbortOnDrop,
    /// The newest record submitted (the next one follows it).
    last: Mutex<Version>,
    known_committed: AtomicU64,
    truncate_through: AtomicU64,
    /// Every shard has every version up to this one durable on at least one replica.
    redundant_through: AtomicU64,
    records: AtomicU64,
    bytes: AtomicU64,
}

impl ReplicatedLog {
    /// Opens an append stream to every log server of generation `epoch`, whose logs all end at
    /// `recovery_version` (the next record follows it). Fails if a stream cannot be opened.
    pub async fn open(
        epoch: u64,
        members: Vec<LogMember>,
        recovery_version: Version,
    ) -> Result<Arc<ReplicatedLog>> {
        if members.is_empty() {
            return Err(Error::InvalidArgument(
                "a generation needs at least one log server".into(),
            ));
        }
        let shared = Arc::new(Shared {
            acks: Mutex::new(Acks {
                durable: vec![recovery_version; members.len()],
                probed: vec![0; members.len()],
                failure: None,
            }),
            changed: Notify::new(),
            members: members.clone(),
            probes: watch::channel((0, false)).0,
        });
        let mut senders = Vec::with_capacity(members.len());
        for (i, member) in members.iter().enumerate() {
            let mut client = LogServerClient::new(ferrisdb_proto::transport::channel(
                &crate::worker::endpoint(&member.address)?,
            ))
            .max_decoding_message_size(crate::grpc::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(crate::grpc::MAX_MESSAGE_BYTES);
            let (tx, rx) = mpsc::unbounded_channel::<v1::AppendRequest>();
            let outgoing = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|r| (r, rx))
            });
            let answers = tokio::time::timeout(OPEN_TIMEOUT, client.append(outgoing))
                .await
                .map_err(|_| {
                    Error::Unavailable(format!(
                        "opening the append stream to log server {} at {} timed out",
                        member.id, member.address
                    ))
                })?
                .map_err(|s| ferrisdb_proto::status::from_status(&s))?
                .into_inner();
            tokio::spawn(follow_acks(shared.clone(), i, answers));
            senders.push(tx);
        }
        let prober = Arc::new(Prober::default());
        let probing = tokio::spawn(run_prober(
            epoch,
            shared.clone(),
            senders.clone(),
            prober.clone(),
        ));
        Ok(Arc::new(ReplicatedLog {
            epoch,
            shared,
            senders,
            prober,
            _probing: AbortOnDrop(probing),
            last: Mutex::new(recovery_version),
            known_committed: AtomicU64::new(recovery_version.get()),
            truncate_through: AtomicU64::new(0),
            redundant_through: AtomicU64::new(0),
            records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }))
    }

    /// The generation's log servers.
    pub fn members(&self) -> &[LogMember] {
        &self.shared.members
    }

    /// Confirms that this generation still holds the lock of every log server: at once while
    /// the read-version lease of the last confirmed probe runs (renewing it in the background
    /// past half its length), else by waiting for a probe sent after this call began to be
    /// answered by all of them (see the module docs). Fails, and fails the log, if one does
    /// not answer within [`ACK_TIMEOUT`].
    pub async fn confirm_epoch(&self) -> Result<()> {
        let confirmed = *self.prober.confirmed.lock();
        if let Some(at) = confirmed
            && self.failure().is_none()
        {
            let age = at.elapsed();
            if age < READ_VERSION_LEASE {
                if age >= READ_VERSION_LEASE / 2 {
                    // Renew in the background so steady traffic never waits for a probe.
                    self.prober.wanted.notify_one();
                }
                return Ok(());
            }
        }
        let need = *self.prober.sent.lock() + 1;
        self.prober.wanted.notify_one();
        let mut progress = self.shared.probes.subscribe();
        let answered =
            tokio::time::timeout(ACK_TIMEOUT, progress.wait_for(|p| p.0 >= need || p.1)).await;
        match answered {
            Ok(Ok(p)) if p.0 >= need => Ok(()),
            Ok(_) => Err(Error::Unavailable(
                self.failure()
                    .unwrap_or_else(|| "the generation's log failed".into()),
            )),
            Err(_) => {
                let reason = format!(
                    "the log servers did not confirm the generation within {ACK_TIMEOUT:?}"
                );
                self.shared.fail(reason.clone());
                Err(Error::Unavailable(reason))
            }
        }
    }

    /// Why the log failed, if it has.
    pub fn failure(&self) -> Option<String> {
        self.shared.acks.lock().failure.clone()
    }

    /// Lets the log servers drop every version up to `version` (every storage server has it
    /// durable); sent with the next message.
    pub fn set_truncate_through(&self, version: Version) {
        self.truncate_through
            .fetch_max(version.get(), Ordering::AcqRel);
    }

    /// Lets a log server over its retention budget drop every version up to `version` (every
    /// shard has it durable on at least one replica); sent with the next message.
    pub fn set_redundant_through(&self, version: Version) {
        self.redundant_through
            .fetch_max(version.get(), Ordering::AcqRel);
    }

    /// Waits until every log server has acknowledged `version` durable; fails the log if one
    /// has not within [`ACK_TIMEOUT`].
    async fn wait_for_acks(&self, version: Version) -> Result<()> {
        let deadline = Instant::now() + ACK_TIMEOUT;
        loop {
            // Registered before the check, so an acknowledgement between the two wakes it.
            let mut changed = std::pin::pin!(self.shared.changed.notified());
            changed.as_mut().enable();
            {
                let acks = self.shared.acks.lock();
                if let Some(reason) = &acks.failure {
                    return Err(Error::Unavailable(reason.clone()));
                }
                if acks.durable.iter().all(|d| *d >= version) {
                    return Ok(());
                }
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                let slow: Vec<String> = {
                    let acks = self.shared.acks.lock();
                    acks.durable
                        .iter()
                        .zip(&self.shared.members)
                        .filter(|(d, _)| **d < version)
                        .map(|(_, m)| m.id.clone())
                        .collect()
                };
                if slow.is_empty() {
                    continue;
                }
                let reason = format!(
                    "log server(s) {} did not acknowledge version {version} within {ACK_TIMEOUT:?}",
                    slow.join(", ")
                );
                self.shared.fail(reason.clone());
                return Err(Error::Unavailable(reason));
            }
        }
    }

    fn send_all(&self, request: &v1::AppendRequest) -> Result<()> {
        for (sender, member) in self.senders.iter().zip(&self.shared.members) {
            if sender.send(request.clone()).is_err() {
                let reason = format!("the append stream to log server {} ended", member.id);
                self.shared.fail(reason.clone());
                return Err(Error::Unavailable(reason));
            }
        }
        Ok(())
    }

    fn request(&self, record: bytes::Bytes) -> v1::AppendRequest {
        v1::AppendRequest {
            epoch: self.epoch,
            record,
            known_committed: self.known_committed.load(Ordering::Acquire),
            truncate_through: self.truncate_through.load(Ordering::Acquire),
            probe: 0,
            redundant_through: self.redundant_through.load(Ordering::Acquire),
        }
    }
}

/// Sends a probe whenever a read version waits for one, one round at a time: a probe covers
/// every waiter that arrived before it was sent. Runs until aborted.
async fn run_prober(
    epoch: u64,
    shared: Arc<Shared>,
    senders: Vec<mpsc::UnboundedSender<v1::AppendRequest>>,
    prober: Arc<Prober>,
) {
    let mut progress = shared.probes.subscribe();
    loop {
        prober.wanted.notified().await;
        let probe = {
            let mut sent = prober.sent.lock();
            *sent += 1;
            *sent
        };
        let request = v1::AppendRequest {
            epoch,
            record: bytes::Bytes::new(),
            known_committed: 0,
            truncate_through: 0,
            probe,
            redundant_through: 0,
        };
        let sent_at = Instant::now();
        for sender in &senders {
            // A closed stream fails the log; the waiters see it.
            let _ = sender.send(request.clone());
        }
        let answered = match progress.wait_for(|p| p.0 >= probe || p.1).await {
            Ok(p) => p.0 >= probe && !p.1,
            Err(_) => return,
        };
        if answered {
            let mut confirmed = prober.confirmed.lock();
            *confirmed = Some(confirmed.map_or(sent_at, |t| t.max(sent_at)));
        }
    }
}

/// Aborts a task when dropped.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads one log server's acknowledgements until its stream ends, which fails the log.
async fn follow_acks(
    shared: Arc<Shared>,
    index: usize,
    mut answers: tonic::Streaming<v1::AppendResponse>,
) {
    let id = shared.members[index].id.clone();
    loop {
        match answers.message().await {
            Ok(Some(answer)) => {
                let mut acks = shared.acks.lock();
                let slot = &mut acks.durable[index];
                *slot = (*slot).max(Version(answer.durable_version));
                let probed = &mut acks.probed[index];
                *probed = (*probed).max(answer.probe);
                let all_probed = acks.probed.iter().copied().min().unwrap_or(0);
                drop(acks);
                shared.changed.notify_waiters();
                shared.probes.send_if_modified(|p| {
                    if all_probed > p.0 {
                        p.0 = all_probed;
                        true
                    } else {
                        false
                    }
                });
            }
            Ok(None) => {
                shared.fail(format!("log server {id} ended its append stream"));
                return;
            }
            Err(status) => {
                let e = ferrisdb_proto::status::from_status(&status);
                shared.fail(format!("log server {id}: {e}"));
                return;
            }
        }
    }
}

impl LogWriter for ReplicatedLog {
    fn submit(&self, version: Version, mutations: Vec<Mutation>) -> Result<Submitted> {
        if let Some(reason) = self.failure() {
            return Err(Error::Unavailable(reason));
        }
        let mut last = self.last.lock();
        if version <= *last {
            return Err(Error::Internal(format!(
                "commit log got version {version} after {}",
                *last
            )));
        }
        let payload = record::encode(version, *last, &mutations)?;
        let bytes = payload.len() as u64;
        self.send_all(&self.request(payload.into()))?;
        *last = version;
        self.records.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        Ok(Submitted {
            // Versions strictly increase: the version is the sequence number.
            seq: version.get(),
            batch: Arc::new(LoggedBatch {
                version,
                mutations,
                segment: 0,
                bytes,
            }),
        })
    }

    fn sync(&self, seq: u64) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.wait_for_acks(Version(seq)))
    }

    fn place(&self) -> LogPlace {
        LogPlace::Remote
    }

    fn publish(&self, batch: Arc<LoggedBatch>) {
        self.known_committed
            .fetch_max(batch.version.get(), Ordering::AcqRel);
        // A failed send fails the log; the next submit or sync reports it.
        let _ = self.send_all(&self.request(bytes::Bytes::new()));
    }

    fn stats(&self) -> LogStats {
        LogStats {
            records: self.records.load(Ordering::Relaxed),
            bytes_written: self.bytes.load(Ordering::Relaxed),
            ..LogStats::default()
        }
    }
}
