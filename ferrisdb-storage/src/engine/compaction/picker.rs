//! Leveled compaction picking.
//!
//! Level 0 goes first: once it holds `l0_compaction_trigger` files, all of them are merged
//! with the level-1 files they overlap. Otherwise the level n ≥ 1 (not the last) whose size
//! exceeds its target by the largest ratio gives one file, chosen round-robin by key (the
//! first file starting after the last key compacted out of that level, wrapping around), and
//! it is merged with the overlapping files of level n + 1. Overlap is by user-key range.

use crate::engine::EngineOptions;
use crate::manifest::{FileMeta, ManifestState};

/// A compaction to run: `inputs` from `level`, `next_inputs` from `level + 1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pick {
    pub level: usize,
    pub inputs: Vec<FileMeta>,
    pub next_inputs: Vec<FileMeta>,
}

impl Pick {
    /// The level the outputs go to.
    pub fn output_level(&self) -> usize {
        self.level + 1
    }
}

/// Chooses the next compaction, advancing `pointers[level]` for round-robin picks.
pub(crate) fn pick(
    state: &ManifestState,
    opts: &EngineOptions,
    pointers: &mut [Vec<u8>],
) -> Option<Pick> {
    let levels = &state.levels;
    if levels.len() < 2 {
        return None;
    }
    let l0 = levels.first()?;
    if !l0.is_empty() && l0.len() >= opts.l0_compaction_trigger.max(1) {
        let (lo, hi) = key_range(l0)?;
        return Some(Pick {
            level: 0,
            inputs: l0.clone(),
            next_inputs: overlapping(levels.get(1)?, lo, hi),
        });
    }
    let mut best: Option<(usize, f64)> = None;
    for (level, files) in levels.iter().enumerate().take(levels.len() - 1).skip(1) {
        let bytes: u64 = files.iter().map(|f| f.size).sum();
        let score = bytes as f64 / opts.level_target_bytes(level) as f64;
        if score > 1.0 && best.is_none_or(|(_, s)| score > s) {
            best = Some((level, score));
        }
    }
    let (level, _) = best?;
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
    use crate::key::InternalKey;

    fn file(id: u64, lo: &str, hi: &str, size: u64) -> FileMeta {
        FileMeta {
            id,
            size,
            smallest: InternalKey::new(lo, 9),
            largest: InternalKey::new(hi, 1),
        }
    }

    fn opts() -> EngineOptions {
        EngineOptions {
            l0_compaction_trigger: 2,
            level1_bytes: 100,
            level_multiplier: 10,
            num_levels: 4,
            ..EngineOptions::default()
        }
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
        let pick = pick(&state, &opts(), &mut pointers).unwrap();
        assert_eq!(pick.level, 0);
        assert_eq!(pick.inputs.len(), 2);
        let ids: Vec<u64> = pick.next_inputs.iter().map(|f| f.id).collect();
        assert_eq!(ids, vec![1, 2]);

        state.levels[0].pop();
        assert_eq!(
            super::pick(&state, &opts(), &mut pointers),
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
        let first = pick(&state, &opts(), &mut pointers).unwrap();
        assert_eq!((first.level, first.inputs[0].id), (1, 1));
        let ids: Vec<u64> = first.next_inputs.iter().map(|f| f.id).collect();
        assert_eq!(ids, vec![3, 4]);
        let second = pick(&state, &opts(), &mut pointers).unwrap();
        assert_eq!(second.inputs[0].id, 2);
        let third = pick(&state, &opts(), &mut pointers).unwrap();
        assert_eq!(third.inputs[0].id, 1, "wraps around");
        // The last level is never compacted.
        let mut deep = ManifestState::new(4);
        deep.levels[3] = vec![file(9, "a", "z", 1 << 40)];
        assert_eq!(pick(&deep, &opts(), &mut pointers), None);
    }
}
