//! The iterator contract every sorted source of entries implements.
//!
//! Memtables, SSTable blocks, whole SSTables, levels and the merge of all of them are
//! [`InternalIterator`]s over internal keys in (user key ascending, version descending) order.
//! An iterator is used in one direction per positioning: after `seek`/`seek_to_first` call
//! `next`; after `seek_for_prev`/`seek_to_last` call `prev`. I/O and checksum failures surface
//! as `Err` from the positioning call and leave the iterator invalid.

use ferrisdb_core::Result;

use crate::key::ValueKind;

/// A positioned cursor over internal entries.
pub trait InternalIterator {
    /// True if positioned on an entry.
    fn valid(&self) -> bool;
    /// User key of the current entry. Only call when [`valid`](Self::valid).
    fn key(&self) -> &[u8];
    /// Version of the current entry. Only call when valid.
    fn version(&self) -> u64;
    /// Kind of the current entry. Only call when valid.
    fn kind(&self) -> ValueKind;
    /// Value of the current entry (empty for tombstones). Only call when valid.
    fn value(&self) -> &[u8];

    /// Positions on the first entry.
    fn seek_to_first(&mut self) -> Result<()>;
    /// Positions on the last entry.
    fn seek_to_last(&mut self) -> Result<()>;
    /// Positions on the first entry ≥ (key, version) in internal order.
    fn seek(&mut self, key: &[u8], version: u64) -> Result<()>;
    /// Positions on the last entry ≤ (key, version) in internal order.
    fn seek_for_prev(&mut self, key: &[u8], version: u64) -> Result<()>;
    /// Moves to the next entry (forward direction).
    fn next(&mut self) -> Result<()>;
    /// Moves to the previous entry (reverse direction).
    fn prev(&mut self) -> Result<()>;

    /// Moves forward past every entry of user key `key` (the iterator is at the first of
    /// them, or already past). By default one [`next`](Self::next) per entry; a memtable
    /// jumps over a key's versions instead.
    fn skip_user_key(&mut self, key: &[u8]) -> Result<()> {
        while self.valid() && self.key() == key {
            self.next()?;
        }
        Ok(())
    }
}

impl<I: InternalIterator + ?Sized> InternalIterator for Box<I> {
    fn valid(&self) -> bool {
        (**self).valid()
    }
    fn key(&self) -> &[u8] {
        (**self).key()
    }
    fn version(&self) -> u64 {
        (**self).version()
    }
    fn kind(&self) -> ValueKind {
        (**self).kind()
    }
    fn value(&self) -> &[u8] {
        (**self).value()
    }
    fn seek_to_first(&mut self) -> Result<()> {
        (**self).seek_to_first()
    }
    fn seek_to_last(&mut self) -> Result<()> {
        (**self).seek_to_last()
    }
    fn seek(&mut self, key: &[u8], version: u64) -> Result<()> {
        (**self).seek(key, version)
    }
    fn seek_for_prev(&mut self, key: &[u8], version: u64) -> Result<()> {
        (**self).seek_for_prev(key, version)
    }
    fn next(&mut self) -> Result<()> {
        (**self).next()
    }
    fn prev(&mut self) -> Result<()> {
        (**self).prev()
    }
    fn skip_user_key(&mut self, key: &[u8]) -> Result<()> {
        (**self).skip_user_key(key)
    }
}
