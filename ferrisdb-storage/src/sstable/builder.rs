//! Writes an SSTable file from entries arriving in increasing internal order.
//!
//! Data blocks are cut when they reach `block_size`; each gets an index entry keyed by its
//! last internal key. `finish` appends the bloom, properties and index blocks and the footer,
//! then fsyncs. See `docs/sstable.md` for the layout.

use std::io::{BufWriter, Write};

use crate::vfs::{CreateMode, SharedFs, WritableFile};
use std::path::{Path, PathBuf};

use ferrisdb_core::{Error, Result};

use super::block::BlockBuilder;
use super::bloom::BloomBuilder;
use super::compression::{BlockCompressor, COMPRESSION_NONE, Compression};
use super::format::{
    BLOCK_TRAILER_SIZE, BlockHandle, FOOTER_SIZE, Footer, TableProperties, block_trailer_for,
};
use crate::key::{InternalKey, ValueKind, compare_internal};

/// Largest key + value accepted in one entry; keeps block offsets within `u32`.
const MAX_ENTRY_BYTES: usize = 1 << 30;
/// Largest accepted `block_size`.
const MAX_BLOCK_SIZE: usize = 1 << 30;
/// Restart interval of the index block: every entry, so seeks are pure binary search.
const INDEX_RESTART_INTERVAL: usize = 1;
/// Write buffer in front of the file.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// Tuning knobs of the table format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableOptions {
    /// Target size of a data block's contents in bytes.
    pub block_size: usize,
    /// Entries between restart points in data blocks.
    pub restart_interval: usize,
    /// Bloom filter bits per distinct user key; 0 disables the filter.
    pub bloom_bits_per_key: usize,
    /// How data blocks are compressed (index, bloom and properties blocks never are).
    pub compression: Compression,
}

impl Default for TableOptions {
    fn default() -> Self {
        TableOptions {
            block_size: 4096,
            restart_interval: 8,
            bloom_bits_per_key: 10,
            compression: Compression::Lz4,
        }
    }
}

/// Streams sorted entries into a new table file.
#[derive(Debug)]
pub struct TableBuilder {
    fs: SharedFs,
    path: PathBuf,
    writer: BufWriter<Box<dyn WritableFile>>,
    opts: TableOptions,
    /// Compresses each data block as `opts.compression` says.
    compressor: BlockCompressor,
    /// Bytes written so far (the offset of the next block).
    offset: u64,
    data_block: BlockBuilder,
    index_block: BlockBuilder,
    bloom: BloomBuilder,
    /// Last key added (for ordering checks and the index entry of the open block).
    last_key: Vec<u8>,
    last_version: u64,
    props: TableProperties,
    handle_buf: Vec<u8>,
}

impl TableBuilder {
    /// Creates (truncating) the file at `path`.
    pub fn create(fs: &SharedFs, path: &Path, opts: TableOptions) -> Result<TableBuilder> {
        if opts.block_size == 0 || opts.block_size > MAX_BLOCK_SIZE {
            return Err(Error::InvalidArgument(format!(
                "block_size {}",
                opts.block_size
            )));
        }
        if opts.restart_interval == 0 || opts.bloom_bits_per_key > 1000 {
            return Err(Error::InvalidArgument(format!("table options {opts:?}")));
        }
        let file = fs
            .create(path, CreateMode::Truncate)
            .map_err(|e| Error::io(format!("creating table {}", path.display()), e))?;
        Ok(TableBuilder {
            fs: SharedFs::clone(fs),
            path: path.to_path_buf(),
            writer: BufWriter::with_capacity(WRITE_BUFFER_BYTES, file),
            opts,
            compressor: BlockCompressor::new(opts.compression),
            offset: 0,
            data_block: BlockBuilder::new(opts.restart_interval),
            index_block: BlockBuilder::new(INDEX_RESTART_INTERVAL),
            bloom: BloomBuilder::default(),
            last_key: Vec::new(),
            last_version: 0,
            props: TableProperties::default(),
            handle_buf: Vec::new(),
        })
    }

    /// Appends an entry. Entries must arrive in strictly increasing internal order
    /// (`Error::Internal` otherwise). After an error the builder must be abandoned.
    pub fn add(&mut self, key: &[u8], version: u64, kind: ValueKind, value: &[u8]) -> Result<()> {
        if key.len().saturating_add(value.len()) > MAX_ENTRY_BYTES {
            return Err(Error::InvalidArgument(format!(
                "table entry of {} key and {} value bytes is too large",
                key.len(),
                value.len()
            )));
        }
        let first = self.props.entry_count == 0;
        if !first && !compare_internal(key, version, &self.last_key, self.last_version).is_gt() {
            return Err(Error::Internal(format!(
                "table entries out of order: ({:?}, {version}) after ({:?}, {})",
                key, self.last_key, self.last_version
            )));
        }
        if first || key != self.last_key.as_slice() {
            self.bloom.add_key(key);
            self.props.distinct_key_count += 1;
        }
        if first {
            self.props.smallest = InternalKey::new(key, version);
            self.props.min_version = version;
            self.props.max_version = version;
        }
        self.props.min_version = self.props.min_version.min(version);
        self.props.max_version = self.props.max_version.max(version);
        self.props.entry_count += 1;
        self.props.tombstone_count += u64::from(kind == ValueKind::Tombstone);
        self.props.raw_key_bytes += key.len() as u64;
        self.props.raw_value_bytes += value.len() as u64;

        self.data_block.add(key, version, kind, value);
        self.last_key.clear();
        self.last_key.extend_from_slice(key);
        self.last_version = version;
        if self.data_block.estimated_size() >= self.opts.block_size {
            self.flush_data_block()?;
        }
        Ok(())
    }

    /// Approximate size of the file if finished now.
    pub fn estimated_size(&self) -> u64 {
        let pending = self.data_block.estimated_size()
            + self.index_block.estimated_size()
            + self.bloom.estimated_size(self.opts.bloom_bits_per_key)
            + FOOTER_SIZE;
        self.offset + pending as u64
    }

    /// True if no entry has been added.
    pub fn is_empty(&self) -> bool {
        self.props.entry_count == 0
    }

    /// Writes the bloom, properties and index blocks and the footer, fsyncs the file and
    /// returns the table's properties (with `file_size`). A table must hold at least one
    /// entry: finishing an empty builder deletes the file and returns `Error::Internal`.
    pub fn finish(mut self) -> Result<TableProperties> {
        if self.is_empty() {
            self.abandon()?;
            return Err(Error::Internal(
                "cannot finish a table with no entries".into(),
            ));
        }
        if !self.data_block.is_empty() {
            self.flush_data_block()?;
        }
        let bloom_block = self.bloom.finish(self.opts.bloom_bits_per_key);
        let bloom = self.write_block_bytes(&bloom_block)?;

        self.props.largest = InternalKey::new(self.last_key.as_slice(), self.last_version);
        let mut props_block = Vec::new();
        self.props.encode(&mut props_block);
        let properties = self.write_block_bytes(&props_block)?;

        let contents = self.index_block.finish();
        let index = write_block(&mut self.writer, &mut self.offset, contents, &self.path)?;

        let footer = Footer {
            index,
            bloom,
            properties,
        }
        .encode();
        self.write_raw(&footer)?;
        let mut file = self.writer.into_inner().map_err(|e| {
            Error::io(
                format!("flushing table {}", self.path.display()),
                e.into_error(),
            )
        })?;
        file.sync_all()
            .map_err(|e| Error::io(format!("syncing table {}", self.path.display()), e))?;
        self.props.file_size = self.offset;
        Ok(self.props)
    }

    /// Discards the builder and deletes its partially written file.
    pub fn abandon(self) -> Result<()> {
        drop(self.writer);
        self.fs
            .remove_file(&self.path)
            .map_err(|e| Error::io(format!("removing table {}", self.path.display()), e))
    }

    /// Path of the file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn flush_data_block(&mut self) -> Result<()> {
        let contents = self.data_block.finish();
        let compressed = self.compressor.compress(contents).map_err(|e| {
            Error::io(
                format!("compressing a block of table {}", self.path.display()),
                e,
            )
        })?;
        let handle = match &compressed {
            Some((kind, stored)) => write_stored_block(
                &mut self.writer,
                &mut self.offset,
                stored,
                *kind,
                &self.path,
            )?,
            None => write_block(&mut self.writer, &mut self.offset, contents, &self.path)?,
        };
        self.data_block.reset();
        self.handle_buf.clear();
        handle.encode_varint(&mut self.handle_buf);
        self.index_block.add(
            &self.last_key,
            self.last_version,
            ValueKind::Put,
            &self.handle_buf,
        );
        self.props.data_block_count += 1;
        Ok(())
    }

    fn write_block_bytes(&mut self, contents: &[u8]) -> Result<BlockHandle> {
        write_block(&mut self.writer, &mut self.offset, contents, &self.path)
    }

    fn write_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.writer
            .write_all(bytes)
            .map_err(|e| Error::io(format!("writing table {}", self.path.display()), e))?;
        self.offset += bytes.len() as u64;
        Ok(())
    }
}

/// Writes `contents` uncompressed and its trailer at `*offset`, advancing it; returns the
/// block's handle.
fn write_block(
    writer: &mut BufWriter<Box<dyn WritableFile>>,
    offset: &mut u64,
    contents: &[u8],
    path: &Path,
) -> Result<BlockHandle> {
    write_stored_block(writer, offset, contents, COMPRESSION_NONE, path)
}

/// Writes `stored` (a block's bytes as stored with `compression`) and its trailer at
/// `*offset`, advancing it; returns the block's handle (its size is the stored size).
fn write_stored_block(
    writer: &mut BufWriter<Box<dyn WritableFile>>,
    offset: &mut u64,
    stored: &[u8],
    compression: u8,
    path: &Path,
) -> Result<BlockHandle> {
    let handle = BlockHandle {
        offset: *offset,
        size: stored.len() as u64,
    };
    let trailer = block_trailer_for(stored, compression);
    writer
        .write_all(stored)
        .and_then(|()| writer.write_all(&trailer))
        .map_err(|e| Error::io(format!("writing table {}", path.display()), e))?;
    *offset += (stored.len() + BLOCK_TRAILER_SIZE) as u64;
    Ok(handle)
}
