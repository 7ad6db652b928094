//! The `LogServer` gRPC service over a [`LogServer`] handle.
//!
//! `Append` runs two stages per stream, like the coordinator's commit pipeline: a task reads
//! the requests in order and queues each record in the WAL (and notes what the coordinator
//! knows committed), and a syncer on a blocking thread makes everything queued durable with
//! one fsync, publishes it and answers with the newest durable version. Records queued while an
//! fsync runs are covered by the next one, so the log server group-commits whatever the
//! coordinator pipelines. The first refused request (fenced, out of chain, undecodable) ends
//! the stream with its status: nothing after it is appended.
//!
//! A record that finds the log idle (the syncer has nothing queued and the last fsync ended
//! longer ago than it took, see `SyncPacing`) is made durable on the reader's own task
//! instead: one client's commit then skips two thread hand-offs on this server (to the syncer
//! and back), each an OS wake-up that costs tens of microseconds on a busy machine. The
//! fsync then holds that runtime worker, which is why it is only done when the log is idle:
//! under load every record goes to the syncer and the workers keep serving the feeds.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ferrisdb_core::{Error, Version};
use ferrisdb_proto::convert::ranges_from_proto;
use ferrisdb_proto::status::to_status;
use ferrisdb_proto::v1;
use ferrisdb_proto::v1::log_server_server::LogServer as LogServerRpc;
use futures_util::Stream;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::{Request, Response, Status, Streaming};

use super::feed::Pulled;
use super::server::LogServer;
use super::{LoggedBatch, Submitted};

/// Longest storage id accepted.
pub const MAX_STORAGE_ID_BYTES: usize = 256;
/// Records queued on one stream ahead of its syncer.
const APPEND_QUEUE: usize = 64;

/// The gRPC face of a [`LogServer`].
#[derive(Debug, Clone)]
pub struct LogService {
    server: Arc<LogServer>,
}

impl LogService {
    /// Serves `server`.
    pub fn new(server: Arc<LogServer>) -> Self {
        LogService { server }
    }
}

/// A stream of responses.
pub type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Decides, per record, whether an append stream's reader may make it durable itself (see the
/// module docs): only when the syncer has nothing queued, so records stay durable and
/// published in order, and the last fsync ended longer ago than it took, so a log under load
/// (records arriving while fsyncs run) never holds a runtime worker in an fsync.
#[derive(Debug)]
struct SyncPacing {
    /// Records handed to the syncer and not yet answered.
    queued: AtomicU64,
    /// When the last fsync ended and how long it took.
    last: Mutex<Option<(Instant, Duration)>>,
}

impl SyncPacing {
    fn new() -> Self {
        SyncPacing {
            queued: AtomicU64::new(0),
            last: Mutex::new(None),
        }
    }

    /// Whether the reader may sync the record it holds itself.
    fn idle(&self) -> bool {
        if self.queued.load(Ordering::Acquire) != 0 {
            return false;
        }
        // BUGGIFY: the syncer takes records that would have been synced here, so the
        // simulator (whose fsyncs take no time) runs both paths and their hand-over.
        if ferrisdb_core::buggify!(0.5) {
            return false;
        }
        match *self.last.lock() {
            None => true,
            Some((ended, took)) => ended.elapsed() >= took,
        }
    }

    fn note_sync(&self, started: Instant) {
        let now = Instant::now();
        *self.last.lock() = Some((now, now - started));
    }
}

/// Makes the log durable through record `seq` (one fsync), then publishes `batches` (in
/// order) and returns the newest version published. An error is noted on the server (the log
/// then refuses every write).
async fn sync_and_publish(
    server: &LogServer,
    pacing: &SyncPacing,
    seq: u64,
    batches: Vec<Arc<LoggedBatch>>,
) -> Result<Version, Status> {
    // BUGGIFY: a slow fsync, sometimes slower than the coordinator waits for its
    // acknowledgement (`ACK_TIMEOUT`, 2 s): the generation then ends and the controller
    // recovers the transaction system.
    if ferrisdb_core::buggify!(0.003) {
        let wait = Duration::from_millis(ferrisdb_core::random::up_to(3000));
        tokio::time::sleep(wait).await;
    }
    let started = Instant::now();
    let synced = server.sync(seq);
    pacing.note_sync(started);
    if let Err(e) = synced {
        server.note_error(&e);
        return Err(to_status(e));
    }
    let mut durable = Version::ZERO;
    for batch in batches {
        durable = batch.version;
        server.publish(batch);
    }
    Ok(durable)
}

/// The stream's syncer: waits for queued records, makes them durable together, publishes them
/// and answers. Every record queued is made durable and published even once the client has
/// gone (a coordinator killed mid-stream): a record left submitted but unpublished would keep
/// the log from being locked or reset for ever. Ends when the reader stops queueing, or at the
/// first failed fsync (the log then refuses every write).
async fn run_syncer(
    server: Arc<LogServer>,
    pacing: Arc<SyncPacing>,
    mut queued: mpsc::Receiver<Submitted>,
    answers: mpsc::Sender<Result<v1::AppendResponse, Status>>,
) {
    let mut answering = true;
    while let Some(first) = queued.recv().await {
        let mut batches: Vec<Arc<LoggedBatch>> = vec![first.batch];
        let mut seq = first.seq;
        while let Ok(more) = queued.try_recv() {
            seq = more.seq;
            batches.push(more.batch);
        }
        let taken = batches.len() as u64;
        let result = sync_and_publish(&server, &pacing, seq, batches).await;
        if answering || result.is_err() {
            let answer = result.as_ref().map(|durable| v1::AppendResponse {
                durable_version: durable.get(),
                probe: 0,
            });
            answering = answers.send(answer.map_err(Clone::clone)).await.is_ok();
        }
        // Counted down only after the answer is queued, so a record the reader syncs itself
        // is answered after every record before it.
        let _ = pacing
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_sub(taken))
            });
        if result.is_err() {
            return;
        }
    }
}

/// Reads the stream's requests in order and queues their records for the syncer; the first
/// refused request ends the stream with its status.
async fn read_appends(
    server: Arc<LogServer>,
    pacing: Arc<SyncPacing>,
    mut incoming: Streaming<v1::AppendRequest>,
    queue: mpsc::Sender<Submitted>,
    answers: mpsc::Sender<Result<v1::AppendResponse, Status>>,
) {
    loop {
        let request = match incoming.message().await {
            Ok(Some(request)) => request,
            Ok(None) | Err(_) => return,
        };
        if !request.record.is_empty() {
            match server.append(request.epoch, &request.record) {
                Ok(submitted) if pacing.idle() => {
                    let synced =
                        sync_and_publish(&server, &pacing, submitted.seq, vec![submitted.batch])
                            .await;
                    let failed = synced.is_err();
                    let answer = synced.map(|durable| v1::AppendResponse {
                        durable_version: durable.get(),
                        probe: 0,
                    });
                    if answers.send(answer).await.is_err() || failed {
                        return;
                    }
                }
                Ok(submitted) => {
                    pacing.queued.fetch_add(1, Ordering::AcqRel);
                    if queue.send(submitted).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    server.note_error(&e);
                    let _ = answers.send(Err(to_status(e))).await;
                    return;
                }
            }
        }
        let truncation = server.note_committed(
            request.epoch,
            Version(request.known_committed),
            Version(request.truncate_through),
            Version(request.redundant_through),
        );
        let result = match truncation {
            Ok(None) => Ok(()),
            Ok(Some(target)) => {
                let server = server.clone();
                crate::exec::blocking("the truncation task", move || server.truncate(target))
                    .await
                    .and_then(|truncated| truncated)
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            let _ = answers.send(Err(to_status(e))).await;
            return;
        }
        // `note_committed` checked the generation: a probe's answer says it still holds the
        // lock at this point of the stream.
        if request.probe != 0 {
            let answer = v1::AppendResponse {
                durable_version: 0,
                probe: request.probe,
            };
            if answers.send(Ok(answer)).await.is_err() {
                return;
            }
        }
    }
}

/// Refuses an empty or overlong storage id (`INVALID_ARGUMENT`).
pub fn check_storage_id(id: &str) -> Result<(), Status> {
    if id.is_empty() || id.len() > MAX_STORAGE_ID_BYTES {
        return Err(to_status(Error::InvalidArgument(format!(
            "storage_id must be 1 to {MAX_STORAGE_ID_BYTES} bytes, got {}",
            id.len()
        ))));
    }
    Ok(())
}

/// A pull's answer on the wire.
pub fn pulled_to_proto(pulled: Pulled) -> v1::PullMutationsResponse {
    v1::PullMutationsResponse {
        batches: pulled
            .batches
            .into_iter()
            .map(v1::VersionedMutations::from)
            .collect(),
        committed_through: pulled.committed_through.get(),
    }
}

#[tonic::async_trait]
impl LogServerRpc for LogService {
    type AppendStream = ResponseStream<v1::AppendResponse>;

    async fn append(
        &self,
        request: Request<Streaming<v1::AppendRequest>>,
    ) -> Result<Response<Self::AppendStream>, Status> {
        let incoming = request.into_inner();
        let (queue_tx, queue_rx) = mpsc::channel(APPEND_QUEUE);
        let (answer_tx, answer_rx) = mpsc::channel(APPEND_QUEUE);
        let syncer_server = self.server.clone();
        let syncer_answers = answer_tx.clone();
        let pacing = Arc::new(SyncPacing::new());
        // The syncer has a thread of its own for as long as the stream lasts (not the
        // blocking pool, which is for short calls: a paused test clock never advances while a
        // pool task runs).
        crate::exec::spawn_worker(
            "log-syncer",
            run_syncer(syncer_server, pacing.clone(), queue_rx, syncer_answers),
        )
        .map_err(|e| Status::unavailable(format!("cannot start the stream's syncer: {e}")))?;
        tokio::spawn(read_appends(
            self.server.clone(),
            pacing,
            incoming,
            queue_tx,
            answer_tx,
        ));
        let stream = futures_util::stream::unfold(answer_rx, |mut rx| async move {
            rx.recv().await.map(|answer| (answer, rx))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn lock(
        &self,
        request: Request<v1::LockRequest>,
    ) -> Result<Response<v1::LockResponse>, Status> {
        let epoch = request.into_inner().epoch;
        if epoch == 0 {
            return Err(to_status(Error::InvalidArgument(
                "epoch must be at least 1".into(),
            )));
        }
        let state = self.server.lock(epoch).await.map_err(to_status)?;
        Ok(Response::new(v1::LockResponse {
            log_id: state.log_id,
            durable_version: state.durable_version.get(),
            retained_from: state.retained_from.get(),
            known_committed: state.known_committed.get(),
        }))
    }

    async fn read_records(
        &self,
        request: Request<v1::ReadRecordsRequest>,
    ) -> Result<Response<v1::ReadRecordsResponse>, Status> {
        let req = request.into_inner();
        let server = self.server.clone();
        let records = crate::exec::blocking("the read task", move || {
            server.read_records(
                req.epoch,
                Version(req.after_version),
                Version(req.through_version),
                req.max_bytes,
            )
        })
        .await
        .and_then(|records| records)
        .map_err(to_status)?;
        Ok(Response::new(v1::ReadRecordsResponse {
            records: records.into_iter().map(Into::into).collect(),
        }))
    }

    async fn reset(
        &self,
        request: Request<v1::ResetRequest>,
    ) -> Result<Response<v1::ResetResponse>, Status> {
        let req = request.into_inner();
        let server = self.server.clone();
        crate::exec::blocking("the reset task", move || {
            server.reset(req.epoch, Version(req.start_version))
        })
        .await
        .and_then(|reset| reset)
        .map_err(to_status)?;
        Ok(Response::new(v1::ResetResponse {}))
    }

    type StreamMutationsStream = ResponseStream<v1::PullMutationsResponse>;

    async fn stream_mutations(
        &self,
        request: Request<v1::StreamMutationsRequest>,
    ) -> Result<Response<Self::StreamMutationsStream>, Status> {
        let req = request.into_inner();
        check_storage_id(&req.storage_id)?;
        let ranges = ranges_from_proto(req.ranges).map_err(to_status)?;
        let feed = self
            .server
            .feed(
                &req.storage_id,
                Version(req.after_version),
                ranges,
                req.max_bytes,
            )
            .map_err(to_status)?;
        let stream = futures_util::stream::unfold(feed, |mut feed| async move {
            let next = feed.next().await?;
            Some((next.map(pulled_to_proto).map_err(to_status), feed))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_log_state(
        &self,
        _request: Request<v1::GetLogStateRequest>,
    ) -> Result<Response<v1::LogState>, Status> {
        let s = self.server.state();
        Ok(Response::new(v1::LogState {
            log_id: s.log_id,
            locked_epoch: s.locked_epoch,
            durable_version: s.durable_version.get(),
            known_committed: s.known_committed.get(),
            retained_from: s.retained_from.get(),
            retained_bytes: s.stats.retained_bytes,
            fsyncs: s.stats.fsyncs,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{LogOptions, record};
    use ferrisdb_core::Mutation;

    /// A record is synced on the reader's task only when the syncer has nothing queued and
    /// the last fsync ended at least as long ago as it took.
    #[tokio::test(start_paused = true)]
    async fn the_reader_syncs_only_when_the_log_is_idle() {
        let pacing = SyncPacing::new();
        assert!(pacing.idle(), "a fresh stream has synced nothing yet");
        let started = Instant::now();
        tokio::time::advance(Duration::from_millis(4)).await;
        pacing.note_sync(started);
        assert!(!pacing.idle(), "the last fsync (4 ms) ended just now");
        tokio::time::advance(Duration::from_millis(3)).await;
        assert!(!pacing.idle(), "3 ms after a 4 ms fsync");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(pacing.idle(), "4 ms after a 4 ms fsync");
        pacing.queued.fetch_add(1, Ordering::AcqRel);
        assert!(!pacing.idle(), "the syncer has a record queued");
        pacing.queued.fetch_sub(1, Ordering::AcqRel);
        assert!(pacing.idle());
    }

    /// A record that finds the log idle is made durable and published on the reader's path;
    /// under load (an fsync just ended) the next one goes to the syncer, which answers it and
    /// counts it off the queue.
    #[tokio::test(start_paused = true)]
    async fn the_reader_and_then_the_syncer_make_records_durable() {
        let dir = tempfile::tempdir().unwrap();
        let server = LogServer::open(dir.path(), "log-t".into(), LogOptions::default()).unwrap();
        server.lock(1).await.unwrap();
        let pacing = Arc::new(SyncPacing::new());
        let (queue_tx, queue_rx) = mpsc::channel(APPEND_QUEUE);
        let (answer_tx, mut answer_rx) = mpsc::channel(APPEND_QUEUE);
        let syncing = tokio::spawn(run_syncer(
            server.clone(),
            pacing.clone(),
            queue_rx,
            answer_tx.clone(),
        ));
        let record = |v: u64, prev: u64| {
            let m = Mutation::Set {
                key: format!("k{v}").into(),
                value: "v".into(),
            };
            record::encode(Version(v), Version(prev), &[m]).unwrap()
        };
        // Idle: the reader's path (as `read_appends` takes it).
        let first = server.append(1, &record(10, 0)).unwrap();
        assert!(pacing.idle());
        let durable = sync_and_publish(&server, &pacing, first.seq, vec![first.batch])
            .await
            .unwrap();
        assert_eq!(durable, Version(10));
        // An fsync took time and just ended: the next record goes to the syncer.
        *pacing.last.lock() = Some((Instant::now(), Duration::from_millis(5)));
        assert!(!pacing.idle());
        let second = server.append(1, &record(20, 10)).unwrap();
        pacing.queued.fetch_add(1, Ordering::AcqRel);
        queue_tx.send(second).await.unwrap();
        let answer = answer_rx.recv().await.unwrap().unwrap();
        assert_eq!(answer.durable_version, 20);
        assert_eq!(pacing.queued.load(Ordering::Acquire), 0);
        assert_eq!(
            server.servable(),
            Version::ZERO,
            "nothing is known committed yet"
        );
        let published = server
            .read_records(1, Version::ZERO, Version(20), 0)
            .unwrap();
        assert_eq!(published.len(), 2, "both records are readable");
        drop(queue_tx);
        syncing.await.unwrap();
    }

    /// A coordinator killed mid-stream leaves records queued behind its last answer: they are
    /// still made durable and published, so the log can be locked and read afterwards.
    #[tokio::test]
    async fn records_queued_when_the_client_goes_are_still_published() {
        let dir = tempfile::tempdir().unwrap();
        let server = LogServer::open(dir.path(), "log-t".into(), LogOptions::default()).unwrap();
        server.lock(1).await.unwrap();
        let (queue_tx, queue_rx) = mpsc::channel(APPEND_QUEUE);
        let (answer_tx, answer_rx) = mpsc::channel(1);
        drop(answer_rx); // the client is gone: no answer can be sent
        let syncer = server.clone();
        let pacing = Arc::new(SyncPacing::new());
        let syncing = tokio::spawn(run_syncer(syncer, pacing, queue_rx, answer_tx));
        let record = |v: u64, prev: u64| {
            let m = Mutation::Set {
                key: format!("k{v}").into(),
                value: "v".into(),
            };
            record::encode(Version(v), Version(prev), &[m]).unwrap()
        };
        // The first record is synced and published on its own (its answer then fails) ...
        queue_tx
            .send(server.append(1, &record(10, 0)).unwrap())
            .await
            .unwrap();
        while server
            .read_records(1, Version::ZERO, Version(10), 0)
            .unwrap()
            .is_empty()
        {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        // ... and the ones queued after it must still be.
        let mut prev = 10;
        for v in (20..=50).step_by(10) {
            queue_tx
                .send(server.append(1, &record(v, prev)).unwrap())
                .await
                .unwrap();
            prev = v;
        }
        drop(queue_tx);
        syncing.await.unwrap();
        let locked = tokio::time::timeout(std::time::Duration::from_secs(2), server.lock(2))
            .await
            .expect("the lock does not wait for records that will never be published")
            .unwrap();
        assert_eq!(locked.durable_version, Version(50));
        let records = server
            .read_records(2, Version::ZERO, Version(50), 0)
            .unwrap();
        assert_eq!(records.len(), 5);
    }
}
