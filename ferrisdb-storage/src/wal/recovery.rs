//! Replaying WAL segments at open: validates headers and records, returns every intact record
//! in order, and repairs a torn tail in the newest segment.
//!
//! Invariant relied on: every segment except the newest was fdatasync'ed before the next one
//! was created (see `writer.rs`), so only the newest segment can end in a partial write. A
//! damaged record there is a torn tail iff it is the last thing in the file: its header is
//! incomplete, its declared end is at or past end of file, or every byte from its start to end
//! of file is zero (zero-filled blocks). The file is then truncated to the last good record.
//! Any other damage is [`Error::Corruption`] naming the file and the record's byte offset.

use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use ferrisdb_core::{Error, Result};

use crate::vfs::{FileSystem, ReadCursor};

use super::RecoveredRecord;
use super::files::{SegmentPath, list_segments, remove_file_if_present, sync_dir};
use super::format::{
    RECORD_HEADER_LEN, RecordHeader, SEGMENT_HEADER_LEN, decode_segment_header, record_checksum,
};

/// Read buffer size used while replaying.
const REPLAY_BUFFER_BYTES: usize = 256 * 1024;

/// What replaying a directory produced.
#[derive(Debug)]
pub struct RecoveredLog {
    /// Every intact record of the live segments, in log order.
    pub records: Vec<RecoveredRecord>,
    /// Id for the segment that will receive new writes.
    pub next_segment: u64,
}

/// Deletes segments older than `first_live_segment`, replays the rest in id order and picks
/// the id of the next segment. The newest segment is left fdatasync'ed (or deleted if it never
/// got a complete header), so nothing read here can later vanish in a crash.
pub fn recover(
    fs: &dyn FileSystem,
    dir: &Path,
    first_live_segment: u64,
    max_record_bytes: u32,
) -> Result<RecoveredLog> {
    let segments = list_segments(fs, dir)?;
    let next_segment = match segments.last() {
        Some(newest) => newest
            .id
            .checked_add(1)
            .ok_or_else(|| Error::Internal("WAL segment ids exhausted".to_owned()))?
            .max(first_live_segment),
        None => first_live_segment,
    };

    let (obsolete, live): (Vec<SegmentPath>, Vec<SegmentPath>) = segments
        .into_iter()
        .partition(|segment| segment.id < first_live_segment);
    for segment in &obsolete {
        remove_file_if_present(fs, &segment.path)?;
    }
    if !obsolete.is_empty() {
        sync_dir(fs, dir)?;
    }

    let mut records = Vec::new();
    let newest_index = live.len().checked_sub(1);
    for (index, segment) in live.iter().enumerate() {
        let is_newest = Some(index) == newest_index;
        let mut replay = SegmentReplay::open(fs, segment, max_record_bytes)?;
        if is_newest {
            replay.replay_newest(fs, dir, &mut records)?;
        } else {
            replay.replay_sealed(&mut records)?;
        }
    }
    Ok(RecoveredLog {
        records,
        next_segment,
    })
}

/// Why a record could not be read.
struct Damage {
    offset: u64,
    reason: String,
    /// The record's header is incomplete or its declared end reaches end of file.
    reaches_eof: bool,
    /// Where the record declares it ends (end of file if its header is incomplete).
    end: u64,
}

/// What [`replay_image`] found in an in-memory segment.
#[derive(Debug)]
pub struct ImageReplay {
    /// Records read before the first damage.
    pub records: Vec<RecoveredRecord>,
    /// The first damaged record: offset, reason, and whether it reaches end of file (so it
    /// could be a torn tail if this were the newest segment).
    pub damage: Option<(u64, String, bool)>,
}

/// Replays the bytes of a whole segment file held in memory, as segment `id`, without
/// touching any file: header check, then records up to the first damage. Errors are what a
/// sealed segment would report, except for damage, which is returned for the caller to judge.
pub fn replay_image(image: &[u8], id: u64, max_record_bytes: u32) -> Result<ImageReplay> {
    let segment = SegmentPath {
        id,
        path: std::path::PathBuf::from(super::format::segment_file_name(id)),
    };
    if image.len() < SEGMENT_HEADER_LEN {
        return Err(Error::corruption(
            &segment.path,
            0,
            "segment is shorter than its header",
        ));
    }
    let mut replay = SegmentReplay {
        segment: &segment,
        reader: std::io::Cursor::new(image),
        file_len: image.len() as u64,
        max_record_bytes,
    };
    replay.check_header()?;
    let mut records = Vec::new();
    let damage = replay
        .replay_records(&mut records)?
        .map(|d| (d.offset, d.reason, d.reaches_eof));
    Ok(ImageReplay { records, damage })
}

/// Sequential reader over one segment: a buffered file, or bytes in memory.
struct SegmentReplay<'a, R> {
    segment: &'a SegmentPath,
    reader: R,
    file_len: u64,
    max_record_bytes: u32,
}

impl<'a> SegmentReplay<'a, BufReader<ReadCursor>> {
    fn open(fs: &dyn FileSystem, segment: &'a SegmentPath, max_record_bytes: u32) -> Result<Self> {
        let file = fs
            .open_read(&segment.path)
            .map_err(|e| segment_io(segment, "opening", e))?;
        let cursor =
            ReadCursor::new(file).map_err(|e| segment_io(segment, "reading metadata of", e))?;
        let file_len = cursor.len();
        let reader = BufReader::with_capacity(REPLAY_BUFFER_BYTES, cursor);
        Ok(SegmentReplay {
            segment,
            reader,
            file_len,
            max_record_bytes,
        })
    }
}

impl<R: Read + Seek> SegmentReplay<'_, R> {
    /// Replays a segment that was sealed by a rotation: any damage is corruption.
    fn replay_sealed(&mut self, out: &mut Vec<RecoveredRecord>) -> Result<()> {
        if self.file_len < SEGMENT_HEADER_LEN as u64 {
            return Err(self.corruption(0, "segment is shorter than its header"));
        }
        self.check_header()?;
        match self.replay_records(out)? {
            None => Ok(()),
            Some(damage) => Err(self.corruption(damage.offset, &damage.reason)),
        }
    }

    /// Replays the newest segment, repairing a torn tail, and leaves it synced or deleted.
    fn replay_newest(
        &mut self,
        fs: &dyn FileSystem,
        dir: &Path,
        out: &mut Vec<RecoveredRecord>,
    ) -> Result<()> {
        if self.file_len < SEGMENT_HEADER_LEN as u64 || self.is_zero_from(0)? {
            tracing::warn!(
                file = %self.segment.path.display(),
                len = self.file_len,
                "WAL segment has a torn header (crash during creation); deleting it"
            );
            remove_file_if_present(fs, &self.segment.path)?;
            return sync_dir(fs, dir);
        }
        self.check_header()?;
        let good_end = match self.replay_records(out)? {
            None => self.file_len,
            Some(damage) => {
                if !(damage.reaches_eof || self.is_torn_write(&damage)?) {
                    return Err(self.corruption(damage.offset, &damage.reason));
                }
                tracing::warn!(
                    file = %self.segment.path.display(),
                    offset = damage.offset,
                    reason = %damage.reason,
                    "torn WAL tail; truncating to the last intact record"
                );
                damage.offset
            }
        };
        fs.truncate(&self.segment.path, good_end)
            .map_err(|e| segment_io(self.segment, "truncating and syncing", e))
    }

    fn check_header(&mut self) -> Result<()> {
        self.seek(0)?;
        let mut header = [0u8; SEGMENT_HEADER_LEN];
        self.read_exact(&mut header, 0)?;
        decode_segment_header(&header, self.segment.id, &self.segment.path)
    }

    /// Reads records from just after the header to the first damaged one. Returns the damage,
    /// or `None` if the segment ends cleanly.
    fn replay_records(&mut self, out: &mut Vec<RecoveredRecord>) -> Result<Option<Damage>> {
        let mut offset = SEGMENT_HEADER_LEN as u64;
        while offset < self.file_len {
            let remaining = self.file_len - offset;
            if remaining < RECORD_HEADER_LEN as u64 {
                return Ok(Some(Damage {
                    offset,
                    reason: format!("incomplete record header ({remaining} bytes)"),
                    reaches_eof: true,
                    end: self.file_len,
                }));
            }
            let mut header_bytes = [0u8; RECORD_HEADER_LEN];
            self.read_exact(&mut header_bytes, offset)?;
            let header = RecordHeader::decode(&header_bytes);
            if header.len > self.max_record_bytes {
                return Err(self.corruption(
                    offset,
                    &format!(
                        "record length {} exceeds the limit of {} bytes",
                        header.len, self.max_record_bytes
                    ),
                ));
            }
            let record_len = RECORD_HEADER_LEN as u64 + u64::from(header.len);
            if record_len > remaining {
                return Ok(Some(Damage {
                    offset,
                    reason: format!(
                        "record of {} bytes extends past end of file ({remaining} bytes left)",
                        header.len
                    ),
                    reaches_eof: true,
                    end: self.file_len,
                }));
            }
            // Bounded by max_record_bytes and by the bytes actually in the file.
            let mut payload = Vec::with_capacity(header.len as usize);
            let read = Read::by_ref(&mut self.reader)
                .take(u64::from(header.len))
                .read_to_end(&mut payload)
                .map_err(|e| segment_io(self.segment, "reading", e))?;
            if read != header.len as usize {
                return Err(self.corruption(offset, "segment shrank while being replayed"));
            }
            let expected = record_checksum(self.segment.id, header.len, &payload);
            if expected != header.checksum {
                return Ok(Some(Damage {
                    offset,
                    reason: "record checksum mismatch".to_owned(),
                    reaches_eof: record_len == remaining,
                    end: offset + record_len,
                }));
            }
            out.push(RecoveredRecord {
                segment: self.segment.id,
                offset,
                payload,
            });
            offset += record_len;
        }
        Ok(None)
    }

    /// Whether `damage` (a record that does not reach end of file) is a write torn by a
    /// crash (see [`crate::fsutil::is_torn_write`]); other damage is corruption.
    fn is_torn_write(&mut self, damage: &Damage) -> Result<bool> {
        let zeros_from = self.trailing_zeros_from(damage.offset)?;
        Ok(crate::fsutil::is_torn_write(
            damage.offset,
            damage.end,
            zeros_from,
        ))
    }

    /// Where the run of zero bytes that ends the file begins, looking from `offset` on
    /// (`offset` itself if everything from there is zero).
    fn trailing_zeros_from(&mut self, offset: u64) -> Result<u64> {
        self.seek(offset)?;
        let mut chunk = vec![0u8; 64 * 1024];
        let mut position = offset;
        let mut zeros_from = offset;
        loop {
            let n = self
                .reader
                .read(&mut chunk)
                .map_err(|e| segment_io(self.segment, "reading", e))?;
            let Some(bytes) = chunk.get(..n).filter(|b| !b.is_empty()) else {
                return Ok(zeros_from);
            };
            if let Some(last) = bytes.iter().rposition(|&b| b != 0) {
                zeros_from = position + last as u64 + 1;
            }
            position += n as u64;
        }
    }

    /// True if every byte from `offset` to end of file is zero.
    fn is_zero_from(&mut self, offset: u64) -> Result<bool> {
        self.seek(offset)?;
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = self
                .reader
                .read(&mut chunk)
                .map_err(|e| segment_io(self.segment, "reading", e))?;
            match chunk.get(..n) {
                None | Some([]) => return Ok(true),
                Some(bytes) if bytes.iter().any(|&b| b != 0) => return Ok(false),
                Some(_) => {}
            }
        }
    }

    fn seek(&mut self, offset: u64) -> Result<()> {
        self.reader
            .seek(SeekFrom::Start(offset))
            .map(drop)
            .map_err(|e| segment_io(self.segment, "seeking in", e))
    }

    fn read_exact(&mut self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.reader.read_exact(buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                self.corruption(offset, "segment shrank while being replayed")
            } else {
                segment_io(self.segment, "reading", e)
            }
        })
    }

    fn corruption(&self, offset: u64, reason: &str) -> Error {
        Error::corruption(&self.segment.path, offset, reason)
    }
}

fn segment_io(segment: &SegmentPath, action: &str, err: std::io::Error) -> Error {
    Error::io(
        format!("{action} WAL segment {}", segment.path.display()),
        err,
    )
}
