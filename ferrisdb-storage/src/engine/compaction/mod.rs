//! Compaction: picks inputs (`picker.rs`), merges them into new tables with MVCC garbage
//! collection (`run.rs`), then installs the result: one manifest edit that deletes the inputs
//! and adds the outputs, a state swap, and only then deletion of the input files.
//!
//! A *trivial move* skips the merge: one input table that overlaps nothing in the output level
//! is moved there by the manifest edit alone (deleted at level n, added at n + 1, same file).
//! It is taken only when skipping the merge loses no garbage collection the merge would do:
//! always above the last level (the table's old versions and tombstones are collected when it
//! is next merged), and into the last level only if the GC rules would keep every entry of the
//! table (see [`needs_no_gc`]).

mod level_targets;
mod picker;
mod purge;
mod run;

pub use purge::{PurgeRange, PurgeStats};

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use ferrisdb_core::{Error, Result};

use super::Inner;
use super::flush::file_meta;
use super::state::sort_level;
use crate::manifest::{ManifestState, VersionEdit, remove_if_present, table_file_name};
use crate::range_tombstone::{RangeTombstone, RangeTombstoneSet};
use crate::sstable::Table;
use picker::Pick;

impl Inner {
    /// Runs compactions until the picker finds nothing to do.
    pub(crate) fn compact_until_done(&self) -> Result<()> {
        while self.compact_once()? {}
        Ok(())
    }

    /// Picks and runs one compaction; false if none was needed.
    pub(crate) fn compact_once(&self) -> Result<bool> {
        let _compacting = self.compaction_lock.lock();
        let (pick, deeper, tombstones, last_flushed, clean_through_of) = {
            let mut versions = self.versions.lock();
            let versions = &mut *versions;
            let manifest_state = versions.manifest.state();
            let tables: BTreeMap<u64, picker::TableVersions> = self
                .current()
                .levels
                .iter()
                .flatten()
                .map(|t| (t.id(), table_versions(t)))
                .collect();
            let gc = picker::GcView {
                horizon: self.gc_horizon.load(Ordering::Acquire),
                tables: &tables,
            };
            let Some(pick) = picker::pick(
                manifest_state,
                &self.opts,
                &mut versions.compact_pointers,
                &gc,
            ) else {
                return Ok(false);
            };
            let deeper: Vec<_> = manifest_state
                .levels
                .iter()
                .skip(pick.output_level + 1)
                .flatten()
                .cloned()
                .collect();
            // Taken together: every range tombstone not in this set was flushed later, at a
            // version above `last_flushed` (see `clean_through` below).
            let tombstones = versions.table_tombstones();
            let last_flushed = versions.manifest.state().last_flushed_version;
            let clean_through_of: BTreeMap<u64, u64> = versions
                .manifest
                .state()
                .levels
                .iter()
                .flatten()
                .map(|f| (f.id, f.clean_through))
                .collect();
            (pick, deeper, tombstones, last_flushed, clean_through_of)
        };
        let started = Instant::now();
        let state = self.current();
        let open = |level: usize, ids: &[crate::manifest::FileMeta]| -> Result<Vec<Arc<Table>>> {
            let wanted: HashSet<u64> = ids.iter().map(|f| f.id).collect();
            let tables: Vec<Arc<Table>> = state
                .levels
                .get(level)
                .map(|tables| {
                    tables
                        .iter()
                        .filter(|t| wanted.contains(&t.id()))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            if tables.len() != wanted.len() {
                return Err(Error::Internal(
                    "compaction input missing from the state".into(),
                ));
            }
            Ok(tables)
        };
        let inputs = open(pick.level, &pick.inputs)?;
        let next_inputs = open(pick.output_level, &pick.next_inputs)?;
        let horizon = self.gc_horizon.load(Ordering::Acquire);
        let trivial = is_trivial_move(&pick, &inputs, horizon, self.opts.num_levels);
        let outputs = if trivial {
            inputs.clone()
        } else {
            run::run(
                self,
                &pick,
                &inputs,
                &next_inputs,
                &deeper,
                &Gc {
                    horizon,
                    tombstones: &tombstones,
                },
            )?
        };
        // A rewrite drops every entry a tombstone at or below the horizon covers, for every
        // tombstone in `tombstones`, that is every one at or below `last_flushed`.
        let clean_through = horizon.min(last_flushed);

        let mut edit = VersionEdit {
            gc_horizon: Some(horizon),
            next_file_number: Some(self.next_file.load(Ordering::SeqCst)),
            ..VersionEdit::default()
        };
        for table in &inputs {
            edit.deleted.push((pick.level, table.id()));
        }
        for table in &next_inputs {
            edit.deleted.push((pick.output_level, table.id()));
        }
        for table in &outputs {
            let clean = if trivial {
                clean_through_of.get(&table.id()).copied().unwrap_or(0)
            } else {
                clean_through
            };
            edit.added
                .push((pick.output_level, file_meta(table, clean)));
        }
        // Ordered sets: files are removed in id order, the same on every run.
        let removed: BTreeSet<u64> = edit.deleted.iter().map(|(_, id)| *id).collect();
        let moved: BTreeSet<u64> = outputs.iter().map(|t| t.id()).collect();
        {
            let mut versions = self.versions.lock();
            let mut levels = self.current().levels.clone();
            for tables in &mut levels {
                tables.retain(|t| !removed.contains(&t.id()));
            }
            if let Some(out) = levels.get_mut(pick.output_level) {
                out.extend(outputs.iter().cloned());
                sort_level(pick.output_level, out);
            }
            edit.dropped_range_tombstones =
                collectable_tombstones(versions.manifest.state(), &edit, &levels, horizon);
            versions.manifest.log_and_apply(&edit)?;
            let tombstones = versions.table_tombstones();
            let mut current = self.state.write();
            // Every change of the levels (flushes, purges) holds the versions lock we hold,
            // so the levels built above are still current.
            *current = Arc::new(current.with_tables(levels, tombstones));
        }
        for id in removed.difference(&moved) {
            remove_if_present(&*self.fs, &self.dir.join(table_file_name(*id)))?;
        }
        let input_bytes: u64 = inputs
            .iter()
            .chain(&next_inputs)
            .map(|t| t.file_size())
            .sum();
        let output_bytes: u64 = outputs.iter().map(|t| t.file_size()).sum();
        let counters = &self.counters;
        counters.compactions.fetch_add(1, Ordering::Relaxed);
        if trivial {
            counters.trivial_moves.fetch_add(1, Ordering::Relaxed);
        } else {
            counters
                .compaction_read_bytes
                .fetch_add(input_bytes, Ordering::Relaxed);
            counters
                .compaction_write_bytes
                .fetch_add(output_bytes, Ordering::Relaxed);
        }
        counters
            .compaction_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        tracing::info!(
            level = pick.level,
            trivial_move = trivial,
            inputs = inputs.len() + next_inputs.len(),
            input_bytes,
            outputs = outputs.len(),
            output_bytes,
            gc_horizon = horizon,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "compacted"
        );
        self.notify_stalled();
        Ok(true)
    }
}

/// What the picker needs to know of `table`'s versions (see [`picker::TableVersions`]).
pub(crate) fn table_versions(table: &Table) -> picker::TableVersions {
    let props = table.properties();
    picker::TableVersions {
        min_version: props.min_version,
        max_version: props.max_version,
        entries: props.entry_count,
        distinct_keys: props.distinct_key_count,
    }
}

/// True if the compaction can move its one input table to the output level unchanged: nothing
/// there overlaps it, and (into the last level) the merge would drop none of its entries.
fn is_trivial_move(pick: &Pick, inputs: &[Arc<Table>], horizon: u64, num_levels: usize) -> bool {
    let [table] = inputs else {
        return false;
    };
    !pick.in_place
        && pick.next_inputs.is_empty()
        && (pick.output_level + 1 < num_levels || needs_no_gc(table, horizon))
}

/// True if the GC rules keep every entry of `table` when it is compacted into the last level:
/// every version is above the horizon, or every key has one version and it is a value.
fn needs_no_gc(table: &Table, horizon: u64) -> bool {
    let props = table.properties();
    props.min_version > horizon
        || (props.tombstone_count == 0 && props.entry_count == props.distinct_key_count)
}

/// The garbage-collection inputs of a compaction: the GC horizon and the tables' range
/// tombstones.
pub(super) struct Gc<'a> {
    pub horizon: u64,
    pub tombstones: &'a RangeTombstoneSet,
}

/// The range tombstones of `state` that no table of `levels` (the levels once `edit` is
/// applied) needs any more: at or below the GC horizon, with every table that overlaps the
/// range either newer than the tombstone (`min_version` at or above it) or written by a
/// compaction that dropped what the tombstone covers (`clean_through` at or above it).
fn collectable_tombstones(
    state: &ManifestState,
    edit: &VersionEdit,
    levels: &[Vec<Arc<Table>>],
    horizon: u64,
) -> Vec<RangeTombstone> {
    let clean_through_of: BTreeMap<u64, u64> = state
        .levels
        .iter()
        .flatten()
        .chain(edit.added.iter().map(|(_, f)| f))
        .map(|f| (f.id, f.clean_through))
        .collect();
    state
        .range_tombstones
        .iter()
        .filter(|t| t.version <= horizon)
        .filter(|t| {
            !levels.iter().flatten().any(|table| {
                let props = table.properties();
                let clean_through = clean_through_of.get(&table.id()).copied().unwrap_or(0);
                props.min_version < t.version
                    && clean_through < t.version
                    && t.overlaps(&props.smallest.key, &props.largest.key)
            })
        })
        .cloned()
        .collect()
}
