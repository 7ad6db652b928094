//! Accepting connections within a budget, so client sockets can never starve a process of the
//! file descriptors its own files need (the commit log's next segment, a storage engine's
//! tables).
//!
//! [`accept`] turns a listener into the stream of connections tonic serves. Each accepted
//! connection holds a slot of the process's [`ConnectionLimit`] until it closes. A connection
//! arriving when every slot is taken is not served: it gets one short HTTP/2 exchange in which
//! every call is answered `RESOURCE_EXHAUSTED` with a message naming the limit (at most
//! [`MAX_REFUSING`] such exchanges at once, each closed after [`REFUSAL_GRACE`]; beyond that
//! the socket is closed at once), and the process reports itself unhealthy with that reason
//! until a slot frees. An `accept` that fails for lack of descriptors or memory is retried
//! after a pause instead of spinning on the still-readable listener.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use ferrisdb_core::Error;
use ferrisdb_proto::transport::{Connection, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_stream::Stream;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::health::RoleHealth;

/// Problem source under which a full connection budget is reported.
const HEALTH_SOURCE: &str = "connections";
/// Refusal exchanges in progress at once; further connections over the limit are closed at once.
pub const MAX_REFUSING: usize = 64;
/// Longest a refused connection is kept open to receive its answer.
pub const REFUSAL_GRACE: Duration = Duration::from_secs(2);
/// Pause after an `accept` that failed for lack of descriptors or memory.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The connection budget of one process.
#[derive(Debug)]
pub struct ConnectionLimit {
    max: usize,
    open: AtomicUsize,
    refusing: AtomicUsize,
    /// What the refusal and the health report say about where the limit comes from.
    origin: String,
    health: RoleHealth,
}

impl ConnectionLimit {
    /// A budget of `max` connections (at least one). `origin` says where the figure comes
    /// from, for messages (e.g. "the open-file limit of 1024 leaves room for 768").
    pub fn new(max: usize, origin: impl Into<String>, health: RoleHealth) -> Arc<Self> {
        Arc::new(ConnectionLimit {
            max: max.max(1),
            open: AtomicUsize::new(0),
            refusing: AtomicUsize::new(0),
            origin: origin.into(),
            health,
        })
    }

    /// Most connections served at once.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Connections being served now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Takes a slot, or `None` when every slot is taken.
    fn try_admit(self: &Arc<Self>) -> Option<Slot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot {
                limit: self.clone(),
            })
    }

    /// What a refused caller and the health report are told.
    fn refusal_message(&self) -> String {
        format!(
            "this server is at its connection limit ({} connections open; {}); close idle \
             connections, or raise the open-file limit (ulimit -n) or --max-connections",
            self.max, self.origin
        )
    }

    fn release(&self) {
        if self.open.fetch_sub(1, Ordering::AcqRel) == self.max {
            self.health.clear_problem(HEALTH_SOURCE);
        }
    }
}

/// A taken connection slot, given back when the connection closes.
#[derive(Debug)]
struct Slot {
    limit: Arc<ConnectionLimit>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.limit.release();
    }
}

/// An accepted connection inside the budget.
#[derive(Debug)]
pub struct LimitedStream {
    stream: Connection,
    _slot: Slot,
}

impl Connected for LimitedStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for LimitedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for LimitedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The connections accepted on `listener` within `limit`, with `TCP_NODELAY` set on each.
///
/// Small replies must leave at once: with Nagle's algorithm on, an answer written while the
/// connection has unacknowledged data in flight (the normal state of a channel shared by
/// concurrent requests) waits for the peer's delayed ACK, about 40 ms on Linux.
pub fn accept(
    listener: Listener,
    limit: Arc<ConnectionLimit>,
) -> impl Stream<Item = io::Result<LimitedStream>> {
    futures_util::stream::unfold((listener, limit), |(mut listener, limit)| async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _peer)) => stream,
                Err(e) if is_exhaustion(&e) => {
                    limit.health.set_problem(
                        HEALTH_SOURCE,
                        format!(
                            "cannot accept connections: {e}; {}",
                            limit.refusal_message()
                        ),
                    );
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
                // Closed for good (the simulated process died): no connection will come.
                Err(e) if ferrisdb_proto::transport::is_closed(&listener, &e) => return None,
                // The peer gave up before the accept (ECONNABORTED and the like).
                Err(e) => {
                    tracing::debug!("accept failed: {e}");
                    continue;
                }
            };
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!("setting TCP_NODELAY: {e}");
            }
            match limit.try_admit() {
                Some(slot) => {
                    // Accepting again clears an earlier "cannot accept" problem.
                    limit.health.clear_problem(HEALTH_SOURCE);
                    let served = LimitedStream {
                        stream,
                        _slot: slot,
                    };
                    return Some((Ok(served), (listener, limit)));
                }
                None => refuse(stream, &limit),
            }
        }
    })
}

/// Whether an `accept` error means the process ran out of descriptors or memory.
fn is_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Answers every call on `stream` with `RESOURCE_EXHAUSTED`, then closes it (see the module
/// docs), and reports the full budget as a health problem.
fn refuse(stream: Connection, limit: &Arc<ConnectionLimit>) {
    let message = limit.refusal_message();
    limit.health.set_problem(HEALTH_SOURCE, message.clone());
    let taken = limit
        .refusing
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < MAX_REFUSING).then_some(n + 1)
        });
    if taken.is_err() {
        return;
    }
    let limit = limit.clone();
    tokio::spawn(async move {
        let service = hyper::service::service_fn(move |request: http::Request<_>| {
            let message = format!("{} {message}", request.uri().path());
            async move { Ok::<_, std::convert::Infallible>(refusal_response(message)) }
        });
        let connection =
            hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let _ = tokio::time::timeout(REFUSAL_GRACE, connection).await;
        limit.refusing.fetch_sub(1, Ordering::AcqRel);
    });
}

/// A trailers-only gRPC answer: `RESOURCE_EXHAUSTED` with `message`, carrying the
/// `ferrisdb-error-code` of [`Error::Unavailable`] (the call was never processed: retry later).
fn refusal_response(message: String) -> http::Response<tonic::body::Body> {
    let status = ferrisdb_proto::status::to_status(Error::Unavailable(message));
    tonic::Status::with_metadata(
        tonic::Code::ResourceExhausted,
        status.message().to_owned(),
        status.metadata().clone(),
    )
    .into_http()
}

#[cfg(test)]
mod tests {
    use tokio::net::{TcpListener, TcpStream};
    use tokio_stream::StreamExt;

    use super::*;

    async fn listener() -> (Listener, std::net::SocketAddr) {
        let listener = Listener::Tcp(TcpListener::bind("127.0.0.1:0").await.unwrap());
        let addr = listener.local_addr().unwrap();
        (listener, addr)
    }

    #[tokio::test]
    async fn accepted_connections_have_nodelay_set() {
        let (listener, addr) = listener().await;
        let limit = ConnectionLimit::new(4, "test", RoleHealth::new());
        let mut accepted = Box::pin(accept(listener, limit));
        let _client = TcpStream::connect(addr).await.unwrap();
        let server_side = accepted.next().await.unwrap().unwrap();
        assert!(server_side.stream.nodelay().unwrap(), "TCP_NODELAY not set");
    }

    #[tokio::test]
    async fn a_closed_listener_ends_the_stream_instead_of_failing_forever() {
        let addr: std::net::SocketAddr = "10.0.0.1:4500".parse().unwrap();
        let (listener, deliver) = ferrisdb_proto::transport::MemoryListener::new(addr);
        let limit = ConnectionLimit::new(4, "test", RoleHealth::new());
        let mut accepted = Box::pin(accept(Listener::Memory(listener), limit));
        drop(deliver);
        let next = tokio::time::timeout(std::time::Duration::from_secs(5), accepted.next());
        assert!(next.await.unwrap().is_none(), "the stream went on");
    }

    #[tokio::test]
    async fn slots_are_taken_and_given_back_and_a_full_budget_is_a_health_problem() {
        let (listener, addr) = listener().await;
        let health = RoleHealth::new();
        let limit = ConnectionLimit::new(2, "two for the test", health.clone());
        let mut accepted = Box::pin(accept(listener, limit.clone()));
        let _c1 = TcpStream::connect(addr).await.unwrap();
        let _c2 = TcpStream::connect(addr).await.unwrap();
        let s1 = accepted.next().await.unwrap().unwrap();
        let s2 = accepted.next().await.unwrap().unwrap();
        assert_eq!(limit.open(), 2);
        assert_eq!(health.unhealthy_reason(), None);

        // The third is refused: health says why, and the stream yields nothing for it.
        let _c3 = TcpStream::connect(addr).await.unwrap();
        let reason = {
            let mut next = std::pin::pin!(accepted.next());
            tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                tokio::select! {
                    served = &mut next => panic!("a connection over the limit was served: {served:?}"),
                    () = tokio::time::sleep(Duration::from_millis(5)) => {}
                }
                if let Some(reason) = health.unhealthy_reason() {
                    return reason;
                }
            }
        })
        .await
        .expect("the refusal is reported")
        };
        assert!(reason.contains("connection limit"), "{reason}");
        assert!(reason.contains("two for the test"), "{reason}");

        drop(s1);
        assert_eq!(limit.open(), 1);
        assert_eq!(health.unhealthy_reason(), None, "a freed slot clears it");
        let _c4 = TcpStream::connect(addr).await.unwrap();
        let s4 = accepted.next().await.unwrap().unwrap();
        assert_eq!(limit.open(), 2);
        drop((s2, s4));
        assert_eq!(limit.open(), 0);
    }

    #[tokio::test]
    async fn a_refused_call_gets_resource_exhausted_naming_the_limit() {
        let (listener, addr) = listener().await;
        let limit = ConnectionLimit::new(1, "one for the test", RoleHealth::new());
        let held = limit.clone();
        let accepted = Box::pin(accept(listener, limit));
        // Serve nothing useful: the one slot is taken by an idle connection.
        let server = tokio::spawn(async move {
            let mut accepted = accepted;
            let mut held = Vec::new();
            while let Some(c) = accepted.next().await {
                held.push(c);
            }
        });
        let _idle = TcpStream::connect(addr).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), async {
            while held.open() == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the idle connection takes the slot");
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
        let status = client
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
        assert!(
            status.message().contains("connection limit"),
            "{}",
            status.message()
        );
        assert!(
            status.message().contains("/grpc.health.v1.Health/Check"),
            "{}",
            status.message()
        );
        assert!(matches!(
            ferrisdb_proto::status::from_status(&status),
            Error::Unavailable(_)
        ));
        server.abort();
    }
}
