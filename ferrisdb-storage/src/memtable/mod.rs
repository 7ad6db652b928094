//! The memtable: the in-memory, sorted, multi-version write buffer in front of the SSTables.
//!
//! A [`MemTable`] holds every entry written since the last flush in a lock-free skip list
//! (`skiplist`) ordered by internal key (user key ascending, version descending). Any number
//! of threads may insert and read at once through an `Arc<MemTable>`; entries are never removed
//! or changed, and all memory is released when the last `Arc` (including every
//! [`MemTableIterator`]) is dropped. See `docs/memtable.md`.

mod arena;
mod skiplist;

use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use ferrisdb_core::Result;
use parking_lot::RwLock;

use crate::iterator::InternalIterator;
use crate::key::ValueKind;
use crate::range_tombstone::{GrowingTombstones, RangeTombstone, TombstoneView};
pub use skiplist::NewEntry;
use skiplist::{Node, SkipList};

/// One entry returned by [`MemTable::get`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemTableEntry {
    /// Value or tombstone.
    pub kind: ValueKind,
    /// The value (empty for tombstones), copied out of the memtable.
    pub value: Bytes,
    /// The version that wrote the entry.
    pub version: u64,
}

/// A concurrent sorted write buffer of MVCC entries. `Send + Sync`; use as `Arc<MemTable>`.
pub struct MemTable {
    list: SkipList,
    bounds: VersionBounds,
    /// Range tombstones written here (one per `delete_range`), kept searchable.
    range_tombstones: RwLock<GrowingTombstones>,
    /// Bytes of `range_tombstones`, for the flush threshold.
    range_tombstone_bytes: AtomicUsize,
}

/// Smallest and largest version inserted, on their own cache line (written by every insert).
#[repr(align(64))]
struct VersionBounds {
    /// `u64::MAX` while empty.
    min: AtomicU64,
    /// 0 while empty.
    max: AtomicU64,
}

impl MemTable {
    /// An empty memtable.
    pub fn new() -> Self {
        MemTable {
            list: SkipList::new(),
            bounds: VersionBounds {
                min: AtomicU64::new(u64::MAX),
                max: AtomicU64::new(0),
            },
            range_tombstones: RwLock::new(GrowingTombstones::default()),
            range_tombstone_bytes: AtomicUsize::new(0),
        }
    }

    /// Inserts one entry; false (and no change) if (key, version) is already present. Safe to
    /// call from several threads at once.
    ///
    /// Panics if the key or the value is 4 GiB or longer (entry lengths are stored as `u32`;
    /// the engine's write limits are far below that).
    pub fn insert(&self, key: &[u8], version: u64, kind: ValueKind, value: &[u8]) -> bool {
        // Widen the bounds first so that once `len() > 0` they cover every visible entry. A
        // rejected duplicate has a version some entry already has, so it widens nothing.
        // Both only move outwards, so a load that already covers `version` is enough. Acquire /
        // AcqRel chain every widening to the `len` increment (a release) that readers acquire.
        if version < self.bounds.min.load(Ordering::Acquire) {
            self.bounds.min.fetch_min(version, Ordering::AcqRel);
        }
        if version > self.bounds.max.load(Ordering::Acquire) {
            self.bounds.max.fetch_max(version, Ordering::AcqRel);
        }
        self.list.insert(key, version, kind, value)
    }

    /// Inserts every entry as [`insert`](Self::insert) would one by one, with the searches
    /// of several entries overlapped (faster for a batch of many keys); returns how many were
    /// new.
    pub fn insert_all(&self, entries: &[NewEntry<'_>]) -> usize {
        let versions = entries.iter().map(|e| e.version);
        let (Some(min), Some(max)) = (versions.clone().min(), versions.max()) else {
            return 0;
        };
        // As in `insert`: the bounds cover the entries before any of them is counted.
        if min < self.bounds.min.load(Ordering::Acquire) {
            self.bounds.min.fetch_min(min, Ordering::AcqRel);
        }
        if max > self.bounds.max.load(Ordering::Acquire) {
            self.bounds.max.fetch_max(max, Ordering::AcqRel);
        }
        self.list.insert_all(entries)
    }

    /// The newest entry of `key` with version ≤ `read_version`, if any.
    pub fn get(&self, key: &[u8], read_version: u64) -> Option<MemTableEntry> {
        let node = self.list.seek(key, read_version)?;
        (node.key() == key).then(|| MemTableEntry {
            kind: node.kind(),
            value: Bytes::copy_from_slice(node.value()),
            version: node.version(),
        })
    }

    /// Records that every key of `[begin, end)` (empty `end`: unbounded) written at a
    /// version below `version` is deleted (see `crate::range_tombstone`). Adding one equal
    /// to one of the last few added changes nothing (a batch repeating a range).
    pub fn add_range_tombstone(&self, begin: &[u8], end: &[u8], version: u64) {
        let tombstone = RangeTombstone {
            begin: begin.to_vec(),
            end: end.to_vec(),
            version,
        };
        let bytes = tombstone.approximate_bytes();
        let mut tombstones = self.range_tombstones.write();
        if tombstones.add(tombstone) {
            // Under the lock, so a reader that sees a non-zero count finds the tombstone.
            self.range_tombstone_bytes
                .fetch_add(bytes, Ordering::Release);
        }
    }

    /// The range tombstones written here.
    pub fn range_tombstones(&self) -> Vec<RangeTombstone> {
        self.range_tombstones.read().all()
    }

    /// Whether any range tombstone was written here (without taking their lock: every
    /// point read asks).
    pub fn has_range_tombstones(&self) -> bool {
        self.range_tombstone_bytes.load(Ordering::Acquire) > 0
    }

    /// The newest version ≤ `read_version` of a range tombstone here covering `key`.
    pub fn newest_range_tombstone(&self, key: &[u8], read_version: u64) -> Option<u64> {
        if !self.has_range_tombstones() {
            return None;
        }
        self.range_tombstones
            .read()
            .newest_covering(key, read_version)
    }

    /// Adds this memtable's range tombstones to `view` (for a scan).
    pub fn add_range_tombstones_to(&self, view: &mut TombstoneView) {
        if self.has_range_tombstones() {
            self.range_tombstones.read().add_to_view(view);
        }
    }

    /// Estimated bytes used: keys, values, range tombstones and per-entry overhead. For
    /// deciding when to flush.
    pub fn approximate_bytes(&self) -> usize {
        self.list.approximate_bytes() + self.range_tombstone_bytes.load(Ordering::Relaxed)
    }

    /// Number of point entries (range tombstones not counted).
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// True if no point entry has been inserted (range tombstones not counted).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Smallest and largest version inserted, or `None` if empty.
    pub fn version_bounds(&self) -> Option<(u64, u64)> {
        if self.is_empty() {
            return None;
        }
        Some((
            self.bounds.min.load(Ordering::Acquire),
            self.bounds.max.load(Ordering::Acquire),
        ))
    }

    /// An unpositioned cursor over every entry in internal order.
    pub fn iter(self: &Arc<Self>) -> MemTableIterator {
        MemTableIterator {
            table: Arc::clone(self),
            current: None,
        }
    }
}

impl Default for MemTable {
    fn default() -> Self {
        MemTable::new()
    }
}

impl fmt::Debug for MemTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemTable")
            .field("len", &self.len())
            .field("approximate_bytes", &self.approximate_bytes())
            .field("version_bounds", &self.version_bounds())
            .finish()
    }
}

/// A cursor over a memtable's entries in internal order; see [`InternalIterator`].
///
/// Holds an `Arc` to the memtable, so it stays valid while other threads insert (it may or may
/// not see entries inserted after it was positioned). All methods return `Ok`.
pub struct MemTableIterator {
    table: Arc<MemTable>,
    /// The current node, always one of `table`'s nodes.
    current: Option<NonNull<Node>>,
}

// SAFETY: `current` only ever points to a node owned by `table`'s skip list. Nodes are
// immutable apart from their atomic links and are freed only when the list drops, which the
// `Arc` held here prevents; so the pointer may be used from any thread, like `&Node` (and
// `Node` is `Send + Sync`).
unsafe impl Send for MemTableIterator {}
// SAFETY: as above; `&MemTableIterator` only gives shared access to the node.
unsafe impl Sync for MemTableIterator {}

impl MemTableIterator {
    #[inline]
    fn node(&self) -> Option<&Node> {
        // SAFETY: `current` was taken from `self.table.list`, which `self.table` keeps alive,
        // and nodes are never freed before their list.
        self.current.map(|node| unsafe { node.as_ref() })
    }

    /// After a forward move: starts loading the node the scan visits next.
    #[inline]
    fn prefetch_next(&self) {
        if let Some(node) = self.node() {
            self.table.list.prefetch_past(node);
        }
    }
}

impl InternalIterator for MemTableIterator {
    fn valid(&self) -> bool {
        self.current.is_some()
    }

    // The accessors return an empty key and value, version 0 and `Tombstone` when invalid.
    fn key(&self) -> &[u8] {
        self.node().map_or(&[], Node::key)
    }

    fn version(&self) -> u64 {
        self.node().map_or(0, Node::version)
    }

    fn kind(&self) -> ValueKind {
        self.node().map_or(ValueKind::Tombstone, Node::kind)
    }

    fn value(&self) -> &[u8] {
        self.node().map_or(&[], Node::value)
    }

    fn seek_to_first(&mut self) -> Result<()> {
        self.current = self.table.list.first().map(NonNull::from);
        Ok(())
    }

    fn seek_to_last(&mut self) -> Result<()> {
        self.current = self.table.list.last().map(NonNull::from);
        Ok(())
    }

    fn seek(&mut self, key: &[u8], version: u64) -> Result<()> {
        self.current = self.table.list.seek(key, version).map(NonNull::from);
        self.prefetch_next();
        Ok(())
    }

    fn seek_for_prev(&mut self, key: &[u8], version: u64) -> Result<()> {
        self.current = self
            .table
            .list
            .seek_for_prev(key, version)
            .map(NonNull::from);
        Ok(())
    }

    fn next(&mut self) -> Result<()> {
        if let Some(node) = self.node() {
            self.current = self.table.list.next_of(Some(node)).map(NonNull::from);
        }
        self.prefetch_next();
        Ok(())
    }

    fn prev(&mut self) -> Result<()> {
        if let Some(node) = self.node() {
            self.current = self.table.list.prev_of(node).map(NonNull::from);
        }
        Ok(())
    }

    fn skip_user_key(&mut self, key: &[u8]) -> Result<()> {
        if let Some(node) = self.node().filter(|node| node.key() == key) {
            self.current = self.table.list.past_key(node).map(NonNull::from);
        }
        self.prefetch_next();
        Ok(())
    }
}

impl fmt::Debug for MemTableIterator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("MemTableIterator");
        match self.node() {
            Some(node) => debug
                .field("key", &node.key())
                .field("version", &node.version()),
            None => debug.field("valid", &false),
        };
        debug.finish()
    }
}

#[cfg(test)]
mod tests {
    use std::cmp::Reverse;
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::atomic::AtomicBool;
    use std::thread;

    use proptest::prelude::*;

    use super::*;
    use crate::key::compare_internal;

    type Entry = (Vec<u8>, u64, ValueKind, Vec<u8>);
    type Model = BTreeMap<ModelKey, (ValueKind, Vec<u8>)>;

    fn current(it: &MemTableIterator) -> Option<Entry> {
        it.valid().then(|| {
            (
                it.key().to_vec(),
                it.version(),
                it.kind(),
                it.value().to_vec(),
            )
        })
    }

    type ModelKey = (Vec<u8>, Reverse<u64>);

    fn model_entry(entry: Option<(&ModelKey, &(ValueKind, Vec<u8>))>) -> Option<Entry> {
        entry.map(|((key, version), (kind, value))| (key.clone(), version.0, *kind, value.clone()))
    }

    fn forward_scan(table: &Arc<MemTable>) -> Vec<Entry> {
        let mut it = table.iter();
        it.seek_to_first().unwrap();
        let mut out = Vec::new();
        while let Some(entry) = current(&it) {
            out.push(entry);
            it.next().unwrap();
        }
        out
    }

    fn backward_scan(table: &Arc<MemTable>) -> Vec<Entry> {
        let mut it = table.iter();
        it.seek_to_last().unwrap();
        let mut out = Vec::new();
        while let Some(entry) = current(&it) {
            out.push(entry);
            it.prev().unwrap();
        }
        out
    }

    #[test]
    fn empty_table_has_no_entries() {
        let table = Arc::new(MemTable::new());
        assert!(table.is_empty());
        assert_eq!(table.len(), 0);
        assert_eq!(table.version_bounds(), None);
        assert_eq!(table.approximate_bytes(), 0);
        assert_eq!(table.get(b"a", u64::MAX), None);
        let mut it = table.iter();
        assert!(!it.valid());
        it.seek_to_first().unwrap();
        assert!(!it.valid());
        it.seek_to_last().unwrap();
        assert!(!it.valid());
        it.seek(b"", u64::MAX).unwrap();
        assert!(!it.valid());
        it.seek_for_prev(b"\xff", 0).unwrap();
        assert!(!it.valid());
        it.next().unwrap();
        it.prev().unwrap();
        assert!(!it.valid());
        assert_eq!(
            (it.key(), it.value(), it.version()),
            (&b""[..], &b""[..], 0)
        );
    }

    #[test]
    fn insert_all_widens_the_version_bounds_and_reads_back() {
        let table = MemTable::new();
        assert_eq!(table.insert_all(&[]), 0);
        assert_eq!(table.version_bounds(), None);
        let entry = |key: &'static [u8], version, kind, value: &'static [u8]| NewEntry {
            key,
            version,
            kind,
            value,
        };
        let batch = [
            entry(b"a", 7, ValueKind::Put, b"seven"),
            entry(b"b", 3, ValueKind::Tombstone, b""),
            entry(b"a", 9, ValueKind::Put, b"nine"),
            entry(b"a", 7, ValueKind::Put, b"again"),
        ];
        assert_eq!(table.insert_all(&batch), 3);
        assert_eq!(table.version_bounds(), Some((3, 9)));
        assert_eq!(
            table.get(b"a", 8).unwrap().value,
            Bytes::from_static(b"seven")
        );
        assert_eq!(
            table.get(b"a", 9).unwrap().value,
            Bytes::from_static(b"nine")
        );
        assert_eq!(table.get(b"b", 5).unwrap().kind, ValueKind::Tombstone);
    }

    #[test]
    fn get_returns_newest_visible_version() {
        let table = MemTable::new();
        assert!(table.insert(b"k", 5, ValueKind::Put, b"five"));
        assert!(table.insert(b"k", 3, ValueKind::Tombstone, b""));
        assert!(table.insert(b"k", 1, ValueKind::Put, b"one"));
        assert!(table.insert(b"j", 9, ValueKind::Put, b"jay"));
        assert!(table.insert(b"kk", 0, ValueKind::Put, b"kay-kay"));
        let entry = |kind, value: &'static [u8], version| {
            Some(MemTableEntry {
                kind,
                value: Bytes::from_static(value),
                version,
            })
        };
        assert_eq!(table.get(b"k", u64::MAX), entry(ValueKind::Put, b"five", 5));
        assert_eq!(table.get(b"k", 5), entry(ValueKind::Put, b"five", 5));
        assert_eq!(table.get(b"k", 4), entry(ValueKind::Tombstone, b"", 3));
        assert_eq!(table.get(b"k", 2), entry(ValueKind::Put, b"one", 1));
        assert_eq!(table.get(b"k", 0), None);
        assert_eq!(table.get(b"j", 8), None);
        assert_eq!(table.get(b"", 100), None);
        assert_eq!(table.get(b"kk", 0), entry(ValueKind::Put, b"kay-kay", 0));
        assert_eq!(table.version_bounds(), Some((0, 9)));
    }

    #[test]
    fn duplicate_insert_returns_false_and_keeps_first() {
        let table = MemTable::new();
        assert!(table.insert(b"k", 7, ValueKind::Put, b"first"));
        let bytes = table.approximate_bytes();
        assert!(!table.insert(b"k", 7, ValueKind::Put, b"second"));
        assert_eq!(table.len(), 1);
        assert_eq!(table.approximate_bytes(), bytes);
        assert_eq!(
            table.get(b"k", 7).unwrap().value,
            Bytes::from_static(b"first")
        );
    }

    #[test]
    fn approximate_bytes_covers_the_entries_and_little_more() {
        let table = MemTable::new();
        let mut payload = 0;
        for i in 0..20_000u64 {
            let value = vec![b'x'; (i % 300) as usize];
            assert!(table.insert(b"some-key", i, ValueKind::Put, &value));
            // Key, value, version and at least the level-0 link.
            payload += b"some-key".len() + value.len() + 2 * size_of::<u64>();
            assert!(table.approximate_bytes() >= payload);
        }
        // What is charged is what the arena holds: the entries, their headers and towers, and
        // at most one partly used chunk.
        let charged = table.approximate_bytes();
        assert!(
            charged <= payload * 3 / 2 + (1 << 20),
            "{charged} for {payload}"
        );
    }

    #[test]
    fn iterator_outlives_other_handles_and_moves_between_threads() {
        let table = Arc::new(MemTable::new());
        for i in 0..50u64 {
            table.insert(format!("k{i:02}").as_bytes(), i, ValueKind::Put, b"v");
        }
        let mut it = table.iter();
        it.seek(b"k10", u64::MAX).unwrap();
        drop(table);
        let seen = thread::spawn(move || {
            let mut keys = Vec::new();
            while it.valid() {
                keys.push(it.key().to_vec());
                it.next().unwrap();
            }
            keys
        })
        .join()
        .unwrap();
        assert_eq!(seen.len(), 40);
        assert_eq!(seen[0], b"k10");
    }

    #[test]
    fn mixed_direction_walk() {
        let table = Arc::new(MemTable::new());
        for (key, version) in [("a", 2), ("a", 1), ("b", 5), ("c", 1)] {
            table.insert(key.as_bytes(), version, ValueKind::Put, b"");
        }
        let mut it = table.iter();
        it.seek(b"a", 1).unwrap();
        assert_eq!((it.key(), it.version()), (&b"a"[..], 1));
        it.prev().unwrap();
        assert_eq!((it.key(), it.version()), (&b"a"[..], 2));
        it.prev().unwrap();
        assert!(!it.valid());
        it.seek_for_prev(b"b", 6).unwrap();
        assert_eq!((it.key(), it.version()), (&b"a"[..], 1));
        it.next().unwrap();
        it.next().unwrap();
        assert_eq!((it.key(), it.version()), (&b"c"[..], 1));
        it.next().unwrap();
        assert!(!it.valid());
    }

    #[test]
    fn dropping_tables_frees_every_node() {
        let before = super::arena::tests::live_bytes();
        for round in 0..100u64 {
            let table = Arc::new(MemTable::new());
            for i in 0..100u64 {
                assert!(
                    table.insert(&(i % 7).to_le_bytes(), i * round, ValueKind::Put, &[1; 32])
                        || round == 0
                );
            }
            let mut it = table.iter();
            it.seek_to_last().unwrap();
            drop(table);
            assert!(it.valid());
        }
        assert_eq!(super::arena::tests::live_bytes(), before);
    }

    /// Value written for (key, version), so readers can check a node is fully built.
    fn value_for(key: &[u8], version: u64) -> Vec<u8> {
        let mut value = key.to_vec();
        value.extend_from_slice(&version.to_be_bytes());
        value
    }

    fn assert_sorted_and_consistent(entries: &[Entry]) {
        for (key, version, _, value) in entries {
            assert_eq!(value, &value_for(key, *version));
        }
        for pair in entries.windows(2) {
            let order = compare_internal(&pair[0].0, pair[0].1, &pair[1].0, pair[1].1);
            assert_eq!(order, std::cmp::Ordering::Less, "{pair:?}");
        }
    }

    #[test]
    fn concurrent_inserts_and_scans() {
        const WRITERS: u64 = 4;
        const PER_WRITER: u64 = 5_000;
        let table = Arc::new(MemTable::new());
        let done = AtomicBool::new(false);
        let mut expected = BTreeSet::new();
        for writer in 0..WRITERS {
            for j in 0..PER_WRITER {
                expected.insert(test_entry(writer, j));
            }
        }
        thread::scope(|scope| {
            let writers: Vec<_> = (0..WRITERS)
                .map(|writer| {
                    let table = &table;
                    scope.spawn(move || {
                        for j in 0..PER_WRITER {
                            let (key, version) = test_entry(writer, j);
                            assert!(table.insert(
                                &key,
                                version,
                                ValueKind::Put,
                                &value_for(&key, version)
                            ));
                        }
                    })
                })
                .collect();
            for reader in 0..2 {
                let (table, done) = (&table, &done);
                scope.spawn(move || {
                    let mut scans = 0;
                    loop {
                        let finished = done.load(Ordering::Acquire);
                        let entries = if reader == 0 {
                            forward_scan(table)
                        } else {
                            backward_scan(table)
                        };
                        let mut entries = entries;
                        if reader == 1 {
                            entries.reverse();
                        }
                        assert_sorted_and_consistent(&entries);
                        scans += 1;
                        if finished {
                            assert_eq!(entries.len() as u64, WRITERS * PER_WRITER);
                            break;
                        }
                    }
                    assert!(scans >= 1);
                });
            }
            for handle in writers {
                handle.join().unwrap();
            }
            done.store(true, Ordering::Release);
        });
        let entries = forward_scan(&table);
        assert_sorted_and_consistent(&entries);
        let found: Vec<(Vec<u8>, u64)> = entries
            .into_iter()
            .map(|(key, version, _, _)| (key, version))
            .collect();
        let mut expected_order: Vec<(Vec<u8>, u64)> = expected.into_iter().collect();
        expected_order.sort_by(|a, b| compare_internal(&a.0, a.1, &b.0, b.1));
        assert_eq!(found, expected_order);
        assert_eq!(table.len() as u64, WRITERS * PER_WRITER);
        assert_eq!(table.version_bounds(), Some((0, PER_WRITER * WRITERS - 1)));
    }

    /// Even `j`: a key only `writer` writes; odd `j`: one of 100 keys all writers share.
    fn test_entry(writer: u64, j: u64) -> (Vec<u8>, u64) {
        let version = j * 4 + writer;
        if j.is_multiple_of(2) {
            (format!("own-{writer}-{j:05}").into_bytes(), version)
        } else {
            (format!("shared-{:03}", j % 100).into_bytes(), version)
        }
    }

    #[test]
    fn concurrent_duplicate_inserts_keep_one_copy() {
        let table = MemTable::new();
        let inserted: usize = thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        (0..2_000u64)
                            .filter(|i| {
                                table.insert(&(i % 50).to_be_bytes(), i / 50, ValueKind::Put, b"v")
                            })
                            .count()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| handle.join().unwrap())
                .sum()
        });
        assert_eq!(inserted, 2_000);
        assert_eq!(table.len(), 2_000);
    }

    #[derive(Debug, Clone)]
    enum Move {
        Next,
        Prev,
    }

    fn small_key() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(b'a'..=b'c', 0..3)
    }

    fn check_walk(
        it: &mut MemTableIterator,
        all: &[Entry],
        mut index: Option<usize>,
        moves: &[Move],
    ) {
        assert_eq!(current(it), index.map(|i| all[i].clone()));
        for step in moves {
            let Some(position) = index else { break };
            match step {
                Move::Next => {
                    it.next().unwrap();
                    index = Some(position + 1).filter(|&i| i < all.len());
                }
                Move::Prev => {
                    it.prev().unwrap();
                    index = position.checked_sub(1);
                }
            }
            assert_eq!(current(it), index.map(|i| all[i].clone()));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn matches_btreemap_model(
            inserts in proptest::collection::vec((small_key(), 0..12u64, any::<bool>(), proptest::collection::vec(any::<u8>(), 0..4)), 0..120),
            probes in proptest::collection::vec((small_key(), 0..14u64), 1..24),
            moves in proptest::collection::vec(prop_oneof![Just(Move::Next), Just(Move::Prev)], 0..12),
        ) {
            let table = Arc::new(MemTable::new());
            let mut model = Model::new();
            for (key, version, tombstone, value) in &inserts {
                let kind = if *tombstone { ValueKind::Tombstone } else { ValueKind::Put };
                let value = if *tombstone { Vec::new() } else { value.clone() };
                let fresh = !model.contains_key(&(key.clone(), Reverse(*version)));
                if fresh {
                    model.insert((key.clone(), Reverse(*version)), (kind, value.clone()));
                }
                prop_assert_eq!(table.insert(key, *version, kind, &value), fresh);
            }
            prop_assert_eq!(table.len(), model.len());
            let bounds = model.keys().map(|(_, v)| v.0).min().zip(model.keys().map(|(_, v)| v.0).max());
            prop_assert_eq!(table.version_bounds(), bounds);

            let all: Vec<Entry> = model.iter().map(|entry| model_entry(Some(entry)).unwrap()).collect();
            prop_assert_eq!(&forward_scan(&table), &all);
            let mut backward = backward_scan(&table);
            backward.reverse();
            prop_assert_eq!(&backward, &all);

            let mut it = table.iter();
            for (key, version) in &probes {
                let target = (key.clone(), Reverse(*version));
                let newest = model_entry(model.range(target.clone()..).next()).filter(|entry| &entry.0 == key);
                let got = table.get(key, *version).map(|e| (key.clone(), e.version, e.kind, e.value.to_vec()));
                prop_assert_eq!(got, newest);

                let model_order = |entry: &Entry| (entry.0.clone(), Reverse(entry.1));
                it.seek(key, *version).unwrap();
                let at_or_after = all.partition_point(|entry| model_order(entry) < target);
                check_walk(&mut it, &all, Some(at_or_after).filter(|&i| i < all.len()), &moves);

                it.seek_for_prev(key, *version).unwrap();
                let at_or_before = all.partition_point(|entry| model_order(entry) <= target).checked_sub(1);
                check_walk(&mut it, &all, at_or_before, &moves);
            }
        }
    }
}
