//! The byte layout of one commit-log record: the accepted mutations of one commit batch.
//!
//! A record is the payload of one WAL record (the WAL adds length and CRC framing, see
//! `docs/wal.md`). All integers are little-endian:
//!
//! | Offset | Size | Field          | Value                                                   |
//! |-------:|-----:|----------------|---------------------------------------------------------|
//! | 0      | 1    | format         | `1` ([`RECORD_FORMAT`])                                 |
//! | 1      | 8    | version        | the batch's commit version                              |
//! | 9      | 8    | prev_version   | commit version of the previous record in the log (0 for the first) |
//! | 17     | 4    | count          | number of mutations                                     |
//! | 21     | …    | mutations      | `count` × (u32 length, prost-encoded `ferrisdb.v1.Mutation`) |
//!
//! `prev_version` chains the records: recovery checks that each record follows the one before
//! it, and the first record left after truncation says which versions the log still holds.
//! Decoding never trusts a length before checking it against the bytes left, and validates every
//! mutation through `ferrisdb_proto::convert` (limits, ranges, known atomic ops).

use ferrisdb_core::{Error, Mutation, Version};
use ferrisdb_proto::v1;
use prost::Message;

/// The record format byte this code writes and reads.
pub const RECORD_FORMAT: u8 = 1;
/// Bytes before the first mutation.
pub const HEADER_BYTES: usize = 1 + 8 + 8 + 4;

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// The batch's commit version.
    pub version: Version,
    /// The version of the record before it in the log (0 for the first ever).
    pub prev_version: Version,
    /// The accepted mutations of the batch, in commit order.
    pub mutations: Vec<Mutation>,
}

/// Encodes a record (see the module table). Fails, writing nothing, if a count or a length
/// does not fit its 4-byte field (batches are bounded far below that, so it means a bug).
pub fn encode(
    version: Version,
    prev_version: Version,
    mutations: &[Mutation],
) -> Result<Vec<u8>, Error> {
    let wire: Vec<v1::Mutation> = mutations.iter().cloned().map(v1::Mutation::from).collect();
    let body: usize = wire.iter().map(|m| 4 + m.encoded_len()).sum();
    let mut out = Vec::with_capacity(HEADER_BYTES + body);
    out.push(RECORD_FORMAT);
    out.extend_from_slice(&version.get().to_le_bytes());
    out.extend_from_slice(&prev_version.get().to_le_bytes());
    out.extend_from_slice(&u32_field(wire.len(), "mutation count")?);
    for m in &wire {
        out.extend_from_slice(&u32_field(m.encoded_len(), "mutation length")?);
        m.encode(&mut out)
            .map_err(|e| Error::Internal(format!("encoding a commit-log mutation: {e}")))?;
    }
    Ok(out)
}

/// `n` as a little-endian u32 field, or an error naming `what` if it does not fit.
fn u32_field(n: usize, what: &str) -> Result<[u8; 4], Error> {
    u32::try_from(n).map(u32::to_le_bytes).map_err(|_| {
        Error::Internal(format!(
            "commit-log record: {what} {n} does not fit its 4-byte field"
        ))
    })
}

/// Decodes a record; the error text says what is wrong and where in the payload.
pub fn decode(payload: &[u8]) -> Result<LogRecord, String> {
    let mut r = Reader {
        buf: payload,
        pos: 0,
    };
    let format = r.take(1)?[0];
    if format != RECORD_FORMAT {
        return Err(format!(
            "unknown commit-log record format {format} (expected {RECORD_FORMAT})"
        ));
    }
    let version = Version(r.u64()?);
    let prev_version = Version(r.u64()?);
    if prev_version >= version {
        return Err(format!(
            "record version {version} is not after the previous record's {prev_version}"
        ));
    }
    let count = r.u32()? as usize;
    // Every mutation takes at least its 4-byte length: bound the allocation by the bytes left.
    if count > r.remaining() / 4 {
        return Err(format!(
            "record claims {count} mutations but only {} bytes follow",
            r.remaining()
        ));
    }
    let mut mutations = Vec::with_capacity(count);
    for i in 0..count {
        let at = r.pos;
        let len = r.u32()? as usize;
        let bytes = r.take(len)?;
        let wire = v1::Mutation::decode(bytes)
            .map_err(|e| format!("mutation {i} at payload offset {at} does not decode: {e}"))?;
        let m = Mutation::try_from(wire)
            .map_err(|e| format!("mutation {i} at payload offset {at} is invalid: {e}"))?;
        if m.is_versionstamped() {
            return Err(format!(
                "mutation {i} at payload offset {at} is a versionstamped set, which the log \
                 never holds (stamps are filled in before logging)"
            ));
        }
        mutations.push(m);
    }
    if r.remaining() != 0 {
        return Err(format!(
            "{} unexpected bytes after the last mutation",
            r.remaining()
        ));
    }
    Ok(LogRecord {
        version,
        prev_version,
        mutations,
    })
}

/// A bounds-checked cursor over a payload.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.remaining() {
            return Err(format!(
                "record truncated: need {n} bytes at payload offset {}, {} left",
                self.pos,
                self.remaining()
            ));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrisdb_core::AtomicOp;

    fn sample() -> Vec<Mutation> {
        vec![
            Mutation::Set {
                key: "k".into(),
                value: vec![0u8, 1, 255].into(),
            },
            Mutation::Clear { key: "".into() },
            Mutation::ClearRange {
                begin: "a".into(),
                end: "".into(),
            },
            Mutation::Atomic {
                op: AtomicOp::Add,
                key: "n".into(),
                operand: vec![1u8, 0].into(),
            },
        ]
    }

    #[test]
    fn round_trips_with_and_without_mutations() {
        for muts in [sample(), Vec::new()] {
            let bytes = encode(Version(10), Version(3), &muts).unwrap();
            assert_eq!(bytes[0], RECORD_FORMAT);
            let rec = decode(&bytes).unwrap();
            assert_eq!(rec.version, Version(10));
            assert_eq!(rec.prev_version, Version(3));
            assert_eq!(rec.mutations, muts);
        }
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = encode(Version(10), Version(3), &sample()).unwrap();
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).unwrap_err().contains("unexpected bytes"));
    }

    #[test]
    fn rejects_bad_format_chain_counts_and_invalid_mutations() {
        let mut bytes = encode(Version(10), Version(3), &sample()).unwrap();
        bytes[0] = 2;
        assert!(decode(&bytes).unwrap_err().contains("format"));

        let bytes = encode(Version(3), Version(3), &sample()).unwrap();
        assert!(decode(&bytes).unwrap_err().contains("not after"));

        let mut bytes = encode(Version(10), Version(3), &[]).unwrap();
        bytes[17..21].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&bytes).unwrap_err().contains("claims"));

        // A structurally valid record whose mutation breaks the key limit.
        let big = Mutation::Clear {
            key: vec![b'x'; ferrisdb_core::limits::MAX_KEY_BYTES + 1].into(),
        };
        let bytes = encode(Version(10), Version(3), &[big]).unwrap();
        assert!(decode(&bytes).unwrap_err().contains("invalid"));
    }

    #[test]
    fn flipped_bytes_never_panic() {
        let bytes = encode(Version(10), Version(3), &sample()).unwrap();
        for i in 0..bytes.len() {
            for bit in [0x01u8, 0x80] {
                let mut b = bytes.clone();
                b[i] ^= bit;
                let _ = decode(&b);
            }
        }
    }

    #[test]
    fn a_length_that_does_not_fit_is_an_error_not_a_silent_u32_max() {
        assert_eq!(u32_field(7, "x").unwrap(), [7, 0, 0, 0]);
        assert_eq!(
            u32_field(u32::MAX as usize, "x").unwrap(),
            u32::MAX.to_le_bytes()
        );
        let err = u32_field(u32::MAX as usize + 1, "mutation length").unwrap_err();
        assert!(
            err.to_string().contains("mutation length 4294967296"),
            "{err}"
        );
    }

    /// The worked example in `docs/commit-path.md` is exactly what the encoder writes.
    #[test]
    fn the_documented_example_is_byte_exact() {
        let doc = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/commit-path.md");
        let want = ferrisdb_core::doc_hex::doc_hex(doc, "commit-log-record-example");
        let mutations = [
            Mutation::Set {
                key: "k".into(),
                value: "v".into(),
            },
            Mutation::Clear { key: "x".into() },
        ];
        let got = encode(Version(1_000_002), Version(1_000_001), &mutations).unwrap();
        assert_eq!(
            got,
            want,
            "the encoder writes\n{}\nbut {doc} shows\n{}",
            ferrisdb_core::doc_hex::hex_lines(&got),
            ferrisdb_core::doc_hex::hex_lines(&want)
        );
        assert_eq!(decode(&want).unwrap().mutations, mutations);
    }
}
