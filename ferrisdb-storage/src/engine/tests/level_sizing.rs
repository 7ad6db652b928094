//! Dynamic level sizing through the engine: where level 0 goes, how the levels fill from
//! the bottom, and that every key still reads back.

use std::collections::BTreeMap;

use super::*;
use crate::engine::WriteBatch;

/// No background threads, compressed tables, small levels growing by 4, five levels.
fn options(dynamic_level_bytes: bool) -> EngineOptions {
    EngineOptions {
        memtable_bytes: 4096,
        level1_bytes: 8192,
        level_multiplier: 4,
        num_levels: 5,
        target_file_bytes: 4096,
        dynamic_level_bytes,
        ..small_options(false)
    }
}

fn level_bytes(engine: &Engine) -> Vec<u64> {
    engine.stats().levels.iter().map(|l| l.bytes).collect()
}

#[test]
fn a_new_database_compacts_level_zero_into_the_last_level() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(
        dir.path(),
        EngineOptions {
            l0_compaction_trigger: 1,
            ..options(true)
        },
    );
    let mut batch = WriteBatch::new();
    for k in 0..50 {
        batch.put(format!("k{k:02}"), format!("v{k}"));
    }
    engine.apply(1, &batch).unwrap();
    engine.flush().unwrap();
    engine.compact().unwrap();
    let bytes = level_bytes(&engine);
    assert!(bytes[4] > 0, "{bytes:?}");
    assert!(bytes[..4].iter().all(|&b| b == 0), "{bytes:?}");
    assert_eq!(engine.get(b"k07", 1).unwrap().unwrap(), "v7");
}

/// Keys written by [`overwrite`], and its last version.
const KEYS: u64 = 1000;
const VERSIONS: u64 = 1000;

/// Overwrites a key space many times with the GC horizon close behind, compacting as it
/// goes; returns the engine and the model of the newest values.
fn overwrite(dir: &std::path::Path, dynamic: bool) -> (Arc<Engine>, BTreeMap<String, String>) {
    let engine = open(dir, options(dynamic));
    let mut model = BTreeMap::new();
    for version in 1..=VERSIONS {
        let mut batch = WriteBatch::new();
        for i in 0..8 {
            // KEYS keys, visited in a scrambled order.
            let k = (version * 8 + i) * 97 % KEYS;
            let key = format!("key{k:04}");
            let value = format!("{key}@{version}-{}", "x".repeat(40));
            batch.put(key.clone(), value.clone());
            model.insert(key, value);
        }
        engine.apply(version, &batch).unwrap();
        engine.set_gc_horizon(version.saturating_sub(5));
        if version % 10 == 0 {
            engine.flush().unwrap();
            engine.compact().unwrap();
        }
    }
    engine.flush().unwrap();
    engine.compact().unwrap();
    (engine, model)
}

#[test]
fn levels_fill_from_the_bottom_and_stay_within_their_targets() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, model) = overwrite(dir.path(), true);
    let bytes = level_bytes(&engine);
    let last = bytes.len() - 1;
    let biggest = bytes.iter().copied().max().unwrap();
    assert_eq!(
        bytes[last], biggest,
        "the last level holds the most: {bytes:?}"
    );
    // The levels in use are contiguous down to the last one (none skipped), and each one
    // above the last holds at most its target: a multiplier-th of the level below, or
    // `level1_bytes`.
    let base = (1..=last).find(|&l| bytes[l] > 0).unwrap();
    assert!(
        base > 1,
        "this little data needs fewer than four levels: {bytes:?}"
    );
    for level in base..last {
        assert!(bytes[level] > 0, "{bytes:?}");
        let target = (bytes[level + 1] / 4).max(8192);
        assert!(
            bytes[level] <= target,
            "level {level} over its target {target}: {bytes:?}"
        );
    }
    for (key, value) in &model {
        assert_eq!(
            engine.get(key.as_bytes(), VERSIONS).unwrap().unwrap(),
            value
        );
    }
    let pairs = scan_all(&engine, b"", b"", VERSIONS, false, 0);
    assert_eq!(pairs.len(), model.len());

    // Reopened (the layout is in the manifest), it reads the same and compacts on.
    engine.close().unwrap();
    let engine = open(dir.path(), options(true));
    assert_eq!(level_bytes(&engine), bytes);
    for (key, value) in &model {
        assert_eq!(
            engine.get(key.as_bytes(), VERSIONS).unwrap().unwrap(),
            value
        );
    }
}

#[test]
fn dynamic_sizing_holds_less_than_static_sizing_for_the_same_writes() {
    let dynamic_dir = tempfile::tempdir().unwrap();
    let static_dir = tempfile::tempdir().unwrap();
    let (dynamic, _) = overwrite(dynamic_dir.path(), true);
    let (fixed, _) = overwrite(static_dir.path(), false);
    let total = |e: &Engine| level_bytes(e).iter().sum::<u64>();
    let bottom = |e: &Engine| *level_bytes(e).last().unwrap();
    // Dynamic: at most about a third (1/(4-1)) more than the last level.
    assert!(
        total(&dynamic) * 3 <= bottom(&dynamic) * 4 + 3 * 8192,
        "dynamic {:?}",
        level_bytes(&dynamic)
    );
    // Static sizing leaves the last level smaller than the one above it here (about
    // [0, 4K, 30K, 53K, 0] against dynamic's [0, 0, 4K, 12K, 54K]): over 12% more bytes.
    assert!(
        total(&dynamic) * 8 < total(&fixed) * 7,
        "dynamic {:?} static {:?}",
        level_bytes(&dynamic),
        level_bytes(&fixed)
    );
}
