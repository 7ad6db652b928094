//! [`WriteBatch`] and the WAL record a batch becomes.
//!
//! A batch and a WAL record share one op encoding (integers little-endian):
//!
//! ```text
//! op:   tag u8   0 = delete: key len u32, key
//!                1 = put:    key len u32, key, value len u32, value
//!                2 = delete range: begin len u32, begin, end len u32, end (empty: unbounded)
//! WAL record:  version u64, op count u32, range deletes (tag 2), then point ops (tags 0
//!              and 1, distinct keys)
//! ```
//!
//! Resolving a batch for the log keeps each range delete as one op — it becomes one range
//! tombstone (`crate::range_tombstone`), however many keys it covers — and only the last
//! point op of each key not deleted by a later range in the batch, so every point op of a
//! record has a distinct key (a memtable holds one entry per key and version).

use std::collections::BTreeMap;

use ferrisdb_core::Result;

use crate::key::ValueKind;

const TAG_DELETE: u8 = 0;
const TAG_PUT: u8 = 1;
const TAG_DELETE_RANGE: u8 = 2;
/// Size of the WAL record header (version + op count).
const RECORD_HEADER_LEN: usize = 12;

/// An atomic group of writes, applied at one version by [`Engine::apply`](super::Engine::apply).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    rep: Vec<u8>,
    count: u32,
    ranges: u32,
}

/// One decoded op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BatchOp<'a> {
    Put(&'a [u8], &'a [u8]),
    Delete(&'a [u8]),
    DeleteRange(&'a [u8], &'a [u8]),
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        WriteBatch::default()
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        let (key, value) = (key.as_ref(), value.as_ref());
        self.rep.reserve(9 + key.len() + value.len());
        self.rep.push(TAG_PUT);
        put_bytes(&mut self.rep, key);
        put_bytes(&mut self.rep, value);
        self.count += 1;
    }

    /// Deletes `key`.
    pub fn delete(&mut self, key: impl AsRef<[u8]>) {
        self.rep.reserve(5 + key.as_ref().len());
        self.rep.push(TAG_DELETE);
        put_bytes(&mut self.rep, key.as_ref());
        self.count += 1;
    }

    /// Deletes every key in `[begin, end)`; an empty `end` means unbounded.
    pub fn delete_range(&mut self, begin: impl AsRef<[u8]>, end: impl AsRef<[u8]>) {
        self.rep.push(TAG_DELETE_RANGE);
        put_bytes(&mut self.rep, begin.as_ref());
        put_bytes(&mut self.rep, end.as_ref());
        self.count += 1;
        self.ranges += 1;
    }

    /// Number of ops.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// True if the batch has no ops.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Approximate encoded size in bytes.
    pub fn approximate_bytes(&self) -> usize {
        self.rep.len()
    }

    /// Removes every op.
    pub fn clear(&mut self) {
        self.rep.clear();
        self.count = 0;
        self.ranges = 0;
    }

    pub(crate) fn ops(&self) -> OpReader<'_> {
        OpReader {
            buf: &self.rep,
            pos: 0,
        }
    }

    /// Encodes the WAL record of this batch at `version`: its range deletes, then the last
    /// point op of each key. A point op followed in the batch by a range delete covering its
    /// key is dropped (the range deletes it); one after it stays, at the same version, which
    /// the range tombstone does not cover. An empty range (`begin ≥ end`) is dropped.
    pub(crate) fn wal_record(&self, version: u64) -> Result<Vec<u8>> {
        if self.ranges == 0 && !self.has_duplicate_keys() {
            let mut record = Vec::with_capacity(RECORD_HEADER_LEN + self.rep.len());
            record.extend_from_slice(&version.to_le_bytes());
            record.extend_from_slice(&self.count.to_le_bytes());
            record.extend_from_slice(&self.rep);
            return Ok(record);
        }
        let mut last: BTreeMap<&[u8], Option<&[u8]>> = BTreeMap::new();
        let mut ranges: Vec<(&[u8], &[u8])> = Vec::new();
        for op in self.ops() {
            match op.map_err(|(_, reason)| ferrisdb_core::Error::Internal(reason.into()))? {
                BatchOp::Put(key, value) => {
                    last.insert(key, Some(value));
                }
                BatchOp::Delete(key) => {
                    last.insert(key, None);
                }
                BatchOp::DeleteRange(begin, end) => {
                    if !end.is_empty() && begin >= end {
                        continue;
                    }
                    last.retain(|key, _| !in_range(key, begin, end));
                    if !ranges.contains(&(begin, end)) {
                        ranges.push((begin, end));
                    }
                }
            }
        }
        let count = u32::try_from(ranges.len() + last.len())
            .map_err(|_| ferrisdb_core::Error::InvalidArgument("too many ops in a batch".into()))?;
        let mut record = Vec::with_capacity(RECORD_HEADER_LEN + self.rep.len());
        record.extend_from_slice(&version.to_le_bytes());
        record.extend_from_slice(&count.to_le_bytes());
        for (begin, end) in ranges {
            record.push(TAG_DELETE_RANGE);
            put_bytes(&mut record, begin);
            put_bytes(&mut record, end);
        }
        for (key, value) in &last {
            match value {
                Some(value) => {
                    record.push(TAG_PUT);
                    put_bytes(&mut record, key);
                    put_bytes(&mut record, value);
                }
                None => {
                    record.push(TAG_DELETE);
                    put_bytes(&mut record, key);
                }
            }
        }
        Ok(record)
    }

    fn has_duplicate_keys(&self) -> bool {
        if self.count <= 1 {
            return false;
        }
        let mut keys: Vec<&[u8]> = self
            .ops()
            .filter_map(|op| match op {
                Ok(BatchOp::Put(k, _)) | Ok(BatchOp::Delete(k)) => Some(k),
                _ => None,
            })
            .collect();
        keys.sort_unstable();
        keys.windows(2).any(|w| w[0] == w[1])
    }
}

/// True if `key` lies in `[begin, end)` (`end` empty = unbounded).
fn in_range(key: &[u8], begin: &[u8], end: &[u8]) -> bool {
    key >= begin && (end.is_empty() || key < end)
}

fn put_bytes(dst: &mut Vec<u8>, bytes: &[u8]) {
    dst.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    dst.extend_from_slice(bytes);
}

/// A decoded WAL record: its version and ops.
pub(crate) struct WalRecord<'a> {
    pub version: u64,
    pub count: u32,
    pub ops: OpReader<'a>,
}

/// Splits a WAL record into header and ops; `Err((offset, reason))` if malformed.
pub(crate) fn decode_wal_record(record: &[u8]) -> Result<WalRecord<'_>, (usize, &'static str)> {
    let header = record
        .get(..RECORD_HEADER_LEN)
        .ok_or((0, "WAL batch record shorter than its header"))?;
    let mut version = [0u8; 8];
    version.copy_from_slice(&header[..8]);
    let mut count = [0u8; 4];
    count.copy_from_slice(&header[8..12]);
    Ok(WalRecord {
        version: u64::from_le_bytes(version),
        count: u32::from_le_bytes(count),
        ops: OpReader {
            buf: record,
            pos: RECORD_HEADER_LEN,
        },
    })
}

/// Walks encoded ops, checking every length against the bytes left.
pub(crate) struct OpReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> OpReader<'a> {
    fn bytes(&mut self) -> Result<&'a [u8], (usize, &'static str)> {
        let at = self.pos;
        let len_bytes = self
            .buf
            .get(at..at + 4)
            .ok_or((at, "op length runs past the record"))?;
        let mut word = [0u8; 4];
        word.copy_from_slice(len_bytes);
        let len = u32::from_le_bytes(word) as usize;
        let data = self
            .buf
            .get(at + 4..at + 4 + len)
            .ok_or((at, "op bytes run past the record"))?;
        self.pos = at + 4 + len;
        Ok(data)
    }

    fn op(&mut self) -> Result<BatchOp<'a>, (usize, &'static str)> {
        let at = self.pos;
        let tag = *self.buf.get(at).ok_or((at, "missing op tag"))?;
        self.pos += 1;
        match tag {
            TAG_PUT => {
                let key = self.bytes()?;
                Ok(BatchOp::Put(key, self.bytes()?))
            }
            TAG_DELETE => Ok(BatchOp::Delete(self.bytes()?)),
            TAG_DELETE_RANGE => {
                let begin = self.bytes()?;
                Ok(BatchOp::DeleteRange(begin, self.bytes()?))
            }
            _ => Err((at, "unknown op tag")),
        }
    }
}

impl<'a> Iterator for OpReader<'a> {
    type Item = Result<BatchOp<'a>, (usize, &'static str)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let op = self.op();
        if op.is_err() {
            self.pos = self.buf.len();
        }
        Some(op)
    }
}

impl<'a> BatchOp<'a> {
    /// Kind and value of a point op; `None` for a range op.
    pub(crate) fn point(&self) -> Option<(&'a [u8], ValueKind, &'a [u8])> {
        match *self {
            BatchOp::Put(k, v) => Some((k, ValueKind::Put, v)),
            BatchOp::Delete(k) => Some((k, ValueKind::Tombstone, &[])),
            BatchOp::DeleteRange(..) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (key, Some(value)) for a put, (key, None) for a delete, ("begin..end", None) for a
    /// range delete.
    type Ops = Vec<(Vec<u8>, Option<Vec<u8>>)>;

    fn decode_all(record: &[u8]) -> (u64, Ops) {
        let rec = decode_wal_record(record).unwrap();
        let ops: Vec<_> = rec
            .ops
            .map(|op| match op.unwrap() {
                BatchOp::Put(k, v) => (k.to_vec(), Some(v.to_vec())),
                BatchOp::Delete(k) => (k.to_vec(), None),
                BatchOp::DeleteRange(b, e) => ([b, b"..", e].concat(), None),
            })
            .collect();
        assert_eq!(rec.count as usize, ops.len());
        (rec.version, ops)
    }

    #[test]
    fn plain_batch_encodes_directly() {
        let mut b = WriteBatch::new();
        b.put("a", "1");
        b.delete("b");
        assert_eq!(b.len(), 2);
        let rec = b.wal_record(7).unwrap();
        let (v, ops) = decode_all(&rec);
        assert_eq!(v, 7);
        assert_eq!(
            ops,
            vec![(b"a".to_vec(), Some(b"1".to_vec())), (b"b".to_vec(), None)]
        );
    }

    #[test]
    fn later_ops_win_and_a_range_is_one_op() {
        let mut b = WriteBatch::new();
        b.put("a", "1");
        b.put("c", "old");
        b.delete_range("b", "d");
        b.delete_range("b", "d");
        b.put("a", "2");
        b.put("cc", "new");
        b.delete_range("x", "x");
        let rec = b.wal_record(3).unwrap();
        let (version, ops) = decode_all(&rec);
        assert_eq!(version, 3);
        // "c" (before the range, inside it) is gone; the empty range x..x and the repeated
        // b..d are dropped.
        assert_eq!(
            ops,
            vec![
                (b"b..d".to_vec(), None),
                (b"a".to_vec(), Some(b"2".to_vec())),
                (b"cc".to_vec(), Some(b"new".to_vec())),
            ]
        );
    }

    #[test]
    fn truncated_records_are_errors() {
        let mut b = WriteBatch::new();
        b.put("key", "value");
        let rec = b.wal_record(1).unwrap();
        for len in 0..rec.len() {
            let intact = decode_wal_record(&rec[..len]).is_ok_and(|r| {
                let count = r.count as usize;
                r.ops
                    .collect::<Result<Vec<_>, _>>()
                    .is_ok_and(|ops| ops.len() == count)
            });
            assert!(!intact, "len {len}");
        }
    }
}
