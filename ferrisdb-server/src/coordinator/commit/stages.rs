//! Where committed transactions spend their time in the pipeline ([`CommitStages`]).

use std::time::Duration;

/// Time committed transactions spent in each stage of the pipeline, summed over every
/// transaction acknowledged as committed (divide by [`super::PipelineStats::commits`] for the mean).
/// The stages follow one request: it waits in the queue until the batcher takes its batch
/// (`queue`); the batcher draws the version, resolves and submits the record (`resolve`);
/// the record waits for an fsync to cover it (`durable`: the fsync itself plus any wait for
/// one already running); the answer reaches the request handler (`reply`: the hand-off from
/// the syncer thread back to the handler's task).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStages {
    /// Waiting in the queue for the batcher.
    pub queue: Duration,
    /// Version, resolution and log submission by the batcher.
    pub resolve: Duration,
    /// From submission until an fsync covered the record.
    pub durable: Duration,
    /// From the fsync until the handler had the answer.
    pub reply: Duration,
}

/// Nanoseconds of `d`, saturating.
pub(super) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
