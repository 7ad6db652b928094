//! [`ScanIterator`]: the MVCC user-level view of a merge of every source of one state.
//!
//! Forward: for each user key (ascending) the first entry with version ≤ read version is the
//! visible one; a tombstone hides the key; the other versions are skipped. Reverse: the merge
//! walks each key's versions oldest first, so the last entry ≤ read version seen before the
//! key changes is the visible one (kept in reusable buffers). Both stop at the range bounds
//! and the limit, and pull entries from the sources only as items are asked for.

use std::sync::Arc;

use bytes::Bytes;
use ferrisdb_core::Result;

use super::arena::OutputArena;
use super::state::State;
use crate::iterator::InternalIterator;
use crate::iterators::{MergeIterator, SourceIterator};
use crate::key::ValueKind;

/// Streams the `(key, value)` pairs of a range at a version from a consistent snapshot.
pub struct ScanIterator {
    iter: MergeIterator<SourceIterator>,
    begin: Bytes,
    end: Bytes,
    read_version: u64,
    reverse: bool,
    limit: usize,
    returned: usize,
    started: bool,
    done: bool,
    key_buf: Vec<u8>,
    value_buf: Vec<u8>,
    /// Backs the returned keys and values.
    out: OutputArena,
}

impl ScanIterator {
    pub(crate) fn new(
        state: &Arc<State>,
        begin: Bytes,
        end: Bytes,
        read_version: u64,
        reverse: bool,
        limit: usize,
    ) -> ScanIterator {
        let empty = !end.is_empty() && begin >= end;
        ScanIterator {
            iter: MergeIterator::new(state.iterators()),
            begin,
            end,
            read_version,
            reverse,
            limit,
            returned: 0,
            started: false,
            done: empty,
            key_buf: Vec::new(),
            value_buf: Vec::new(),
            out: OutputArena::new(),
        }
    }

    fn past_end(&self, key: &[u8]) -> bool {
        !self.end.is_empty() && key >= self.end.as_ref()
    }

    fn step_forward(&mut self) -> Result<Option<(Bytes, Bytes)>> {
        if !self.started {
            self.started = true;
            self.iter.seek(&self.begin, u64::MAX)?;
        }
        loop {
            if !self.iter.valid() || self.past_end(self.iter.key()) {
                return Ok(None);
            }
            if self.iter.version() > self.read_version {
                self.iter.next()?;
                continue;
            }
            if self.iter.kind() == ValueKind::Put {
                let key = self.out.copy(self.iter.key());
                let value = self.out.copy(self.iter.value());
                self.skip_versions_of(&key)?;
                return Ok(Some((key, value)));
            }
            let mut key = std::mem::take(&mut self.key_buf);
            key.clear();
            key.extend_from_slice(self.iter.key());
            let skipped = self.skip_versions_of(&key);
            self.key_buf = key;
            skipped?;
        }
    }

    /// Moves past the current entry and every older version of `key` after it.
    fn skip_versions_of(&mut self, key: &[u8]) -> Result<()> {
        self.iter.next()?;
        while self.iter.valid() && self.iter.key() == key {
            self.iter.next()?;
        }
        Ok(())
    }

    fn step_reverse(&mut self) -> Result<Option<(Bytes, Bytes)>> {
        if !self.started {
            self.started = true;
            if self.end.is_empty() {
                self.iter.seek_to_last()?;
            } else {
                self.iter.seek_for_prev(&self.end, u64::MAX)?;
                while self.iter.valid() && self.past_end(self.iter.key()) {
                    self.iter.prev()?;
                }
            }
        }
        loop {
            if !self.iter.valid() || self.iter.key() < self.begin.as_ref() {
                return Ok(None);
            }
            self.key_buf.clear();
            self.key_buf.extend_from_slice(self.iter.key());
            let mut visible = None;
            while self.iter.valid() && self.iter.key() == self.key_buf.as_slice() {
                if self.iter.version() <= self.read_version {
                    let kind = self.iter.kind();
                    if kind == ValueKind::Put {
                        self.value_buf.clear();
                        self.value_buf.extend_from_slice(self.iter.value());
                    }
                    visible = Some(kind);
                }
                self.iter.prev()?;
            }
            if visible == Some(ValueKind::Put) {
                return Ok(Some((
                    self.out.copy(&self.key_buf),
                    self.out.copy(&self.value_buf),
                )));
            }
        }
    }
}

impl Iterator for ScanIterator {
    type Item = Result<(Bytes, Bytes)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || (self.limit > 0 && self.returned >= self.limit) {
            return None;
        }
        let step = if self.reverse {
            self.step_reverse()
        } else {
            self.step_forward()
        };
        match step {
            Ok(Some(pair)) => {
                self.returned += 1;
                Some(Ok(pair))
            }
            Ok(None) => {
                self.done = true;
                None
            }
            Err(err) => {
                self.done = true;
                Some(Err(err))
            }
        }
    }
}

impl std::fmt::Debug for ScanIterator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanIterator")
            .field("begin", &self.begin)
            .field("end", &self.end)
            .field("read_version", &self.read_version)
            .field("reverse", &self.reverse)
            .field("returned", &self.returned)
            .finish()
    }
}
