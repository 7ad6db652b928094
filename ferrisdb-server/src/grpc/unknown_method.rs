//! Names the method in `UNIMPLEMENTED` answers.
//!
//! tonic answers a call to a service the process does not serve, or to a method its service
//! does not have, with `UNIMPLEMENTED` and an empty message. [`NameUnknownMethods`] wraps the
//! whole server and fills in a message that names the path called and says how to list what
//! the process serves. Answers that already carry a message pass through untouched.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::HeaderValue;
use tower::{Layer, Service};

/// The layer (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct NameUnknownMethods;

impl<S> Layer<S> for NameUnknownMethods {
    type Service = NamedUnimplemented<S>;

    fn layer(&self, inner: S) -> Self::Service {
        NamedUnimplemented { inner }
    }
}

/// The service [`NameUnknownMethods`] builds around the server's routes.
#[derive(Debug, Clone)]
pub struct NamedUnimplemented<S> {
    inner: S,
}

impl<S, B, RB> Service<http::Request<B>> for NamedUnimplemented<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<RB>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let mut response = answer.await?;
            name_unimplemented(&path, response.headers_mut());
            Ok(response)
        })
    }
}

/// Puts a message naming `path` into trailers-only `UNIMPLEMENTED` headers without one.
fn name_unimplemented(path: &str, headers: &mut http::HeaderMap) {
    let unimplemented = headers
        .get("grpc-status")
        .is_some_and(|s| s.as_bytes() == b"12");
    let has_message = headers.get("grpc-message").is_some_and(|m| !m.is_empty());
    if !unimplemented || has_message {
        return;
    }
    // grpc-message is percent-encoded: keep to printable ASCII without '%'.
    let shown: String = path
        .chars()
        .take(200)
        .map(|c| {
            if c.is_ascii_graphic() && c != '%' {
                c
            } else {
                '?'
            }
        })
        .collect();
    let message = format!(
        "unknown method {shown}: this process does not serve it (list its services with \
         grpcurl -plaintext HOST:PORT list)"
    );
    if let Ok(value) = HeaderValue::from_str(&message) {
        headers.insert("grpc-message", value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(status: &str, message: Option<&str>) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert("grpc-status", HeaderValue::from_str(status).unwrap());
        if let Some(m) = message {
            h.insert("grpc-message", HeaderValue::from_str(m).unwrap());
        }
        h
    }

    #[test]
    fn an_unimplemented_answer_gets_the_method_named() {
        let mut h = headers("12", None);
        name_unimplemented("/ferrisdb.v1.KV/Nope", &mut h);
        let message = h.get("grpc-message").unwrap().to_str().unwrap();
        assert!(message.contains("/ferrisdb.v1.KV/Nope"), "{message}");
        let mut empty = headers("12", Some(""));
        name_unimplemented("/x.Y/Z", &mut empty);
        assert!(
            empty
                .get("grpc-message")
                .unwrap()
                .to_str()
                .unwrap()
                .contains("/x.Y/Z")
        );
    }

    #[test]
    fn other_answers_and_existing_messages_are_untouched() {
        let mut ok = headers("0", None);
        name_unimplemented("/a.B/C", &mut ok);
        assert!(ok.get("grpc-message").is_none());
        let mut own = headers("12", Some("mine"));
        name_unimplemented("/a.B/C", &mut own);
        assert_eq!(own.get("grpc-message").unwrap(), "mine");
    }

    #[test]
    fn odd_characters_in_the_path_cannot_break_the_header() {
        let mut h = headers("12", None);
        name_unimplemented("/a%20b/\u{7f}é\nx", &mut h);
        let message = h.get("grpc-message").unwrap().to_str().unwrap();
        assert!(message.contains("/a?20b/???x"), "{message}");
    }
}
