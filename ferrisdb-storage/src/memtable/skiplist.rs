//! A concurrent, insert-only, lock-free skip list ordered by internal key.
//!
//! Nodes are ordered by [`compare_internal`]: user key ascending, version descending. Each node
//! is one allocation carved from the list's [`Arena`]: a fixed header (version, lengths, kind,
//! height), then its *tower* of `next` links, one per level it takes part in (height drawn
//! with p = 1/4, at most [`MAX_HEIGHT`]), then the user key, then the value. A search step
//! therefore reads one node and finds the key right after the links it just followed: for the
//! three quarters of nodes of height 1 and short keys, one cache line.
//!
//! Invariants:
//! - Nodes are never removed or freed while the list lives; the arena frees them all when the
//!   list drops (it has `&mut self`, so nobody else can be looking). Hence any node pointer
//!   read from a link stays valid for as long as the list does, and the epoch machinery never
//!   has to retire anything: all loads use [`crossbeam_epoch::unprotected`] instead of pinning.
//! - Level 0 is the complete list; each higher level is a sorted sub-list of the level below.
//! - A node is published by a release CAS on its predecessor's level-0 link after its contents
//!   and level-0 `next` are written; readers load links with acquire ordering, so they always see
//!   a fully built node. Upper levels are linked afterwards, bottom up, each with its own CAS.
//! - A node's level-`L` link is rewritten by its inserter only before the node is linked at
//!   level `L`; after that only CASes by inserters of new successors change it.
//! - A (key, version) pair occurs at most once: an insert of an existing pair returns false.

use std::cmp::Ordering as KeyOrdering;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crossbeam_epoch::{self as epoch, Atomic, Guard, Shared};

use super::arena::Arena;
use crate::key::{ValueKind, compare_internal};

/// The tallest tower a node can have.
pub(crate) const MAX_HEIGHT: usize = 12;

/// One entry of the list: this header, followed in the same arena allocation by `height`
/// links (`Atomic<Node>`), the user key (`key_len` bytes) and the value (`value_len` bytes).
/// Only ever used by reference into the arena, never moved or built on the stack.
#[repr(C)]
pub(crate) struct Node {
    version: u64,
    /// An older version of the same user key (at or after this node in the list), or null:
    /// the oldest one its inserter saw. Set before the node is published, never changed
    /// after. A scan skipping a key's versions jumps here instead of stepping through each
    /// ([`SkipList::past_key`]).
    older_of_key: Atomic<Node>,
    key_len: u32,
    value_len: u32,
    kind: ValueKind,
    height: u8,
    /// Where the tower starts: a zero-length array so that the links that follow the header
    /// are addressed from the node itself.
    tower: [Atomic<Node>; 0],
}

impl Node {
    /// Bytes of a node with this height, key and value.
    fn size(height: usize, key_len: usize, value_len: usize) -> usize {
        size_of::<Node>() + height * size_of::<Atomic<Node>>() + key_len + value_len
    }

    /// Builds a node in `arena`, with null links. Panics if the key or value is 4 GiB or
    /// longer (the engine's limits are far below that).
    fn allocate(
        arena: &Arena,
        key: &[u8],
        version: u64,
        kind: ValueKind,
        value: &[u8],
        height: usize,
    ) -> NonNull<Node> {
        let (Ok(key_len), Ok(value_len), Ok(height_u8)) = (
            u32::try_from(key.len()),
            u32::try_from(value.len()),
            u8::try_from(height),
        ) else {
            panic!(
                "memtable entry too large: key {} bytes, value {} bytes",
                key.len(),
                value.len()
            );
        };
        let node = arena
            .allocate(Node::size(height, key.len(), value.len()))
            .cast::<Node>();
        // SAFETY: the arena handed out `Node::size(..)` bytes aligned to 8 (enough for `Node`
        // and `Atomic`) to this call alone; the header, `height` links, key and value are
        // written at disjoint offsets inside them, each before anything reads it.
        unsafe {
            node.as_ptr().write(Node {
                version,
                older_of_key: Atomic::null(),
                key_len,
                value_len,
                kind,
                height: height_u8,
                tower: [],
            });
            let links = node
                .as_ptr()
                .cast::<u8>()
                .add(size_of::<Node>())
                .cast::<Atomic<Node>>();
            for level in 0..height {
                links.add(level).write(Atomic::null());
            }
            let payload = links.add(height).cast::<u8>();
            ptr::copy_nonoverlapping(key.as_ptr(), payload, key.len());
            ptr::copy_nonoverlapping(value.as_ptr(), payload.add(key.len()), value.len());
        }
        node
    }

    /// The link to the next node at `level` (< the node's height).
    #[inline]
    fn link(&self, level: usize) -> &Atomic<Node> {
        debug_assert!(level < usize::from(self.height));
        // SAFETY: `Node::allocate` placed `height` initialized links right after the header,
        // where `tower` starts, and `level < height`; they live as long as the node.
        unsafe { &*self.tower.as_ptr().add(level) }
    }

    /// The key and value bytes.
    #[inline]
    fn payload(&self) -> &[u8] {
        // SAFETY: `Node::allocate` wrote `key_len + value_len` bytes right after the `height`
        // links; they are never changed and live as long as the node.
        unsafe {
            let start = self
                .tower
                .as_ptr()
                .add(usize::from(self.height))
                .cast::<u8>();
            std::slice::from_raw_parts(start, self.key_len as usize + self.value_len as usize)
        }
    }

    /// The user key.
    #[inline]
    pub(crate) fn key(&self) -> &[u8] {
        &self.payload()[..self.key_len as usize]
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
        &self.payload()[self.key_len as usize..]
    }

    /// This node's position relative to (key, version) in internal order.
    #[inline]
    fn compare(&self, key: &[u8], version: u64) -> KeyOrdering {
        compare_internal(self.key(), self.version, key, version)
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
    /// Where the nodes live; freed with the list.
    arena: Arena,
}

/// Counters bumped by every insert, on their own cache line so that readers walking from the
/// head do not miss on it.
#[repr(align(64))]
struct Counters {
    len: AtomicUsize,
    /// Inserts that drew a tower height (see `tower_height`).
    height_draws: AtomicU64,
}

impl SkipList {
    /// An empty list.
    pub(crate) fn new() -> Self {
        SkipList {
            head: std::array::from_fn(|_| Atomic::null()),
            height: AtomicUsize::new(1),
            counters: Counters {
                len: AtomicUsize::new(0),
                height_draws: AtomicU64::new(0),
            },
            arena: Arena::new(),
        }
    }

    /// Number of entries. Acquire: whatever an inserter did before its insert completed (e.g.
    /// widening the memtable's version bounds) is visible once its entry is counted.
    pub(crate) fn len(&self) -> usize {
        self.counters.len.load(Ordering::Acquire)
    }

    /// Memory held by the entries: the bytes of the arena's chunks.
    pub(crate) fn approximate_bytes(&self) -> usize {
        self.arena.allocated_bytes()
    }

    /// The guard used for every load, bound to the borrow of the list.
    #[inline]
    fn guard(&self) -> &Guard {
        // SAFETY: `unprotected` is sound when no other thread can free the objects loaded through
        // it. Nodes are only freed when the list's arena drops with the list, which needs the list
        // owned (no borrow left); the returned guard (and every `Shared` loaded with it) borrows
        // `self`, so no node can be freed while they exist.
        unsafe { epoch::unprotected() }
    }

    /// Inserts an entry; false (and no change) if (key, version) is already present.
    pub(crate) fn insert(&self, key: &[u8], version: u64, kind: ValueKind, value: &[u8]) -> bool {
        let guard = self.guard();
        let splice = self.find_splice(key, version, guard);
        self.insert_at(key, version, kind, value, splice, guard)
    }

    /// Inserts every entry, in order, as [`insert`](Self::insert) would one by one; returns
    /// how many were new. The searches for up to [`SEARCH_LANES`] entries advance together,
    /// one node each in turn, and each prefetches the node it compares next: the nodes of a
    /// large list are cache misses, and this way several are in flight at once instead of one
    /// after another (the single-entry search spends most of its time waiting on memory).
    pub(crate) fn insert_all(&self, entries: &[NewEntry<'_>]) -> usize {
        let guard = self.guard();
        let mut inserted = 0;
        for chunk in entries.chunks(SEARCH_LANES) {
            let mut splices = self.find_splices(chunk, guard).into_iter();
            for entry in chunk {
                let Some(splice) = splices.next() else { break };
                // A splice found before an earlier entry of the chunk went in may be stale
                // there; its compare-and-swap then fails and `insert_at` searches again.
                if self.insert_at(
                    entry.key,
                    entry.version,
                    entry.kind,
                    entry.value,
                    splice,
                    guard,
                ) {
                    inserted += 1;
                }
            }
        }
        inserted
    }

    /// Links a new entry in at `splice` (searched earlier: if it went stale, a failed
    /// compare-and-swap says so and the splice is searched again).
    fn insert_at<'a>(
        &'a self,
        key: &[u8],
        version: u64,
        kind: ValueKind,
        value: &[u8],
        mut splice: Splice<'a>,
        guard: &'a Guard,
    ) -> bool {
        if is_entry(splice.succs[0], key, version) {
            return false;
        }
        let height = tower_height(self.counters.height_draws.fetch_add(1, Ordering::Relaxed) + 1);
        self.height.fetch_max(height, Ordering::Relaxed);
        let node = Node::allocate(&self.arena, key, version, kind, value, height);
        let linked = Shared::from(node.as_ptr().cast_const());
        // SAFETY: the node was just built in the arena, which lives as long as `self`.
        let linked_node = unsafe { node.as_ref() };

        // Level 0 decides membership: once linked here the entry is in the list.
        loop {
            linked_node
                .link(0)
                .store(splice.succs[0], Ordering::Relaxed);
            // Not yet reachable: the release CAS below publishes the hint with the node.
            linked_node
                .older_of_key
                .store(older_of_key(splice.succs[0], key, guard), Ordering::Relaxed);
            match splice.preds[0].at(0).compare_exchange(
                splice.succs[0],
                linked,
                Ordering::Release,
                Ordering::Relaxed,
                guard,
            ) {
                Ok(_) => break,
                Err(_) => {
                    // The node stays unreachable in the arena if this turns out a duplicate.
                    splice = self.find_splice(key, version, guard);
                    if is_entry(splice.succs[0], key, version) {
                        return false; // Lost a race with an insert of the same entry.
                    }
                }
            }
        }

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

    /// [`find_splice`](Self::find_splice) for each of `targets` (at most [`SEARCH_LANES`]),
    /// the searches interleaved: each takes one step in turn and prefetches the node its next
    /// step compares, so their cache misses overlap.
    fn find_splices<'a>(&'a self, targets: &[NewEntry<'_>], guard: &'a Guard) -> Vec<Splice<'a>> {
        let top = self.height.load(Ordering::Relaxed).clamp(1, MAX_HEIGHT);
        let mut searches: Vec<LaneSearch<'a>> = targets
            .iter()
            .map(|_| LaneSearch {
                tower: Links::Head(&self.head),
                level: top - 1,
                rejected: ptr::null(),
                done: false,
                splice: Splice {
                    preds: [Links::Head(&self.head); MAX_HEIGHT],
                    succs: [Shared::null(); MAX_HEIGHT],
                },
            })
            .collect();
        let mut remaining = searches.len();
        while remaining > 0 {
            for (search, target) in searches.iter_mut().zip(targets) {
                if search.done {
                    continue;
                }
                let level = search.level;
                let next = search.tower.at(level).load(Ordering::Acquire, guard);
                let before = next.as_raw() != search.rejected
                    // SAFETY: non-null links point to nodes of this list, alive while `self` is.
                    && unsafe { next.as_ref() }.is_some_and(|node| {
                        node.compare(target.key, target.version) == KeyOrdering::Less
                    });
                if before {
                    // SAFETY: `before` implies a non-null link to a live node (see above).
                    search.tower = Links::Node(unsafe { next.deref() });
                } else {
                    search.rejected = next.as_raw();
                    search.splice.preds[level] = search.tower;
                    search.splice.succs[level] = next;
                    if level == 0 {
                        search.done = true;
                        remaining -= 1;
                        continue;
                    }
                    search.level -= 1;
                }
                let upcoming = search.tower.at(search.level).load(Ordering::Relaxed, guard);
                if upcoming.as_raw() != search.rejected {
                    prefetch(upcoming.as_raw());
                }
            }
        }
        searches.into_iter().map(|search| search.splice).collect()
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
            Some(node) => node.link(0),
            None => &self.head[0],
        };
        let next = link.load(Ordering::Acquire, self.guard());
        // SAFETY: non-null links point to nodes of this list, alive while `self` is.
        unsafe { next.as_ref() }
    }

    /// The first node after `node` whose user key differs from `node`'s: one jump to the
    /// oldest version of the key that `node`'s inserter saw (a key's versions are adjacent,
    /// and inserted at different times, so stepping through them is a cache miss each), then
    /// steps past any older version inserted since.
    pub(crate) fn past_key<'a>(&'a self, node: &'a Node) -> Option<&'a Node> {
        let older = node.older_of_key.load(Ordering::Relaxed, self.guard());
        // SAFETY: a non-null hint points to a node of this list (published before `node`,
        // which the caller reached through an acquire load), alive while `self` is.
        let mut current = unsafe { older.as_ref() }.unwrap_or(node);
        loop {
            match self.next_of(Some(current)) {
                Some(next) if next.key() == node.key() => current = next,
                next => return next,
            }
        }
    }

    /// Starts loading, into the CPU's cache, the node a forward scan visits after `node`'s
    /// versions: the oldest of them that `node` knows (where [`past_key`](Self::past_key)
    /// jumps), or the next node. A scan lands on a key, merges it with the other sources and
    /// copies it out before it moves on; that is time for this load to arrive.
    #[inline]
    pub(crate) fn prefetch_past(&self, node: &Node) {
        let older = node.older_of_key.load(Ordering::Relaxed, self.guard());
        let target = if older.is_null() {
            node.link(0).load(Ordering::Relaxed, self.guard())
        } else {
            older
        };
        if !target.is_null() {
            prefetch(target.as_raw());
        }
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

/// Entries searched together by [`SkipList::insert_all`]: enough misses in flight to cover
/// memory latency, few enough that the searches' state stays in registers and L1.
pub(crate) const SEARCH_LANES: usize = 8;

/// An entry to insert with `MemTable::insert_all`.
#[derive(Debug, Clone, Copy)]
pub struct NewEntry<'a> {
    /// The user key.
    pub key: &'a [u8],
    /// The entry's version.
    pub version: u64,
    /// Put or tombstone.
    pub kind: ValueKind,
    /// The value (empty for tombstones).
    pub value: &'a [u8],
}

/// One search of [`SkipList::find_splices`]: where it stands and what it found so far.
struct LaneSearch<'a> {
    tower: Links<'a>,
    level: usize,
    /// As in `find_splice`: the node that ended the search one level up.
    rejected: *const Node,
    done: bool,
    splice: Splice<'a>,
}

/// Asks the CPU to start loading the cache lines of `node`'s header, tower start and (for
/// short towers) key. A hint only: never faults, changes nothing, may be ignored.
#[inline]
fn prefetch(node: *const Node) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let line = node.cast::<i8>();
        // SAFETY: a prefetch reads nothing the program can observe and cannot fault, for any
        // address (null, dangling or unmapped included); SSE is part of the x86_64 baseline.
        // Exercised by every `insert_all` test and every forward scan of a memtable.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(line);
            _mm_prefetch::<_MM_HINT_T0>(line.wrapping_add(64));
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = node;
}

/// True if `candidate` is the entry (key, version).
#[inline]
fn is_entry(candidate: Shared<'_, Node>, key: &[u8], version: u64) -> bool {
    // SAFETY: `candidate` was loaded from a link of a list borrowed by the caller, so it is
    // null or a live node.
    unsafe { candidate.as_ref() }.is_some_and(|node| node.compare(key, version).is_eq())
}

/// The hint of a node of `key` inserted just before `succ`: if `succ` is a version of `key`
/// (an older one, as versions sort newest first), the oldest version `succ` knew of, else
/// `succ` itself; null if `succ` is another key's.
fn older_of_key<'a>(succ: Shared<'a, Node>, key: &[u8], guard: &'a Guard) -> Shared<'a, Node> {
    // SAFETY: `succ` was loaded from a link of a list borrowed by the caller, so it is null or
    // a live node.
    match unsafe { succ.as_ref() } {
        Some(node) if node.key() == key => {
            let older = node.older_of_key.load(Ordering::Relaxed, guard);
            if older.is_null() { succ } else { older }
        }
        _ => Shared::null(),
    }
}

/// The tower height of a list's `draw`-th insert: 1 + a geometric number of extra levels
/// with p = 1/4, capped at MAX_HEIGHT. The bits are the draw number mixed by splitmix64, so
/// a list's shape (and its byte count) depends only on its inserts, never on a thread's
/// random state: the deterministic simulator relies on that.
fn tower_height(draw: u64) -> usize {
    let mut bits = draw.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    bits = (bits ^ (bits >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    bits = (bits ^ (bits >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    bits ^= bits >> 31;
    // Each pair of trailing zero bits has probability 1/4.
    (1 + bits.trailing_zeros() as usize / 2).min(MAX_HEIGHT)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

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

    /// The one-byte values of `batch` (kept apart: entries borrow them).
    fn one_byte_values(batch: &[(Vec<u8>, u64, u8)]) -> Vec<[u8; 1]> {
        batch.iter().map(|(_, _, value)| [*value]).collect()
    }

    /// `batch` as entries to insert, with `values` from [`one_byte_values`].
    fn new_entries<'a>(
        batch: &'a [(Vec<u8>, u64, u8)],
        values: &'a [[u8; 1]],
    ) -> Vec<NewEntry<'a>> {
        batch
            .iter()
            .zip(values)
            .map(|((key, version, _), value)| NewEntry {
                key,
                version: *version,
                kind: ValueKind::Put,
                value,
            })
            .collect()
    }

    /// The first node after `node` of another key, found by stepping one node at a time.
    fn stepped_past_key<'a>(list: &'a SkipList, node: &'a Node) -> Option<&'a Node> {
        let mut stepped = list.next_of(Some(node));
        while let Some(next) = stepped.filter(|next| next.key() == node.key()) {
            stepped = list.next_of(Some(next));
        }
        stepped
    }

    /// One-byte-alphabet keys of 0 to 3 bytes, versions 0..4, 0 to 40 of them: many
    /// duplicates, shared prefixes, and chunks of `insert_all` longer than `SEARCH_LANES`.
    fn small_entries() -> impl proptest::strategy::Strategy<Value = Vec<(Vec<u8>, u64, u8)>> {
        use proptest::prelude::*;
        proptest::collection::vec(
            (
                proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(b'c')], 0..4),
                0u64..4,
                any::<u8>(),
            ),
            0..40,
        )
    }

    proptest::proptest! {
        /// From every node, `past_key` lands on the first node of another key, as stepping
        /// would, whatever order the versions and keys went in.
        #[test]
        fn past_key_lands_where_stepping_does(entries in small_entries(), batch in small_entries()) {
            let list = SkipList::new();
            for (key, version, value) in &entries {
                list.insert(key, *version, ValueKind::Put, &[*value]);
            }
            let values = one_byte_values(&batch);
            list.insert_all(&new_entries(&batch, &values));
            let mut node = list.first();
            while let Some(n) = node {
                let stepped = stepped_past_key(&list, n);
                let jumped = list.past_key(n);
                proptest::prop_assert_eq!(
                    jumped.map(|j| (j.key().to_vec(), j.version())),
                    stepped.map(|s| (s.key().to_vec(), s.version()))
                );
                node = list.next_of(Some(n));
            }
        }

        /// `insert_all` leaves the list exactly as inserting one by one would (order, first
        /// value of a duplicate kept, count of new entries), on top of existing entries.
        #[test]
        fn insert_all_matches_one_by_one_inserts(
            existing in small_entries(),
            batch in small_entries(),
        ) {
            let (together, one_by_one) = (SkipList::new(), SkipList::new());
            for (key, version, value) in &existing {
                together.insert(key, *version, ValueKind::Put, &[*value]);
                one_by_one.insert(key, *version, ValueKind::Put, &[*value]);
            }
            let mut new = 0;
            for (key, version, value) in &batch {
                new += usize::from(one_by_one.insert(key, *version, ValueKind::Put, &[*value]));
            }
            let values = one_byte_values(&batch);
            let entries = new_entries(&batch, &values);
            proptest::prop_assert_eq!(together.insert_all(&entries), new);
            proptest::prop_assert_eq!(together.len(), one_by_one.len());
            let read = |list: &SkipList| {
                let mut out = Vec::new();
                let mut node = list.first();
                while let Some(current) = node {
                    out.push((current.key().to_vec(), current.version(), current.value().to_vec()));
                    node = list.next_of(Some(current));
                }
                out
            };
            proptest::prop_assert_eq!(read(&together), read(&one_by_one));
            // Every entry is found by a search too (the towers are linked correctly).
            for (key, version, _) in &batch {
                let found = together.seek(key, *version).expect("inserted entry");
                proptest::prop_assert_eq!((found.key(), found.version()), (&key[..], *version));
            }
        }
    }

    #[test]
    fn insert_all_of_many_keys_builds_a_searchable_list() {
        let list = SkipList::new();
        let keys: Vec<[u8; 8]> = (0..20_000u64)
            .map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_be_bytes())
            .collect();
        for chunk in keys.chunks(37) {
            let entries: Vec<NewEntry<'_>> = chunk
                .iter()
                .map(|key| NewEntry {
                    key,
                    version: 1,
                    kind: ValueKind::Put,
                    value: b"v",
                })
                .collect();
            assert_eq!(list.insert_all(&entries), chunk.len());
        }
        assert_eq!(list.len(), keys.len());
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(
            entries(&list),
            sorted.iter().map(|k| (k.to_vec(), 1)).collect::<Vec<_>>()
        );
        for key in &keys {
            assert_eq!(list.seek(key, 1).map(Node::key), Some(&key[..]));
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
    fn past_key_skips_exactly_one_key_during_and_after_concurrent_inserts() {
        use std::sync::atomic::AtomicBool;
        let list = SkipList::new();
        let key = |i: u64| format!("key{i:03}").into_bytes();
        const KEYS: u64 = 50;
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            // Writers racing on the same keys, versions out of order between them.
            let writers: Vec<_> = (0..3u64)
                .map(|w| {
                    let list = &list;
                    s.spawn(move || {
                        for round in 0..40u64 {
                            for i in 0..KEYS {
                                let version = round * 3 + (w + i) % 3 + 1;
                                list.insert(&key(i), version, ValueKind::Put, b"v");
                            }
                        }
                    })
                })
                .collect();
            // A scan meanwhile: every jump lands on a later key, never past a key that was
            // there before the scan began (key 0..KEYS all exist after the first round).
            s.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    let mut node = list.first();
                    while let Some(n) = node {
                        let next = list.past_key(n);
                        if let Some(next) = next {
                            assert!(next.key() > n.key(), "{:?} -> {:?}", n.key(), next.key());
                        }
                        node = next;
                    }
                }
            });
            for writer in writers {
                writer.join().unwrap();
            }
            done.store(true, Ordering::Relaxed);
        });
        // Afterwards, from every node, the jump and the steps agree.
        let mut node = list.first();
        let mut keys_seen = 0;
        while let Some(n) = node {
            let stepped = stepped_past_key(&list, n);
            assert_eq!(
                list.past_key(n).map(|j| (j.key().to_vec(), j.version())),
                stepped.map(|s| (s.key().to_vec(), s.version()))
            );
            if list.prev_of(n).is_none_or(|p| p.key() != n.key()) {
                keys_seen += 1;
            }
            node = list.next_of(Some(n));
        }
        assert_eq!(keys_seen, KEYS);
        assert_eq!(list.len(), (KEYS * 120) as usize);
    }

    #[test]
    fn heights_are_geometric_and_bounded() {
        let samples = 40_000;
        let mut counts = [0usize; MAX_HEIGHT + 1];
        for draw in 1..=samples {
            let height = tower_height(draw);
            assert!((1..=MAX_HEIGHT).contains(&height));
            counts[height] += 1;
        }
        // About 3/4 of towers have height 1 and 3/16 have height 2.
        assert!((28_000..32_000).contains(&counts[1]), "{counts:?}");
        assert!((6_500..8_500).contains(&counts[2]), "{counts:?}");
    }

    #[test]
    fn drop_frees_every_node_and_duplicates_allocate_nothing() {
        let before = super::super::arena::tests::live_bytes();
        for round in 0..50u64 {
            let list = SkipList::new();
            for i in 0..200u64 {
                list.insert(&(i % 17).to_be_bytes(), i + round, ValueKind::Put, &[7; 10]);
            }
            let held = list.approximate_bytes();
            assert!(!list.insert(&0u64.to_be_bytes(), round, ValueKind::Put, b""));
            assert_eq!(list.approximate_bytes(), held);
        }
        assert_eq!(super::super::arena::tests::live_bytes(), before);
    }

    #[test]
    fn large_values_and_long_keys_read_back_intact() {
        let list = SkipList::new();
        let value = |i: usize| vec![(i % 251) as u8; i * 997 % 400_000];
        for i in 0..64 {
            let key = format!("k{i:02}").repeat(1 + i % 5).into_bytes();
            assert!(list.insert(&key, i as u64, ValueKind::Put, &value(i)));
        }
        let mut node = list.first();
        let mut seen = 0;
        while let Some(current) = node {
            let i = current.version() as usize;
            assert_eq!(
                current.key(),
                format!("k{i:02}").repeat(1 + i % 5).as_bytes()
            );
            assert_eq!(current.value(), &value(i)[..]);
            assert_eq!(current.kind(), ValueKind::Put);
            seen += 1;
            node = list.next_of(Some(current));
        }
        assert_eq!(seen, 64);
    }
}
