//! Framing of the manifest file: an 8-byte magic, then checksummed records.
//!
//! ```text
//! file header (8 bytes)   magic b"FDBMANv1"
//! record (12 + len bytes), repeated until end of file
//!   0..4    checksum      u32 LE, CRC32 of (len u32 LE ++ payload)
//!   4..8    len           u32 LE, payload length (at most MAX_RECORD_BYTES)
//!   8..12   len check     u32 LE, CRC32 of (len u32 LE)
//!   12..    payload       an encoded VersionEdit
//! ```
//!
//! The separate length check tells a torn write from damage: a record is a torn tail (and is
//! ignored, with everything after it) only if its header is incomplete, if its intact header
//! declares an end past end of file, or if every byte from its start to end of file is zero.
//! Any other failed check is [`Error::Corruption`] naming the file and the record's offset.

use std::io::Write;
use std::path::Path;

use crate::vfs::{CreateMode, FileSystem, WritableFile};

use ferrisdb_core::{Error, Result};

use super::edit::VersionEdit;

const MAGIC: [u8; 8] = *b"FDBMANv1";
const HEADER_LEN: usize = 12;
/// Largest accepted record payload.
const MAX_RECORD_BYTES: usize = 256 * 1024 * 1024;

/// Frames one encoded edit.
fn frame(edit: &VersionEdit) -> Result<Vec<u8>> {
    let mut payload = Vec::new();
    edit.encode(&mut payload);
    if payload.len() > MAX_RECORD_BYTES {
        return Err(Error::Internal("manifest edit too large".into()));
    }
    let len = (payload.len() as u32).to_le_bytes();
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len);
    hasher.update(&payload);
    let mut record = Vec::with_capacity(HEADER_LEN + payload.len());
    record.extend_from_slice(&hasher.finalize().to_le_bytes());
    record.extend_from_slice(&len);
    record.extend_from_slice(&crc32fast::hash(&len).to_le_bytes());
    record.extend_from_slice(&payload);
    Ok(record)
}

/// Creates a manifest at `path` holding `snapshot`, fsync'ed. Fails if the file exists.
pub fn create(
    fs: &dyn FileSystem,
    path: &Path,
    snapshot: &VersionEdit,
) -> Result<Box<dyn WritableFile>> {
    let io = |e| Error::io(format!("creating manifest {}", path.display()), e);
    let mut file = fs.create(path, CreateMode::New).map_err(io)?;
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&frame(snapshot)?);
    file.write_all(&bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(file)
}

/// Appends one edit and fdatasyncs it.
pub fn append(file: &mut dyn WritableFile, path: &Path, edit: &VersionEdit) -> Result<()> {
    let record = frame(edit)?;
    let io = |e| Error::io(format!("appending to manifest {}", path.display()), e);
    file.write_all(&record).map_err(io)?;
    file.sync_data().map_err(io)
}

/// Reads every intact edit of the manifest at `path`, with its record offset.
pub fn read_edits(fs: &dyn FileSystem, path: &Path) -> Result<Vec<(u64, VersionEdit)>> {
    let bytes = fs
        .read(path)
        .map_err(|e| Error::io(format!("reading manifest {}", path.display()), e))?;
    decode_edits(&bytes, path)
}

/// Decodes every intact edit of a whole manifest file's `bytes` (read from `path`, named in
/// errors), with its record offset; a torn tail ends the log, other damage is corruption.
pub fn decode_edits(bytes: &[u8], path: &Path) -> Result<Vec<(u64, VersionEdit)>> {
    if bytes.get(..MAGIC.len()) != Some(&MAGIC[..]) {
        return Err(Error::corruption(path, 0, "bad manifest magic"));
    }
    // Where the run of zeros ending the file begins: a torn write leaves one (see
    // `fsutil::is_torn_write`).
    let zeros_from = bytes
        .iter()
        .rposition(|b| *b != 0)
        .map_or(0, |last| last + 1) as u64;
    let mut edits = Vec::new();
    let mut pos = MAGIC.len();
    while pos < bytes.len() {
        let rest = bytes.get(pos..).unwrap_or_default();
        let corrupt = |reason: &str| Error::corruption(path, pos as u64, reason.to_owned());
        let Some(header) = rest.get(..HEADER_LEN) else {
            break; // Incomplete header: torn tail.
        };
        let word = |at: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(&header[at..at + 4]);
            u32::from_le_bytes(w)
        };
        let (checksum, len, len_check) = (word(0), word(4), word(8));
        if crc32fast::hash(&len.to_le_bytes()) != len_check {
            // A header cut by a crash: zeros from its start or from a sector boundary in it.
            let header_end = (pos + HEADER_LEN) as u64;
            if crate::fsutil::is_torn_write(pos as u64, header_end, zeros_from) {
                break;
            }
            return Err(corrupt("manifest record length check mismatch"));
        }
        let len = len as usize;
        if len > MAX_RECORD_BYTES {
            return Err(corrupt("manifest record too large"));
        }
        let Some(payload) = rest.get(HEADER_LEN..HEADER_LEN + len) else {
            break; // Declared end past end of file: torn tail.
        };
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&(len as u32).to_le_bytes());
        hasher.update(payload);
        if hasher.finalize() != checksum {
            let end = (pos + HEADER_LEN + len) as u64;
            if crate::fsutil::is_torn_write(pos as u64, end, zeros_from) {
                break;
            }
            return Err(corrupt("manifest record checksum mismatch"));
        }
        let edit = VersionEdit::decode(payload).map_err(|(at, reason)| {
            Error::corruption(path, (pos + HEADER_LEN + at) as u64, reason)
        })?;
        edits.push((pos as u64, edit));
        pos += HEADER_LEN + len;
    }
    Ok(edits)
}
