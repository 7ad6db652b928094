//! `Range`: streams the pairs of a range at one read version, in batches, without loading the
//! range into memory.
//!
//! A task reads with the client's `RangeStream` (snapshot reads: a read-only call needs no
//! conflict ranges) and hands pairs to the gRPC stream through a small bounded channel, so a
//! slow consumer slows the reads down and a consumer that goes away stops them.
//!
//! Retries: an error before the first pair is sent retries the whole read at a new read version
//! (the client's retry loop, bounded as every KV call). Once pairs have been sent the read
//! version is pinned: a retryable error (a storage server behind or unreachable, a stale shard
//! map) resumes right after the last pair sent at the same version, so the stream stays one
//! consistent snapshot; `TransactionTooOld` (a stream longer than the MVCC window) ends the
//! stream with that error.

use bytes::Bytes;
use ferrisdb_client::{Database, RangeOptions, Transaction};
use ferrisdb_core::{Error, Result, Version};
use ferrisdb_proto::convert::RangeQuery;
use ferrisdb_proto::status::to_status;
use ferrisdb_proto::v1;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::CALL_TIMEOUT;

/// Pairs buffered between the reading task and the gRPC stream.
const CHANNEL_PAIRS: usize = 64;
/// Pairs asked of a storage server per request.
const BATCH_PAIRS: usize = 256;

/// What a `Range` call streams.
pub type PairStream = ReceiverStream<Result<v1::KeyValue, Status>>;

/// Starts reading `query` from `db`; the returned stream yields its pairs, then ends (after an
/// error status if the read failed).
pub fn stream(db: Database, query: RangeQuery) -> PairStream {
    let (out, rx) = mpsc::channel(CHANNEL_PAIRS);
    tokio::spawn(async move {
        if let Err(err) = pump(&db, &query, &out).await {
            tracing::debug!(error = %err, "KV range read failed");
            let _ = out.send(Err(to_status(err))).await;
        }
    });
    ReceiverStream::new(rx)
}

/// Where the read stands.
struct Cursor {
    /// The last key sent, if any.
    last: Option<Bytes>,
    /// Pairs still to send (`None`: no limit).
    remaining: Option<usize>,
    /// The read version, pinned once a pair has been sent.
    version: Option<Version>,
}

/// Reads the whole query, retrying (and resuming) as the module documentation says.
async fn pump(
    db: &Database,
    query: &RangeQuery,
    out: &mpsc::Sender<Result<v1::KeyValue, Status>>,
) -> Result<()> {
    let tx = db.create_transaction();
    let mut cursor = Cursor {
        last: None,
        remaining: query.limit,
        version: None,
    };
    loop {
        let err = match read_from_cursor(&tx, query, &mut cursor, out).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if cursor.version.is_some() && matches!(err, Error::TransactionTooOld { .. }) {
            return Err(err);
        }
        tx.on_error(err).await?;
        if let Some(version) = cursor.version {
            tx.set_read_version(version);
        }
    }
}

/// Streams from the cursor to the end of the query (or the limit, or until the consumer goes
/// away).
async fn read_from_cursor(
    tx: &Transaction,
    query: &RangeQuery,
    cursor: &mut Cursor,
    out: &mpsc::Sender<Result<v1::KeyValue, Status>>,
) -> Result<()> {
    if cursor.remaining == Some(0) {
        return Ok(());
    }
    let range = &query.range;
    // Forward reads resume *at* the last key sent (skipping it) rather than after it, so the
    // resumed range never needs a key longer than the longest allowed.
    let (begin, end, skip) = match (&cursor.last, query.reverse) {
        (None, _) => (range.begin.clone(), range.end.clone(), None),
        (Some(last), false) => (last.clone(), range.end.clone(), Some(last.clone())),
        (Some(last), true) => (range.begin.clone(), last.clone(), None),
    };
    let options = RangeOptions {
        limit: cursor
            .remaining
            .map(|r| r.saturating_add(usize::from(skip.is_some()))),
        reverse: query.reverse,
        batch_size: BATCH_PAIRS,
    };
    let mut pairs = tx.snapshot().get_range(begin, end, options);
    loop {
        let next = tokio::time::timeout(CALL_TIMEOUT, pairs.try_next())
            .await
            .map_err(|_| {
                Error::TimedOut(format!(
                    "no answer from the storage servers within {CALL_TIMEOUT:?}"
                ))
            })??;
        let Some(pair) = next else {
            return Ok(());
        };
        if skip.as_ref() == Some(&pair.key) {
            continue;
        }
        if cursor.version.is_none() {
            cursor.version = Some(tx.get_read_version().await?);
        }
        cursor.last = Some(pair.key.clone());
        let wire = v1::KeyValue {
            key: pair.key,
            value: pair.value,
        };
        if out.send(Ok(wire)).await.is_err() {
            return Ok(()); // the caller went away
        }
        if let Some(r) = cursor.remaining.as_mut() {
            *r = r.saturating_sub(1);
            if *r == 0 {
                return Ok(());
            }
        }
    }
}
