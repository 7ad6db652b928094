//! On-disk format of WAL segments: the file name, the 32-byte segment header and the record
//! framing, with their encoders and decoders. This module does no I/O.
//!
//! A segment file is named `{id:020}.wal` and holds a header followed by records:
//!
//! ```text
//! segment header (32 bytes)
//!   0..8    magic                 b"FDBWALv1"
//!   8..12   format version        u32 LE (= 1)
//!   12..16  reserved              u32 (zero)
//!   16..24  segment id            u64 LE (must match the file name)
//!   24..28  header checksum       u32 LE, CRC32 of bytes 0..24
//!   28..32  padding               u32 (zero)
//!
//! record (8 + len bytes), repeated until end of file
//!   0..4    checksum              u32 LE, CRC32 of (segment id u64 LE ++ len u32 LE ++ payload)
//!   4..8    len                   u32 LE, payload length
//!   8..     payload               len bytes
//! ```
//!
//! Mixing the segment id into every record checksum means bytes left over from another segment
//! (for example a recycled file) never validate as records of this one.

use std::path::Path;

use crc32fast::Hasher;
use ferrisdb_core::{Error, Result};

/// Magic bytes at the start of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"FDBWALv1";
/// Version of the segment format written by this code.
pub const FORMAT_VERSION: u32 = 1;
/// Size of the segment header in bytes.
pub const SEGMENT_HEADER_LEN: usize = 32;
/// Size of a record header (checksum + length) in bytes.
pub const RECORD_HEADER_LEN: usize = 8;
/// File name extension of segment files.
const SEGMENT_EXTENSION: &str = ".wal";
/// Number of decimal digits in a segment file name.
const SEGMENT_ID_DIGITS: usize = 20;

/// File name of segment `id`: the id zero-padded to 20 digits, then `.wal`.
pub fn segment_file_name(id: u64) -> String {
    format!("{id:020}{SEGMENT_EXTENSION}")
}

/// Parses a segment file name back into its id; `None` for any other file name.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_EXTENSION)?;
    if digits.len() != SEGMENT_ID_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Encodes the header of segment `id`.
pub fn encode_segment_header(id: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut header = [0u8; SEGMENT_HEADER_LEN];
    header[0..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[16..24].copy_from_slice(&id.to_le_bytes());
    let crc = crc32fast::hash(&header[0..24]);
    header[24..28].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Checks a segment header read from `file`, which the file name says is segment `expected_id`.
///
/// Bad magic, an unknown version, a checksum mismatch or an id that differs from the file name
/// are all [`Error::Corruption`] at offset 0.
pub fn decode_segment_header(
    header: &[u8; SEGMENT_HEADER_LEN],
    expected_id: u64,
    file: &Path,
) -> Result<()> {
    let corrupt = |reason: String| Error::corruption(file, 0, reason);
    if header[0..8] != SEGMENT_MAGIC {
        return Err(corrupt("bad WAL segment magic".to_owned()));
    }
    let stored_crc = le_u32(header, 24);
    if crc32fast::hash(&header[0..24]) != stored_crc {
        return Err(corrupt("WAL segment header checksum mismatch".to_owned()));
    }
    let version = le_u32(header, 8);
    if version != FORMAT_VERSION {
        return Err(corrupt(format!("unknown WAL format version {version}")));
    }
    let id = le_u64(header, 16);
    if id != expected_id {
        return Err(corrupt(format!(
            "WAL segment header names segment {id} but the file name says {expected_id}"
        )));
    }
    Ok(())
}

/// The fixed-size prefix of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Stored checksum of (segment id ++ length ++ payload).
    pub checksum: u32,
    /// Payload length in bytes.
    pub len: u32,
}

impl RecordHeader {
    /// Decodes a record header.
    pub fn decode(bytes: &[u8; RECORD_HEADER_LEN]) -> Self {
        RecordHeader {
            checksum: le_u32(bytes, 0),
            len: le_u32(bytes, 4),
        }
    }
}

/// Checksum of a record: CRC32 of (segment id u64 LE ++ length u32 LE ++ payload).
pub fn record_checksum(segment_id: u64, payload_len: u32, payload: &[u8]) -> u32 {
    let mut hasher = Hasher::new();
    hasher.update(&segment_id.to_le_bytes());
    hasher.update(&payload_len.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// Appends one framed record to `buf`. `payload.len()` must equal `payload_len`, and
/// `checksum` must come from [`record_checksum`] over the same record.
pub fn append_record(buf: &mut Vec<u8>, checksum: u32, payload_len: u32, payload: &[u8]) {
    buf.reserve(RECORD_HEADER_LEN + payload.len());
    buf.extend_from_slice(&checksum.to_le_bytes());
    buf.extend_from_slice(&payload_len.to_le_bytes());
    buf.extend_from_slice(payload);
}

fn le_u32<const N: usize>(bytes: &[u8; N], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn le_u64<const N: usize>(bytes: &[u8; N], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc_hex::assert_doc_bytes;
    use crate::vfs::os;
    use crate::wal::{Wal, WalOptions};

    #[test]
    fn file_names_round_trip_and_reject_others() {
        assert_eq!(segment_file_name(7), "00000000000000000007.wal");
        assert_eq!(parse_segment_file_name(&segment_file_name(7)), Some(7));
        assert_eq!(
            parse_segment_file_name(&segment_file_name(u64::MAX)),
            Some(u64::MAX)
        );
        assert_eq!(parse_segment_file_name("7.wal"), None);
        assert_eq!(parse_segment_file_name("0000000000000000000a.wal"), None);
        assert_eq!(parse_segment_file_name("00000000000000000007.sst"), None);
        assert_eq!(parse_segment_file_name("+0000000000000000007.wal"), None);
        assert_eq!(parse_segment_file_name("99999999999999999999.wal"), None);
    }

    #[test]
    fn header_round_trips_and_has_documented_layout() {
        let header = encode_segment_header(42);
        assert_eq!(&header[0..8], b"FDBWALv1");
        assert_eq!(&header[8..12], &1u32.to_le_bytes());
        assert_eq!(&header[12..16], &[0; 4]);
        assert_eq!(&header[16..24], &42u64.to_le_bytes());
        assert_eq!(&header[28..32], &[0; 4]);
        decode_segment_header(&header, 42, Path::new("f")).unwrap();
    }

    #[test]
    fn header_damage_is_corruption_at_offset_zero() {
        let good = encode_segment_header(42);
        for at in 0..28 {
            let mut bad = good;
            bad[at] ^= 0x10;
            let err = decode_segment_header(&bad, 42, Path::new("seg")).unwrap_err();
            assert!(
                matches!(err, Error::Corruption { offset: 0, .. }),
                "byte {at}: {err}"
            );
        }
        let err = decode_segment_header(&good, 43, Path::new("seg")).unwrap_err();
        assert!(err.to_string().contains("file name says 43"), "{err}");
    }

    #[test]
    fn unknown_version_with_valid_checksum_is_rejected() {
        let mut header = encode_segment_header(1);
        header[8..12].copy_from_slice(&2u32.to_le_bytes());
        let crc = crc32fast::hash(&header[0..24]);
        header[24..28].copy_from_slice(&crc.to_le_bytes());
        let err = decode_segment_header(&header, 1, Path::new("seg")).unwrap_err();
        assert!(
            err.to_string().contains("unknown WAL format version 2"),
            "{err}"
        );
    }

    #[test]
    fn record_checksum_covers_segment_length_and_payload() {
        let payload = b"hello wal";
        let len = payload.len() as u32;
        let mut buf = Vec::new();
        append_record(&mut buf, record_checksum(9, len, payload), len, payload);
        assert_eq!(buf.len(), RECORD_HEADER_LEN + payload.len());
        let header = RecordHeader::decode(buf[0..8].try_into().unwrap());
        assert_eq!(header.len, len);
        let mut direct = Vec::new();
        direct.extend_from_slice(&9u64.to_le_bytes());
        direct.extend_from_slice(&len.to_le_bytes());
        direct.extend_from_slice(payload);
        assert_eq!(header.checksum, crc32fast::hash(&direct));
        assert_ne!(header.checksum, record_checksum(10, len, payload));
        assert_ne!(header.checksum, record_checksum(9, len, b"hello wat"));
    }

    /// The worked example of `docs/wal.md` is exactly the file a real log writes.
    #[test]
    fn doc_example_is_what_the_log_writes() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, recovered) = Wal::open(&os(), dir.path(), WalOptions::default(), 7).unwrap();
        assert!(recovered.is_empty());
        assert_eq!(wal.current_segment(), 7);
        wal.append(b"hello").unwrap();
        wal.append(b"").unwrap();
        drop(wal);
        let file = std::fs::read(dir.path().join(segment_file_name(7))).unwrap();
        assert_doc_bytes(&file, "wal.md", "wal-segment-example");
    }
}
