//! Shard sizes for the data distributor: every [`SIZE_EVERY`], the approximate bytes and the
//! middle key of every shard this server is a replica of (`Engine::approximate_range`, from
//! SSTable indexes and memtables, no data block read), kept for the next heartbeat.

use std::sync::Arc;
use std::time::Duration;

use ferrisdb_proto::v1;
use ferrisdb_storage::engine::Engine;
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::worker::ClusterView;

/// How often the sizes are measured.
pub const SIZE_EVERY: Duration = Duration::from_secs(1);

/// The latest measured sizes.
#[derive(Debug, Default)]
pub struct ShardSizes(Mutex<Vec<v1::ShardSize>>);

impl ShardSizes {
    /// The sizes last measured.
    pub fn latest(&self) -> Vec<v1::ShardSize> {
        self.0.lock().clone()
    }
}

/// Measures the shards of `worker_id` every [`SIZE_EVERY`] until the task is aborted. A failed
/// measurement (an engine error) leaves the previous sizes in place.
pub async fn run(
    worker_id: String,
    engine: Arc<Engine>,
    view: watch::Receiver<ClusterView>,
    sizes: Arc<ShardSizes>,
) {
    let mut tick = tokio::time::interval(SIZE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let ranges = view.borrow().shard_map.ranges_of(&worker_id);
        let engine = engine.clone();
        let measured = tokio::task::spawn_blocking(move || {
            ranges
                .into_iter()
                .map(|range| {
                    let size = engine.approximate_range(&range.begin, &range.end)?;
                    Ok(v1::ShardSize {
                        middle_key: size
                            .middle_key(&range.begin, &range.end)
                            .unwrap_or_default(),
                        bytes: size.bytes,
                        range: Some(v1::KeyRange::from(&range)),
                    })
                })
                .collect::<Result<Vec<_>, ferrisdb_core::Error>>()
        })
        .await;
        match measured {
            Ok(Ok(measured)) => *sizes.0.lock() = measured,
            Ok(Err(e)) => tracing::warn!("measuring shard sizes: {e}"),
            Err(e) => tracing::warn!("measuring shard sizes: the task failed: {e}"),
        }
    }
}
