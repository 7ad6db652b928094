//! Engine tests: a proptest model test against a `BTreeMap`, basic behaviour, recovery,
//! concurrency and corruption.

mod basic;
mod compaction;
mod concurrency;
mod corruption;
mod level_sizing;
mod model;
mod range_delete;
mod reopen;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::{Engine, EngineOptions, ScanOptions, SyncPolicy};
use crate::sstable::{Compression, TableOptions};

/// Options that make flushes and multi-level compactions happen with little data.
pub(super) fn small_options(background: bool) -> EngineOptions {
    EngineOptions {
        sync: SyncPolicy::Never,
        memtable_bytes: 2048,
        max_immutable_memtables: 2,
        block_cache_bytes: 64 << 10,
        table: TableOptions {
            block_size: 128,
            restart_interval: 4,
            bloom_bits_per_key: 10,
            compression: Compression::Lz4,
        },
        // Level 0 plain, deeper levels LZ4, the deepest zstd: every kind of table meets in
        // reads.
        compress_from_level: 1,
        bottommost_compression: Some(Compression::Zstd),
        target_file_bytes: 2048,
        l0_compaction_trigger: 2,
        l0_slowdown_writes: 6,
        l0_stop_writes: 10,
        level1_bytes: 4096,
        level_multiplier: 2,
        dynamic_level_bytes: true,
        num_levels: 4,
        background_threads: background,
        inline_background_work: false,
        flush_on_open: true,
    }
}

pub(super) fn open(dir: &Path, opts: EngineOptions) -> Arc<Engine> {
    Engine::open(dir, opts).unwrap()
}

/// Collects a scan into owned pairs.
pub(super) fn scan_all(
    engine: &Engine,
    begin: &[u8],
    end: &[u8],
    version: u64,
    reverse: bool,
    limit: usize,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    engine
        .scan(ScanOptions {
            begin: Bytes::copy_from_slice(begin),
            end: Bytes::copy_from_slice(end),
            read_version: version,
            reverse,
            limit,
        })
        .unwrap()
        .map(|item| {
            let (k, v) = item.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect()
}
