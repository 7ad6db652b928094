//! A fixed `date` header on the answers of a simulated process.
//!
//! The HTTP/2 server stamps every answer with the wall clock's date unless the answer
//! carries one already. In the simulator (`crate::exec::runs_inline`) that is the one byte
//! of a run that depends on the real clock: [`FixedDateInSimulation`] gives those answers a
//! fixed date instead, so that the same seed sends the same bytes. Outside the simulator it
//! changes nothing.

use std::task::{Context, Poll};

use http::HeaderValue;
use tower::{Layer, Service};

/// The date a simulated process's answers carry.
const SIMULATED_DATE: HeaderValue = HeaderValue::from_static("Thu, 01 Jan 2026 00:00:00 GMT");

/// The layer (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct FixedDateInSimulation;

impl<S> Layer<S> for FixedDateInSimulation {
    type Service = FixedDate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FixedDate { inner }
    }
}

/// The service [`FixedDateInSimulation`] builds around the server's routes.
#[derive(Debug, Clone)]
pub struct FixedDate<S> {
    inner: S,
}

impl<S, B, RB> Service<http::Request<B>> for FixedDate<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<RB>;
    type Error = S::Error;
    type Future = futures_util::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let answer = self.inner.call(request);
        if !crate::exec::runs_inline() {
            return Box::pin(answer);
        }
        Box::pin(async move {
            let mut response = answer.await?;
            response
                .headers_mut()
                .insert(http::header::DATE, SIMULATED_DATE);
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(
        _: http::Request<()>,
    ) -> std::future::Ready<Result<http::Response<()>, std::convert::Infallible>> {
        std::future::ready(Ok(http::Response::new(())))
    }

    #[tokio::test]
    async fn only_a_simulated_process_answers_with_the_fixed_date() {
        let mut service = FixedDateInSimulation.layer(tower::service_fn(answer));
        let live = service.call(http::Request::new(())).await.unwrap();
        assert!(live.headers().get(http::header::DATE).is_none());
        let simulated = std::thread::spawn(move || {
            crate::exec::run_inline_on_this_thread();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            runtime.block_on(service.call(http::Request::new(())))
        })
        .join()
        .unwrap()
        .unwrap();
        assert_eq!(
            simulated.headers().get(http::header::DATE),
            Some(&SIMULATED_DATE)
        );
    }
}
