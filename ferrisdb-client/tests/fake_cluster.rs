//! The client against in-process fake servers speaking real gRPC on 127.0.0.1: a controller
//! serving a shard map, a coordinator recording commits, and storage servers that refuse any
//! read outside the shards they hold (`WrongShard`). Checks routing across shard boundaries in
//! both directions, replica fail-over, shard-map refresh after `WrongShard`, and commit error
//! mapping. (End-to-end tests against the real servers come with them.)

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Bound;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use ferrisdb_client::{Database, Error, KeyRange, RangeOptions};
use ferrisdb_core::ShardMap;
use ferrisdb_proto::status::{ERROR_CODE_KEY, to_error_status, to_status};
use ferrisdb_proto::v1;
use ferrisdb_proto::v1::cluster_controller_server::{ClusterController, ClusterControllerServer};
use ferrisdb_proto::v1::storage_server_server::{StorageServer, StorageServerServer};
use ferrisdb_proto::v1::transaction_coordinator_server::{
    TransactionCoordinator, TransactionCoordinatorServer,
};
use tokio_stream::Stream;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

/// The version the fake coordinator hands out, and that its storage servers have applied.
const COMMITTED_VERSION: u64 = 1000;

type Data = Arc<BTreeMap<Bytes, Bytes>>;

#[derive(Clone)]
struct FakeStorage {
    holds: Vec<KeyRange>,
    data: Data,
    calls: Arc<AtomicUsize>,
    /// The newest version it has applied (what a read with `newest` is taken at).
    applied: u64,
    /// Answer `GetRangeSession` with UNIMPLEMENTED, as a storage server of an older release
    /// does.
    without_range_sessions: Arc<std::sync::atomic::AtomicBool>,
}

/// Pairs in the start of a range read on the fake's range session (the real server's is up to 512):
/// a longer range is read on with `GetRange`.
const FAKE_START_PAIRS: usize = 8;

impl FakeStorage {
    fn check(&self, begin: &[u8], end: &[u8]) -> Result<(), Status> {
        let inside = self.holds.iter().any(|s| {
            s.contains(begin) && (s.end.is_empty() || (!end.is_empty() && end <= &s.end[..]))
        });
        if inside {
            Ok(())
        } else {
            Err(to_status(Error::WrongShard(format!(
                "[{begin:?}, {end:?}) not held"
            ))))
        }
    }
}

#[tonic::async_trait]
impl StorageServer for FakeStorage {
    async fn get(
        &self,
        req: Request<v1::StorageGetRequest>,
    ) -> Result<Response<v1::StorageGetResponse>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let req = req.into_inner();
        self.check(&req.key, &ferrisdb_core::key_after(&req.key))?;
        let value = self.data.get(&req.key).cloned();
        let version = if req.newest {
            req.version.max(self.applied)
        } else {
            req.version
        };
        Ok(Response::new(v1::StorageGetResponse {
            found: value.is_some(),
            value: value.unwrap_or_default(),
            version,
        }))
    }

    async fn get_batch(
        &self,
        req: Request<v1::StorageGetBatchRequest>,
    ) -> Result<Response<v1::StorageGetBatchResponse>, Status> {
        let mut outcomes = Vec::new();
        for get in req.into_inner().gets {
            let outcome = match self.get(Request::new(get)).await {
                Ok(reply) => v1::storage_get_outcome::Outcome::Value(reply.into_inner()),
                Err(status) => v1::storage_get_outcome::Outcome::Error(to_error_status(&status)),
            };
            outcomes.push(v1::StorageGetOutcome {
                outcome: Some(outcome),
            });
        }
        Ok(Response::new(v1::StorageGetBatchResponse { outcomes }))
    }

    type GetSessionStream =
        Pin<Box<dyn Stream<Item = Result<v1::StorageGetSessionResponse, Status>> + Send>>;

    async fn get_session(
        &self,
        req: Request<tonic::Streaming<v1::StorageGetSessionRequest>>,
    ) -> Result<Response<Self::GetSessionStream>, Status> {
        use futures_util::StreamExt;
        use v1::storage_get_session_response::Answer;
        let me = self.clone();
        let answers = req.into_inner().then(move |request| {
            let me = me.clone();
            async move {
                let request = request?;
                let batch = request.batch.unwrap_or_default();
                let answer = match me.get_batch(Request::new(batch)).await {
                    Ok(reply) => Answer::Batch(reply.into_inner()),
                    Err(status) => Answer::Error(to_error_status(&status)),
                };
                Ok(v1::StorageGetSessionResponse {
                    id: request.id,
                    answer: Some(answer),
                })
            }
        });
        Ok(Response::new(Box::pin(answers)))
    }

    type GetRangeStream =
        Pin<Box<dyn Stream<Item = Result<v1::StorageGetRangeResponse, Status>> + Send>>;

    async fn get_range(
        &self,
        req: Request<v1::StorageGetRangeRequest>,
    ) -> Result<Response<Self::GetRangeStream>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let req = req.into_inner();
        self.check(&req.begin, &req.end)?;
        let upper = if req.end.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(req.end.clone())
        };
        let iter = self.data.range((Bound::Included(req.begin.clone()), upper));
        let all: Vec<v1::KeyValue> = if req.reverse {
            iter.rev()
                .map(|(k, v)| v1::KeyValue {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect()
        } else {
            iter.map(|(k, v)| v1::KeyValue {
                key: k.clone(),
                value: v.clone(),
            })
            .collect()
        };
        let limit = if req.limit == 0 {
            usize::MAX
        } else {
            req.limit as usize
        };
        let pairs: Vec<_> = all.into_iter().take(limit).collect();
        // Several messages per answer, two pairs each.
        let version = if req.newest {
            req.version.max(self.applied)
        } else {
            req.version
        };
        let mut batches: Vec<Result<v1::StorageGetRangeResponse, Status>> = pairs
            .chunks(2)
            .map(|c| {
                Ok(v1::StorageGetRangeResponse {
                    pairs: c.to_vec(),
                    version,
                })
            })
            .collect();
        if batches.is_empty() && req.newest {
            batches.push(Ok(v1::StorageGetRangeResponse {
                pairs: Vec::new(),
                version,
            }));
        }
        Ok(Response::new(Box::pin(tokio_stream::iter(batches))))
    }

    type GetRangeSessionStream =
        Pin<Box<dyn Stream<Item = Result<v1::StorageGetRangeSessionResponse, Status>> + Send>>;

    async fn get_range_session(
        &self,
        req: Request<tonic::Streaming<v1::StorageGetRangeSessionRequest>>,
    ) -> Result<Response<Self::GetRangeSessionStream>, Status> {
        use futures_util::StreamExt;
        use v1::storage_get_range_session_response::Answer;
        if self.without_range_sessions.load(Ordering::SeqCst) {
            return Err(Status::unimplemented("no GetRangeSession here"));
        }
        let me = self.clone();
        let answers = req.into_inner().then(move |request| {
            let me = me.clone();
            async move {
                let request = request?;
                let range = request.range.unwrap_or_default();
                let version = range.version;
                let answer = match me.get_range(Request::new(range)).await {
                    Ok(reply) => {
                        let messages: Vec<_> = reply.into_inner().collect().await;
                        let mut start = v1::StorageRangeStart {
                            pairs: Vec::new(),
                            version,
                            more: false,
                        };
                        for message in messages {
                            let message = message?;
                            start.version = message.version;
                            start.pairs.extend(message.pairs);
                        }
                        start.more = start.pairs.len() > FAKE_START_PAIRS;
                        start.pairs.truncate(FAKE_START_PAIRS);
                        Answer::Start(start)
                    }
                    Err(status) => Answer::Error(to_error_status(&status)),
                };
                Ok(v1::StorageGetRangeSessionResponse {
                    id: request.id,
                    answer: Some(answer),
                })
            }
        });
        Ok(Response::new(Box::pin(answers)))
    }
}

#[derive(Default)]
struct FakeCoordinator {
    commits: Arc<parking_lot::Mutex<Vec<v1::CommitRequest>>>,
    fail_next: Arc<parking_lot::Mutex<Vec<Status>>>,
    /// Sessions opened, and whether the next session request breaks its session instead of
    /// being answered.
    sessions: Arc<AtomicUsize>,
    break_session: Arc<std::sync::atomic::AtomicBool>,
    /// Answer `CommitSession` with UNIMPLEMENTED, as a coordinator of an older release does.
    without_sessions: Arc<std::sync::atomic::AtomicBool>,
}

/// Answers a commit batch: a FerrisDB error (it carries the error-code metadata) fails the
/// batch's commits one by one, as the coordinator does; any other status fails the whole
/// request.
fn answer_commit_batch(
    commits: &parking_lot::Mutex<Vec<v1::CommitRequest>>,
    fail_next: &parking_lot::Mutex<Vec<Status>>,
    batch: v1::CommitBatchRequest,
) -> Result<v1::CommitBatchResponse, Status> {
    let failure = fail_next.lock().pop();
    let outcome = match failure {
        Some(status) if status.metadata().get(ERROR_CODE_KEY).is_some() => {
            v1::commit_outcome::Outcome::Error(to_error_status(&status))
        }
        Some(status) => return Err(status),
        None => v1::commit_outcome::Outcome::Committed(v1::CommitResponse {
            commit_version: 2000,
            versionstamp: [&2000u64.to_be_bytes()[..], &[0, 0]].concat().into(),
            already_committed: false,
        }),
    };
    let outcomes = batch
        .commits
        .iter()
        .map(|_| v1::CommitOutcome {
            outcome: Some(outcome.clone()),
        })
        .collect();
    commits.lock().extend(batch.commits);
    Ok(v1::CommitBatchResponse { outcomes })
}

#[tonic::async_trait]
impl TransactionCoordinator for FakeCoordinator {
    async fn get_read_version(
        &self,
        _: Request<v1::GetReadVersionRequest>,
    ) -> Result<Response<v1::GetReadVersionResponse>, Status> {
        Ok(Response::new(v1::GetReadVersionResponse {
            version: COMMITTED_VERSION,
        }))
    }

    type ReadVersionSessionStream = std::pin::Pin<
        Box<dyn futures_util::Stream<Item = Result<v1::ReadVersionSessionResponse, Status>> + Send>,
    >;

    async fn read_version_session(
        &self,
        req: Request<tonic::Streaming<v1::ReadVersionSessionRequest>>,
    ) -> Result<Response<Self::ReadVersionSessionStream>, Status> {
        use futures_util::StreamExt;
        use v1::read_version_session_response::Answer;
        let answers = req.into_inner().map(|request| {
            Ok(v1::ReadVersionSessionResponse {
                id: request?.id,
                answer: Some(Answer::Version(v1::GetReadVersionResponse {
                    version: COMMITTED_VERSION,
                })),
            })
        });
        Ok(Response::new(Box::pin(answers)))
    }

    async fn commit(
        &self,
        req: Request<v1::CommitRequest>,
    ) -> Result<Response<v1::CommitResponse>, Status> {
        if let Some(status) = self.fail_next.lock().pop() {
            return Err(status);
        }
        self.commits.lock().push(req.into_inner());
        Ok(Response::new(v1::CommitResponse {
            commit_version: 2000,
            versionstamp: [&2000u64.to_be_bytes()[..], &[0, 0]].concat().into(),
            already_committed: false,
        }))
    }

    async fn commit_batch(
        &self,
        req: Request<v1::CommitBatchRequest>,
    ) -> Result<Response<v1::CommitBatchResponse>, Status> {
        answer_commit_batch(&self.commits, &self.fail_next, req.into_inner()).map(Response::new)
    }

    type CommitSessionStream = std::pin::Pin<
        Box<dyn futures_util::Stream<Item = Result<v1::CommitSessionResponse, Status>> + Send>,
    >;

    async fn commit_session(
        &self,
        req: Request<tonic::Streaming<v1::CommitSessionRequest>>,
    ) -> Result<Response<Self::CommitSessionStream>, Status> {
        use futures_util::StreamExt;
        use v1::commit_session_response::Answer;
        let (commits, fail_next) = (self.commits.clone(), self.fail_next.clone());
        if self.without_sessions.load(Ordering::SeqCst) {
            return Err(Status::unimplemented("CommitSession"));
        }
        let break_session = self.break_session.clone();
        self.sessions.fetch_add(1, Ordering::SeqCst);
        let answers = req.into_inner().map(move |request| {
            let request = request?;
            if break_session.swap(false, Ordering::SeqCst) {
                return Err(Status::unavailable("connection reset"));
            }
            let answer = match answer_commit_batch(
                &commits,
                &fail_next,
                request.batch.unwrap_or_default(),
            ) {
                Ok(batch) => Answer::Batch(batch),
                Err(status) => Answer::Error(to_error_status(&status)),
            };
            Ok(v1::CommitSessionResponse {
                id: request.id,
                answer: Some(answer),
            })
        });
        Ok(Response::new(Box::pin(answers)))
    }

    async fn pull_mutations(
        &self,
        _: Request<v1::PullMutationsRequest>,
    ) -> Result<Response<v1::PullMutationsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    type StreamMutationsStream =
        futures_util::stream::Empty<Result<v1::PullMutationsResponse, Status>>;

    async fn stream_mutations(
        &self,
        _: Request<v1::StreamMutationsRequest>,
    ) -> Result<Response<Self::StreamMutationsStream>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn report_durable(
        &self,
        _: Request<v1::ReportDurableRequest>,
    ) -> Result<Response<v1::ReportDurableResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn start_generation(
        &self,
        _: Request<v1::StartGenerationRequest>,
    ) -> Result<Response<v1::StartGenerationResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
}

/// Serves `states[min(call, last)]`: lets a test change the map between calls.
struct FakeController {
    states: Vec<v1::GetClusterStateResponse>,
    calls: Arc<AtomicUsize>,
}

#[tonic::async_trait]
impl ClusterController for FakeController {
    async fn register_worker(
        &self,
        _: Request<v1::RegisterWorkerRequest>,
    ) -> Result<Response<v1::RegisterWorkerResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn heartbeat(
        &self,
        _: Request<v1::HeartbeatRequest>,
    ) -> Result<Response<v1::HeartbeatResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn exclude_servers(
        &self,
        _: Request<v1::ExcludeServersRequest>,
    ) -> Result<Response<v1::ExcludeServersResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn get_cluster_state(
        &self,
        _: Request<v1::GetClusterStateRequest>,
    ) -> Result<Response<v1::GetClusterStateResponse>, Status> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let state = &self.states[n.min(self.states.len() - 1)];
        Ok(Response::new(state.clone()))
    }
}

async fn listener() -> (tokio::net::TcpListener, SocketAddr) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

/// A cluster of three shards (split at 0x55 and 0xaa), replication 2.
struct Cluster {
    db: Database,
    data: Data,
    coordinator: Arc<FakeCoordinator>,
    controller_calls: Arc<AtomicUsize>,
    storage_calls: Vec<Arc<AtomicUsize>>,
    /// Set: the storage servers refuse range sessions (UNIMPLEMENTED).
    without_range_sessions: Arc<std::sync::atomic::AtomicBool>,
}

/// Starts the fakes. `down` storage servers have an address that refuses connections;
/// `stale_first` makes the controller's first answer route every shard to storage server 2.
async fn cluster(down: &[usize], stale_first: bool) -> Cluster {
    cluster_applied(down, stale_first, COMMITTED_VERSION).await
}

/// [`cluster`] whose storage servers have applied versions up to `applied` only.
async fn cluster_applied(down: &[usize], stale_first: bool, applied: u64) -> Cluster {
    let data: Data = Arc::new(
        (0u8..=255)
            .step_by(5)
            .map(|b| (Bytes::from(vec![b]), Bytes::from(vec![b, b])))
            .collect(),
    );
    let ids: Vec<String> = (0..3).map(|i| format!("ss-{i}")).collect();
    let map = ShardMap::bootstrap(&ids, 2, 1).unwrap();
    let without_range_sessions = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    let mut storage_calls = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let (l, addr) = listener().await;
        let calls = Arc::new(AtomicUsize::new(0));
        storage_calls.push(calls.clone());
        if down.contains(&i) {
            drop(l);
        } else {
            let holds = map
                .shards
                .iter()
                .filter(|s| s.storage_ids.contains(id))
                .map(|s| s.range.clone())
                .collect();
            let svc = StorageServerServer::new(FakeStorage {
                holds,
                data: data.clone(),
                calls,
                applied,
                without_range_sessions: without_range_sessions.clone(),
            });
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(svc)
                    .serve_with_incoming(TcpListenerStream::new(l)),
            );
        }
        workers.push(v1::WorkerInfo {
            worker_id: id.clone(),
            role: v1::WorkerRole::Storage as i32,
            address: addr.to_string(),
            healthy: true,
            ..Default::default()
        });
    }
    let (l, coord_addr) = listener().await;
    let coordinator = Arc::new(FakeCoordinator::default());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TransactionCoordinatorServer::from_arc(coordinator.clone()))
            .serve_with_incoming(TcpListenerStream::new(l)),
    );
    let state = |map: &ShardMap| v1::GetClusterStateResponse {
        cluster_id: "fake".into(),
        coordinator: Some(v1::CoordinatorInfo {
            worker_id: "co".into(),
            address: coord_addr.to_string(),
            healthy: true,
        }),
        shard_map: Some(v1::ShardMap::from(map)),
        workers: workers.clone(),
        expected_storage_servers: 3,
        replication: 2,
        heartbeat_interval_ms: 500,
        controllers: vec![],
        epoch: 0,
        generation: None,
        recovery_state: String::new(),
        recovery_reason: String::new(),
        last_recovery_ms: 0,
        excluded: vec![],
    };
    let mut states = vec![state(&map)];
    if stale_first {
        let mut stale = map.clone();
        for s in &mut stale.shards {
            s.storage_ids = vec!["ss-2".into()];
        }
        states.insert(0, state(&stale));
    }
    let controller_calls = Arc::new(AtomicUsize::new(0));
    let (l, ctl_addr) = listener().await;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ClusterControllerServer::new(FakeController {
                states,
                calls: controller_calls.clone(),
            }))
            .serve_with_incoming(TcpListenerStream::new(l)),
    );
    Cluster {
        db: Database::connect(ctl_addr.to_string()).unwrap(),
        data,
        coordinator,
        controller_calls,
        storage_calls,
        without_range_sessions,
    }
}

fn pairs(kvs: Vec<ferrisdb_client::KeyValue>) -> Vec<(Bytes, Bytes)> {
    kvs.into_iter().map(|kv| (kv.key, kv.value)).collect()
}

#[tokio::test]
async fn ranges_cross_shard_boundaries_in_both_directions() {
    let c = cluster(&[], false).await;
    let all: Vec<(Bytes, Bytes)> = c.data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    // The last key, \xff, is in the system key space: read with the option it is included,
    // without it a read of "everything" stops before it.
    let user: Vec<(Bytes, Bytes)> = all.iter().filter(|(k, _)| k[0] != 0xff).cloned().collect();
    assert_eq!(user.len() + 1, all.len());
    let plain =
        c.db.run(|tx| async move {
            tx.get_range("", "", RangeOptions::default())
                .collect_vec()
                .await
        })
        .await
        .unwrap();
    assert_eq!(pairs(plain), user);
    let (fwd, rev, limited, middle) =
        c.db.run(|tx| async move {
            tx.set_option(ferrisdb_client::TransactionOption::AccessSystemKeys);
            let opts = RangeOptions::default().batch_size(7);
            let fwd = tx.get_range("", "", opts).collect_vec().await?;
            let rev = tx.get_range("", "", opts.reverse()).collect_vec().await?;
            let limited = tx
                .get_range([0x50u8], [0xb0u8], opts.reverse().limit(20))
                .collect_vec()
                .await?;
            let middle = tx.get([0x55u8]).await?;
            Ok((fwd, rev, limited, middle))
        })
        .await
        .unwrap();
    assert_eq!(pairs(fwd), all);
    let mut reversed = all.clone();
    reversed.reverse();
    assert_eq!(pairs(rev), reversed);
    let want: Vec<_> = reversed
        .iter()
        .filter(|(k, _)| k[0] >= 0x50 && k[0] < 0xb0)
        .take(20)
        .cloned()
        .collect();
    assert_eq!(pairs(limited), want);
    assert_eq!(middle, Some(Bytes::from_static(&[0x55, 0x55])));
    assert_eq!(c.controller_calls.load(Ordering::SeqCst), 1, "map cached");
}

#[tokio::test]
async fn ranges_fall_back_to_calls_when_storage_servers_have_no_range_sessions() {
    let c = cluster(&[], false).await;
    c.without_range_sessions.store(true, Ordering::SeqCst);
    let user: Vec<(Bytes, Bytes)> = (c.data.iter())
        .filter(|(k, _)| k[0] != 0xff)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let (all, limited) =
        c.db.run(|tx| async move {
            let all = (tx.get_range("", "", RangeOptions::default()))
                .collect_vec()
                .await?;
            let limited = tx
                .get_range(
                    [0x50u8],
                    [0xb0u8],
                    RangeOptions::default().reverse().limit(20),
                )
                .collect_vec()
                .await?;
            Ok((all, limited))
        })
        .await
        .unwrap();
    assert_eq!(pairs(all), user);
    let want: Vec<_> = (user.iter().rev())
        .filter(|(k, _)| k[0] >= 0x50 && k[0] < 0xb0)
        .take(20)
        .cloned()
        .collect();
    assert_eq!(pairs(limited), want);
}

fn storage_calls(c: &Cluster) -> usize {
    c.storage_calls
        .iter()
        .map(|n| n.load(Ordering::SeqCst))
        .sum()
}

/// The read version `tx` settled on is the coordinator's (the replicas' own when they have
/// applied as much).
fn assert_read_at_committed(tx: &ferrisdb_client::Transaction) {
    assert_eq!(
        tx.known_read_version().map(|v| v.get()),
        Some(COMMITTED_VERSION)
    );
}

/// A new transaction whose first operation reads `[begin, end)`, and what it read.
async fn first_range(c: &Cluster, begin: u8, end: u8) -> (ferrisdb_client::Transaction, usize) {
    let tx = c.db.create_transaction();
    let kvs = tx
        .get_range([begin], [end], RangeOptions::default())
        .collect_vec()
        .await
        .unwrap();
    (tx, kvs.len())
}

#[tokio::test]
async fn a_first_read_takes_the_replicas_newest_version_in_the_same_round_trip() {
    let c = cluster(&[], false).await;
    let tx = c.db.create_transaction();
    let v = tx.get([0x0au8]).await.unwrap();
    assert_eq!(v, Some(Bytes::from_static(&[0x0a, 0x0a])));
    assert_read_at_committed(&tx);
    assert_eq!(storage_calls(&c), 1, "one read, beside the read version");
    // Later reads use the version fixed by the first.
    tx.get([0x0fu8]).await.unwrap();
    assert_eq!(storage_calls(&c), 2);
    assert_read_at_committed(&tx);
}

#[tokio::test]
async fn concurrent_first_reads_each_go_out_beside_the_read_version() {
    let c = cluster(&[], false).await;
    let tx = c.db.create_transaction();
    // Keys of two different shards.
    let (a, b) = tokio::join!(tx.get([0x0au8]), tx.get([0x5au8]));
    assert_eq!(a.unwrap(), Some(Bytes::from_static(&[0x0a, 0x0a])));
    assert_eq!(b.unwrap(), Some(Bytes::from_static(&[0x5a, 0x5a])));
    assert_eq!(storage_calls(&c), 2, "each key read once");
    assert_read_at_committed(&tx);
}

#[tokio::test]
async fn a_first_read_from_a_replica_behind_the_coordinator_is_read_again() {
    let c = cluster_applied(&[], false, COMMITTED_VERSION - 10).await;
    let tx = c.db.create_transaction();
    let v = tx.get([0x0au8]).await.unwrap();
    assert_eq!(v, Some(Bytes::from_static(&[0x0a, 0x0a])));
    // The replica's version 990 is older than the coordinator's 1000: not a valid read
    // version for a transaction that began after 1000 committed.
    assert_read_at_committed(&tx);
    assert_eq!(storage_calls(&c), 2, "at the newest version, then at 1000");
}

#[tokio::test]
async fn a_first_range_read_goes_out_beside_the_read_version() {
    let c = cluster(&[], false).await;
    let (tx, pairs) = first_range(&c, 0x00, 0x20).await;
    assert_eq!(pairs, 7, "0x00, 0x05, ... 0x1e");
    assert_read_at_committed(&tx);
    assert_eq!(storage_calls(&c), 1, "one read, beside the read version");
    // An empty first range still says which version it was read at.
    let (tx, pairs) = first_range(&c, 0x01, 0x02).await;
    assert_eq!(pairs, 0);
    assert_read_at_committed(&tx);
    assert_eq!(storage_calls(&c), 2);
}

#[tokio::test]
async fn a_first_range_read_from_a_replica_behind_the_coordinator_is_read_again() {
    let c = cluster_applied(&[], false, COMMITTED_VERSION - 10).await;
    let (tx, pairs) = first_range(&c, 0x00, 0x20).await;
    assert_eq!(pairs, 7);
    assert_read_at_committed(&tx);
    assert_eq!(storage_calls(&c), 2, "at the newest version, then at 1000");
}

#[tokio::test]
async fn an_unreachable_replica_is_skipped() {
    // ss-0 is the preferred replica of shard 0 (ss-0, ss-1) and shard 2 (ss-2, ss-0).
    let c = cluster(&[0], false).await;
    let (v, n) =
        c.db.run(|tx| async move {
            let v = tx.get([0x0au8]).await?;
            let n = tx
                .get_range("", "", RangeOptions::default())
                .collect_vec()
                .await?
                .len();
            Ok((v, n))
        })
        .await
        .unwrap();
    assert_eq!(v, Some(Bytes::from_static(&[0x0a, 0x0a])));
    assert_eq!(
        n,
        c.data.len() - 1,
        "every user key (not the system key \\xff)"
    );
    assert!(c.storage_calls[1].load(Ordering::SeqCst) > 0);
}

#[tokio::test]
async fn wrong_shard_refreshes_the_map_and_retries() {
    let c = cluster(&[], true).await;
    let v =
        c.db.run(|tx| async move { tx.get([0x0au8]).await })
            .await
            .unwrap();
    assert_eq!(v, Some(Bytes::from_static(&[0x0a, 0x0a])));
    assert_eq!(c.controller_calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn commits_carry_ranges_and_map_errors() {
    let c = cluster(&[], false).await;
    let tx = c.db.create_transaction();
    tx.get([0x05u8]).await.unwrap();
    tx.set("a", "1").unwrap();
    tx.commit().await.unwrap();
    assert_eq!(tx.committed_version().map(|v| v.get()), Some(2000));
    let sent = c.coordinator.commits.lock()[0].clone();
    assert_eq!(sent.read_version, 1000);
    assert_eq!(sent.read_conflict_ranges.len(), 1);
    assert_eq!(
        sent.write_conflict_ranges[0].begin,
        Bytes::from_static(b"a")
    );

    // A conflict comes back as NotCommitted; a bare transport-style failure as unknown.
    c.coordinator.fail_next.lock().extend([
        Status::unavailable("connection reset"),
        to_status(Error::NotCommitted),
    ]);
    let tx = c.db.create_transaction();
    tx.set("b", "2").unwrap();
    assert!(matches!(tx.commit().await, Err(Error::NotCommitted)));
    tx.reset();
    tx.set("b", "2").unwrap();
    let err = tx.commit().await.unwrap_err();
    assert!(err.is_commit_unknown(), "{err}");
}

/// Commits share one session; a session that breaks leaves its unanswered commits' outcome
/// unknown, and the next commit opens a new one.
#[tokio::test]
async fn commits_ride_one_session_and_a_broken_one_is_reopened() {
    let c = cluster(&[], false).await;
    for key in ["a", "b"] {
        let tx = c.db.create_transaction();
        tx.set(key, "1").unwrap();
        tx.commit().await.unwrap();
    }
    assert_eq!(c.coordinator.sessions.load(Ordering::SeqCst), 1);
    c.coordinator.break_session.store(true, Ordering::SeqCst);
    let tx = c.db.create_transaction();
    tx.set("c", "1").unwrap();
    let err = tx.commit().await.unwrap_err();
    assert!(err.is_commit_unknown(), "{err}");
    let tx = c.db.create_transaction();
    tx.set("d", "1").unwrap();
    tx.commit().await.unwrap();
    assert_eq!(c.coordinator.sessions.load(Ordering::SeqCst), 2);
    let keys: Vec<Bytes> = c
        .coordinator
        .commits
        .lock()
        .iter()
        .map(|commit| commit.write_conflict_ranges[0].begin.clone())
        .collect();
    assert_eq!(keys, ["a", "b", "d"]);
}

/// A coordinator without sessions (an older release) gets its commits as `CommitBatch` calls.
#[tokio::test]
async fn commits_fall_back_to_calls_when_the_coordinator_has_no_sessions() {
    let c = cluster(&[], false).await;
    c.coordinator.without_sessions.store(true, Ordering::SeqCst);
    for key in ["a", "b"] {
        let tx = c.db.create_transaction();
        tx.set(key, "1").unwrap();
        tx.commit().await.unwrap();
    }
    assert_eq!(c.coordinator.sessions.load(Ordering::SeqCst), 0);
    assert_eq!(c.coordinator.commits.lock().len(), 2);
}
