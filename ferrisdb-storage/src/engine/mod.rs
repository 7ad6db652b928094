//! The storage engine: ties the WAL, memtables, SSTables, manifest and compaction into one
//! multi-version key-value store. See `docs/engine.md`.
//!
//! [`Engine::apply`] writes a [`WriteBatch`] at a version to the WAL and the active memtable
//! (`write.rs`); [`Engine::get`] and [`Engine::scan`] read a consistent `State` at any
//! version at or above the GC horizon (`read.rs`, `scan.rs`); full memtables are flushed to
//! level-0 SSTables (`flush.rs`) and levels are compacted with MVCC garbage collection
//! (`compaction/`), on background threads (`background.rs`) or when called. Opening recovers
//! the manifest and replays the WAL (`recovery.rs`).

mod background;
pub(crate) mod batch;
mod compaction;
mod flush;
mod options;
mod read;
mod recovery;
mod scan;
mod scan_output;
mod size;
mod state;
mod write;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

use bytes::Bytes;
use ferrisdb_core::{Error, Result};
use parking_lot::{Condvar, Mutex, RwLock};

use crate::range_tombstone::RangeTombstoneSet;
use crate::vfs::SharedFs;

pub use crate::wal::SyncPolicy;
pub use batch::WriteBatch;
pub use compaction::{PurgeRange, PurgeStats};
pub use options::{EngineOptions, EngineStats, LevelStats, ScanOptions};
pub use scan::ScanIterator;
pub use size::RangeSize;

use crate::dir_lock::DirLock;
use crate::manifest::Manifest;
use crate::sstable::cache::BlockCache;
use crate::wal::Wal;
use state::State;

/// Subdirectory holding the WAL segments.
const WAL_DIR: &str = "wal";

/// A multi-version LSM key-value store in one directory. `Send + Sync`; use as `Arc<Engine>`.
pub struct Engine {
    inner: Arc<Inner>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// Manifest plus compaction bookkeeping, changed only under `Inner::versions`.
#[derive(Debug)]
pub(crate) struct VersionSet {
    pub manifest: Manifest,
    /// Per level: the largest user key of the last file compacted out of it (round-robin).
    pub compact_pointers: Vec<Vec<u8>>,
}

impl VersionSet {
    /// The manifest's range tombstones, indexed for reads.
    pub fn table_tombstones(&self) -> Arc<RangeTombstoneSet> {
        let tombstones = &self.manifest.state().range_tombstones;
        Arc::new(RangeTombstoneSet::new(tombstones.iter().cloned().collect()))
    }
}

/// Signals to the background threads.
#[derive(Debug, Default)]
pub(crate) struct BackgroundSignals {
    pub flush_requested: bool,
    pub compaction_requested: bool,
    pub shutdown: bool,
}

/// Counters reported by [`Engine::stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub write_slowdowns: AtomicU64,
    pub write_stops: AtomicU64,
    /// Microseconds writers spent slowed down or stopped.
    pub write_stall_micros: AtomicU64,
    pub flushes: AtomicU64,
    /// Bytes of the level-0 tables written by flushes.
    pub flush_bytes: AtomicU64,
    pub compactions: AtomicU64,
    /// Compactions done by moving one table down a level without rewriting it.
    pub trivial_moves: AtomicU64,
    /// Bytes of the input tables read by (rewriting) compactions.
    pub compaction_read_bytes: AtomicU64,
    /// Bytes of the tables written by compactions.
    pub compaction_write_bytes: AtomicU64,
    /// Microseconds spent in compactions (picking to installing).
    pub compaction_micros: AtomicU64,
}

/// Everything the engine and its background threads share.
pub(crate) struct Inner {
    /// Where the engine's files live (the OS, or a simulated disk).
    pub fs: SharedFs,
    pub dir: PathBuf,
    pub opts: EngineOptions,
    pub wal: Wal,
    pub cache: Arc<BlockCache>,
    pub state: RwLock<Arc<State>>,
    /// Serializes `apply`; holds the sequence number of the last WAL record submitted.
    pub write_lock: Mutex<u64>,
    pub last_applied: AtomicU64,
    pub durable: AtomicU64,
    pub gc_horizon: AtomicU64,
    pub next_file: AtomicU64,
    pub versions: Mutex<VersionSet>,
    /// Held while flushing one memtable, so each is flushed once.
    pub flush_lock: Mutex<()>,
    /// Held while picking and running a compaction.
    pub compaction_lock: Mutex<()>,
    pub signals: Mutex<BackgroundSignals>,
    pub signals_cv: Condvar,
    /// Writers stalled on level 0 or immutable memtables wait here.
    pub stall_lock: Mutex<()>,
    pub stall_cv: Condvar,
    /// First background failure; writes fail once set.
    pub background_error: Mutex<Option<String>>,
    pub closed: AtomicBool,
    pub lock_file: Mutex<Option<DirLock>>,
    pub counters: Counters,
}

impl Inner {
    /// The current state.
    pub fn current(&self) -> Arc<State> {
        Arc::clone(&self.state.read())
    }

    pub fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::InvalidArgument("the engine is closed".into()));
        }
        Ok(())
    }

    /// Wakes writers waiting for a flush or compaction.
    pub fn notify_stalled(&self) {
        let _guard = self.stall_lock.lock();
        self.stall_cv.notify_all();
    }

    /// Asks the background threads for a flush and/or a compaction.
    pub fn request_background(&self, flush: bool, compaction: bool) {
        if !self.opts.background_threads && !self.opts.inline_background_work {
            return;
        }
        let mut signals = self.signals.lock();
        signals.flush_requested |= flush;
        signals.compaction_requested |= compaction;
        self.signals_cv.notify_all();
    }

    /// Records a background failure so writers stop instead of waiting forever.
    pub fn set_background_error(&self, err: &Error) {
        tracing::error!(error = %err, "background work failed");
        self.background_error
            .lock()
            .get_or_insert_with(|| err.to_string());
        self.notify_stalled();
    }

    pub fn check_background_error(&self) -> Result<()> {
        match self.background_error.lock().as_ref() {
            Some(message) => Err(Error::Internal(format!(
                "background work failed: {message}"
            ))),
            None => Ok(()),
        }
    }

    /// Allocates a file number.
    pub fn new_file_number(&self) -> u64 {
        self.next_file.fetch_add(1, Ordering::SeqCst)
    }
}

impl Engine {
    /// Opens (creating if needed) the database in `dir`: takes the `LOCK` file so a second
    /// process cannot open it, recovers the manifest, opens the live tables, deletes orphan
    /// tables and replays the WAL (then flushes the replayed data, with
    /// [`EngineOptions::flush_on_open`]).
    pub fn open(dir: &Path, opts: EngineOptions) -> Result<Arc<Engine>> {
        Engine::open_on(crate::vfs::os(), dir, opts)
    }

    /// [`open`](Self::open) on the file system `fs` (the simulator's disk, say).
    pub fn open_on(fs: SharedFs, dir: &Path, opts: EngineOptions) -> Result<Arc<Engine>> {
        let inner = Arc::new(recovery::open(fs, dir, opts)?);
        let replayed = Arc::clone(&inner.current().active);
        if opts.flush_on_open && (!replayed.is_empty() || replayed.has_range_tombstones()) {
            inner.flush_all()?;
        }
        let threads = if opts.background_threads {
            background::spawn(&inner)?
        } else {
            // Work left over from before a restart (a deep level 0, say).
            inner.request_background(true, true);
            background::run_requested_inline(&inner);
            Vec::new()
        };
        Ok(Arc::new(Engine {
            inner,
            threads: Mutex::new(threads),
        }))
    }

    /// Applies `batch` atomically at `version`, which must be greater than
    /// [`last_applied_version`](Self::last_applied_version) (else `InvalidArgument`).
    /// `delete_range` writes one range tombstone, whatever the number of keys it covers.
    /// Returns once the batch is durable under the configured [`SyncPolicy`].
    pub fn apply(&self, version: u64, batch: &WriteBatch) -> Result<()> {
        let applied = self.inner.apply(version, batch);
        background::run_requested_inline(&self.inner);
        applied
    }

    /// Applies a batch like [`apply`](Self::apply) — atomic, visible to reads at once — but
    /// returns before its WAL record is synced, so [`durable_version`](Self::durable_version)
    /// does not cover it yet. A caller applying many versions in a row (a storage server
    /// catching up on the commit log) then calls [`sync`](Self::sync) once for all of them.
    pub fn apply_unsynced(&self, version: u64, batch: &WriteBatch) -> Result<()> {
        let applied = self.inner.apply_unsynced(version, batch).map(|_| ());
        background::run_requested_inline(&self.inner);
        applied
    }

    /// Makes every applied batch durable (one WAL sync under [`SyncPolicy::Always`]) and
    /// returns the durable version.
    pub fn sync(&self) -> Result<u64> {
        self.inner.sync()
    }

    /// The value of `key` at `read_version`; `TransactionTooOld` below the GC horizon.
    pub fn get(&self, key: &[u8], read_version: u64) -> Result<Option<Bytes>> {
        self.inner.get(key, read_version)
    }

    /// A streaming iterator over a consistent snapshot of a key range at a version.
    pub fn scan(&self, opts: ScanOptions) -> Result<ScanIterator> {
        self.inner.scan(opts)
    }

    /// Highest version applied (visible to reads).
    pub fn last_applied_version(&self) -> u64 {
        self.inner.last_applied.load(Ordering::Acquire)
    }

    /// Every version ≤ this survives a process crash (and an OS crash under
    /// [`SyncPolicy::Always`]). After reopen it is the highest recovered version.
    pub fn durable_version(&self) -> u64 {
        self.inner.durable.load(Ordering::Acquire)
    }

    /// Raises the GC horizon (it never moves down): reads below it fail, and compaction may
    /// drop versions below it except the newest one at or below it. When the new horizon
    /// passes a table that holds enough older versions of its keys, a compaction is requested
    /// to drop them, even if nothing is being written.
    pub fn set_gc_horizon(&self, version: u64) {
        let previous = self.inner.gc_horizon.fetch_max(version, Ordering::AcqRel);
        if version <= previous {
            return;
        }
        let passed = self.inner.current().levels.iter().flatten().any(|table| {
            let versions = compaction::table_versions(table);
            versions.max_version > previous && versions.worth_collecting(version)
        });
        if passed {
            self.inner.request_background(false, true);
        }
    }

    /// The current GC horizon (persisted in the manifest with every flush, compaction and close).
    pub fn gc_horizon(&self) -> u64 {
        self.inner.gc_horizon.load(Ordering::Acquire)
    }

    /// Flushes every memtable (active included) to level-0 SSTables and waits.
    pub fn flush(&self) -> Result<()> {
        self.inner.check_open()?;
        self.inner.flush_all()
    }

    /// Runs compactions until no level needs one, and waits.
    pub fn compact(&self) -> Result<()> {
        self.inner.check_open()?;
        self.inner.compact_until_done()
    }

    /// A snapshot of the engine's counters.
    pub fn stats(&self) -> EngineStats {
        self.inner.stats()
    }

    /// Stops the background threads, syncs the WAL, records the GC horizon and releases the
    /// directory lock. Later calls fail.
    pub fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Err(Error::InvalidArgument(
                "the engine is already closed".into(),
            ));
        }
        self.stop_threads();
        let result = self.inner.finish_close();
        self.inner.lock_file.lock().take();
        tracing::info!(dir = %self.inner.dir.display(), "engine closed");
        result
    }

    fn stop_threads(&self) {
        {
            let mut signals = self.inner.signals.lock();
            signals.shutdown = true;
            self.inner.signals_cv.notify_all();
        }
        self.inner.notify_stalled();
        for thread in self.threads.lock().drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Engine {
    /// Stops the background threads without flushing (like a crash, minus lost WAL writes).
    fn drop(&mut self) {
        self.stop_threads();
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("dir", &self.inner.dir)
            .field("last_applied", &self.last_applied_version())
            .finish()
    }
}
