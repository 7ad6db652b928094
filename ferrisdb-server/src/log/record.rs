//! The byte layout of one commit-log record: the accepted mutations of one commit batch.
//!
//! A record is the payload of one WAL record (the WAL adds length and CRC framing, see
//! `docs/wal.md`); the same bytes travel from the coordinator to each log server. The layout is
//! FerrisDB's own and does not follow the gRPC schema: an API change never changes the disk
//! format. All integers are little-endian:
//!
//! | Offset | Size | Field          | Value                                                   |
//! |-------:|-----:|----------------|---------------------------------------------------------|
//! | 0      | 1    | format         | `2` ([`RECORD_FORMAT`])                                 |
//! | 1      | 8    | version        | the batch's commit version                              |
//! | 9      | 8    | prev_version   | commit version of the previous record in the log (0 for the first) |
//! | 17     | 4    | count          | number of mutations                                     |
//! | 21     | …    | mutations      | `count` mutations, each a kind byte and its fields      |
//!
//! A mutation is one kind byte followed by its fields; a byte string is a u32 length and the
//! bytes:
//!
//! | Kind | Mutation      | Fields                                          |
//! |-----:|---------------|-------------------------------------------------|
//! | 1    | set           | key, value                                      |
//! | 2    | clear         | key                                             |
//! | 3    | clear range   | begin, end (empty end: to the end of the keys)  |
//! | 4    | atomic        | op byte ([`atomic_op_code`]), key, operand      |
//!
//! `prev_version` chains the records: recovery checks that each record follows the one before
//! it, and the first record left after truncation says which versions the log still holds.
//! Decoding never trusts a length before checking it against the bytes left, and validates every
//! mutation (key and value limits, range order). Format `1` (mutations as gRPC messages) is no
//! longer read: it is refused with an error naming it.

use bytes::Bytes;
use ferrisdb_core::{AtomicOp, Error, Mutation, Version};

/// The record format byte this code writes and reads.
pub const RECORD_FORMAT: u8 = 2;
/// Bytes before the first mutation.
pub const HEADER_BYTES: usize = 1 + 8 + 8 + 4;

const KIND_SET: u8 = 1;
const KIND_CLEAR: u8 = 2;
const KIND_CLEAR_RANGE: u8 = 3;
const KIND_ATOMIC: u8 = 4;

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

/// The byte an atomic operation is stored as. Fixed for ever: a new operation gets a new byte.
pub fn atomic_op_code(op: AtomicOp) -> u8 {
    match op {
        AtomicOp::Add => 1,
        AtomicOp::BitAnd => 2,
        AtomicOp::BitOr => 3,
        AtomicOp::BitXor => 4,
        AtomicOp::Max => 5,
        AtomicOp::Min => 6,
        AtomicOp::ByteMax => 7,
        AtomicOp::ByteMin => 8,
        AtomicOp::CompareAndClear => 9,
    }
}

/// The atomic operation stored as `code`, if any.
fn atomic_op_from_code(code: u8) -> Option<AtomicOp> {
    AtomicOp::ALL
        .into_iter()
        .find(|op| atomic_op_code(*op) == code)
}

/// Bytes `m` takes in a record.
fn encoded_len(m: &Mutation) -> usize {
    1 + match m {
        Mutation::Set { key, value } => 8 + key.len() + value.len(),
        Mutation::Clear { key } => 4 + key.len(),
        Mutation::ClearRange { begin, end } => 8 + begin.len() + end.len(),
        Mutation::Atomic { key, operand, .. } => 1 + 8 + key.len() + operand.len(),
        Mutation::SetVersionstampedKey { .. } | Mutation::SetVersionstampedValue { .. } => 0,
    }
}

/// Encodes a record (see the module tables). Fails, writing nothing, if a count or a length
/// does not fit its 4-byte field, or for a versionstamped mutation (the batcher fills stamps in
/// before logging): either means a bug.
pub fn encode(
    version: Version,
    prev_version: Version,
    mutations: &[Mutation],
) -> Result<Vec<u8>, Error> {
    let body: usize = mutations.iter().map(encoded_len).sum();
    let mut out = Vec::with_capacity(HEADER_BYTES + body);
    out.push(RECORD_FORMAT);
    out.extend_from_slice(&version.get().to_le_bytes());
    out.extend_from_slice(&prev_version.get().to_le_bytes());
    out.extend_from_slice(&u32_field(mutations.len(), "mutation count")?);
    for m in mutations {
        match m {
            Mutation::Set { key, value } => {
                out.push(KIND_SET);
                put_bytes(&mut out, key, "key")?;
                put_bytes(&mut out, value, "value")?;
            }
            Mutation::Clear { key } => {
                out.push(KIND_CLEAR);
                put_bytes(&mut out, key, "key")?;
            }
            Mutation::ClearRange { begin, end } => {
                out.push(KIND_CLEAR_RANGE);
                put_bytes(&mut out, begin, "range begin")?;
                put_bytes(&mut out, end, "range end")?;
            }
            Mutation::Atomic { op, key, operand } => {
                out.push(KIND_ATOMIC);
                out.push(atomic_op_code(*op));
                put_bytes(&mut out, key, "key")?;
                put_bytes(&mut out, operand, "operand")?;
            }
            Mutation::SetVersionstampedKey { .. } | Mutation::SetVersionstampedValue { .. } => {
                return Err(Error::Internal(
                    "a versionstamped mutation reached the commit log unfilled".into(),
                ));
            }
        }
    }
    Ok(out)
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8], what: &str) -> Result<(), Error> {
    out.extend_from_slice(&u32_field(bytes.len(), what)?);
    out.extend_from_slice(bytes);
    Ok(())
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
            "unknown commit-log record format {format} (expected {RECORD_FORMAT}; format 1 logs \
             were written before the log had its own layout and are not read)"
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
    // Every mutation takes at least a kind byte and one 4-byte length: bound the allocation by
    // the bytes left.
    if count > r.remaining() / 5 {
        return Err(format!(
            "record claims {count} mutations but only {} bytes follow",
            r.remaining()
        ));
    }
    let mut mutations = Vec::with_capacity(count);
    for i in 0..count {
        let at = r.pos;
        let m = read_mutation(&mut r)
            .map_err(|e| format!("mutation {i} at payload offset {at}: {e}"))?;
        m.validate()
            .map_err(|e| format!("mutation {i} at payload offset {at} is invalid: {e}"))?;
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

fn read_mutation(r: &mut Reader<'_>) -> Result<Mutation, String> {
    let kind = r.take(1)?[0];
    Ok(match kind {
        KIND_SET => Mutation::Set {
            key: r.bytes()?,
            value: r.bytes()?,
        },
        KIND_CLEAR => Mutation::Clear { key: r.bytes()? },
        KIND_CLEAR_RANGE => Mutation::ClearRange {
            begin: r.bytes()?,
            end: r.bytes()?,
        },
        KIND_ATOMIC => {
            let code = r.take(1)?[0];
            let op = atomic_op_from_code(code)
                .ok_or_else(|| format!("unknown atomic operation {code}"))?;
            Mutation::Atomic {
                op,
                key: r.bytes()?,
                operand: r.bytes()?,
            }
        }
        other => return Err(format!("unknown mutation kind {other}")),
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

    /// A u32 length and that many bytes.
    fn bytes(&mut self) -> Result<Bytes, String> {
        let len = self.u32()? as usize;
        Ok(Bytes::copy_from_slice(self.take(len)?))
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
        bytes[0] = 1;
        assert!(decode(&bytes).unwrap_err().contains("format 1"));

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
    fn every_atomic_op_round_trips_and_unknown_kinds_and_ops_are_refused() {
        let muts: Vec<Mutation> = AtomicOp::ALL
            .into_iter()
            .map(|op| Mutation::Atomic {
                op,
                key: "n".into(),
                operand: "1".into(),
            })
            .collect();
        let bytes = encode(Version(10), Version(3), &muts).unwrap();
        assert_eq!(decode(&bytes).unwrap().mutations, muts);
        let codes: std::collections::BTreeSet<u8> =
            AtomicOp::ALL.into_iter().map(atomic_op_code).collect();
        assert_eq!(codes.len(), AtomicOp::ALL.len(), "codes are distinct");

        let one = [Mutation::Atomic {
            op: AtomicOp::Add,
            key: "n".into(),
            operand: "1".into(),
        }];
        let mut bytes = encode(Version(10), Version(3), &one).unwrap();
        bytes[HEADER_BYTES + 1] = 200;
        assert!(
            decode(&bytes)
                .unwrap_err()
                .contains("unknown atomic operation 200")
        );
        bytes[HEADER_BYTES] = 9;
        assert!(
            decode(&bytes)
                .unwrap_err()
                .contains("unknown mutation kind 9")
        );
    }

    #[test]
    fn an_unfilled_versionstamped_mutation_is_never_encoded() {
        let stamped = Mutation::SetVersionstampedValue {
            key: "k".into(),
            value: vec![0u8; 14].into(),
        };
        let err = encode(Version(10), Version(3), &[stamped]).unwrap_err();
        assert!(err.to_string().contains("versionstamped"), "{err}");
    }

    proptest::proptest! {
        /// Any batch of mutations the log may hold decodes to itself.
        #[test]
        fn random_batches_round_trip(
            muts in proptest::collection::vec(
                (0u8..4, proptest::collection::vec(proptest::num::u8::ANY, 0..12),
                 proptest::collection::vec(proptest::num::u8::ANY, 0..40), 0usize..9),
                0..20),
            version in 1u64..u64::MAX,
        ) {
            let muts: Vec<Mutation> = muts
                .into_iter()
                .map(|(kind, a, b, op)| match kind {
                    0 => Mutation::Set { key: a.into(), value: b.into() },
                    1 => Mutation::Clear { key: a.into() },
                    2 => {
                        let (x, y) = if b.is_empty() || a <= b { (a, b) } else { (b, a) };
                        Mutation::ClearRange { begin: x.into(), end: y.into() }
                    }
                    _ => Mutation::Atomic { op: AtomicOp::ALL[op], key: a.into(), operand: b.into() },
                })
                .collect();
            let bytes = encode(Version(version), Version(version - 1), &muts).unwrap();
            let rec = decode(&bytes).unwrap();
            proptest::prop_assert_eq!(rec.mutations, muts);
            proptest::prop_assert_eq!(rec.version, Version(version));
        }
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
