//! The transaction's local write map: every write buffered until commit, in a form reads can
//! merge with storage results (read-your-writes).
//!
//! Invariants:
//! - `cleared` holds disjoint, non-adjacent ranges sorted by begin (an empty end is unbounded).
//! - A point entry is always newer than any cleared range covering its key: `clear_range`
//!   removes the point entries it covers, so an entry, when present, decides the key.
//! - An [`Entry::Atomic`] entry only exists where the base value is unknown locally: never inside
//!   a cleared range and never on top of a `Set`/`Clear` (those are folded at once with
//!   [`AtomicOp::apply`]).
//!
//! - Versionstamped writes: a [`Entry::VersionstampedValue`] key is unreadable in the
//!   transaction (its value exists only once committed); versionstamped keys are kept apart,
//!   in write order, since their keys are unknown until the commit (reads never see them).
//!
//! It never talks to the network: callers pass storage results in.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;
use ferrisdb_core::{AtomicOp, KeyRange, Mutation};

use crate::KeyValue;

/// What the transaction wrote to one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    /// The key was set to this value.
    Set(Bytes),
    /// The key was cleared.
    Clear,
    /// Atomic operations to apply, in order, on top of the stored value.
    Atomic(Vec<(AtomicOp, Bytes)>),
    /// Set to this value with its versionstamp placeholder (and trailing offset) filled in at
    /// commit: unreadable until then.
    VersionstampedValue(Bytes),
}

impl Entry {
    /// The key's value given the value below the entry (`base`).
    fn value(&self, base: Option<&[u8]>) -> Option<Bytes> {
        match self {
            Entry::Set(v) => Some(v.clone()),
            Entry::Clear => None,
            Entry::Atomic(ops) => apply_ops(ops, base.map(Bytes::copy_from_slice)),
            // Never merged: reads of the key fail first (see `WriteMap::unreadable`).
            Entry::VersionstampedValue(_) => None,
        }
    }
}

/// Folds atomic operations over a starting value.
fn apply_ops(ops: &[(AtomicOp, Bytes)], mut value: Option<Bytes>) -> Option<Bytes> {
    for (op, operand) in ops {
        value = op.apply(value.as_deref(), operand).map(Bytes::from);
    }
    value
}

/// True if `a` (an exclusive end, empty = unbounded) is at or after `key`.
fn end_reaches(end: &[u8], key: &[u8]) -> bool {
    end.is_empty() || end >= key
}

/// The later of two exclusive ends (empty = unbounded).
fn max_end(a: Bytes, b: &Bytes) -> Bytes {
    if a.is_empty() || b.is_empty() {
        Bytes::new()
    } else if *b > a {
        b.clone()
    } else {
        a
    }
}

/// True if `[begin, end)` (empty end: unbounded) contains all of `range`.
fn covers(begin: &[u8], end: &[u8], range: &KeyRange) -> bool {
    range.begin.as_ref() >= begin
        && (end.is_empty() || (!range.end.is_empty() && range.end.as_ref() <= end))
}

/// Bounds of `[begin, end)` for `BTreeMap::range`.
fn bounds<'a>(begin: &'a [u8], end: &'a [u8]) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    let upper = if end.is_empty() {
        Bound::Unbounded
    } else {
        Bound::Excluded(end)
    };
    (Bound::Included(begin), upper)
}

/// The buffered writes of a transaction.
#[derive(Debug, Clone, Default)]
pub(crate) struct WriteMap {
    entries: BTreeMap<Bytes, Entry>,
    /// begin → end of each cleared range.
    cleared: BTreeMap<Bytes, Bytes>,
    /// Versionstamped keys (with placeholder and offset), their values and every key each
    /// can become, in write order.
    stamped_keys: Vec<(Bytes, Bytes, KeyRange)>,
}

impl WriteMap {
    /// Records a set.
    pub fn set(&mut self, key: Bytes, value: Bytes) {
        self.entries.insert(key, Entry::Set(value));
    }

    /// Records a clear of one key.
    pub fn clear(&mut self, key: Bytes) {
        self.entries.insert(key, Entry::Clear);
    }

    /// Records a clear of `[begin, end)` (empty end: to the end of the key space).
    pub fn clear_range(&mut self, begin: Bytes, end: Bytes) {
        if !end.is_empty() && begin >= end {
            return;
        }
        let covered: Vec<Bytes> = self
            .entries
            .range::<[u8], _>(bounds(&begin, &end))
            .map(|(k, _)| k.clone())
            .collect();
        for k in covered {
            self.entries.remove(&k);
        }
        // A versionstamped key the clear surely covers is cleared too (callers refuse a clear
        // that covers only some of the keys one can become: `splits_stamped_key`).
        self.stamped_keys
            .retain(|(_, _, possible)| !covers(&begin, &end, possible));
        // Coalesce with every cleared range overlapping or touching [begin, end).
        let mut new_begin = begin;
        let mut new_end = end;
        let before = self
            .cleared
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(&new_begin[..])))
            .next_back();
        if let Some((b, e)) = before.filter(|(_, e)| end_reaches(e, &new_begin)) {
            let (b, e) = (b.clone(), e.clone());
            new_begin = b;
            new_end = max_end(new_end, &e);
        }
        let touching: Vec<(Bytes, Bytes)> = self
            .cleared
            .range::<[u8], _>((Bound::Included(&new_begin[..]), Bound::Unbounded))
            .take_while(|(b, _)| end_reaches(&new_end, b))
            .map(|(b, e)| (b.clone(), e.clone()))
            .collect();
        for (b, e) in touching {
            self.cleared.remove(&b);
            new_end = max_end(new_end, &e);
        }
        self.cleared.insert(new_begin, new_end);
    }

    /// Records an atomic operation, folding it into a locally known value when there is one.
    pub fn atomic(&mut self, op: AtomicOp, key: Bytes, operand: Bytes) {
        let cleared = self.is_cleared(&key);
        let known_base = match self.entries.get_mut(&key) {
            Some(Entry::Atomic(ops)) => {
                ops.push((op, operand));
                return;
            }
            Some(Entry::Set(v)) => Some(Some(v.clone())),
            Some(Entry::Clear) => Some(None),
            // `Transaction::atomic_op` refuses this before it gets here: there is no value
            // to fold into, and replacing the entry would lose the versionstamped set.
            Some(Entry::VersionstampedValue(_)) => return,
            None if cleared => Some(None),
            None => None,
        };
        let entry = match known_base {
            Some(base) => match op.apply(base.as_deref(), &operand) {
                Some(v) => Entry::Set(Bytes::from(v)),
                None => Entry::Clear,
            },
            None => Entry::Atomic(vec![(op, operand)]),
        };
        self.entries.insert(key, entry);
    }

    /// True if `[begin, end)` covers some but not all of the keys a pending versionstamped
    /// key can become: whether the clear would remove it depends on the stamp.
    pub fn splits_stamped_key(&self, begin: &[u8], end: &[u8]) -> bool {
        let clear = KeyRange {
            begin: Bytes::copy_from_slice(begin),
            end: Bytes::copy_from_slice(end),
        };
        self.stamped_keys.iter().any(|(_, _, possible)| {
            possible.intersects(&clear) && !covers(&clear.begin, &clear.end, possible)
        })
    }

    /// Records a versionstamped key; `possible` is every key it can become.
    pub fn set_versionstamped_key(&mut self, key: Bytes, value: Bytes, possible: KeyRange) {
        self.stamped_keys.push((key, value, possible));
    }

    /// Records a set of `key` to a versionstamped value.
    pub fn set_versionstamped_value(&mut self, key: Bytes, value: Bytes) {
        self.entries.insert(key, Entry::VersionstampedValue(value));
    }

    /// True if `key` was set to a versionstamped value (its value is unknown until commit).
    pub fn unreadable(&self, key: &[u8]) -> bool {
        matches!(self.entries.get(key), Some(Entry::VersionstampedValue(_)))
    }

    /// The first unreadable key in `[begin, end)`, if any.
    pub fn first_unreadable(&self, begin: &[u8], end: &[u8]) -> Option<Bytes> {
        self.entries
            .range::<[u8], _>(bounds(begin, end))
            .find(|(_, e)| matches!(e, Entry::VersionstampedValue(_)))
            .map(|(k, _)| k.clone())
    }

    /// True if a cleared range covers `key`.
    pub fn is_cleared(&self, key: &[u8]) -> bool {
        self.cleared
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()
            .is_some_and(|(_, e)| e.is_empty() || &e[..] > key)
    }

    /// The key's value if the local writes decide it without the stored value.
    pub fn known(&self, key: &[u8]) -> Option<Option<Bytes>> {
        match self.entries.get(key) {
            Some(Entry::Set(v)) => Some(Some(v.clone())),
            Some(Entry::Clear) => Some(None),
            Some(Entry::Atomic(_) | Entry::VersionstampedValue(_)) => None,
            None if self.is_cleared(key) => Some(None),
            None => None,
        }
    }

    /// The key's value as the transaction sees it, given its stored value.
    pub fn resolve(&self, key: &[u8], stored: Option<Bytes>) -> Option<Bytes> {
        match self.entries.get(key) {
            Some(entry) => entry.value(stored.as_deref()),
            None if self.is_cleared(key) => None,
            None => stored,
        }
    }

    /// Merges a storage read of the region `[begin, end)` with the local writes there.
    ///
    /// `stored` must hold every stored pair of the region, in read order (descending keys when
    /// `reverse`). The result is what the transaction sees in the region, in read order.
    pub fn merge(
        &self,
        begin: &[u8],
        end: &[u8],
        stored: Vec<KeyValue>,
        reverse: bool,
    ) -> Vec<KeyValue> {
        let range = self.entries.range::<[u8], _>(bounds(begin, end));
        let mut local: Box<dyn Iterator<Item = (&Bytes, &Entry)>> = if reverse {
            Box::new(range.rev())
        } else {
            Box::new(range)
        };
        let mut stored = stored.into_iter().peekable();
        let mut next_local = local.next();
        let mut out = Vec::with_capacity(stored.len());
        loop {
            // Which side holds the next key in read order.
            let order = match (stored.peek(), next_local) {
                (None, None) => break,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(kv), Some((k, _))) => {
                    let o = kv.key.cmp(k);
                    if reverse { o.reverse() } else { o }
                }
            };
            match (order, next_local) {
                (std::cmp::Ordering::Less, _) | (_, None) => {
                    if let Some(kv) = stored.next().filter(|kv| !self.is_cleared(&kv.key)) {
                        out.push(kv);
                    }
                }
                (std::cmp::Ordering::Greater, Some((k, entry))) => {
                    // Not stored: the entry applies on top of nothing (an atomic entry is never
                    // inside a cleared range, so "not stored" is its true base).
                    if let Some(value) = entry.value(None) {
                        out.push(KeyValue {
                            key: k.clone(),
                            value,
                        });
                    }
                    next_local = local.next();
                }
                (std::cmp::Ordering::Equal, Some((k, entry))) => {
                    let kv = stored.next();
                    if let Some(value) = entry.value(kv.as_ref().map(|kv| &kv.value[..])) {
                        out.push(KeyValue {
                            key: k.clone(),
                            value,
                        });
                    }
                    next_local = local.next();
                }
            }
        }
        out
    }

    /// The buffered writes as commit mutations: cleared ranges first, then the point entries
    /// (each newer than any clear covering it), which replays to the same final state, then
    /// the versionstamped keys in write order.
    pub fn mutations(&self) -> Vec<Mutation> {
        let ranges = self.cleared.iter().map(|(b, e)| Mutation::ClearRange {
            begin: b.clone(),
            end: e.clone(),
        });
        let points = self.entries.iter().flat_map(|(k, e)| -> Vec<Mutation> {
            match e {
                Entry::Set(v) => vec![Mutation::Set {
                    key: k.clone(),
                    value: v.clone(),
                }],
                Entry::Clear => vec![Mutation::Clear { key: k.clone() }],
                Entry::Atomic(ops) => ops
                    .iter()
                    .map(|(op, operand)| Mutation::Atomic {
                        op: *op,
                        key: k.clone(),
                        operand: operand.clone(),
                    })
                    .collect(),
                Entry::VersionstampedValue(v) => vec![Mutation::SetVersionstampedValue {
                    key: k.clone(),
                    value: v.clone(),
                }],
            }
        });
        let stamped =
            self.stamped_keys
                .iter()
                .map(|(key, value, _)| Mutation::SetVersionstampedKey {
                    key: key.clone(),
                    value: value.clone(),
                });
        ranges.chain(points).chain(stamped).collect()
    }

    /// The write conflict ranges implied by the writes: each written key and cleared range.
    pub fn write_ranges(&self) -> Vec<KeyRange> {
        let ranges = self.cleared.iter().map(|(b, e)| KeyRange {
            begin: b.clone(),
            end: e.clone(),
        });
        let points = self.entries.keys().map(|k| KeyRange::single(k));
        let stamped = self
            .stamped_keys
            .iter()
            .map(|(_, _, possible)| possible.clone());
        ranges.chain(points).chain(stamped).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: b(k),
            value: b(v),
        }
    }

    #[test]
    fn clear_ranges_coalesce_and_drop_covered_entries() {
        let mut w = WriteMap::default();
        w.set(b("b"), b("1"));
        w.set(b("x"), b("2"));
        w.clear_range(b("a"), b("c"));
        w.clear_range(b("c"), b("d"));
        w.clear_range(b("m"), b("n"));
        w.clear_range(b("ca"), b("mm"));
        assert_eq!(w.cleared.len(), 1);
        assert_eq!(w.cleared.get(&b("a")), Some(&b("n")));
        assert!(w.is_cleared(b"b") && w.is_cleared(b"m") && !w.is_cleared(b"n"));
        assert_eq!(w.known(b"b"), Some(None));
        assert_eq!(w.known(b"x"), Some(Some(b("2"))));
        w.clear_range(b("w"), Bytes::new());
        assert!(w.is_cleared(b"\xff\xff") && w.known(b"x") == Some(None));
        assert_eq!(
            w.mutations(),
            vec![
                Mutation::ClearRange {
                    begin: b("a"),
                    end: b("n")
                },
                Mutation::ClearRange {
                    begin: b("w"),
                    end: Bytes::new()
                },
            ]
        );
    }

    #[test]
    fn atomics_fold_into_known_values_and_stack_on_unknown_ones() {
        let mut w = WriteMap::default();
        w.set(b("k"), Bytes::from_static(&[1]));
        w.atomic(AtomicOp::Add, b("k"), Bytes::from_static(&[2]));
        assert_eq!(w.known(b"k"), Some(Some(Bytes::from_static(&[3]))));
        w.atomic(AtomicOp::Add, b("u"), Bytes::from_static(&[1]));
        w.atomic(AtomicOp::Add, b("u"), Bytes::from_static(&[1]));
        assert_eq!(w.known(b"u"), None);
        assert_eq!(
            w.resolve(b"u", Some(Bytes::from_static(&[5]))),
            Some(Bytes::from_static(&[7]))
        );
        w.clear_range(b("t"), b("v"));
        w.atomic(AtomicOp::CompareAndClear, b("u"), Bytes::from_static(&[0]));
        assert_eq!(w.known(b"u"), Some(None));
        assert_eq!(w.mutations().len(), 3);
    }

    #[test]
    fn merge_interleaves_both_directions() {
        let mut w = WriteMap::default();
        w.set(b("b"), b("local"));
        w.clear(b("c"));
        w.clear_range(b("d"), b("f"));
        w.set(b("e"), b("new"));
        let stored = vec![kv("a", "1"), kv("c", "3"), kv("d", "4"), kv("g", "7")];
        let fwd = w.merge(b"", b"", stored.clone(), false);
        let keys: Vec<_> = fwd.iter().map(|kv| kv.key.clone()).collect();
        assert_eq!(keys, vec![b("a"), b("b"), b("e"), b("g")]);
        let rev = w.merge(b"", b"", stored.into_iter().rev().collect(), true);
        let mut back: Vec<_> = rev.iter().map(|kv| kv.key.clone()).collect();
        back.reverse();
        assert_eq!(back, keys);
    }
}
