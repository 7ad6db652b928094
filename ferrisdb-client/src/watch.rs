//! [`Watch`]: a future that completes when a key's value changes.
//!
//! Implemented by polling: the watch reads the key at a fresh read version from the
//! coordinator, compares it with the baseline (the value at the transaction's read version)
//! and sleeps with exponential backoff (from 10 ms up to `watch_poll_max`) between polls.
//! Retryable errors while polling are absorbed (the next poll retries); other errors end the
//! watch. It gives up with `TimedOut` after `watch_timeout`. Like FoundationDB's watches it
//! may miss a change that is undone before the next poll (A → B → A), and it is active as soon
//! as it is created, whether or not the transaction commits.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use ferrisdb_core::{Error, Result};
use futures_util::future::BoxFuture;

use crate::DatabaseOptions;
use crate::backend::Backend;
use crate::backoff::Backoff;

/// Completes with `Ok(())` once the watched key's value differs from the baseline.
pub struct Watch {
    inner: BoxFuture<'static, Result<()>>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}

/// First pause between two polls.
const FIRST_POLL: Duration = Duration::from_millis(10);

impl Watch {
    pub(crate) fn new(
        backend: Arc<dyn Backend>,
        key: Bytes,
        baseline: Option<Bytes>,
        options: DatabaseOptions,
    ) -> Self {
        let inner = Box::pin(poll_until_changed(backend, key, baseline, options));
        Watch { inner }
    }
}

impl Future for Watch {
    type Output = Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

async fn poll_until_changed(
    backend: Arc<dyn Backend>,
    key: Bytes,
    baseline: Option<Bytes>,
    options: DatabaseOptions,
) -> Result<()> {
    // A timeout too large to add to an instant (e.g. `Duration::MAX`) means no bound.
    let deadline = tokio::time::Instant::now().checked_add(options.watch_timeout);
    let mut backoff = Backoff::new(FIRST_POLL, options.watch_poll_max.max(FIRST_POLL));
    loop {
        let delay = backoff.next_delay();
        if deadline
            .is_some_and(|d| d.saturating_duration_since(tokio::time::Instant::now()) < delay)
        {
            return Err(Error::TimedOut(format!(
                "watch saw no change within {:?}",
                options.watch_timeout
            )));
        }
        tokio::time::sleep(delay).await;
        let read = async {
            let version = backend.read_version(crate::Priority::Default).await?;
            backend.get(key.clone(), version).await
        };
        match read.await {
            Ok(value) if value != baseline => return Ok(()),
            Ok(_) => {}
            Err(e) if e.is_retryable() => backend.invalidate(&e),
            Err(e) => return Err(e),
        }
    }
}
