//! Range tombstones: one entry that deletes every key of `[begin, end)` written at a version
//! below its own.
//!
//! `WriteBatch::delete_range` becomes one [`RangeTombstone`] at the batch's version: one WAL
//! op, one memtable entry (`MemTable::add_range_tombstone`), and after the flush one entry in
//! the manifest (the live set of the tables' range tombstones, `ManifestState`). A read of
//! `key` at version `r` finds the newest point entry `p ≤ r` as before and then asks
//! [`RangeTombstoneSet::newest_covering`]: a tombstone at `t` with `p < t ≤ r` covering `key`
//! hides it. A point write at the tombstone's own version (later in the same batch) is not
//! covered. Compaction drops entries a tombstone at or below the GC horizon covers, and the
//! tombstone itself once no live table can still hold such an entry
//! (`engine/compaction/mod.rs`).

use std::cmp::Ordering;
use std::sync::Arc;

/// Deletes every key in `[begin, end)` (an empty `end`: to the end of the key space) written
/// at a version below `version`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RangeTombstone {
    /// First key deleted.
    pub begin: Vec<u8>,
    /// First key after the range; empty for unbounded.
    pub end: Vec<u8>,
    /// The version that wrote the tombstone.
    pub version: u64,
}

impl RangeTombstone {
    /// Whether `key` is in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.begin.as_slice() && (self.end.is_empty() || key < self.end.as_slice())
    }

    /// Whether the range shares a key with `[smallest, largest]` (both inclusive).
    pub fn overlaps(&self, smallest: &[u8], largest: &[u8]) -> bool {
        largest >= self.begin.as_slice() && (self.end.is_empty() || smallest < self.end.as_slice())
    }

    /// Whether its version is in `(above, read_version]` and it covers every key of
    /// `[smallest, largest]`.
    pub fn hides(&self, smallest: &[u8], largest: &[u8], above: u64, read_version: u64) -> bool {
        self.version > above
            && self.version <= read_version
            && self.contains(smallest)
            && self.contains(largest)
    }

    /// Bytes it takes in memory (for memtable accounting).
    pub fn approximate_bytes(&self) -> usize {
        self.begin.len() + self.end.len() + 32
    }
}

impl Ord for RangeTombstone {
    /// By version, then begin, then end (an empty, unbounded end sorting last).
    fn cmp(&self, other: &Self) -> Ordering {
        let end_order = match (self.end.is_empty(), other.end.is_empty()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => self.end.cmp(&other.end),
        };
        self.version
            .cmp(&other.version)
            .then_with(|| self.begin.cmp(&other.begin))
            .then(end_order)
    }
}

impl PartialOrd for RangeTombstone {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// How far right a prefix of a begin-sorted tombstone list reaches.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Reach {
    /// Up to (not including) this key.
    Bounded(Vec<u8>),
    /// To the end of the key space.
    Unbounded,
}

/// A set of range tombstones indexed for "the newest one covering this key at this read
/// version": sorted by `begin`, with the furthest `end` of every prefix kept alongside, so a
/// lookup walking back from the key stops where nothing earlier reaches it.
#[derive(Debug, Clone, Default)]
pub struct RangeTombstoneSet {
    /// Sorted by begin.
    tombstones: Vec<RangeTombstone>,
    /// `reach[i]`: the furthest end among `tombstones[..=i]`.
    reach: Vec<Reach>,
}

impl RangeTombstoneSet {
    /// Indexes `tombstones`.
    pub fn new(mut tombstones: Vec<RangeTombstone>) -> RangeTombstoneSet {
        tombstones.sort_by(|a, b| a.begin.cmp(&b.begin).then_with(|| a.cmp(b)));
        let mut reach = Vec::with_capacity(tombstones.len());
        let mut furthest: Option<Reach> = None;
        for t in &tombstones {
            let end = if t.end.is_empty() {
                Reach::Unbounded
            } else {
                Reach::Bounded(t.end.clone())
            };
            let next = furthest
                .take()
                .map_or(end.clone(), |so_far| so_far.max(end));
            reach.push(next.clone());
            furthest = Some(next);
        }
        RangeTombstoneSet { tombstones, reach }
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.tombstones.is_empty()
    }

    /// Number of tombstones.
    pub fn len(&self) -> usize {
        self.tombstones.len()
    }

    /// The tombstones, sorted by begin.
    pub fn iter(&self) -> impl Iterator<Item = &RangeTombstone> {
        self.tombstones.iter()
    }

    /// The newest version `≤ read_version` of a tombstone covering `key`, if any.
    pub fn newest_covering(&self, key: &[u8], read_version: u64) -> Option<u64> {
        let candidates = self
            .tombstones
            .partition_point(|t| t.begin.as_slice() <= key);
        let mut newest = None;
        for i in (0..candidates).rev() {
            // Nothing at or before `i` reaches past `key`: stop.
            if let Some(Reach::Bounded(reach)) = self.reach.get(i)
                && reach.as_slice() <= key
            {
                break;
            }
            let t = &self.tombstones[i];
            if t.version <= read_version && t.contains(key) {
                newest = newest.max(Some(t.version));
            }
        }
        newest
    }
}

impl RangeTombstoneSet {
    /// Whether one tombstone with a version in `(above, read_version]` covers every key of
    /// `[smallest, largest]`: then nothing written at `above` or earlier in that span is
    /// visible at `read_version`.
    pub fn hides_span(
        &self,
        smallest: &[u8],
        largest: &[u8],
        above: u64,
        read_version: u64,
    ) -> bool {
        let candidates = self
            .tombstones
            .partition_point(|t| t.begin.as_slice() <= smallest);
        for i in (0..candidates).rev() {
            if let Some(Reach::Bounded(reach)) = self.reach.get(i)
                && reach.as_slice() <= largest
            {
                // Nothing at or before `i` reaches past `largest`.
                return false;
            }
            if self.tombstones[i].hides(smallest, largest, above, read_version) {
                return true;
            }
        }
        false
    }
}

/// Range tombstones that arrive one by one (a memtable's), kept searchable: the newest few in
/// a short list, the rest in indexed runs of roughly doubling sizes (the logarithmic method):
/// a run is merged with the ones no larger than it, so an add costs O(log² n) amortized and a
/// lookup searches O(log n) runs.
#[derive(Debug, Default)]
pub struct GrowingTombstones {
    /// Indexed runs, largest (oldest) first.
    runs: Vec<Arc<RangeTombstoneSet>>,
    /// The newest tombstones, not indexed yet (fewer than [`GrowingTombstones::TAIL`]).
    tail: Vec<RangeTombstone>,
}

impl GrowingTombstones {
    /// Tombstones kept unindexed before they are indexed as a run.
    pub const TAIL: usize = 32;

    /// Adds one; an equal one among the unindexed newest is not added twice.
    pub fn add(&mut self, tombstone: RangeTombstone) -> bool {
        if self.tail.contains(&tombstone) {
            return false;
        }
        self.tail.push(tombstone);
        if self.tail.len() >= Self::TAIL {
            let mut merged = std::mem::take(&mut self.tail);
            while let Some(last) = self.runs.last() {
                if last.len() > merged.len() {
                    break;
                }
                merged.extend(last.iter().cloned());
                self.runs.pop();
            }
            self.runs.push(Arc::new(RangeTombstoneSet::new(merged)));
        }
        true
    }

    /// Every tombstone (runs first, sorted by begin within each).
    pub fn all(&self) -> Vec<RangeTombstone> {
        let mut all: Vec<RangeTombstone> = self
            .runs
            .iter()
            .flat_map(|run| run.iter().cloned())
            .collect();
        all.extend(self.tail.iter().cloned());
        all
    }

    /// The newest version `≤ read_version` of one covering `key`.
    pub fn newest_covering(&self, key: &[u8], read_version: u64) -> Option<u64> {
        newest_in(&self.runs, &self.tail, key, read_version)
    }

    /// Adds the runs and the unindexed tail to `view`.
    pub fn add_to_view(&self, view: &mut TombstoneView) {
        view.sets.extend(self.runs.iter().cloned());
        view.loose.extend(self.tail.iter().cloned());
    }
}

/// The range tombstones one read can see, from every source: indexed sets and a few loose
/// ones.
#[derive(Debug, Default, Clone)]
pub struct TombstoneView {
    sets: Vec<Arc<RangeTombstoneSet>>,
    loose: Vec<RangeTombstone>,
}

impl TombstoneView {
    /// Adds an indexed set (skipped if empty).
    pub fn add_set(&mut self, set: &Arc<RangeTombstoneSet>) {
        if !set.is_empty() {
            self.sets.push(Arc::clone(set));
        }
    }

    /// Whether the view holds no tombstone.
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty() && self.loose.is_empty()
    }

    /// The newest version `≤ read_version` of a tombstone covering `key`.
    pub fn newest_covering(&self, key: &[u8], read_version: u64) -> Option<u64> {
        newest_in(&self.sets, &self.loose, key, read_version)
    }

    /// Whether one tombstone with a version in `(above, read_version]` covers every key of
    /// `[smallest, largest]` (see [`RangeTombstoneSet::hides_span`]).
    pub fn hides_span(
        &self,
        smallest: &[u8],
        largest: &[u8],
        above: u64,
        read_version: u64,
    ) -> bool {
        self.sets
            .iter()
            .any(|set| set.hides_span(smallest, largest, above, read_version))
            || self
                .loose
                .iter()
                .any(|t| t.hides(smallest, largest, above, read_version))
    }
}

/// The newest version `≤ read_version` of a tombstone covering `key`, in indexed `sets` and
/// unindexed `loose` ones.
fn newest_in(
    sets: &[Arc<RangeTombstoneSet>],
    loose: &[RangeTombstone],
    key: &[u8],
    read_version: u64,
) -> Option<u64> {
    let in_sets = sets
        .iter()
        .filter_map(|set| set.newest_covering(key, read_version))
        .max();
    in_sets.max(newest_covering_in(loose, key, read_version))
}

/// The newest version `≤ read_version` of a tombstone in `tombstones` (unindexed) covering
/// `key`.
pub fn newest_covering_in(
    tombstones: &[RangeTombstone],
    key: &[u8],
    read_version: u64,
) -> Option<u64> {
    tombstones
        .iter()
        .filter(|t| t.version <= read_version && t.contains(key))
        .map(|t| t.version)
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(begin: &str, end: &str, version: u64) -> RangeTombstone {
        RangeTombstone {
            begin: begin.into(),
            end: end.into(),
            version,
        }
    }

    #[test]
    fn covering_respects_bounds_and_versions() {
        let set = RangeTombstoneSet::new(vec![t("b", "d", 10), t("c", "", 5), t("a", "b", 20)]);
        assert_eq!(set.newest_covering(b"a", 100), Some(20));
        assert_eq!(set.newest_covering(b"b", 100), Some(10));
        assert_eq!(set.newest_covering(b"c", 100), Some(10));
        assert_eq!(set.newest_covering(b"c", 9), Some(5));
        assert_eq!(set.newest_covering(b"c", 4), None);
        assert_eq!(set.newest_covering(b"d", 100), Some(5));
        assert_eq!(set.newest_covering(b"zzz", 100), Some(5));
        assert_eq!(set.newest_covering(b"", 100), None);
        assert!(t("b", "d", 1).overlaps(b"a", b"b"));
        assert!(!t("b", "d", 1).overlaps(b"d", b"e"));
        assert!(t("b", "", 1).overlaps(b"x", b"y"));
        assert!(!t("b", "", 1).overlaps(b"a", b"az"));
    }

    fn key(k: u8) -> Vec<u8> {
        vec![b'k', k]
    }

    /// Tombstones from (begin, end, version) triples; an end of 20 is unbounded.
    fn from_raw(raw: &[(u8, u8, u64)]) -> Vec<RangeTombstone> {
        raw.iter()
            .map(|&(b, e, v)| RangeTombstone {
                begin: key(b),
                end: if e == 20 { Vec::new() } else { key(b.max(e)) },
                version: v,
            })
            .collect()
    }

    proptest! {
        #[test]
        fn growing_tombstones_answer_as_a_linear_scan(
            raw in prop::collection::vec((0u8..20, 0u8..21, 1u64..50), 0..150),
            probes in prop::collection::vec((0u8..22, 0u8..22, 0u64..50, 0u64..60), 1..40),
        ) {
            let tombstones = from_raw(&raw);
            let mut growing = GrowingTombstones::default();
            let mut added = Vec::new();
            for t in &tombstones {
                if growing.add(t.clone()) {
                    added.push(t.clone());
                }
            }
            let mut all = growing.all();
            all.sort();
            let mut want = added.clone();
            want.sort();
            prop_assert_eq!(all, want);
            let mut view = TombstoneView::default();
            growing.add_to_view(&mut view);
            for (a, b, above, rv) in probes {
                let (lo, hi) = (key(a.min(b)), key(a.max(b)));
                let linear = newest_covering_in(&added, &lo, rv);
                prop_assert_eq!(growing.newest_covering(&lo, rv), linear);
                prop_assert_eq!(view.newest_covering(&lo, rv), linear);
                let hides = added.iter().any(|t| t.hides(&lo, &hi, above, rv));
                prop_assert_eq!(view.hides_span(&lo, &hi, above, rv), hides);
            }
        }

        #[test]
        fn span_hiding_matches_its_definition(
            raw in prop::collection::vec((0u8..20, 0u8..21, 1u64..50), 0..30),
            spans in prop::collection::vec((0u8..22, 0u8..22, 0u64..50, 0u64..60), 1..40),
        ) {
            let tombstones = from_raw(&raw);
            let set = RangeTombstoneSet::new(tombstones.clone());
            for (a, b, above, rv) in spans {
                let (lo, hi) = (key(a.min(b)), key(a.max(b)));
                let want = tombstones.iter().any(|t| t.hides(&lo, &hi, above, rv));
                prop_assert_eq!(set.hides_span(&lo, &hi, above, rv), want);
            }
        }

        #[test]
        fn indexed_lookup_matches_a_linear_scan(
            raw in prop::collection::vec((0u8..20, 0u8..21, 1u64..50), 0..30),
            probes in prop::collection::vec((0u8..22, 0u64..60), 1..40),
        ) {
            let tombstones = from_raw(&raw);
            let set = RangeTombstoneSet::new(tombstones.clone());
            for (k, rv) in probes {
                prop_assert_eq!(
                    set.newest_covering(&key(k), rv),
                    newest_covering_in(&tombstones, &key(k), rv)
                );
            }
        }
    }
}
