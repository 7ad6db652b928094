//! Commit batching: concurrent transactions of one [`crate::Database`] share `CommitBatch`
//! calls to the coordinator.
//!
//! A commit goes out at once while fewer than [`MAX_IN_FLIGHT`] calls are outstanding. When
//! all are busy it queues, and the driver of the next call to finish sends everything that
//! queued meanwhile (up to [`MAX_BATCH_TXNS`] transactions and [`MAX_BATCH_BYTES`]) as one
//! call. A lone transaction therefore never waits, and under load each call carries many
//! commits, which divides the per-call cost (HTTP/2 frames, headers, task wake-ups) on both
//! ends. Batching does not change what a commit means: the coordinator resolves and logs every
//! transaction of a batch on its own and answers each with its own outcome.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;

use ferrisdb_core::{Error, Version};
use ferrisdb_proto::v1;
use parking_lot::Mutex;
use prost::Message;
use tokio::sync::oneshot;

/// Most batch calls outstanding at once.
pub(crate) const MAX_IN_FLIGHT: usize = 4;
/// Most transactions in one call (at most `ferrisdb_core::limits::MAX_COMMIT_BATCH`).
pub(crate) const MAX_BATCH_TXNS: usize = 256;
/// A call stops taking transactions at this many encoded bytes (one is always taken).
pub(crate) const MAX_BATCH_BYTES: usize = 1 << 20;

const _: () = assert!(MAX_BATCH_TXNS <= ferrisdb_core::limits::MAX_COMMIT_BATCH);

type Reply = oneshot::Sender<Result<Version, Error>>;

/// One queued commit with the request context (a client handle) its caller brought.
struct Waiting<C> {
    request: v1::CommitRequest,
    context: C,
    reply: Reply,
}

struct Queue<C> {
    waiting: VecDeque<Waiting<C>>,
    in_flight: usize,
}

/// Queue of commits; `C` is what a call needs (a client handle).
pub(crate) struct CommitBatcher<C> {
    queue: Mutex<Queue<C>>,
}

impl<C: Send + 'static> CommitBatcher<C> {
    /// An empty batcher.
    pub fn new() -> Arc<Self> {
        Arc::new(CommitBatcher {
            queue: Mutex::new(Queue {
                waiting: VecDeque::new(),
                in_flight: 0,
            }),
        })
    }

    /// Commits `request` through a `send(context, requests)` call, alone or with other
    /// callers' commits. `send` returns one outcome per request, in order.
    pub async fn commit<F, Fut>(
        self: &Arc<Self>,
        context: C,
        request: v1::CommitRequest,
        send: F,
    ) -> Result<Version, Error>
    where
        F: Fn(C, Vec<v1::CommitRequest>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<Result<Version, Error>>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let batch = {
            let mut q = self.queue.lock();
            q.waiting.push_back(Waiting {
                request,
                context,
                reply,
            });
            if q.in_flight < MAX_IN_FLIGHT {
                q.in_flight += 1;
                Some(take_batch(&mut q.waiting))
            } else {
                None
            }
        };
        if let Some(batch) = batch {
            // The slot is released even if the task is dropped before it first runs.
            let slot = Slot {
                batcher: self.clone(),
                finished: false,
            };
            tokio::spawn(drive(slot, batch, send));
        }
        answer.await.map_err(|_| {
            Error::CommitUnknownResult(
                "the commit call was abandoned (runtime shutting down); it may or may not have \
                 been applied"
                    .into(),
            )
        })?
    }
}

/// Sends `batch`, answers its callers, then sends whatever queued meanwhile until the queue is
/// empty; then gives back its slot.
async fn drive<C, F, Fut>(mut slot: Slot<C>, mut batch: Vec<Waiting<C>>, send: F)
where
    F: Fn(C, Vec<v1::CommitRequest>) -> Fut,
    Fut: Future<Output = Vec<Result<Version, Error>>>,
{
    loop {
        let mut requests = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        let mut newest = None;
        for w in batch {
            requests.push(w.request);
            replies.push(w.reply);
            newest = Some(w.context);
        }
        if let Some(context) = newest {
            let sent = requests.len();
            let mut outcomes = send(context, requests).await.into_iter();
            for reply in replies {
                let outcome = outcomes.next().unwrap_or_else(|| {
                    Err(Error::CommitUnknownResult(format!(
                        "the commit call answered fewer outcomes than the {sent} commits it \
                         carried; this one may or may not have been applied"
                    )))
                });
                let _ = reply.send(outcome);
            }
        }
        let mut q = slot.batcher.queue.lock();
        if q.waiting.is_empty() {
            q.in_flight -= 1;
            drop(q);
            slot.finished = true;
            return;
        }
        batch = take_batch(&mut q.waiting);
    }
}

/// The next call's commits: from the front of the queue, within the batch limits.
fn take_batch<C>(waiting: &mut VecDeque<Waiting<C>>) -> Vec<Waiting<C>> {
    let mut batch = Vec::new();
    let mut bytes = 0;
    while let Some(next) = waiting.front() {
        let size = next.request.encoded_len();
        if !batch.is_empty() && (batch.len() == MAX_BATCH_TXNS || bytes + size > MAX_BATCH_BYTES) {
            break;
        }
        bytes += size;
        batch.extend(waiting.pop_front());
    }
    batch
}

/// A driver's claim on one of the [`MAX_IN_FLIGHT`] call slots. If the driver is dropped
/// before it finishes (runtime shutdown), the slot is given back, and when no driver is left
/// the commits still queued fail as never sent (`Unavailable`) instead of waiting forever.
struct Slot<C> {
    batcher: Arc<CommitBatcher<C>>,
    finished: bool,
}

impl<C> Drop for Slot<C> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let mut q = self.batcher.queue.lock();
        q.in_flight -= 1;
        if q.in_flight == 0 {
            for w in q.waiting.drain(..) {
                let _ = w.reply.send(Err(Error::Unavailable(
                    "the commit was not sent: its batch call was abandoned (runtime shutting down)"
                        .into(),
                )));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use bytes::Bytes;
    use futures_util::future::BoxFuture;

    use super::*;

    /// Records every call's size; answers request `i` of call `n` with version `n * 1000 + i`
    /// after `delay`, or `NotCommitted` for requests whose read version is odd.
    fn recording_send(
        calls: Arc<Mutex<Vec<usize>>>,
        delay: Duration,
    ) -> impl Fn((), Vec<v1::CommitRequest>) -> BoxFuture<'static, Vec<Result<Version, Error>>>
    + Send
    + Sync
    + Clone
    + 'static {
        move |(), requests| {
            let calls = calls.clone();
            Box::pin(async move {
                let n = {
                    let mut calls = calls.lock();
                    calls.push(requests.len());
                    calls.len() as u64
                };
                tokio::time::sleep(delay).await;
                requests
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        if r.read_version % 2 == 1 {
                            Err(Error::NotCommitted)
                        } else {
                            Ok(Version(n * 1000 + i as u64))
                        }
                    })
                    .collect()
            })
        }
    }

    fn request(read_version: u64) -> v1::CommitRequest {
        v1::CommitRequest {
            read_version,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_lone_commit_is_sent_at_once_in_its_own_call() {
        let batcher = CommitBatcher::new();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let send = recording_send(calls.clone(), Duration::ZERO);
        for round in 1..=3 {
            let v = batcher.commit((), request(0), send.clone()).await.unwrap();
            assert_eq!(v, Version(round * 1000));
        }
        assert_eq!(*calls.lock(), vec![1, 1, 1]);
        assert_eq!(batcher.queue.lock().in_flight, 0);
    }

    #[tokio::test]
    async fn concurrent_commits_share_calls_and_each_gets_its_own_outcome() {
        let batcher = CommitBatcher::new();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let send = recording_send(calls.clone(), Duration::from_millis(20));
        let mut tasks = Vec::new();
        for i in 0..200u64 {
            let (b, s) = (batcher.clone(), send.clone());
            tasks.push(tokio::spawn(async move {
                (i, b.commit((), request(i), s).await)
            }));
        }
        let mut versions = std::collections::HashSet::new();
        for t in tasks {
            let (i, outcome) = t.await.unwrap();
            if i % 2 == 1 {
                assert!(
                    matches!(outcome, Err(Error::NotCommitted)),
                    "{i}: {outcome:?}"
                );
            } else {
                assert!(
                    versions.insert(outcome.unwrap()),
                    "a version answered twice"
                );
            }
        }
        let calls = calls.lock();
        assert_eq!(calls.iter().sum::<usize>(), 200);
        assert!(
            calls.len() <= MAX_IN_FLIGHT * 4,
            "200 concurrent commits took {} calls: {calls:?}",
            calls.len()
        );
        assert_eq!(batcher.queue.lock().in_flight, 0);
    }

    #[tokio::test]
    async fn calls_in_flight_never_exceed_the_limit_and_batches_respect_their_caps() {
        let batcher = CommitBatcher::new();
        let outstanding = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let send = {
            let (outstanding, most, sizes) = (outstanding.clone(), most.clone(), sizes.clone());
            move |(), requests: Vec<v1::CommitRequest>| {
                let (outstanding, most, sizes) = (outstanding.clone(), most.clone(), sizes.clone());
                Box::pin(async move {
                    let now = outstanding.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    let bytes: usize = requests.iter().map(|r| r.encoded_len()).sum();
                    sizes.lock().push((requests.len(), bytes));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    outstanding.fetch_sub(1, Ordering::SeqCst);
                    requests.iter().map(|_| Ok(Version(1))).collect()
                }) as BoxFuture<'static, Vec<Result<Version, Error>>>
            }
        };
        // 1,000 commits of ~10 KiB each: byte-capped batches of about 100.
        let mut tasks = Vec::new();
        for _ in 0..1000 {
            let (b, s) = (batcher.clone(), send.clone());
            let mut r = request(0);
            r.write_conflict_ranges.push(v1::KeyRange {
                begin: Bytes::from(vec![7u8; 10 << 10]),
                end: Bytes::new(),
            });
            tasks.push(tokio::spawn(async move { b.commit((), r, s).await }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert!(most.load(Ordering::SeqCst) <= MAX_IN_FLIGHT);
        let sizes = sizes.lock();
        assert_eq!(sizes.iter().map(|(n, _)| n).sum::<usize>(), 1000);
        for (n, bytes) in sizes.iter() {
            assert!(*n <= MAX_BATCH_TXNS);
            assert!(
                *n == 1 || *bytes <= MAX_BATCH_BYTES,
                "{n} commits, {bytes} bytes"
            );
        }
        assert!(sizes.iter().any(|(n, _)| *n > 1), "nothing was batched");
    }

    #[tokio::test]
    async fn a_short_answer_leaves_the_rest_unknown() {
        let batcher = CommitBatcher::new();
        let send = |(), _requests: Vec<v1::CommitRequest>| async { Vec::new() };
        let err = batcher.commit((), request(0), send).await.unwrap_err();
        assert!(matches!(err, Error::CommitUnknownResult(_)), "{err:?}");
    }

    #[test]
    fn an_abandoned_call_releases_its_slot_and_queue() {
        let batcher: Arc<CommitBatcher<()>> = CommitBatcher::new();
        {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            // The call never finishes; the runtime is dropped under it.
            let never = |(), _requests: Vec<v1::CommitRequest>| async {
                std::future::pending::<()>().await;
                Vec::new()
            };
            runtime.block_on(async {
                let mut waiters = Vec::new();
                for i in 0..(MAX_IN_FLIGHT + 3) as u64 {
                    let b = batcher.clone();
                    waiters.push(tokio::spawn(async move {
                        b.commit((), request(i * 2), never).await
                    }));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                assert_eq!(batcher.queue.lock().in_flight, MAX_IN_FLIGHT);
                assert_eq!(batcher.queue.lock().waiting.len(), 3);
            });
        }
        {
            let q = batcher.queue.lock();
            assert_eq!(q.in_flight, 0);
            assert!(q.waiting.is_empty());
        }
        // The batcher still works: a later commit starts a fresh driver.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let v = runtime
            .block_on(batcher.commit((), request(0), recording_send(calls, Duration::ZERO)))
            .unwrap();
        assert_eq!(v, Version(1000));
    }
}
