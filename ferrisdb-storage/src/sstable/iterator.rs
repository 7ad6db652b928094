//! A cursor over a whole SSTable: a two-level iterator (index block → data blocks).
//!
//! The index cursor picks a data block, whose cursor yields entries; stepping past either end
//! of a data block moves the index cursor and loads the neighbouring block (through the block
//! cache). Because index keys are the last key of each block, `seek(k, v)` lands on the only
//! block that can hold the first entry >= (k, v). Any error leaves the cursor invalid. A cursor
//! that moves forward through consecutive blocks switches to reading ahead ([`Readahead`]).

use std::sync::Arc;

use bytes::Bytes;
use ferrisdb_core::Result;

use super::block::BlockIter;
use super::format::DecodeError;
use super::readahead::Readahead;
use super::reader::Table;
use crate::iterator::InternalIterator;
use crate::key::ValueKind;

/// Iterates the entries of one [`Table`] in internal-key order, in both directions.
#[derive(Debug)]
pub struct TableIterator {
    table: Arc<Table>,
    index: BlockIter,
    /// Cursor over the data block the index cursor points at.
    data: Option<BlockIter>,
    /// File offset of the loaded data block (for error offsets and block reuse).
    data_offset: u64,
    /// Whether data blocks read from the file are put in the block cache.
    fill_cache: bool,
    /// Sequential-read detection and the read-ahead window.
    readahead: Readahead,
}

impl TableIterator {
    /// An unpositioned iterator over `table`, driven by a cursor over its index block;
    /// `fill_cache` says whether blocks it reads from the file are cached.
    pub(crate) fn new(table: Arc<Table>, index: BlockIter, fill_cache: bool) -> TableIterator {
        TableIterator {
            table,
            index,
            data: None,
            data_offset: 0,
            fill_cache,
            readahead: Readahead::default(),
        }
    }

    /// The table being iterated.
    pub fn table(&self) -> &Arc<Table> {
        &self.table
    }

    /// Value of the current entry as a zero-copy slice of its block (empty if invalid).
    pub fn value_bytes(&self) -> Bytes {
        self.current()
            .map(BlockIter::value_bytes)
            .unwrap_or_default()
    }

    fn current(&self) -> Option<&BlockIter> {
        self.data.as_ref().filter(|data| data.valid())
    }

    /// Runs a positioning step; on error drops the data cursor so the iterator is invalid.
    fn guarded(&mut self, step: impl FnOnce(&mut Self) -> Result<()>) -> Result<()> {
        let result = step(self);
        if result.is_err() {
            self.data = None;
        }
        result
    }

    /// Loads the data block the index cursor points at (or keeps it if already loaded) and
    /// returns its cursor; `None` if the index cursor is exhausted.
    fn load_data_block(&mut self) -> Result<Option<&mut BlockIter>> {
        if !self.index.valid() {
            self.data = None;
            return Ok(None);
        }
        let handle = self.table.handle_at(&self.index)?;
        let reusable = self.data.is_some() && self.data_offset == handle.offset;
        if !reusable {
            let block = if self.readahead.note_load(handle) {
                self.table
                    .data_block_readahead(handle, &mut self.readahead, self.fill_cache)?
            } else {
                self.table.data_block(handle, self.fill_cache)?
            };
            match self.data.as_mut() {
                Some(data) => data.reset(block),
                None => self.data = Some(BlockIter::new(block)),
            }
            self.data_offset = handle.offset;
        }
        Ok(self.data.as_mut())
    }

    /// While the data cursor is exhausted, moves to the first entry of the next block.
    fn skip_forward(&mut self) -> Result<()> {
        while self.data.as_ref().is_some_and(|data| !data.valid()) {
            self.index.next().map_err(|e| self.table.index_error(e))?;
            self.position_data(BlockIter::seek_to_first)?;
        }
        Ok(())
    }

    /// While the data cursor is exhausted, moves to the last entry of the previous block.
    fn skip_backward(&mut self) -> Result<()> {
        while self.data.as_ref().is_some_and(|data| !data.valid()) {
            self.index.prev().map_err(|e| self.table.index_error(e))?;
            self.position_data(BlockIter::seek_to_last)?;
        }
        Ok(())
    }

    /// Loads the block under the index cursor and positions its cursor with `step`.
    fn position_data(
        &mut self,
        step: impl FnOnce(&mut BlockIter) -> std::result::Result<(), DecodeError>,
    ) -> Result<()> {
        let Some(data) = self.load_data_block()? else {
            return Ok(());
        };
        let result = step(data);
        result.map_err(|e| e.into_error(self.table.path(), self.data_offset))
    }
}

impl InternalIterator for TableIterator {
    fn valid(&self) -> bool {
        self.current().is_some()
    }

    fn key(&self) -> &[u8] {
        self.current().map(BlockIter::key).unwrap_or_default()
    }

    fn version(&self) -> u64 {
        self.current().map_or(0, BlockIter::version)
    }

    fn kind(&self) -> ValueKind {
        self.current().map_or(ValueKind::Tombstone, BlockIter::kind)
    }

    fn value(&self) -> &[u8] {
        self.current().map(BlockIter::value).unwrap_or_default()
    }

    fn seek_to_first(&mut self) -> Result<()> {
        self.guarded(|it| {
            it.index
                .seek_to_first()
                .map_err(|e| it.table.index_error(e))?;
            it.position_data(BlockIter::seek_to_first)?;
            it.skip_forward()
        })
    }

    fn seek_to_last(&mut self) -> Result<()> {
        self.guarded(|it| {
            it.index
                .seek_to_last()
                .map_err(|e| it.table.index_error(e))?;
            it.position_data(BlockIter::seek_to_last)?;
            it.skip_backward()
        })
    }

    fn seek(&mut self, key: &[u8], version: u64) -> Result<()> {
        self.guarded(|it| {
            it.table.seek_index(&mut it.index, key, version)?;
            it.position_data(|data| data.seek(key, version))?;
            it.skip_forward()
        })
    }

    fn seek_for_prev(&mut self, key: &[u8], version: u64) -> Result<()> {
        self.guarded(|it| {
            // The first block whose last key is >= target holds the answer, or the answer is
            // the last entry of the block before it.
            it.table.seek_index(&mut it.index, key, version)?;
            if it.index.valid() {
                it.position_data(|data| data.seek_for_prev(key, version))?;
            } else {
                it.index
                    .seek_to_last()
                    .map_err(|e| it.table.index_error(e))?;
                it.position_data(BlockIter::seek_to_last)?;
            }
            it.skip_backward()
        })
    }

    fn next(&mut self) -> Result<()> {
        self.guarded(|it| {
            let Some(data) = it.data.as_mut().filter(|data| data.valid()) else {
                return Ok(());
            };
            let result = data.next();
            result.map_err(|e| e.into_error(it.table.path(), it.data_offset))?;
            it.skip_forward()
        })
    }

    fn prev(&mut self) -> Result<()> {
        self.guarded(|it| {
            let Some(data) = it.data.as_mut().filter(|data| data.valid()) else {
                return Ok(());
            };
            let result = data.prev();
            result.map_err(|e| e.into_error(it.table.path(), it.data_offset))?;
            it.skip_backward()
        })
    }
}
