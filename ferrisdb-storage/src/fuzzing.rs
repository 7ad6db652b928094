//! Fuzzing entry points over the on-disk decoders: each takes arbitrary bytes, runs them
//! through the same decoding code the engine uses on files, and must never panic, allocate
//! unboundedly or loop forever, whatever the bytes. Used by the `fuzz/` targets (cargo fuzz)
//! and by the corpus smoke test in the normal test suite; not part of the engine's API.
//!
//! - [`wal_segment`]: a whole WAL segment file, then each record as an engine write batch;
//! - [`sstable_block`]: a block's contents, and the bytes as a whole table image (footer,
//!   index, bloom filter, properties, data blocks);
//! - [`manifest`]: a whole manifest file, its edits applied to a fresh manifest state, and the
//!   bytes as one edit.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use crate::engine::batch::{BatchOp, decode_wal_record};
use crate::key::ValueKind;
use crate::manifest::{ManifestState, VersionEdit, decode_edits};
use crate::sstable::block::{Block, BlockBuilder, BlockIter};
use crate::sstable::bloom::BloomFilter;
use crate::sstable::compression::block_contents;
use crate::sstable::format::{
    BLOCK_TRAILER_SIZE, BlockHandle, FOOTER_SIZE, Footer, TableProperties, block_trailer,
    verify_block_trailer,
};
use crate::wal::replay_image;

/// Entries one block iteration may visit (a block cannot hold more entries than bytes).
const MAX_STEPS: usize = 1 << 20;
/// Data blocks of one table image decoded at most.
const MAX_DATA_BLOCKS: usize = 256;
/// Levels of the manifest state edits are applied to.
const LEVELS: usize = 7;
/// Largest WAL record accepted while fuzzing (the engine default is 64 MiB; lengths are
/// checked against the bytes present before allocating either way).
const MAX_RECORD_BYTES: u32 = 64 << 20;

/// Decodes `data` as a whole WAL segment file (its own header names the segment id), then
/// each intact record as an engine write batch.
pub fn wal_segment(data: &[u8]) {
    let id = data
        .get(16..24)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(1, u64::from_le_bytes);
    let Ok(replayed) = replay_image(data, id, MAX_RECORD_BYTES) else {
        return;
    };
    for record in &replayed.records {
        wal_batch(&record.payload);
    }
    std::hint::black_box(replayed.damage);
}

/// Decodes `data` as one engine write-batch WAL record and walks its operations.
pub fn wal_batch(data: &[u8]) {
    let Ok(record) = decode_wal_record(data) else {
        return;
    };
    let mut ops = 0usize;
    for op in record.ops {
        let Ok(op) = op else { break };
        if let BatchOp::DeleteRange(begin, end) = op {
            std::hint::black_box((begin, end));
        } else {
            std::hint::black_box(op.point());
        }
        ops += 1;
    }
    std::hint::black_box((record.version, record.count, ops));
}

/// Decodes `data` as block contents and walks it every way the engine does; then, if it is
/// long enough, as a whole table image.
pub fn sstable_block(data: &[u8]) {
    walk_block(Bytes::copy_from_slice(data));
    table_image(data);
}

/// Decodes `data` as a whole manifest file, applies its edits to an empty state, and decodes
/// the bytes as a single edit.
pub fn manifest(data: &[u8]) {
    if let Ok(edits) = decode_edits(data, Path::new("MANIFEST-fuzz")) {
        let mut state = ManifestState::new(LEVELS);
        for (_, edit) in &edits {
            if state.apply(edit).is_err() {
                break;
            }
        }
        std::hint::black_box(state.snapshot_edit());
    }
    if let Ok(edit) = VersionEdit::decode(data) {
        let mut encoded = Vec::new();
        edit.encode(&mut encoded);
        std::hint::black_box(VersionEdit::decode(&encoded).ok());
    }
}

/// Block contents holding `entries` (user key, version, put or tombstone, value), which must
/// be sorted by key ascending then version descending; for building seed inputs.
pub fn encode_block(entries: &[(&[u8], u64, bool, &[u8])], restart_interval: usize) -> Vec<u8> {
    let mut builder = BlockBuilder::new(restart_interval.max(1));
    for &(key, version, put, value) in entries {
        let kind = if put {
            ValueKind::Put
        } else {
            ValueKind::Tombstone
        };
        builder.add(key, version, kind, value);
    }
    builder.finish().to_vec()
}

/// Decodes a block and iterates it forwards, backwards and by seeks; returns the block.
fn walk_block(data: Bytes) -> Option<Arc<Block>> {
    let block = Arc::new(Block::decode(data).ok()?);
    let mut iter = BlockIter::new(Arc::clone(&block));
    let mut seen = Vec::new();
    if iter.seek_to_first().is_ok() {
        let mut steps = 0;
        while iter.valid() && steps < MAX_STEPS {
            if seen.len() < 16 {
                seen.push((iter.key().to_vec(), iter.version()));
            }
            std::hint::black_box((iter.kind(), iter.value()));
            if iter.next().is_err() {
                break;
            }
            steps += 1;
        }
    }
    if iter.seek_to_last().is_ok() {
        let mut steps = 0;
        while iter.valid() && steps < MAX_STEPS {
            std::hint::black_box(iter.value_bytes());
            if iter.prev().is_err() {
                break;
            }
            steps += 1;
        }
    }
    seen.push((Vec::new(), u64::MAX));
    seen.push((vec![0xff; 4], 0));
    for (key, version) in &seen {
        let _ = iter.seek(key, *version);
        let _ = iter.seek_for_prev(key, *version);
    }
    Some(block)
}

/// The contents of the block at `handle` in `file`, trailer verified, if in bounds.
fn block_at(file: &[u8], handle: BlockHandle) -> Option<Bytes> {
    let start = usize::try_from(handle.offset).ok()?;
    let size = usize::try_from(handle.size).ok()?;
    let end = start.checked_add(size)?;
    let contents = file.get(start..end)?;
    let trailer = file.get(end..end.checked_add(BLOCK_TRAILER_SIZE)?)?;
    let compression = verify_block_trailer(contents, trailer).ok()?;
    block_contents(Bytes::copy_from_slice(contents), compression).ok()
}

/// Decodes `file` as a table: footer, bloom filter, properties, index, then the data blocks
/// the index points at.
fn table_image(file: &[u8]) {
    let Some(footer_at) = file.len().checked_sub(FOOTER_SIZE) else {
        return;
    };
    let Ok(footer) = Footer::decode(&file[footer_at..]) else {
        return;
    };
    if let Some(bloom) = block_at(file, footer.bloom).and_then(|b| BloomFilter::decode(b).ok()) {
        std::hint::black_box(bloom.may_contain(b"key"));
    }
    if let Some(props) = block_at(file, footer.properties) {
        std::hint::black_box(TableProperties::decode(&props).ok());
    }
    let Some(index) = block_at(file, footer.index).and_then(walk_block) else {
        return;
    };
    let mut iter = BlockIter::new(index);
    if iter.seek_to_first().is_err() {
        return;
    }
    let mut blocks = 0;
    while iter.valid() && blocks < MAX_DATA_BLOCKS {
        if let Ok(handle) = BlockHandle::decode_varint(iter.value())
            && let Some(data) = block_at(file, handle)
        {
            walk_block(data);
        }
        if iter.next().is_err() {
            break;
        }
        blocks += 1;
    }
}

/// A block's contents followed by its trailer, as stored in a table file.
pub fn with_trailer(contents: &[u8]) -> Vec<u8> {
    let mut out = contents.to_vec();
    out.extend_from_slice(&block_trailer(contents));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_points_accept_empty_and_tiny_inputs() {
        for data in [&[][..], &[0], &[0xff; 3], &[0; 64], &[0xff; 100]] {
            wal_segment(data);
            wal_batch(data);
            sstable_block(data);
            manifest(data);
        }
    }

    #[test]
    fn encoded_blocks_decode_and_walk() {
        let entries: [(&[u8], u64, bool, &[u8]); 3] = [
            (b"a", 9, true, b"1"),
            (b"a", 3, false, b""),
            (b"b", 5, true, b"2"),
        ];
        let block = walk_block(Bytes::from(encode_block(&entries, 2))).expect("decodes");
        assert!(!block.is_empty());
        assert_eq!(with_trailer(b"x").len(), 1 + BLOCK_TRAILER_SIZE);
    }
}
