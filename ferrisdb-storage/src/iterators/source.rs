//! [`SourceIterator`]: the concrete cursors an engine merge combines, dispatched statically.
//!
//! A merge calls `key`/`version` on its children for every comparison; through a
//! `Box<dyn InternalIterator>` each is an indirect call that cannot be inlined. The engine's
//! sources are of three known kinds, so an enum lets the compiler inline the accessors.

use ferrisdb_core::Result;

use super::LevelIterator;
use crate::iterator::InternalIterator;
use crate::key::ValueKind;
use crate::memtable::MemTableIterator;
use crate::sstable::TableIterator;

/// One source of a merge: a memtable, a single table (level 0), or a whole deeper level.
pub enum SourceIterator {
    /// A memtable cursor.
    Mem(MemTableIterator),
    /// A cursor over one SSTable.
    Table(TableIterator),
    /// A cursor over a level of sorted, non-overlapping tables.
    Level(LevelIterator),
}

/// Forwards a call to whichever cursor the source holds.
macro_rules! dispatch {
    ($self:expr, $it:ident => $call:expr) => {
        match $self {
            SourceIterator::Mem($it) => $call,
            SourceIterator::Table($it) => $call,
            SourceIterator::Level($it) => $call,
        }
    };
}

impl InternalIterator for SourceIterator {
    #[inline]
    fn valid(&self) -> bool {
        dispatch!(self, it => it.valid())
    }
    #[inline]
    fn key(&self) -> &[u8] {
        dispatch!(self, it => it.key())
    }
    #[inline]
    fn version(&self) -> u64 {
        dispatch!(self, it => it.version())
    }
    #[inline]
    fn kind(&self) -> ValueKind {
        dispatch!(self, it => it.kind())
    }
    #[inline]
    fn value(&self) -> &[u8] {
        dispatch!(self, it => it.value())
    }
    fn seek_to_first(&mut self) -> Result<()> {
        dispatch!(self, it => it.seek_to_first())
    }
    fn seek_to_last(&mut self) -> Result<()> {
        dispatch!(self, it => it.seek_to_last())
    }
    fn seek(&mut self, key: &[u8], version: u64) -> Result<()> {
        dispatch!(self, it => it.seek(key, version))
    }
    fn seek_for_prev(&mut self, key: &[u8], version: u64) -> Result<()> {
        dispatch!(self, it => it.seek_for_prev(key, version))
    }
    #[inline]
    fn next(&mut self) -> Result<()> {
        dispatch!(self, it => it.next())
    }
    #[inline]
    fn prev(&mut self) -> Result<()> {
        dispatch!(self, it => it.prev())
    }
    fn skip_user_key(&mut self, key: &[u8]) -> Result<()> {
        dispatch!(self, it => it.skip_user_key(key))
    }
}
