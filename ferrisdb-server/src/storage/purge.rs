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
use std::sync::mpsc;

use ferrisdb_core::KeyRange;
use ferrisdb_storage::engine::{Engine, PurgeRange};

/// The sending side of the purge thread; the thread ends when every clone is dropped.
#[derive(Debug, Clone)]
pub struct Purger {
    requests: mpsc::Sender<PurgeRange>,
}

impl Purger {
    /// Starts the purge thread of `engine`.
    pub fn start(engine: Arc<Engine>) -> std::io::Result<Purger> {
        let (requests, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("purge".into())
            .spawn(move || run(&engine, &queue))?;
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

fn run(engine: &Engine, queue: &mpsc::Receiver<PurgeRange>) {
    while let Ok(first) = queue.recv() {
        let mut ranges = vec![first];
        ranges.extend(queue.try_iter());
        if let Err(e) = engine.purge_ranges(&ranges) {
            tracing::warn!(ranges = ranges.len(), "purging cleared ranges failed: {e}");
        }
    }
}
