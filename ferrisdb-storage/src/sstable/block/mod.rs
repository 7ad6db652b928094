//! Blocks: the unit of SSTable I/O, caching and checksumming.
//!
//! A block is a run of prefix-compressed entries followed by a restart array:
//!
//! ```text
//! entry*  | restart offset u32 LE * n | n u32 LE
//! entry = varint shared | varint unshared | varint value_len | kind u8 | version u64 LE
//!         | unshared user-key bytes | value bytes
//! ```
//!
//! `shared` is the length of the prefix the entry's user key shares with the previous entry's
//! user key; it is 0 at every restart point (one every `restart_interval` entries), so a reader
//! can binary-search the restart array and decode forward from any restart. [`Block::decode`]
//! validates the restart array once; entry decoding is bounds-checked on every step.

mod builder;
mod iterator;
mod restart_prefixes;

pub(crate) use builder::BlockBuilder;
pub(crate) use iterator::BlockIter;
pub(crate) use restart_prefixes::RestartPrefixes;

use bytes::Bytes;

use super::format::DecodeError;
use super::varint::{get_varint32, read_u32_le, read_u64_le};
use crate::key::ValueKind;

/// Fixed bytes of an entry after its three varints: kind (1) + version (8).
const ENTRY_FIXED_BYTES: usize = 9;

/// A decoded, validated block shared between the cache and iterators.
#[derive(Debug)]
pub struct Block {
    /// Block contents (trailer excluded); values are zero-copy slices of it.
    data: Bytes,
    /// Start of the restart array = end of the entries.
    restarts_offset: usize,
    /// Restart offsets, validated: first is 0, strictly increasing, all below `restarts_offset`.
    restarts: Box<[u32]>,
}

impl Block {
    /// Parses and validates the restart array of `data`.
    pub fn decode(data: Bytes) -> Result<Block, DecodeError> {
        let len = data.len();
        let count_offset = len
            .checked_sub(4)
            .ok_or(DecodeError::new(0, "block shorter than restart count"))?;
        let count = read_u32_le(&data, count_offset)
            .ok_or(DecodeError::new(count_offset, "missing restart count"))?
            as usize;
        if count > count_offset / 4 {
            return Err(DecodeError::new(
                count_offset,
                "restart count too large for block",
            ));
        }
        let restarts_offset = count_offset - count * 4;
        let mut restarts = Vec::with_capacity(count);
        let mut previous: Option<u32> = None;
        for i in 0..count {
            let at = restarts_offset + i * 4;
            let restart =
                read_u32_le(&data, at).ok_or(DecodeError::new(at, "missing restart offset"))?;
            let in_order = match previous {
                None => restart == 0,
                Some(prev) => restart > prev,
            };
            if !in_order || restart as usize >= restarts_offset {
                return Err(DecodeError::new(
                    at,
                    "restart offset out of order or out of range",
                ));
            }
            previous = Some(restart);
            restarts.push(restart);
        }
        if count == 0 && restarts_offset != 0 {
            return Err(DecodeError::new(
                count_offset,
                "entries without restart points",
            ));
        }
        Ok(Block {
            data,
            restarts_offset,
            restarts: restarts.into_boxed_slice(),
        })
    }

    /// Bytes this block holds in memory, charged against the block cache.
    pub fn charge(&self) -> usize {
        self.data.len() + self.restarts.len() * 4 + std::mem::size_of::<Block>()
    }

    /// The block contents.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// True if the block holds no entries.
    pub fn is_empty(&self) -> bool {
        self.restarts.is_empty()
    }

    /// Offset of restart point `index`.
    fn restart(&self, index: usize) -> Option<usize> {
        self.restarts.get(index).map(|&r| r as usize)
    }

    /// The full user key and version stored at restart point `index`.
    fn restart_key(&self, index: usize) -> Result<(&[u8], u64), DecodeError> {
        let pos = self
            .restart(index)
            .ok_or(DecodeError::new(0, "restart index out of range"))?;
        let entry = decode_entry(&self.data, pos, self.restarts_offset)?;
        if entry.shared != 0 {
            return Err(DecodeError::new(pos, "restart entry shares a key prefix"));
        }
        Ok((
            self.data
                .get(entry.key_start..entry.key_end)
                .unwrap_or_default(),
            entry.version,
        ))
    }
}

/// The decoded header of one entry, with absolute offsets into the block.
#[derive(Debug, Clone, Copy)]
struct EntryHeader {
    shared: usize,
    key_start: usize,
    key_end: usize,
    value_end: usize,
    kind: ValueKind,
    version: u64,
}

/// Decodes the entry at `pos`, checking it ends at or before `limit` (the restart array).
#[inline]
fn decode_entry(data: &[u8], pos: usize, limit: usize) -> Result<EntryHeader, DecodeError> {
    let entries = data
        .get(..limit)
        .ok_or(DecodeError::new(pos, "entry limit past block"))?;
    let (shared, p) =
        get_varint32(entries, pos).ok_or(DecodeError::new(pos, "bad shared-prefix varint"))?;
    let (unshared, p) =
        get_varint32(entries, p).ok_or(DecodeError::new(p, "bad key-length varint"))?;
    let (value_len, p) =
        get_varint32(entries, p).ok_or(DecodeError::new(p, "bad value-length varint"))?;
    let kind_tag = *entries
        .get(p)
        .ok_or(DecodeError::new(p, "entry truncated at kind"))?;
    let kind = ValueKind::from_u8(kind_tag).ok_or(DecodeError::new(p, "unknown value kind"))?;
    let version =
        read_u64_le(entries, p + 1).ok_or(DecodeError::new(p + 1, "entry truncated at version"))?;
    let key_start = p + ENTRY_FIXED_BYTES;
    let past_end = DecodeError::new(pos, "entry extends past the block's entries");
    let key_end = key_start.checked_add(unshared).ok_or(past_end)?;
    let value_end = key_end.checked_add(value_len).ok_or(past_end)?;
    if value_end > limit {
        return Err(past_end);
    }
    Ok(EntryHeader {
        shared,
        key_start,
        key_end,
        value_end,
        kind,
        version,
    })
}

#[cfg(test)]
mod tests;
