//! The gRPC backend: cluster state from the controller, read versions and commits from the
//! coordinator, reads straight from storage servers.
//!
//! Cached state: the latest `GetClusterState` answer (coordinator address, shard map, worker
//! addresses), fetched on first use and dropped by [`Backend::invalidate`] after errors that
//! show it stale (`WrongShard`, `Unavailable`, `Recovering`), and one tonic `Channel` per
//! address, created lazily and shared by every clone of the database. A read tries the replicas
//! of its shard in order and skips a replica that is unavailable or reports corruption (the
//! corruption error is returned if every replica does). A `Commit` that fails
//! without a FerrisDB error code is reported as `CommitUnknownResult`: the request may have
//! been applied. Read versions go through a [`ReadVersionBatcher`], commits and point reads
//! through [`CallBatcher`]s (one per storage server for reads), so concurrent transactions
//! share `GetReadVersion`, `CommitBatch` and `GetBatch` calls. A read-version or commit call
//! still unanswered after [`SUSPECT_AFTER`] ends as soon as the controller names another
//! coordinator or generation (a paused or cut-off coordinator that a recovery replaced):
//! `Unavailable` for a read version, `CommitUnknownResult` for a commit, both retried.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use ferrisdb_core::{Commit, Committed};
use ferrisdb_core::{Error, KeyRange, ShardMap, Version, keys::escape};
use ferrisdb_proto::convert::required;
use ferrisdb_proto::status::{ERROR_CODE_KEY, from_status, status_from_error_status};
use ferrisdb_proto::v1;
use ferrisdb_proto::v1::cluster_controller_client::ClusterControllerClient;
use ferrisdb_proto::v1::storage_server_client::StorageServerClient;
use ferrisdb_proto::v1::transaction_coordinator_client::TransactionCoordinatorClient;
use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use tonic::transport::{Channel, Endpoint};

use crate::backend::{Backend, FirstRead, RangeChunk, RangeRead};
use crate::call_batch::{COMMIT_LIMITS, CallBatcher, READ_LIMITS};
use crate::first_read::FirstReadPolicy;
use crate::read_version::ReadVersionBatcher;
use crate::routing::{locate, replicas_from, resume_after};
use crate::session::{Commits, Ranges, ReadVersions, Reads, Session};
use crate::{KeyValue, Priority};

/// Timeout for opening a connection to one process.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest the client waits for the coordinator to answer a read-version or commit call. A
/// coordinator that does not answer (paused, or cut off) is presumed replaced: the client
/// refreshes the cluster state and retries (a commit's outcome is then unknown).
pub const COORDINATOR_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a read-version or commit call waits before the client starts asking the
/// controller, every [`REPLACEMENT_POLL`], whether another generation of the transaction
/// system has replaced the coordinator it waits for. A call to a coordinator that was replaced
/// (paused, cut off) ends as soon as the controller says so instead of after
/// [`COORDINATOR_CALL_TIMEOUT`] (FoundationDB's clients likewise drop requests to proxies of a
/// generation that is gone).
pub const SUSPECT_AFTER: Duration = Duration::from_millis(500);

/// How often waiting calls, and transactions backing off after a coordinator failure, look
/// for a replaced coordinator (one controller call per period however many wait).
pub const REPLACEMENT_POLL: Duration = Duration::from_millis(100);

/// The coordinator serving a generation: its address and the generation.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ServingCoordinator {
    address: String,
    epoch: u64,
}

/// What the client needs of the cluster state.
#[derive(Debug)]
struct ClusterView {
    coordinator: String,
    /// The generation of the transaction system the controller reported.
    epoch: u64,
    shard_map: ShardMap,
    /// Worker id → address.
    addresses: BTreeMap<String, String>,
}

/// The [`Backend`] speaking gRPC to a real cluster.
pub(crate) struct GrpcBackend {
    controllers: Vec<String>,
    /// The controller replica that last answered (the group's leader then).
    last_leader: Mutex<Option<String>>,
    channels: Mutex<BTreeMap<String, Channel>>,
    view: Mutex<Option<Arc<ClusterView>>>,
    /// Serializes refreshes so a burst of errors triggers one `GetClusterState`.
    refreshing: tokio::sync::Mutex<()>,
    /// The coordinator the last read-version or commit call went to.
    last_serving: Mutex<Option<ServingCoordinator>>,
    /// The latest fresh look at the serving coordinator, shared by the calls waiting on a slow
    /// one (see [`SUSPECT_AFTER`]).
    serving_checked: tokio::sync::Mutex<Option<(tokio::time::Instant, ServingCoordinator)>>,
    /// Shares `GetReadVersion` requests between concurrent transactions.
    read_versions: Arc<ReadVersionBatcher<Arc<Session<ReadVersions>>>>,
    /// Shares `CommitBatch` calls between concurrent transactions.
    commits: Arc<CommitBatcher>,
    /// The commit session to each coordinator (by address) the commits go through.
    commit_sessions: Mutex<BTreeMap<String, Arc<Session<Commits>>>>,
    /// The read-version session to each coordinator (by address).
    read_version_sessions: Mutex<BTreeMap<String, Arc<Session<ReadVersions>>>>,
    /// Shares `GetBatch` calls to each storage server (by address) between concurrent reads.
    reads: Mutex<BTreeMap<String, Arc<ReadBatcher>>>,
    /// The read session to each storage server (by address) the point reads go through.
    read_sessions: Mutex<BTreeMap<String, Arc<Session<Reads>>>>,
    /// The range session to each storage server (by address) range reads start on.
    range_sessions: Mutex<BTreeMap<String, Arc<Session<Ranges>>>>,
    /// Counts range reads, each starting at the next replica of its shard: a scan has no
    /// batch to share, so spreading scans costs nothing and shares the replicas' work (point
    /// reads go to the first replica, where they batch best; `docs/benchmarks.md`).
    range_turn: std::sync::atomic::AtomicUsize,
    /// When a transaction's first read goes out beside its read-version request.
    first_reads: FirstReadPolicy,
}

type CommitBatcher = CallBatcher<Arc<Session<Commits>>, v1::CommitRequest, Committed>;
type ReadBatcher = CallBatcher<Arc<Session<Reads>>, v1::StorageGetRequest, StoredValue>;

/// A storage server's answer to a point read: the value (`None`: absent) and the version it
/// was read at.
type StoredValue = (Option<Bytes>, Version);

impl GrpcBackend {
    /// A backend for the cluster whose controllers are at `controllers`.
    pub fn new(controllers: Vec<String>) -> Self {
        GrpcBackend {
            controllers,
            last_leader: Mutex::new(None),
            channels: Mutex::new(BTreeMap::new()),
            view: Mutex::new(None),
            refreshing: tokio::sync::Mutex::new(()),
            serving_checked: tokio::sync::Mutex::new(None),
            last_serving: Mutex::new(None),
            read_versions: ReadVersionBatcher::new(),
            commits: CallBatcher::new(COMMIT_LIMITS),
            commit_sessions: Mutex::new(BTreeMap::new()),
            read_version_sessions: Mutex::new(BTreeMap::new()),
            reads: Mutex::new(BTreeMap::new()),
            read_sessions: Mutex::new(BTreeMap::new()),
            range_sessions: Mutex::new(BTreeMap::new()),
            range_turn: std::sync::atomic::AtomicUsize::new(0),
            first_reads: FirstReadPolicy::default(),
        }
    }

    /// Sends `read` (at a storage server's newest version, answering with that version) while
    /// it asks for a read version, and keeps the read when its version is at least the read
    /// version; otherwise the caller reads again at the read version (see [`first_read`]).
    async fn beside_read_version<T>(
        &self,
        priority: Priority,
        read: impl Future<Output = Result<(T, Version), Error>>,
    ) -> Result<FirstRead<T>, Error> {
        let (version, newest) = tokio::join!(self.read_version(priority), read);
        let version = version?;
        match newest {
            Ok((value, at)) if at >= version => {
                self.first_reads.record(true);
                self.first_reads.saw(at);
                Ok(FirstRead {
                    version: at,
                    value: Some(value),
                })
            }
            // Behind the coordinator, or failed: the transaction reads at `version` as usual
            // (and meets the failure there, if it lasts).
            _ => {
                self.first_reads.record(false);
                Ok(FirstRead {
                    version,
                    value: None,
                })
            }
        }
    }

    /// The next piece of a range read, from one replica of the shard holding its first key
    /// (successive range reads start at successive replicas): at `read.version`, or with
    /// `newest` at that replica's newest applied version once it reached `read.version`.
    /// Returns the piece and the version it was read at (0 from a server that predates
    /// `newest`).
    async fn range_read(
        &self,
        read: RangeRead,
        newest: bool,
    ) -> Result<(RangeChunk, Version), Error> {
        let view = self.view().await?;
        let piece = locate(&view.shard_map, &read.begin, &read.end, read.reverse)?;
        let req = v1::StorageGetRangeRequest {
            begin: piece.begin.clone(),
            end: piece.end.clone(),
            version: read.version.get(),
            // The client stops at `limit` itself; a larger one than a server takes is as good
            // as none.
            limit: u64::try_from(read.limit)
                .unwrap_or(u64::MAX)
                .min(ferrisdb_core::limits::MAX_RANGE_LIMIT),
            reverse: read.reverse,
            newest,
        };
        let turn = self.range_turn.fetch_add(1, Ordering::Relaxed);
        let replicas = replicas_from(&piece.shard.storage_ids, turn);
        let (kvs, at) = self
            .on_replicas(&view, &replicas, |addr, client| {
                let session = self
                    .range_sessions
                    .lock()
                    .entry(addr.to_owned())
                    .or_insert_with(|| Arc::new(Session::new(Ranges(client.clone()))))
                    .clone();
                read_range_from(session, client, req.clone(), read.limit)
            })
            .await?;
        check_order(&kvs, &piece.begin, &piece.end, read.reverse)?;
        let resume = resume_after(
            &piece,
            &kvs,
            read.limit,
            &read.begin,
            &read.end,
            read.reverse,
        );
        Ok((RangeChunk { kvs, resume }, at))
    }

    /// Reads `key` from the first replica of its shard that answers: at `version`, or with
    /// `newest` at that replica's newest applied version once it reached `version`. Returns
    /// the value and the version it was read at (0 from a server that predates `newest`).
    async fn point_read(
        &self,
        key: Bytes,
        version: Version,
        newest: bool,
    ) -> Result<StoredValue, Error> {
        let view = self.view().await?;
        let shard = view.shard_map.shard_for(&key).ok_or_else(|| {
            Error::Unavailable(format!("no shard holds key \"{}\"", escape(&key)))
        })?;
        self.on_replicas(&view, &shard.storage_ids, |addr, client| {
            let req = v1::StorageGetRequest {
                key: key.clone(),
                version: version.get(),
                newest,
            };
            let batcher = self.read_batcher(addr);
            let session = self
                .read_sessions
                .lock()
                .entry(addr.to_owned())
                .or_insert_with(|| Arc::new(Session::new(Reads(client))))
                .clone();
            async move { batcher.call(session, req, send_get_batch).await }
        })
        .await
    }

    /// The point-read batcher of the storage server at `addr`.
    fn read_batcher(&self, addr: &str) -> Arc<ReadBatcher> {
        self.reads
            .lock()
            .entry(addr.to_owned())
            .or_insert_with(|| CallBatcher::new(READ_LIMITS))
            .clone()
    }

    /// The shared channel to `addr`, created (not yet connected) on first use.
    fn channel(&self, addr: &str) -> Result<Channel, Error> {
        let mut channels = self.channels.lock();
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| Error::InvalidArgument(format!("bad address {addr:?}: {e}")))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true);
        let channel = ferrisdb_proto::transport::channel(&endpoint);
        channels.insert(addr.to_owned(), channel.clone());
        Ok(channel)
    }

    /// The cached cluster view, fetched from a controller when there is none.
    async fn view(&self) -> Result<Arc<ClusterView>, Error> {
        if let Some(v) = self.view.lock().clone() {
            return Ok(v);
        }
        let _guard = self.refreshing.lock().await;
        if let Some(v) = self.view.lock().clone() {
            return Ok(v);
        }
        let v = Arc::new(self.fetch_from_group().await?);
        *self.view.lock() = Some(v.clone());
        Ok(v)
    }

    /// A fresh cluster view from the controller group (not cached).
    async fn fetch_from_group(&self) -> Result<ClusterView, Error> {
        // The controller group's leader answers; a follower names it (tried next), and the
        // replica that answered last is tried first.
        let mut last = None;
        let mut queue: std::collections::VecDeque<String> =
            self.controllers.iter().cloned().collect();
        if let Some(leader) = self.last_leader.lock().clone() {
            queue.retain(|a| *a != leader);
            queue.push_front(leader);
        }
        let mut tried = std::collections::HashSet::new();
        while let Some(addr) = queue.pop_front() {
            if !tried.insert(addr.clone()) {
                continue;
            }
            match self.fetch_view(&addr).await {
                Ok(v) => {
                    *self.last_leader.lock() = Some(addr);
                    return Ok(v);
                }
                Err(e) => {
                    tracing::debug!(controller = %addr, error = %e, "cluster state unavailable");
                    if let Error::NotLeader(leader) = &e
                        && !leader.is_empty()
                    {
                        queue.push_front(leader.clone());
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::Unavailable("no controller address".into())))
    }

    async fn fetch_view(&self, addr: &str) -> Result<ClusterView, Error> {
        let mut client = ClusterControllerClient::new(self.channel(addr)?);
        let state = client
            .get_cluster_state(v1::GetClusterStateRequest {})
            .await
            .map_err(|s| from_status(&s))?
            .into_inner();
        let shard_map = ShardMap::try_from(required(state.shard_map, "shard_map")?)?;
        if !shard_map.is_bootstrapped() {
            return Err(Error::Unavailable(format!(
                "cluster has no shard map yet: waiting for {} storage servers to register",
                state.expected_storage_servers
            )));
        }
        let coordinator = state
            .coordinator
            .map(|c| c.address)
            .filter(|a| !a.is_empty())
            .ok_or_else(|| Error::Unavailable("no transaction coordinator registered".into()))?;
        let addresses = state
            .workers
            .into_iter()
            .map(|w| (w.worker_id, w.address))
            .collect();
        Ok(ClusterView {
            coordinator,
            epoch: state.epoch,
            shard_map,
            addresses,
        })
    }

    /// A client of the serving coordinator, and which one it is.
    async fn coordinator(
        &self,
    ) -> Result<(TransactionCoordinatorClient<Channel>, ServingCoordinator), Error> {
        let view = self.view().await?;
        let serving = ServingCoordinator {
            address: view.coordinator.clone(),
            epoch: view.epoch,
        };
        *self.last_serving.lock() = Some(serving.clone());
        Ok((
            TransactionCoordinatorClient::new(self.channel(&view.coordinator)?),
            serving,
        ))
    }

    /// The coordinator the controller names now, asked at most once per
    /// [`REPLACEMENT_POLL`] however many calls wait; a fresh answer also replaces the cached
    /// view.
    async fn serving_now(&self) -> Result<ServingCoordinator, Error> {
        let mut checked = self.serving_checked.lock().await;
        if let Some((at, serving)) = &*checked
            && at.elapsed() < REPLACEMENT_POLL
        {
            return Ok(serving.clone());
        }
        let view = self.fetch_from_group().await?;
        let serving = ServingCoordinator {
            address: view.coordinator.clone(),
            epoch: view.epoch,
        };
        *self.view.lock() = Some(Arc::new(view));
        *checked = Some((tokio::time::Instant::now(), serving.clone()));
        Ok(serving)
    }

    /// Completes once the controller names another coordinator or generation than `serving`
    /// (looked at after [`SUSPECT_AFTER`], then every [`REPLACEMENT_POLL`]); never while the
    /// controller still names it or cannot be reached.
    async fn replaced(&self, serving: &ServingCoordinator) -> ServingCoordinator {
        tokio::time::sleep(SUSPECT_AFTER).await;
        loop {
            if let Ok(now) = self.serving_now().await
                && now != *serving
            {
                return now;
            }
            tokio::time::sleep(REPLACEMENT_POLL).await;
        }
    }

    /// Runs `call` against each replica of `replicas` in order until one is neither
    /// unavailable nor reporting corruption.
    async fn on_replicas<T, F, Fut>(
        &self,
        view: &ClusterView,
        replicas: &[String],
        mut call: F,
    ) -> Result<T, Error>
    where
        F: FnMut(&str, StorageServerClient<Channel>) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let mut last = None;
        for id in replicas {
            let Some(addr) = view.addresses.get(id) else {
                last = Some(Error::Unavailable(format!(
                    "storage server {id} has no known address"
                )));
                continue;
            };
            match call(addr, StorageServerClient::new(self.channel(addr)?)).await {
                Err(Error::Unavailable(m)) => {
                    tracing::debug!(storage = %id, error = %m, "replica unavailable, trying next");
                    last = Some(Error::Unavailable(format!(
                        "storage server {id} at {addr}: {m}"
                    )));
                }
                // The map is stale for this replica (the shard moved away from it, or a new
                // server took its address): the next replica may still hold the shard, and
                // the next call fetches a fresh map.
                Err(err @ Error::WrongShard(_)) => {
                    tracing::debug!(storage = %id, error = %err, "replica does not hold the shard, trying next");
                    *self.view.lock() = None;
                    last = Some(err);
                }
                // A replica whose files are damaged refuses the read; another may hold the
                // data intact. If none does, the caller gets the corruption error.
                Err(err @ Error::Corruption { .. }) => {
                    tracing::warn!(storage = %id, error = %err, "replica reports corruption, trying next");
                    last = Some(err);
                }
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| Error::Unavailable("shard has no replicas".into())))
    }
}

impl Backend for GrpcBackend {
    fn read_version(&self, priority: Priority) -> BoxFuture<'_, Result<Version, Error>> {
        Box::pin(async move {
            let (client, serving) = self.coordinator().await?;
            let session = self
                .read_version_sessions
                .lock()
                .entry(serving.address.clone())
                .or_insert_with(|| Arc::new(Session::new(ReadVersions(client))))
                .clone();
            let fetch = move |session: Arc<Session<ReadVersions>>| async move {
                let request = v1::GetReadVersionRequest {
                    priority: match priority {
                        Priority::Default => v1::Priority::Default,
                        Priority::Batch => v1::Priority::Batch,
                        Priority::Immediate => v1::Priority::Immediate,
                    } as i32,
                };
                let resp = tokio::time::timeout(COORDINATOR_CALL_TIMEOUT, session.call(request))
                    .await
                    .map_err(|_| {
                        Error::Unavailable(format!(
                            "the coordinator did not answer a read-version request within \
                             {COORDINATOR_CALL_TIMEOUT:?}"
                        ))
                    })?
                    .map_err(Error::Unavailable)?
                    .map_err(|s| from_status(&s))?;
                Ok(Version(resp.version))
            };
            let call = async {
                match priority {
                    // Shared with the default-priority transactions queued with it.
                    Priority::Default => self.read_versions.read_version(session, fetch).await,
                    // Its own request: an immediate one must not wait for a round in flight,
                    // and a batch one must not hold default ones back while the coordinator
                    // delays it.
                    Priority::Batch | Priority::Immediate => fetch(session).await,
                }
            };
            let answer = tokio::select! {
                answer = call => answer,
                now = self.replaced(&serving) => Err(Error::Unavailable(format!(
                    "the coordinator at {} (generation {}) did not answer a read-version \
                     request, and generation {} at {} has replaced it",
                    serving.address, serving.epoch, now.epoch, now.address
                ))),
            };
            if let Ok(version) = answer {
                self.first_reads.saw(version);
            }
            answer
        })
    }

    fn try_first_read(&self, priority: Priority) -> bool {
        // Default-priority transactions only, while misses are rare (see `first_read`); the
        // simulator also tries when they are not, to exercise the misses.
        priority == Priority::Default
            && (self.first_reads.worth_trying() || ferrisdb_core::buggify!(0.3))
    }

    fn first_read(
        &self,
        priority: Priority,
        key: Bytes,
    ) -> BoxFuture<'_, Result<FirstRead<Option<Bytes>>, Error>> {
        Box::pin(async move {
            let floor = self.first_reads.floor();
            self.beside_read_version(priority, self.point_read(key, floor, true))
                .await
        })
    }

    fn first_range(
        &self,
        priority: Priority,
        read: RangeRead,
    ) -> BoxFuture<'_, Result<FirstRead<RangeChunk>, Error>> {
        Box::pin(async move {
            let read = RangeRead {
                version: self.first_reads.floor(),
                ..read
            };
            self.beside_read_version(priority, self.range_read(read, true))
                .await
        })
    }

    fn get(&self, key: Bytes, version: Version) -> BoxFuture<'_, Result<Option<Bytes>, Error>> {
        Box::pin(async move { Ok(self.point_read(key, version, false).await?.0) })
    }

    fn get_range(&self, read: RangeRead) -> BoxFuture<'_, Result<RangeChunk, Error>> {
        Box::pin(async move { Ok(self.range_read(read, false).await?.0) })
    }

    fn commit(&self, commit: Commit) -> BoxFuture<'_, Result<Committed, Error>> {
        Box::pin(async move {
            let (client, serving) = self.coordinator().await?;
            let session = self
                .commit_sessions
                .lock()
                .entry(serving.address.clone())
                .or_insert_with(|| Arc::new(Session::new(Commits(client))))
                .clone();
            let call =
                self.commits
                    .call(session, v1::CommitRequest::from(commit), send_commit_batch);
            let answer = tokio::select! {
                answer = call => match answer {
                    // BUGGIFY: the answer is lost on its way back, as when the connection
                    // breaks after the coordinator committed.
                    Ok(_) if ferrisdb_core::buggify!(0.05) => Err(Error::CommitUnknownResult(
                        "the coordinator's answer was lost (simulated); the commit may or may \
                         not have been applied"
                            .into(),
                    )),
                    answer => answer,
                },
                now = self.replaced(&serving) => Err(Error::CommitUnknownResult(format!(
                    "the coordinator at {} (generation {}) did not answer the commit, and \
                     generation {} at {} has replaced it; it may or may not have been applied",
                    serving.address, serving.epoch, now.epoch, now.address
                ))),
            };
            if let Ok(committed) = &answer {
                self.first_reads.saw(committed.version);
            }
            answer
        })
    }

    fn recovered(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let Some(before) = self.last_serving.lock().clone() else {
                return std::future::pending().await;
            };
            loop {
                tokio::time::sleep(REPLACEMENT_POLL).await;
                if let Ok(now) = self.serving_now().await
                    && now != before
                {
                    return;
                }
            }
        })
    }

    fn invalidate(&self, err: &Error) {
        if matches!(
            err,
            Error::WrongShard(_)
                | Error::Unavailable(_)
                | Error::Recovering(_)
                | Error::CommitUnknownResult(_)
        ) {
            *self.view.lock() = None;
        }
    }
}

/// Reads one piece of a range from one storage server: its start on the server's range
/// session, then, if the range holds more than the start's message, the rest with one
/// `GetRange` call from just past the last pair, at the start's version. Stops at `limit`
/// pairs (0: no limit). Returns the pairs in read order and the version they were read at.
async fn read_range_from(
    session: Arc<Session<Ranges>>,
    mut client: StorageServerClient<Channel>,
    req: v1::StorageGetRangeRequest,
    limit: usize,
) -> Result<(Vec<KeyValue>, Version), Error> {
    let start = match session.call(req.clone()).await {
        Ok(Ok(start)) => start,
        Ok(Err(status)) => return Err(from_status(&status)),
        Err(not_sent) => return Err(Error::Unavailable(not_sent)),
    };
    let at = start.version;
    let mut kvs: Vec<KeyValue> = (start.pairs.into_iter())
        .map(|p| KeyValue {
            key: p.key,
            value: p.value,
        })
        .collect();
    let full = |kvs: &Vec<KeyValue>| limit > 0 && kvs.len() >= limit;
    if full(&kvs) {
        kvs.truncate(limit);
        return Ok((kvs, Version(at)));
    }
    let Some(last) = kvs.last().filter(|_| start.more) else {
        return Ok((kvs, Version(at)));
    };
    // What is left past the last pair (as `routing::resume_after` judges it), if anything.
    let left = if req.reverse {
        (last.key[..] > req.begin[..]).then(|| (req.begin.clone(), last.key.clone()))
    } else {
        let next = ferrisdb_core::key_after(&last.key);
        (req.end.is_empty() || next[..] < req.end[..]).then(|| (Bytes::from(next), req.end.clone()))
    };
    let Some((begin, end)) = left else {
        return Ok((kvs, Version(at)));
    };
    let rest = v1::StorageGetRangeRequest {
        begin,
        end,
        version: at,
        // The rest of the limit (0: none), capped as the first request's was.
        limit: u64::try_from(limit.saturating_sub(kvs.len()))
            .unwrap_or(u64::MAX)
            .min(ferrisdb_core::limits::MAX_RANGE_LIMIT),
        reverse: req.reverse,
        newest: false,
    };
    let mut stream = client
        .get_range(rest)
        .await
        .map_err(|s| from_status(&s))?
        .into_inner();
    while let Some(batch) = stream.message().await.map_err(|s| from_status(&s))? {
        kvs.extend(batch.pairs.into_iter().map(|p| KeyValue {
            key: p.key,
            value: p.value,
        }));
        if full(&kvs) {
            kvs.truncate(limit);
            break;
        }
    }
    Ok((kvs, Version(at)))
}

/// Sends one `GetBatch` call; one outcome per read, in order (the batcher checks the count). A
/// failed call fails every read it carried with the call's error.
async fn send_get_batch(
    session: Arc<Session<Reads>>,
    gets: Vec<v1::StorageGetRequest>,
) -> Vec<Result<StoredValue, Error>> {
    use v1::storage_get_outcome::Outcome;
    let sent = gets.len();
    match session.call(v1::StorageGetBatchRequest { gets }).await {
        Ok(Ok(reply)) => (reply.outcomes.into_iter())
            .map(|o| match o.outcome {
                Some(Outcome::Value(v)) => Ok((v.found.then_some(v.value), Version(v.version))),
                Some(Outcome::Error(e)) => Err(from_status(&status_from_error_status(&e))),
                None => Err(Error::Unavailable(
                    "the storage server answered a read without an outcome".into(),
                )),
            })
            .collect(),
        Ok(Err(status)) => (0..sent).map(|_| Err(from_status(&status))).collect(),
        Err(not_sent) => (0..sent)
            .map(|_| Err(Error::Unavailable(not_sent.clone())))
            .collect(),
    }
}

/// Sends one `CommitBatch` call; one outcome per commit, in order (the batcher checks the
/// count). A failed call fails every commit it carried the way a failed `Commit` call would
/// (see [`commit_error`]).
async fn send_commit_batch(
    session: Arc<Session<Commits>>,
    commits: Vec<v1::CommitRequest>,
) -> Vec<Result<Committed, Error>> {
    use v1::commit_outcome::Outcome;
    let sent = commits.len();
    let every = |err: &dyn Fn() -> Error| (0..sent).map(|_| Err(err())).collect();
    let call = session.call(v1::CommitBatchRequest { commits });
    let answer = match tokio::time::timeout(COORDINATOR_CALL_TIMEOUT, call).await {
        Ok(Ok(answer)) => answer,
        // The request never left: safe to retry.
        Ok(Err(not_sent)) => return every(&|| Error::Unavailable(not_sent.clone())),
        Err(_) => {
            return every(&|| {
                Error::CommitUnknownResult(format!(
                    "the coordinator did not answer the commit within \
                     {COORDINATOR_CALL_TIMEOUT:?}; it may or may not have been applied"
                ))
            });
        }
    };
    match answer {
        Ok(reply) => (reply.outcomes.into_iter())
            .map(|o| match o.outcome {
                Some(Outcome::Committed(c)) => Committed::try_from(c),
                Some(Outcome::Error(e)) => Err(commit_error(&status_from_error_status(&e))),
                None => Err(Error::CommitUnknownResult(
                    "the coordinator answered a commit without an outcome".into(),
                )),
            })
            .collect(),
        Err(status) => every(&|| commit_error(&status)),
    }
}

/// The error of a failed `Commit` call: a FerrisDB error as sent; `Unavailable` when the
/// connection to the coordinator was refused (no request can have reached it); anything else
/// (a dropped connection, a timeout, a proxy's answer) `CommitUnknownResult`, since the commit
/// may have happened.
pub(crate) fn commit_error(status: &tonic::Status) -> Error {
    if status.metadata().get(ERROR_CODE_KEY).is_some() {
        from_status(status)
    } else if connection_refused(status) {
        Error::Unavailable(format!(
            "the coordinator refused the connection, so the transaction was not sent: {}",
            status.message()
        ))
    } else {
        Error::CommitUnknownResult(format!(
            "the commit call to the coordinator failed ({}); it may or may not have been applied",
            ferrisdb_proto::status::describe(status)
        ))
    }
}

/// True if `status` comes from a refused TCP connection: the request never left this process.
fn connection_refused(status: &tonic::Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(err) = source {
        if err
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            return true;
        }
        source = err.source();
    }
    false
}

/// Checks a storage answer is inside the asked range and strictly ordered in read order.
fn check_order(kvs: &[KeyValue], begin: &[u8], end: &[u8], reverse: bool) -> Result<(), Error> {
    let range = KeyRange {
        begin: Bytes::copy_from_slice(begin),
        end: Bytes::copy_from_slice(end),
    };
    let ordered = kvs.windows(2).all(|w| {
        if reverse {
            w[0].key > w[1].key
        } else {
            w[0].key < w[1].key
        }
    });
    if !ordered || kvs.iter().any(|kv| !range.contains(&kv.key)) {
        return Err(Error::Internal(format!(
            "storage server answered a range read of [{:?}, {:?}) out of order or out of range",
            escape(begin),
            escape(end)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_connection_means_the_commit_was_not_sent() {
        // A port nothing listens on: bind, note it, close.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy();
        let status = TransactionCoordinatorClient::new(channel)
            .commit(v1::CommitRequest::default())
            .await
            .unwrap_err();
        let err = commit_error(&status);
        assert!(matches!(err, Error::Unavailable(_)), "{err}");
        let dropped = tonic::Status::unavailable("connection reset");
        assert!(matches!(
            commit_error(&dropped),
            Error::CommitUnknownResult(_)
        ));
    }
}
