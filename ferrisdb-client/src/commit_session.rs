//! [`CommitSession`]: the client's end of a coordinator's `CommitSession` stream, which
//! carries `CommitBatch` requests as messages on one long-lived HTTP/2 stream.
//!
//! A unary call opens a new HTTP/2 stream for every request, and its body can only follow the
//! HEADERS frame once the connection has opened that stream: the request leaves in two or
//! three writes, a task hand-off apart, and the server wakes for each (measured with one
//! client: ~100 µs between the headers and the body of every commit). A request on an open
//! stream is one DATA frame. The session is opened on first use, and again after it ends; the
//! requests of a session that breaks are answered with the stream's error, which the caller
//! treats as it treats a broken unary call (the commits' outcome is unknown). A coordinator
//! without sessions (an older release, answering `UNIMPLEMENTED`) gets `CommitBatch` calls.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ferrisdb_proto::status::status_from_error_status;
use ferrisdb_proto::v1;
use ferrisdb_proto::v1::commit_session_response::Answer;
use ferrisdb_proto::v1::transaction_coordinator_client::TransactionCoordinatorClient;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tonic::transport::Channel;
use tonic::{Status, Streaming};

/// An answer as a `CommitBatch` call gives it.
type Answered = Result<v1::CommitBatchResponse, Status>;

/// Sessions to one coordinator (see the module docs). Share as `Arc<CommitSession>`.
#[derive(Debug)]
pub(crate) struct CommitSession {
    client: TransactionCoordinatorClient<Channel>,
    /// Serializes opening, so concurrent first calls share one stream.
    opening: tokio::sync::Mutex<()>,
    /// The open stream, if any.
    current: Mutex<Option<Arc<OpenSession>>>,
    /// The coordinator has no `CommitSession` (an older release): requests go as
    /// `CommitBatch` calls.
    unsupported: AtomicBool,
}

/// Why no session is open.
enum Unopened {
    /// The coordinator does not serve sessions.
    Unsupported,
    /// It could not be opened (why): nothing was sent.
    NotSent(String),
}

/// One open stream: where requests go, and who waits for which answer.
#[derive(Debug)]
struct OpenSession {
    requests: mpsc::UnboundedSender<v1::CommitSessionRequest>,
    waiting: Arc<Waiting>,
    next_id: AtomicU64,
}

/// The callers waiting for answers, by request id; `None` once the stream has ended.
#[derive(Debug, Default)]
struct Waiting {
    calls: Mutex<Option<HashMap<u64, oneshot::Sender<Answered>>>>,
}

impl Waiting {
    fn new() -> Self {
        Waiting {
            calls: Mutex::new(Some(HashMap::new())),
        }
    }

    fn is_open(&self) -> bool {
        self.calls.lock().is_some()
    }

    fn take(&self, id: u64) -> Option<oneshot::Sender<Answered>> {
        self.calls
            .lock()
            .as_mut()
            .and_then(|calls| calls.remove(&id))
    }

    /// Ends the session: every caller still waiting gets `end`.
    fn end(&self, end: &Status) {
        let calls = self.calls.lock().take();
        for (_, reply) in calls.into_iter().flatten() {
            let _ = reply.send(Err(end.clone()));
        }
    }
}

/// Removes a caller's entry when its call returns or is dropped (a timeout).
struct Registered<'a> {
    waiting: &'a Waiting,
    id: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.waiting.take(self.id);
    }
}

impl CommitSession {
    /// Sessions over `client` (one coordinator's connection).
    pub fn new(client: TransactionCoordinatorClient<Channel>) -> Self {
        CommitSession {
            client,
            opening: tokio::sync::Mutex::new(()),
            current: Mutex::new(None),
            unsupported: AtomicBool::new(false),
        }
    }

    /// Sends `batch` on the session (opening it first if needed) and waits for its answer.
    /// `Err` says why the request was not sent (the session could not be opened, or ended
    /// before the request went out); `Ok` holds the answer as a `CommitBatch` call would give
    /// it, with the stream's error if the session broke before answering.
    pub async fn call(&self, batch: v1::CommitBatchRequest) -> Result<Answered, String> {
        if self.unsupported.load(Ordering::Relaxed) {
            return Ok(self
                .client
                .clone()
                .commit_batch(batch)
                .await
                .map(|r| r.into_inner()));
        }
        let open = match self.open().await {
            Ok(open) => open,
            Err(Unopened::Unsupported) => {
                return Ok(self
                    .client
                    .clone()
                    .commit_batch(batch)
                    .await
                    .map(|r| r.into_inner()));
            }
            Err(Unopened::NotSent(why)) => return Err(why),
        };
        let id = open.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        match open.waiting.calls.lock().as_mut() {
            Some(calls) => calls.insert(id, reply),
            None => return Err(ended_before_sending()),
        };
        let _registered = Registered {
            waiting: &open.waiting,
            id,
        };
        let request = v1::CommitSessionRequest {
            id,
            batch: Some(batch),
        };
        if open.requests.send(request).is_err() {
            return Err(ended_before_sending());
        }
        Ok(answer.await.unwrap_or_else(|_| {
            Err(Status::unknown(
                "the commit session ended without answering",
            ))
        }))
    }

    /// The open session, opened now if there is none (or it ended).
    async fn open(&self) -> Result<Arc<OpenSession>, Unopened> {
        if let Some(open) = self.live() {
            return Ok(open);
        }
        let _opening = self.opening.lock().await;
        if let Some(open) = self.live() {
            return Ok(open);
        }
        let (requests, outgoing) = mpsc::unbounded_channel();
        let outgoing = futures_util::stream::unfold(outgoing, |mut rx| async move {
            rx.recv().await.map(|request| (request, rx))
        });
        let opened = tokio::time::timeout(
            crate::grpc::COORDINATOR_CALL_TIMEOUT,
            self.client.clone().commit_session(outgoing),
        )
        .await
        .map_err(|_| {
            Unopened::NotSent(format!(
                "the coordinator did not open a commit session within {:?}; nothing was sent",
                crate::grpc::COORDINATOR_CALL_TIMEOUT
            ))
        })?
        .map_err(|status| {
            if status.code() == tonic::Code::Unimplemented {
                // A coordinator of an older release: unary calls from now on.
                self.unsupported.store(true, Ordering::Relaxed);
                return Unopened::Unsupported;
            }
            Unopened::NotSent(format!(
                "the coordinator did not open a commit session, so nothing was sent: {}",
                status.message()
            ))
        })?;
        let waiting = Arc::new(Waiting::new());
        tokio::spawn(read_answers(opened.into_inner(), waiting.clone()));
        let open = Arc::new(OpenSession {
            requests,
            waiting,
            next_id: AtomicU64::new(0),
        });
        *self.current.lock() = Some(open.clone());
        Ok(open)
    }

    fn live(&self) -> Option<Arc<OpenSession>> {
        self.current
            .lock()
            .clone()
            .filter(|open| open.waiting.is_open())
    }
}

fn ended_before_sending() -> String {
    "the commit session ended before the request was sent".into()
}

/// Hands each answer to its caller until the stream ends, then fails the callers left.
async fn read_answers(mut answers: Streaming<v1::CommitSessionResponse>, waiting: Arc<Waiting>) {
    let end = loop {
        match answers.message().await {
            Ok(Some(answer)) => {
                let Some(reply) = waiting.take(answer.id) else {
                    continue; // its caller gave up (timed out)
                };
                let answered = match answer.answer {
                    Some(Answer::Batch(batch)) => Ok(batch),
                    Some(Answer::Error(e)) => Err(status_from_error_status(&e)),
                    None => Err(Status::unknown(
                        "the coordinator answered a commit request without an answer",
                    )),
                };
                let _ = reply.send(answered);
            }
            Ok(None) => break Status::unavailable("the coordinator ended the commit session"),
            Err(status) => break status,
        }
    };
    waiting.end(&end);
}
