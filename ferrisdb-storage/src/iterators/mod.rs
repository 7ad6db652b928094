//! Iterators that combine sorted sources: [`MergeIterator`] (k-way heap merge of any
//! [`InternalIterator`]s) and [`LevelIterator`] (concatenation of the non-overlapping,
//! sorted tables of one level ≥ 1, each table's cursor created only when reached), plus
//! [`SourceIterator`], the statically dispatched union of the engine's source cursors.

mod level;
mod merge;
mod source;

pub use level::LevelIterator;
pub use merge::MergeIterator;
pub use source::SourceIterator;

use crate::iterator::InternalIterator;

/// A boxed source iterator that can move between threads.
pub type BoxedIterator = Box<dyn InternalIterator + Send>;

#[cfg(test)]
pub(crate) mod testing {
    //! A vector-backed iterator for tests.
    use super::*;
    use crate::key::{ValueKind, compare_internal};
    use ferrisdb_core::Result;

    /// Entries sorted in internal order, with a cursor.
    pub struct VecIterator {
        pub entries: Vec<(Vec<u8>, u64, ValueKind, Vec<u8>)>,
        pub pos: Option<usize>,
    }

    impl VecIterator {
        pub fn new(mut entries: Vec<(Vec<u8>, u64, ValueKind, Vec<u8>)>) -> Self {
            entries.sort_by(|a, b| compare_internal(&a.0, a.1, &b.0, b.1));
            VecIterator { entries, pos: None }
        }
        fn entry(&self) -> &(Vec<u8>, u64, ValueKind, Vec<u8>) {
            &self.entries[self.pos.unwrap()]
        }
    }

    impl InternalIterator for VecIterator {
        fn valid(&self) -> bool {
            self.pos.is_some()
        }
        fn key(&self) -> &[u8] {
            &self.entry().0
        }
        fn version(&self) -> u64 {
            self.entry().1
        }
        fn kind(&self) -> ValueKind {
            self.entry().2
        }
        fn value(&self) -> &[u8] {
            &self.entry().3
        }
        fn seek_to_first(&mut self) -> Result<()> {
            self.pos = (!self.entries.is_empty()).then_some(0);
            Ok(())
        }
        fn seek_to_last(&mut self) -> Result<()> {
            self.pos = self.entries.len().checked_sub(1);
            Ok(())
        }
        fn seek(&mut self, key: &[u8], version: u64) -> Result<()> {
            self.pos = self
                .entries
                .iter()
                .position(|e| compare_internal(&e.0, e.1, key, version).is_ge());
            Ok(())
        }
        fn seek_for_prev(&mut self, key: &[u8], version: u64) -> Result<()> {
            self.pos = self
                .entries
                .iter()
                .rposition(|e| compare_internal(&e.0, e.1, key, version).is_le());
            Ok(())
        }
        fn next(&mut self) -> Result<()> {
            self.pos = self.pos.map(|p| p + 1).filter(|p| *p < self.entries.len());
            Ok(())
        }
        fn prev(&mut self) -> Result<()> {
            self.pos = self.pos.and_then(|p| p.checked_sub(1));
            Ok(())
        }
    }
}
