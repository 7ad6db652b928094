//! Per-block compression of SSTable data blocks: the codecs ([`Compression`]), the type byte
//! each stored block carries in its trailer, and the two directions — [`BlockCompressor`]
//! (one per table being written) and [`block_contents`] (every block read from disk).
//!
//! A compressed block is stored as its uncompressed length (u32 LE) followed by the codec's
//! output. The length is checked against [`MAX_UNCOMPRESSED_BLOCK`] before anything is
//! allocated, and the decompressed size must equal it: a damaged block behind a valid
//! checksum (a bug, or a forged file) is an error, never a panic or a huge allocation.

use std::cell::RefCell;

use bytes::Bytes;

use super::format::DecodeError;
use super::varint::read_u32_le;

/// Compression type byte for uncompressed blocks.
pub const COMPRESSION_NONE: u8 = 0;
/// Compression type byte for LZ4 blocks: the uncompressed length (u32 LE), then one LZ4
/// block (`lz4_flex::block`).
pub const COMPRESSION_LZ4: u8 = 1;
/// Compression type byte for zstd blocks: the uncompressed length (u32 LE), then one zstd
/// frame.
pub const COMPRESSION_ZSTD: u8 = 2;
/// Largest uncompressed length a compressed block may declare (a damaged length must not
/// make the reader allocate gigabytes).
pub const MAX_UNCOMPRESSED_BLOCK: usize = 1 << 30;
/// The zstd level tables are written with (zstd's own default, as RocksDB uses it).
pub const ZSTD_LEVEL: i32 = 3;

/// Compression of a table's data blocks. Whatever the codec, a block is stored compressed
/// only when that saves at least an eighth of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Stored as they are.
    None,
    /// LZ4 per block (`lz4_flex`): fast to write and to read.
    #[default]
    Lz4,
    /// zstd per block at [`ZSTD_LEVEL`]: smaller than LZ4, slower to write and to read; meant
    /// for the bottom level, which holds most of the data and is rewritten least often.
    Zstd,
}

impl Compression {
    /// The name used in options and reports: `none`, `lz4` or `zstd`.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    /// The codec called `name` ([`Compression::name`]), if there is one.
    pub fn from_name(name: &str) -> Option<Compression> {
        match name {
            "none" => Some(Compression::None),
            "lz4" => Some(Compression::Lz4),
            "zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// Whether `compression` is a type byte this code can read.
pub fn is_known_compression(compression: u8) -> bool {
    matches!(
        compression,
        COMPRESSION_NONE | COMPRESSION_LZ4 | COMPRESSION_ZSTD
    )
}

/// Compresses the data blocks of one table; holds the zstd context between blocks (creating
/// one costs more than compressing a block).
pub struct BlockCompressor {
    compression: Compression,
    zstd: Option<zstd::bulk::Compressor<'static>>,
}

impl std::fmt::Debug for BlockCompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCompressor")
            .field("compression", &self.compression)
            .finish_non_exhaustive()
    }
}

impl BlockCompressor {
    /// A compressor for `compression`.
    pub fn new(compression: Compression) -> BlockCompressor {
        BlockCompressor {
            compression,
            zstd: None,
        }
    }

    /// `contents` as stored (length prefix included) and its type byte, if compressing saves
    /// at least an eighth of it; `None` when the block is to be stored as it is. Errors only
    /// when the codec itself fails (zstd could not allocate its context).
    pub fn compress(&mut self, contents: &[u8]) -> std::io::Result<Option<(u8, Vec<u8>)>> {
        let Ok(len) = u32::try_from(contents.len()) else {
            return Ok(None);
        };
        if contents.is_empty() || contents.len() > MAX_UNCOMPRESSED_BLOCK {
            return Ok(None);
        }
        let (kind, compressed) = match self.compression {
            Compression::None => return Ok(None),
            Compression::Lz4 => (COMPRESSION_LZ4, lz4_flex::block::compress(contents)),
            Compression::Zstd => {
                let zstd = match &mut self.zstd {
                    Some(zstd) => zstd,
                    None => self.zstd.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL)?),
                };
                (COMPRESSION_ZSTD, zstd.compress(contents)?)
            }
        };
        let stored_len = compressed.len() + 4;
        if stored_len > contents.len() - contents.len() / 8 {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(stored_len);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&compressed);
        Ok(Some((kind, out)))
    }
}

thread_local! {
    /// Each reading thread's zstd decompression context, made on its first zstd block.
    static ZSTD_DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// The contents of a block whose trailer `format::verify_block_trailer` accepted: `stored`
/// itself, or `stored` decompressed. A damaged compressed block is an error, never a panic.
pub fn block_contents(stored: Bytes, compression: u8) -> Result<Bytes, DecodeError> {
    if compression == COMPRESSION_NONE {
        return Ok(stored);
    }
    if !is_known_compression(compression) {
        return Err(DecodeError::new(0, "unsupported block compression type"));
    }
    let declared = read_u32_le(&stored, 0).ok_or(DecodeError::new(
        0,
        "compressed block shorter than its length",
    ))? as usize;
    if declared > MAX_UNCOMPRESSED_BLOCK {
        return Err(DecodeError::new(
            0,
            "compressed block declares an implausible length",
        ));
    }
    let payload = &stored[4..];
    let contents = if compression == COMPRESSION_LZ4 {
        lz4_flex::block::decompress(payload, declared)
            .map_err(|_| DecodeError::new(4, "compressed block does not decompress"))?
    } else {
        zstd_decompress(payload, declared)?
    };
    if contents.len() != declared {
        return Err(DecodeError::new(
            0,
            "compressed block decompresses to another length than it declares",
        ));
    }
    Ok(Bytes::from(contents))
}

/// One zstd frame of at most `declared` bytes, through this thread's context.
fn zstd_decompress(payload: &[u8], declared: usize) -> Result<Vec<u8>, DecodeError> {
    const FAILED: DecodeError = DecodeError {
        offset: 4,
        reason: "compressed block does not decompress",
    };
    ZSTD_DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let decompressor =
            match &mut *slot {
                Some(decompressor) => decompressor,
                None => slot.insert(zstd::bulk::Decompressor::new().map_err(|_| {
                    DecodeError::new(0, "no memory for a zstd decompression context")
                })?),
            };
        decompressor
            .decompress(payload, declared)
            .map_err(|_| FAILED)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sstable::format::{block_trailer_for, verify_block_trailer};

    /// Bytes that no codec can shrink.
    fn noise(len: usize) -> Vec<u8> {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect()
    }

    fn round_trip_and_damage(compression: Compression, kind: u8) {
        let contents: Vec<u8> = (0..4096u32).map(|i| (i % 7) as u8).collect();
        let mut compressor = BlockCompressor::new(compression);
        let (stored_kind, stored) = compressor
            .compress(&contents)
            .unwrap()
            .expect("repetitive data compresses");
        assert_eq!(stored_kind, kind);
        assert!(stored.len() < contents.len() / 4, "{} bytes", stored.len());
        let trailer = block_trailer_for(&stored, kind);
        assert_eq!(verify_block_trailer(&stored, &trailer), Ok(kind));
        let back = block_contents(Bytes::from(stored.clone()), kind).unwrap();
        assert_eq!(back.as_ref(), contents.as_slice());
        // The compressor is reused from block to block.
        let second: Vec<u8> = (0..3000u32).map(|i| (i % 13) as u8).collect();
        let (_, stored_second) = compressor.compress(&second).unwrap().unwrap();
        let back = block_contents(Bytes::from(stored_second), kind).unwrap();
        assert_eq!(back.as_ref(), second.as_slice());
        // Incompressible data and empty blocks are stored as they are.
        assert!(compressor.compress(&noise(4096)).unwrap().is_none());
        assert!(compressor.compress(b"").unwrap().is_none());
        // Damage behind a valid checksum (a bug, or a forged file): errors, never panics.
        for i in 0..stored.len() {
            let mut damaged = stored.clone();
            damaged[i] ^= 0x41;
            if let Ok(b) = block_contents(Bytes::from(damaged), kind) {
                assert_eq!(b.len(), contents.len(), "flip at {i}");
            }
        }
        for cut in 0..stored.len() {
            let _ = block_contents(Bytes::copy_from_slice(&stored[..cut]), kind);
        }
        let mut huge = stored.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = block_contents(Bytes::from(huge), kind).unwrap_err();
        assert_eq!(
            err.reason,
            "compressed block declares an implausible length"
        );
        let mut short = stored.clone();
        short[..4].copy_from_slice(&100u32.to_le_bytes());
        assert!(block_contents(Bytes::from(short), kind).is_err());
        let err = block_contents(Bytes::from_static(b"ab"), kind).unwrap_err();
        assert_eq!(err.reason, "compressed block shorter than its length");
    }

    #[test]
    fn lz4_blocks_round_trip_and_damage_is_an_error() {
        round_trip_and_damage(Compression::Lz4, COMPRESSION_LZ4);
    }

    #[test]
    fn zstd_blocks_round_trip_and_damage_is_an_error() {
        round_trip_and_damage(Compression::Zstd, COMPRESSION_ZSTD);
    }

    #[test]
    fn zstd_shrinks_more_than_lz4_and_none_never_compresses() {
        // Text-like data: both codecs shrink it, zstd more.
        let words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta"];
        let mut contents = Vec::new();
        let mut state = 7u64;
        while contents.len() < 4096 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            contents.extend_from_slice(words[(state >> 33) as usize % words.len()].as_bytes());
            contents.push(b' ');
        }
        let size = |c| {
            BlockCompressor::new(c)
                .compress(&contents)
                .unwrap()
                .map(|(_, s)| s.len())
        };
        let (lz4, zstd) = (
            size(Compression::Lz4).unwrap(),
            size(Compression::Zstd).unwrap(),
        );
        assert!(zstd < lz4, "zstd {zstd} bytes, lz4 {lz4}");
        assert_eq!(size(Compression::None), None);
    }

    #[test]
    fn names_round_trip() {
        for c in [Compression::None, Compression::Lz4, Compression::Zstd] {
            assert_eq!(Compression::from_name(c.name()), Some(c));
        }
        assert_eq!(Compression::from_name("snappy"), None);
    }

    #[test]
    fn unknown_types_are_refused() {
        assert!(!is_known_compression(3));
        let err = block_contents(Bytes::from_static(b"\x04\0\0\0abcd"), 9).unwrap_err();
        assert_eq!(err.reason, "unsupported block compression type");
    }
}
