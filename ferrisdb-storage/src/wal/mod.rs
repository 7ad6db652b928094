//! The write-ahead log: an append-only sequence of segment files holding opaque records
//! (encoded write batches) that must survive a crash until their data reaches SSTables.
//!
//! [`Wal`] is shared as `Arc<Wal>` by many writer threads. [`Wal::submit`] frames a record into
//! a shared buffer and returns its sequence number; [`Wal::sync_to`] makes a prefix durable
//! with leader/follower group commit, so concurrent committers share one write and one
//! fdatasync (`writer.rs`). [`Wal::rotate`] seals the current segment and starts the next one;
//! [`Wal::remove_segments_before`] deletes sealed segments whose data is in SSTables.
//! [`Wal::open`] replays the live segments, repairing a torn tail in the newest one
//! (`recovery.rs`). Byte layouts are in `format.rs` and `docs/wal.md`.
//!
//! After any I/O or fsync failure the log is poisoned: every later submit, sync or rotation
//! fails, because the state of unsynced data in the page cache is then unknown.

mod files;
mod format;
mod recovery;
mod writer;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use ferrisdb_core::{Error, Result};

use crate::vfs::SharedFs;
use files::{SegmentFile, list_segments, remove_file_if_present, sync_dir};
pub use format::{FORMAT_VERSION, SEGMENT_MAGIC, segment_file_name};
pub(crate) use recovery::replay_image;
use writer::Writer;

/// When appended records are fdatasync'ed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// fdatasync before a record counts as durable: survives power loss.
    Always,
    /// Only write(2) to the OS: survives a process crash, not power loss.
    Never,
}

/// Options of a [`Wal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalOptions {
    /// When records are fdatasync'ed.
    pub sync: SyncPolicy,
    /// Largest payload accepted by `submit` and by recovery (checked before allocating).
    pub max_record_bytes: u32,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            sync: SyncPolicy::Always,
            max_record_bytes: 64 * 1024 * 1024,
        }
    }
}

/// A record read back by [`Wal::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredRecord {
    /// Id of the segment holding the record.
    pub segment: u64,
    /// Byte offset of the record's header in the segment file.
    pub offset: u64,
    /// The payload given to `submit`.
    pub payload: Vec<u8>,
}

/// Counters of the append path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Records written to the OS.
    pub records_written: u64,
    /// write calls on segment files (one per group commit).
    pub write_calls: u64,
    /// Bytes written to segment files by group commits (record framing included).
    pub bytes_written: u64,
    /// fdatasync calls on segment data (group commits and rotations).
    pub fsyncs: u64,
}

/// A write-ahead log directory open for appending. `Send + Sync`; share it as `Arc<Wal>`.
#[derive(Debug)]
pub struct Wal {
    fs: SharedFs,
    dir: PathBuf,
    writer: Writer,
}

impl Wal {
    /// Opens the log directory (creating it if needed), deletes segments with
    /// id < `first_live_segment`, replays the others in id order and returns every intact
    /// record, then starts a new segment (id = max existing id + 1, at least
    /// `first_live_segment`) for new writes. A torn tail in the newest segment is truncated;
    /// any other damage is [`Error::Corruption`] naming the file and byte offset.
    pub fn open(
        fs: &SharedFs,
        dir: &Path,
        opts: WalOptions,
        first_live_segment: u64,
    ) -> Result<(Wal, Vec<RecoveredRecord>)> {
        fs.create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating WAL dir {}", dir.display()), e))?;
        let log = recovery::recover(&**fs, dir, first_live_segment, opts.max_record_bytes)?;
        let segment = SegmentFile::create(&**fs, dir, log.next_segment)?;
        let writer = Writer::new(
            SharedFs::clone(fs),
            dir.to_path_buf(),
            opts.sync,
            opts.max_record_bytes,
            segment,
        );
        Ok((
            Wal {
                fs: SharedFs::clone(fs),
                dir: dir.to_path_buf(),
                writer,
            },
            log.records,
        ))
    }

    /// Enqueues one record without waiting for I/O; returns its sequence number (1, 2, ...
    /// after open). Fails for payloads over `max_record_bytes` or a poisoned log.
    pub fn submit(&self, payload: &[u8]) -> Result<u64> {
        self.writer.submit(payload)
    }

    /// Blocks until record `seq` and every record before it are written to the OS and, under
    /// [`SyncPolicy::Always`], fdatasync'ed. Concurrent callers share one write and one sync.
    pub fn sync_to(&self, seq: u64) -> Result<()> {
        self.writer.sync_to(seq)
    }

    /// Makes every record submitted so far durable (as [`sync_to`](Self::sync_to) the last
    /// one).
    pub fn sync_all(&self) -> Result<()> {
        let last = self.writer.last_submitted();
        if last == 0 {
            return Ok(());
        }
        self.sync_to(last)
    }

    /// [`submit`](Self::submit) then [`sync_to`](Self::sync_to); returns the sequence number.
    pub fn append(&self, payload: &[u8]) -> Result<u64> {
        let seq = self.submit(payload)?;
        self.sync_to(seq)?;
        Ok(seq)
    }

    /// Makes everything submitted so far durable in the current segment (fdatasync under
    /// either policy), seals it and starts a new segment; returns the new segment's id.
    pub fn rotate(&self) -> Result<u64> {
        self.writer.rotate()
    }

    /// Id of the segment currently receiving writes.
    pub fn current_segment(&self) -> u64 {
        self.writer.current_segment()
    }

    /// Deletes every segment file with id < `segment`, never the one being written, then
    /// fsyncs the directory.
    pub fn remove_segments_before(&self, segment: u64) -> Result<()> {
        let limit = segment.min(self.writer.open_segment());
        let mut removed = false;
        for old in list_segments(&*self.fs, &self.dir)?
            .into_iter()
            .take_while(|s| s.id < limit)
        {
            remove_file_if_present(&*self.fs, &old.path)?;
            removed = true;
        }
        if removed {
            sync_dir(&*self.fs, &self.dir)?;
        }
        Ok(())
    }

    /// Snapshot of the append counters.
    pub fn stats(&self) -> WalStats {
        self.writer.stats()
    }
}

impl Drop for Wal {
    /// Writes (and under `Always` syncs) records that were submitted but never synced.
    fn drop(&mut self) {
        if self.writer.is_poisoned() {
            return;
        }
        if let Err(err) = self.writer.sync_to(self.writer.last_submitted()) {
            tracing::warn!(dir = %self.dir.display(), error = %err, "WAL flush on close failed");
        }
    }
}
