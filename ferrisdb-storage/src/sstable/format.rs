//! On-disk framing of an SSTable: block handles, block trailers, the footer and the
//! properties block.
//!
//! ```text
//! block handle (in index entries)  varint offset | varint size          (size excludes trailer)
//! block trailer (5 bytes)          compression u8 | crc32 u32 LE over stored bytes + type
//!                                  0 = none: the stored bytes are the contents
//!                                  1 = LZ4: uncompressed length u32 LE | one LZ4 block
//! footer (64 bytes)                index  offset u64 | size u64
//!                                  bloom  offset u64 | size u64
//!                                  props  offset u64 | size u64
//!                                  format version u32 (= 1) | crc32 u32 over bytes 0..52
//!                                  magic u64
//! ```
//! All fixed-width integers are little-endian. Decoders return [`DecodeError`] (an offset
//! relative to the decoded buffer plus a reason); callers turn it into
//! `Error::Corruption` naming the file and absolute offset.

use ferrisdb_core::Error;
use std::path::Path;

use super::compression::{COMPRESSION_NONE, is_known_compression};
use super::varint::{get_varint64, put_varint64, read_u32_le, read_u64_le};
use crate::key::{InternalKey, compare_internal};

/// Size of the trailer that follows every block.
pub const BLOCK_TRAILER_SIZE: usize = 5;
/// Size of the footer at the end of every table file.
pub const FOOTER_SIZE: usize = 64;
/// The only table format version this code reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Magic number stored in the last 8 bytes of every table ("FRSDBSST" little-endian).
pub const TABLE_MAGIC: u64 = u64::from_le_bytes(*b"FRSDBSST");
/// Offset of the CRC field inside the footer.
const FOOTER_CRC_OFFSET: usize = 52;
/// Offset of the magic number inside the footer.
const FOOTER_MAGIC_OFFSET: usize = 56;

/// A decoding failure: where in the decoded buffer, and which check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeError {
    /// Byte offset relative to the start of the decoded buffer.
    pub offset: usize,
    /// The check that failed.
    pub reason: &'static str,
}

impl DecodeError {
    /// A decode error at `offset`.
    pub fn new(offset: usize, reason: &'static str) -> DecodeError {
        DecodeError { offset, reason }
    }

    /// Converts to `Error::Corruption`, with `base` the file offset of the decoded buffer.
    pub fn into_error(self, file: &Path, base: u64) -> Error {
        Error::corruption(file, base.saturating_add(self.offset as u64), self.reason)
    }
}

/// Location of a block in the file; `size` excludes the 5-byte trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockHandle {
    /// File offset of the block's first byte.
    pub offset: u64,
    /// Length of the block contents, trailer excluded.
    pub size: u64,
}

impl BlockHandle {
    /// Appends the varint encoding used in index entries.
    pub fn encode_varint(&self, dst: &mut Vec<u8>) {
        put_varint64(dst, self.offset);
        put_varint64(dst, self.size);
    }

    /// Decodes an index entry value; the whole input must be consumed.
    pub fn decode_varint(src: &[u8]) -> Result<BlockHandle, DecodeError> {
        let (offset, pos) =
            get_varint64(src, 0).ok_or(DecodeError::new(0, "bad block handle offset"))?;
        let (size, end) =
            get_varint64(src, pos).ok_or(DecodeError::new(pos, "bad block handle size"))?;
        if end != src.len() {
            return Err(DecodeError::new(end, "trailing bytes after block handle"));
        }
        Ok(BlockHandle { offset, size })
    }

    /// File offset just past this block's trailer, or `None` on overflow.
    pub fn end_with_trailer(&self) -> Option<u64> {
        self.offset
            .checked_add(self.size)?
            .checked_add(BLOCK_TRAILER_SIZE as u64)
    }
}

/// CRC32 of a block's contents followed by its compression type byte.
fn block_crc(contents: &[u8], compression: u8) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(contents);
    hasher.update(&[compression]);
    hasher.finalize()
}

/// The trailer written after `contents` (uncompressed).
pub fn block_trailer(contents: &[u8]) -> [u8; BLOCK_TRAILER_SIZE] {
    block_trailer_for(contents, COMPRESSION_NONE)
}

/// The trailer written after `stored`, the bytes of a block stored with `compression`.
pub fn block_trailer_for(stored: &[u8], compression: u8) -> [u8; BLOCK_TRAILER_SIZE] {
    let crc = block_crc(stored, compression).to_le_bytes();
    [compression, crc[0], crc[1], crc[2], crc[3]]
}

/// Checks `trailer` against `stored` and returns the block's compression type (a known one);
/// the error offset is relative to the trailer start.
pub fn verify_block_trailer(stored: &[u8], trailer: &[u8]) -> Result<u8, DecodeError> {
    let compression = *trailer
        .first()
        .ok_or(DecodeError::new(0, "missing block trailer"))?;
    let crc = read_u32_le(trailer, 1).ok_or(DecodeError::new(1, "short block trailer"))?;
    if crc != block_crc(stored, compression) {
        return Err(DecodeError::new(1, "block checksum mismatch"));
    }
    if !is_known_compression(compression) {
        return Err(DecodeError::new(0, "unsupported block compression type"));
    }
    Ok(compression)
}

/// The fixed-size record at the end of a table locating its metadata blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Footer {
    /// The index block.
    pub index: BlockHandle,
    /// The bloom filter block.
    pub bloom: BlockHandle,
    /// The properties block.
    pub properties: BlockHandle,
}

impl Footer {
    /// Encodes the 64-byte footer.
    pub fn encode(&self) -> [u8; FOOTER_SIZE] {
        let mut out = [0u8; FOOTER_SIZE];
        let fields = [
            self.index.offset,
            self.index.size,
            self.bloom.offset,
            self.bloom.size,
            self.properties.offset,
            self.properties.size,
        ];
        for (slot, value) in out.chunks_exact_mut(8).zip(fields) {
            slot.copy_from_slice(&value.to_le_bytes());
        }
        out[48..52].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        let crc = crc32fast::hash(&out[..FOOTER_CRC_OFFSET]);
        out[FOOTER_CRC_OFFSET..FOOTER_MAGIC_OFFSET].copy_from_slice(&crc.to_le_bytes());
        out[FOOTER_MAGIC_OFFSET..].copy_from_slice(&TABLE_MAGIC.to_le_bytes());
        out
    }

    /// Decodes and checks magic, CRC and version. Handle ranges are checked by the reader.
    pub fn decode(src: &[u8]) -> Result<Footer, DecodeError> {
        if src.len() != FOOTER_SIZE {
            return Err(DecodeError::new(0, "footer has the wrong size"));
        }
        let field = |i: usize| read_u64_le(src, i * 8).unwrap_or(0);
        if read_u64_le(src, FOOTER_MAGIC_OFFSET) != Some(TABLE_MAGIC) {
            return Err(DecodeError::new(
                FOOTER_MAGIC_OFFSET,
                "bad table magic number",
            ));
        }
        let stored_crc = read_u32_le(src, FOOTER_CRC_OFFSET);
        if stored_crc != src.get(..FOOTER_CRC_OFFSET).map(crc32fast::hash) {
            return Err(DecodeError::new(
                FOOTER_CRC_OFFSET,
                "footer checksum mismatch",
            ));
        }
        if read_u32_le(src, 48) != Some(FORMAT_VERSION) {
            return Err(DecodeError::new(48, "unsupported table format version"));
        }
        Ok(Footer {
            index: BlockHandle {
                offset: field(0),
                size: field(1),
            },
            bloom: BlockHandle {
                offset: field(2),
                size: field(3),
            },
            properties: BlockHandle {
                offset: field(4),
                size: field(5),
            },
        })
    }
}

/// Summary statistics of a table, stored in its properties block.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableProperties {
    /// First internal key of the table.
    pub smallest: InternalKey,
    /// Last internal key of the table.
    pub largest: InternalKey,
    /// Smallest version of any entry.
    pub min_version: u64,
    /// Largest version of any entry.
    pub max_version: u64,
    /// Number of entries (all versions, tombstones included).
    pub entry_count: u64,
    /// Number of tombstone entries.
    pub tombstone_count: u64,
    /// Number of distinct user keys.
    pub distinct_key_count: u64,
    /// Number of data blocks.
    pub data_block_count: u64,
    /// Sum of user key lengths over all entries.
    pub raw_key_bytes: u64,
    /// Sum of value lengths over all entries.
    pub raw_value_bytes: u64,
    /// Size of the table file in bytes (not stored in the block; known from the file).
    pub file_size: u64,
}

impl TableProperties {
    /// Appends the properties block contents: two length-prefixed keys with varint versions,
    /// then eight varints in field order.
    pub fn encode(&self, dst: &mut Vec<u8>) {
        for key in [&self.smallest, &self.largest] {
            put_varint64(dst, key.key.len() as u64);
            dst.extend_from_slice(&key.key);
            put_varint64(dst, key.version);
        }
        for value in self.counters() {
            put_varint64(dst, value);
        }
    }

    fn counters(&self) -> [u64; 8] {
        [
            self.min_version,
            self.max_version,
            self.entry_count,
            self.tombstone_count,
            self.distinct_key_count,
            self.data_block_count,
            self.raw_key_bytes,
            self.raw_value_bytes,
        ]
    }

    /// Decodes and sanity-checks a properties block (`file_size` is left 0).
    pub fn decode(src: &[u8]) -> Result<TableProperties, DecodeError> {
        let mut pos = 0;
        let varint = |what: &'static str, pos: &mut usize| {
            let (value, next) = get_varint64(src, *pos).ok_or(DecodeError::new(*pos, what))?;
            *pos = next;
            Ok::<u64, DecodeError>(value)
        };
        let mut keys = [InternalKey::default(), InternalKey::default()];
        for key in &mut keys {
            let start = pos;
            let len = varint("bad property key length", &mut pos)?;
            let end = usize::try_from(len)
                .ok()
                .and_then(|len| pos.checked_add(len))
                .filter(|&end| end <= src.len())
                .ok_or(DecodeError::new(
                    start,
                    "property key length past block end",
                ))?;
            key.key = src.get(pos..end).unwrap_or_default().to_vec();
            pos = end;
            key.version = varint("bad property key version", &mut pos)?;
        }
        let mut counters = [0u64; 8];
        for counter in &mut counters {
            *counter = varint("bad property counter", &mut pos)?;
        }
        if pos != src.len() {
            return Err(DecodeError::new(pos, "trailing bytes in properties block"));
        }
        let [smallest, largest] = keys;
        let [
            min_v,
            max_v,
            entries,
            tombstones,
            distinct,
            blocks,
            key_bytes,
            value_bytes,
        ] = counters;
        let props = TableProperties {
            smallest,
            largest,
            min_version: min_v,
            max_version: max_v,
            entry_count: entries,
            tombstone_count: tombstones,
            distinct_key_count: distinct,
            data_block_count: blocks,
            raw_key_bytes: key_bytes,
            raw_value_bytes: value_bytes,
            file_size: 0,
        };
        props
            .check()
            .map_err(|reason| DecodeError::new(0, reason))?;
        Ok(props)
    }

    /// Checks the invariants every non-empty table satisfies.
    fn check(&self) -> Result<(), &'static str> {
        if self.entry_count == 0 || self.data_block_count == 0 || self.distinct_key_count == 0 {
            return Err("properties describe an empty table");
        }
        if self.tombstone_count > self.entry_count || self.distinct_key_count > self.entry_count {
            return Err("property counts exceed the entry count");
        }
        if self.min_version > self.max_version {
            return Err("min version above max version");
        }
        let (s, l) = (&self.smallest, &self.largest);
        if compare_internal(&s.key, s.version, &l.key, l.version).is_gt() {
            return Err("smallest key above largest key");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_properties() -> TableProperties {
        TableProperties {
            smallest: InternalKey::new("apple", 90),
            largest: InternalKey::new("zebra", 3),
            min_version: 3,
            max_version: 90,
            entry_count: 10,
            tombstone_count: 2,
            distinct_key_count: 4,
            data_block_count: 3,
            raw_key_bytes: 50,
            raw_value_bytes: 700,
            file_size: 0,
        }
    }

    #[test]
    fn footer_round_trips_and_rejects_damage() {
        let footer = Footer {
            index: BlockHandle {
                offset: 300,
                size: 40,
            },
            bloom: BlockHandle {
                offset: 100,
                size: 20,
            },
            properties: BlockHandle {
                offset: 200,
                size: 60,
            },
        };
        let bytes = footer.encode();
        assert_eq!(Footer::decode(&bytes), Ok(footer));
        for i in 0..FOOTER_SIZE {
            let mut damaged = bytes;
            damaged[i] ^= 0x10;
            assert!(Footer::decode(&damaged).is_err(), "flip at {i} accepted");
        }
        assert!(Footer::decode(&bytes[1..]).is_err());
    }

    #[test]
    fn trailer_detects_flips_and_unknown_compression() {
        let contents = b"some block contents";
        let trailer = block_trailer(contents);
        assert_eq!(
            verify_block_trailer(contents, &trailer),
            Ok(COMPRESSION_NONE)
        );
        let mut flipped = *contents;
        flipped[3] ^= 1;
        assert!(verify_block_trailer(&flipped, &trailer).is_err());
        let unknown = block_trailer_for(contents, 3);
        let err = verify_block_trailer(contents, &unknown).unwrap_err();
        assert_eq!(err.reason, "unsupported block compression type");
        assert!(verify_block_trailer(contents, &trailer[..4]).is_err());
    }

    #[test]
    fn handle_round_trips_and_rejects_trailing_bytes() {
        let handle = BlockHandle {
            offset: 1 << 40,
            size: 4096,
        };
        let mut buf = Vec::new();
        handle.encode_varint(&mut buf);
        assert_eq!(BlockHandle::decode_varint(&buf), Ok(handle));
        buf.push(0);
        assert!(BlockHandle::decode_varint(&buf).is_err());
        assert_eq!(
            BlockHandle {
                offset: u64::MAX,
                size: 1
            }
            .end_with_trailer(),
            None
        );
    }

    #[test]
    fn properties_round_trip_and_reject_inconsistency() {
        let props = sample_properties();
        let mut buf = Vec::new();
        props.encode(&mut buf);
        assert_eq!(TableProperties::decode(&buf), Ok(props.clone()));
        let mut bad = props.clone();
        bad.min_version = 100;
        let mut buf = Vec::new();
        bad.encode(&mut buf);
        assert!(TableProperties::decode(&buf).is_err());
    }

    proptest! {
        #[test]
        fn properties_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = TableProperties::decode(&bytes);
        }

        #[test]
        fn truncated_properties_are_rejected(cut in 0usize..30) {
            let mut buf = Vec::new();
            sample_properties().encode(&mut buf);
            let cut = cut.min(buf.len() - 1);
            prop_assert!(TableProperties::decode(&buf[..cut]).is_err());
        }
    }
}
