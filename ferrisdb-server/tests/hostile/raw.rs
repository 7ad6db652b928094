//! Raw gRPC over HTTP/2 (the `h2` crate, no tonic client): lets a test send any bytes as a
//! request body, with any gRPC framing, and read back the `grpc-status` the server answers.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::net::TcpStream;

/// Longest one raw call may take before the test fails (the server must answer, not hang).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// What the server answered.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status of the response headers.
    pub http: u16,
    /// `grpc-status` from the headers (trailers-only) or the trailers, if any.
    pub code: Option<tonic::Code>,
    /// `grpc-message`, if any.
    pub message: String,
    /// The `ferrisdb-error-code` metadata, if any.
    pub error_code: Option<String>,
    /// Bytes of response body (gRPC-framed messages).
    pub body_len: usize,
}

/// How a raw call ended.
#[derive(Debug)]
pub enum Outcome {
    /// The server answered with a gRPC status (or a bare HTTP response).
    Replied(Reply),
    /// The stream or connection was reset by the server (an HTTP/2-level refusal).
    Reset(String),
}

/// Frames `message` as one uncompressed gRPC message.
pub fn frame(message: &[u8]) -> Bytes {
    frame_with(
        0,
        u32::try_from(message.len()).expect("message fits u32"),
        message,
    )
}

/// A gRPC frame with an arbitrary compression flag and declared length before `payload`.
pub fn frame_with(flag: u8, declared_len: u32, payload: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(5 + payload.len());
    buf.put_u8(flag);
    buf.put_u32(declared_len);
    buf.put_slice(payload);
    buf.freeze()
}

/// Sends `body` as the request body of a POST to `path` with gRPC headers (`content_type`
/// overrides `application/grpc`) and collects the answer.
pub async fn call_with(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    body: Bytes,
) -> Result<Outcome, String> {
    let attempt = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (client, connection) = h2::client::handshake(tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        let outcome = exchange(client, addr, path, content_type, body).await;
        driver.abort();
        outcome
    };
    tokio::time::timeout(CALL_TIMEOUT, attempt)
        .await
        .map_err(|_| format!("no answer within {CALL_TIMEOUT:?} on {path}"))?
}

/// [`call_with`] with `application/grpc`.
pub async fn call(addr: SocketAddr, path: &str, body: Bytes) -> Result<Outcome, String> {
    call_with(addr, path, "application/grpc", body).await
}

async fn exchange(
    client: h2::client::SendRequest<Bytes>,
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    body: Bytes,
) -> Result<Outcome, String> {
    let mut client = client.ready().await.map_err(|e| format!("ready: {e}"))?;
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{path}"))
        .header("content-type", content_type)
        .header("te", "trailers")
        .body(())
        .map_err(|e| format!("request: {e}"))?;
    let (response, mut send) = client
        .send_request(request, false)
        .map_err(|e| format!("send_request: {e}"))?;
    // The server may refuse before reading the whole body: a failed send is not an error.
    let _ = send.send_data(body, true);
    let response = match response.await {
        Ok(r) => r,
        Err(e) => return Ok(Outcome::Reset(e.to_string())),
    };
    let (parts, mut stream) = response.into_parts();
    let mut code = grpc_code(&parts.headers);
    let mut message = grpc_message(&parts.headers);
    let mut error_code = ferrisdb_error_code(&parts.headers);
    let mut body = BytesMut::new();
    while let Some(chunk) = stream.data().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => return Ok(Outcome::Reset(e.to_string())),
        };
        let _ = stream.flow_control().release_capacity(chunk.len());
        body.extend_from_slice(&chunk);
    }
    match stream.trailers().await {
        Ok(Some(trailers)) => {
            code = code.or(grpc_code(&trailers));
            if message.is_empty() {
                message = grpc_message(&trailers);
            }
            error_code = error_code.or(ferrisdb_error_code(&trailers));
        }
        Ok(None) => {}
        Err(e) => return Ok(Outcome::Reset(e.to_string())),
    }
    Ok(Outcome::Replied(Reply {
        http: parts.status.as_u16(),
        code,
        message,
        error_code,
        body_len: body.len(),
    }))
}

fn grpc_code(headers: &http::HeaderMap) -> Option<tonic::Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    Some(tonic::Code::from(value.parse::<i32>().ok()?))
}

fn grpc_message(headers: &http::HeaderMap) -> String {
    headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn ferrisdb_error_code(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get(ferrisdb_proto::status::ERROR_CODE_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}
