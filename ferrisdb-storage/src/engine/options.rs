//! The engine's tuning knobs ([`EngineOptions`]), scan parameters ([`ScanOptions`]) and
//! counters ([`EngineStats`]).

use bytes::Bytes;

use crate::sstable::{Compression, TableOptions};
use crate::wal::{SyncPolicy, WalStats};

impl EngineOptions {
    /// The table options for files written to `level`; `bottommost` when nothing lies below
    /// that level (a compaction into the deepest level that holds data).
    pub fn table_for_level(&self, level: usize, bottommost: bool) -> TableOptions {
        let mut table = self.table;
        if level < self.compress_from_level {
            table.compression = Compression::None;
        } else if bottommost && level > 0 {
            table.compression = self.bottommost_compression.unwrap_or(table.compression);
        }
        table
    }
}

/// Options of an [`Engine`](super::Engine).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineOptions {
    /// `Always`: `apply` returns after fdatasync (group commit); `Never`: after write(2).
    pub sync: SyncPolicy,
    /// The active memtable becomes immutable once it holds this many bytes.
    pub memtable_bytes: usize,
    /// Writers wait while this many immutable memtables wait to be flushed.
    pub max_immutable_memtables: usize,
    /// Capacity of the block cache.
    pub block_cache_bytes: usize,
    /// Format knobs of the SSTables written (`table.compression` for levels from
    /// `compress_from_level` on).
    pub table: TableOptions,
    /// Tables of the levels above this one are written uncompressed, whatever
    /// `table.compression` says (0: every level compressed; e.g. 2 keeps the levels that
    /// flushes and the first compactions write cheap to write).
    pub compress_from_level: usize,
    /// The codec of tables that compactions write to the deepest level holding data (and at
    /// or below `compress_from_level`), where most of the data lives and which is rewritten
    /// least often: e.g. zstd there and LZ4 above, as RocksDB's `bottommost_compression`.
    /// `None`: `table.compression` there too.
    pub bottommost_compression: Option<Compression>,
    /// Compaction output files are cut at about this size (at a user-key boundary).
    pub target_file_bytes: u64,
    /// Level 0 is compacted into level 1 once it has this many files.
    pub l0_compaction_trigger: usize,
    /// Each write sleeps about 1 ms while level 0 has at least this many files.
    pub l0_slowdown_writes: usize,
    /// Writes wait for compaction while level 0 has at least this many files.
    pub l0_stop_writes: usize,
    /// Target size of the level that level 0 compacts into: level 1 with static sizing
    /// (level n ≥ 2 then targets `level1_bytes * level_multiplier^(n-1)`), the *base level*
    /// with dynamic sizing (see [`dynamic_level_bytes`](Self::dynamic_level_bytes)).
    pub level1_bytes: u64,
    /// Growth factor between level targets.
    pub level_multiplier: u64,
    /// Size the levels from the bottom (the default): the last level holds what it holds,
    /// each level above a `level_multiplier`-th of the one below, and level 0 compacts into
    /// the first level whose target that makes at most `level1_bytes`, so most data sits in
    /// the last level and space amplification stays near 1.1. False: static targets from
    /// level 1 down. See `engine/compaction/level_targets.rs`.
    pub dynamic_level_bytes: bool,
    /// Number of levels (at least 2).
    pub num_levels: usize,
    /// Run flush and compaction on background threads; false = only when called (or inline,
    /// with [`inline_background_work`](Self::inline_background_work)).
    pub background_threads: bool,
    /// Without background threads: the flushes and compactions that writes make necessary
    /// run on the writing thread, right after its batch is in (and at open, the work left
    /// from before a restart). For the simulator, whose runs must not depend on how threads
    /// are scheduled; a writer then waits for that work instead of stalling.
    pub inline_background_work: bool,
    /// On open, flush what WAL replay put in the memtable to a level-0 table (a normal
    /// flush: the replayed segments are deleted once the manifest records the table), so
    /// reads after a restart do not search a large memtable first.
    pub flush_on_open: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            sync: SyncPolicy::Always,
            memtable_bytes: 64 << 20,
            max_immutable_memtables: 2,
            block_cache_bytes: 64 << 20,
            table: TableOptions::default(),
            compress_from_level: 0,
            bottommost_compression: None,
            target_file_bytes: 32 << 20,
            l0_compaction_trigger: 4,
            l0_slowdown_writes: 12,
            l0_stop_writes: 20,
            level1_bytes: 256 << 20,
            level_multiplier: 10,
            dynamic_level_bytes: true,
            num_levels: 7,
            background_threads: true,
            inline_background_work: false,
            flush_on_open: true,
        }
    }
}

impl EngineOptions {
    /// Target size in bytes of `level` (≥ 1) with static sizing.
    pub fn level_target_bytes(&self, level: usize) -> u64 {
        let mut target = self.level1_bytes.max(1);
        for _ in 1..level {
            target = target.saturating_mul(self.level_multiplier.max(1));
        }
        target
    }
}

/// What [`Engine::scan`](super::Engine::scan) reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanOptions {
    /// First key of the range (inclusive).
    pub begin: Bytes,
    /// End of the range (exclusive); empty = unbounded.
    pub end: Bytes,
    /// The version to read at.
    pub read_version: u64,
    /// Return keys in descending order.
    pub reverse: bool,
    /// Stop after this many pairs; 0 = no limit.
    pub limit: usize,
}

/// Files and bytes of one level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LevelStats {
    /// Number of SSTables.
    pub files: usize,
    /// Total size of those SSTables.
    pub bytes: u64,
}

/// A snapshot of the engine's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Per level, index = level number.
    pub levels: Vec<LevelStats>,
    /// Files in level 0.
    pub l0_files: usize,
    /// Total size of every live SSTable.
    pub total_sst_bytes: u64,
    /// Bytes in the active and immutable memtables.
    pub memtable_bytes: usize,
    /// Bytes of blocks in the block cache.
    pub block_cache_bytes: usize,
    /// Bytes the open tables hold outside the block cache: index blocks, the arrays that
    /// search them and bloom filters ([`Table::memory_bytes`](crate::sstable::Table::memory_bytes)).
    pub table_memory_bytes: usize,
    /// Immutable memtables waiting to be flushed.
    pub immutable_memtables: usize,
    /// Writes that slept because level 0 was deep.
    pub write_slowdowns: u64,
    /// Writes that waited for a flush or compaction.
    pub write_stops: u64,
    /// Time writers spent slowed down or stopped, in microseconds.
    pub write_stall_micros: u64,
    /// Memtable flushes completed.
    pub flushes: u64,
    /// Bytes of the level-0 tables written by flushes.
    pub flush_bytes: u64,
    /// Compactions completed (trivial moves included).
    pub compactions: u64,
    /// Compactions that moved one table down a level by a manifest edit, without rewriting it.
    pub trivial_moves: u64,
    /// Bytes of input tables read by compactions that rewrote their inputs.
    pub compaction_read_bytes: u64,
    /// Bytes of the tables written by compactions.
    pub compaction_write_bytes: u64,
    /// Time spent in compactions, in microseconds.
    pub compaction_micros: u64,
    /// WAL append counters.
    pub wal: WalStats,
    /// Block cache hits.
    pub cache_hits: u64,
    /// Block cache misses.
    pub cache_misses: u64,
    /// Highest applied version.
    pub last_applied_version: u64,
    /// Highest durable version.
    pub durable_version: u64,
    /// Current GC horizon.
    pub gc_horizon: u64,
}

impl EngineStats {
    /// Bytes written to tables (flushes plus compaction outputs) per byte of `user_bytes`
    /// ingested; the WAL is not counted.
    pub fn write_amplification(&self, user_bytes: u64) -> f64 {
        (self.flush_bytes + self.compaction_write_bytes) as f64 / user_bytes.max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_level_gets_its_codec() {
        let opts = EngineOptions {
            table: TableOptions {
                compression: Compression::Lz4,
                ..TableOptions::default()
            },
            compress_from_level: 1,
            bottommost_compression: Some(Compression::Zstd),
            ..EngineOptions::default()
        };
        let codec = |level, bottommost| opts.table_for_level(level, bottommost).compression;
        assert_eq!(codec(0, false), Compression::None);
        assert_eq!(
            codec(0, true),
            Compression::None,
            "flushes are never bottommost"
        );
        assert_eq!(codec(1, false), Compression::Lz4);
        assert_eq!(codec(1, true), Compression::Zstd);
        assert_eq!(codec(6, true), Compression::Zstd);
        let everywhere = EngineOptions {
            compress_from_level: 0,
            bottommost_compression: None,
            ..opts
        };
        assert_eq!(
            everywhere.table_for_level(0, false).compression,
            Compression::Lz4
        );
        assert_eq!(
            everywhere.table_for_level(3, true).compression,
            Compression::Lz4
        );
    }
}
