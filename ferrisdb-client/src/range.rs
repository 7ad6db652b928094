//! [`RangeStream`]: a range read as a stream of pairs, fetched in batches shard by shard and
//! merged with the transaction's own writes.
//!
//! Each step asks the storage server of the shard holding the next key (in read order) for up
//! to `batch_size` pairs (fewer when the remaining limit is smaller), so a read never asks a
//! server for keys outside its shard. The answer covers a *region* of the range (up to the
//! batch's last key, or to the shard boundary when the shard had fewer pairs); the local writes
//! of that region are merged in, and the read continues after it. When local clears hide
//! stored pairs the stream simply fetches further, so a limit always counts visible pairs.
//!
//! Read conflicts (non-snapshot reads): each region read is recorded when it is fetched; when
//! the limit stops the read, the last region ends right after the last key returned (forward)
//! or at it (reverse). A consumer that drops the stream early may leave a slightly larger
//! range recorded than it looked at, which is safe (at worst a spurious conflict).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use ferrisdb_core::{Error, KeyRange, Result, Version, key_after};
use futures_util::stream::{self, BoxStream, Stream, StreamExt, TryStreamExt};

use crate::backend::RangeRead;
use crate::transaction::ReadVersionPlan;
use crate::{KeyValue, RangeOptions, Transaction};

/// The pairs of a range read, in order; see the module documentation.
///
/// Implements [`Stream`]; [`try_next`](Self::try_next) and [`collect_vec`](Self::collect_vec)
/// avoid needing the `futures` crate for the common cases.
pub struct RangeStream {
    inner: BoxStream<'static, Result<KeyValue>>,
}

impl std::fmt::Debug for RangeStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangeStream").finish_non_exhaustive()
    }
}

/// Where a range read stands between two batches.
struct Cursor {
    tx: Transaction,
    snapshot: bool,
    begin: Bytes,
    end: Bytes,
    /// Forward: the next begin. Reverse: the next exclusive end (empty: unbounded).
    at: Bytes,
    remaining: Option<usize>,
    batch: usize,
    reverse: bool,
    done: bool,
}

impl RangeStream {
    pub(crate) fn new(
        tx: Transaction,
        range: KeyRange,
        options: RangeOptions,
        snapshot: bool,
    ) -> Self {
        let at = if options.reverse {
            range.end.clone()
        } else {
            range.begin.clone()
        };
        let cursor = Cursor {
            tx,
            snapshot,
            done: range.is_empty() || options.limit == Some(0),
            begin: range.begin,
            end: range.end,
            at,
            remaining: options.limit,
            batch: options.batch_size.max(1),
            reverse: options.reverse,
        };
        let inner = stream::try_unfold(cursor, step)
            .map_ok(|batch| stream::iter(batch.into_iter().map(Ok)))
            .try_flatten()
            .boxed();
        RangeStream { inner }
    }

    /// A stream that yields `err` once.
    pub(crate) fn failed(err: Error) -> Self {
        RangeStream {
            inner: stream::once(async move { Err(err) }).boxed(),
        }
    }

    /// The next pair, or `None` at the end.
    pub async fn try_next(&mut self) -> Result<Option<KeyValue>> {
        self.inner.next().await.transpose()
    }

    /// Reads the rest of the stream into a vector.
    pub async fn collect_vec(self) -> Result<Vec<KeyValue>> {
        self.inner.try_collect().await
    }
}

impl Stream for RangeStream {
    type Item = Result<KeyValue>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// Fetches and merges the next region; `None` when the read is over.
async fn step(mut c: Cursor) -> Result<Option<(Vec<KeyValue>, Cursor)>> {
    if c.done {
        return Ok(None);
    }
    let (begin, end) = if c.reverse {
        (c.begin.clone(), c.at.clone())
    } else {
        (c.at.clone(), c.end.clone())
    };
    let limit = c.remaining.map_or(c.batch, |r| r.min(c.batch));
    let read = |version| RangeRead {
        begin: begin.clone(),
        end: end.clone(),
        version,
        limit,
        reverse: c.reverse,
    };
    // The transaction's first read may fetch its first piece beside the read version.
    let (version, first) = match c.tx.read_version_plan() {
        ReadVersionPlan::Known(version) => (version, None),
        ReadVersionPlan::Fetch => (c.tx.get_read_version().await?, None),
        ReadVersionPlan::Beside(cell, priority) => {
            let backend = c.tx.backend().clone();
            let first =
                c.tx.guarded(backend.first_range(priority, read(Version::ZERO)))
                    .await?;
            Transaction::settle_first_read(&cell, first).await
        }
    };
    let chunk = match first {
        Some(chunk) => chunk,
        None => {
            c.tx.guarded(c.tx.backend().get_range(read(version)))
                .await?
        }
    };
    // The region this chunk answers completely.
    let (region_begin, region_end) = match (&chunk.resume, c.reverse) {
        (None, _) => (begin, end),
        (Some(r), false) => (begin, r.clone()),
        (Some(r), true) => (r.clone(), end),
    };
    let mut items =
        c.tx.merge_local(&region_begin, &region_end, chunk.kvs, c.reverse)?;
    let mut conflict = KeyRange {
        begin: region_begin,
        end: region_end,
    };
    match c.remaining {
        Some(r) if items.len() >= r => {
            items.truncate(r);
            c.done = true;
            if let Some(last) = items.last() {
                if c.reverse {
                    conflict.begin = last.key.clone();
                } else {
                    conflict.end = Bytes::from(key_after(&last.key));
                }
            }
        }
        _ => match chunk.resume {
            Some(r) => c.at = r,
            None => c.done = true,
        },
    }
    if let Some(r) = c.remaining.as_mut() {
        *r -= items.len();
    }
    if !c.snapshot {
        c.tx.add_read_conflict(conflict);
    }
    Ok(Some((items, c)))
}
