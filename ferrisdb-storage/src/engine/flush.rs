//! Flushing: writes the oldest immutable memtable to a level-0 SSTable (dropping versions the
//! GC horizon has made unreadable), records it in the manifest together with the new log
//! number and that horizon, swaps it into the state, then deletes the WAL
//! segments it covered.
//!
//! Crash safety: the table is fsync'ed (by `TableBuilder::finish`) and the directory synced
//! before the manifest edit that adds it; WAL segments are deleted only after that edit is
//! durable. A crash in between leaves an orphan table (deleted at open) or extra WAL segments
//! (replayed, their versions skipped as already flushed).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use ferrisdb_core::Result;

use super::Inner;
use super::state::{Immutable, State, sort_level};
use crate::iterator::InternalIterator;
use crate::manifest::{FileMeta, VersionEdit, sync_dir, table_file_name};
use crate::sstable::{Table, TableBuilder};

impl Inner {
    /// Freezes the active memtable if it holds anything, then flushes every immutable one.
    pub(crate) fn flush_all(&self) -> Result<()> {
        {
            let _write = self.write_lock.lock();
            let state = self.current();
            if !state.active.is_empty() || state.active.has_range_tombstones() {
                self.switch_memtable()?;
            }
        }
        while self.flush_one()? {}
        Ok(())
    }

    /// Flushes the oldest immutable memtable; false if there was none.
    pub(crate) fn flush_one(&self) -> Result<bool> {
        let _flushing = self.flush_lock.lock();
        let Some(imm) = self.current().immutables.last().cloned() else {
            return Ok(false);
        };
        let started = Instant::now();
        // The table leaves out versions below this horizon, so the edit adding it must
        // persist (at least) the same horizon: no read below it may be accepted after a restart.
        let horizon = self.gc_horizon.load(Ordering::Acquire);
        let table = if imm.mem.is_empty() {
            None
        } else {
            Some(self.write_table(&imm, horizon)?)
        };
        let mut edit = VersionEdit {
            log_number: Some(imm.wal_end),
            last_flushed_version: Some(imm.last_version),
            gc_horizon: Some(horizon),
            next_file_number: Some(self.next_file.load(Ordering::SeqCst)),
            ..VersionEdit::default()
        };
        if let Some(table) = &table {
            edit.added.push((0, file_meta(table, 0)));
        }
        // The memtable's range tombstones now govern older tables: the manifest keeps them.
        let mut tombstones = imm.mem.range_tombstones();
        tombstones.sort();
        tombstones.dedup();
        edit.added_range_tombstones = tombstones;
        {
            let mut versions = self.versions.lock();
            versions.manifest.log_and_apply(&edit)?;
            let table_tombstones = versions.table_tombstones();
            let mut current = self.state.write();
            let mut levels = current.levels.clone();
            if let (Some(table), Some(l0)) = (&table, levels.first_mut()) {
                l0.push(Arc::clone(table));
                sort_level(0, l0);
            }
            *current = Arc::new(State {
                active: Arc::clone(&current.active),
                immutables: current
                    .immutables
                    .iter()
                    .filter(|i| !Arc::ptr_eq(i, &imm))
                    .cloned()
                    .collect(),
                levels,
                table_tombstones,
            });
        }
        self.wal.remove_segments_before(imm.wal_end)?;
        self.counters.flushes.fetch_add(1, Ordering::Relaxed);
        self.counters.flush_bytes.fetch_add(
            table.as_ref().map_or(0, |t| t.file_size()),
            Ordering::Relaxed,
        );
        tracing::info!(
            table = table.as_ref().map(|t| t.id()),
            entries = imm.mem.len(),
            memtable_bytes = imm.mem.approximate_bytes(),
            file_bytes = table.as_ref().map_or(0, |t| t.file_size()),
            log_number = imm.wal_end,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "flushed memtable"
        );
        self.notify_stalled();
        self.request_background(false, true);
        Ok(true)
    }

    /// Writes a memtable to a new, synced table file and opens it.
    /// Writes the memtable as a table, garbage-collecting as it goes: of each key's versions
    /// at or below `horizon` only the newest is written (reads below the horizon are refused,
    /// and every read at or above it sees that one or a newer one). It is written even when it
    /// is a tombstone, since older tables may still hold the key. Without this, a key
    /// overwritten many times within one memtable reaches level 0 with every version, and
    /// each range read over it steps through all of them until a compaction collects them.
    fn write_table(&self, imm: &Immutable, horizon: u64) -> Result<Arc<Table>> {
        let id = self.new_file_number();
        let path = self.dir.join(table_file_name(id));
        let mut builder =
            TableBuilder::create(&self.fs, &path, self.opts.table_for_level(0, false))?;
        let mut iter = imm.mem.iter();
        iter.seek_to_first()?;
        // The key whose newest version at or below the horizon has been written, if any.
        let mut collected: Vec<u8> = Vec::new();
        let mut collected_any = false;
        while iter.valid() {
            let version = iter.version();
            if version <= horizon {
                if collected_any && collected == iter.key() {
                    iter.next()?;
                    continue;
                }
                collected.clear();
                collected.extend_from_slice(iter.key());
                collected_any = true;
            }
            if let Err(err) = builder.add(iter.key(), version, iter.kind(), iter.value()) {
                let _ = builder.abandon();
                return Err(err);
            }
            iter.next()?;
        }
        builder.finish()?;
        sync_dir(&*self.fs, &self.dir)?;
        Table::open(&*self.fs, &path, id, Arc::clone(&self.cache))
    }
}

/// The manifest entry of an open table.
pub(crate) fn file_meta(table: &Table, clean_through: u64) -> FileMeta {
    let props = table.properties();
    FileMeta {
        id: table.id(),
        size: table.file_size(),
        smallest: props.smallest.clone(),
        largest: props.largest.clone(),
        clean_through,
    }
}
