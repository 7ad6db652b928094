//! Purging ranges no reader needs any more: a storage server that handed a shard away clears
//! it with a range deletion (tombstones newer than every entry) and then asks for the disk
//! space back, instead of waiting for compaction to carry the tombstones down to the bottom
//! level (which, for a database that no longer grows there, may be never).
//!
//! [`Engine::purge_ranges`] removes, from the tables, the values of each range at versions at
//! or below the range's `through` version. Tombstones are kept: every key of the range was
//! deleted at or below `through`, so its newest entry there is a tombstone, and keeping them
//! means a read at any version at or after the deletions sees exactly what it saw before
//! (nothing); only reads of older versions lose their answers, which is why the ranges must be
//! ones no reader needs. A table wholly inside a range, with no tombstone and nothing newer
//! than `through`, is deleted by the manifest edit alone; a table of level 1 or deeper that
//! overlaps one is rewritten without those values (its keys stay within its old bounds, so the
//! level stays sorted and disjoint). Level-0 tables that only overlap are left to compaction:
//! a rewrite would give them a new, newer file number and change their order. Tables are
//! handled one at a time, each under the compaction lock (so a long purge does not hold
//! compactions, and with them writes, back): one manifest edit replaces the table, the state
//! swaps, and only then is the old file removed — the order a compaction installs in, so the
//! two never race.
//!
//! Entries newer than `through` are kept, so a purge that runs late, after the range was
//! taken over again and rewritten at newer versions, removes nothing the new data needs.
//! The tombstones left behind are collected by compaction like any other.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use ferrisdb_core::Result;

use super::run::OutputWriter;
use crate::engine::Engine;
use crate::engine::flush::file_meta;
use crate::engine::state::sort_level;
use crate::iterator::InternalIterator;
use crate::key::ValueKind;
use crate::manifest::{VersionEdit, remove_if_present, table_file_name};
use crate::sstable::Table;

/// A key range `[begin, end)` (an empty `end`: unbounded) whose entries at versions at or
/// below `through` no reader needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeRange {
    /// First key.
    pub begin: Vec<u8>,
    /// Key past the last (empty: unbounded).
    pub end: Vec<u8>,
    /// Entries at this version or older are removed.
    pub through: u64,
}

impl PurgeRange {
    fn contains(&self, key: &[u8]) -> bool {
        key >= self.begin.as_slice() && (self.end.is_empty() || key < self.end.as_slice())
    }

    /// True if some key of `[smallest, largest]` lies in the range.
    fn overlaps(&self, smallest: &[u8], largest: &[u8]) -> bool {
        largest >= self.begin.as_slice() && (self.end.is_empty() || smallest < self.end.as_slice())
    }

    /// True if every key of `[smallest, largest]` lies in the range.
    fn covers(&self, smallest: &[u8], largest: &[u8]) -> bool {
        self.contains(smallest) && self.contains(largest)
    }
}

/// What a purge did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeStats {
    /// Tables deleted whole.
    pub dropped_tables: usize,
    /// Tables rewritten without the purged entries.
    pub rewritten_tables: usize,
    /// Values removed from rewritten tables.
    pub removed_entries: u64,
    /// Bytes of table files given back (old sizes less new ones).
    pub freed_bytes: u64,
}

/// What to do with one table.
enum Fate {
    Keep,
    Drop,
    Rewrite,
}

impl Engine {
    /// Removes from the tables the values of `ranges` at versions at or below the range's
    /// `through` (see the module comment); returns what it did.
    ///
    /// Only for ranges whose every key was deleted at or below `through` (a `delete_range`
    /// applied first) and that no reader reads at versions older than those deletions.
    pub fn purge_ranges(&self, ranges: &[PurgeRange]) -> Result<PurgeStats> {
        let inner = &self.inner;
        inner.check_open()?;
        let mut stats = PurgeStats::default();
        // Tables known to hold nothing left to purge (tombstones only, or just rewritten).
        let mut clean: HashSet<u64> = HashSet::new();
        // One table at a time, each under the compaction lock, so compactions go on between.
        loop {
            let _compacting = inner.compaction_lock.lock();
            let state = inner.current();
            let next = state
                .levels
                .iter()
                .enumerate()
                .flat_map(|(level, tables)| tables.iter().map(move |t| (level, t)))
                .filter(|(_, t)| !clean.contains(&t.id()))
                .find_map(|(level, t)| match fate(level, t, ranges) {
                    Fate::Keep => None,
                    fate => Some((level, Arc::clone(t), fate)),
                });
            let Some((level, table, fate)) = next else {
                break;
            };
            let outputs = match fate {
                Fate::Keep | Fate::Drop => Vec::new(),
                Fate::Rewrite => {
                    if !holds_purgeable(&table, ranges)? {
                        clean.insert(table.id());
                        continue;
                    }
                    let bottommost = state.levels[level + 1..].iter().all(|l| l.is_empty());
                    let (outputs, removed) = rewrite(self, level, bottommost, &table, ranges)?;
                    stats.rewritten_tables += 1;
                    stats.removed_entries += removed;
                    outputs
                }
            };
            replace(self, level, &table, &outputs)?;
            let new_size: u64 = outputs.iter().map(|t| t.file_size()).sum();
            stats.freed_bytes += table.file_size().saturating_sub(new_size);
            if matches!(fate, Fate::Drop) {
                stats.dropped_tables += 1;
            }
            clean.extend(outputs.iter().map(|t| t.id()));
        }
        if stats != PurgeStats::default() {
            inner.notify_stalled();
            tracing::info!(
                ranges = ranges.len(),
                dropped_tables = stats.dropped_tables,
                rewritten_tables = stats.rewritten_tables,
                removed_entries = stats.removed_entries,
                freed_bytes = stats.freed_bytes,
                "purged ranges no reader needs"
            );
        }
        Ok(stats)
    }
}

/// Replaces `old` (of `level`) with `outputs` (none: it is dropped): one manifest edit, the
/// state swap, then the old file's removal. The caller holds the compaction lock. If the
/// edit cannot be logged, the outputs (named by no manifest) are deleted.
fn replace(engine: &Engine, level: usize, old: &Arc<Table>, outputs: &[Arc<Table>]) -> Result<()> {
    let inner = &engine.inner;
    {
        let mut versions = inner.versions.lock();
        // The rewrite only removes entries: it keeps the old table's promise about range
        // tombstones.
        let clean_through = versions
            .manifest
            .state()
            .levels
            .iter()
            .flatten()
            .find(|f| f.id == old.id())
            .map_or(0, |f| f.clean_through);
        let edit = VersionEdit {
            next_file_number: Some(inner.next_file.load(Ordering::SeqCst)),
            deleted: vec![(level, old.id())],
            added: outputs
                .iter()
                .map(|t| (level, file_meta(t, clean_through)))
                .collect(),
            ..VersionEdit::default()
        };
        if let Err(err) = versions.manifest.log_and_apply(&edit) {
            for output in outputs {
                let _ = remove_if_present(&*inner.fs, output.path());
            }
            return Err(err);
        }
        let mut current = inner.state.write();
        let mut levels = current.levels.clone();
        if let Some(tables) = levels.get_mut(level) {
            tables.retain(|t| t.id() != old.id());
            tables.extend(outputs.iter().cloned());
            sort_level(level, tables);
        }
        let tombstones = Arc::clone(&current.table_tombstones);
        *current = Arc::new(current.with_tables(levels, tombstones));
    }
    remove_if_present(&*inner.fs, &inner.dir.join(table_file_name(old.id())))
}

/// Whether `table` (of `level`) holds entries of `ranges` old enough to purge, and how.
fn fate(level: usize, table: &Table, ranges: &[PurgeRange]) -> Fate {
    let p = table.properties();
    let (smallest, largest) = (p.smallest.key.as_slice(), p.largest.key.as_slice());
    let touching: Vec<&PurgeRange> = ranges
        .iter()
        .filter(|r| r.overlaps(smallest, largest) && p.min_version <= r.through)
        .collect();
    if touching.is_empty() {
        return Fate::Keep;
    }
    if p.tombstone_count == 0
        && touching
            .iter()
            .any(|r| r.covers(smallest, largest) && p.max_version <= r.through)
    {
        return Fate::Drop;
    }
    if level == 0 {
        Fate::Keep
    } else {
        Fate::Rewrite
    }
}

/// True if `table` holds a value of `ranges` at or below their `through` (reads only the
/// blocks of the ranges).
fn holds_purgeable(table: &Arc<Table>, ranges: &[PurgeRange]) -> Result<bool> {
    let mut iter = table.iter_uncached();
    for range in ranges {
        iter.seek(&range.begin, u64::MAX)?;
        while iter.valid() && range.contains(iter.key()) {
            if iter.kind() == ValueKind::Put && iter.version() <= range.through {
                return Ok(true);
            }
            iter.next()?;
        }
    }
    Ok(false)
}

/// Writes `table`'s entries outside `ranges` (or newer than their `through`) to new tables of
/// `level` (`bottommost`: no level below holds data); returns them and the number of entries
/// left out.
fn rewrite(
    engine: &Engine,
    level: usize,
    bottommost: bool,
    table: &Arc<Table>,
    ranges: &[PurgeRange],
) -> Result<(Vec<Arc<Table>>, u64)> {
    let mut writer = OutputWriter::new(&engine.inner, level, bottommost);
    let mut removed = 0u64;
    let mut last_key: Vec<u8> = Vec::new();
    let mut have_key = false;
    let mut iter = table.iter_uncached();
    let copied = (|| -> Result<()> {
        iter.seek_to_first()?;
        while iter.valid() {
            let key = iter.key();
            let purged = iter.kind() == ValueKind::Put
                && ranges
                    .iter()
                    .any(|r| iter.version() <= r.through && r.contains(key));
            if purged {
                removed += 1;
            } else {
                let new_key = !have_key || key != last_key.as_slice();
                if new_key {
                    last_key.clear();
                    last_key.extend_from_slice(key);
                    have_key = true;
                }
                writer.add(new_key, key, iter.version(), iter.kind(), iter.value())?;
            }
            iter.next()?;
        }
        Ok(())
    })();
    if let Err(err) = copied {
        writer.discard();
        return Err(err);
    }
    Ok((writer.finish()?, removed))
}

#[cfg(test)]
mod tests {
    use super::PurgeRange;
    use crate::engine::{Engine, EngineOptions, WriteBatch};

    fn range(begin: &str, end: &str, through: u64) -> PurgeRange {
        PurgeRange {
            begin: begin.as_bytes().to_vec(),
            end: end.as_bytes().to_vec(),
            through,
        }
    }

    fn table_files(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".sst")
            })
            .count()
    }

    #[test]
    fn tables_wholly_inside_a_cleared_range_are_dropped_and_the_rest_reads_on() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(
            dir.path(),
            EngineOptions {
                background_threads: false,
                ..EngineOptions::default()
            },
        )
        .unwrap();
        // Three level-0 tables: [a..], [m..], [x..].
        for (version, prefix) in [(1, "a"), (2, "m"), (3, "x")] {
            let mut batch = WriteBatch::default();
            for i in 0..100 {
                batch.put(format!("{prefix}{i:03}"), vec![b'v'; 100]);
            }
            engine.apply_unsynced(version, &batch).unwrap();
            engine.flush().unwrap();
        }
        assert_eq!(table_files(dir.path()), 3);
        // The range [m, x) is cleared first (its tombstones are in the memtable), then its
        // table dropped.
        let mut clear = WriteBatch::default();
        clear.delete_range(b"m", b"x");
        engine.apply_unsynced(4, &clear).unwrap();
        let stats = engine.purge_ranges(&[range("m", "x", 4)]).unwrap();
        assert_eq!(stats.dropped_tables, 1);
        assert!(stats.freed_bytes > 0);
        assert_eq!(table_files(dir.path()), 2);
        assert_eq!(engine.get(b"m050", 5).unwrap(), None);
        assert!(engine.get(b"a050", 5).unwrap().is_some());
        assert!(engine.get(b"x050", 5).unwrap().is_some());
        // A level-0 table the range only partly covers is left to compaction.
        let stats = engine.purge_ranges(&[range("a050", "b", 4)]).unwrap();
        assert_eq!(stats, super::PurgeStats::default());
        engine.close().unwrap();
        // The drop survives a reopen.
        let engine = Engine::open(dir.path(), EngineOptions::default()).unwrap();
        assert_eq!(engine.get(b"m050", 5).unwrap(), None);
        assert!(engine.get(b"x099", 5).unwrap().is_some());
    }

    #[test]
    fn deeper_tables_are_rewritten_without_the_old_values_and_newer_ones_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let opts = EngineOptions {
            background_threads: false,
            l0_compaction_trigger: 1,
            ..EngineOptions::default()
        };
        let engine = Engine::open(dir.path(), opts).unwrap();
        let key = |i: usize| format!("k{i:04}");
        // Values that do not compress, so the freed bytes show.
        let value = |i: usize| -> Vec<u8> {
            let mut x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            (0..200)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        };
        let mut batch = WriteBatch::default();
        for i in 0..2000 {
            batch.put(key(i), value(i));
        }
        engine.apply_unsynced(1, &batch).unwrap();
        engine.flush().unwrap();
        engine.compact().unwrap();
        let before = engine.stats();
        assert_eq!(before.l0_files, 0, "the table went below level 0");
        // [k0500, k1500) is cleared at version 2, and (taken over again) k1000 is written anew
        // at version 3 before the purge of what version 2 cleared runs.
        let mut clear = WriteBatch::default();
        clear.delete_range(key(500), key(1500));
        engine.apply_unsynced(2, &clear).unwrap();
        let mut again = WriteBatch::default();
        again.put(key(1000), b"new");
        engine.apply_unsynced(3, &again).unwrap();
        engine.flush().unwrap();
        engine.compact().unwrap();
        let stats = engine.purge_ranges(&[range("k0500", "k1500", 2)]).unwrap();
        assert_eq!(stats.rewritten_tables, 1, "{stats:?}");
        assert_eq!(stats.removed_entries, 1000, "{stats:?}");
        assert!(stats.freed_bytes > 150_000, "{stats:?}");
        let check = |engine: &Engine| {
            for i in (0..2000).step_by(7) {
                let got = engine.get(key(i).as_bytes(), 4).unwrap();
                if (500..1500).contains(&i) {
                    assert_eq!(got, None, "{}", key(i));
                } else {
                    assert_eq!(got.as_deref(), Some(&value(i)[..]), "{}", key(i));
                }
            }
            assert_eq!(
                engine.get(key(1000).as_bytes(), 4).unwrap().as_deref(),
                Some(&b"new"[..])
            );
            // Reads at the deletion's version and later see what they saw before.
            assert_eq!(engine.get(key(700).as_bytes(), 2).unwrap(), None);
        };
        check(&engine);
        assert!(engine.stats().total_sst_bytes < before.total_sst_bytes / 2 + 100_000);
        // Purging again finds nothing left to remove.
        let again = engine.purge_ranges(&[range("k0500", "k1500", 2)]).unwrap();
        assert_eq!(again.removed_entries, 0);
        assert_eq!(again.rewritten_tables, 0);
        engine.close().unwrap();
        let engine = Engine::open(dir.path(), opts).unwrap();
        check(&engine);
    }
}
