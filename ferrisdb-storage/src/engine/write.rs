//! The write path: write stalls, `apply` (WAL record + memtable insert under the write
//! mutex, group-committed sync outside it) and the memtable switch.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ferrisdb_core::{Error, Result};

use super::Inner;
use super::batch::{BatchOp, WriteBatch, decode_wal_record};
use super::state::{Immutable, State};
use crate::memtable::{MemTable, NewEntry};

/// How long a slowed-down write sleeps.
const SLOWDOWN: Duration = Duration::from_millis(1);
/// Upper bound of one wait for a flush or compaction (the condvar is normally notified).
const STALL_WAIT: Duration = Duration::from_millis(100);

impl Inner {
    pub(crate) fn apply(&self, version: u64, batch: &WriteBatch) -> Result<()> {
        let seq = self.apply_unsynced(version, batch)?;
        self.wal.sync_to(seq)?;
        self.durable.fetch_max(version, Ordering::AcqRel);
        Ok(())
    }

    /// Makes every applied version durable: one WAL sync (per the sync policy) covering every
    /// record submitted so far. Returns the durable version.
    pub(crate) fn sync(&self) -> Result<u64> {
        self.check_open()?;
        let (seq, version) = {
            let last_seq = self.write_lock.lock();
            (*last_seq, self.last_applied.load(Ordering::Acquire))
        };
        if seq > 0 {
            self.wal.sync_to(seq)?;
        }
        self.durable.fetch_max(version, Ordering::AcqRel);
        Ok(self.durable.load(Ordering::Acquire))
    }

    /// Applies a batch (WAL submit + memtable insert) without waiting for the WAL sync;
    /// returns the record's WAL sequence number.
    pub(crate) fn apply_unsynced(&self, version: u64, batch: &WriteBatch) -> Result<u64> {
        self.check_open()?;
        self.check_background_error()?;
        if self.opts.background_threads {
            self.wait_for_room()?;
        }
        let seq = {
            let mut last_seq = self.write_lock.lock();
            self.check_open()?;
            let last = self.last_applied.load(Ordering::Acquire);
            if version <= last {
                return Err(Error::InvalidArgument(format!(
                    "version {version} is not after the last applied version {last}"
                )));
            }
            let state = self.current();
            let record = batch.wal_record(version)?;
            let seq = self.wal.submit(&record)?;
            let decoded =
                decode_wal_record(&record).map_err(|(_, reason)| Error::Internal(reason.into()))?;
            let mut entries = Vec::new();
            for op in decoded.ops {
                match op.map_err(|(_, reason)| Error::Internal(reason.into()))? {
                    BatchOp::DeleteRange(begin, end) => {
                        state.active.add_range_tombstone(begin, end, version);
                    }
                    point => {
                        if let Some((key, kind, value)) = point.point() {
                            entries.push(NewEntry {
                                key,
                                version,
                                kind,
                                value,
                            });
                        }
                    }
                }
            }
            state.active.insert_all(&entries);
            self.last_applied.store(version, Ordering::Release);
            *last_seq = seq;
            // BUGGIFY: a memtable turned immutable early (small flushes, a deeper level 0).
            if state.active.approximate_bytes() >= self.opts.memtable_bytes
                || (!state.active.is_empty() && ferrisdb_core::buggify!(0.02))
            {
                self.switch_memtable()?;
            }
            seq
        };
        Ok(seq)
    }

    /// Slows or stops the caller while level 0 is deep or too many memtables wait to flush.
    fn wait_for_room(&self) -> Result<()> {
        let state = self.current();
        let l0 = state.l0_files();
        if l0 >= self.opts.l0_slowdown_writes && l0 < self.opts.l0_stop_writes {
            self.counters
                .write_slowdowns
                .fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            std::thread::sleep(SLOWDOWN);
            self.add_stall_time(started);
        }
        let full = |s: &State| {
            s.immutables.len() >= self.opts.max_immutable_memtables.max(1)
                || s.l0_files() >= self.opts.l0_stop_writes
        };
        if !full(&state) {
            return Ok(());
        }
        self.counters.write_stops.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let mut guard = self.stall_lock.lock();
        let result = loop {
            if let Err(err) = self
                .check_open()
                .and_then(|()| self.check_background_error())
            {
                break Err(err);
            }
            if !full(&self.current()) {
                break Ok(());
            }
            self.request_background(true, true);
            self.stall_cv.wait_for(&mut guard, STALL_WAIT);
        };
        drop(guard);
        self.add_stall_time(started);
        result
    }

    fn add_stall_time(&self, started: Instant) {
        self.counters
            .write_stall_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    }

    /// Freezes the active memtable (called with the write mutex held): seals the WAL segment
    /// and moves the memtable to the immutable list, then asks for a flush.
    pub(crate) fn switch_memtable(&self) -> Result<()> {
        let wal_end = self.wal.rotate()?;
        {
            let mut current = self.state.write();
            let mut immutables = Vec::with_capacity(current.immutables.len() + 1);
            immutables.push(Arc::new(Immutable {
                mem: Arc::clone(&current.active),
                wal_end,
                last_version: self.last_applied.load(Ordering::Acquire),
            }));
            immutables.extend(current.immutables.iter().cloned());
            *current = Arc::new(State {
                active: Arc::new(MemTable::new()),
                immutables,
                levels: current.levels.clone(),
                table_tombstones: Arc::clone(&current.table_tombstones),
            });
        }
        self.request_background(true, false);
        Ok(())
    }
}
