//! How big each level may grow before it is compacted down, and which level level 0 is
//! compacted into (the *base level*).
//!
//! **Static sizing** (`dynamic_level_bytes: false`): level 0 goes to level 1, and level n ≥ 1
//! may hold `level1_bytes × level_multiplier^(n-1)`. The targets ignore how much data there
//! is, so the deepest level that holds data can end up *smaller* than the one above it (at 50M
//! keys: 2.7 GB in level 2 over 1.9 GB in level 3), and every key then lives in two big
//! levels: space amplification near 1.4 and an extra rewrite of everything.
//!
//! **Dynamic sizing** (`dynamic_level_bytes: true`, the default; RocksDB's
//! `level_compaction_dynamic_level_bytes`): the targets are set from the bottom. The last
//! level is the reference: it may hold what it holds, and each level above it may hold a
//! `level_multiplier`-th of the level below, up to the first level whose target would be at
//! most `level1_bytes`: that is the base level, the one level 0 compacts into. The levels
//! above the base level stay empty. A new database therefore compacts level 0 straight into
//! the last level; once that holds more than `level1_bytes`, the level above it becomes the
//! base level, and so on. Since every level above the last holds about a multiplier-th of the
//! level below, about 1 / (multiplier − 1) of the data is older versions waiting to be merged:
//! space amplification near 1.1 with the default multiplier of 10.
//!
//! The base level is never below the first non-empty level (so level 0 never jumps over data,
//! and newer versions of a key always sit in a lower-numbered level than older ones). A
//! database written with static sizing and opened with dynamic sizing therefore keeps data in
//! its upper levels, with targets computed from its biggest level; it is not moved down.

use crate::engine::EngineOptions;

/// The size targets of every level for one state of the levels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LevelTargets {
    /// The level level 0 compacts into (≥ 1).
    pub base_level: usize,
    /// Per level, the bytes it may hold before it is compacted down; `u64::MAX` for level 0
    /// (compacted by file count), the levels above the base level and the last level.
    pub max_bytes: Vec<u64>,
}

impl LevelTargets {
    /// How far over its target `level` is (bytes / target; above 1.0: compact it).
    pub fn score(&self, level: usize, bytes: u64) -> f64 {
        match self.max_bytes.get(level) {
            Some(&u64::MAX) | None => 0.0,
            Some(&target) => bytes as f64 / target.max(1) as f64,
        }
    }
}

/// The targets for levels holding `level_bytes` (index = level; level 0 ignored).
pub(crate) fn level_targets(opts: &EngineOptions, level_bytes: &[u64]) -> LevelTargets {
    let num_levels = level_bytes.len();
    let mut max_bytes = vec![u64::MAX; num_levels];
    if num_levels < 2 {
        return LevelTargets {
            base_level: 1,
            max_bytes,
        };
    }
    let last = num_levels - 1;
    if !opts.dynamic_level_bytes {
        for (level, target) in max_bytes.iter_mut().enumerate().take(last).skip(1) {
            *target = opts.level_target_bytes(level);
        }
        return LevelTargets {
            base_level: 1,
            max_bytes,
        };
    }

    let multiplier = opts.level_multiplier.max(1);
    let base_bytes_max = opts.level1_bytes.max(1);
    let base_bytes_min = (base_bytes_max / multiplier).max(1);
    let first_non_empty = (1..num_levels).find(|&l| level_bytes[l] > 0);
    let biggest = level_bytes.iter().skip(1).copied().max().unwrap_or(0);
    let Some(first_non_empty) = first_non_empty else {
        // Nothing below level 0 yet: level 0 goes straight to the last level.
        return LevelTargets {
            base_level: last,
            max_bytes,
        };
    };
    // The target of the first non-empty level if the last level's target is the biggest
    // level's size.
    let mut size = biggest;
    for _ in first_non_empty..last {
        size /= multiplier;
    }
    let mut base_level = first_non_empty;
    let base_size = if size <= base_bytes_min {
        // More levels hold data than this much data needs (e.g. it was written with static
        // sizing, or most of it was deleted): keep them, from a small base target.
        base_bytes_min + 1
    } else {
        while base_level > 1 && size > base_bytes_max {
            base_level -= 1;
            size /= multiplier;
        }
        size.min(base_bytes_max)
    };
    let mut size = base_size;
    for (level, target) in max_bytes.iter_mut().enumerate().take(last).skip(base_level) {
        if level > base_level {
            size = size.saturating_mul(multiplier);
        }
        // No level's target below `level1_bytes`: a level smaller than that would be
        // compacted before level 0, which then fills up and stalls writes.
        *target = size.max(base_bytes_max);
    }
    LevelTargets {
        base_level,
        max_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn opts(dynamic: bool) -> EngineOptions {
        EngineOptions {
            level1_bytes: 256 * MIB,
            level_multiplier: 10,
            num_levels: 7,
            dynamic_level_bytes: dynamic,
            ..EngineOptions::default()
        }
    }

    fn sizes(mib: [u64; 7]) -> Vec<u64> {
        mib.iter().map(|m| m * MIB).collect()
    }

    #[test]
    fn static_targets_grow_from_level_one_and_ignore_the_data() {
        let targets = level_targets(&opts(false), &sizes([0, 0, 0, 0, 0, 0, 0]));
        assert_eq!(targets.base_level, 1);
        assert_eq!(targets.max_bytes[1], 256 * MIB);
        assert_eq!(targets.max_bytes[3], 25_600 * MIB);
        assert_eq!(targets.max_bytes[0], u64::MAX);
        assert_eq!(
            targets.max_bytes[6],
            u64::MAX,
            "the last level is never compacted"
        );
    }

    #[test]
    fn an_empty_database_compacts_level_zero_into_the_last_level() {
        let targets = level_targets(&opts(true), &sizes([300, 0, 0, 0, 0, 0, 0]));
        assert_eq!(targets.base_level, 6);
        assert!(targets.max_bytes.iter().all(|&t| t == u64::MAX));
    }

    #[test]
    fn the_base_level_rises_as_the_last_level_grows() {
        // The last level still fits in `level1_bytes`: it stays the base level.
        let small = level_targets(&opts(true), &sizes([0, 0, 0, 0, 0, 0, 200]));
        assert_eq!(small.base_level, 6);
        // Past it, the level above becomes the base level, with at least `level1_bytes`.
        let grown = level_targets(&opts(true), &sizes([0, 0, 0, 0, 0, 0, 1_000]));
        assert_eq!(grown.base_level, 5);
        assert_eq!(grown.max_bytes[5], 256 * MIB);
        assert_eq!(grown.max_bytes[4], u64::MAX, "above the base level");
        // 50M keys' worth: 4.4 GB at the bottom makes level 5 a tenth of it, level 4 the base.
        let big = level_targets(&opts(true), &sizes([0, 0, 0, 0, 0, 400, 4_400]));
        assert_eq!(big.base_level, 4);
        assert_eq!(big.max_bytes[4], 256 * MIB, "44 MiB raised to level1_bytes");
        assert_eq!(big.max_bytes[5], 440 * MIB);
        assert_eq!(big.max_bytes[6], u64::MAX);
        // Every level from the base down is within a multiplier of the bottom's tenth.
        assert!(big.score(5, 400 * MIB) < 1.0);
        assert!(big.score(5, 500 * MIB) > 1.0);
        assert_eq!(big.score(6, 1 << 50), 0.0);
    }

    #[test]
    fn the_base_level_stops_at_level_one() {
        // So much data that even level 1 would exceed `level1_bytes`: it is capped there.
        let huge = level_targets(&opts(true), &sizes([0, 0, 0, 0, 0, 0, 500_000_000]));
        assert_eq!(huge.base_level, 1);
        assert_eq!(huge.max_bytes[1], 256 * MIB);
        assert_eq!(huge.max_bytes[2], 2_560 * MIB);
    }

    #[test]
    fn data_in_upper_levels_keeps_the_base_level_at_or_above_it() {
        // A database laid out by static sizing: level 0 must not jump over level 1's data.
        let migrated = level_targets(&opts(true), &sizes([70, 249, 2_684, 1_881, 0, 0, 0]));
        assert_eq!(migrated.base_level, 1);
        assert_eq!(migrated.max_bytes[1], 256 * MIB);
        // From a base of a tenth of `level1_bytes` (plus a byte) up.
        assert!(migrated.max_bytes[2].abs_diff(256 * MIB) < 1024);
        assert!(migrated.max_bytes[3].abs_diff(2_560 * MIB) < 1024);
        // Level 2 is over its target: its data moves down.
        assert!(migrated.score(2, 2_684 * MIB) > 10.0);
    }
}
