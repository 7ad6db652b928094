//! The append path: a shared queue of framed records and leader/follower group commit.
//!
//! `submit` frames a record into the queue's pending buffer under the queue lock and returns
//! its sequence number. `sync_to` makes a prefix durable: the first caller that finds no I/O
//! in progress becomes the leader, takes the whole pending buffer, releases the lock, writes
//! the buffer with one write call and (under [`SyncPolicy::Always`]) one fdatasync, then
//! re-takes the lock, publishes the new durable sequence and wakes everyone. Callers arriving
//! meanwhile wait on the condition variable; most find their record covered by the leader's
//! batch, so one fsync serves many records. The queue lock is never held during I/O.
//!
//! Invariants: at most one leader at a time (`leader_active`); the pending buffer only holds
//! records framed for `framing_segment`; the segment file (locked only by the leader) is the
//! file of the segment whose records the leader took. `rotate` acts as a leader: it takes the
//! pending batch, switches `framing_segment` to the new id under the lock, writes and syncs the
//! old segment, creates the new one and swaps the file. An I/O failure poisons the writer.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use ferrisdb_core::{Error, Result};
use parking_lot::{Condvar, Mutex, MutexGuard};

use super::files::SegmentFile;
use super::format::{append_record, record_checksum};
use super::{SyncPolicy, WalStats};

/// Pending buffers larger than this are not kept for reuse after a commit.
const MAX_RETAINED_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// Shared append state behind [`super::Wal`].
#[derive(Debug)]
pub struct Writer {
    fs: crate::vfs::SharedFs,
    dir: PathBuf,
    policy: SyncPolicy,
    max_record_bytes: u32,
    queue: Mutex<Queue>,
    /// Signalled whenever a leader finishes (durable sequence advanced or writer poisoned).
    leader_done: Condvar,
    /// File of the segment being written; locked only by the current leader.
    segment: Mutex<SegmentFile>,
    /// Copy of `Queue::framing_segment` readable without the lock: `submit` checksums with it
    /// before locking and re-checks under the lock (it only changes during a rotation).
    framing_segment_hint: AtomicU64,
    records_written: AtomicU64,
    write_calls: AtomicU64,
    bytes_written: AtomicU64,
    fsyncs: AtomicU64,
    #[cfg(test)]
    fail_next_io: std::sync::atomic::AtomicBool,
}

#[derive(Debug)]
struct Queue {
    /// Framed records not yet taken by a leader.
    pending: Vec<u8>,
    pending_records: u64,
    /// An empty buffer swapped in for `pending` when a leader takes it, to reuse capacity.
    spare: Vec<u8>,
    last_submitted: u64,
    durable: u64,
    /// Segment id new records are framed for (the checksum depends on it).
    framing_segment: u64,
    /// Segment whose file is open; lags `framing_segment` only during a rotation.
    open_segment: u64,
    leader_active: bool,
    poisoned: Option<Poison>,
}

/// What a leader took from the queue.
struct Batch {
    bytes: Vec<u8>,
    records: u64,
    through: u64,
}

/// The failure that poisoned the writer, kept so later calls can report it.
#[derive(Debug, Clone)]
struct Poison {
    kind: io::ErrorKind,
    message: String,
}

impl Poison {
    fn from_error(err: &Error) -> Self {
        let kind = match err {
            Error::Io { source, .. } => source.kind(),
            _ => io::ErrorKind::Other,
        };
        Poison {
            kind,
            message: err.to_string(),
        }
    }

    fn to_error(&self) -> Error {
        Error::io(
            "using a WAL poisoned by an earlier I/O failure",
            io::Error::new(self.kind, self.message.clone()),
        )
    }
}

impl Queue {
    fn check_poison(&self) -> Result<()> {
        match &self.poisoned {
            Some(poison) => Err(poison.to_error()),
            None => Ok(()),
        }
    }

    /// Takes everything pending and marks a leader active.
    fn take_batch(&mut self) -> Batch {
        self.leader_active = true;
        let bytes = std::mem::replace(&mut self.pending, std::mem::take(&mut self.spare));
        let records = std::mem::take(&mut self.pending_records);
        Batch {
            bytes,
            records,
            through: self.last_submitted,
        }
    }

    /// Ends a leader's turn: publishes durability or poisons, and recycles the buffer.
    fn finish_batch(&mut self, mut batch: Batch, outcome: &Result<()>) {
        self.leader_active = false;
        match outcome {
            Ok(()) => self.durable = self.durable.max(batch.through),
            Err(err) => {
                if self.poisoned.is_none() {
                    self.poisoned = Some(Poison::from_error(err));
                }
            }
        }
        if batch.bytes.capacity() <= MAX_RETAINED_BUFFER_BYTES {
            batch.bytes.clear();
            self.spare = batch.bytes;
        }
    }
}

impl Writer {
    /// Creates a writer appending to `segment`, with sequence numbers starting at 1.
    pub fn new(
        fs: crate::vfs::SharedFs,
        dir: PathBuf,
        policy: SyncPolicy,
        max_record_bytes: u32,
        segment: SegmentFile,
    ) -> Self {
        let id = segment.id();
        Writer {
            fs,
            dir,
            policy,
            max_record_bytes,
            queue: Mutex::new(Queue {
                pending: Vec::new(),
                pending_records: 0,
                spare: Vec::new(),
                last_submitted: 0,
                durable: 0,
                framing_segment: id,
                open_segment: id,
                leader_active: false,
                poisoned: None,
            }),
            leader_done: Condvar::new(),
            segment: Mutex::new(segment),
            framing_segment_hint: AtomicU64::new(id),
            records_written: AtomicU64::new(0),
            write_calls: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
            #[cfg(test)]
            fail_next_io: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Frames `payload` into the pending buffer; returns its sequence number.
    pub fn submit(&self, payload: &[u8]) -> Result<u64> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|&len| len <= self.max_record_bytes)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "WAL record of {} bytes exceeds the limit of {} bytes",
                    payload.len(),
                    self.max_record_bytes
                ))
            })?;
        // Checksum outside the lock; redo it in the rare case a rotation switched segments.
        let hinted_segment = self.framing_segment_hint.load(Ordering::Acquire);
        let mut checksum = record_checksum(hinted_segment, len, payload);
        let mut queue = self.queue.lock();
        queue.check_poison()?;
        if queue.framing_segment != hinted_segment {
            checksum = record_checksum(queue.framing_segment, len, payload);
        }
        append_record(&mut queue.pending, checksum, len, payload);
        queue.pending_records += 1;
        queue.last_submitted += 1;
        Ok(queue.last_submitted)
    }

    /// Blocks until record `seq` is durable, leading a group commit if no one else is.
    pub fn sync_to(&self, seq: u64) -> Result<()> {
        let mut queue = self.queue.lock();
        loop {
            queue.check_poison()?;
            if queue.durable >= seq {
                return Ok(());
            }
            if seq > queue.last_submitted {
                return Err(Error::InvalidArgument(format!(
                    "WAL sequence {seq} has not been submitted (last is {})",
                    queue.last_submitted
                )));
            }
            if queue.leader_active {
                self.leader_done.wait(&mut queue);
                continue;
            }
            let batch = queue.take_batch();
            let outcome = MutexGuard::unlocked(&mut queue, || self.commit(&batch, false));
            queue.finish_batch(batch, &outcome);
            self.leader_done.notify_all();
            // The batch ran through last_submitted >= seq, so success means seq is durable.
            return outcome;
        }
    }

    /// Syncs everything submitted into the current segment, seals it and opens segment
    /// `current + 1`; returns the new id.
    pub fn rotate(&self) -> Result<u64> {
        let mut queue = self.queue.lock();
        loop {
            queue.check_poison()?;
            if !queue.leader_active {
                break;
            }
            self.leader_done.wait(&mut queue);
        }
        let new_id = queue
            .framing_segment
            .checked_add(1)
            .ok_or_else(|| Error::Internal("WAL segment ids exhausted".to_owned()))?;
        let batch = queue.take_batch();
        // Records submitted from now on are framed for the new segment.
        queue.framing_segment = new_id;
        self.framing_segment_hint.store(new_id, Ordering::Release);
        let outcome = MutexGuard::unlocked(&mut queue, || {
            self.commit(&batch, true)?;
            let new_segment = SegmentFile::create(&*self.fs, &self.dir, new_id)?;
            *self.segment.lock() = new_segment;
            Ok(())
        });
        if outcome.is_ok() {
            queue.open_segment = new_id;
        }
        queue.finish_batch(batch, &outcome);
        self.leader_done.notify_all();
        outcome.map(|()| new_id)
    }

    /// Writes a batch to the open segment and syncs it if the policy (or `force_sync`) asks.
    fn commit(&self, batch: &Batch, force_sync: bool) -> Result<()> {
        let mut segment = self.segment.lock();
        #[cfg(test)]
        if self.fail_next_io.swap(false, Ordering::SeqCst) {
            return Err(Error::io(
                "writing WAL segment (injected)",
                io::Error::other("injected"),
            ));
        }
        if !batch.bytes.is_empty() {
            segment.write_all(&batch.bytes)?;
            self.write_calls.fetch_add(1, Ordering::Relaxed);
            self.bytes_written
                .fetch_add(batch.bytes.len() as u64, Ordering::Relaxed);
        }
        if force_sync || (self.policy == SyncPolicy::Always && !batch.bytes.is_empty()) {
            segment.sync_data()?;
            self.fsyncs.fetch_add(1, Ordering::Relaxed);
        }
        self.records_written
            .fetch_add(batch.records, Ordering::Relaxed);
        Ok(())
    }

    /// Id of the segment new records are framed for.
    pub fn current_segment(&self) -> u64 {
        self.framing_segment_hint.load(Ordering::Acquire)
    }

    /// Id of the segment whose file is open (never deleted by segment removal).
    pub fn open_segment(&self) -> u64 {
        self.queue.lock().open_segment
    }

    /// Sequence number of the last submitted record (0 if none).
    pub fn last_submitted(&self) -> u64 {
        self.queue.lock().last_submitted
    }

    /// True once an I/O failure has poisoned the writer.
    pub fn is_poisoned(&self) -> bool {
        self.queue.lock().poisoned.is_some()
    }

    /// Snapshot of the counters.
    pub fn stats(&self) -> WalStats {
        WalStats {
            records_written: self.records_written.load(Ordering::Relaxed),
            write_calls: self.write_calls.load(Ordering::Relaxed),
            bytes_written: self.bytes_written.load(Ordering::Relaxed),
            fsyncs: self.fsyncs.load(Ordering::Relaxed),
        }
    }

    /// Makes the next commit fail as if the write returned an error.
    #[cfg(test)]
    pub fn inject_io_failure(&self) {
        self.fail_next_io.store(true, Ordering::SeqCst);
    }
}
