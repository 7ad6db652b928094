//! Running one compaction: merge the inputs, apply the GC rules, write output tables.
//!
//! GC rules, per user key, with horizon H: keep every version > H; keep the newest version
//! ≤ H (reads at H or later may need it) unless it is a tombstone and no level below the
//! output level holds the key's range (then nothing older can resurface); drop every older
//! version. Equal (key, version) pairs from two inputs are written once. A version that a range
//! tombstone at or below H covers (the tombstone is newer) is dropped too: every read at H or
//! later sees the tombstone, which stays in the manifest while any table may still hold what
//! it covers.
//!
//! Outputs are cut once they reach `target_file_bytes`, but only between two user keys, so
//! the versions of a key never straddle two files of one level.

use std::sync::Arc;

use ferrisdb_core::Result;

use super::Gc;
use super::picker::Pick;
use crate::engine::Inner;
use crate::iterator::InternalIterator;
use crate::iterators::{LevelIterator, MergeIterator, SourceIterator};
use crate::key::ValueKind;
use crate::manifest::{FileMeta, remove_if_present, sync_dir, table_file_name};
use crate::sstable::{Table, TableBuilder};

/// Merges `inputs` (level `pick.level`, newest first) with `next_inputs` and returns the new
/// tables, synced and open. `deeper` are the files of levels below the output level.
pub(super) fn run(
    inner: &Inner,
    pick: &Pick,
    inputs: &[Arc<Table>],
    next_inputs: &[Arc<Table>],
    deeper: &[FileMeta],
    gc: &Gc<'_>,
) -> Result<Vec<Arc<Table>>> {
    let mut sources = Vec::new();
    if pick.level == 0 {
        sources.extend(
            inputs
                .iter()
                .map(|t| SourceIterator::Table(t.iter_uncached())),
        );
    } else {
        sources.push(SourceIterator::Level(LevelIterator::uncached(
            inputs.to_vec(),
        )));
    }
    sources.push(SourceIterator::Level(LevelIterator::uncached(
        next_inputs.to_vec(),
    )));
    let mut merge = MergeIterator::new(sources);
    let mut writer = OutputWriter::new(inner, pick.output_level, deeper.is_empty());
    match merge_into(&mut merge, &mut writer, deeper, gc) {
        Ok(()) => writer.finish(),
        Err(err) => {
            writer.discard();
            Err(err)
        }
    }
}

fn merge_into(
    merge: &mut MergeIterator<SourceIterator>,
    writer: &mut OutputWriter<'_>,
    deeper: &[FileMeta],
    gc: &Gc<'_>,
) -> Result<()> {
    let horizon = gc.horizon;
    // The newest tombstone at or below the horizon covering the current key.
    let mut range_deleted_at: Option<u64> = None;
    let mut key: Vec<u8> = Vec::new();
    let mut last_version = 0u64;
    let mut have_key = false;
    let mut kept_at_or_below_horizon = false;
    merge.seek_to_first()?;
    while merge.valid() {
        let new_key = !have_key || merge.key() != key.as_slice();
        if new_key {
            key.clear();
            key.extend_from_slice(merge.key());
            have_key = true;
            kept_at_or_below_horizon = false;
            range_deleted_at = gc.tombstones.newest_covering(&key, horizon);
        } else if merge.version() == last_version {
            merge.next()?; // The same entry from two inputs.
            continue;
        }
        let version = merge.version();
        last_version = version;
        let keep = if version > horizon {
            true
        } else if range_deleted_at.is_some_and(|tombstone| tombstone > version) {
            // Deleted for every read at or above the horizon; so is every older version.
            kept_at_or_below_horizon = true;
            false
        } else if !kept_at_or_below_horizon {
            kept_at_or_below_horizon = true;
            merge.kind() == ValueKind::Put || overlaps_deeper(deeper, &key)
        } else {
            false
        };
        if keep {
            writer.add(new_key, &key, version, merge.kind(), merge.value())?;
        }
        merge.next()?;
    }
    Ok(())
}

/// True if some deeper file's user-key range holds `key`.
fn overlaps_deeper(deeper: &[FileMeta], key: &[u8]) -> bool {
    deeper
        .iter()
        .any(|f| f.smallest.key.as_slice() <= key && key <= f.largest.key.as_slice())
}

/// Writes output tables, cutting at the target size between user keys.
pub(super) struct OutputWriter<'a> {
    inner: &'a Inner,
    /// The output level's table options.
    table: crate::sstable::TableOptions,
    builder: Option<TableBuilder>,
    outputs: Vec<Arc<Table>>,
}

impl<'a> OutputWriter<'a> {
    /// A writer of tables for `level` (`bottommost`: no level below holds data).
    pub(super) fn new(inner: &'a Inner, level: usize, bottommost: bool) -> Self {
        OutputWriter {
            inner,
            table: inner.opts.table_for_level(level, bottommost),
            builder: None,
            outputs: Vec::new(),
        }
    }

    pub(super) fn add(
        &mut self,
        new_key: bool,
        key: &[u8],
        version: u64,
        kind: ValueKind,
        value: &[u8],
    ) -> Result<()> {
        let full = self
            .builder
            .as_ref()
            .is_some_and(|b| b.estimated_size() >= self.inner.opts.target_file_bytes);
        if full && new_key {
            self.finish_current()?;
        }
        let builder = match self.builder.as_mut() {
            Some(builder) => builder,
            None => {
                let id = self.inner.new_file_number();
                let path = self.inner.dir.join(table_file_name(id));
                self.builder
                    .insert(TableBuilder::create(&self.inner.fs, &path, self.table)?)
            }
        };
        builder.add(key, version, kind, value)
    }

    fn finish_current(&mut self) -> Result<()> {
        let Some(builder) = self.builder.take() else {
            return Ok(());
        };
        let path = builder.path().to_path_buf();
        builder.finish()?;
        let id = crate::manifest::parse_table_file_name(
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default(),
        )
        .ok_or_else(|| ferrisdb_core::Error::Internal("bad output table name".into()))?;
        let table = Table::open(&*self.inner.fs, &path, id, Arc::clone(&self.inner.cache))?;
        self.outputs.push(table);
        Ok(())
    }

    pub(super) fn finish(mut self) -> Result<Vec<Arc<Table>>> {
        if let Err(err) = self.finish_current() {
            self.discard();
            return Err(err);
        }
        if let Err(err) = sync_dir(&*self.inner.fs, &self.inner.dir) {
            self.discard();
            return Err(err);
        }
        Ok(std::mem::take(&mut self.outputs))
    }

    /// Deletes everything written (the manifest never named it).
    pub(super) fn discard(&mut self) {
        if let Some(builder) = self.builder.take() {
            let _ = builder.abandon();
        }
        for table in self.outputs.drain(..) {
            let _ = remove_if_present(&*self.inner.fs, table.path());
        }
    }
}
