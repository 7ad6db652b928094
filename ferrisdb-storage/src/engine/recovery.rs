//! Opening and closing: the directory lock, manifest recovery, opening the live tables
//! (checked against the manifest), WAL replay into a fresh memtable, and the final sync on
//! close.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use ferrisdb_core::{Error, Result};
use parking_lot::{Condvar, Mutex, RwLock};

use super::batch::{BatchOp, decode_wal_record};
use super::state::{State, sort_level};
use super::{BackgroundSignals, Counters, EngineOptions, Inner, VersionSet, WAL_DIR};
use crate::dir_lock::DirLock;
use crate::manifest::{Manifest, VersionEdit, table_file_name};
use crate::memtable::MemTable;
use crate::range_tombstone::RangeTombstoneSet;
use crate::sstable::Table;
use crate::sstable::cache::BlockCache;
use crate::vfs::SharedFs;
use crate::wal::{Wal, WalOptions, segment_file_name};

/// Recovers the database in `dir` into a ready [`Inner`] (without background threads).
pub(crate) fn open(fs: SharedFs, dir: &Path, opts: EngineOptions) -> Result<Inner> {
    if opts.num_levels < 2 {
        return Err(Error::InvalidArgument(
            "num_levels must be at least 2".into(),
        ));
    }
    let started = Instant::now();
    fs.create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let lock_file = DirLock::acquire_in(&*fs, dir, "the storage engine")?;
    let manifest = Manifest::open(&fs, dir, opts.num_levels)?;
    let orphans = manifest.remove_orphan_tables()?;
    let cache = BlockCache::new(opts.block_cache_bytes);
    let manifest_state = manifest.state().clone();

    let mut levels = Vec::with_capacity(opts.num_levels);
    for (level, files) in manifest_state.levels.iter().enumerate() {
        let mut tables = Vec::with_capacity(files.len());
        for meta in files {
            let path = dir.join(table_file_name(meta.id));
            let table = Table::open(&*fs, &path, meta.id, Arc::clone(&cache))?;
            let props = table.properties();
            if props.smallest != meta.smallest
                || props.largest != meta.largest
                || table.file_size() != meta.size
            {
                return Err(Error::corruption(
                    &path,
                    0,
                    "table does not match the manifest",
                ));
            }
            tables.push(table);
        }
        sort_level(level, &mut tables);
        levels.push(tables);
    }

    let wal_dir = dir.join(WAL_DIR);
    let wal_opts = WalOptions {
        sync: opts.sync,
        ..WalOptions::default()
    };
    let (wal, records) = Wal::open(&fs, &wal_dir, wal_opts, manifest_state.log_number)?;
    let memtable = MemTable::new();
    let mut last_version = manifest_state.last_flushed_version;
    let mut replayed = 0usize;
    let mut points = Vec::new();
    let mut ranges = Vec::new();
    for record in &records {
        // Only built on failure: formatting the path per record was a visible part of replay.
        let corrupt = |at: usize, reason: &str| {
            Error::corruption(
                wal_dir.join(segment_file_name(record.segment)),
                record.offset,
                format!("batch record byte {at}: {reason}"),
            )
        };
        let decoded = decode_wal_record(&record.payload).map_err(|(at, r)| corrupt(at, r))?;
        if decoded.version <= manifest_state.last_flushed_version {
            continue; // Already in the tables.
        }
        if decoded.version <= last_version {
            return Err(corrupt(0, "batch versions do not increase"));
        }
        let mut ops = 0u32;
        points.clear();
        ranges.clear();
        for op in decoded.ops {
            match op.map_err(|(at, r)| corrupt(at, r))? {
                BatchOp::DeleteRange(begin, end) => ranges.push((begin, end)),
                point => {
                    if let Some(entry) = point.point() {
                        points.push(entry);
                    }
                }
            }
            ops += 1;
        }
        if ops != decoded.count {
            return Err(corrupt(8, "op count does not match the ops"));
        }
        for (begin, end) in ranges.drain(..) {
            memtable.add_range_tombstone(begin, end, decoded.version);
        }
        for (key, kind, value) in points.drain(..) {
            memtable.insert(key, decoded.version, kind, value);
        }
        last_version = decoded.version;
        replayed += 1;
    }

    let next_file = manifest_state.next_file_number;
    let state = State {
        active: Arc::new(memtable),
        immutables: Vec::new(),
        levels,
        table_tombstones: Arc::new(RangeTombstoneSet::new(
            manifest_state.range_tombstones.iter().cloned().collect(),
        )),
    };
    tracing::info!(
        dir = %dir.display(),
        tables = state.levels.iter().map(Vec::len).sum::<usize>(),
        orphans_removed = orphans.len(),
        wal_records = replayed,
        recovered_version = last_version,
        memtable_bytes = state.active.approximate_bytes(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "engine opened"
    );
    Ok(Inner {
        fs,
        dir: dir.to_path_buf(),
        opts,
        wal,
        cache,
        state: RwLock::new(Arc::new(state)),
        write_lock: Mutex::new(0),
        last_applied: AtomicU64::new(last_version),
        durable: AtomicU64::new(last_version),
        gc_horizon: AtomicU64::new(manifest_state.gc_horizon),
        next_file: AtomicU64::new(next_file),
        versions: Mutex::new(VersionSet {
            manifest,
            compact_pointers: vec![Vec::new(); opts.num_levels],
        }),
        flush_lock: Mutex::new(()),
        compaction_lock: Mutex::new(()),
        signals: Mutex::new(BackgroundSignals::default()),
        signals_cv: Condvar::new(),
        stall_lock: Mutex::new(()),
        stall_cv: Condvar::new(),
        background_error: Mutex::new(None),
        closed: AtomicBool::new(false),
        lock_file: Mutex::new(Some(lock_file)),
        counters: Counters::default(),
    })
}

impl Inner {
    /// Final steps of `close`: sync the WAL and record the GC horizon.
    pub(crate) fn finish_close(&self) -> Result<()> {
        let last_seq = *self.write_lock.lock();
        if last_seq > 0 {
            self.wal.sync_to(last_seq)?;
        }
        let horizon = self.gc_horizon.load(Ordering::Acquire);
        let mut versions = self.versions.lock();
        if versions.manifest.state().gc_horizon < horizon {
            versions.manifest.log_and_apply(&VersionEdit {
                gc_horizon: Some(horizon),
                ..VersionEdit::default()
            })?;
        }
        Ok(())
    }
}
