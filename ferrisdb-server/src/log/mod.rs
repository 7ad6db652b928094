//! The commit log and the log server role that holds a replica of it.
//!
//! [`CommitLog`] (this file) is the durable log itself: one WAL record per commit batch (its
//! commit version and the accepted transactions' mutations, layout in [`record`]), kept in
//! memory too so that storage servers can pull it, and truncated once every storage server has
//! made it durable. A coordinator outside a cluster writes one of its own; the log server role
//! wraps one per process: [`fence`] (the generation it is locked at, persisted), [`server`]
//! (append, lock, reset, recovery reads, the servable version), [`feed`] and [`clip`] (what a
//! storage server pulls), [`service`] (gRPC `ferrisdb.v1.LogServer`) and [`process`] (the
//! `ferrisdb-log-server` binary's body).
//!
//! Writing is split so the commit pipeline can overlap work: [`CommitLog::submit`] (called by
//! the single batcher, in commit-version order) encodes the record and queues it in the WAL;
//! [`CommitLog::sync`] makes it durable (group commit); [`CommitLog::publish`] then adds the
//! batch to the in-memory tail that [`CommitLog::read_after`] serves. Publish must be called in
//! submit order, after the batch is durable: a batch is never readable before it is durable.
//!
//! Invariants: versions in the log strictly increase and each record names its predecessor
//! (`prev_version`), so recovery can tell exactly which versions the log holds; every version
//! in `(retained_from, last published]` is in memory; segments are deleted only when all their
//! batches are at or below the truncation point, and neither the segment holding the newest
//! submitted record nor the one holding the newest durable (published) record is ever deleted
//! (the latter carries the last committed version across restarts, even when the newest
//! submitted record is lost in a crash before it is durable). This module never
//! decides *what* may be truncated: the caller passes the durable version of the slowest
//! storage server.

pub mod clip;
pub mod feed;
pub mod fence;
pub mod process;
pub mod record;
pub mod server;
pub mod service;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ferrisdb_core::{Error, Mutation, Result, Version};
use ferrisdb_storage::dir_lock::DirLock;
use ferrisdb_storage::vfs::SharedFs;
use ferrisdb_storage::wal::{SyncPolicy, Wal, WalOptions, segment_file_name};
use parking_lot::Mutex;

/// Largest record the log writes or reads back (a batch is capped well below it).
pub const MAX_RECORD_BYTES: u32 = 64 * 1024 * 1024;

/// Settings of a [`CommitLog`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOptions {
    /// A segment that has reached this many bytes is sealed before the next record.
    pub segment_bytes: u64,
    /// fsync policy; the coordinator always uses [`SyncPolicy::Always`].
    pub sync: SyncPolicy,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_bytes: 64 * 1024 * 1024,
            sync: SyncPolicy::Always,
        }
    }
}

/// One commit batch held in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedBatch {
    /// The commit version.
    pub version: Version,
    /// The accepted mutations, in commit order.
    pub mutations: Vec<Mutation>,
    /// The WAL segment holding the record.
    pub segment: u64,
    /// Size of the encoded record (payload bytes).
    pub bytes: u64,
}

/// A batch queued in the WAL but not yet known to be durable.
#[derive(Debug)]
pub struct Submitted {
    /// WAL sequence number to pass to [`CommitLog::sync`].
    pub seq: u64,
    /// The batch, for [`CommitLog::publish`] once durable.
    pub batch: Arc<LoggedBatch>,
}

/// What recovery found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// The newest commit version in the log (0 for a new log).
    pub last_version: Version,
    /// Batches replayed.
    pub batches: usize,
    /// Versions at or below this are no longer in the log.
    pub retained_from: Version,
}

/// Counters of the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Records (batches) written since open.
    pub records: u64,
    /// Payload bytes written since open.
    pub bytes_written: u64,
    /// Payload bytes of the batches still held.
    pub retained_bytes: u64,
    /// Batches still held.
    pub retained_batches: u64,
    /// fsyncs of the underlying WAL.
    pub fsyncs: u64,
}

#[derive(Debug)]
struct Tail {
    /// Published batches, ascending versions.
    batches: VecDeque<Arc<LoggedBatch>>,
    /// Every version in (retained_from, newest published] is in `batches`.
    retained_from: Version,
    retained_bytes: u64,
    /// Segments of the batches submitted but not yet published, in submit order: they may
    /// still be in flight and must never be deleted.
    unpublished_segments: VecDeque<u64>,
    /// Segment of the newest published (durable) batch, kept even once that batch is
    /// truncated: it carries the newest durable version across a restart. (The newest
    /// *submitted* record may not be durable yet: a crash can lose it.)
    newest_segment: Option<u64>,
}

/// Writer-side state, touched only by the (single) submitter.
#[derive(Debug)]
struct WriterState {
    last_version: Version,
    /// Segment of the newest record submitted (never deleted).
    last_segment: u64,
    /// Bytes submitted into the current segment.
    segment_fill: u64,
}

/// The durable commit log. `Send + Sync`; share as `Arc<CommitLog>`.
#[derive(Debug)]
pub struct CommitLog {
    /// Held for the log's lifetime: one process per log directory.
    _lock: DirLock,
    dir: PathBuf,
    opts: LogOptions,
    wal: Wal,
    writer: Mutex<WriterState>,
    tail: Mutex<Tail>,
    records: AtomicU64,
    bytes_written: AtomicU64,
    /// Segments below this id have been removed.
    removed_before: AtomicU64,
}

impl CommitLog {
    /// Opens (or creates) the log in `dir`, replays every record and returns the log holding
    /// the replayed batches. Damaged records, records out of version order or a broken
    /// `prev_version` chain are [`Error::Corruption`] naming the segment and offset.
    pub fn open(dir: &Path, opts: LogOptions) -> Result<(CommitLog, Recovered)> {
        Self::open_at(dir, opts, Version::ZERO)
    }

    /// [`open`](Self::open) for a log that was [`reset`](Self::reset) to `empty_start`: when
    /// it holds no record, it starts after that version (a log with records ignores it; the
    /// records say where they start).
    pub fn open_at(
        dir: &Path,
        opts: LogOptions,
        empty_start: Version,
    ) -> Result<(CommitLog, Recovered)> {
        Self::open_on(&ferrisdb_storage::vfs::os(), dir, opts, empty_start)
    }

    /// [`open_at`](Self::open_at) on the file system `fs` (the simulator's disk, say).
    pub fn open_on(
        fs: &SharedFs,
        dir: &Path,
        opts: LogOptions,
        empty_start: Version,
    ) -> Result<(CommitLog, Recovered)> {
        let wal_opts = WalOptions {
            sync: opts.sync,
            max_record_bytes: MAX_RECORD_BYTES,
        };
        fs.create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating the log dir {}", dir.display()), e))?;
        // Before reading anything: a second coordinator on this directory would append its own
        // recovery record to the same log.
        let lock = DirLock::acquire_in(&**fs, dir, "the commit log")?;
        let (wal, records) = Wal::open(fs, dir, wal_opts, 0)?;
        let mut batches = VecDeque::with_capacity(records.len());
        let mut retained_from = Version::ZERO;
        let mut last = None::<Version>;
        let mut bytes = 0;
        for rec in records {
            let file = dir.join(segment_file_name(rec.segment));
            let decoded = record::decode(&rec.payload)
                .map_err(|reason| Error::corruption(&file, rec.offset, reason))?;
            match last {
                None => retained_from = decoded.prev_version,
                Some(prev) if prev != decoded.prev_version => {
                    return Err(Error::corruption(
                        &file,
                        rec.offset,
                        format!(
                            "record {} says it follows {} but the previous record is {prev}",
                            decoded.version, decoded.prev_version
                        ),
                    ));
                }
                Some(_) => {}
            }
            last = Some(decoded.version);
            let size = rec.payload.len() as u64;
            bytes += size;
            batches.push_back(Arc::new(LoggedBatch {
                version: decoded.version,
                mutations: decoded.mutations,
                segment: rec.segment,
                bytes: size,
            }));
        }
        if last.is_none() {
            retained_from = empty_start;
        }
        let last_version = last.unwrap_or(retained_from);
        let recovered = Recovered {
            last_version,
            batches: batches.len(),
            retained_from,
        };
        let first_segment = batches.front().map_or(wal.current_segment(), |b| b.segment);
        let newest_segment = batches.back().map(|b| b.segment);
        let last_segment = batches.back().map_or(wal.current_segment(), |b| b.segment);
        let log = CommitLog {
            _lock: lock,
            dir: dir.to_path_buf(),
            opts,
            writer: Mutex::new(WriterState {
                last_version,
                last_segment,
                segment_fill: 0,
            }),
            wal,
            tail: Mutex::new(Tail {
                batches,
                retained_from,
                retained_bytes: bytes,
                unpublished_segments: VecDeque::new(),
                newest_segment,
            }),
            records: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            removed_before: AtomicU64::new(first_segment),
        };
        Ok((log, recovered))
    }

    /// The directory holding the segments.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Encodes the batch and queues it in the WAL, sealing the current segment first if it is
    /// full. Blocks only for a rotation. Versions must strictly increase between calls.
    pub fn submit(&self, version: Version, mutations: Vec<Mutation>) -> Result<Submitted> {
        let mut w = self.writer.lock();
        if version <= w.last_version {
            return Err(Error::Internal(format!(
                "commit log got version {version} after {}",
                w.last_version
            )));
        }
        let payload = record::encode(version, w.last_version, &mutations)?;
        self.submit_locked(&mut w, version, mutations, &payload)
    }

    /// Queues an already-encoded record (a log server appending what a coordinator sent)
    /// after checking that it decodes and follows the newest record in the log. A record that
    /// does not follow is [`Error::InvalidArgument`] naming both versions.
    pub fn submit_record(&self, payload: &[u8]) -> Result<Submitted> {
        let rec = record::decode(payload)
            .map_err(|e| Error::InvalidArgument(format!("undecodable log record: {e}")))?;
        let mut w = self.writer.lock();
        if rec.prev_version != w.last_version {
            return Err(Error::InvalidArgument(format!(
                "log record {} follows {}, but this log ends at {}",
                rec.version, rec.prev_version, w.last_version
            )));
        }
        self.submit_locked(&mut w, rec.version, rec.mutations, payload)
    }

    fn submit_locked(
        &self,
        w: &mut WriterState,
        version: Version,
        mutations: Vec<Mutation>,
        payload: &[u8],
    ) -> Result<Submitted> {
        if w.segment_fill >= self.opts.segment_bytes {
            self.wal.rotate()?;
            w.segment_fill = 0;
        }
        let segment = self.wal.current_segment();
        let seq = self.wal.submit(payload)?;
        self.tail.lock().unpublished_segments.push_back(segment);
        let bytes = payload.len() as u64;
        w.last_version = version;
        w.last_segment = segment;
        w.segment_fill += bytes + 8;
        self.records.fetch_add(1, Ordering::Relaxed);
        self.bytes_written.fetch_add(bytes, Ordering::Relaxed);
        Ok(Submitted {
            seq,
            batch: Arc::new(LoggedBatch {
                version,
                mutations,
                segment,
                bytes,
            }),
        })
    }

    /// The newest version submitted (durable once [`sync_all`](Self::sync_all) returns).
    pub fn last_submitted(&self) -> Version {
        self.writer.lock().last_version
    }

    /// Makes every record submitted so far durable.
    pub fn sync_all(&self) -> Result<()> {
        self.wal.sync_all()
    }

    /// The newest published version (the truncation point when nothing is held).
    pub fn last_published(&self) -> Version {
        let tail = self.tail.lock();
        tail.batches
            .back()
            .map_or(tail.retained_from, |b| b.version)
    }

    /// Empties the log: every segment is deleted and the log starts after `start`, as if it
    /// held every version up to it and had truncated them. The caller records `start` where
    /// [`open_at`](Self::open_at) will find it *before* calling this (a crash in between
    /// leaves the old records, which then say where the log starts). Fails if a batch is
    /// submitted but not yet published.
    pub fn reset(&self, start: Version) -> Result<()> {
        let mut w = self.writer.lock();
        let mut tail = self.tail.lock();
        if !tail.unpublished_segments.is_empty() {
            return Err(Error::Internal(
                "the commit log cannot be reset while a batch is being written".into(),
            ));
        }
        let fresh = self.wal.rotate()?;
        self.wal.remove_segments_before(fresh)?;
        self.removed_before.store(fresh, Ordering::Release);
        tail.batches.clear();
        tail.retained_bytes = 0;
        tail.retained_from = start;
        tail.newest_segment = None;
        w.last_version = start;
        w.last_segment = fresh;
        w.segment_fill = 0;
        Ok(())
    }

    /// The published batches with `after < version <= through`, encoded as records chained
    /// from `after`'s successor, up to about `max_bytes` (always at least one when there is
    /// one): what a recovery copies to another log. `TransactionTooOld` when versions after
    /// `after` were truncated.
    pub fn read_records(
        &self,
        after: Version,
        through: Version,
        max_bytes: u64,
    ) -> Result<Vec<Vec<u8>>> {
        let (prev, batches) = {
            let tail = self.tail.lock();
            if after < tail.retained_from && after < through {
                return Err(Error::TransactionTooOld {
                    read_version: after.get(),
                    oldest: tail.retained_from.get(),
                });
            }
            let start = tail.batches.partition_point(|b| b.version <= after);
            let prev = match start {
                0 => tail.retained_from,
                i => tail.batches[i - 1].version,
            };
            let mut bytes = 0u64;
            let mut out = Vec::new();
            for b in tail.batches.range(start..) {
                if b.version > through || (bytes >= max_bytes && !out.is_empty()) {
                    break;
                }
                bytes += b.bytes;
                out.push(b.clone());
            }
            (prev, out)
        };
        let mut prev = prev;
        let mut records = Vec::with_capacity(batches.len());
        for b in batches {
            records.push(record::encode(b.version, prev, &b.mutations)?);
            prev = b.version;
        }
        Ok(records)
    }

    /// Blocks until the record `seq` (and every one before it) is durable.
    pub fn sync(&self, seq: u64) -> Result<()> {
        self.wal.sync_to(seq)
    }

    /// Makes a durable batch readable. Call in submit order.
    pub fn publish(&self, batch: Arc<LoggedBatch>) {
        let mut tail = self.tail.lock();
        tail.unpublished_segments.pop_front();
        tail.newest_segment = Some(batch.segment);
        let in_order = tail
            .batches
            .back()
            .is_none_or(|b| b.version < batch.version);
        debug_assert!(in_order, "batches published out of order");
        if in_order {
            tail.retained_bytes += batch.bytes;
            tail.batches.push_back(batch);
        }
    }

    /// The published batches with `after < version <= through`, at most `max_batches`.
    /// Fails with [`Error::TransactionTooOld`] when versions after `after` were truncated.
    pub fn read_after(
        &self,
        after: Version,
        through: Version,
        max_batches: usize,
    ) -> Result<Vec<Arc<LoggedBatch>>> {
        let tail = self.tail.lock();
        if after < tail.retained_from && after < through {
            return Err(Error::TransactionTooOld {
                read_version: after.get(),
                oldest: tail.retained_from.get(),
            });
        }
        let start = tail.batches.partition_point(|b| b.version <= after);
        Ok(tail
            .batches
            .range(start..)
            .take_while(|b| b.version <= through)
            .take(max_batches)
            .cloned()
            .collect())
    }

    /// The oldest version a reader may pass as `after` to [`read_after`](Self::read_after).
    pub fn retained_from(&self) -> Version {
        self.tail.lock().retained_from
    }

    /// Drops every batch at or below `version` from memory and deletes the segments that
    /// hold only such batches (never the one holding the newest record). Blocking I/O.
    pub fn truncate_through(&self, version: Version) -> Result<()> {
        let keep_from_segment = {
            let mut tail = self.tail.lock();
            if version <= tail.retained_from {
                return Ok(());
            }
            while tail.batches.front().is_some_and(|b| b.version <= version) {
                if let Some(b) = tail.batches.pop_front() {
                    tail.retained_bytes -= b.bytes;
                }
            }
            // Never claim to hold less than was published: the caller clamps, but be safe.
            let newest = tail.batches.back().map(|b| b.version);
            tail.retained_from = newest.map_or(version, |n| version.min(n));
            let published = tail.batches.front().map(|b| b.segment);
            let in_flight = tail.unpublished_segments.front().copied();
            published
                .into_iter()
                .chain(in_flight)
                .chain(tail.newest_segment)
                .min()
        };
        // A record submitted after the tail was read lands in a segment >= last_segment.
        let last_segment = self.writer.lock().last_segment;
        let limit = keep_from_segment.map_or(last_segment, |s| s.min(last_segment));
        if self.removed_before.fetch_max(limit, Ordering::AcqRel) < limit {
            self.wal.remove_segments_before(limit)?;
            tracing::debug!(before = limit, through = %version, "commit log segments removed");
        }
        Ok(())
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> LogStats {
        let (retained_bytes, retained_batches) = {
            let tail = self.tail.lock();
            (tail.retained_bytes, tail.batches.len() as u64)
        };
        LogStats {
            records: self.records.load(Ordering::Relaxed),
            bytes_written: self.bytes_written.load(Ordering::Relaxed),
            retained_bytes,
            retained_batches,
            fsyncs: self.wal.stats().fsyncs,
        }
    }

    /// Id of the oldest segment that may still exist.
    pub fn first_segment(&self) -> u64 {
        self.removed_before.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests;
