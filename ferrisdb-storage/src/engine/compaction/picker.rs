//! Leveled compaction picking.
//!
//! Level 0 goes first: once it holds `l0_compaction_trigger` files, all of them are merged
//! with the files they overlap in the base level (level 1, or with dynamic sizing the level
//! `level_targets.rs` names). Otherwise the level n ≥ 1 (not the last) whose size
//! exceeds its target by the largest ratio gives one file, chosen round-robin by key (the
//! first file starting after the last key compacted out of that level, wrapping around), and
//! it is merged with the overlapping files of level n + 1. Overlap is by user-key range.
//!
//! When no level needs one, a table still holding entries that a range tombstone at or below
//! the GC horizon covers is compacted (merged down, or rewritten in place in the last level),
//! so a cleared range's space comes back, and then its tombstone goes, without waiting for
//! new writes to push compactions through it. Next, a table the GC horizon has passed (every
//! entry at or below it) that still holds older versions of its own keys — at least
//! [`MIN_COLLECTABLE_VERSIONS`] of them and a quarter of its entries, as a table flushed right
//! after a burst of overwrites does — is compacted the same way, keeping one version per key:
//! scans then stop stepping over versions no reader can ask for any more.

use std::collections::BTreeMap;

use super::level_targets::level_targets;
use crate::engine::EngineOptions;
use crate::manifest::{FileMeta, ManifestState};

/// A compaction to run: `inputs` from `level`, `next_inputs` from `output_level`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pick {
    pub level: usize,
    pub inputs: Vec<FileMeta>,
    pub next_inputs: Vec<FileMeta>,
    /// The level the outputs go to: `level + 1`, the base level for level 0, or `level`
    /// itself when `in_place`.
    pub output_level: usize,
    /// Rewrite the one input into its own (the last) level: range-deleted entries to drop.
    pub in_place: bool,
}

/// What picking needs to know beyond the manifest: the GC horizon and each live table's
/// versions and counts, by table id.
pub(crate) struct GcView<'a> {
    pub horizon: u64,
    pub tables: &'a BTreeMap<u64, TableVersions>,
}

/// A live table's versions and entry counts (from its properties block).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TableVersions {
    /// Smallest version of any entry.
    pub min_version: u64,
    /// Largest version of any entry.
    pub max_version: u64,
    /// Entries, every version counted.
    pub entries: u64,
    /// Distinct user keys.
    pub distinct_keys: u64,
}

/// Fewest older versions that make a table worth compacting for them alone.
pub(crate) const MIN_COLLECTABLE_VERSIONS: u64 = 64;

impl TableVersions {
    /// True if compacting the table with `horizon` would drop enough of its versions to be
    /// worth it: the horizon has passed every entry, so only the newest version of each key
    /// stays, and the older ones are at least [`MIN_COLLECTABLE_VERSIONS`] and a quarter of
    /// the entries.
    pub fn worth_collecting(&self, horizon: u64) -> bool {
        let older = self.entries.saturating_sub(self.distinct_keys);
        self.max_version <= horizon
            && older >= MIN_COLLECTABLE_VERSIONS
            && older.saturating_mul(4) >= self.entries
    }
}

/// Chooses the next compaction, advancing `pointers[level]` for round-robin picks.
pub(crate) fn pick(
    state: &ManifestState,
    opts: &EngineOptions,
    pointers: &mut [Vec<u8>],
    gc: &GcView<'_>,
) -> Option<Pick> {
    let levels = &state.levels;
    if levels.len() < 2 {
        return None;
    }
    let level_bytes: Vec<u64> = levels
        .iter()
        .map(|files| files.iter().map(|f| f.size).sum())
        .collect();
    let targets = level_targets(opts, &level_bytes);
    let l0 = levels.first()?;
    if !l0.is_empty() && l0.len() >= opts.l0_compaction_trigger.max(1) {
        let (lo, hi) = key_range(l0)?;
        return Some(Pick {
            level: 0,
            inputs: l0.clone(),
            next_inputs: overlapping(levels.get(targets.base_level)?, lo, hi),
            output_level: targets.base_level,
            in_place: false,
        });
    }
    let mut best: Option<(usize, f64)> = None;
    for (level, &bytes) in level_bytes
        .iter()
        .enumerate()
        .take(levels.len() - 1)
        .skip(1)
    {
        let score = targets.score(level, bytes);
        if score > 1.0 && best.is_none_or(|(_, s)| score > s) {
            best = Some((level, score));
        }
    }
    let Some((level, _)) = best else {
        return range_deleted(state, gc, targets.base_level)
            .or_else(|| old_versions(state, gc, targets.base_level));
    };
    let files = levels.get(level)?;
    let pointer = pointers.get(level).cloned().unwrap_or_default();
    let file = files
        .iter()
        .find(|f| f.smallest.key > pointer)
        .or_else(|| files.first())?
        .clone();
    if let Some(slot) = pointers.get_mut(level) {
        *slot = file.largest.key.clone();
    }
    let next_inputs = overlapping(
        levels.get(level + 1)?,
        &file.smallest.key,
        &file.largest.key,
    );
    Some(Pick {
        level,
        inputs: vec![file],
        next_inputs,
        output_level: level + 1,
        in_place: false,
    })
}

/// A compaction of a table that holds entries a range tombstone at or below the horizon
/// covers: the tombstone is newer than the table's oldest entry, and the table was not
/// written by a compaction that already dropped what the tombstone covers (its
/// `clean_through` is below the tombstone). The compaction's outputs are clean through the
/// horizon, so each table is picked once per tombstone. Level 0 goes to `base_level`.
fn range_deleted(state: &ManifestState, gc: &GcView<'_>, base_level: usize) -> Option<Pick> {
    let levels = &state.levels;
    for tombstone in state
        .range_tombstones
        .iter()
        .filter(|t| t.version <= gc.horizon)
    {
        for (level, files) in levels.iter().enumerate() {
            let covered = files.iter().find(|f| {
                gc.tables.get(&f.id).map_or(0, |t| t.min_version) < tombstone.version
                    && f.clean_through < tombstone.version
                    && tombstone.overlaps(&f.smallest.key, &f.largest.key)
            });
            if let Some(file) = covered {
                return collect(state, level, file, base_level);
            }
        }
    }
    None
}

/// A compaction of a table the horizon has passed that holds enough older versions of its
/// keys ([`TableVersions::worth_collecting`]). Its outputs keep one version per key, so they
/// are not picked again for this. Level 0 goes to `base_level`.
fn old_versions(state: &ManifestState, gc: &GcView<'_>, base_level: usize) -> Option<Pick> {
    let (level, file) = state.levels.iter().enumerate().find_map(|(level, files)| {
        let file = files.iter().find(|f| {
            gc.tables
                .get(&f.id)
                .is_some_and(|t| t.worth_collecting(gc.horizon))
        })?;
        Some((level, file))
    })?;
    collect(state, level, file, base_level)
}

/// The compaction that garbage-collects `file` of `level`: every level-0 table into the base
/// level, a table of the last level rewritten in place, any other merged into the next level.
fn collect(
    state: &ManifestState,
    level: usize,
    file: &FileMeta,
    base_level: usize,
) -> Option<Pick> {
    let levels = &state.levels;
    let last = levels.len().checked_sub(1)?;
    let files = levels.get(level)?;
    Some(if level == 0 {
        let (lo, hi) = key_range(files)?;
        Pick {
            level: 0,
            inputs: files.clone(),
            next_inputs: overlapping(levels.get(base_level)?, lo, hi),
            output_level: base_level,
            in_place: false,
        }
    } else if level == last {
        Pick {
            level,
            inputs: vec![file.clone()],
            next_inputs: Vec::new(),
            output_level: level,
            in_place: true,
        }
    } else {
        Pick {
            level,
            inputs: vec![file.clone()],
            next_inputs: overlapping(
                levels.get(level + 1)?,
                &file.smallest.key,
                &file.largest.key,
            ),
            output_level: level + 1,
            in_place: false,
        }
    })
}

/// Smallest and largest user key over `files`.
fn key_range(files: &[FileMeta]) -> Option<(&[u8], &[u8])> {
    let lo = files.iter().map(|f| f.smallest.key.as_slice()).min()?;
    let hi = files.iter().map(|f| f.largest.key.as_slice()).max()?;
    Some((lo, hi))
}

/// Files whose user-key range intersects `[lo, hi]`.
pub(crate) fn overlapping(files: &[FileMeta], lo: &[u8], hi: &[u8]) -> Vec<FileMeta> {
    files
        .iter()
        .filter(|f| f.largest.key.as_slice() >= lo && f.smallest.key.as_slice() <= hi)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    static NO_TABLES: BTreeMap<u64, TableVersions> = BTreeMap::new();
    const NO_GC: GcView<'static> = GcView {
        horizon: 0,
        tables: &NO_TABLES,
    };
    use crate::key::InternalKey;

    fn file(id: u64, lo: &str, hi: &str, size: u64) -> FileMeta {
        FileMeta {
            id,
            size,
            smallest: InternalKey::new(lo, 9),
            largest: InternalKey::new(hi, 1),
            clean_through: 0,
        }
    }

    fn opts() -> EngineOptions {
        EngineOptions {
            l0_compaction_trigger: 2,
            level1_bytes: 100,
            level_multiplier: 10,
            num_levels: 4,
            dynamic_level_bytes: false,
            ..EngineOptions::default()
        }
    }

    #[test]
    fn dynamic_sizing_sends_level_zero_to_the_base_level() {
        let dynamic = EngineOptions {
            dynamic_level_bytes: true,
            ..opts()
        };
        let mut pointers = vec![Vec::new(); 4];
        let mut state = ManifestState::new(4);
        state.levels[0] = vec![file(5, "c", "f", 10), file(6, "a", "d", 10)];
        // Nothing below level 0: straight into the last level.
        let first = pick(&state, &dynamic, &mut pointers, &NO_GC).unwrap();
        assert_eq!((first.level, first.output_level), (0, 3));
        assert!(first.next_inputs.is_empty());
        // The last level past `level1_bytes`: level 2 becomes the base level.
        state.levels[3] = vec![file(1, "a", "b", 150), file(2, "e", "g", 150)];
        let second = pick(&state, &dynamic, &mut pointers, &NO_GC).unwrap();
        assert_eq!(second.output_level, 2);
        assert!(second.next_inputs.is_empty());
        // Level 2 over its target (at least `level1_bytes`) goes down into level 3.
        state.levels[0].clear();
        state.levels[2] = vec![file(7, "a", "z", 40)];
        assert_eq!(
            pick(&state, &dynamic, &mut pointers, &NO_GC),
            None,
            "40 <= 100"
        );
        state.levels[2] = vec![file(7, "a", "c", 60), file(8, "d", "z", 60)];
        let third = pick(&state, &dynamic, &mut pointers, &NO_GC).unwrap();
        assert_eq!((third.level, third.output_level), (2, 3));
        let ids: Vec<u64> = third.next_inputs.iter().map(|f| f.id).collect();
        assert_eq!(ids, vec![1]);
        // With static sizing the same state sends level 0 to level 1.
        state.levels[0] = vec![file(5, "c", "f", 10), file(6, "a", "d", 10)];
        let fixed = pick(&state, &opts(), &mut pointers, &NO_GC).unwrap();
        assert_eq!(fixed.output_level, 1);
    }

    #[test]
    fn level0_trigger_takes_all_l0_and_overlapping_l1() {
        let mut state = ManifestState::new(4);
        state.levels[0] = vec![file(5, "c", "f", 10), file(6, "a", "d", 10)];
        state.levels[1] = vec![
            file(1, "a", "b", 10),
            file(2, "e", "g", 10),
            file(3, "h", "k", 10),
        ];
        let mut pointers = vec![Vec::new(); 4];
        let pick = pick(&state, &opts(), &mut pointers, &NO_GC).unwrap();
        assert_eq!(pick.level, 0);
        assert_eq!(pick.inputs.len(), 2);
        let ids: Vec<u64> = pick.next_inputs.iter().map(|f| f.id).collect();
        assert_eq!(ids, vec![1, 2]);

        state.levels[0].pop();
        assert_eq!(
            super::pick(&state, &opts(), &mut pointers, &NO_GC),
            None,
            "below trigger"
        );
    }

    #[test]
    fn oversized_level_is_picked_round_robin() {
        let mut state = ManifestState::new(4);
        state.levels[1] = vec![file(1, "a", "b", 60), file(2, "c", "d", 60)];
        state.levels[2] = vec![
            file(3, "a", "a", 10),
            file(4, "b", "c", 10),
            file(5, "x", "z", 10),
        ];
        let mut pointers = vec![Vec::new(); 4];
        let first = pick(&state, &opts(), &mut pointers, &NO_GC).unwrap();
        assert_eq!((first.level, first.inputs[0].id), (1, 1));
        let ids: Vec<u64> = first.next_inputs.iter().map(|f| f.id).collect();
        assert_eq!(ids, vec![3, 4]);
        let second = pick(&state, &opts(), &mut pointers, &NO_GC).unwrap();
        assert_eq!(second.inputs[0].id, 2);
        let third = pick(&state, &opts(), &mut pointers, &NO_GC).unwrap();
        assert_eq!(third.inputs[0].id, 1, "wraps around");
        // The last level is never compacted.
        let mut deep = ManifestState::new(4);
        deep.levels[3] = vec![file(9, "a", "z", 1 << 40)];
        assert_eq!(pick(&deep, &opts(), &mut pointers, &NO_GC), None);
    }

    #[test]
    fn a_table_the_horizon_passed_with_many_older_versions_is_collected_once_nothing_else_is_due() {
        let mut state = ManifestState::new(4);
        state.levels[0] = vec![file(5, "a", "m", 10)];
        state.levels[1] = vec![file(1, "a", "c", 10), file(2, "x", "z", 10)];
        state.levels[3] = vec![file(3, "a", "z", 10)];
        let versions = |max_version, entries, distinct_keys| TableVersions {
            min_version: 1,
            max_version,
            entries,
            distinct_keys,
        };
        // Table 5: 600 entries of 100 keys, every version at or below 50.
        let mut tables = BTreeMap::from([(5, versions(50, 600, 100))]);
        let mut pointers = vec![Vec::new(); 4];
        let mut picked = |state: &ManifestState, horizon, tables: &BTreeMap<u64, TableVersions>| {
            pick(state, &opts(), &mut pointers, &GcView { horizon, tables })
        };
        assert_eq!(
            picked(&state, 49, &tables),
            None,
            "the horizon has not passed it"
        );
        let l0 = picked(&state, 50, &tables).expect("collected");
        assert_eq!((l0.level, l0.output_level, l0.in_place), (0, 1, false));
        assert_eq!(l0.next_inputs.iter().map(|f| f.id).collect::<Vec<_>>(), [1]);
        // Too few older versions, in count or share, are left alone.
        tables.insert(5, versions(50, 600, 460));
        assert_eq!(
            picked(&state, 50, &tables),
            None,
            "140 of 600 is under a quarter"
        );
        tables.insert(5, versions(50, 100, 40));
        assert_eq!(picked(&state, 50, &tables), None, "60 older versions");
        // A table of the last level is rewritten in place; one in between merged down.
        tables.insert(3, versions(50, 400, 100));
        let last = picked(&state, 60, &tables).expect("collected");
        assert_eq!((last.level, last.output_level, last.in_place), (3, 3, true));
        tables.insert(2, versions(50, 400, 100));
        let middle = picked(&state, 60, &tables).expect("collected");
        assert_eq!((middle.level, middle.output_level), (1, 2));
        assert_eq!(middle.inputs[0].id, 2);
    }
}
