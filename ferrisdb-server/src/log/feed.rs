//! [`MutationFeed`]: the committed mutations a storage server follows, as one long-lived
//! stream (`StreamMutations`) instead of one long-poll call (`PullMutations`) per batch.
//!
//! Each step waits until the committed version passes what the feed last delivered, then
//! reads every published batch since, clipped to the follower's ranges, into one [`Pulled`].
//! A follower that keeps up gets one message per commit batch; one that falls behind (its
//! stream's flow-control window full, so the next step is not polled) gets everything that
//! accumulated meanwhile in the next message. A message whose batches are all empty still
//! advances `committed_through`: that is how a server whose ranges saw no writes learns it
//! may serve reads at newer versions.

use std::sync::Arc;

use ferrisdb_core::VersionedMutations;
use ferrisdb_core::{KeyRange, Result, Version};
use tokio::sync::watch;

use super::CommitLog;
use super::clip;

/// What a pull returns (see `PullMutationsResponse`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// Versions with mutations in the caller's ranges, ascending.
    pub batches: Vec<VersionedMutations>,
    /// Every version up to this one is in `batches` or touched none of the ranges.
    pub committed_through: Version,
}

/// Response size of a pull that asks for no particular limit.
pub const DEFAULT_PULL_BYTES: u64 = 4 << 20;
/// Largest response size a pull may ask for.
pub const MAX_PULL_BYTES: u64 = 32 << 20;
/// Most commit versions one pull examines.
pub const MAX_PULL_BATCHES: usize = 10_000;
/// Rough per-mutation overhead counted against a pull's byte budget.
const MUTATION_OVERHEAD: u64 = 8;

/// A storage server's feed of committed mutations (see the module docs).
#[derive(Debug)]
pub struct MutationFeed {
    log: Arc<CommitLog>,
    committed: watch::Receiver<Version>,
    stopping: watch::Receiver<bool>,
    /// Everything up to this version has been delivered.
    after: Version,
    /// The follower's ranges, normalized.
    ranges: Vec<KeyRange>,
    max_bytes: u64,
    done: bool,
}

impl MutationFeed {
    /// A feed of `log` after `after`, clipped to the normalized `ranges`, serving every version
    /// up to what `committed` says (the newest version known committed and published); it
    /// ends when `stopping` turns true.
    pub fn new(
        log: Arc<CommitLog>,
        committed: watch::Receiver<Version>,
        stopping: watch::Receiver<bool>,
        after: Version,
        ranges: Vec<KeyRange>,
        max_bytes: u64,
    ) -> MutationFeed {
        MutationFeed {
            log,
            committed,
            stopping,
            after,
            ranges,
            max_bytes,
            done: false,
        }
    }

    /// The next message: waits for a commit newer than everything delivered so far. `None`
    /// once the coordinator is shutting down (the follower reconnects elsewhere or later).
    /// After an error (`TransactionTooOld`: the log no longer holds the versions the follower
    /// needs) the feed ends.
    pub async fn next(&mut self) -> Option<Result<Pulled>> {
        if self.done {
            return None;
        }
        let after = self.after;
        let advanced = tokio::select! {
            biased;
            _ = self.stopping.wait_for(|s| *s) => false,
            changed = self.committed.wait_for(|v| *v > after) => changed.is_ok(),
        };
        if !advanced {
            self.done = true;
            return None;
        }
        let through = *self.committed.borrow();
        let pulled = read_pulled(&self.log, after, through, &self.ranges, self.max_bytes);
        match &pulled {
            Ok(p) => self.after = p.committed_through,
            Err(_) => self.done = true,
        }
        Some(pulled)
    }
}

/// The batches with `after < version <= through` clipped to `ranges` (normalized), up to about
/// `max_bytes` (0 = [`DEFAULT_PULL_BYTES`]) and [`MAX_PULL_BATCHES`] versions; always at least
/// one version with mutations when there is one. `committed_through` says how far the answer
/// covers. `TransactionTooOld` when the log no longer holds the versions right after `after`.
pub fn read_pulled(
    log: &CommitLog,
    after: Version,
    through: Version,
    ranges: &[KeyRange],
    max_bytes: u64,
) -> Result<Pulled> {
    if through <= after {
        return Ok(Pulled {
            batches: Vec::new(),
            committed_through: after,
        });
    }
    let budget = match max_bytes {
        0 => DEFAULT_PULL_BYTES,
        n => n.min(MAX_PULL_BYTES),
    };
    let logged = log.read_after(after, through, MAX_PULL_BATCHES)?;
    let mut committed_through = through;
    if logged.len() == MAX_PULL_BATCHES {
        committed_through = logged.last().map_or(through, |b| b.version);
    }
    let mut batches = Vec::new();
    let mut bytes = 0u64;
    for b in logged {
        let mutations = clip::clip(ranges, &b.mutations);
        if mutations.is_empty() {
            continue;
        }
        bytes += mutations
            .iter()
            .map(|m| m.size() as u64 + MUTATION_OVERHEAD)
            .sum::<u64>();
        batches.push(VersionedMutations {
            version: b.version,
            mutations,
        });
        if bytes >= budget {
            committed_through = b.version;
            break;
        }
    }
    Ok(Pulled {
        batches,
        committed_through,
    })
}
