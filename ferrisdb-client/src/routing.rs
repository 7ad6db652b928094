//! Shard routing: which shard serves the next piece of a range read, and where the read
//! resumes after it.
//!
//! A range read is served one shard at a time, in read order: forward reads start with the
//! shard holding `begin`, reverse reads with the shard holding the last key before `end`. Each
//! piece is clipped to its shard, so no storage server is ever asked for keys it does not hold.
//! Successive range reads start at successive replicas of a shard ([`replicas_from`]), so a
//! shard's replicas share its scans. Pure functions over a [`ShardMap`]; no I/O.

use bytes::Bytes;
use ferrisdb_core::{Error, Shard, ShardMap, key_after, keys::escape};

use crate::KeyValue;

/// One storage request of a range read: a range inside one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Piece<'a> {
    /// The shard serving the piece.
    pub shard: &'a Shard,
    /// First key asked for.
    pub begin: Bytes,
    /// Exclusive end asked for (empty: unbounded).
    pub end: Bytes,
    /// Where the whole read resumes when the shard returns everything it holds in the piece:
    /// the next shard's begin (forward) or this shard's begin (reverse); `None` when the piece
    /// reaches the end of the read.
    pub resume: Option<Bytes>,
}

/// The piece of `[begin, end)` (empty end: unbounded) the next storage request covers.
pub(crate) fn locate<'a>(
    map: &'a ShardMap,
    begin: &[u8],
    end: &[u8],
    reverse: bool,
) -> Result<Piece<'a>, Error> {
    let no_shard = || {
        Error::Unavailable(format!(
            "no shard holds the keys at {:?} (shard map version {})",
            escape(begin),
            map.version
        ))
    };
    if !reverse {
        let i = map.shard_index(begin).ok_or_else(no_shard)?;
        let shard = &map.shards[i];
        let shard_end = &shard.range.end;
        let stops_early = !shard_end.is_empty() && (end.is_empty() || &shard_end[..] < end);
        return Ok(Piece {
            shard,
            begin: Bytes::copy_from_slice(begin),
            end: if stops_early {
                shard_end.clone()
            } else {
                Bytes::copy_from_slice(end)
            },
            resume: stops_early.then(|| shard_end.clone()),
        });
    }
    // Reverse: the last shard beginning before `end` holds the last key of the range.
    let count = if end.is_empty() {
        map.shards.len()
    } else {
        map.shards.partition_point(|s| &s.range.begin[..] < end)
    };
    let i = count.checked_sub(1).ok_or_else(no_shard)?;
    let shard = &map.shards[i];
    let starts_late = &shard.range.begin[..] > begin;
    Ok(Piece {
        shard,
        begin: if starts_late {
            shard.range.begin.clone()
        } else {
            Bytes::copy_from_slice(begin)
        },
        end: Bytes::copy_from_slice(end),
        resume: starts_late.then(|| shard.range.begin.clone()),
    })
}

/// Where a read of `[begin, end)` resumes after a storage request for `piece` returned `kvs`
/// with `limit` (0: none). A full batch resumes right after its last key (forward) or at it
/// (reverse, as the new exclusive end); otherwise at the piece's own resume point.
pub(crate) fn resume_after(
    piece: &Piece<'_>,
    kvs: &[KeyValue],
    limit: usize,
    begin: &[u8],
    end: &[u8],
    reverse: bool,
) -> Option<Bytes> {
    let full = limit > 0 && kvs.len() >= limit;
    let Some(last) = kvs.last().filter(|_| full) else {
        return piece.resume.clone();
    };
    if reverse {
        // Nothing lies before the read's begin (and nothing before the empty key).
        (&last.key[..] > begin).then(|| last.key.clone())
    } else {
        let next = key_after(&last.key);
        (end.is_empty() || &next[..] < end).then(|| Bytes::from(next))
    }
}

/// The replicas to try for one read, `turn` choosing the first: `replicas` rotated left by
/// `turn` modulo their number, so every replica is tried once and successive turns start at
/// successive replicas.
pub(crate) fn replicas_from(replicas: &[String], turn: usize) -> Vec<String> {
    let first = turn.checked_rem(replicas.len()).unwrap_or(0);
    replicas[first..]
        .iter()
        .chain(&replicas[..first])
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successive_turns_start_at_successive_replicas_and_try_each_once() {
        let ids: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let firsts: Vec<String> = (0..6).map(|t| replicas_from(&ids, t)[0].clone()).collect();
        assert_eq!(firsts, ["a", "b", "c", "a", "b", "c"]);
        assert_eq!(replicas_from(&ids, 4), ["b", "c", "a"]);
        assert_eq!(replicas_from(&ids, usize::MAX).len(), 3);
        assert!(replicas_from(&[], 7).is_empty());
    }

    fn map() -> ShardMap {
        let ids: Vec<String> = ["s0", "s1", "s2"].map(String::from).to_vec();
        ShardMap::bootstrap(&ids, 1, 1).unwrap()
    }

    fn piece_of(m: &ShardMap, b: &[u8], e: &[u8], rev: bool) -> (String, Vec<u8>, Vec<u8>) {
        let p = locate(m, b, e, rev).unwrap();
        let resume = p
            .resume
            .map(|r| r.to_vec())
            .unwrap_or_else(|| b"-".to_vec());
        (
            p.shard.storage_ids[0].clone(),
            p.begin.to_vec(),
            [p.end.to_vec(), resume].concat(),
        )
    }

    #[test]
    fn forward_reads_walk_shards_in_order() {
        let m = map();
        // Whole key space: s0 up to 0x55, resume there.
        let mut begin = Vec::new();
        let mut seen = Vec::new();
        loop {
            let p = locate(&m, &begin, b"", false).unwrap();
            seen.push((
                p.shard.storage_ids[0].clone(),
                p.begin.to_vec(),
                p.end.to_vec(),
            ));
            match p.resume {
                Some(r) => begin = r.to_vec(),
                None => break,
            }
        }
        assert_eq!(
            seen,
            vec![
                ("s0".into(), vec![], vec![0x55]),
                ("s1".into(), vec![0x55], vec![0xaa]),
                ("s2".into(), vec![0xaa], vec![]),
            ]
        );
        // A range inside one shard needs one piece.
        assert_eq!(
            piece_of(&m, b"\x60", b"\x70", false),
            ("s1".into(), vec![0x60], b"\x70-".to_vec())
        );
    }

    #[test]
    fn reverse_reads_walk_shards_backwards() {
        let m = map();
        let mut end = Vec::new();
        let mut seen = Vec::new();
        loop {
            let p = locate(&m, b"\x10", &end, true).unwrap();
            seen.push((
                p.shard.storage_ids[0].clone(),
                p.begin.to_vec(),
                p.end.to_vec(),
            ));
            match p.resume {
                Some(r) => end = r.to_vec(),
                None => break,
            }
        }
        assert_eq!(
            seen,
            vec![
                ("s2".into(), vec![0xaa], vec![]),
                ("s1".into(), vec![0x55], vec![0xaa]),
                ("s0".into(), vec![0x10], vec![0x55]),
            ]
        );
        // An end exactly at a boundary starts in the shard before it.
        assert_eq!(piece_of(&m, b"", b"\xaa", true).0, "s1");
    }

    #[test]
    fn full_batches_resume_next_to_the_last_key() {
        let m = map();
        let kvs = vec![
            KeyValue {
                key: Bytes::from_static(b"\x01"),
                value: Bytes::new(),
            },
            KeyValue {
                key: Bytes::from_static(b"\x02"),
                value: Bytes::new(),
            },
        ];
        let p = locate(&m, b"", b"", false).unwrap();
        assert_eq!(
            resume_after(&p, &kvs, 2, b"", b"", false),
            Some(Bytes::from_static(b"\x02\x00"))
        );
        assert_eq!(resume_after(&p, &kvs, 3, b"", b"", false), p.resume);
        // Forward: nothing is left when the key after the last one is the end.
        assert_eq!(resume_after(&p, &kvs, 2, b"", b"\x02\x00", false), None);
        let rev: Vec<_> = kvs.into_iter().rev().collect();
        let p = locate(&m, b"", b"\x10", true).unwrap();
        assert_eq!(
            resume_after(&p, &rev, 2, b"", b"\x10", true),
            Some(Bytes::from_static(b"\x01"))
        );
        assert_eq!(resume_after(&p, &rev, 2, b"\x01", b"\x10", true), None);
    }

    #[test]
    fn an_empty_map_is_unavailable() {
        let m = ShardMap::default();
        assert!(matches!(
            locate(&m, b"a", b"", false),
            Err(Error::Unavailable(_))
        ));
        assert!(matches!(
            locate(&m, b"a", b"", true),
            Err(Error::Unavailable(_))
        ));
    }
}
