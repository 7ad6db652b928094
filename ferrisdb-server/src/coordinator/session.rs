//! `CommitSession`: `CommitBatch` requests carried on one long-lived stream (see
//! `proto/ferrisdb/v1/coordinator.proto`).
//!
//! A unary call costs more than its message: the client sends a HEADERS frame to open a new
//! HTTP/2 stream, and its body can only follow once the connection has opened the stream, so
//! the request reaches the server in two or three TCP segments (waking the server once for
//! each) about a task hand-off apart. On a stream that is already open a request is one DATA
//! frame. One task per session reads the requests in order and settles each one's commits
//! ([`CoordinatorService::answer_batch`]) beside the others, answering each as soon as it is
//! settled, tagged with its id. It stops reading while [`MAX_IN_FLIGHT`] requests are
//! unanswered, so a client that sends without reading answers cannot grow the server's memory.

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::mpsc;
use tonic::Streaming;

use ferrisdb_proto::status::to_error_status;
use ferrisdb_proto::v1;
use ferrisdb_proto::v1::commit_session_response::Answer;

use super::service::{CommitSessionStream, CoordinatorService};

/// Requests of one session being settled at once; reading waits while this many are.
pub const MAX_IN_FLIGHT: usize = 64;

/// Serves one session: the answers to `requests`, as a response stream.
pub fn serve(
    service: CoordinatorService,
    requests: Streaming<v1::CommitSessionRequest>,
) -> CommitSessionStream {
    let (answers, answered) = mpsc::channel(MAX_IN_FLIGHT);
    tokio::spawn(run(service, requests, answers));
    Box::pin(futures_util::stream::unfold(
        answered,
        |mut rx| async move { rx.recv().await.map(|answer| (Ok(answer), rx)) },
    ))
}

/// Reads the session's requests and answers each once its commits are settled; ends when the
/// client has ended its stream (or broken it) and every request read has been answered, or
/// when the client no longer reads answers.
async fn run(
    service: CoordinatorService,
    mut requests: Streaming<v1::CommitSessionRequest>,
    answers: mpsc::Sender<v1::CommitSessionResponse>,
) {
    let mut in_flight = FuturesUnordered::new();
    let mut reading = true;
    loop {
        tokio::select! {
            request = requests.message(), if reading && in_flight.len() < MAX_IN_FLIGHT => {
                match request {
                    Ok(Some(request)) => {
                        let service = service.clone();
                        in_flight.push(async move { answer(&service, request).await });
                    }
                    // The client ended the session, or it broke: the commits already read go
                    // on (as a unary call's do once received) and are answered if possible.
                    Ok(None) | Err(_) => reading = false,
                }
            }
            Some(answer) = in_flight.next(), if !in_flight.is_empty() => {
                if answers.send(answer).await.is_err() {
                    return;
                }
            }
            else => return,
        }
    }
}

/// Settles one request's commits.
async fn answer(
    service: &CoordinatorService,
    request: v1::CommitSessionRequest,
) -> v1::CommitSessionResponse {
    let batch = request.batch.unwrap_or_default();
    let answer = match service.answer_batch(batch).await {
        Ok(batch) => Answer::Batch(batch),
        Err(status) => Answer::Error(to_error_status(&status)),
    };
    v1::CommitSessionResponse {
        id: request.id,
        answer: Some(answer),
    }
}
