//! The seam between transactions and the cluster: the four calls a transaction makes
//! (read version, point read, range piece, commit) plus cache invalidation after errors.
//!
//! The real implementation is [`crate::grpc::GrpcBackend`]; tests use an in-memory one. A
//! backend never retries a whole transaction itself: it returns errors and the retry loop
//! ([`crate::Transaction::on_error`]) decides.

use bytes::Bytes;
use ferrisdb_core::{Commit, Committed};
use ferrisdb_core::{Error, Version};
use futures_util::future::BoxFuture;

use crate::{KeyValue, Priority};

/// A storage read of a range: served by the one shard holding its first key in read order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RangeRead {
    /// First key of the remaining range.
    pub begin: Bytes,
    /// Exclusive end of the remaining range (empty: unbounded).
    pub end: Bytes,
    /// The read version.
    pub version: Version,
    /// Most pairs to return (0: no limit).
    pub limit: usize,
    /// Descending order.
    pub reverse: bool,
}

/// The answer to a [`RangeRead`]: every stored pair between the read's start and `resume`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct RangeChunk {
    /// The pairs, in read order.
    pub kvs: Vec<KeyValue>,
    /// Where the read continues: the next begin (forward) or the next exclusive end (reverse);
    /// `None` when the range is exhausted.
    pub resume: Option<Bytes>,
}

/// The read version a transaction's first read chose, and what that read returned when the
/// backend could read in the same round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FirstRead<T> {
    /// The transaction's read version: committed, and at least as new as a fresh read version.
    pub version: Version,
    /// The read's answer at `version` (a point read's `Option<Bytes>`, a range read's
    /// [`RangeChunk`]), when already read; `None` when the caller must read.
    pub value: Option<T>,
}

/// What a transaction needs from the cluster.
pub(crate) trait Backend: Send + Sync + 'static {
    /// A fresh read version from the coordinator, asked for at `priority`.
    fn read_version(&self, priority: Priority) -> BoxFuture<'_, Result<Version, Error>>;
    /// Whether a transaction's first reads (point or range) should go out beside its
    /// read-version request, with [`first_read`](Self::first_read) and
    /// [`first_range`](Self::first_range); false by default. Asked once per attempt, by its
    /// first read.
    fn try_first_read(&self, priority: Priority) -> bool {
        let _ = priority;
        false
    }
    /// Asks for a read version and, at the same time, reads `key` at a storage server's
    /// newest version; keeps that read when its version is at least the read version (see
    /// [`FirstRead`] and [`crate::first_read`]). By default
    /// [`read_version`](Self::read_version) alone.
    fn first_read(
        &self,
        priority: Priority,
        key: Bytes,
    ) -> BoxFuture<'_, Result<FirstRead<Option<Bytes>>, Error>> {
        let _ = key;
        Box::pin(async move {
            Ok(FirstRead {
                version: self.read_version(priority).await?,
                value: None,
            })
        })
    }
    /// [`first_read`](Self::first_read) for the first piece of a range read (`read.version`
    /// is ignored).
    fn first_range(
        &self,
        priority: Priority,
        read: RangeRead,
    ) -> BoxFuture<'_, Result<FirstRead<RangeChunk>, Error>> {
        let _ = read;
        Box::pin(async move {
            Ok(FirstRead {
                version: self.read_version(priority).await?,
                value: None,
            })
        })
    }
    /// One key at a version, from a storage server holding it.
    fn get(&self, key: Bytes, version: Version) -> BoxFuture<'_, Result<Option<Bytes>, Error>>;
    /// The next piece of a range read (one shard's worth at most).
    fn get_range(&self, read: RangeRead) -> BoxFuture<'_, Result<RangeChunk, Error>>;
    /// Sends a commit; returns its version and versionstamp.
    fn commit(&self, commit: Commit) -> BoxFuture<'_, Result<Committed, Error>>;
    /// Drops cached cluster state an error shows to be stale (shard map, coordinator).
    fn invalidate(&self, err: &Error);
    /// Completes once another coordinator or generation serves than the one the client last
    /// sent a read-version or commit call to (a recovery finished); never, if the backend
    /// cannot tell. The retry loop sleeps until this or its backoff, whichever comes first.
    fn recovered(&self) -> BoxFuture<'_, ()>;
}
