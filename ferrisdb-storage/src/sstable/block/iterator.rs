//! A bidirectional cursor over one block.
//!
//! Forward steps decode the next entry in place, rebuilding the user key from the previous
//! key's shared prefix. Seeks binary-search the restart array (restart entries carry whole
//! keys) and scan forward. `prev` re-decodes from the restart point before the current entry,
//! as LevelDB does. Every failure is a [`DecodeError`] and leaves the cursor invalid.

use std::cmp::Ordering;
use std::sync::Arc;

use bytes::Bytes;

use super::{Block, decode_entry};
use crate::key::{ValueKind, compare_internal};
use crate::sstable::format::DecodeError;

/// Cursor over the entries of a shared [`Block`].
#[derive(Debug)]
pub(crate) struct BlockIter {
    block: Arc<Block>,
    /// Offset of the current entry.
    current: usize,
    /// Offset just past the current entry (where the next one starts).
    next: usize,
    /// Index of the restart region holding the current entry.
    restart_index: usize,
    key: Vec<u8>,
    version: u64,
    kind: ValueKind,
    value_start: usize,
    value_end: usize,
    valid: bool,
}

impl BlockIter {
    /// An unpositioned cursor over `block`.
    pub(crate) fn new(block: Arc<Block>) -> BlockIter {
        BlockIter {
            block,
            current: 0,
            next: 0,
            restart_index: 0,
            key: Vec::new(),
            version: 0,
            kind: ValueKind::Put,
            value_start: 0,
            value_end: 0,
            valid: false,
        }
    }

    /// True if positioned on an entry.
    /// Repositions onto another block (unpositioned), keeping the key buffer's allocation.
    pub(crate) fn reset(&mut self, block: Arc<Block>) {
        self.block = block;
        self.key.clear();
        self.current = 0;
        self.next = 0;
        self.restart_index = 0;
        self.value_start = 0;
        self.value_end = 0;
        self.valid = false;
    }

    #[inline]
    pub(crate) fn valid(&self) -> bool {
        self.valid
    }

    /// User key of the current entry.
    #[inline]
    pub(crate) fn key(&self) -> &[u8] {
        &self.key
    }

    /// Version of the current entry.
    #[inline]
    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    /// Kind of the current entry.
    #[inline]
    pub(crate) fn kind(&self) -> ValueKind {
        self.kind
    }

    /// Value of the current entry, borrowed from the block.
    #[inline]
    pub(crate) fn value(&self) -> &[u8] {
        self.block
            .data
            .get(self.value_start..self.value_end)
            .unwrap_or_default()
    }

    /// Value of the current entry as a zero-copy slice of the block.
    pub(crate) fn value_bytes(&self) -> Bytes {
        if self.value_start <= self.value_end && self.value_end <= self.block.data.len() {
            self.block.data.slice(self.value_start..self.value_end)
        } else {
            Bytes::new()
        }
    }

    /// Positions on the first entry.
    pub(crate) fn seek_to_first(&mut self) -> Result<(), DecodeError> {
        if self.block.is_empty() {
            self.valid = false;
            return Ok(());
        }
        self.seek_to_restart(0);
        self.parse_next()
    }

    /// Positions on the last entry.
    pub(crate) fn seek_to_last(&mut self) -> Result<(), DecodeError> {
        let Some(last) = self.block.restarts.len().checked_sub(1) else {
            self.valid = false;
            return Ok(());
        };
        self.seek_to_restart(last);
        loop {
            self.parse_next()?;
            if !self.valid || self.next >= self.block.restarts_offset {
                return Ok(());
            }
        }
    }

    /// Positions on the first entry >= (key, version) in internal order.
    pub(crate) fn seek(&mut self, key: &[u8], version: u64) -> Result<(), DecodeError> {
        let result = self.seek_inner(key, version);
        if result.is_err() {
            self.valid = false;
        }
        result
    }

    fn seek_inner(&mut self, key: &[u8], version: u64) -> Result<(), DecodeError> {
        let count = self.block.restarts.len();
        if count == 0 {
            self.valid = false;
            return Ok(());
        }
        // Find the last restart point whose key is < target (or restart 0).
        let (mut left, mut right) = (0usize, count - 1);
        while left < right {
            let mid = left + (right - left).div_ceil(2);
            let (mid_key, mid_version) = self.block.restart_key(mid)?;
            if compare_internal(mid_key, mid_version, key, version) == Ordering::Less {
                left = mid;
            } else {
                right = mid - 1;
            }
        }
        self.scan_from_restart(left, key, version)
    }

    /// Positions on the first entry >= (key, version), decoding forward from restart point
    /// `restart`, which must be at or before that entry (as
    /// [`RestartPrefixes::last_restart_below`](super::RestartPrefixes::last_restart_below)
    /// finds it); the same result as [`seek`](Self::seek) without its binary search.
    pub(crate) fn seek_from_restart(
        &mut self,
        restart: usize,
        key: &[u8],
        version: u64,
    ) -> Result<(), DecodeError> {
        let result = self.scan_from_restart(restart, key, version);
        if result.is_err() {
            self.valid = false;
        }
        result
    }

    fn scan_from_restart(
        &mut self,
        restart: usize,
        key: &[u8],
        version: u64,
    ) -> Result<(), DecodeError> {
        self.seek_to_restart(restart);
        loop {
            self.parse_next()?;
            if !self.valid
                || compare_internal(&self.key, self.version, key, version) != Ordering::Less
            {
                return Ok(());
            }
        }
    }

    /// Positions on the last entry <= (key, version) in internal order.
    pub(crate) fn seek_for_prev(&mut self, key: &[u8], version: u64) -> Result<(), DecodeError> {
        self.seek(key, version)?;
        if !self.valid {
            return self.seek_to_last();
        }
        if compare_internal(&self.key, self.version, key, version) == Ordering::Greater {
            self.prev()?;
        }
        Ok(())
    }

    /// Moves to the next entry; becomes invalid past the last one.
    pub(crate) fn next(&mut self) -> Result<(), DecodeError> {
        if !self.valid {
            return Ok(());
        }
        self.parse_next()
    }

    /// Moves to the previous entry; becomes invalid before the first one.
    pub(crate) fn prev(&mut self) -> Result<(), DecodeError> {
        if !self.valid {
            return Ok(());
        }
        let original = self.current;
        // Restart region strictly before the current entry's start.
        let mut region = self.restart_index;
        loop {
            match self.block.restart(region) {
                Some(start) if start < original => break,
                _ if region == 0 => {
                    self.valid = false;
                    return Ok(());
                }
                _ => region -= 1,
            }
        }
        self.seek_to_restart(region);
        loop {
            self.parse_next()?;
            if !self.valid || self.next > original {
                self.valid = false;
                return Err(DecodeError::new(original, "entry boundaries inconsistent"));
            }
            if self.next == original {
                return Ok(());
            }
        }
    }

    fn seek_to_restart(&mut self, index: usize) {
        self.key.clear();
        self.restart_index = index;
        self.next = self
            .block
            .restart(index)
            .unwrap_or(self.block.restarts_offset);
        self.valid = false;
    }

    /// Decodes the entry at `self.next` into the cursor.
    #[inline]
    fn parse_next(&mut self) -> Result<(), DecodeError> {
        let pos = self.next;
        let limit = self.block.restarts_offset;
        if pos >= limit {
            self.current = limit;
            self.valid = false;
            return Ok(());
        }
        let entry = match decode_entry(&self.block.data, pos, limit) {
            Ok(entry) => entry,
            Err(err) => {
                self.valid = false;
                return Err(err);
            }
        };
        while let Some(start) = self.block.restart(self.restart_index + 1) {
            if start > pos {
                break;
            }
            self.restart_index += 1;
        }
        let at_restart = self.block.restart(self.restart_index) == Some(pos);
        if (at_restart && entry.shared != 0) || entry.shared > self.key.len() {
            self.valid = false;
            return Err(DecodeError::new(
                pos,
                "shared key prefix inconsistent with previous key",
            ));
        }
        let unshared = self
            .block
            .data
            .get(entry.key_start..entry.key_end)
            .unwrap_or_default();
        self.key.truncate(entry.shared);
        self.key.extend_from_slice(unshared);
        self.version = entry.version;
        self.kind = entry.kind;
        self.value_start = entry.key_end;
        self.value_end = entry.value_end;
        self.current = pos;
        self.next = entry.value_end;
        self.valid = true;
        Ok(())
    }
}
