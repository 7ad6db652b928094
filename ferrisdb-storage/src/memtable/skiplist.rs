//! A concurrent, insert-only, lock-free skip list ordered by internal key.
//!
//! Nodes are ordered by [`compare_internal`]: user key ascending, version descending. Each node
//! owns its user key and value in one [`Bytes`] allocation plus a *tower* of `next` links, one
//! per level it takes part in (height drawn with p = 1/4, at most [`MAX_HEIGHT`]). The level-0
//! link lives in the node itself and only the links above it in a separate allocation, so the
//! three quarters of nodes of height 1 need no tower allocation and a level-0 step reads the
//! node it is already at.
//!
//! Invariants:
//! - Nodes are never removed or freed while the list lives; [`SkipList`]'s `Drop` frees them all
//!   (it has `&mut self`, so nobody else can be looking). Hence any node pointer read from a link
//!   stays valid for as long as the list does, and the epoch machinery never has to retire
//!   anything: all loads use [`crossbeam_epoch::unprotected`] instead of pinning.
//! - Level 0 is the complete list; each higher level is a sorted sub-list of the level below.
//! - A node is published by a release CAS on its predecessor's level-0 link after its contents
//!   and level-0 `next` are written; readers load links with acquire ordering, so they always see
//!   a fully built node. Upper levels are linked afterwards, bottom up, each with its own CAS.
//! - A node's level-`L` link is rewritten by its inserter only before the node is linked at
//!   level `L`; after that only CASes by inserters of new successors change it.
//! - A (key, version) pair occurs at most once: an insert of an existing pair returns false.

use std::cell::Cell;
use std::cmp::Ordering as KeyOrdering;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use crossbeam_epoch::{self as epoch, Atomic, Guard, Owned, Shared};

use crate::key::{ValueKind, compare_internal};

/// The tallest tower a node can have.
pub(crate) const MAX_HEIGHT: usize = 12;

/// Estimated per-allocation bookkeeping of the global allocator, charged per allocation of a
/// node (node, key+value bytes, and the upper tower when the height is above 1) in
/// [`Node::approximate_bytes`].
const ALLOCATOR_OVERHEAD: usize = 16;

/// One entry of the list.
pub(crate) struct Node {
    /// The user key followed by the value.
    data: Bytes,
    /// Length of the user key prefix of `data`.
    key_len: usize,
    version: u64,
    kind: ValueKind,
    /// The next node at level 0.
    next0: Atomic<Node>,
    /// `upper[level - 1]` is the next node at `level` >= 1; its length is the height minus 1
    /// (empty, so not allocated, for height 1).
    upper: Box<[Atomic<Node>]>,
}

impl Node {
    fn new(key: &[u8], version: u64, kind: ValueKind, value: &[u8], height: usize) -> Self {
        let mut data = Vec::with_capacity(key.len() + value.len());
        data.extend_from_slice(key);
        data.extend_from_slice(value);
        #[cfg(test)]
        tests::LIVE_NODES.with(|live| live.set(live.get() + 1));
        Node {
            data: Bytes::from(data),
            key_len: key.len(),
            version,
            kind,
            next0: Atomic::null(),
            upper: (1..height.max(1)).map(|_| Atomic::null()).collect(),
        }
    }

    /// The link to the next node at `level` (< the node's height).
    #[inline]
    fn link(&self, level: usize) -> &Atomic<Node> {
        match level.checked_sub(1) {
            None => &self.next0,
            Some(upper) => &self.upper[upper],
        }
    }

    /// The user key.
    #[inline]
    pub(crate) fn key(&self) -> &[u8] {
        // `key_len <= data.len()` by construction.
        &self.data[..self.key_len]
    }

    /// The version that wrote the entry.
    #[inline]
    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    /// Value or tombstone.
    #[inline]
    pub(crate) fn kind(&self) -> ValueKind {
        self.kind
    }

    /// The value (empty for tombstones).
    #[inline]
    pub(crate) fn value(&self) -> &[u8] {
        &self.data[self.key_len..]
    }

    /// The value as a shared handle on the node's buffer (no copy).
    #[inline]
    pub(crate) fn value_bytes(&self) -> Bytes {
        self.data.slice(self.key_len..)
    }

    /// This node's position relative to (key, version) in internal order.
    #[inline]
    fn compare(&self, key: &[u8], version: u64) -> KeyOrdering {
        compare_internal(self.key(), self.version, key, version)
    }

    /// Memory charged for this node: payload, struct, tower and allocator bookkeeping.
    fn approximate_bytes(&self) -> usize {
        self.data.len()
            + size_of::<Node>()
            + self.upper.len() * size_of::<Atomic<Node>>()
            + (2 + usize::from(!self.upper.is_empty())) * ALLOCATOR_OVERHEAD
    }
}

#[cfg(test)]
impl Drop for Node {
    fn drop(&mut self) {
        tests::LIVE_NODES.with(|live| live.set(live.get() - 1));
    }
}

/// The links of a position in the list: the head sentinel's or a node's.
#[derive(Clone, Copy)]
enum Links<'a> {
    Head(&'a [Atomic<Node>; MAX_HEIGHT]),
    Node(&'a Node),
}

impl<'a> Links<'a> {
    /// The link at `level` (< the position's height).
    #[inline]
    fn at(self, level: usize) -> &'a Atomic<Node> {
        match self {
            Links::Head(head) => &head[level],
            Links::Node(node) => node.link(level),
        }
    }
}

/// Where a new node goes: at each level, the position holding the link to swing and the node
/// that link pointed to when read.
struct Splice<'a> {
    preds: [Links<'a>; MAX_HEIGHT],
    succs: [Shared<'a, Node>; MAX_HEIGHT],
}

/// The skip list. `Send + Sync`; inserts and reads may run concurrently from any threads.
pub(crate) struct SkipList {
    /// The head sentinel's tower.
    head: [Atomic<Node>; MAX_HEIGHT],
    /// Tallest tower inserted so far (a search hint; only grows).
    height: AtomicUsize,
    counters: Counters,
}

/// Counters bumped by every insert, on their own cache line so that readers walking from the
/// head do not miss on it.
#[repr(align(64))]
struct Counters {
    len: AtomicUsize,
    bytes: AtomicUsize,
}

impl SkipList {
    /// An empty list.
    pub(crate) fn new() -> Self {
        SkipList {
            head: std::array::from_fn(|_| Atomic::null()),
            height: AtomicUsize::new(1),
            counters: Counters {
                len: AtomicUsize::new(0),
                bytes: AtomicUsize::new(0),
            },
        }
    }

    /// Number of entries. Acquire: whatever an inserter did before its insert completed (e.g.
    /// widening the memtable's version bounds) is visible once its entry is counted.
    pub(crate) fn len(&self) -> usize {
        self.counters.len.load(Ordering::Acquire)
    }

    /// Estimated memory held by the entries (see [`Node::approximate_bytes`]).
    pub(crate) fn approximate_bytes(&self) -> usize {
        self.counters.bytes.load(Ordering::Relaxed)
    }

    /// The guard used for every load, bound to the borrow of the list.
    #[inline]
    fn guard(&self) -> &Guard {
        // SAFETY: `unprotected` is sound when no other thread can free the objects loaded
        // through it. Nodes are only freed by `Drop for SkipList`, which needs `&mut self`;
        // the returned guard (and every `Shared` loaded with it) borrows `self`, so no node
        // can be freed while they exist.
        unsafe { epoch::unprotected() }
    }

    /// Inserts an entry; false (and no change) if (key, version) is already present.
    pub(crate) fn insert(&self, key: &[u8], version: u64, kind: ValueKind, value: &[u8]) -> bool {
        let guard = self.guard();
        let mut splice = self.find_splice(key, version, guard);
        if is_entry(splice.succs[0], key, version) {
            return false;
        }
        let height = random_height();
        self.height.fetch_max(height, Ordering::Relaxed);
        let mut node = Owned::new(Node::new(key, version, kind, value, height));
        let bytes = node.approximate_bytes();

        // Level 0 decides membership: once linked here the entry is in the list.
        let linked = loop {
            node.next0.store(splice.succs[0], Ordering::Relaxed);
            match splice.preds[0].at(0).compare_exchange(
                splice.succs[0],
                node,
                Ordering::Release,
                Ordering::Relaxed,
                guard,
            ) {
                Ok(linked) => break linked,
                Err(failed) => {
                    node = failed.new;
                    splice = self.find_splice(key, version, guard);
                    if is_entry(splice.succs[0], key, version) {
                        return false; // Lost a race with an insert of the same entry.
                    }
                }
            }
        };
        // SAFETY: `linked` points to the node just published; nodes live until the list drops,
        // which cannot happen while `&self` is borrowed.
        let linked_node = unsafe { linked.deref() };

        for level in 1..height {
            loop {
                // Not yet reachable at `level`, so nobody else reads or writes this link.
                linked_node
                    .link(level)
                    .store(splice.succs[level], Ordering::Relaxed);
                if splice.preds[level]
                    .at(level)
                    .compare_exchange(
                        splice.succs[level],
                        linked,
                        Ordering::Release,
                        Ordering::Relaxed,
                        guard,
                    )
                    .is_ok()
                {
                    break;
                }
                splice = self.find_splice(key, version, guard);
            }
        }
        self.counters.len.fetch_add(1, Ordering::Release);
        self.counters.bytes.fetch_add(bytes, Ordering::Relaxed);
        true
    }

    /// At every level, the last link before (key, version) and the node it points to.
    fn find_splice<'a>(&'a self, key: &[u8], version: u64, guard: &'a Guard) -> Splice<'a> {
        let mut splice = Splice {
            preds: [Links::Head(&self.head); MAX_HEIGHT],
            succs: [Shared::null(); MAX_HEIGHT],
        };
        let mut tower = Links::Head(&self.head);
        // Levels above the tallest tower are empty: (head, null), as initialized. A tower
        // raised concurrently makes a later compare-and-swap fail and the splice be searched
        // again.
        let top = self.height.load(Ordering::Relaxed).min(MAX_HEIGHT);
        // The node that ended the search one level up: reached again from the same tower, it
        // needs no second comparison (each comparison is a cache miss on the node's key).
        let mut rejected: *const Node = ptr::null();
        for level in (0..top).rev() {
            loop {
                let next = tower.at(level).load(Ordering::Acquire, guard);
                let before = next.as_raw() != rejected
                    // SAFETY: non-null links point to nodes of this list, alive while `self` is.
                    && unsafe { next.as_ref() }
                        .is_some_and(|node| node.compare(key, version) == KeyOrdering::Less);
                if before {
                    // SAFETY: `before` implies a non-null link to a live node (see above).
                    tower = Links::Node(unsafe { next.deref() });
                } else {
                    rejected = next.as_raw();
                    splice.preds[level] = tower;
                    splice.succs[level] = next;
                    break;
                }
            }
        }
        splice
    }

    /// The last node for which `is_before` holds, or `None` if it holds for no node (or the
    /// list is empty). `is_before` must hold for a prefix of the list (true, then false).
    fn last_where<'a>(&'a self, is_before: impl Fn(&Node) -> bool) -> Option<&'a Node> {
        let guard = self.guard();
        let mut current: Option<&'a Node> = None;
        // A node found not-before at one level is often the next one at the level below too:
        // remember it to skip the repeated comparison.
        let mut rejected: *const Node = ptr::null();
        for level in (0..self.height.load(Ordering::Relaxed)).rev() {
            loop {
                let tower = current.map_or(Links::Head(&self.head), Links::Node);
                let next = tower.at(level).load(Ordering::Acquire, guard);
                if next.as_raw() == rejected {
                    break;
                }
                // SAFETY: non-null links point to nodes of this list, alive while `self` is.
                match unsafe { next.as_ref() } {
                    Some(node) if is_before(node) => current = Some(node),
                    _ => {
                        rejected = next.as_raw();
                        break;
                    }
                }
            }
        }
        current
    }

    /// The node after `node` (the first node if `node` is `None`).
    #[inline]
    pub(crate) fn next_of<'a>(&'a self, node: Option<&'a Node>) -> Option<&'a Node> {
        let link = match node {
            Some(node) => &node.next0,
            None => &self.head[0],
        };
        let next = link.load(Ordering::Acquire, self.guard());
        // SAFETY: non-null links point to nodes of this list, alive while `self` is.
        unsafe { next.as_ref() }
    }

    /// The first node.
    pub(crate) fn first(&self) -> Option<&Node> {
        self.next_of(None)
    }

    /// The last node.
    pub(crate) fn last(&self) -> Option<&Node> {
        self.last_where(|_| true)
    }

    /// The first node ≥ (key, version).
    pub(crate) fn seek(&self, key: &[u8], version: u64) -> Option<&Node> {
        let before = self.last_where(|node| node.compare(key, version) == KeyOrdering::Less);
        let mut candidate = self.next_of(before);
        // A node inserted concurrently, after the search passed it by, may now sit between
        // `before` and the target: walk forward past such nodes, or a reader would take a
        // neighbouring key's entry for the first one ≥ the target.
        while let Some(node) = candidate
            && node.compare(key, version) == KeyOrdering::Less
        {
            candidate = self.next_of(Some(node));
        }
        candidate
    }

    /// The last node ≤ (key, version).
    pub(crate) fn seek_for_prev(&self, key: &[u8], version: u64) -> Option<&Node> {
        self.last_where(|node| node.compare(key, version) != KeyOrdering::Greater)
    }

    /// The node before `node` (`None` if it is the first).
    pub(crate) fn prev_of<'a>(&'a self, node: &Node) -> Option<&'a Node> {
        let (key, version) = (node.key(), node.version());
        self.last_where(|other| other.compare(key, version) == KeyOrdering::Less)
    }
}

impl Drop for SkipList {
    fn drop(&mut self) {
        // SAFETY: `&mut self` proves no reader, writer or iterator can reach the nodes any more
        // (iterators hold an `Arc` to the owning memtable).
        let guard = unsafe { epoch::unprotected() };
        let mut next = self.head[0].load(Ordering::Relaxed, guard);
        while !next.is_null() {
            // SAFETY: every node is on the level-0 chain exactly once and upper levels only
            // alias it, so each node is turned into an `Owned` and freed exactly once.
            let node = unsafe { next.into_owned() };
            next = node.next0.load(Ordering::Relaxed, guard);
            drop(node);
        }
    }
}

/// True if `candidate` is the entry (key, version).
#[inline]
fn is_entry(candidate: Shared<'_, Node>, key: &[u8], version: u64) -> bool {
    // SAFETY: `candidate` was loaded from a link of a list borrowed by the caller, so it is
    // null or a live node.
    unsafe { candidate.as_ref() }.is_some_and(|node| node.compare(key, version).is_eq())
}

thread_local! {
    /// Per-thread xorshift64 state for tower heights (never zero).
    static HEIGHT_RNG: Cell<u64> = Cell::new(rand::random::<u64>() | 1);
}

/// A tower height: 1 + a geometric number of extra levels with p = 1/4, capped at MAX_HEIGHT.
fn random_height() -> usize {
    let bits = HEIGHT_RNG.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        x
    });
    // Each pair of trailing zero bits has probability 1/4.
    (1 + bits.trailing_zeros() as usize / 2).min(MAX_HEIGHT)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::cell::Cell;

    use super::*;

    thread_local! {
        /// Nodes created minus nodes dropped on this thread.
        pub(crate) static LIVE_NODES: Cell<isize> = const { Cell::new(0) };
    }

    fn live_nodes() -> isize {
        LIVE_NODES.with(Cell::get)
    }

    fn entries(list: &SkipList) -> Vec<(Vec<u8>, u64)> {
        let mut out = Vec::new();
        let mut node = list.first();
        while let Some(current) = node {
            out.push((current.key().to_vec(), current.version()));
            node = list.next_of(Some(current));
        }
        out
    }

    #[test]
    fn orders_by_key_then_version_descending() {
        let list = SkipList::new();
        for (key, version) in [("b", 1), ("a", 1), ("a", 9), ("ab", 5), ("a", 4)] {
            assert!(list.insert(key.as_bytes(), version, ValueKind::Put, b"v"));
        }
        let expected: Vec<(Vec<u8>, u64)> = [("a", 9), ("a", 4), ("a", 1), ("ab", 5), ("b", 1)]
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), *v))
            .collect();
        assert_eq!(entries(&list), expected);
        assert_eq!(list.len(), 5);
    }

    #[test]
    fn keys_of_many_lengths_with_shared_prefixes_order_and_read_back() {
        let list = SkipList::new();
        // Keys sharing long prefixes, each with its own value.
        let mut keys: Vec<Vec<u8>> = Vec::new();
        for len in [0, 1, 15, 16, 17, 100] {
            for last in [b'a', b'b'] {
                let mut k = vec![b'k'; len];
                if let Some(l) = k.last_mut() {
                    *l = last;
                }
                keys.push(k);
            }
        }
        keys.sort();
        keys.dedup();
        for (i, k) in keys.iter().enumerate().rev() {
            let value = format!("value {i}");
            assert!(list.insert(k, 7, ValueKind::Put, value.as_bytes()));
        }
        let got: Vec<(Vec<u8>, Vec<u8>)> =
            std::iter::successors(list.first(), |n| list.next_of(Some(n)))
                .map(|n| (n.key().to_vec(), n.value().to_vec()))
                .collect();
        let want: Vec<(Vec<u8>, Vec<u8>)> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), format!("value {i}").into_bytes()))
            .collect();
        assert_eq!(got, want);
        for k in &keys {
            let found = list.seek(k, u64::MAX).expect("present");
            assert_eq!(found.key(), &k[..]);
        }
    }

    #[test]
    fn duplicate_insert_keeps_the_first_entry() {
        let list = SkipList::new();
        assert!(list.insert(b"k", 3, ValueKind::Put, b"first"));
        assert!(!list.insert(b"k", 3, ValueKind::Tombstone, b""));
        assert_eq!(list.len(), 1);
        let node = list.seek(b"k", 3).unwrap();
        assert_eq!((node.kind(), node.value()), (ValueKind::Put, &b"first"[..]));
    }

    #[test]
    fn seek_prev_and_last_on_boundaries() {
        let list = SkipList::new();
        assert!(list.first().is_none() && list.last().is_none());
        assert!(list.seek(b"", u64::MAX).is_none());
        assert!(list.seek_for_prev(b"zz", 0).is_none());
        for i in 0..100u64 {
            assert!(list.insert(format!("k{i:03}").as_bytes(), i, ValueKind::Put, b""));
        }
        assert_eq!(list.first().unwrap().key(), b"k000");
        assert_eq!(list.last().unwrap().key(), b"k099");
        assert!(list.seek(b"k099", 98).is_none());
        assert!(list.seek_for_prev(b"k000", 1).is_none());
        assert_eq!(list.seek_for_prev(b"k000", 0).unwrap().key(), b"k000");
        let k050 = list.seek(b"k050", u64::MAX).unwrap();
        assert_eq!(list.prev_of(k050).unwrap().key(), b"k049");
        assert!(list.prev_of(list.first().unwrap()).is_none());
    }

    /// Regression: `seek` for an entry that is in the list must find it even while another
    /// thread inserts entries right before it (newer versions of the same key sort first).
    #[test]
    fn seek_finds_existing_entries_during_concurrent_inserts_nearby() {
        use std::sync::atomic::{AtomicBool, AtomicU64};
        let list = SkipList::new();
        let key = |i: u64| format!("key{i:05}").into_bytes();
        const KEYS: u64 = 200;
        for i in 0..KEYS {
            list.insert(&key(i), 1, ValueKind::Put, b"old");
        }
        let current = AtomicU64::new(0);
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 0..KEYS {
                    current.store(i, Ordering::Relaxed);
                    for v in 2..300u64 {
                        list.insert(&key(i), v, ValueKind::Put, b"new");
                    }
                }
                done.store(true, Ordering::Relaxed);
            });
            for _ in 0..2 {
                s.spawn(|| {
                    while !done.load(Ordering::Relaxed) {
                        let i = current.load(Ordering::Relaxed);
                        let found = list
                            .seek(&key(i), 1)
                            .map(|n| (n.key().to_vec(), n.version()));
                        assert_eq!(found, Some((key(i), 1)), "seek(key {i}, 1)");
                    }
                });
            }
        });
    }

    #[test]
    fn heights_are_geometric_and_bounded() {
        let samples = 40_000;
        let mut counts = [0usize; MAX_HEIGHT + 1];
        for _ in 0..samples {
            let height = random_height();
            assert!((1..=MAX_HEIGHT).contains(&height));
            counts[height] += 1;
        }
        // About 3/4 of towers have height 1 and 3/16 have height 2.
        assert!((28_000..32_000).contains(&counts[1]), "{counts:?}");
        assert!((6_500..8_500).contains(&counts[2]), "{counts:?}");
    }

    #[test]
    fn drop_frees_every_node() {
        let before = live_nodes();
        for round in 0..50u64 {
            let list = SkipList::new();
            for i in 0..200u64 {
                list.insert(&(i % 17).to_be_bytes(), i + round, ValueKind::Put, &[7; 10]);
            }
            // Duplicates allocate nothing that outlives the call.
            list.insert(&0u64.to_be_bytes(), round, ValueKind::Put, b"");
            assert_eq!(live_nodes() - before, 200);
        }
        assert_eq!(live_nodes(), before);
    }
}
