//! [`ScanIterator`]: the MVCC user-level view of a merge of every source of one state.
//!
//! Forward: for each user key (ascending) the first entry with version ≤ read version is the
//! visible one; a tombstone hides the key; the other versions are skipped. Reverse: the merge
//! walks each key's versions oldest first, so the last entry ≤ read version seen before the
//! key changes is the visible one (kept in reusable buffers). A visible value that a range
//! tombstone at a newer version (≤ read version) covers is deleted: the scan takes a view of
//! every source's range tombstones (their indexed runs) when it starts. Both stop at the range bounds
//! and the limit. Results are produced in small batches copied into one shared buffer
//! ([`OutputBatch`]): the first batch holds [`FIRST_BATCH_ITEMS`] results (fewer under a
//! limit) and each later one twice as many, up to [`MAX_BATCH_ITEMS`] or
//! [`MAX_BATCH_BYTES`], so a caller that stops early makes the scan read ahead only a little.
//! An error met while filling a batch is returned after the results before it.

use std::sync::Arc;

use bytes::Bytes;
use ferrisdb_core::{Error, Result};

use super::scan_output::{MAX_BATCH_BYTES, OutputBatch};
use super::state::State;
use crate::iterator::InternalIterator;
use crate::iterators::{MergeIterator, SourceIterator};
use crate::key::ValueKind;
use crate::range_tombstone::TombstoneView;

/// Results in the first batch of a scan.
const FIRST_BATCH_ITEMS: usize = 16;
/// Most results in one batch.
const MAX_BATCH_ITEMS: usize = 1024;

/// Streams the `(key, value)` pairs of a range at a version from a consistent snapshot.
pub struct ScanIterator {
    iter: MergeIterator<SourceIterator>,
    /// Every range tombstone of the state scanned (`None`: there are none).
    tombstones: Option<TombstoneView>,
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
    /// Results produced but not yet returned.
    out: OutputBatch,
    /// Size of the next batch.
    batch_items: usize,
    /// An error met while filling the current batch, returned after its results.
    error: Option<Error>,
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
        let tombstones = state.range_tombstone_view();
        let sources = match &tombstones {
            Some(set) => state.iterators_visible_at(read_version, set),
            None => state.iterators(),
        };
        ScanIterator {
            iter: MergeIterator::new(sources),
            tombstones,
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
            out: OutputBatch::new(),
            batch_items: FIRST_BATCH_ITEMS,
            error: None,
        }
    }

    fn past_end(&self, key: &[u8]) -> bool {
        !self.end.is_empty() && key >= self.end.as_ref()
    }

    /// Whether a range tombstone newer than `version` (and ≤ the read version) covers `key`.
    fn range_deleted(&self, key: &[u8], version: u64) -> bool {
        self.tombstones.as_ref().is_some_and(|set| {
            set.newest_covering(key, self.read_version)
                .is_some_and(|tombstone| tombstone > version)
        })
    }

    /// Stages the next visible result; false at the end of the range.
    fn step_forward(&mut self) -> Result<bool> {
        if !self.started {
            self.started = true;
            self.iter.seek(&self.begin, u64::MAX)?;
        }
        loop {
            if !self.iter.valid() || self.past_end(self.iter.key()) {
                return Ok(false);
            }
            if self.iter.version() > self.read_version {
                self.iter.next()?;
                continue;
            }
            if self.iter.kind() == ValueKind::Put
                && !self.range_deleted(self.iter.key(), self.iter.version())
            {
                self.out.push(self.iter.key(), self.iter.value());
                skip_versions_of(&mut self.iter, self.out.last_key())?;
                return Ok(true);
            }
            self.key_buf.clear();
            self.key_buf.extend_from_slice(self.iter.key());
            skip_versions_of(&mut self.iter, &self.key_buf)?;
        }
    }

    /// Stages the previous visible result; false at the start of the range.
    fn step_reverse(&mut self) -> Result<bool> {
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
                return Ok(false);
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
                    visible = Some((kind, self.iter.version()));
                }
                self.iter.prev()?;
            }
            if let Some((ValueKind::Put, version)) = visible
                && !self.range_deleted(&self.key_buf, version)
            {
                self.out.push(&self.key_buf, &self.value_buf);
                return Ok(true);
            }
        }
    }
}

impl ScanIterator {
    /// Stages the next batch of results; on error or at the end of the range marks the scan
    /// done (keeping the error for after the staged results).
    fn fill(&mut self) {
        let mut want = self.batch_items;
        if self.limit > 0 {
            want = want.min(self.limit.saturating_sub(self.returned));
        }
        self.out.begin(want);
        while self.out.staged() < want && self.out.staged_bytes() < MAX_BATCH_BYTES {
            let step = if self.reverse {
                self.step_reverse()
            } else {
                self.step_forward()
            };
            match step {
                Ok(true) => {}
                Ok(false) => {
                    self.done = true;
                    break;
                }
                Err(err) => {
                    self.error = Some(err);
                    self.done = true;
                    break;
                }
            }
        }
        self.out.freeze();
        self.batch_items = (self.batch_items * 2).min(MAX_BATCH_ITEMS);
    }
}

/// Moves `iter` past its current entry and every older version of `key` after it.
fn skip_versions_of(iter: &mut MergeIterator<SourceIterator>, key: &[u8]) -> Result<()> {
    iter.next_user_key(key)
}

impl Iterator for ScanIterator {
    type Item = Result<(Bytes, Bytes)>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(pair) = self.out.pop() {
            self.returned += 1;
            return Some(Ok(pair));
        }
        if !self.done && (self.limit == 0 || self.returned < self.limit) {
            self.fill();
            if let Some(pair) = self.out.pop() {
                self.returned += 1;
                return Some(Ok(pair));
            }
        }
        self.done = true;
        self.error.take().map(Err)
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
