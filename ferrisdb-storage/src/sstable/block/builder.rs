//! Builds one block in memory (see the parent module for the byte layout).

use crate::key::ValueKind;
use crate::sstable::varint::put_varint64;

/// Accumulates entries (in increasing internal order) into one block's bytes.
#[derive(Debug)]
pub(crate) struct BlockBuilder {
    buf: Vec<u8>,
    restarts: Vec<u32>,
    restart_interval: usize,
    /// Entries since the last restart point.
    since_restart: usize,
    last_key: Vec<u8>,
    finished: bool,
}

impl BlockBuilder {
    /// An empty builder placing a restart point every `restart_interval` (>= 1) entries.
    pub(crate) fn new(restart_interval: usize) -> BlockBuilder {
        BlockBuilder {
            buf: Vec::new(),
            restarts: Vec::new(),
            restart_interval: restart_interval.max(1),
            since_restart: 0,
            last_key: Vec::new(),
            finished: false,
        }
    }

    /// Appends an entry. The caller guarantees ordering and that key and value lengths fit in
    /// `u32` and keep the block below 4 GiB.
    pub(crate) fn add(&mut self, key: &[u8], version: u64, kind: ValueKind, value: &[u8]) {
        debug_assert!(!self.finished, "add after finish without reset");
        let shared = if self.restarts.is_empty() || self.since_restart >= self.restart_interval {
            self.restarts.push(self.buf.len() as u32);
            self.since_restart = 0;
            0
        } else {
            common_prefix_len(&self.last_key, key)
        };
        let unshared = &key[shared..];
        put_varint64(&mut self.buf, shared as u64);
        put_varint64(&mut self.buf, unshared.len() as u64);
        put_varint64(&mut self.buf, value.len() as u64);
        self.buf.push(kind as u8);
        self.buf.extend_from_slice(&version.to_le_bytes());
        self.buf.extend_from_slice(unshared);
        self.buf.extend_from_slice(value);
        self.last_key.truncate(shared);
        self.last_key.extend_from_slice(unshared);
        self.since_restart += 1;
    }

    /// Size of the block if finished now.
    pub(crate) fn estimated_size(&self) -> usize {
        self.buf.len() + self.restarts.len() * 4 + 4
    }

    /// True if no entry has been added since the last reset.
    pub(crate) fn is_empty(&self) -> bool {
        self.restarts.is_empty()
    }

    /// Appends the restart array and returns the finished block contents.
    pub(crate) fn finish(&mut self) -> &[u8] {
        if !self.finished {
            for &restart in &self.restarts {
                self.buf.extend_from_slice(&restart.to_le_bytes());
            }
            self.buf
                .extend_from_slice(&(self.restarts.len() as u32).to_le_bytes());
            self.finished = true;
        }
        &self.buf
    }

    /// Clears the builder for the next block, keeping its allocations.
    pub(crate) fn reset(&mut self) {
        self.buf.clear();
        self.restarts.clear();
        self.since_restart = 0;
        self.last_key.clear();
        self.finished = false;
    }
}

/// Length of the longest common prefix of `a` and `b`.
fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}
