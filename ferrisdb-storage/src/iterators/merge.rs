//! A k-way merge of sorted sources into one sorted stream: the current child plus a binary
//! heap of the other children's indices.
//!
//! The direction is fixed per positioning: forward (a min-heap) after `seek`/`seek_to_first`,
//! reverse (a max-heap) after `seek_for_prev`/`seek_to_last`. Entries that compare equal are
//! ordered by child index, lower first in both directions, so callers list newer sources
//! first. Any child error empties the merge (the iterator becomes invalid) and is returned.

use std::cmp::Ordering;

use ferrisdb_core::Result;

use super::BoxedIterator;
use crate::iterator::InternalIterator;
use crate::key::{ValueKind, compare_internal};

/// Merges several [`InternalIterator`]s of type `I` (boxed trait objects by default; an enum
/// of concrete cursors such as [`SourceIterator`](super::SourceIterator) avoids indirect calls).
///
/// The child holding the current entry is kept outside the heap of the other valid children,
/// so advancing it usually costs one comparison (against the heap's top) instead of a full
/// sift-down: consecutive entries often come from the same child.
pub struct MergeIterator<I = BoxedIterator> {
    children: Vec<I>,
    /// The child positioned on the current entry (`None` when the merge is exhausted).
    current: Option<usize>,
    /// Indices of the other valid children, a binary heap (`heap[0]` comes out next).
    heap: Vec<usize>,
    forward: bool,
    /// Reused by [`next_user_key`](Self::next_user_key).
    scratch: Vec<usize>,
}

impl<I: InternalIterator> MergeIterator<I> {
    /// A merge over `children`, listed newest source first.
    pub fn new(children: Vec<I>) -> Self {
        let heap = Vec::with_capacity(children.len());
        MergeIterator {
            children,
            current: None,
            heap,
            forward: true,
            scratch: Vec::new(),
        }
    }

    /// True if child `a`'s entry should come out before child `b`'s.
    #[inline]
    fn before(&self, a: usize, b: usize) -> bool {
        let (x, y) = (&self.children[a], &self.children[b]);
        let order = compare_internal(x.key(), x.version(), y.key(), y.version());
        let order = if self.forward { order } else { order.reverse() };
        match order {
            Ordering::Less => true,
            Ordering::Greater => false,
            Ordering::Equal => a < b,
        }
    }

    fn sift_down(&mut self, mut at: usize) {
        let len = self.heap.len();
        loop {
            let left = 2 * at + 1;
            if left >= len {
                return;
            }
            let right = left + 1;
            let mut best = left;
            if right < len && self.before(self.heap[right], self.heap[left]) {
                best = right;
            }
            if self.before(self.heap[best], self.heap[at]) {
                self.heap.swap(best, at);
                at = best;
            } else {
                return;
            }
        }
    }

    fn sift_up(&mut self, mut at: usize) {
        while at > 0 {
            let parent = (at - 1) / 2;
            if self.before(self.heap[at], self.heap[parent]) {
                self.heap.swap(at, parent);
                at = parent;
            } else {
                return;
            }
        }
    }

    /// Adds child `i` to the heap.
    fn push(&mut self, i: usize) {
        self.heap.push(i);
        self.sift_up(self.heap.len() - 1);
    }

    /// Removes and returns the heap's top.
    fn pop(&mut self) -> Option<usize> {
        let last = self.heap.pop()?;
        match self.heap.first_mut() {
            Some(top) => {
                let popped = std::mem::replace(top, last);
                self.sift_down(0);
                Some(popped)
            }
            None => Some(last),
        }
    }

    /// Forgets every child's position (after an error).
    fn clear(&mut self) {
        self.current = None;
        self.heap.clear();
    }

    /// Rebuilds the heap from the valid children, after a positioning call.
    fn rebuild(&mut self, forward: bool) {
        self.forward = forward;
        self.heap.clear();
        self.heap
            .extend((0..self.children.len()).filter(|i| self.children[*i].valid()));
        for at in (0..self.heap.len() / 2).rev() {
            self.sift_down(at);
        }
        self.current = self.pop();
    }

    /// Runs `step` on every child, then rebuilds the heap in direction `forward`.
    fn position_all(
        &mut self,
        forward: bool,
        mut step: impl FnMut(&mut I) -> Result<()>,
    ) -> Result<()> {
        for child in &mut self.children {
            if let Err(err) = step(child) {
                self.clear();
                return Err(err);
            }
        }
        self.rebuild(forward);
        Ok(())
    }

    /// Advances the current child (with `next` or `prev`) and picks the new current child.
    #[inline]
    fn advance(&mut self, forward: bool) -> Result<()> {
        let Some(top) = self.current else {
            return Ok(());
        };
        if forward != self.forward {
            self.clear();
            return Err(ferrisdb_core::Error::Internal(
                "merge iterator moved against its positioning direction".into(),
            ));
        }
        let child = &mut self.children[top];
        let result = if forward { child.next() } else { child.prev() };
        if let Err(err) = result {
            self.clear();
            return Err(err);
        }
        if !self.children[top].valid() {
            self.current = self.pop();
            return Ok(());
        }
        // Still first unless the best of the others now comes before it.
        if let Some(&other) = self.heap.first()
            && self.before(other, top)
        {
            self.heap[0] = top;
            self.current = Some(other);
            self.sift_down(0);
        }
        Ok(())
    }

    #[inline]
    fn current(&self) -> Option<&I> {
        self.current.map(|i| &self.children[i])
    }

    /// Moves forward past every entry of user key `key`, the current entry's key (a scan
    /// skipping the older versions of the key it just returned). Each child holding entries
    /// of `key` moves past them on its own (`InternalIterator::skip_user_key`), and the heap is fixed once per such child,
    /// instead of once per entry as [`next`](InternalIterator::next) would: with many
    /// versions per key spread over the memtables and tables, the per-entry heap comparisons
    /// were most of a scan's time.
    pub fn next_user_key(&mut self, key: &[u8]) -> Result<()> {
        let Some(top) = self.current else {
            return Ok(());
        };
        if !self.forward {
            self.clear();
            return Err(ferrisdb_core::Error::Internal(
                "merge iterator moved forward after a reverse positioning".into(),
            ));
        }
        if let Err(err) = self.children[top].skip_user_key(key) {
            self.clear();
            return Err(err);
        }
        // Other children holding `key` come out of the heap first (their entries sort
        // before every other), so they are found by popping while the top holds `key`.
        let mut moved = std::mem::take(&mut self.scratch);
        moved.clear();
        while let Some(&next) = self.heap.first() {
            if self.children[next].key() != key {
                break;
            }
            if let Some(popped) = self.pop() {
                if let Err(err) = self.children[popped].skip_user_key(key) {
                    self.scratch = moved;
                    self.clear();
                    return Err(err);
                }
                if self.children[popped].valid() {
                    moved.push(popped);
                }
            }
        }
        for &i in &moved {
            self.push(i);
        }
        self.scratch = moved;
        // The stepped current child: still first unless the heap's top now comes before it
        // (as in `advance`, one comparison in the common case of one version per key).
        if !self.children[top].valid() {
            self.current = self.pop();
        } else if let Some(&other) = self.heap.first()
            && self.before(other, top)
        {
            self.heap[0] = top;
            self.current = Some(other);
            self.sift_down(0);
        }
        Ok(())
    }
}

impl<I: InternalIterator> InternalIterator for MergeIterator<I> {
    #[inline]
    fn valid(&self) -> bool {
        self.current.is_some()
    }
    #[inline]
    fn key(&self) -> &[u8] {
        self.current().map_or(&[], |c| c.key())
    }
    #[inline]
    fn version(&self) -> u64 {
        self.current().map_or(0, |c| c.version())
    }
    #[inline]
    fn kind(&self) -> ValueKind {
        self.current().map_or(ValueKind::Tombstone, |c| c.kind())
    }
    #[inline]
    fn value(&self) -> &[u8] {
        self.current().map_or(&[], |c| c.value())
    }
    fn seek_to_first(&mut self) -> Result<()> {
        self.position_all(true, |c| c.seek_to_first())
    }
    fn seek_to_last(&mut self) -> Result<()> {
        self.position_all(false, |c| c.seek_to_last())
    }
    fn seek(&mut self, key: &[u8], version: u64) -> Result<()> {
        self.position_all(true, |c| c.seek(key, version))
    }
    fn seek_for_prev(&mut self, key: &[u8], version: u64) -> Result<()> {
        self.position_all(false, |c| c.seek_for_prev(key, version))
    }
    #[inline]
    fn next(&mut self) -> Result<()> {
        self.advance(true)
    }
    #[inline]
    fn prev(&mut self) -> Result<()> {
        self.advance(false)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::iterators::testing::VecIterator;

    type Entry = (Vec<u8>, u64, ValueKind, Vec<u8>);

    fn collect_forward(it: &mut MergeIterator<BoxedIterator>) -> Vec<(Vec<u8>, u64)> {
        let mut out = Vec::new();
        while it.valid() {
            out.push((it.key().to_vec(), it.version()));
            it.next().unwrap();
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn merge_matches_sorted_union(
            sources in prop::collection::vec(
                prop::collection::btree_set((0u8..20, 0u64..10), 0..15), 0..5),
            seek_key in 0u8..22, seek_version in 0u64..11,
        ) {
            let mut all: Vec<(Vec<u8>, u64)> = Vec::new();
            let children: Vec<BoxedIterator> = sources.iter().map(|set| {
                let entries: Vec<Entry> = set.iter()
                    .map(|(k, v)| (vec![*k], *v, ValueKind::Put, vec![*k]))
                    .collect();
                all.extend(entries.iter().map(|e| (e.0.clone(), e.1)));
                Box::new(VecIterator::new(entries)) as BoxedIterator
            }).collect();
            all.sort_by(|a, b| compare_internal(&a.0, a.1, &b.0, b.1));
            let mut merge = MergeIterator::new(children);

            merge.seek_to_first().unwrap();
            prop_assert_eq!(&collect_forward(&mut merge), &all);

            merge.seek_to_last().unwrap();
            let mut reverse = Vec::new();
            while merge.valid() {
                reverse.push((merge.key().to_vec(), merge.version()));
                merge.prev().unwrap();
            }
            reverse.reverse();
            prop_assert_eq!(&reverse, &all);

            let key = [seek_key];
            merge.seek(&key, seek_version).unwrap();
            let expected: Vec<_> = all.iter().filter(|e| compare_internal(&e.0, e.1, &key, seek_version).is_ge()).cloned().collect();
            prop_assert_eq!(collect_forward(&mut merge), expected);

            // Skipping by user key visits the first (newest) entry of each key, in order.
            merge.seek_to_first().unwrap();
            let mut firsts = Vec::new();
            while merge.valid() {
                let k = merge.key().to_vec();
                firsts.push((k.clone(), merge.version()));
                merge.next_user_key(&k).unwrap();
            }
            let mut expected_firsts: Vec<(Vec<u8>, u64)> = Vec::new();
            for e in &all {
                if expected_firsts.last().is_none_or(|last| last.0 != e.0) {
                    expected_firsts.push(e.clone());
                }
            }
            prop_assert_eq!(&firsts, &expected_firsts);
            // Mixed with plain steps: one step, then skip the rest of that key.
            merge.seek(&key, seek_version).unwrap();
            if merge.valid() {
                let k = merge.key().to_vec();
                merge.next_user_key(&k).unwrap();
                let expected = all.iter().find(|e| e.0.as_slice() > k.as_slice()).cloned();
                prop_assert_eq!(merge.valid().then(|| (merge.key().to_vec(), merge.version())), expected);
            }

            merge.seek_for_prev(&key, seek_version).unwrap();
            let expected = all.iter().rfind(|e| compare_internal(&e.0, e.1, &key, seek_version).is_le()).cloned();
            let got = merge.valid().then(|| (merge.key().to_vec(), merge.version()));
            prop_assert_eq!(got, expected);
        }
    }

    #[test]
    fn ties_prefer_the_lower_child_index() {
        let a = VecIterator::new(vec![(b"k".to_vec(), 5, ValueKind::Put, b"new".to_vec())]);
        let b = VecIterator::new(vec![(b"k".to_vec(), 5, ValueKind::Put, b"old".to_vec())]);
        let mut merge: MergeIterator = MergeIterator::new(vec![Box::new(a), Box::new(b)]);
        merge.seek_to_first().unwrap();
        assert_eq!(merge.value(), b"new");
        merge.seek_to_last().unwrap();
        assert_eq!(merge.value(), b"new");
    }
}
