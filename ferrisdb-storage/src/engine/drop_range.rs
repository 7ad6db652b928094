//! Dropping the tables that hold nothing but keys of a range no one reads any more: a storage
//! server clears a shard it handed away with a range deletion (tombstones newer than every
//! entry), and then gives back the disk space of the tables wholly inside the range at once,
//! instead of waiting for compaction to carry the tombstones down to them. One manifest edit
//! deletes them, the state swaps, and only then are the files removed — the same order a
//! compaction installs its result in, under the same lock, so the two never race.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use ferrisdb_core::Result;

use super::Engine;
use crate::manifest::{VersionEdit, remove_if_present, table_file_name};

impl Engine {
    /// Deletes every table whose keys all lie in `[begin, end)` (an empty `end`: unbounded);
    /// returns the bytes freed.
    ///
    /// Only for a range no reader needs at any version, whose live keys were already deleted
    /// at a version newer than every entry (a `delete_range` applied first): the entries of
    /// the range in other tables and in memtables stay hidden behind those tombstones, and
    /// the dropped tables' own entries (tombstones included) shadow nothing any more.
    pub fn drop_tables_in_range(&self, begin: &[u8], end: &[u8]) -> Result<u64> {
        let inner = &self.inner;
        inner.check_open()?;
        let _compacting = inner.compaction_lock.lock();
        let state = inner.current();
        let inside = |smallest: &[u8], largest: &[u8]| {
            smallest >= begin && (end.is_empty() || largest < end)
        };
        let doomed: Vec<(usize, u64, u64)> = state
            .levels
            .iter()
            .enumerate()
            .flat_map(|(level, tables)| {
                tables
                    .iter()
                    .filter(|t| {
                        let p = t.properties();
                        inside(&p.smallest.key, &p.largest.key)
                    })
                    .map(move |t| (level, t.id(), t.file_size()))
            })
            .collect();
        if doomed.is_empty() {
            return Ok(0);
        }
        let edit = VersionEdit {
            next_file_number: Some(inner.next_file.load(Ordering::SeqCst)),
            deleted: doomed.iter().map(|(level, id, _)| (*level, *id)).collect(),
            ..VersionEdit::default()
        };
        let removed: HashSet<u64> = doomed.iter().map(|(_, id, _)| *id).collect();
        {
            let mut versions = inner.versions.lock();
            versions.manifest.log_and_apply(&edit)?;
            let mut current = inner.state.write();
            let mut levels = current.levels.clone();
            for tables in &mut levels {
                tables.retain(|t| !removed.contains(&t.id()));
            }
            *current = Arc::new(current.with_levels(levels));
        }
        for id in &removed {
            remove_if_present(&inner.dir.join(table_file_name(*id)))?;
        }
        inner.notify_stalled();
        let freed = doomed.iter().map(|(_, _, bytes)| bytes).sum();
        tracing::info!(
            tables = doomed.len(),
            bytes = freed,
            "dropped the tables of a cleared range"
        );
        Ok(freed)
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::{Engine, EngineOptions, WriteBatch};

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
        // Three tables: [a..], [m..], [x..].
        for (version, prefix) in [(1, "a"), (2, "m"), (3, "x")] {
            let mut batch = WriteBatch::default();
            for i in 0..100 {
                batch.put(format!("{prefix}{i:03}"), vec![b'v'; 100]);
            }
            engine.apply_unsynced(version, &batch).unwrap();
            engine.flush().unwrap();
        }
        let files = |dir: &std::path::Path| {
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
        };
        assert_eq!(files(dir.path()), 3);
        // The range [m, x) is cleared first, then its table dropped.
        let mut clear = WriteBatch::default();
        clear.delete_range(b"m", b"x");
        engine.apply_unsynced(4, &clear).unwrap();
        let freed = engine.drop_tables_in_range(b"m", b"x").unwrap();
        assert!(freed > 0);
        assert_eq!(files(dir.path()), 2);
        assert_eq!(engine.get(b"m050", 5).unwrap(), None);
        assert!(engine.get(b"a050", 5).unwrap().is_some());
        assert!(engine.get(b"x050", 5).unwrap().is_some());
        // A range that only partly covers a table drops nothing.
        assert_eq!(engine.drop_tables_in_range(b"a050", b"b").unwrap(), 0);
        engine.close().unwrap();
        // The drop survives a reopen.
        let engine = Engine::open(dir.path(), EngineOptions::default()).unwrap();
        assert_eq!(engine.get(b"m050", 5).unwrap(), None);
        assert!(engine.get(b"x099", 5).unwrap().is_some());
    }
}
