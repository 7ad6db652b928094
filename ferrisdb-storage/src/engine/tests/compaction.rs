//! Compaction behaviour: trivial moves and garbage collection, checked through the engine's
//! counters, its level layout and reads at every version.

use super::*;
use crate::engine::WriteBatch;

/// No background threads, memtables flushed only when asked, one level-0 file triggers a
/// compaction, big levels (nothing but level 0 ever needs compacting), `num_levels` levels,
/// static sizing (level 0 compacts into level 1, so `num_levels` decides whether that is the
/// last level; `level_sizing.rs` covers dynamic sizing).
fn options(num_levels: usize) -> EngineOptions {
    EngineOptions {
        memtable_bytes: 1 << 20,
        l0_compaction_trigger: 1,
        level1_bytes: 1 << 30,
        dynamic_level_bytes: false,
        num_levels,
        ..small_options(false)
    }
}

/// Writes keys `k00..k19` at versions `first..first + rounds` (each version rewrites every
/// key with value `{key}@{version}`), then flushes into one level-0 table.
fn write_rounds(engine: &Engine, first: u64, rounds: u64) {
    for version in first..first + rounds {
        let mut batch = WriteBatch::new();
        for k in 0..20 {
            batch.put(format!("k{k:02}"), format!("k{k:02}@{version}"));
        }
        engine.apply(version, &batch).unwrap();
    }
    engine.flush().unwrap();
}

/// Every key reads as written at every version in `versions`.
fn assert_reads(engine: &Engine, versions: std::ops::RangeInclusive<u64>) {
    for version in versions {
        for k in 0..20 {
            let key = format!("k{k:02}");
            assert_eq!(
                engine.get(key.as_bytes(), version).unwrap().unwrap(),
                format!("{key}@{version}"),
                "{key} at {version}"
            );
        }
    }
}

/// Ids of the tables of each level.
fn layout(engine: &Engine) -> Vec<Vec<u64>> {
    engine
        .inner
        .current()
        .levels
        .iter()
        .map(|tables| tables.iter().map(|t| t.id()).collect())
        .collect()
}

#[test]
fn table_overlapping_nothing_below_is_moved_not_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(4);
    let engine = open(dir.path(), opts);
    write_rounds(&engine, 1, 5);
    let before = layout(&engine);
    let l0 = before[0].clone();
    assert_eq!((l0.len(), before[1].len()), (1, 0));
    // Below the newest version: the table is not yet one whose older versions are collected
    // for their own sake (that would carry it down to the last level).
    engine.set_gc_horizon(4);

    engine.compact().unwrap();
    let stats = engine.stats();
    assert_eq!(stats.trivial_moves, 1);
    assert_eq!(stats.compactions, 1);
    assert_eq!(stats.compaction_write_bytes, 0, "nothing rewritten");
    assert_eq!(
        layout(&engine),
        vec![vec![], l0.clone(), vec![], vec![]],
        "the same file, one level down"
    );
    assert!(
        dir.path()
            .join(crate::manifest::table_file_name(l0[0]))
            .exists()
    );
    // Above the last level the move keeps the versions a merge would have dropped; reads at
    // and above the horizon are unchanged.
    assert_reads(&engine, 5..=5);
    assert_eq!(
        engine.inner.current().levels[1][0].properties().entry_count,
        100
    );

    // The move is in the manifest: a reopened engine finds the table on level 1.
    engine.close().unwrap();
    let engine = open(dir.path(), opts);
    assert_eq!(layout(&engine), vec![vec![], l0, vec![], vec![]]);
    assert_reads(&engine, 5..=5);
}

#[test]
fn move_into_the_last_level_keeps_every_version_readable() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), options(2));
    write_rounds(&engine, 1, 3);
    let l0 = layout(&engine)[0].clone();
    // Every version is above the horizon: the GC rules keep all of them, so a move is safe.
    engine.compact().unwrap();
    assert_eq!(engine.stats().trivial_moves, 1);
    assert_eq!(layout(&engine), vec![vec![], l0]);
    assert_reads(&engine, 1..=3);
}

#[test]
fn compaction_into_the_last_level_still_drops_shadowed_versions() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), options(2));
    write_rounds(&engine, 1, 4);
    let mut batch = WriteBatch::new();
    batch.delete("k00");
    engine.apply(5, &batch).unwrap();
    engine.flush().unwrap();
    engine.set_gc_horizon(5);
    // Two level-0 tables: a merge, not a move, whatever overlaps.
    engine.compact().unwrap();
    let stats = engine.stats();
    assert_eq!((stats.trivial_moves, stats.compactions), (0, 1));
    assert!(stats.compaction_write_bytes > 0);
    assert!(stats.compaction_read_bytes > 0);
    assert_eq!(
        engine.inner.cache.usage_bytes(),
        0,
        "compaction reads do not fill the block cache"
    );
    let state = engine.inner.current();
    let [table] = state.levels[1].as_slice() else {
        panic!("one output table expected");
    };
    // k00's tombstone at the horizon and every older version are gone; each other key keeps
    // only its newest version at or below the horizon.
    assert_eq!(table.properties().entry_count, 19);
    assert_eq!(table.properties().tombstone_count, 0);
    assert_eq!(engine.get(b"k00", 5).unwrap(), None);
    assert_eq!(engine.get(b"k07", 5).unwrap().unwrap(), "k07@4");
    assert!(engine.inner.cache.usage_bytes() > 0, "reads do");
}

#[test]
fn single_table_with_garbage_is_rewritten_into_the_last_level() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), options(2));
    write_rounds(&engine, 1, 3);
    let l0 = layout(&engine)[0].clone();
    engine.set_gc_horizon(3);
    engine.compact().unwrap();
    let stats = engine.stats();
    assert_eq!(
        stats.trivial_moves, 0,
        "a move would keep the shadowed versions"
    );
    let l1 = layout(&engine)[1].clone();
    assert_eq!(l1.len(), 1);
    assert_ne!(l1, l0);
    assert!(
        !dir.path()
            .join(crate::manifest::table_file_name(l0[0]))
            .exists()
    );
    assert_eq!(
        engine.inner.current().levels[1][0].properties().entry_count,
        20
    );
    assert_reads(&engine, 3..=3);
}

#[test]
fn the_deepest_level_is_written_with_the_bottommost_codec() {
    use crate::sstable::compression::{COMPRESSION_NONE, COMPRESSION_ZSTD};
    let dir = tempfile::tempdir().unwrap();
    // small_options: level 0 plain, LZ4 from level 1, zstd at the bottom.
    let engine = open(dir.path(), options(3));
    let value = |k: u32, version: u64| format!("k{k:02}@{version}-{}", "padding ".repeat(8));
    for round in 0..2u64 {
        for version in round * 10 + 1..=round * 10 + 3 {
            let mut batch = WriteBatch::new();
            for k in 0..40 {
                batch.put(format!("k{k:02}"), value(k, version));
            }
            engine.apply(version, &batch).unwrap();
        }
        engine.flush().unwrap();
        let l0 = engine.inner.current().levels[0].clone();
        for table in &l0 {
            let kinds = table.data_block_compressions().unwrap();
            assert!(
                kinds.iter().all(|&k| k == COMPRESSION_NONE),
                "level 0: {kinds:?}"
            );
        }
        engine.compact().unwrap();
    }
    // The second compaction merged level 0 into level 1, the deepest level holding data.
    let state = engine.inner.current();
    assert!(state.levels[0].is_empty() && state.levels[2].is_empty());
    let kinds: Vec<u8> = state.levels[1]
        .iter()
        .flat_map(|t| t.data_block_compressions().unwrap())
        .collect();
    assert!(!kinds.is_empty());
    assert!(
        kinds.iter().all(|&k| k == COMPRESSION_ZSTD),
        "level 1: {kinds:?}"
    );
    for version in [1, 3, 11, 13] {
        for k in 0..40 {
            let got = engine.get(format!("k{k:02}").as_bytes(), version).unwrap();
            assert_eq!(got.unwrap(), value(k, version), "k{k:02} at {version}");
        }
    }
}

/// With inline background work, the writer flushes and compacts on its own thread right
/// after its batch: memtables never pile up, level 0 stays shallow, every version reads back
/// and the engine starts no thread.
#[test]
fn inline_background_work_flushes_and_compacts_on_the_writing_thread() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EngineOptions {
        inline_background_work: true,
        ..small_options(false)
    };
    let engine = open(dir.path(), opts);
    assert!(engine.threads.lock().is_empty());
    for version in 1..=200u64 {
        let mut batch = WriteBatch::new();
        for k in 0..20 {
            batch.put(format!("k{k:02}"), format!("k{k:02}@{version}"));
        }
        engine.apply(version, &batch).unwrap();
        let stats = engine.stats();
        assert_eq!(stats.immutable_memtables, 0, "after version {version}");
        assert!(
            stats.l0_files < opts.l0_compaction_trigger,
            "after version {version}: {} level-0 files",
            stats.l0_files
        );
    }
    let stats = engine.stats();
    assert!(stats.flushes > 10, "{stats:?}");
    assert!(stats.compactions > 0, "{stats:?}");
    assert_eq!(stats.write_stops + stats.write_slowdowns, 0);
    assert_reads(&engine, 1..=200);
    drop(engine);
    // Reopened, it reads the same.
    let engine = open(dir.path(), opts);
    assert_reads(&engine, 1..=200);
}

#[test]
fn versions_the_horizon_passes_are_collected_without_new_writes() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(
        dir.path(),
        EngineOptions {
            background_threads: true,
            ..options(4)
        },
    );
    // Six versions of each of 20 keys in one table: 100 older versions, none collectable
    // while the horizon is below them.
    write_rounds(&engine, 1, 6);
    engine.compact().unwrap();
    let entries = |engine: &Engine| -> Vec<(u64, u64)> {
        let state = engine.inner.current();
        let tables = state.levels.iter().flatten();
        (tables.map(|t| {
            (
                t.properties().entry_count,
                t.properties().distinct_key_count,
            )
        }))
        .collect()
    };
    assert_eq!(entries(&engine), [(120, 20)]);
    assert_reads(&engine, 1..=6);
    // The horizon passes them: the background thread compacts the table (down to the last
    // level, then in place) to one version per key, though nothing is written.
    let compactions = engine.stats().compactions;
    engine.set_gc_horizon(6);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while entries(&engine) != [(20, 20)] {
        assert!(
            std::time::Instant::now() < deadline,
            "not collected: {:?}",
            entries(&engine)
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(engine.stats().compactions > compactions);
    assert_eq!(layout(&engine)[3].len(), 1, "in the last level");
    assert_reads(&engine, 6..=6);
    let newest = scan_all(&engine, b"", b"", 6, false, 0);
    let want: Vec<(Vec<u8>, Vec<u8>)> = (0..20)
        .map(|k| {
            let key = format!("k{k:02}");
            (key.clone().into_bytes(), format!("{key}@6").into_bytes())
        })
        .collect();
    assert_eq!(newest, want);
    assert!(matches!(
        engine.get(b"k00", 5),
        Err(ferrisdb_core::Error::TransactionTooOld { .. })
    ));
}
