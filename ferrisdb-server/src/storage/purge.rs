//! Giving back the disk space of ranges this server handed away. Once a range is cleared
//! (`handoff.rs`: a range deletion at a version, after its last readers' MVCC window), its
//! old values are purged from the engine's tables ([`Engine::purge_ranges`]) by one thread in
//! the background, so that applying new versions never waits for the table rewrites.
//! Requests that arrive while a purge runs are gathered into the next one, so a table that
//! overlaps several cleared ranges is rewritten once for all of them.
//!
//! A purge that fails or never runs (a crash) loses nothing: the values stay hidden behind
//! the range deletion and compaction collects them in time; only the space comes back later.

use std::sync::Arc;

use ferrisdb_core::{KeyRange, Result};
use ferrisdb_storage::engine::{Engine, PurgeRange};
use tokio::sync::mpsc;

/// The sending side of the purge thread; the thread ends when every clone is dropped.
#[derive(Debug, Clone)]
pub struct Purger {
    requests: mpsc::UnboundedSender<PurgeRange>,
}

impl Purger {
    /// Starts the purge thread of `engine` (`crate::exec::spawn_worker`). Must be called
    /// inside a tokio runtime.
    pub fn start(engine: Arc<Engine>) -> Result<Purger> {
        let (requests, queue) = mpsc::unbounded_channel();
        crate::exec::spawn_worker("purge", run(engine, queue))?;
        Ok(Purger { requests })
    }

    /// Asks for the values of `ranges`, cleared at `through`, to be purged.
    pub fn purge(&self, ranges: &[KeyRange], through: u64) {
        for range in ranges {
            // A send fails only once the thread has ended (the engine closed): nothing to do.
            let _ = self.requests.send(PurgeRange {
                begin: range.begin.to_vec(),
                end: range.end.to_vec(),
                through,
            });
        }
    }
}

async fn run(engine: Arc<Engine>, mut queue: mpsc::UnboundedReceiver<PurgeRange>) {
    while let Some(first) = queue.recv().await {
        let mut ranges = vec![first];
        while let Ok(more) = queue.try_recv() {
            ranges.push(more);
        }
        if let Err(e) = engine.purge_ranges(&ranges) {
            tracing::warn!(ranges = ranges.len(), "purging cleared ranges failed: {e}");
        }
    }
}
