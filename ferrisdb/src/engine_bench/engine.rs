//! What a benchmark needs from a storage engine ([`BenchEngine`]), and FerrisDB's engine
//! behind it ([`FerrisEngine`]). `bench/peers` implements the trait for RocksDB and fjall.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use ferrisdb_core::Error;
use ferrisdb_storage::engine::{Engine, EngineOptions, ScanOptions, WriteBatch};

/// Flush and compaction counters of an engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WriteStats {
    /// Bytes of the tables written by memtable flushes.
    pub flush_bytes: u64,
    /// Bytes of the input tables read by compactions.
    pub compaction_read_bytes: u64,
    /// Bytes of the tables written by compactions.
    pub compaction_write_bytes: u64,
    /// Compactions, trivial moves included.
    pub compactions: u64,
    /// Compactions that moved a table down a level without rewriting it.
    pub trivial_moves: u64,
    /// Time spent compacting.
    pub compaction_secs: f64,
    /// Time writers spent slowed down or stopped.
    pub write_stall_secs: f64,
}

/// An engine's error, whatever its type.
pub type BenchError = Box<dyn std::error::Error + Send + Sync>;

/// What the workloads need from an engine. `&self` everywhere so readers and a writer can
/// share one instance across scoped threads.
pub trait BenchEngine: Send + Sync {
    /// Applies the pairs as one atomic write batch.
    fn put_batch(&self, kvs: &[(&[u8], &[u8])]) -> Result<(), BenchError>;
    /// Point read; the value's length if found.
    fn get(&self, key: &[u8]) -> Result<Option<usize>, BenchError>;
    /// Seeks to the first key `>= key` and reads up to `n` entries (the seek's own included);
    /// returns (entries, key + value bytes).
    fn seek_next_n(&self, key: &[u8], n: usize) -> Result<(u64, u64), BenchError>;
    /// Full forward scan; returns (entries, key + value bytes).
    fn scan_all(&self) -> Result<(u64, u64), BenchError>;
    /// Memtables to tables; waits.
    fn flush(&self) -> Result<(), BenchError>;
    /// Stops background work and releases the directory.
    fn close(self: Box<Self>) -> Result<(), BenchError>;
    /// Flush and compaction counters since open, if the engine reports them.
    fn write_stats(&self) -> Option<WriteStats> {
        None
    }
}

/// The GC horizon moves every this many batches (versions).
const GC_EVERY: u64 = 1024;

/// FerrisDB's storage engine as a [`BenchEngine`]: one version per write batch; every
/// `GC_EVERY` batches the GC horizon moves to `gc_window` versions below the newest, as a
/// storage server keeps a window of versions (0: it never moves, every version is kept);
/// reads at the newest version.
pub struct FerrisEngine {
    engine: Arc<Engine>,
    /// Held from taking a version to applying it, so concurrent writers apply in version
    /// order (as a storage server applies versions one after another).
    apply_lock: parking_lot::Mutex<()>,
    /// Last version applied; versions must strictly increase.
    version: AtomicU64,
    gc_window: u64,
}

fn err(e: Error) -> BenchError {
    format!("ferrisdb: {e}").into()
}

impl FerrisEngine {
    /// Opens (or creates) the engine in `dir`.
    pub fn open(dir: &Path, options: EngineOptions, gc_window: u64) -> Result<Self, BenchError> {
        let engine = Engine::open(dir, options).map_err(err)?;
        let version = AtomicU64::new(engine.last_applied_version());
        Ok(FerrisEngine {
            engine,
            apply_lock: parking_lot::Mutex::new(()),
            version,
            gc_window,
        })
    }

    /// Deletes every key of `[begin, end)` in one batch at the next version; returns the
    /// WAL bytes its record took (no other write runs meanwhile).
    pub fn delete_range(&self, begin: &[u8], end: &[u8]) -> Result<u64, BenchError> {
        let mut batch = WriteBatch::new();
        batch.delete_range(begin, end);
        let _in_order = self.apply_lock.lock();
        let before = self.engine.stats().wal.bytes_written;
        self.apply_locked(&batch)?;
        Ok(self.engine.stats().wal.bytes_written - before)
    }

    /// Applies `batch` at the next version; moves the GC horizon every `GC_EVERY` versions.
    fn apply(&self, batch: &WriteBatch) -> Result<(), BenchError> {
        let _in_order = self.apply_lock.lock();
        self.apply_locked(batch)
    }

    /// [`apply`](Self::apply) with `apply_lock` held.
    fn apply_locked(&self, batch: &WriteBatch) -> Result<(), BenchError> {
        let v = self.version.fetch_add(1, Ordering::SeqCst) + 1;
        self.engine.apply(v, batch).map_err(err)?;
        if self.gc_window > 0 && v.is_multiple_of(GC_EVERY) {
            self.engine.set_gc_horizon(v.saturating_sub(self.gc_window));
        }
        Ok(())
    }

    /// The engine, for its statistics or a compaction.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Runs `read` at the newest version; if the GC horizon passed that version before the
    /// read started (a writer moved it meanwhile), retries at the new newest version, as a
    /// client whose read version became too old would.
    fn at_latest<T>(
        &self,
        read: impl Fn(u64) -> ferrisdb_core::Result<T>,
    ) -> Result<T, BenchError> {
        loop {
            match read(self.engine.last_applied_version()) {
                Err(Error::TransactionTooOld { .. }) => continue,
                other => return other.map_err(err),
            }
        }
    }

    fn scan(&self, begin: &[u8], limit: usize) -> Result<(u64, u64), BenchError> {
        let entries = self.at_latest(|read_version| {
            self.engine.scan(ScanOptions {
                begin: Bytes::copy_from_slice(begin),
                end: Bytes::new(),
                read_version,
                reverse: false,
                limit,
            })
        })?;
        let (mut count, mut bytes) = (0u64, 0u64);
        for entry in entries {
            let (k, v) = entry.map_err(err)?;
            count += 1;
            bytes += (k.len() + v.len()) as u64;
            if limit > 0 && count as usize >= limit {
                break;
            }
        }
        Ok((count, bytes))
    }
}

impl BenchEngine for FerrisEngine {
    fn put_batch(&self, kvs: &[(&[u8], &[u8])]) -> Result<(), BenchError> {
        let mut batch = WriteBatch::new();
        for (k, v) in kvs {
            batch.put(k, v);
        }
        self.apply(&batch)
    }

    fn get(&self, key: &[u8]) -> Result<Option<usize>, BenchError> {
        Ok(self
            .at_latest(|version| self.engine.get(key, version))?
            .map(|v| v.len()))
    }

    fn seek_next_n(&self, key: &[u8], n: usize) -> Result<(u64, u64), BenchError> {
        self.scan(key, n.max(1))
    }

    fn scan_all(&self) -> Result<(u64, u64), BenchError> {
        self.scan(b"", 0)
    }

    fn flush(&self) -> Result<(), BenchError> {
        self.engine.flush().map_err(err)
    }

    fn close(self: Box<Self>) -> Result<(), BenchError> {
        self.engine.close().map_err(err)
    }

    fn write_stats(&self) -> Option<WriteStats> {
        let s = self.engine.stats();
        Some(WriteStats {
            flush_bytes: s.flush_bytes,
            compaction_read_bytes: s.compaction_read_bytes,
            compaction_write_bytes: s.compaction_write_bytes,
            compactions: s.compactions,
            trivial_moves: s.trivial_moves,
            compaction_secs: s.compaction_micros as f64 / 1e6,
            write_stall_secs: s.write_stall_micros as f64 / 1e6,
        })
    }
}
