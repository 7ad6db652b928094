//! A cursor over one level ≥ 1: its tables are sorted and non-overlapping, so the level is
//! their concatenation. Only one table cursor exists at a time, created when the position
//! reaches that table (so a short scan over a big level touches one or two tables).

use std::sync::Arc;

use ferrisdb_core::Result;

use crate::iterator::InternalIterator;
use crate::key::{ValueKind, compare_internal};
use crate::sstable::{Table, TableIterator};

/// Iterates the concatenation of sorted, non-overlapping tables.
pub struct LevelIterator {
    tables: Vec<Arc<Table>>,
    /// Whether the table cursors cache the blocks they read.
    fill_cache: bool,
    /// Index of the table `current` iterates.
    index: usize,
    current: Option<TableIterator>,
}

impl LevelIterator {
    /// A cursor over `tables`, which must be sorted by key and non-overlapping.
    pub fn new(tables: Vec<Arc<Table>>) -> Self {
        LevelIterator {
            tables,
            fill_cache: true,
            index: 0,
            current: None,
        }
    }

    /// Like [`new`](Self::new), but blocks read from the files are not cached (see
    /// [`Table::iter_uncached`]).
    pub fn uncached(tables: Vec<Arc<Table>>) -> Self {
        LevelIterator {
            fill_cache: false,
            ..Self::new(tables)
        }
    }

    /// Opens a cursor on table `index` (or none if out of range).
    fn open(&mut self, index: usize) -> Option<&mut TableIterator> {
        self.index = index;
        let fill_cache = self.fill_cache;
        self.current = self.tables.get(index).map(|table| {
            if fill_cache {
                table.iter()
            } else {
                table.iter_uncached()
            }
        });
        self.current.as_mut()
    }

    /// Runs a positioning step, dropping the cursor on error.
    fn guarded(&mut self, step: impl FnOnce(&mut Self) -> Result<()>) -> Result<()> {
        let result = step(self);
        if result.is_err() {
            self.current = None;
        }
        result
    }

    /// Moves forward to the first entry of the next tables while the cursor is exhausted.
    fn skip_forward(&mut self) -> Result<()> {
        while self.current.as_ref().is_some_and(|c| !c.valid()) {
            let next = self.index + 1;
            match self.open(next) {
                Some(cursor) => cursor.seek_to_first()?,
                None => self.current = None,
            }
        }
        Ok(())
    }

    /// Moves back to the last entry of earlier tables while the cursor is exhausted.
    fn skip_backward(&mut self) -> Result<()> {
        while self.current.as_ref().is_some_and(|c| !c.valid()) {
            let Some(prev) = self.index.checked_sub(1) else {
                self.current = None;
                break;
            };
            if let Some(cursor) = self.open(prev) {
                cursor.seek_to_last()?;
            }
        }
        Ok(())
    }

    fn cursor(&self) -> Option<&TableIterator> {
        self.current.as_ref().filter(|c| c.valid())
    }
}

impl InternalIterator for LevelIterator {
    fn valid(&self) -> bool {
        self.cursor().is_some()
    }
    fn key(&self) -> &[u8] {
        self.cursor().map_or(&[], |c| c.key())
    }
    fn version(&self) -> u64 {
        self.cursor().map_or(0, |c| c.version())
    }
    fn kind(&self) -> ValueKind {
        self.cursor().map_or(ValueKind::Tombstone, |c| c.kind())
    }
    fn value(&self) -> &[u8] {
        self.cursor().map_or(&[], |c| c.value())
    }

    fn seek_to_first(&mut self) -> Result<()> {
        self.guarded(|s| {
            if let Some(cursor) = s.open(0) {
                cursor.seek_to_first()?;
            }
            s.skip_forward()
        })
    }

    fn seek_to_last(&mut self) -> Result<()> {
        self.guarded(|s| {
            let last = s.tables.len().checked_sub(1);
            match last.and_then(|i| s.open(i)) {
                Some(cursor) => cursor.seek_to_last()?,
                None => s.current = None,
            }
            s.skip_backward()
        })
    }

    fn seek(&mut self, key: &[u8], version: u64) -> Result<()> {
        self.guarded(|s| {
            // First table whose largest key is >= the target.
            let at = s.tables.partition_point(|t| {
                let largest = &t.properties().largest;
                compare_internal(&largest.key, largest.version, key, version).is_lt()
            });
            match s.open(at) {
                Some(cursor) => cursor.seek(key, version)?,
                None => s.current = None,
            }
            s.skip_forward()
        })
    }

    fn seek_for_prev(&mut self, key: &[u8], version: u64) -> Result<()> {
        self.guarded(|s| {
            // Last table whose smallest key is <= the target.
            let after = s.tables.partition_point(|t| {
                let smallest = &t.properties().smallest;
                compare_internal(&smallest.key, smallest.version, key, version).is_le()
            });
            match after.checked_sub(1).and_then(|i| s.open(i)) {
                Some(cursor) => cursor.seek_for_prev(key, version)?,
                None => s.current = None,
            }
            s.skip_backward()
        })
    }

    fn next(&mut self) -> Result<()> {
        self.guarded(|s| {
            if let Some(cursor) = s.current.as_mut() {
                cursor.next()?;
            }
            s.skip_forward()
        })
    }

    fn prev(&mut self) -> Result<()> {
        self.guarded(|s| {
            if let Some(cursor) = s.current.as_mut() {
                cursor.prev()?;
            }
            s.skip_backward()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sstable::cache::BlockCache;
    use crate::sstable::{TableBuilder, TableOptions};
    use crate::vfs::{OsFs, os};

    fn build(dir: &std::path::Path, id: u64, keys: std::ops::Range<u32>) -> Arc<Table> {
        let path = dir.join(format!("{id}.sst"));
        let opts = TableOptions {
            block_size: 64,
            ..TableOptions::default()
        };
        let mut builder = TableBuilder::create(&os(), &path, opts).unwrap();
        for k in keys {
            for v in [3, 1] {
                let key = format!("{k:05}");
                builder
                    .add(key.as_bytes(), v, ValueKind::Put, key.as_bytes())
                    .unwrap();
            }
        }
        builder.finish().unwrap();
        Table::open(&OsFs, &path, id, BlockCache::new(1 << 20)).unwrap()
    }

    #[test]
    fn level_iterates_and_seeks_across_tables() {
        let dir = tempfile::tempdir().unwrap();
        let tables = vec![
            build(dir.path(), 1, 0..50),
            build(dir.path(), 2, 60..100),
            build(dir.path(), 3, 100..130),
        ];
        let expected: Vec<(String, u64)> = (0..50)
            .chain(60..130)
            .flat_map(|k| [(format!("{k:05}"), 3), (format!("{k:05}"), 1)])
            .collect();
        let mut it = LevelIterator::new(tables);
        it.seek_to_first().unwrap();
        let mut got = Vec::new();
        while it.valid() {
            got.push((String::from_utf8(it.key().to_vec()).unwrap(), it.version()));
            it.next().unwrap();
        }
        assert_eq!(got, expected);

        it.seek_to_last().unwrap();
        let mut back = Vec::new();
        while it.valid() {
            back.push((String::from_utf8(it.key().to_vec()).unwrap(), it.version()));
            it.prev().unwrap();
        }
        back.reverse();
        assert_eq!(back, expected);

        // Gap between tables: seek lands on the next table, seek_for_prev on the previous.
        it.seek(b"00055", u64::MAX).unwrap();
        assert_eq!((it.key(), it.version()), (&b"00060"[..], 3));
        it.seek_for_prev(b"00055", u64::MAX).unwrap();
        assert_eq!((it.key(), it.version()), (&b"00049"[..], 1));
        it.seek(b"00049", 0).unwrap();
        assert_eq!(it.key(), b"00060");
        it.seek(b"99999", 0).unwrap();
        assert!(!it.valid());
        it.seek_for_prev(b"", 0).unwrap();
        assert!(!it.valid());
        let mut empty = LevelIterator::new(Vec::new());
        empty.seek_to_first().unwrap();
        assert!(!empty.valid());
    }
}
