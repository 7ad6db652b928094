//! Manifest edit records: what one change to the live file set says, and its byte encoding.
//!
//! An edit is a sequence of tagged fields (all integers little-endian):
//!
//! ```text
//! tag u8 = 1  log number            u64
//! tag u8 = 2  next file number      u64
//! tag u8 = 3  gc horizon            u64
//! tag u8 = 4  last flushed version  u64
//! tag u8 = 5  add file              level u32, id u64, size u64,
//!                                   smallest key len u32, key bytes, smallest version u64,
//!                                   largest key len u32, key bytes, largest version u64
//! tag u8 = 6  delete file           level u32, id u64
//! tag u8 = 7  add file (v2)         as tag 5, then clean-through version u64
//! tag u8 = 8  add range tombstone   version u64, begin len u32, begin, end len u32, end
//! tag u8 = 9  drop range tombstone  as tag 8
//! ```
//!
//! Files are written with tag 7; tag 5 (an older manifest) reads as clean-through 0. A range
//! tombstone's empty end means the end of the key space.
//!
//! Decoding checks every length against the bytes left, so a damaged record is an error,
//! never a panic or a huge allocation.

use crate::key::InternalKey;
use crate::range_tombstone::RangeTombstone;

const TAG_LOG_NUMBER: u8 = 1;
const TAG_NEXT_FILE: u8 = 2;
const TAG_GC_HORIZON: u8 = 3;
const TAG_LAST_FLUSHED: u8 = 4;
const TAG_ADD_FILE: u8 = 5;
const TAG_DELETE_FILE: u8 = 6;
const TAG_ADD_FILE_V2: u8 = 7;
const TAG_ADD_RANGE_TOMBSTONE: u8 = 8;
const TAG_DROP_RANGE_TOMBSTONE: u8 = 9;

/// One live SSTable as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    /// File number: the table is `{id:06}.sst`; also its block-cache id.
    pub id: u64,
    /// File size in bytes.
    pub size: u64,
    /// First internal key of the table.
    pub smallest: InternalKey,
    /// Last internal key of the table.
    pub largest: InternalKey,
    /// The table holds no entry that a range tombstone at a version ≤ this one covers, for
    /// every such tombstone the manifest held when the table was written (a compaction
    /// drops what tombstones at or below the GC horizon cover; 0: no such promise).
    pub clean_through: u64,
}

/// A change to the manifest state; `None` fields are left unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionEdit {
    /// New first live WAL segment.
    pub log_number: Option<u64>,
    /// New next file number.
    pub next_file_number: Option<u64>,
    /// New GC horizon.
    pub gc_horizon: Option<u64>,
    /// New highest version whose data is entirely in SSTables.
    pub last_flushed_version: Option<u64>,
    /// Files added, with their level.
    pub added: Vec<(usize, FileMeta)>,
    /// Files removed: (level, id).
    pub deleted: Vec<(usize, u64)>,
    /// Range tombstones the tables' data is now subject to (moved here by a flush).
    pub added_range_tombstones: Vec<RangeTombstone>,
    /// Range tombstones no live table needs any more.
    pub dropped_range_tombstones: Vec<RangeTombstone>,
}

impl VersionEdit {
    /// Appends the encoded edit to `dst`.
    pub fn encode(&self, dst: &mut Vec<u8>) {
        let fields = [
            (TAG_LOG_NUMBER, self.log_number),
            (TAG_NEXT_FILE, self.next_file_number),
            (TAG_GC_HORIZON, self.gc_horizon),
            (TAG_LAST_FLUSHED, self.last_flushed_version),
        ];
        for (tag, value) in fields {
            if let Some(value) = value {
                dst.push(tag);
                dst.extend_from_slice(&value.to_le_bytes());
            }
        }
        for (level, id) in &self.deleted {
            dst.push(TAG_DELETE_FILE);
            dst.extend_from_slice(&(*level as u32).to_le_bytes());
            dst.extend_from_slice(&id.to_le_bytes());
        }
        for (tag, tombstones) in [
            (TAG_DROP_RANGE_TOMBSTONE, &self.dropped_range_tombstones),
            (TAG_ADD_RANGE_TOMBSTONE, &self.added_range_tombstones),
        ] {
            for t in tombstones {
                dst.push(tag);
                dst.extend_from_slice(&t.version.to_le_bytes());
                for bytes in [&t.begin, &t.end] {
                    dst.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                    dst.extend_from_slice(bytes);
                }
            }
        }
        for (level, file) in &self.added {
            dst.push(TAG_ADD_FILE_V2);
            dst.extend_from_slice(&(*level as u32).to_le_bytes());
            dst.extend_from_slice(&file.id.to_le_bytes());
            dst.extend_from_slice(&file.size.to_le_bytes());
            for key in [&file.smallest, &file.largest] {
                dst.extend_from_slice(&(key.key.len() as u32).to_le_bytes());
                dst.extend_from_slice(&key.key);
                dst.extend_from_slice(&key.version.to_le_bytes());
            }
            dst.extend_from_slice(&file.clean_through.to_le_bytes());
        }
    }

    /// Decodes an edit; `Err((offset within src, reason))` if it is malformed.
    pub fn decode(src: &[u8]) -> Result<VersionEdit, (usize, &'static str)> {
        let mut reader = Reader { src, pos: 0 };
        let mut edit = VersionEdit::default();
        while reader.pos < src.len() {
            let tag_at = reader.pos;
            match reader.u8()? {
                TAG_LOG_NUMBER => edit.log_number = Some(reader.u64()?),
                TAG_NEXT_FILE => edit.next_file_number = Some(reader.u64()?),
                TAG_GC_HORIZON => edit.gc_horizon = Some(reader.u64()?),
                TAG_LAST_FLUSHED => edit.last_flushed_version = Some(reader.u64()?),
                TAG_DELETE_FILE => {
                    let level = reader.u32()? as usize;
                    edit.deleted.push((level, reader.u64()?));
                }
                tag @ (TAG_ADD_FILE | TAG_ADD_FILE_V2) => {
                    let level = reader.u32()? as usize;
                    let id = reader.u64()?;
                    let size = reader.u64()?;
                    let smallest = reader.internal_key()?;
                    let largest = reader.internal_key()?;
                    let clean_through = if tag == TAG_ADD_FILE_V2 {
                        reader.u64()?
                    } else {
                        0
                    };
                    edit.added.push((
                        level,
                        FileMeta {
                            id,
                            size,
                            smallest,
                            largest,
                            clean_through,
                        },
                    ));
                }
                tag @ (TAG_ADD_RANGE_TOMBSTONE | TAG_DROP_RANGE_TOMBSTONE) => {
                    let version = reader.u64()?;
                    let begin_len = reader.u32()? as usize;
                    let begin = reader.take(begin_len)?.to_vec();
                    let end_len = reader.u32()? as usize;
                    let end = reader.take(end_len)?.to_vec();
                    let tombstone = RangeTombstone {
                        begin,
                        end,
                        version,
                    };
                    if tag == TAG_ADD_RANGE_TOMBSTONE {
                        edit.added_range_tombstones.push(tombstone);
                    } else {
                        edit.dropped_range_tombstones.push(tombstone);
                    }
                }
                _ => return Err((tag_at, "unknown manifest edit tag")),
            }
        }
        Ok(edit)
    }
}

/// Bounds-checked little-endian reads.
struct Reader<'a> {
    src: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], (usize, &'static str)> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.src.len())
            .ok_or((self.pos, "manifest edit field runs past the record"))?;
        let bytes = self.src.get(self.pos..end).ok_or((self.pos, "bad range"))?;
        self.pos = end;
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8, (usize, &'static str)> {
        Ok(self.take(1)?.first().copied().unwrap_or(0))
    }

    fn u32(&mut self) -> Result<u32, (usize, &'static str)> {
        let mut word = [0u8; 4];
        word.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(word))
    }

    fn u64(&mut self) -> Result<u64, (usize, &'static str)> {
        let mut word = [0u8; 8];
        word.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(word))
    }

    fn internal_key(&mut self) -> Result<InternalKey, (usize, &'static str)> {
        let len = self.u32()? as usize;
        let key = self.take(len)?.to_vec();
        let version = self.u64()?;
        Ok(InternalKey { key, version })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> VersionEdit {
        VersionEdit {
            log_number: Some(3),
            next_file_number: Some(9),
            gc_horizon: Some(100),
            last_flushed_version: Some(77),
            added: vec![(
                1,
                FileMeta {
                    id: 7,
                    size: 4096,
                    smallest: InternalKey::new("a", 5),
                    largest: InternalKey::new("zz", 1),
                    clean_through: 40,
                },
            )],
            deleted: vec![(0, 4), (0, 5)],
            added_range_tombstones: vec![RangeTombstone {
                begin: b"b".to_vec(),
                end: Vec::new(),
                version: 60,
            }],
            dropped_range_tombstones: vec![RangeTombstone {
                begin: b"c".to_vec(),
                end: b"d".to_vec(),
                version: 50,
            }],
        }
    }

    #[test]
    fn edits_round_trip() {
        let mut buf = Vec::new();
        sample().encode(&mut buf);
        assert_eq!(VersionEdit::decode(&buf).unwrap(), sample());
        assert_eq!(VersionEdit::decode(&[]).unwrap(), VersionEdit::default());
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let mut buf = Vec::new();
        sample().encode(&mut buf);
        for len in 1..buf.len() {
            // A cut exactly between fields decodes as a shorter edit; never panics.
            let _ = VersionEdit::decode(&buf[..len]);
        }
        assert!(VersionEdit::decode(&buf[..buf.len() - 1]).is_err());
        assert!(VersionEdit::decode(&[42]).is_err());
    }
}
