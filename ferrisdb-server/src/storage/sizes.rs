//! Shard sizes and write rates for the data distributor: every [`SIZE_EVERY`], the
//! approximate bytes and the middle key of every shard this server is a replica of
//! (`Engine::approximate_range`, from SSTable indexes and memtables, no data block read), and
//! the bytes of mutations applied to it per second (counted by the pull loop as it applies
//! them, [`ShardSizes::record_writes`], and smoothed over a few measurements), kept for the
//! next heartbeat.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use ferrisdb_core::{KeyRange, Mutation};
use ferrisdb_proto::v1;
use ferrisdb_storage::engine::Engine;
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::worker::ClusterView;

/// How often the sizes are measured.
pub const SIZE_EVERY: Duration = Duration::from_secs(1);

/// Weight of the newest measurement in a shard's write rate (the rest is the previous rate):
/// a burst shows within a second, a steady rate after a few.
const RATE_WEIGHT: f64 = 0.5;

/// The latest measured sizes, and the writes counted since.
#[derive(Debug, Default)]
pub struct ShardSizes {
    latest: Mutex<Vec<v1::ShardSize>>,
    writes: Mutex<WriteCounts>,
}

/// Bytes applied to each range since the last measurement.
#[derive(Debug, Default)]
struct WriteCounts {
    /// Sorted by first key, disjoint.
    ranges: Vec<KeyRange>,
    bytes: Vec<u64>,
}

impl WriteCounts {
    fn add(&mut self, key: &[u8], bytes: u64) {
        let i = self.ranges.partition_point(|r| r.begin.as_ref() <= key);
        if let Some(i) = i.checked_sub(1)
            && self.ranges[i].contains(key)
        {
            self.bytes[i] += bytes;
        }
    }
}

impl ShardSizes {
    /// The sizes last measured.
    pub fn latest(&self) -> Vec<v1::ShardSize> {
        self.latest.lock().clone()
    }

    /// Counts `mutations`, applied, against the shard holding each (a range clear against the
    /// shard holding its first key).
    pub fn record_writes(&self, mutations: &[Mutation]) {
        let mut writes = self.writes.lock();
        if writes.ranges.is_empty() {
            return;
        }
        for m in mutations {
            let key = match m {
                Mutation::Set { key, .. }
                | Mutation::Clear { key }
                | Mutation::Atomic { key, .. }
                | Mutation::SetVersionstampedKey { key, .. }
                | Mutation::SetVersionstampedValue { key, .. } => key,
                Mutation::ClearRange { begin, .. } => begin,
            };
            writes.add(key, m.size() as u64);
        }
    }

    /// Ends a counting period: returns the bytes counted per range and counts against
    /// `ranges` from now on.
    fn take_writes(&self, mut ranges: Vec<KeyRange>) -> Vec<(KeyRange, u64)> {
        ranges.sort_by(|a, b| a.begin.cmp(&b.begin));
        let bytes = vec![0; ranges.len()];
        let mut writes = self.writes.lock();
        let before = std::mem::replace(&mut *writes, WriteCounts { ranges, bytes });
        before.ranges.into_iter().zip(before.bytes).collect()
    }
}

/// Smoothed write rates per range, bytes per second.
#[derive(Debug, Default)]
struct WriteRates(BTreeMap<KeyRange, f64>);

impl WriteRates {
    /// Folds in `counted` bytes over `elapsed`; ranges not counted are forgotten.
    fn update(&mut self, counted: Vec<(KeyRange, u64)>, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64().max(0.001);
        let before = std::mem::take(&mut self.0);
        for (range, bytes) in counted {
            let sample = bytes as f64 / seconds;
            let rate = match before.get(&range) {
                Some(previous) => RATE_WEIGHT * sample + (1.0 - RATE_WEIGHT) * previous,
                None => sample,
            };
            self.0.insert(range, rate);
        }
    }

    fn of(&self, range: &KeyRange) -> u64 {
        self.0.get(range).map_or(0, |r| r.round() as u64)
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
    let mut rates = WriteRates::default();
    let mut period_start = Instant::now();
    loop {
        tick.tick().await;
        let ranges = view.borrow().shard_map.ranges_of(&worker_id);
        let counted = sizes.take_writes(ranges.clone());
        rates.update(counted, period_start.elapsed());
        period_start = Instant::now();
        let engine = engine.clone();
        let measured = crate::exec::blocking("the shard size measurement", move || {
            ranges
                .into_iter()
                .map(|range| {
                    let size = engine.approximate_range(&range.begin, &range.end)?;
                    Ok((range, size))
                })
                .collect::<Result<Vec<_>, ferrisdb_core::Error>>()
        })
        .await;
        match measured {
            Ok(Ok(measured)) => {
                *sizes.latest.lock() = measured
                    .into_iter()
                    .map(|(range, size)| v1::ShardSize {
                        middle_key: size
                            .middle_key(&range.begin, &range.end)
                            .unwrap_or_default(),
                        bytes: size.bytes,
                        write_bytes_per_second: rates.of(&range),
                        range: Some(v1::KeyRange::from(&range)),
                    })
                    .collect()
            }
            Ok(Err(e)) | Err(e) => tracing::warn!("measuring shard sizes: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn range(begin: &str, end: &str) -> KeyRange {
        KeyRange::new(begin.as_bytes().to_vec(), end.as_bytes().to_vec()).unwrap()
    }

    fn set(key: &str, value_len: usize) -> Mutation {
        Mutation::Set {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Bytes::from(vec![0u8; value_len]),
        }
    }

    #[test]
    fn writes_are_counted_against_the_shard_holding_them_and_smoothed() {
        let sizes = ShardSizes::default();
        // Nothing is counted before the first period names the ranges.
        sizes.record_writes(&[set("a", 10)]);
        assert!(
            sizes
                .take_writes(vec![range("m", ""), range("", "m")])
                .is_empty()
        );
        sizes.record_writes(&[set("a", 99), set("q", 998), set("z", 998)]);
        let counted = sizes.take_writes(vec![range("", "m"), range("m", "")]);
        let size = |m: Mutation| m.size() as u64;
        assert_eq!(
            counted,
            vec![
                (range("", "m"), size(set("a", 99))),
                (range("m", ""), size(set("q", 998)) + size(set("z", 998))),
            ]
        );
        let mut rates = WriteRates::default();
        rates.update(counted, Duration::from_secs(2));
        assert_eq!(rates.of(&range("", "m")), size(set("a", 99)) / 2);
        // A quiet second halves the rate; a range no longer held is forgotten.
        rates.update(vec![(range("", "m"), 0)], Duration::from_secs(1));
        assert_eq!(rates.of(&range("", "m")), size(set("a", 99)) / 4);
        assert_eq!(rates.of(&range("m", "")), 0);
    }
}
