//! An open, immutable SSTable.
//!
//! `Table::open` reads the footer, then the bloom, properties and index blocks (kept in
//! memory), and validates them against each other: the metadata blocks must tile the file
//! between the data region and the footer, the index handles must tile the data region in
//! order, and the index's last key must equal the recorded largest key. Data blocks are read
//! on demand with positional reads, checksum-verified, and shared through the [`BlockCache`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use ferrisdb_core::{Error, Result};

use super::block::{Block, BlockIter, RestartPrefixes};
use super::bloom::{BloomFilter, hash64};
use super::compression::block_contents;
use super::format::{
    BLOCK_TRAILER_SIZE, BlockHandle, DecodeError, FOOTER_SIZE, Footer, TableProperties,
    verify_block_trailer,
};
use super::iterator::TableIterator;
use super::readahead::Readahead;
use crate::key::{InternalKey, ValueKind};
use crate::sstable::cache::BlockCache;
use crate::vfs::{FileSystem, ReadableFile};

/// One entry returned by [`Table::get`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableEntry {
    /// Value or tombstone.
    pub kind: ValueKind,
    /// The value (a zero-copy slice of the cached block; empty for tombstones).
    pub value: Bytes,
    /// Version that wrote the entry.
    pub version: u64,
}

/// An open SSTable, shared as `Arc<Table>`.
#[derive(Debug)]
pub struct Table {
    id: u64,
    path: PathBuf,
    file: Box<dyn ReadableFile>,
    file_size: u64,
    cache: Arc<BlockCache>,
    index: Arc<Block>,
    /// The index's restart keys as integers, for seeks without walking the index block.
    index_prefixes: RestartPrefixes,
    index_offset: u64,
    /// End of the data region (= start of the bloom block).
    data_end: u64,
    bloom: BloomFilter,
    properties: TableProperties,
}

impl Table {
    /// Opens and validates the table at `path`; `table_id` keys its blocks in `cache`.
    pub fn open(
        fs: &dyn FileSystem,
        path: &Path,
        table_id: u64,
        cache: Arc<BlockCache>,
    ) -> Result<Arc<Table>> {
        let file = fs
            .open_read(path)
            .map_err(|e| Error::io(format!("opening table {}", path.display()), e))?;
        let file_size = file
            .len()
            .map_err(|e| Error::io(format!("reading metadata of {}", path.display()), e))?;
        let footer_offset = file_size
            .checked_sub(FOOTER_SIZE as u64)
            .ok_or_else(|| Error::corruption(path, 0, "file shorter than a table footer"))?;
        let mut footer_bytes = [0u8; FOOTER_SIZE];
        read_at(&*file, path, &mut footer_bytes, footer_offset)?;
        let footer =
            Footer::decode(&footer_bytes).map_err(|e| e.into_error(path, footer_offset))?;

        // Metadata blocks lie back to back: bloom, properties, index, footer.
        let tiles = [footer.bloom, footer.properties, footer.index];
        for (i, handle) in tiles.iter().enumerate() {
            let next_start = tiles.get(i + 1).map_or(footer_offset, |h| h.offset);
            if handle.end_with_trailer() != Some(next_start) {
                return Err(Error::corruption(
                    path,
                    footer_offset,
                    "footer block handles do not tile the file",
                ));
            }
        }

        let bloom_bytes = read_block(&*file, path, footer.bloom)?;
        let bloom = BloomFilter::decode(bloom_bytes)
            .map_err(|e| e.into_error(path, footer.bloom.offset))?;
        let props_bytes = read_block(&*file, path, footer.properties)?;
        let mut properties = TableProperties::decode(&props_bytes)
            .map_err(|e| e.into_error(path, footer.properties.offset))?;
        properties.file_size = file_size;
        let index_bytes = read_block(&*file, path, footer.index)?;
        let index =
            Block::decode(index_bytes).map_err(|e| e.into_error(path, footer.index.offset))?;
        let index_prefixes =
            RestartPrefixes::build(&index).map_err(|e| e.into_error(path, footer.index.offset))?;

        let table = Table {
            id: table_id,
            path: path.to_path_buf(),
            file,
            file_size,
            cache,
            index: Arc::new(index),
            index_prefixes,
            index_offset: footer.index.offset,
            data_end: footer.bloom.offset,
            bloom,
            properties,
        };
        table.validate_index()?;
        Ok(Arc::new(table))
    }

    /// Checks that index handles tile the data region and agree with the properties.
    fn validate_index(&self) -> Result<()> {
        let mut index = BlockIter::new(self.index.clone());
        let mut expected_offset = 0u64;
        let mut count = 0u64;
        let mut last = InternalKey::default();
        index.seek_to_first().map_err(|e| self.index_error(e))?;
        while index.valid() {
            let handle = self.handle_at(&index)?;
            if handle.offset != expected_offset {
                return Err(
                    self.index_error(DecodeError::new(0, "data block handles not contiguous"))
                );
            }
            expected_offset = handle.end_with_trailer().unwrap_or(u64::MAX);
            count += 1;
            last.key.clear();
            last.key.extend_from_slice(index.key());
            last.version = index.version();
            index.next().map_err(|e| self.index_error(e))?;
        }
        if expected_offset != self.data_end || count != self.properties.data_block_count {
            return Err(
                self.index_error(DecodeError::new(0, "index does not cover the data blocks"))
            );
        }
        if last != self.properties.largest {
            return Err(self.index_error(DecodeError::new(
                0,
                "index and properties disagree on largest key",
            )));
        }
        Ok(())
    }

    /// Newest entry of `key` with version <= `read_version`, tombstones included. Returns
    /// `Ok(None)` without touching data blocks when the bloom filter rules the key out.
    pub fn get(&self, key: &[u8], read_version: u64) -> Result<Option<TableEntry>> {
        self.get_hashed(key, hash64(key), read_version)
    }

    /// [`get`](Self::get) for a key whose bloom hash ([`hash64`]) is `key_hash`: a lookup that
    /// probes many tables hashes the key once.
    pub fn get_hashed(
        &self,
        key: &[u8],
        key_hash: u64,
        read_version: u64,
    ) -> Result<Option<TableEntry>> {
        if !self.may_contain_hashed(key, key_hash) {
            return Ok(None);
        }
        let mut index = BlockIter::new(self.index.clone());
        self.seek_index(&mut index, key, read_version)?;
        while index.valid() {
            let handle = self.handle_at(&index)?;
            let mut data = BlockIter::new(self.data_block(handle, true)?);
            data.seek(key, read_version)
                .map_err(|e| e.into_error(&self.path, handle.offset))?;
            if data.valid() {
                if data.key() != key {
                    return Ok(None);
                }
                return Ok(Some(TableEntry {
                    kind: data.kind(),
                    value: data.value_bytes(),
                    version: data.version(),
                }));
            }
            // Unreachable for well-formed tables (the block's last key is >= the target).
            index.next().map_err(|e| self.index_error(e))?;
        }
        Ok(None)
    }

    /// The data blocks that may hold keys of `[begin, end)` (an empty `end`: unbounded), each
    /// as its last user key and its size on disk, from the index alone (no data block is
    /// read). The blocks at the range's edges are counted whole.
    pub fn block_sizes(&self, begin: &[u8], end: &[u8]) -> Result<Vec<(Vec<u8>, u64)>> {
        let mut index = BlockIter::new(self.index.clone());
        self.seek_index(&mut index, begin, u64::MAX)?;
        let mut out = Vec::new();
        while index.valid() {
            let handle = self.handle_at(&index)?;
            let last = index.key().to_vec();
            let past_end = !end.is_empty() && last.as_slice() >= end;
            out.push((last, handle.size));
            if past_end {
                break;
            }
            index.next().map_err(|e| self.index_error(e))?;
        }
        Ok(out)
    }

    /// The compression type byte (`sstable::compression::COMPRESSION_*`) of each data block,
    /// in key order, from the blocks' trailers (the trailers are read, not verified).
    pub fn data_block_compressions(&self) -> Result<Vec<u8>> {
        let mut index = BlockIter::new(self.index.clone());
        index.seek_to_first().map_err(|e| self.index_error(e))?;
        let mut out = Vec::new();
        while index.valid() {
            let handle = self.handle_at(&index)?;
            let mut kind = [0u8];
            read_at(
                self.file.as_ref(),
                &self.path,
                &mut kind,
                handle.offset.saturating_add(handle.size),
            )?;
            out.push(kind[0]);
            index.next().map_err(|e| self.index_error(e))?;
        }
        Ok(out)
    }

    /// False only if `key` is certainly absent: outside the key range or rejected by the
    /// bloom filter.
    pub fn may_contain(&self, key: &[u8]) -> bool {
        self.may_contain_hashed(key, hash64(key))
    }

    fn may_contain_hashed(&self, key: &[u8], key_hash: u64) -> bool {
        key >= self.properties.smallest.key.as_slice()
            && key <= self.properties.largest.key.as_slice()
            && self.bloom.may_contain_hash(key_hash)
    }

    /// A cursor over all entries of the table; the data blocks it reads are cached.
    pub fn iter(self: &Arc<Self>) -> TableIterator {
        TableIterator::new(Arc::clone(self), BlockIter::new(self.index.clone()), true)
    }

    /// A cursor over all entries that uses cached blocks but caches none it reads, so a
    /// one-pass reader (compaction) does not evict the blocks point reads and scans use.
    pub fn iter_uncached(self: &Arc<Self>) -> TableIterator {
        TableIterator::new(Arc::clone(self), BlockIter::new(self.index.clone()), false)
    }

    /// The table's properties.
    pub fn properties(&self) -> &TableProperties {
        &self.properties
    }

    /// The id the table was opened with.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Path of the table file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the table file in bytes.
    pub fn file_size(&self) -> u64 {
        self.file_size
    }

    /// Positions `index` (a cursor over this table's index block) on the first entry >=
    /// `(key, version)`: the data block that holds the first entry at or after it.
    pub(crate) fn seek_index(&self, index: &mut BlockIter, key: &[u8], version: u64) -> Result<()> {
        let restart = self
            .index_prefixes
            .last_restart_below(&self.index, key, version)
            .map_err(|e| self.index_error(e))?;
        index
            .seek_from_restart(restart, key, version)
            .map_err(|e| self.index_error(e))
    }

    /// Bytes the open table holds in memory for as long as it is open, outside the block
    /// cache: its index block, the index's search aid and the bloom filter (plus its smallest
    /// and largest keys).
    pub fn memory_bytes(&self) -> usize {
        self.index.charge()
            + self.index_prefixes.memory_bytes()
            + self.bloom.size_bytes()
            + self.properties.smallest.key.len()
            + self.properties.largest.key.len()
            + std::mem::size_of::<Table>()
    }

    /// Decodes the block handle stored in the current index entry.
    pub(crate) fn handle_at(&self, index: &BlockIter) -> Result<BlockHandle> {
        let handle = BlockHandle::decode_varint(index.value())
            .map_err(|e| self.index_error(DecodeError::new(0, e.reason)))?;
        match handle.end_with_trailer() {
            Some(end) if end <= self.data_end => Ok(handle),
            _ => Err(self.index_error(DecodeError::new(
                0,
                "data block handle outside the data region",
            ))),
        }
    }

    /// The data block at `handle`, from the cache or read and verified (then cached if
    /// `fill_cache`).
    pub(crate) fn data_block(&self, handle: BlockHandle, fill_cache: bool) -> Result<Arc<Block>> {
        if let Some(block) = self.cache.get(self.id, handle.offset) {
            return Ok(block);
        }
        let bytes = read_block(&*self.file, &self.path, handle)?;
        self.decode_data_block(handle, bytes, fill_cache)
    }

    /// The data block at `handle` for a cursor reading blocks in file order: from the cache
    /// if there, else cut from `readahead`'s window, refilled with one larger read when it
    /// does not hold the block (then cached if `fill_cache`).
    pub(crate) fn data_block_readahead(
        &self,
        handle: BlockHandle,
        readahead: &mut Readahead,
        fill_cache: bool,
    ) -> Result<Arc<Block>> {
        if let Some(block) = self.cache.get(self.id, handle.offset) {
            return Ok(block);
        }
        let len = block_len_with_trailer(&self.path, handle)?;
        let raw = match readahead.cut(handle.offset, len) {
            Some(raw) => raw,
            None => {
                let window_len = readahead.next_window_len(handle.offset, len, self.data_end);
                let mut window = vec![0u8; window_len];
                read_at(&*self.file, &self.path, &mut window, handle.offset)?;
                readahead.fill(handle.offset, Bytes::from(window));
                readahead.cut(handle.offset, len).ok_or_else(|| {
                    Error::Internal(format!(
                        "readahead window of {} at {} misses the block of {len} bytes there",
                        self.path.display(),
                        handle.offset
                    ))
                })?
            }
        };
        let mut contents = verified_contents(&self.path, handle, raw)?;
        if fill_cache {
            // A cached block must not pin the whole window: the cache charges block sizes.
            contents = Bytes::copy_from_slice(&contents);
        }
        self.decode_data_block(handle, contents, fill_cache)
    }

    /// Decodes the verified contents of the data block at `handle`, caching it if
    /// `fill_cache`.
    fn decode_data_block(
        &self,
        handle: BlockHandle,
        contents: Bytes,
        fill_cache: bool,
    ) -> Result<Arc<Block>> {
        let block =
            Arc::new(Block::decode(contents).map_err(|e| e.into_error(&self.path, handle.offset))?);
        if fill_cache {
            self.cache
                .insert(self.id, handle.offset, Arc::clone(&block));
        }
        Ok(block)
    }

    /// Corruption in the index block.
    pub(crate) fn index_error(&self, err: DecodeError) -> Error {
        err.into_error(&self.path, self.index_offset)
    }
}

/// Reads exactly `buf.len()` bytes at `offset`.
fn read_at(file: &dyn ReadableFile, path: &Path, buf: &mut [u8], offset: u64) -> Result<()> {
    file.read_exact_at(buf, offset).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::corruption(path, offset, "table file truncated")
        } else {
            Error::io(format!("reading {} at {offset}", path.display()), e)
        }
    })
}

/// Bytes of the block at `handle` with its trailer.
fn block_len_with_trailer(path: &Path, handle: BlockHandle) -> Result<usize> {
    usize::try_from(handle.size)
        .ok()
        .and_then(|size| size.checked_add(BLOCK_TRAILER_SIZE))
        .ok_or_else(|| Error::corruption(path, handle.offset, "block size too large"))
}

/// Reads a block and its trailer, verifies the checksum, and returns the contents.
fn read_block(file: &dyn ReadableFile, path: &Path, handle: BlockHandle) -> Result<Bytes> {
    let mut buf = vec![0u8; block_len_with_trailer(path, handle)?];
    read_at(file, path, &mut buf, handle.offset)?;
    verified_contents(path, handle, Bytes::from(buf))
}

/// Verifies the checksum of `raw` (a block and its trailer, read from `handle`) and returns
/// the block contents, decompressed if the block was stored compressed.
fn verified_contents(path: &Path, handle: BlockHandle, mut raw: Bytes) -> Result<Bytes> {
    let stored_len = raw.len().saturating_sub(BLOCK_TRAILER_SIZE);
    let (stored, trailer) = raw.split_at(stored_len);
    let compression = verify_block_trailer(stored, trailer)
        .map_err(|e| e.into_error(path, handle.offset.saturating_add(handle.size)))?;
    raw.truncate(stored_len);
    block_contents(raw, compression).map_err(|e| e.into_error(path, handle.offset))
}
