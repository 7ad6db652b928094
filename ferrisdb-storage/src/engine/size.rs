//! How many bytes a key range holds, and the key that halves them — what the data
//! distributor needs to split shards — without reading a data block: every table contributes
//! the data blocks its index says may hold keys of the range (a block's last key and its size
//! on disk), every memtable its entries in the range (key, value and a per-entry overhead),
//! summed into steps of about one block. The estimate is good to about one block per table
//! at each edge of the range, and counts every version still held, as the disk does.

use bytes::Bytes;

use super::Engine;
use crate::iterator::InternalIterator;
use crate::memtable::MemTable;
use ferrisdb_core::Result;

/// Bytes of memtable entries gathered into one sample.
const MEMTABLE_STEP: u64 = 4096;
/// Bytes a memtable entry costs beyond its key and value (node header, links, version).
const MEMTABLE_ENTRY_OVERHEAD: u64 = 40;

/// The approximate contents of a key range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSize {
    /// Approximate bytes held.
    pub bytes: u64,
    /// `(last key, bytes up to it)` steps of about a block each, from every source, sorted by
    /// key; their bytes sum to `bytes`.
    pub samples: Vec<(Bytes, u64)>,
}

impl RangeSize {
    /// The key near which half of the range's bytes lie before it: a split point strictly
    /// inside `(begin, end)` (an empty `end`: unbounded), or `None` if the samples offer none
    /// (the range holds about one block or one key).
    pub fn middle_key(&self, begin: &[u8], end: &[u8]) -> Option<Bytes> {
        let half = self.bytes / 2;
        let mut seen = 0u64;
        for (key, bytes) in &self.samples {
            seen += bytes;
            let inside = key.as_ref() > begin && (end.is_empty() || key.as_ref() < end);
            if seen >= half && inside {
                return Some(key.clone());
            }
        }
        None
    }
}

impl Engine {
    /// The approximate bytes held in `[begin, end)` (an empty `end`: unbounded), with samples
    /// to split it by (see the module docs).
    pub fn approximate_range(&self, begin: &[u8], end: &[u8]) -> Result<RangeSize> {
        let state = self.inner.current();
        let mut samples: Vec<(Bytes, u64)> = Vec::new();
        sample_memtable(&state.active, begin, end, &mut samples)?;
        for imm in &state.immutables {
            sample_memtable(&imm.mem, begin, end, &mut samples)?;
        }
        for level in &state.levels {
            for table in level {
                let props = table.properties();
                let after = !end.is_empty() && props.smallest.key.as_slice() >= end;
                let before = props.largest.key.as_slice() < begin;
                if after || before {
                    continue;
                }
                for (key, bytes) in table.block_sizes(begin, end)? {
                    samples.push((Bytes::from(key), bytes));
                }
            }
        }
        samples.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(RangeSize {
            bytes: samples.iter().map(|(_, b)| b).sum(),
            samples,
        })
    }
}

fn sample_memtable(
    mem: &std::sync::Arc<MemTable>,
    begin: &[u8],
    end: &[u8],
    out: &mut Vec<(Bytes, u64)>,
) -> Result<()> {
    let mut iter = mem.iter();
    iter.seek(begin, u64::MAX)?;
    let mut step = 0u64;
    // The last key not yet pushed (one buffer for the walk: no allocation per entry).
    let mut last = Vec::new();
    let mut have_last = false;
    while iter.valid() && (end.is_empty() || iter.key() < end) {
        step += (iter.key().len() + iter.value().len()) as u64 + MEMTABLE_ENTRY_OVERHEAD;
        if step >= MEMTABLE_STEP {
            out.push((Bytes::copy_from_slice(iter.key()), step));
            step = 0;
            have_last = false;
        } else {
            last.clear();
            last.extend_from_slice(iter.key());
            have_last = true;
        }
        iter.next()?;
    }
    if have_last && step > 0 {
        out.push((Bytes::from(last), step));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{EngineOptions, WriteBatch};

    fn fill(engine: &Engine, keys: std::ops::Range<u32>, value_bytes: usize, version: u64) {
        let mut batch = WriteBatch::default();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for i in keys {
            // Incompressible values, so table sizes match the bytes written.
            let value: Vec<u8> = (0..value_bytes)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            batch.put(format!("k{i:06}"), value);
        }
        engine.apply_unsynced(version, &batch).unwrap();
    }

    #[test]
    fn sizes_and_middle_keys_follow_the_data_in_memtables_and_tables() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(
            dir.path(),
            EngineOptions {
                background_threads: false,
                ..EngineOptions::default()
            },
        )
        .unwrap();
        // 1,000 keys of ~1 KiB: in the memtable, then flushed to a table.
        fill(&engine, 0..1000, 1000, 1);
        let check = |engine: &Engine, where_: &str| {
            let all = engine.approximate_range(b"", b"").unwrap();
            assert!(
                (900_000..1_300_000).contains(&all.bytes),
                "{where_}: {} bytes",
                all.bytes
            );
            let middle = all.middle_key(b"", b"").unwrap();
            assert!(
                middle.as_ref() > &b"k000400"[..] && middle.as_ref() < &b"k000600"[..],
                "{where_}: middle {middle:?}"
            );
            let quarter = engine.approximate_range(b"k000000", b"k000250").unwrap();
            assert!(
                quarter.bytes * 5 < all.bytes * 2 && quarter.bytes * 5 > all.bytes,
                "{where_}: a quarter holds {} of {}",
                quarter.bytes,
                all.bytes
            );
            assert_eq!(engine.approximate_range(b"z", b"").unwrap().bytes, 0);
        };
        check(&engine, "memtable");
        engine.flush().unwrap();
        check(&engine, "table");
        let tiny = engine.approximate_range(b"k000000", b"k000001").unwrap();
        assert!(tiny.middle_key(b"k000000", b"k000001").is_none());
    }
}
