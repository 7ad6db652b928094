//! Sorted string tables: immutable, checksummed files of internal entries.
//!
//! A table is written once by [`TableBuilder`] from entries in internal-key order and then
//! read through [`Table`] (point lookups guarded by a bloom filter) and [`TableIterator`]
//! (ordered scans in both directions). Layout:
//!
//! ```text
//! [data block][trailer] ... [bloom block][trailer] [properties block][trailer]
//! [index block][trailer] [footer (64 bytes)]
//! ```
//!
//! Every block carries a CRC32 trailer checked on every read from disk; the footer has its
//! own CRC and a magic number. `docs/sstable.md` gives the exact byte layouts. Decoded data
//! blocks are shared through the [`cache::BlockCache`], which belongs to this module: the
//! reader fills it, nothing else reads it.

pub mod block;
pub mod bloom;
mod builder;
pub mod cache;
pub mod compression;
pub mod format;
mod iterator;
mod readahead;
mod reader;
mod varint;

pub use builder::{TableBuilder, TableOptions};
pub use compression::Compression;
pub use format::TableProperties;
pub use iterator::TableIterator;
pub use reader::{Table, TableEntry};

#[cfg(test)]
mod tests;
