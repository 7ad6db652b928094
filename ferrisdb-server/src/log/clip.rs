//! Clipping committed mutations to the key ranges a storage server holds (`PullMutations`).
//!
//! Point mutations (set, clear, atomic) are kept when their key lies in one of the ranges; a
//! `ClearRange` becomes one `ClearRange` per range it intersects, cut to the intersection. The
//! caller's ranges are first normalized (sorted, empty ones dropped, overlapping or adjacent
//! ones merged) so a clear is never emitted twice for the same keys. An empty range end means
//! the end of the key space throughout.

use std::cmp::Ordering;

use bytes::Bytes;
use ferrisdb_core::{KeyRange, Mutation};

/// Compares two range ends, an empty end meaning "unbounded" (greater than every key).
fn cmp_end(a: &[u8], b: &[u8]) -> Ordering {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.cmp(b),
    }
}

/// Sorts the ranges, drops empty ones and merges overlapping or touching ones.
pub fn normalize(mut ranges: Vec<KeyRange>) -> Vec<KeyRange> {
    ranges.retain(|r| !r.is_empty());
    ranges.sort_by(|a, b| a.begin.cmp(&b.begin));
    let mut out: Vec<KeyRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        if let Some(last) = out.last_mut() {
            // Touching or overlapping: last.end >= r.begin (an unbounded end covers everything).
            if last.end.is_empty() || last.end[..] >= r.begin[..] {
                if cmp_end(&r.end, &last.end) == Ordering::Greater {
                    last.end = r.end;
                }
                continue;
            }
        }
        out.push(r);
    }
    out
}

/// True if `key` lies in one of the normalized `ranges`.
fn covered(ranges: &[KeyRange], key: &[u8]) -> bool {
    // The last range starting at or before the key is the only candidate.
    let idx = ranges.partition_point(|r| r.begin[..] <= *key);
    idx > 0 && ranges[idx - 1].contains(key)
}

/// Appends the parts of `m` that fall in the normalized `ranges` to `out`.
pub fn clip_into(ranges: &[KeyRange], m: &Mutation, out: &mut Vec<Mutation>) {
    match m {
        Mutation::Set { key, .. } | Mutation::Clear { key } | Mutation::Atomic { key, .. } => {
            if covered(ranges, key) {
                out.push(m.clone());
            }
        }
        Mutation::ClearRange { begin, end } => {
            let clear = KeyRange {
                begin: begin.clone(),
                end: end.clone(),
            };
            for r in ranges.iter().filter(|r| r.intersects(&clear)) {
                let b: Bytes = if r.begin > clear.begin {
                    r.begin.clone()
                } else {
                    clear.begin.clone()
                };
                let e: Bytes = if cmp_end(&r.end, &clear.end) == Ordering::Less {
                    r.end.clone()
                } else {
                    clear.end.clone()
                };
                out.push(Mutation::ClearRange { begin: b, end: e });
            }
        }
        // Never in the log: the batcher logs these as plain sets, and log records holding
        // one are refused as damaged when read back.
        Mutation::SetVersionstampedKey { .. } | Mutation::SetVersionstampedValue { .. } => {}
    }
}

/// The parts of `mutations` that fall in the normalized `ranges`, in order.
pub fn clip(ranges: &[KeyRange], mutations: &[Mutation]) -> Vec<Mutation> {
    let mut out = Vec::new();
    for m in mutations {
        clip_into(ranges, m, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(b: &'static str, e: &'static str) -> KeyRange {
        KeyRange::new(b, e).unwrap()
    }

    fn set(k: &'static str) -> Mutation {
        Mutation::Set {
            key: k.into(),
            value: "v".into(),
        }
    }

    fn cr(b: &'static str, e: &'static str) -> Mutation {
        Mutation::ClearRange {
            begin: b.into(),
            end: e.into(),
        }
    }

    #[test]
    fn normalize_sorts_merges_and_drops_empty() {
        let got = normalize(vec![
            r("m", "p"),
            r("a", "c"),
            r("b", "d"),
            r("d", "e"),
            r("x", "x"),
            r("o", "q"),
        ]);
        assert_eq!(got, vec![r("a", "e"), r("m", "q")]);
        assert_eq!(normalize(vec![r("c", ""), r("a", "d")]), vec![r("a", "")]);
        assert_eq!(normalize(vec![r("a", ""), r("b", "c")]), vec![r("a", "")]);
    }

    #[test]
    fn point_mutations_kept_only_inside_ranges() {
        let ranges = normalize(vec![r("b", "d"), r("x", "")]);
        let muts = vec![
            set("a"),
            set("b"),
            Mutation::Clear { key: "c".into() },
            set("d"),
            Mutation::Atomic {
                op: ferrisdb_core::AtomicOp::Add,
                key: "zz".into(),
                operand: "1".into(),
            },
            set(""),
        ];
        let got = clip(&ranges, &muts);
        assert_eq!(got, vec![muts[1].clone(), muts[2].clone(), muts[4].clone()]);
    }

    #[test]
    fn clear_range_is_cut_to_each_intersection() {
        let ranges = normalize(vec![r("b", "d"), r("f", "h"), r("x", "")]);
        assert_eq!(
            clip(&ranges, &[cr("a", "")]),
            vec![cr("b", "d"), cr("f", "h"), cr("x", "")]
        );
        assert_eq!(
            clip(&ranges, &[cr("c", "g")]),
            vec![cr("c", "d"), cr("f", "g")]
        );
        assert_eq!(clip(&ranges, &[cr("d", "f")]), vec![]);
        assert_eq!(clip(&ranges, &[cr("y", "z")]), vec![cr("y", "z")]);
        assert_eq!(
            clip(&[KeyRange::all()], &[cr("a", "b")]),
            vec![cr("a", "b")]
        );
        assert!(clip(&[], &[cr("", ""), set("a")]).is_empty());
    }

    #[test]
    fn clipping_matches_a_brute_force_model() {
        // Every key of a small alphabet: the clipped output must cover exactly the keys that
        // the original covers and the ranges contain.
        let keys: Vec<&[u8]> = vec![b"", b"a", b"b", b"c", b"d", b"e", b"f"];
        let bounds = ["", "a", "b", "c", "d", "e", "f"];
        let ranges = normalize(vec![r("a", "c"), r("e", "")]);
        for &b in &bounds {
            for &e in &bounds {
                if !e.is_empty() && b > e {
                    continue;
                }
                let m = cr(b, e);
                let clipped = clip(&ranges, &[m]);
                for key in &keys {
                    let original = r(b, e).contains(key);
                    let inside = ranges.iter().any(|x| x.contains(key));
                    let got = clipped.iter().any(|c| match c {
                        Mutation::ClearRange { begin, end } => KeyRange {
                            begin: begin.clone(),
                            end: end.clone(),
                        }
                        .contains(key),
                        _ => false,
                    });
                    assert_eq!(got, original && inside, "clear [{b},{e}) key {key:?}");
                }
            }
        }
    }
}
