//! The engine's current read state: the active memtable, the immutable memtables waiting to
//! be flushed, and the live tables of every level.
//!
//! A [`State`] is immutable once built and shared as `Arc<State>`; every change (memtable
//! switch, flush, compaction) builds a new one from the current one and swaps it in under the
//! write side of the engine's `RwLock`, so a reader that cloned the `Arc` sees one consistent
//! set of sources and never half a flush or compaction. Sources hold their memory and open
//! files alive through their own `Arc`s.

use std::sync::Arc;

use crate::iterators::{LevelIterator, SourceIterator};
use crate::memtable::MemTable;
use crate::range_tombstone::{RangeTombstoneSet, TombstoneView};
use crate::sstable::Table;

/// A memtable that no longer takes writes.
#[derive(Debug)]
pub(crate) struct Immutable {
    pub mem: Arc<MemTable>,
    /// First WAL segment holding none of this memtable's data.
    pub wal_end: u64,
    /// Last applied version when it was frozen: everything ≤ it is flushed with it.
    pub last_version: u64,
}

/// One consistent set of sources.
#[derive(Debug)]
pub(crate) struct State {
    pub active: Arc<MemTable>,
    /// Newest first.
    pub immutables: Vec<Arc<Immutable>>,
    /// Level 0 newest first; deeper levels sorted by key, non-overlapping.
    pub levels: Vec<Vec<Arc<Table>>>,
    /// The range tombstones the tables' entries are subject to (the manifest's set).
    pub table_tombstones: Arc<RangeTombstoneSet>,
}

impl State {
    /// Cursors over every source, newest first (for a merge that prefers newer sources).
    pub fn iterators(&self) -> Vec<SourceIterator> {
        let mut sources = Vec::with_capacity(
            1 + self.immutables.len() + self.levels.iter().map(Vec::len).sum::<usize>(),
        );
        sources.push(SourceIterator::Mem(self.active.iter()));
        for imm in &self.immutables {
            sources.push(SourceIterator::Mem(imm.mem.iter()));
        }
        if let Some(l0) = self.levels.first() {
            for table in l0 {
                sources.push(SourceIterator::Table(table.iter()));
            }
        }
        for level in self.levels.iter().skip(1).filter(|l| !l.is_empty()) {
            sources.push(SourceIterator::Level(LevelIterator::new(level.clone())));
        }
        sources
    }

    /// Cursors over every source a read at `read_version` can see anything in, newest
    /// first: as [`iterators`](Self::iterators), without the tables that one range tombstone
    /// (in `tombstones`, newer than every entry of the table and at most `read_version`)
    /// hides entirely — so a scan over a cleared range does not step through the cleared
    /// entries of tables that compaction has not rewritten yet.
    pub fn iterators_visible_at(
        &self,
        read_version: u64,
        tombstones: &TombstoneView,
    ) -> Vec<SourceIterator> {
        if tombstones.is_empty() {
            return self.iterators();
        }
        let visible = |table: &Arc<Table>| {
            let props = table.properties();
            !tombstones.hides_span(
                &props.smallest.key,
                &props.largest.key,
                props.max_version,
                read_version,
            )
        };
        let mut sources = Vec::new();
        sources.push(SourceIterator::Mem(self.active.iter()));
        for imm in &self.immutables {
            sources.push(SourceIterator::Mem(imm.mem.iter()));
        }
        if let Some(l0) = self.levels.first() {
            for table in l0.iter().filter(|t| visible(t)) {
                sources.push(SourceIterator::Table(table.iter()));
            }
        }
        for level in self.levels.iter().skip(1) {
            let tables: Vec<Arc<Table>> = level.iter().filter(|t| visible(t)).cloned().collect();
            if !tables.is_empty() {
                sources.push(SourceIterator::Level(LevelIterator::new(tables)));
            }
        }
        sources
    }

    /// Number of level-0 tables.
    pub fn l0_files(&self) -> usize {
        self.levels.first().map_or(0, Vec::len)
    }

    /// A copy with `levels` and the tables' range tombstones replaced.
    pub fn with_tables(
        &self,
        levels: Vec<Vec<Arc<Table>>>,
        table_tombstones: Arc<RangeTombstoneSet>,
    ) -> State {
        State {
            active: Arc::clone(&self.active),
            immutables: self.immutables.clone(),
            levels,
            table_tombstones,
        }
    }

    /// The newest version ≤ `read_version` of a range tombstone covering `key`, in any
    /// source.
    pub fn newest_range_tombstone(&self, key: &[u8], read_version: u64) -> Option<u64> {
        let mut newest = self.active.newest_range_tombstone(key, read_version);
        for imm in &self.immutables {
            newest = newest.max(imm.mem.newest_range_tombstone(key, read_version));
        }
        newest.max(self.table_tombstones.newest_covering(key, read_version))
    }

    /// Every range tombstone of every source (for a scan); `None` if there are none.
    pub fn range_tombstone_view(&self) -> Option<TombstoneView> {
        let mut view = TombstoneView::default();
        self.active.add_range_tombstones_to(&mut view);
        for imm in &self.immutables {
            imm.mem.add_range_tombstones_to(&mut view);
        }
        view.add_set(&self.table_tombstones);
        (!view.is_empty()).then_some(view)
    }
}

/// Sorts a level's tables into reading order: level 0 newest (highest id) first, deeper
/// levels by smallest key.
pub(crate) fn sort_level(level: usize, tables: &mut [Arc<Table>]) {
    if level == 0 {
        tables.sort_by_key(|t| std::cmp::Reverse(t.id()));
    } else {
        tables.sort_by(|a, b| a.properties().smallest.cmp(&b.properties().smallest));
    }
}
