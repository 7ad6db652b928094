//! Read-version batching: concurrent transactions of one [`crate::Database`] share
//! `GetReadVersion` requests, as FoundationDB's client does.
//!
//! A transaction needs a read version at least as new as every commit acknowledged before it
//! asked. Joining a request that is already in flight would break that (the request may have
//! been answered by the coordinator before a commit the transaction saw acknowledged), so a
//! caller never joins one: callers queue, and one driver task sends a request for everything
//! queued, answers those callers, and repeats while callers keep arriving. Every caller is
//! answered by a request sent after it queued, and under load one request serves every
//! transaction that started during the previous round trip.

use std::future::Future;
use std::sync::Arc;

use ferrisdb_core::{Error, Version};
use ferrisdb_proto::status::{from_status, to_status};
use parking_lot::Mutex;
use tokio::sync::oneshot;

type Reply = oneshot::Sender<Result<Version, Error>>;

/// Queue of callers waiting for a read version; `C` is what a request needs (a client handle).
pub(crate) struct ReadVersionBatcher<C> {
    queue: Mutex<Queue<C>>,
}

struct Queue<C> {
    /// Waiting callers with the request context each brought.
    waiting: Vec<(Reply, C)>,
    /// A driver task is running (it will pick up `waiting`).
    driving: bool,
}

impl<C: Send + 'static> ReadVersionBatcher<C> {
    /// An empty batcher.
    pub fn new() -> Arc<Self> {
        Arc::new(ReadVersionBatcher {
            queue: Mutex::new(Queue {
                waiting: Vec::new(),
                driving: false,
            }),
        })
    }

    /// A read version from a `fetch(context)` call sent after this call began, shared with the
    /// other callers queued at the time. Each round uses the context of its newest caller, so
    /// a changed coordinator address takes effect on the next round.
    pub async fn read_version<F, Fut>(
        self: &Arc<Self>,
        context: C,
        fetch: F,
    ) -> Result<Version, Error>
    where
        F: Fn(C) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Version, Error>> + Send,
    {
        let (reply, answer) = oneshot::channel();
        let start_driver = {
            let mut q = self.queue.lock();
            q.waiting.push((reply, context));
            !std::mem::replace(&mut q.driving, true)
        };
        if start_driver {
            let batcher = self.clone();
            tokio::spawn(async move { batcher.drive(fetch).await });
        }
        answer.await.map_err(|_| {
            Error::Unavailable(
                "the read-version request was dropped (runtime shutting down)".into(),
            )
        })?
    }

    /// Sends one request per round for everything queued until the queue is empty.
    async fn drive<F, Fut>(&self, fetch: F)
    where
        F: Fn(C) -> Fut,
        Fut: Future<Output = Result<Version, Error>>,
    {
        let mut guard = FailQueuedOnDrop {
            queue: &self.queue,
            finished: false,
        };
        loop {
            let round = {
                let mut q = self.queue.lock();
                if q.waiting.is_empty() {
                    q.driving = false;
                    guard.finished = true;
                    return;
                }
                std::mem::take(&mut q.waiting)
            };
            let mut replies = Vec::with_capacity(round.len());
            let mut newest = None;
            for (reply, context) in round {
                replies.push(reply);
                newest = Some(context);
            }
            let Some(context) = newest else { continue };
            match fetch(context).await {
                Ok(version) => {
                    for reply in replies {
                        let _ = reply.send(Ok(version));
                    }
                }
                Err(e) => {
                    // One error, many callers: `Error` is not `Clone`, its status form is.
                    let status = to_status(e);
                    for reply in replies {
                        let _ = reply.send(Err(from_status(&status)));
                    }
                }
            }
        }
    }
}

/// If the driver task is dropped mid-round (runtime shutdown), fails the callers still queued
/// (they would otherwise wait forever) and clears `driving` so a later call starts a driver.
struct FailQueuedOnDrop<'a, C> {
    queue: &'a Mutex<Queue<C>>,
    finished: bool,
}

impl<C> Drop for FailQueuedOnDrop<'_, C> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let mut q = self.queue.lock();
        for (reply, _) in q.waiting.drain(..) {
            let _ = reply.send(Err(Error::Unavailable(
                "the read-version request was abandoned (runtime shutting down)".into(),
            )));
        }
        q.driving = false;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use super::*;

    /// A fetch that counts calls and answers with the call number after `delay`.
    fn counting_fetch(
        calls: Arc<AtomicU64>,
        delay: Duration,
    ) -> impl Fn(()) -> futures_util::future::BoxFuture<'static, Result<Version, Error>>
    + Send
    + Sync
    + Clone
    + 'static {
        move |()| {
            let calls = calls.clone();
            Box::pin(async move {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::time::sleep(delay).await;
                Ok(Version(n))
            })
        }
    }

    #[tokio::test]
    async fn concurrent_callers_share_requests() {
        let batcher = ReadVersionBatcher::new();
        let calls = Arc::new(AtomicU64::new(0));
        let fetch = counting_fetch(calls.clone(), Duration::from_millis(20));
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let (b, f) = (batcher.clone(), fetch.clone());
            tasks.push(tokio::spawn(async move { b.read_version((), f).await }));
        }
        for t in tasks {
            assert!(t.await.unwrap().unwrap() >= Version(1));
        }
        let sent = calls.load(Ordering::SeqCst);
        assert!((1..=3).contains(&sent), "100 callers sent {sent} requests");
    }

    #[tokio::test]
    async fn a_caller_never_joins_a_request_already_in_flight() {
        let batcher = ReadVersionBatcher::new();
        let calls = Arc::new(AtomicU64::new(0));
        let fetch = counting_fetch(calls.clone(), Duration::from_millis(50));
        let (b, f) = (batcher.clone(), fetch.clone());
        let first = tokio::spawn(async move { b.read_version((), f).await });
        // Wait until the first request is in flight, then ask again.
        while calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let second = batcher.read_version((), fetch).await.unwrap();
        let first = first.await.unwrap().unwrap();
        assert_eq!(first, Version(1));
        assert_eq!(
            second,
            Version(2),
            "the later caller must get a later request"
        );
    }

    #[tokio::test]
    async fn errors_reach_every_caller_and_the_next_round_retries() {
        let batcher = ReadVersionBatcher::new();
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let fetch = {
            let fail = fail.clone();
            move |()| {
                let fail = fail.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    if fail.load(Ordering::SeqCst) {
                        Err(Error::Unavailable("coordinator down".into()))
                    } else {
                        Ok(Version(7))
                    }
                }
            }
        };
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let (b, f) = (batcher.clone(), fetch.clone());
            tasks.push(tokio::spawn(async move { b.read_version((), f).await }));
        }
        for t in tasks {
            let err = t.await.unwrap().unwrap_err();
            assert!(matches!(err, Error::Unavailable(_)), "{err}");
        }
        fail.store(false, Ordering::SeqCst);
        assert_eq!(batcher.read_version((), fetch).await.unwrap(), Version(7));
    }

    #[tokio::test]
    async fn each_round_uses_the_newest_callers_context() {
        let batcher = ReadVersionBatcher::new();
        let fetch = |ctx: u64| async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok(Version(ctx))
        };
        assert_eq!(batcher.read_version(3, fetch).await.unwrap(), Version(3));
        assert_eq!(batcher.read_version(9, fetch).await.unwrap(), Version(9));
    }
}
