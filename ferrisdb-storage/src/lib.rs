//! FerrisDB's storage engine: a multi-version LSM tree written from scratch.
//!
//! Each entry is keyed by (user key ascending, version descending) — see [`key`]. Writes go to
//! the write-ahead log ([`wal`]) and the active memtable ([`memtable`]); full memtables are
//! flushed to SSTables ([`sstable`]) whose set is recorded in the manifest; background
//! compaction merges SSTables level by level and drops versions below the GC horizon.

pub mod dir_lock;
#[cfg(test)]
mod doc_hex;
pub mod engine;
pub mod fsutil;
#[doc(hidden)]
pub mod fuzzing;
pub mod iterator;
pub mod iterators;
pub mod key;
pub mod manifest;
pub mod memtable;
pub mod range_tombstone;
pub mod sstable;
pub mod vfs;
pub mod wal;
