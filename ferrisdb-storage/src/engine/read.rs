//! The read path: point lookups newest source first, scans, and statistics.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use ferrisdb_core::{Error, Result};

use super::Inner;
use super::options::{EngineStats, LevelStats, ScanOptions};
use super::scan::ScanIterator;
use crate::key::ValueKind;
use crate::sstable::bloom::hash64;

impl Inner {
    /// Fails with `TransactionTooOld` if `read_version` is below the GC horizon.
    fn check_read_version(&self, read_version: u64) -> Result<()> {
        let horizon = self.gc_horizon.load(Ordering::Acquire);
        if read_version < horizon {
            return Err(Error::TransactionTooOld {
                read_version,
                oldest: horizon,
            });
        }
        Ok(())
    }

    /// Active memtable, immutables newest first, level-0 tables newest first, then the one
    /// table of each deeper level whose key range holds `key`; the first entry found wins,
    /// unless it is a value that a newer range tombstone (≤ `read_version`) covers.
    pub(crate) fn get(&self, key: &[u8], read_version: u64) -> Result<Option<Bytes>> {
        self.check_open()?;
        self.check_read_version(read_version)?;
        let state = self.current();
        let visible = |kind: ValueKind, value: Bytes, version: u64| {
            let deleted = kind != ValueKind::Put
                || state
                    .newest_range_tombstone(key, read_version)
                    .is_some_and(|tombstone| tombstone > version);
            (!deleted).then_some(value)
        };
        if let Some(entry) = state.active.get(key, read_version) {
            return Ok(visible(entry.kind, entry.value, entry.version));
        }
        for imm in &state.immutables {
            if let Some(entry) = imm.mem.get(key, read_version) {
                return Ok(visible(entry.kind, entry.value, entry.version));
            }
        }
        // The bloom hash of `key`, computed once for every table probed.
        let mut key_hash = None;
        for (level, tables) in state.levels.iter().enumerate() {
            let candidates: &[_] = if level == 0 {
                tables
            } else {
                let at = tables.partition_point(|t| t.properties().largest.key.as_slice() < key);
                match tables.get(at) {
                    Some(t) if t.properties().smallest.key.as_slice() <= key => {
                        std::slice::from_ref(t)
                    }
                    _ => &[],
                }
            };
            for table in candidates {
                let hash = *key_hash.get_or_insert_with(|| hash64(key));
                if let Some(entry) = table.get_hashed(key, hash, read_version)? {
                    return Ok(visible(entry.kind, entry.value, entry.version));
                }
            }
        }
        Ok(None)
    }

    pub(crate) fn scan(&self, opts: ScanOptions) -> Result<ScanIterator> {
        self.check_open()?;
        self.check_read_version(opts.read_version)?;
        let state = self.current();
        Ok(ScanIterator::new(
            &state,
            opts.begin,
            opts.end,
            opts.read_version,
            opts.reverse,
            opts.limit,
        ))
    }

    pub(crate) fn stats(&self) -> EngineStats {
        let state = self.current();
        let levels: Vec<LevelStats> = state
            .levels
            .iter()
            .map(|tables| LevelStats {
                files: tables.len(),
                bytes: tables.iter().map(|t| t.file_size()).sum(),
            })
            .collect();
        EngineStats {
            l0_files: state.l0_files(),
            total_sst_bytes: levels.iter().map(|l| l.bytes).sum(),
            levels,
            memtable_bytes: state.active.approximate_bytes()
                + state
                    .immutables
                    .iter()
                    .map(|i| i.mem.approximate_bytes())
                    .sum::<usize>(),
            immutable_memtables: state.immutables.len(),
            block_cache_bytes: self.cache.usage_bytes(),
            table_memory_bytes: state
                .levels
                .iter()
                .flatten()
                .map(|t| t.memory_bytes())
                .sum(),
            write_slowdowns: self.counters.write_slowdowns.load(Ordering::Relaxed),
            write_stops: self.counters.write_stops.load(Ordering::Relaxed),
            write_stall_micros: self.counters.write_stall_micros.load(Ordering::Relaxed),
            flushes: self.counters.flushes.load(Ordering::Relaxed),
            flush_bytes: self.counters.flush_bytes.load(Ordering::Relaxed),
            compactions: self.counters.compactions.load(Ordering::Relaxed),
            trivial_moves: self.counters.trivial_moves.load(Ordering::Relaxed),
            compaction_read_bytes: self.counters.compaction_read_bytes.load(Ordering::Relaxed),
            compaction_write_bytes: self.counters.compaction_write_bytes.load(Ordering::Relaxed),
            compaction_micros: self.counters.compaction_micros.load(Ordering::Relaxed),
            wal: self.wal.stats(),
            cache_hits: self.cache.hits(),
            cache_misses: self.cache.misses(),
            last_applied_version: self.last_applied.load(Ordering::Acquire),
            durable_version: self.durable.load(Ordering::Acquire),
            gc_horizon: self.gc_horizon.load(Ordering::Acquire),
        }
    }
}
