//! Sessions: requests of a unary method carried as messages on one long-lived stream, each
//! answered under its id (`CommitSession` and `ReadVersionSession` on the coordinator,
//! `GetSession` and `GetRangeSession` on storage servers).
//!
//! A unary call costs more than its message: the client sends a HEADERS frame to open a new
//! HTTP/2 stream, and its body can only follow once the connection has opened the stream, so
//! the request reaches the server in two or three TCP segments (waking the server once for
//! each) about a task hand-off apart. On a stream that is already open a request is one DATA
//! frame. [`serve`] runs one task per session: it reads the requests in order and settles
//! each one beside the others, sending each answer as soon as it is ready. It stops reading
//! while [`MAX_IN_FLIGHT`] requests are unanswered, so a client that sends without reading
//! answers cannot grow the server's memory.

use std::future::Future;
use std::pin::Pin;

use futures_util::Stream;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

/// Requests of one session being settled at once; reading waits while this many are.
pub const MAX_IN_FLIGHT: usize = 64;

/// The answers of one session, as a response stream.
pub type Answers<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Serves one session: `answer` settles each of `requests`; the answers go out as they are
/// ready. Ends when the client has ended its stream (or broken it) and every request read has
/// been answered, or when the client no longer reads answers. Requests already read are
/// settled even if the client breaks the session, as a unary call's are once received.
pub fn serve<Req, Resp, F, Fut>(requests: Streaming<Req>, answer: F) -> Answers<Resp>
where
    Req: Send + 'static,
    Resp: Send + 'static,
    F: Fn(Req) -> Fut + Send + 'static,
    Fut: Future<Output = Resp> + Send + 'static,
{
    let (answers, answered) = mpsc::channel(MAX_IN_FLIGHT);
    tokio::spawn(run(requests, answer, answers));
    Box::pin(futures_util::stream::unfold(
        answered,
        |mut rx| async move { rx.recv().await.map(|answer| (Ok(answer), rx)) },
    ))
}

async fn run<Req, Resp, F, Fut>(
    mut requests: Streaming<Req>,
    answer: F,
    answers: mpsc::Sender<Resp>,
) where
    F: Fn(Req) -> Fut,
    Fut: Future<Output = Resp>,
{
    let mut in_flight = FuturesUnordered::new();
    let mut reading = true;
    loop {
        tokio::select! {
            request = requests.message(), if reading && in_flight.len() < MAX_IN_FLIGHT => {
                match request {
                    Ok(Some(request)) => in_flight.push(answer(request)),
                    Ok(None) | Err(_) => reading = false,
                }
            }
            Some(ready) = in_flight.next(), if !in_flight.is_empty() => {
                if answers.send(ready).await.is_err() {
                    return;
                }
            }
            else => return,
        }
    }
}
