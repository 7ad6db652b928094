//! One `BenchEngine` impl per storage engine. Every impl gets the same key/value bytes,
//! the same block-cache budget and the same durability setting.

use std::path::Path;

use anyhow::{Context, Result};

/// Settings shared by every engine in one run.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// fdatasync the WAL on every write batch.
    pub sync: bool,
    /// Block cache budget, bytes.
    pub cache_bytes: usize,
    /// Data-block compression for the peers (FerrisDB has none yet).
    pub compression: Compression,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Lz4,
}

/// What the harness needs from an engine. `&self` everywhere so readers and a writer can share
/// one instance across scoped threads.
pub trait BenchEngine: Send + Sync {
    /// Applies the pairs as one atomic write batch.
    fn put_batch(&self, kvs: &[(&[u8], &[u8])]) -> Result<()>;
    /// Point read; returns the value length if found.
    fn get(&self, key: &[u8]) -> Result<Option<usize>>;
    /// Seeks to the first key >= `key` and reads up to `n` entries (the seek's entry included).
    /// Returns (entries, key+value bytes).
    fn seek_next_n(&self, key: &[u8], n: usize) -> Result<(u64, u64)>;
    /// Full forward scan; returns (entries, key+value bytes).
    fn scan_all(&self) -> Result<(u64, u64)>;
    /// Memtables to SSTables, waits.
    fn flush(&self) -> Result<()>;
    /// Stops background work and releases the directory.
    fn close(self: Box<Self>) -> Result<()>;
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

pub fn open(kind: EngineKind, dir: &Path, cfg: &EngineConfig) -> Result<Box<dyn BenchEngine>> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    Ok(match kind {
        #[cfg(feature = "ferrisdb")]
        EngineKind::Ferrisdb => Box::new(ferris::Ferris::open(dir, cfg)?),
        #[cfg(not(feature = "ferrisdb"))]
        EngineKind::Ferrisdb => {
            anyhow::bail!("built without the `ferrisdb` feature (ferrisdb_storage::engine missing)")
        }
        EngineKind::Rocksdb => Box::new(rocks::Rocks::open(dir, cfg)?),
        EngineKind::Fjall => Box::new(fj::Fjall::open(dir, cfg)?),
    })
}

// ---------------------------------------------------------------------------------------------
// FerrisDB
// ---------------------------------------------------------------------------------------------
#[cfg(feature = "ferrisdb")]
mod ferris {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use bytes::Bytes;
    use ferrisdb_storage::engine::{Engine, EngineOptions, ScanOptions, SyncPolicy, WriteBatch};

    pub struct Ferris {
        engine: Arc<Engine>,
        /// Last version handed to `apply`; versions must strictly increase.
        version: AtomicU64,
    }

    fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
        anyhow::anyhow!("ferrisdb: {e}")
    }

    impl Ferris {
        pub fn open(dir: &Path, cfg: &EngineConfig) -> Result<Self> {
            let opts = EngineOptions {
                sync: if cfg.sync { SyncPolicy::Always } else { SyncPolicy::Never },
                block_cache_bytes: cfg.cache_bytes,
                ..EngineOptions::default()
            };
            let engine = Engine::open(dir, opts).map_err(err)?;
            let version = AtomicU64::new(engine.last_applied_version());
            Ok(Ferris { engine, version })
        }

        fn read_version(&self) -> u64 {
            self.engine.last_applied_version()
        }
    }

    impl BenchEngine for Ferris {
        fn put_batch(&self, kvs: &[(&[u8], &[u8])]) -> Result<()> {
            let mut batch = WriteBatch::new();
            for (k, v) in kvs {
                batch.put(k, v);
            }
            // One writer thread at a time in every workload, so fetch_add order == apply order.
            let v = self.version.fetch_add(1, Ordering::SeqCst) + 1;
            self.engine.apply(v, &batch).map_err(err)
        }

        fn get(&self, key: &[u8]) -> Result<Option<usize>> {
            Ok(self.engine.get(key, self.read_version()).map_err(err)?.map(|v| v.len()))
        }

        fn seek_next_n(&self, key: &[u8], n: usize) -> Result<(u64, u64)> {
            let it = self
                .engine
                .scan(ScanOptions {
                    begin: Bytes::copy_from_slice(key),
                    end: Bytes::new(),
                    read_version: self.read_version(),
                    reverse: false,
                    limit: n,
                })
                .map_err(err)?;
            let (mut cnt, mut bytes) = (0u64, 0u64);
            for kv in it {
                let (k, v) = kv.map_err(err)?;
                cnt += 1;
                bytes += (k.len() + v.len()) as u64;
                if cnt as usize >= n {
                    break;
                }
            }
            Ok((cnt, bytes))
        }

        fn scan_all(&self) -> Result<(u64, u64)> {
            let it = self
                .engine
                .scan(ScanOptions {
                    begin: Bytes::new(),
                    end: Bytes::new(),
                    read_version: self.read_version(),
                    reverse: false,
                    limit: 0,
                })
                .map_err(err)?;
            let (mut cnt, mut bytes) = (0u64, 0u64);
            for kv in it {
                let (k, v) = kv.map_err(err)?;
                cnt += 1;
                bytes += (k.len() + v.len()) as u64;
            }
            Ok((cnt, bytes))
        }

        fn flush(&self) -> Result<()> {
            self.engine.flush().map_err(err)
        }

        fn close(self: Box<Self>) -> Result<()> {
            self.engine.close().map_err(err)?;
            drop(self);
            Ok(())
        }
    }
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
            opts.set_block_based_table_factory(&table);
            let ct = match cfg.compression {
                Compression::None => DBCompressionType::None,
                Compression::Lz4 => DBCompressionType::Lz4,
            };
            opts.set_compression_type(ct);
            opts.set_bottommost_compression_type(ct);
            let db = DB::open(&opts, dir)?;
            let mut wopts = WriteOptions::default();
            wopts.set_sync(cfg.sync);
            Ok(Rocks { db, wopts, _cache: cache })
        }
    }

    impl BenchEngine for Rocks {
        fn put_batch(&self, kvs: &[(&[u8], &[u8])]) -> Result<()> {
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

        fn get(&self, key: &[u8]) -> Result<Option<usize>> {
            Ok(self.db.get_pinned(key)?.map(|v| v.len()))
        }

        fn seek_next_n(&self, key: &[u8], n: usize) -> Result<(u64, u64)> {
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

        fn scan_all(&self) -> Result<(u64, u64)> {
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

        fn flush(&self) -> Result<()> {
            self.db.flush()?;
            Ok(())
        }

        fn close(self: Box<Self>) -> Result<()> {
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
            let ks = db.keyspace("bench", move || {
                let o = KeyspaceCreateOptions::default().filter_policy(FilterPolicy::all(
                    FilterPolicyEntry::Bloom(BloomConstructionPolicy::BitsPerKey(10.0)),
                ));
                match compression {
                    // fjall's default: no compression in L0/L1, LZ4 below.
                    Compression::Lz4 => o,
                    Compression::None => o.data_block_compression_policy(CompressionPolicy::disabled()),
                }
            })?;
            // Buffer = write(2) to the OS per batch (like the others' WAL without sync);
            // SyncData = fdatasync per batch.
            let persist = if cfg.sync { PersistMode::SyncData } else { PersistMode::Buffer };
            Ok(Fjall { db, ks, persist })
        }
    }

    impl BenchEngine for Fjall {
        fn put_batch(&self, kvs: &[(&[u8], &[u8])]) -> Result<()> {
            let mut b = self.db.batch().durability(Some(self.persist));
            for (k, v) in kvs {
                b.insert(&self.ks, *k, *v);
            }
            b.commit()?;
            Ok(())
        }

        fn get(&self, key: &[u8]) -> Result<Option<usize>> {
            Ok(self.ks.get(key)?.map(|v| v.len()))
        }

        fn seek_next_n(&self, key: &[u8], n: usize) -> Result<(u64, u64)> {
            let (mut cnt, mut bytes) = (0u64, 0u64);
            for g in self.ks.range(key..).take(n) {
                let (k, v) = g.into_inner()?;
                cnt += 1;
                bytes += (k.len() + v.len()) as u64;
            }
            Ok((cnt, bytes))
        }

        fn scan_all(&self) -> Result<(u64, u64)> {
            let (mut cnt, mut bytes) = (0u64, 0u64);
            for g in self.ks.iter() {
                let (k, v) = g.into_inner()?;
                cnt += 1;
                bytes += (k.len() + v.len()) as u64;
            }
            Ok((cnt, bytes))
        }

        fn flush(&self) -> Result<()> {
            self.ks.rotate_memtable_and_wait()?;
            Ok(())
        }

        fn close(self: Box<Self>) -> Result<()> {
            self.db.persist(PersistMode::SyncAll)?;
            let Fjall { db, ks, .. } = *self;
            drop(ks);
            drop(db);
            Ok(())
        }
    }
}
