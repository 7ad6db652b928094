//! Sessions: the client's end of a server's session stream (`CommitSession` and
//! `ReadVersionSession` on the coordinator, `GetSession` and `GetRangeSession` on storage
//! servers), which carries the requests of a unary method (`CommitBatch`, `GetReadVersion`,
//! `GetBatch`; a range read's start) as messages on one long-lived HTTP/2 stream.
//!
//! A unary call opens a new HTTP/2 stream for every request, and its body can only follow the
//! HEADERS frame once the connection has opened that stream: the request leaves in two or
//! three writes, a task hand-off apart, and the server wakes for each (measured with one
//! client: ~100 µs between the headers and the body of every commit). A request on an open
//! stream is one DATA frame. A [`Session`] is opened on first use, and again after it ends;
//! requests queued while it opens follow its HEADERS frame at once. The requests of a session
//! that breaks (or cannot be opened) are answered with the stream's error, which the caller
//! treats as it treats a failed unary call (a commit's outcome is then unknown, unless the
//! connection was refused). A server without sessions (an older release, answering
//! `UNIMPLEMENTED`) gets unary calls.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use std::future::Future;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tonic::transport::Channel;
use tonic::{Status, Streaming};

use ferrisdb_proto::status::status_from_error_status;
use ferrisdb_proto::v1;
use ferrisdb_proto::v1::storage_server_client::StorageServerClient;
use ferrisdb_proto::v1::transaction_coordinator_client::TransactionCoordinatorClient;

use crate::grpc::COORDINATOR_CALL_TIMEOUT;

/// One kind of session: the unary method it stands for and its stream's messages.
pub(crate) trait SessionKind: Clone + Send + Sync + 'static {
    /// A request as the unary method takes it.
    type Request: Clone + Send + 'static;
    /// Its answer as the unary method gives it.
    type Reply: Send + 'static;
    /// A request on the stream.
    type Outgoing: Send + 'static;
    /// An answer on the stream.
    type Incoming: Send + 'static;
    /// The server's role, for messages.
    const SERVER: &'static str;
    /// `request`, tagged with `id`.
    fn tag(id: u64, request: Self::Request) -> Self::Outgoing;
    /// An answer's id and content.
    fn untag(answer: Self::Incoming) -> (u64, Result<Self::Reply, Status>);
    /// Opens the stream that sends what `outgoing` receives.
    fn open(
        &self,
        outgoing: mpsc::UnboundedReceiver<Self::Outgoing>,
    ) -> impl Future<Output = Result<Streaming<Self::Incoming>, Status>> + Send;
    /// The unary call, for a server without sessions.
    fn unary(
        &self,
        request: Self::Request,
    ) -> impl Future<Output = Result<Self::Reply, Status>> + Send;
}

/// An answer as the unary method gives it.
pub(crate) type Answered<K> = Result<<K as SessionKind>::Reply, Status>;

/// Sessions to one server (see the module docs). Share as `Arc<Session<K>>`.
pub(crate) struct Session<K: SessionKind> {
    kind: K,
    /// The current stream (open, or opening), if any.
    current: Mutex<Option<Arc<OpenSession<K>>>>,
    /// The server has no sessions (an older release): requests go as unary calls.
    unsupported: Arc<AtomicBool>,
}

/// One stream: where requests go, and who waits for which answer.
struct OpenSession<K: SessionKind> {
    requests: mpsc::UnboundedSender<K::Outgoing>,
    waiting: Arc<Waiting<K::Reply>>,
    next_id: AtomicU64,
    /// The server has opened the stream (so it serves sessions).
    opened: Arc<AtomicBool>,
}

/// Where a caller waits for its answer.
type Reply<T> = oneshot::Sender<Result<T, Status>>;

/// The callers waiting for answers, by request id; `None` once the stream has ended.
struct Waiting<T> {
    calls: Mutex<Option<HashMap<u64, Reply<T>>>>,
}

impl<T> Waiting<T> {
    fn new() -> Self {
        Waiting {
            calls: Mutex::new(Some(HashMap::new())),
        }
    }

    fn is_open(&self) -> bool {
        self.calls.lock().is_some()
    }

    fn take(&self, id: u64) -> Option<Reply<T>> {
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
struct Registered<'a, T> {
    waiting: &'a Waiting<T>,
    id: u64,
}

impl<T> Drop for Registered<'_, T> {
    fn drop(&mut self) {
        self.waiting.take(self.id);
    }
}

impl<K: SessionKind> Session<K> {
    /// Sessions over `kind` (one server's connection).
    pub fn new(kind: K) -> Self {
        Session {
            kind,
            current: Mutex::new(None),
            unsupported: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Sends `request` on the session and waits for its answer, as the unary method would
    /// give it: with the stream's error if the session broke (or could not be opened) before
    /// answering. A request is sent as soon as it is queued, even while the stream is still
    /// opening (its HTTP/2 DATA frame follows the HEADERS frame), so an error then leaves it
    /// as unknown as a failed unary call's; `Err` says it was never sent.
    pub async fn call(&self, request: K::Request) -> Result<Answered<K>, String> {
        if self.unsupported.load(Ordering::Relaxed) {
            return Ok(self.kind.unary(request).await);
        }
        let open = self.open();
        // Until the server has opened a stream, it may turn out not to serve sessions: keep
        // the request to send it as a unary call then.
        let kept = (!open.opened.load(Ordering::Acquire)).then(|| request.clone());
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
        if open.requests.send(K::tag(id, request)).is_err() {
            return Err(ended_before_sending());
        }
        let answered = answer.await.unwrap_or_else(|_| {
            Err(Status::unknown(format!(
                "the {} session ended without answering",
                K::SERVER
            )))
        });
        match (answered, kept) {
            (Err(status), Some(request))
                if status.code() == tonic::Code::Unimplemented
                    && self.unsupported.load(Ordering::Relaxed) =>
            {
                Ok(self.kind.unary(request).await)
            }
            (answered, _) => Ok(answered),
        }
    }

    /// The current session, or a new one (opening in the background) if it ended.
    fn open(&self) -> Arc<OpenSession<K>> {
        let mut current = self.current.lock();
        if let Some(open) = current.as_ref().filter(|open| open.waiting.is_open()) {
            return open.clone();
        }
        let (requests, outgoing) = mpsc::unbounded_channel();
        let open = Arc::new(OpenSession {
            requests,
            waiting: Arc::new(Waiting::new()),
            next_id: AtomicU64::new(0),
            opened: Arc::new(AtomicBool::new(false)),
        });
        tokio::spawn(run_session(
            self.kind.clone(),
            outgoing,
            open.waiting.clone(),
            open.opened.clone(),
            self.unsupported.clone(),
        ));
        *current = Some(open.clone());
        open
    }
}

/// What `outgoing` receives, as a stream.
fn receiver_stream<T: Send + 'static>(
    outgoing: mpsc::UnboundedReceiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::unfold(outgoing, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

fn ended_before_sending() -> String {
    "the session ended before the request was sent".into()
}

/// Opens the stream, then hands each answer to its caller until the stream ends; then (or if
/// it could not be opened) fails the callers left with the stream's error.
async fn run_session<K: SessionKind>(
    kind: K,
    outgoing: mpsc::UnboundedReceiver<K::Outgoing>,
    waiting: Arc<Waiting<K::Reply>>,
    opened: Arc<AtomicBool>,
    unsupported: Arc<AtomicBool>,
) {
    let mut answers =
        match tokio::time::timeout(COORDINATOR_CALL_TIMEOUT, kind.open(outgoing)).await {
            Ok(Ok(answers)) => answers,
            Ok(Err(status)) => {
                if status.code() == tonic::Code::Unimplemented {
                    // A server of an older release: unary calls from now on.
                    unsupported.store(true, Ordering::Relaxed);
                }
                waiting.end(&status);
                return;
            }
            Err(_) => {
                waiting.end(&Status::deadline_exceeded(format!(
                    "the {} did not open the session within {COORDINATOR_CALL_TIMEOUT:?}",
                    K::SERVER
                )));
                return;
            }
        };
    opened.store(true, Ordering::Release);
    let end = loop {
        match answers.message().await {
            Ok(Some(answer)) => {
                let (id, answered) = K::untag(answer);
                if let Some(reply) = waiting.take(id) {
                    let _ = reply.send(answered);
                } // else its caller gave up (timed out)
            }
            Ok(None) => {
                break Status::unavailable(format!("the {} ended the session", K::SERVER));
            }
            Err(status) => break status,
        }
    };
    waiting.end(&end);
}

/// Defines a [`SessionKind`]: its name and client, the server's role, the unary method's
/// request and reply, the session's request (with the field holding the unary request) and
/// answer (with its `answer` oneof and the variant holding the unary reply), and the client's
/// session method and unary method (or `unary = f`, a function taking the client and a request
/// and answering as the session would, for a server without sessions).
macro_rules! session_kind {
    (
        $(#[$doc:meta])*
        $name:ident($client:ty), $server:literal,
        $request:ty => $reply:ty,
        $outgoing:ident { $field:ident },
        $incoming:ident { $answer:ident::$ok:ident },
        $open:ident, $unary:ident
    ) => {
        session_kind!(
            $(#[$doc])*
            $name($client), $server,
            $request => $reply,
            $outgoing { $field },
            $incoming { $answer::$ok },
            $open, unary = |mut client: $client, request| async move {
                Ok(client.$unary(request).await?.into_inner())
            }
        );
    };
    (
        $(#[$doc:meta])*
        $name:ident($client:ty), $server:literal,
        $request:ty => $reply:ty,
        $outgoing:ident { $field:ident },
        $incoming:ident { $answer:ident::$ok:ident },
        $open:ident, unary = $unary:expr
    ) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub(crate) struct $name(pub $client);

        impl SessionKind for $name {
            type Request = $request;
            type Reply = $reply;
            type Outgoing = v1::$outgoing;
            type Incoming = v1::$incoming;
            const SERVER: &'static str = $server;

            fn tag(id: u64, request: Self::Request) -> Self::Outgoing {
                v1::$outgoing {
                    id,
                    $field: Some(request),
                }
            }

            fn untag(answer: Self::Incoming) -> (u64, Result<Self::Reply, Status>) {
                use v1::$answer::Answer;
                let answered = match answer.answer {
                    Some(Answer::$ok(reply)) => Ok(reply),
                    Some(Answer::Error(e)) => Err(status_from_error_status(&e)),
                    None => Err(Status::unknown(concat!(
                        "the ",
                        $server,
                        " answered a session request without an answer"
                    ))),
                };
                (answer.id, answered)
            }

            async fn open(
                &self,
                outgoing: mpsc::UnboundedReceiver<Self::Outgoing>,
            ) -> Result<Streaming<Self::Incoming>, Status> {
                let mut client = self.0.clone();
                Ok(client.$open(receiver_stream(outgoing)).await?.into_inner())
            }

            async fn unary(&self, request: Self::Request) -> Result<Self::Reply, Status> {
                ($unary)(self.0.clone(), request).await
            }
        }
    };
}

session_kind!(
    /// Commits: `CommitBatch` on a coordinator's `CommitSession`.
    Commits(TransactionCoordinatorClient<Channel>), "coordinator",
    v1::CommitBatchRequest => v1::CommitBatchResponse,
    CommitSessionRequest { batch },
    CommitSessionResponse { commit_session_response::Batch },
    commit_session, commit_batch
);

session_kind!(
    /// Read versions: `GetReadVersion` on a coordinator's `ReadVersionSession`.
    ReadVersions(TransactionCoordinatorClient<Channel>), "coordinator",
    v1::GetReadVersionRequest => v1::GetReadVersionResponse,
    ReadVersionSessionRequest { request },
    ReadVersionSessionResponse { read_version_session_response::Version },
    read_version_session, get_read_version
);

session_kind!(
    /// Point reads: `GetBatch` on a storage server's `GetSession`.
    Reads(StorageServerClient<Channel>), "storage server",
    v1::StorageGetBatchRequest => v1::StorageGetBatchResponse,
    StorageGetSessionRequest { batch },
    StorageGetSessionResponse { storage_get_session_response::Batch },
    get_session, get_batch
);

session_kind!(
    /// Range reads: the start of each on a storage server's `GetRangeSession` (the rest of a
    /// longer range is read with `GetRange`).
    Ranges(StorageServerClient<Channel>), "storage server",
    v1::StorageGetRangeRequest => v1::StorageRangeStart,
    StorageGetRangeSessionRequest { range },
    StorageGetRangeSessionResponse { storage_get_range_session_response::Start },
    get_range_session, unary = read_whole_range
);

/// A range read as one `GetRange` call, for a server without range sessions: every pair up to
/// the request's limit, so nothing is left to read after it.
async fn read_whole_range(
    mut client: StorageServerClient<Channel>,
    request: v1::StorageGetRangeRequest,
) -> Result<v1::StorageRangeStart, Status> {
    let limit = usize::try_from(request.limit).unwrap_or(usize::MAX);
    // A server reading at the request's version may send no message at all.
    let mut start = v1::StorageRangeStart {
        pairs: Vec::new(),
        version: if request.newest { 0 } else { request.version },
        more: false,
    };
    let mut stream = client.get_range(request).await?.into_inner();
    while let Some(message) = stream.message().await? {
        start.version = message.version;
        start.pairs.extend(message.pairs);
        if limit > 0 && start.pairs.len() >= limit {
            start.pairs.truncate(limit);
            break;
        }
    }
    Ok(start)
}
