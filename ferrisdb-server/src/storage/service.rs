//! The `StorageServer` gRPC service: point and range reads at a read version.
//!
//! A read at a version the server has not applied yet waits up to [`FUTURE_VERSION_WAIT`],
//! then fails with `future_version` (or at once with `unavailable` once the engine has failed
//! and the version will never be reached, so clients move on to another replica); a version
//! below the engine's GC horizon fails with
//! `transaction_too_old`; a key outside this server's shards gets `wrong_shard`.
//!
//! Ownership is checked only once the server has applied the read version (as FoundationDB's
//! storage servers do): a server that has just started does not know its shards until the
//! controller's view reaches it, and it cannot pull (so cannot reach the version) before
//! that. Checking first would answer `wrong_shard` for keys it does hold. A restarted server
//! may already have reached the version (it resumes from its persisted applied version): until
//! it knows its shards it answers `unavailable`, so clients read another replica.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ferrisdb_core::{Error, limits};
use ferrisdb_proto::status::{to_error_status, to_status};
use ferrisdb_proto::v1;
use ferrisdb_proto::v1::storage_server_server::StorageServer;
use ferrisdb_storage::engine::{Engine, ScanIterator, ScanOptions};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::progress::Progress;

/// How long a read waits for the server to catch up to its version.
pub const FUTURE_VERSION_WAIT: Duration = Duration::from_secs(1);
/// How long a read at the newest version waits for its floor before it is taken at whatever
/// this server has applied: the client keeps such a read only if it is new enough, and reads
/// again otherwise, so a lagging server must not hold it for the whole [`FUTURE_VERSION_WAIT`].
const NEWEST_FLOOR_WAIT: Duration = Duration::from_millis(50);
/// Pairs per streamed range message.
const RANGE_BATCH_PAIRS: usize = 512;
/// Bytes per streamed range message (soft).
const RANGE_BATCH_BYTES: usize = 256 << 10;
/// Pairs in a range's first message, read on the request's task (the rest of a longer range
/// is read on the blocking pool).
const FIRST_MESSAGE_PAIRS: usize = 128;
/// Bytes in a range's first message (soft).
const FIRST_MESSAGE_BYTES: usize = 64 << 10;

/// Point reads served and the calls that carried them, since the process started (reported
/// in the server's status).
#[derive(Debug, Default)]
pub struct ReadCounters {
    point_reads: AtomicU64,
    calls: AtomicU64,
}

impl ReadCounters {
    /// Point reads served (each read of a `GetBatch` call counted).
    pub fn point_reads(&self) -> u64 {
        self.point_reads.load(Ordering::Relaxed)
    }

    /// `Get` and `GetBatch` calls served.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    fn served(&self, reads: usize) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.point_reads.fetch_add(reads as u64, Ordering::Relaxed);
    }
}

/// Serves reads from one engine.
#[derive(Clone)]
pub struct StorageService {
    engine: Arc<Engine>,
    progress: Arc<Progress>,
    counters: Arc<ReadCounters>,
}

impl StorageService {
    /// A service over `engine`, gated by `progress`.
    pub fn new(engine: Arc<Engine>, progress: Arc<Progress>) -> Self {
        StorageService {
            engine,
            progress,
            counters: Arc::default(),
        }
    }

    /// Counts the point reads it serves, and their calls, in `counters`.
    pub fn counting(mut self, counters: Arc<ReadCounters>) -> Self {
        self.counters = counters;
        self
    }

    async fn ready_at(&self, version: u64) -> Result<(), Error> {
        if version == 0 {
            return Err(Error::InvalidArgument(
                "read version 0 is not a valid version".into(),
            ));
        }
        let failed = |applied: u64, reason: String| {
            Error::Unavailable(format!(
                "this storage server stopped applying writes at version {applied} \
                 ({reason}); read another replica"
            ))
        };
        let applied = self.progress.applied();
        if applied < version
            && let Some(reason) = self.progress.stuck()
        {
            return Err(failed(applied, reason));
        }
        if !self.progress.wait_for(version, FUTURE_VERSION_WAIT).await {
            if let Some(reason) = self.progress.stuck() {
                return Err(failed(self.progress.applied(), reason));
            }
            return Err(Error::FutureVersion {
                read_version: version,
                applied: self.progress.applied(),
            });
        }
        // A restarted server resumes from its persisted applied version, so it may reach the
        // version before the controller's view tells it its shards: it cannot judge ownership.
        if self.progress.owned().is_empty() {
            return Err(Error::Unavailable(
                "this storage server does not know its shards yet (just started)".into(),
            ));
        }
        Ok(())
    }

    /// The version a read is taken at, once the server is ready for it
    /// ([`ready_at`](Self::ready_at)): `version` itself, or with `newest` the newest version
    /// applied once `version` is, if that is within [`NEWEST_FLOOR_WAIT`] (a client's read
    /// right after its own commit), or else what the server had applied by then (the client
    /// will find it too old and read again at its read version).
    async fn version_to_read(&self, version: u64, newest: bool) -> Result<u64, Error> {
        if !newest {
            self.ready_at(version).await?;
            return Ok(version);
        }
        let floor = if self.progress.wait_for(version, NEWEST_FLOOR_WAIT).await {
            version
        } else {
            match self.progress.applied() {
                0 => version,
                applied => applied.min(version),
            }
        };
        self.ready_at(floor).await?;
        Ok(self.progress.applied().max(floor))
    }

    /// One point read, as `Get` and each read of `GetBatch` answer it. With `newest` set,
    /// `version` is only a floor (see [`version_to_read`](Self::version_to_read)); every applied
    /// version is committed (see the puller), and the answer reports the one read at.
    async fn get_one(&self, req: v1::StorageGetRequest) -> Result<v1::StorageGetResponse, Error> {
        limits::check_key(&req.key)?;
        let version = self.version_to_read(req.version, req.newest).await?;
        self.progress.check_key(&req.key, version)?;
        let value = self.engine.get(&req.key, version)?;
        Ok(v1::StorageGetResponse {
            found: value.is_some(),
            value: value.unwrap_or_default(),
            version,
        })
    }
}

/// A range read opened and its first message read (see [`StorageService::start_range`]).
struct RangeStart {
    /// The first message (`None`: the range holds nothing).
    first: Option<v1::StorageGetRangeResponse>,
    /// The scan may hold more past the first message.
    more: bool,
    /// The scan, positioned after the first message.
    scan: ScanIterator,
    /// The version the range is read at.
    version: u64,
}

impl StorageService {
    /// Answers a `GetBatch` request: each read is answered on its own, as a lone `Get` would
    /// be. Fails only for a malformed batch (too many reads).
    async fn answer_batch(
        &self,
        request: v1::StorageGetBatchRequest,
    ) -> Result<v1::StorageGetBatchResponse, Status> {
        let gets = request.gets;
        limits::check_batch_len(gets.len(), limits::MAX_READ_BATCH, "reads").map_err(to_status)?;
        self.counters.served(gets.len());
        let outcomes = futures_util::future::join_all(gets.into_iter().map(|get| async move {
            let outcome = match self.get_one(get).await {
                Ok(value) => v1::storage_get_outcome::Outcome::Value(value),
                Err(e) => v1::storage_get_outcome::Outcome::Error(to_error_status(&to_status(e))),
            };
            v1::StorageGetOutcome {
                outcome: Some(outcome),
            }
        }))
        .await;
        Ok(v1::StorageGetBatchResponse { outcomes })
    }

    /// The answer to a range session's request: up to one streamed message's worth of the
    /// range ([`RANGE_BATCH_PAIRS`] pairs or about [`RANGE_BATCH_BYTES`]), its first message
    /// read on this task and the rest, for a longer range, on the blocking pool (as `GetRange`
    /// reads its later messages). A range longer than that is read on with `GetRange`, so a
    /// long scan does not hold up the session.
    async fn session_range_start(
        &self,
        req: v1::StorageGetRangeRequest,
    ) -> Result<v1::StorageRangeStart, Status> {
        let RangeStart {
            first,
            more,
            mut scan,
            version,
        } = self.start_range(req).await?;
        let mut pairs = first.map(|first| first.pairs).unwrap_or_default();
        if !more {
            return Ok(v1::StorageRangeStart {
                pairs,
                version,
                more,
            });
        }
        let bytes: usize = pairs.iter().map(|p| p.key.len() + p.value.len()).sum();
        let (max_pairs, max_bytes) = (
            RANGE_BATCH_PAIRS.saturating_sub(pairs.len()),
            RANGE_BATCH_BYTES.saturating_sub(bytes),
        );
        let (rest, more) = crate::exec::blocking("a range read", move || {
            next_message(&mut scan, version, max_pairs, max_bytes)
        })
        .await
        .map_err(to_status)?
        .map_err(to_status)?;
        pairs.extend(rest.into_iter().flat_map(|rest| rest.pairs));
        Ok(v1::StorageRangeStart {
            pairs,
            version,
            more,
        })
    }

    /// Checks a range request, waits for its version, opens its scan and reads the first
    /// message on the caller's task: a short range (the common case) is answered without a
    /// hop to another thread.
    async fn start_range(&self, req: v1::StorageGetRangeRequest) -> Result<RangeStart, Status> {
        limits::check_range_begin(&req.begin).map_err(to_status)?;
        limits::check_range_end(&req.end).map_err(to_status)?;
        // The scan's 0 means no limit, as on the wire.
        let limit = limits::check_range_limit(req.limit)
            .map_err(to_status)?
            .unwrap_or(0);
        let range =
            ferrisdb_core::KeyRange::new(req.begin.clone(), req.end.clone()).map_err(to_status)?;
        let version = self
            .version_to_read(req.version, req.newest)
            .await
            .map_err(to_status)?;
        self.progress
            .check_range(&range.begin, &range.end, version)
            .map_err(to_status)?;
        let options = ScanOptions {
            begin: range.begin,
            end: range.end,
            read_version: version,
            reverse: req.reverse,
            limit,
        };
        // Opening the scan validates the version against the GC horizon before any answer.
        let mut scan = self.engine.scan(options).map_err(to_status)?;
        let (first, more) =
            next_message(&mut scan, version, FIRST_MESSAGE_PAIRS, FIRST_MESSAGE_BYTES)
                .map_err(to_status)?;
        Ok(RangeStart {
            first,
            more,
            scan,
            version,
        })
    }
}

type RangeStream = Pin<Box<dyn Stream<Item = Result<v1::StorageGetRangeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl StorageServer for StorageService {
    async fn get(
        &self,
        request: Request<v1::StorageGetRequest>,
    ) -> Result<Response<v1::StorageGetResponse>, Status> {
        self.counters.served(1);
        let reply = self
            .get_one(request.into_inner())
            .await
            .map_err(to_status)?;
        Ok(Response::new(reply))
    }

    async fn get_batch(
        &self,
        request: Request<v1::StorageGetBatchRequest>,
    ) -> Result<Response<v1::StorageGetBatchResponse>, Status> {
        self.answer_batch(request.into_inner())
            .await
            .map(Response::new)
    }

    type GetSessionStream = crate::grpc::session::Answers<v1::StorageGetSessionResponse>;

    async fn get_session(
        &self,
        request: Request<Streaming<v1::StorageGetSessionRequest>>,
    ) -> Result<Response<Self::GetSessionStream>, Status> {
        let service = self.clone();
        Ok(Response::new(crate::grpc::session::serve(
            request.into_inner(),
            move |request: v1::StorageGetSessionRequest| {
                let service = service.clone();
                async move {
                    use v1::storage_get_session_response::Answer;
                    let answer = match service
                        .answer_batch(request.batch.unwrap_or_default())
                        .await
                    {
                        Ok(batch) => Answer::Batch(batch),
                        Err(status) => Answer::Error(to_error_status(&status)),
                    };
                    v1::StorageGetSessionResponse {
                        id: request.id,
                        answer: Some(answer),
                    }
                }
            },
        )))
    }

    type GetRangeStream = RangeStream;

    async fn get_range(
        &self,
        request: Request<v1::StorageGetRangeRequest>,
    ) -> Result<Response<Self::GetRangeStream>, Status> {
        let req = request.into_inner();
        let newest = req.newest;
        let RangeStart {
            first,
            more,
            mut scan,
            version,
        } = self.start_range(req).await?;
        let first = match (first, more) {
            (Some(first), true) => first,
            // A read at the newest version says which one, even when it found nothing.
            (None, _) if newest => {
                let empty = v1::StorageGetRangeResponse {
                    pairs: Vec::new(),
                    version,
                };
                return Ok(Response::new(Box::pin(tokio_stream::iter([Ok(empty)]))));
            }
            (only, _) => {
                let only = only.into_iter().map(Ok);
                return Ok(Response::new(Box::pin(tokio_stream::iter(only))));
            }
        };
        // A longer range: the rest is read on the blocking pool, a message ahead of the client.
        let (tx, rx) = mpsc::channel(4);
        crate::exec::spawn_blocking_task(async move {
            let mut message = Some(first);
            while let Some(msg) = message {
                if tx.send(Ok(msg)).await.is_err() {
                    return; // The client went away.
                }
                message =
                    match next_message(&mut scan, version, RANGE_BATCH_PAIRS, RANGE_BATCH_BYTES) {
                        Ok((next, _)) => next,
                        Err(e) => {
                            let _ = tx.send(Err(to_status(e))).await;
                            return;
                        }
                    };
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type GetRangeSessionStream = crate::grpc::session::Answers<v1::StorageGetRangeSessionResponse>;

    async fn get_range_session(
        &self,
        request: Request<Streaming<v1::StorageGetRangeSessionRequest>>,
    ) -> Result<Response<Self::GetRangeSessionStream>, Status> {
        let service = self.clone();
        Ok(Response::new(crate::grpc::session::serve(
            request.into_inner(),
            move |request: v1::StorageGetRangeSessionRequest| {
                let service = service.clone();
                async move {
                    use v1::storage_get_range_session_response::Answer;
                    let range = request.range.unwrap_or_default();
                    let answer = match service.session_range_start(range).await {
                        Ok(start) => Answer::Start(start),
                        Err(status) => Answer::Error(to_error_status(&status)),
                    };
                    v1::StorageGetRangeSessionResponse {
                        id: request.id,
                        answer: Some(answer),
                    }
                }
            },
        )))
    }
}

/// The scan's next message, up to `max_pairs` pairs or about `max_bytes` of keys and values
/// (`None`: the scan had nothing left), and whether the scan may hold more (it stopped at a
/// limit, not at its end).
fn next_message(
    scan: &mut ScanIterator,
    version: u64,
    max_pairs: usize,
    max_bytes: usize,
) -> Result<(Option<v1::StorageGetRangeResponse>, bool), Error> {
    let mut pairs = Vec::new();
    let mut bytes = 0;
    while pairs.len() < max_pairs && bytes < max_bytes {
        let Some(item) = scan.next() else {
            return Ok((
                (!pairs.is_empty()).then_some(v1::StorageGetRangeResponse { pairs, version }),
                false,
            ));
        };
        let (key, value) = item?;
        bytes += key.len() + value.len();
        pairs.push(v1::KeyValue { key, value });
    }
    Ok((Some(v1::StorageGetRangeResponse { pairs, version }), true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrisdb_core::KeyRange;
    use ferrisdb_storage::engine::{EngineOptions, WriteBatch};

    #[tokio::test]
    async fn a_read_waits_for_the_version_before_judging_ownership() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(&dir.path().join("engine"), EngineOptions::default()).unwrap();
        let progress =
            Arc::new(Progress::open(ferrisdb_storage::vfs::os(), dir.path(), 0).unwrap());
        let service = Arc::new(StorageService::new(engine.clone(), progress.clone()));
        // Just started: no shards known, nothing applied. A read at version 5 arrives.
        let read = {
            let service = service.clone();
            tokio::spawn(async move {
                let req = v1::StorageGetRequest {
                    key: "k".into(),
                    version: 5,
                    newest: false,
                };
                service.get(Request::new(req)).await
            })
        };
        let range = {
            let service = service.clone();
            tokio::spawn(async move {
                let req = v1::StorageGetRangeRequest {
                    begin: "a".into(),
                    end: "z".into(),
                    version: 5,
                    limit: 0,
                    reverse: false,
                    newest: false,
                };
                service.get_range(Request::new(req)).await.map(|_| ())
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Then the view arrives (shards first) and the puller applies through version 5.
        progress.set_owned(vec![KeyRange::all()]);
        let mut batch = WriteBatch::default();
        batch.put(b"k", b"v");
        engine.apply(5, &batch).unwrap();
        progress.advance(5);
        let got = read.await.unwrap().expect("the key is held").into_inner();
        assert!(got.found);
        assert_eq!(got.value, "v");
        range.await.unwrap().expect("the range is held");
        // A key outside the shards is still refused once the version is reached.
        progress.set_owned(vec![KeyRange::new("a", "m").unwrap()]);
        let req = v1::StorageGetRequest {
            key: "x".into(),
            version: 5,
            newest: false,
        };
        let err = service.get(Request::new(req)).await.unwrap_err();
        assert_eq!(
            ferrisdb_proto::status::from_status(&err).code(),
            ferrisdb_core::ErrorCode::WrongShard
        );
    }

    /// An engine in `dir` holding `k` = `v` at version 5, and progress resumed at version 5
    /// (as after a restart: no shards known yet).
    fn restarted_at_version_5(dir: &std::path::Path) -> (Arc<Engine>, Arc<Progress>) {
        let engine = Engine::open(&dir.join("engine"), EngineOptions::default()).unwrap();
        let mut batch = WriteBatch::default();
        batch.put(b"k", b"v");
        engine.apply(5, &batch).unwrap();
        let progress = Arc::new(Progress::open(ferrisdb_storage::vfs::os(), dir, 5).unwrap());
        (engine, progress)
    }

    #[tokio::test]
    async fn a_restarted_server_does_not_judge_ownership_before_it_knows_its_shards() {
        let dir = tempfile::tempdir().unwrap();
        // Restarted: the applied version is known at once, the shards are not.
        let (engine, progress) = restarted_at_version_5(dir.path());
        let service = StorageService::new(engine, progress.clone());
        let req = || {
            Request::new(v1::StorageGetRequest {
                key: "k".into(),
                version: 5,
                newest: false,
            })
        };
        let err = service.get(req()).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
        progress.set_owned(vec![KeyRange::all()]);
        assert_eq!(service.get(req()).await.unwrap().into_inner().value, "v");
    }

    #[tokio::test]
    async fn a_newest_read_waits_for_its_floor_and_reports_the_version_it_read_at() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, progress) = restarted_at_version_5(dir.path());
        progress.set_owned(vec![KeyRange::all()]);
        let service = Arc::new(StorageService::new(engine.clone(), progress.clone()));
        let newest = |floor: u64| v1::StorageGetRequest {
            key: "k".into(),
            version: floor,
            newest: true,
        };
        // At or below the applied version: read at the applied version, 5.
        let got = service
            .get(Request::new(newest(2)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (got.found, &got.value[..], got.version),
            (true, &b"v"[..], 5)
        );
        // A plain read reports its own version.
        let plain = v1::StorageGetRequest {
            newest: false,
            ..newest(3)
        };
        assert_eq!(
            service
                .get(Request::new(plain))
                .await
                .unwrap()
                .into_inner()
                .version,
            3
        );
        // Above it: waits until the server applies the floor, then reads at what it applied
        // by then (version 8, past the floor of 7).
        let waiting = {
            let service = service.clone();
            tokio::spawn(async move { service.get(Request::new(newest(7))).await })
        };
        tokio::time::sleep(NEWEST_FLOOR_WAIT / 5).await;
        assert!(
            !waiting.is_finished(),
            "answered before the floor was applied"
        );
        let mut batch = WriteBatch::default();
        batch.put(b"k", b"v8");
        engine.apply(8, &batch).unwrap();
        progress.advance(8);
        let got = waiting.await.unwrap().unwrap().into_inner();
        assert_eq!((&got.value[..], got.version), (&b"v8"[..], 8));
        // A floor this server does not reach soon: answered at what it has (the client will
        // find it too old), not held for the whole future-version wait.
        let started = std::time::Instant::now();
        let got = service
            .get(Request::new(newest(20)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!((&got.value[..], got.version), (&b"v8"[..], 8));
        assert!(
            started.elapsed() < FUTURE_VERSION_WAIT / 2,
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_newest_range_read_reports_its_version_even_when_empty() {
        use tokio_stream::StreamExt;
        let dir = tempfile::tempdir().unwrap();
        let (engine, progress) = restarted_at_version_5(dir.path());
        progress.set_owned(vec![KeyRange::all()]);
        let service = StorageService::new(engine, progress);
        let range = |begin: &str, end: &str| v1::StorageGetRangeRequest {
            begin: begin.to_string().into(),
            end: end.to_string().into(),
            version: 2,
            limit: 0,
            reverse: false,
            newest: true,
        };
        for (req, pairs) in [(range("a", "z"), 1), (range("x", "z"), 0)] {
            let mut stream = service
                .get_range(Request::new(req))
                .await
                .unwrap()
                .into_inner();
            let mut messages = Vec::new();
            while let Some(message) = stream.next().await {
                messages.push(message.unwrap());
            }
            assert_eq!(messages.len(), 1);
            assert_eq!(messages[0].pairs.len(), pairs);
            assert_eq!(
                messages[0].version, 5,
                "read at the applied version, not the floor"
            );
        }
    }

    #[tokio::test]
    async fn point_reads_and_their_calls_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, progress) = restarted_at_version_5(dir.path());
        progress.set_owned(vec![KeyRange::all()]);
        let counters = Arc::new(ReadCounters::default());
        let service = StorageService::new(engine, progress).counting(counters.clone());
        let get = |key: &str| v1::StorageGetRequest {
            key: key.to_string().into(),
            version: 5,
            newest: false,
        };
        service.get(Request::new(get("k"))).await.unwrap();
        let batch = v1::StorageGetBatchRequest {
            gets: vec![get("k"), get("missing"), get("k")],
        };
        let outcomes = service.get_batch(Request::new(batch)).await.unwrap();
        assert_eq!(outcomes.into_inner().outcomes.len(), 3);
        assert_eq!((counters.calls(), counters.point_reads()), (2, 4));
    }

    /// Ranges shorter than the first message, exactly its length, and longer (the rest read
    /// on the blocking pool, in messages of up to `RANGE_BATCH_PAIRS`), forward and reverse,
    /// with and without a limit: every pair once, in order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_range_streams_every_pair_in_order_across_its_messages() {
        use tokio_stream::StreamExt;
        let dir = tempfile::tempdir().unwrap();
        let (engine, progress) = restarted_at_version_5(dir.path());
        progress.set_owned(vec![KeyRange::all()]);
        let total = FIRST_MESSAGE_PAIRS + RANGE_BATCH_PAIRS + 7;
        let key = |i: usize| format!("r/{i:05}");
        let mut batch = WriteBatch::default();
        for i in 0..total {
            batch.put(key(i).as_bytes(), format!("value-{i}").as_bytes());
        }
        engine.apply(6, &batch).unwrap();
        progress.advance(6);
        let service = StorageService::new(engine, progress);
        for (end, limit, reverse) in [
            (10, 0, false),
            (FIRST_MESSAGE_PAIRS, 0, false),
            (FIRST_MESSAGE_PAIRS + 1, 0, false),
            (total, 0, false),
            (total, 0, true),
            (total, FIRST_MESSAGE_PAIRS as u64 + 3, false),
            (total, FIRST_MESSAGE_PAIRS as u64, true),
        ] {
            let req = v1::StorageGetRangeRequest {
                begin: key(0).into(),
                end: key(end).into(),
                version: 6,
                limit,
                reverse,
                newest: false,
            };
            let mut stream = service
                .get_range(Request::new(req))
                .await
                .unwrap()
                .into_inner();
            let mut got = Vec::new();
            let mut messages = 0;
            while let Some(message) = stream.next().await {
                let message = message.unwrap();
                assert!(!message.pairs.is_empty(), "an empty message");
                messages += 1;
                got.extend(message.pairs.into_iter().map(|p| (p.key, p.value)));
            }
            let mut want: Vec<usize> = (0..end).collect();
            if reverse {
                want.reverse();
            }
            if limit > 0 {
                want.truncate(limit as usize);
            }
            let want: Vec<_> = want
                .into_iter()
                .map(|i| (key(i).into(), format!("value-{i}").into()))
                .collect();
            assert_eq!(got, want, "end {end}, limit {limit}, reverse {reverse}");
            let expected_messages = match want.len() {
                n if n <= FIRST_MESSAGE_PAIRS => 1,
                n => 1 + (n - FIRST_MESSAGE_PAIRS).div_ceil(RANGE_BATCH_PAIRS),
            };
            assert_eq!(messages, expected_messages, "end {end}, limit {limit}");
        }
    }
}
