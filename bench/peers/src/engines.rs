//! One `BenchEngine` impl per peer storage engine (FerrisDB's, `FerrisEngine`, lives with
//! the workloads in `ferrisdb::engine_bench`). Every engine gets the same key/value bytes, the
//! same block-cache budget and the same durability setting.

use std::path::Path;

use anyhow::{Context, Result};
pub use ferrisdb::engine_bench::{BenchEngine, BenchError};

/// Settings shared by every engine in one run.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// fdatasync the WAL on every write batch.
    pub sync: bool,
    /// Block cache budget, bytes.
    pub cache_bytes: usize,
    /// Data-block compression, every level.
    pub compression: Compression,
    /// Data-block compression of the bottommost level (`None`: as `compression`).
    pub bottommost_compression: Option<Compression>,
    /// FerrisDB only: every 1024 batches the GC horizon is set this many versions below the
    /// last one written (one version per batch), like a storage server keeping a window of
    /// versions; 0 never moves it (every version is kept).
    pub gc_window: u64,
    /// FerrisDB only: `NAME=VALUE` overrides of `EngineOptions` (see [`ferris_options`]).
    pub ferris_opts: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Lz4,
    Zstd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    Ferrisdb,
    Rocksdb,
    Fjall,
}

impl EngineKind {
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Ferrisdb => "ferrisdb",
            EngineKind::Rocksdb => "rocksdb",
            EngineKind::Fjall => "fjall",
        }
    }
}

/// Parses `--ferris-opt NAME=VALUE` arguments.
pub fn parse_ferris_opt(arg: &str) -> Result<(String, String), String> {
    let (name, value) =
        arg.split_once('=').ok_or_else(|| format!("expected NAME=VALUE, got {arg:?}"))?;
    Ok((name.trim().to_string(), value.trim().to_string()))
}

/// FerrisDB's engine options for a run: the defaults, the run's sync and cache settings, then
/// the `--ferris-opt` overrides. Names are `EngineOptions` fields (sizes in bytes) plus the
/// table options `block_size`, `restart_interval` and `bloom_bits_per_key`.
#[cfg(feature = "ferrisdb")]
pub fn ferris_options(cfg: &EngineConfig) -> Result<ferrisdb_storage::engine::EngineOptions> {
    use ferrisdb_storage::engine::{EngineOptions, SyncPolicy};
    use ferrisdb_storage::sstable::Compression as Codec;
    let codec = |c: Compression| match c {
        Compression::None => Codec::None,
        Compression::Lz4 => Codec::Lz4,
        Compression::Zstd => Codec::Zstd,
    };
    let mut opts = EngineOptions {
        sync: if cfg.sync { SyncPolicy::Always } else { SyncPolicy::Never },
        block_cache_bytes: cfg.cache_bytes,
        bottommost_compression: cfg.bottommost_compression.map(codec),
        ..EngineOptions::default()
    };
    opts.table.compression = codec(cfg.compression);
    for (name, value) in &cfg.ferris_opts {
        let int = || -> Result<usize> {
            value.parse().with_context(|| format!("--ferris-opt {name}: {value:?} is not a number"))
        };
        let flag = || -> Result<bool> {
            value.parse().with_context(|| format!("--ferris-opt {name}: {value:?} is not true/false"))
        };
        match name.as_str() {
            "memtable_bytes" => opts.memtable_bytes = int()?,
            "max_immutable_memtables" => opts.max_immutable_memtables = int()?,
            "target_file_bytes" => opts.target_file_bytes = int()? as u64,
            "l0_compaction_trigger" => opts.l0_compaction_trigger = int()?,
            "l0_slowdown_writes" => opts.l0_slowdown_writes = int()?,
            "l0_stop_writes" => opts.l0_stop_writes = int()?,
            "level1_bytes" => opts.level1_bytes = int()? as u64,
            "level_multiplier" => opts.level_multiplier = int()? as u64,
            "num_levels" => opts.num_levels = int()?,
            "dynamic_level_bytes" => opts.dynamic_level_bytes = flag()?,
            "flush_on_open" => opts.flush_on_open = flag()?,
            "block_size" => opts.table.block_size = int()?,
            "restart_interval" => opts.table.restart_interval = int()?,
            "bloom_bits_per_key" => opts.table.bloom_bits_per_key = int()?,
            _ => anyhow::bail!("--ferris-opt: unknown FerrisDB option {name:?}"),
        }
    }
    Ok(opts)
}

/// RocksDB's memtable size and count (its defaults, set explicitly so the budget is known).
const ROCKS_WRITE_BUFFER_BYTES: usize = 64 << 20;
const ROCKS_WRITE_BUFFERS: i32 = 2;

/// The memory an engine is configured to hold, in bytes: its block cache plus its write
/// buffers (memtables, active and waiting to flush). `None`: the engine bounds its write
/// buffers only by its journal size (fjall's default), so there is no fixed figure.
/// Indexes and bloom filters of open tables come on top in every engine.
pub fn memory_budget(kind: EngineKind, cfg: &EngineConfig) -> Result<Option<u64>> {
    Ok(match kind {
        #[cfg(feature = "ferrisdb")]
        EngineKind::Ferrisdb => {
            let o = ferris_options(cfg)?;
            Some((o.block_cache_bytes + o.memtable_bytes * (1 + o.max_immutable_memtables)) as u64)
        }
        #[cfg(not(feature = "ferrisdb"))]
        EngineKind::Ferrisdb => None,
        EngineKind::Rocksdb => {
            Some((cfg.cache_bytes + ROCKS_WRITE_BUFFER_BYTES * ROCKS_WRITE_BUFFERS as usize) as u64)
        }
        EngineKind::Fjall => None,
    })
}

pub fn open(kind: EngineKind, dir: &Path, cfg: &EngineConfig) -> Result<Box<dyn BenchEngine>> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    Ok(match kind {
        #[cfg(feature = "ferrisdb")]
        EngineKind::Ferrisdb => Box::new(
            ferrisdb::engine_bench::FerrisEngine::open(dir, ferris_options(cfg)?, cfg.gc_window)
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        ),
        #[cfg(not(feature = "ferrisdb"))]
        EngineKind::Ferrisdb => {
            anyhow::bail!("built without the `ferrisdb` feature (ferrisdb_storage::engine missing)")
        }
        EngineKind::Rocksdb => Box::new(rocks::Rocks::open(dir, cfg)?),
        EngineKind::Fjall => Box::new(fj::Fjall::open(dir, cfg)?),
    })
}

// ---------------------------------------------------------------------------------------------
// RocksDB
// ---------------------------------------------------------------------------------------------
mod rocks {
    use super::*;
    use rocksdb::{BlockBasedOptions, Cache, DB, DBCompressionType, Options, WriteOptions};

    pub struct Rocks {
        db: DB,
        wopts: WriteOptions,
        _cache: Cache,
    }

    impl Rocks {
        pub fn open(dir: &Path, cfg: &EngineConfig) -> Result<Self> {
            let cache = Cache::new_lru_cache(cfg.cache_bytes);
            let mut table = BlockBasedOptions::default();
            table.set_block_cache(&cache);
            table.set_bloom_filter(10.0, false);
            let mut opts = Options::default();
            opts.create_if_missing(true);
            opts.set_write_buffer_size(ROCKS_WRITE_BUFFER_BYTES);
            opts.set_max_write_buffer_number(ROCKS_WRITE_BUFFERS);
            opts.set_block_based_table_factory(&table);
            let codec = |c: Compression| match c {
                Compression::None => DBCompressionType::None,
                Compression::Lz4 => DBCompressionType::Lz4,
                Compression::Zstd => DBCompressionType::Zstd,
            };
            opts.set_compression_type(codec(cfg.compression));
            // Level 3 for zstd (RocksDB's and zstd's default), as FerrisDB writes it.
            opts.set_bottommost_compression_type(codec(
                cfg.bottommost_compression.unwrap_or(cfg.compression),
            ));
            let db = DB::open(&opts, dir)?;
            let mut wopts = WriteOptions::default();
            wopts.set_sync(cfg.sync);
            Ok(Rocks { db, wopts, _cache: cache })
        }
    }

    impl BenchEngine for Rocks {
        fn put_batch(&self, kvs: &[(&[u8], &[u8])]) -> Result<(), BenchError> {
            if let [(k, v)] = kvs {
                self.db.put_opt(k, v, &self.wopts)?;
                return Ok(());
            }
            let mut b = rocksdb::WriteBatch::default();
            for (k, v) in kvs {
                b.put(k, v);
            }
            self.db.write_opt(b, &self.wopts)?;
            Ok(())
        }

        fn get(&self, key: &[u8]) -> Result<Option<usize>, BenchError> {
            Ok(self.db.get_pinned(key)?.map(|v| v.len()))
        }

        fn seek_next_n(&self, key: &[u8], n: usize) -> Result<(u64, u64), BenchError> {
            let mut it = self.db.raw_iterator();
            it.seek(key);
            let (mut cnt, mut bytes) = (0u64, 0u64);
            while it.valid() && (cnt as usize) < n {
                bytes += (it.key().unwrap().len() + it.value().unwrap().len()) as u64;
                cnt += 1;
                it.next();
            }
            it.status()?;
            Ok((cnt, bytes))
        }

        fn scan_all(&self) -> Result<(u64, u64), BenchError> {
            let mut it = self.db.raw_iterator();
            it.seek_to_first();
            let (mut cnt, mut bytes) = (0u64, 0u64);
            while it.valid() {
                bytes += (it.key().unwrap().len() + it.value().unwrap().len()) as u64;
                cnt += 1;
                it.next();
            }
            it.status()?;
            Ok((cnt, bytes))
        }

        fn flush(&self) -> Result<(), BenchError> {
            self.db.flush()?;
            Ok(())
        }

        fn close(self: Box<Self>) -> Result<(), BenchError> {
            self.db.flush_wal(true)?;
            self.db.cancel_all_background_work(true);
            drop(self);
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// fjall
// ---------------------------------------------------------------------------------------------
mod fj {
    use super::*;
    use fjall::config::{BloomConstructionPolicy, CompressionPolicy, FilterPolicy, FilterPolicyEntry};
    use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

    pub struct Fjall {
        db: Database,
        ks: Keyspace,
        persist: PersistMode,
    }

    impl Fjall {
        pub fn open(dir: &Path, cfg: &EngineConfig) -> Result<Self> {
            // Dropping a fjall Database releases its lock file once its worker threads exit;
            // retry briefly so a close + reopen in one process does not race it.
            let mut tries = 0;
            let db = loop {
                match Database::builder(dir).cache_size(cfg.cache_bytes as u64).open() {
                    Err(fjall::Error::Locked) if tries < 200 => {
                        tries += 1;
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    r => break r?,
                }
            };
            let compression = cfg.compression;
            anyhow::ensure!(
                compression != Compression::Zstd && cfg.bottommost_compression.is_none(),
                "fjall runs here with LZ4 or none only (no zstd, no bottommost setting): \
                 leave it out with --engines ferrisdb,rocksdb"
            );
            let ks = db.keyspace("bench", move || {
                let o = KeyspaceCreateOptions::default().filter_policy(FilterPolicy::all(
                    FilterPolicyEntry::Bloom(BloomConstructionPolicy::BitsPerKey(10.0)),
                ));
                match compression {
                    // fjall's default: no compression in L0/L1, LZ4 below.
                    Compression::Lz4 => o,
                    Compression::None | Compression::Zstd => {
                        o.data_block_compression_policy(CompressionPolicy::disabled())
                    }
                }
            })?;
            // Buffer = write(2) to the OS per batch (like the others' WAL without sync);
            // SyncData = fdatasync per batch.
            let persist = if cfg.sync { PersistMode::SyncData } else { PersistMode::Buffer };
            Ok(Fjall { db, ks, persist })
        }
    }

    impl BenchEngine for Fjall {
        fn put_batch(&self, kvs: &[(&[u8], &[u8])]) -> Result<(), BenchError> {
            let mut b = self.db.batch().durability(Some(self.persist));
            for (k, v) in kvs {
                b.insert(&self.ks, *k, *v);
            }
            b.commit()?;
            Ok(())
        }

        fn get(&self, key: &[u8]) -> Result<Option<usize>, BenchError> {
            Ok(self.ks.get(key)?.map(|v| v.len()))
        }

        fn seek_next_n(&self, key: &[u8], n: usize) -> Result<(u64, u64), BenchError> {
            let (mut cnt, mut bytes) = (0u64, 0u64);
            for g in self.ks.range(key..).take(n) {
                let (k, v) = g.into_inner()?;
                cnt += 1;
                bytes += (k.len() + v.len()) as u64;
            }
            Ok((cnt, bytes))
        }

        fn scan_all(&self) -> Result<(u64, u64), BenchError> {
            let (mut cnt, mut bytes) = (0u64, 0u64);
            for g in self.ks.iter() {
                let (k, v) = g.into_inner()?;
                cnt += 1;
                bytes += (k.len() + v.len()) as u64;
            }
            Ok((cnt, bytes))
        }

        fn flush(&self) -> Result<(), BenchError> {
            self.ks.rotate_memtable_and_wait()?;
            Ok(())
        }

        fn close(self: Box<Self>) -> Result<(), BenchError> {
            self.db.persist(PersistMode::SyncAll)?;
            let Fjall { db, ks, .. } = *self;
            drop(ks);
            drop(db);
            Ok(())
        }
    }
}
