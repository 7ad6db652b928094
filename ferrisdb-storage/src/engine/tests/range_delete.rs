//! Range deletes: one range tombstone however many keys it covers, hidden keys in reads and
//! scans at every version, survival across flush and restart, and collection by compaction
//! once below the GC horizon.

use super::*;
use crate::engine::WriteBatch;

fn key(i: u32) -> Vec<u8> {
    format!("k{i:05}").into_bytes()
}

/// Versions 1..=20, 100 keys each: 2,000 keys.
fn fill(engine: &Engine) {
    for round in 0..20u32 {
        let mut batch = WriteBatch::new();
        for i in round * 100..(round + 1) * 100 {
            batch.put(key(i), format!("value-{i}"));
        }
        engine.apply(u64::from(round) + 1, &batch).unwrap();
    }
}

fn delete_range(engine: &Engine, version: u64, begin: &[u8], end: &[u8]) {
    let mut batch = WriteBatch::new();
    batch.delete_range(begin, end);
    engine.apply(version, &batch).unwrap();
}

fn live_tombstones(engine: &Engine) -> usize {
    let versions = engine.inner.versions.lock();
    versions.manifest.state().range_tombstones.len()
}

fn options() -> EngineOptions {
    EngineOptions {
        memtable_bytes: 1 << 20,
        ..small_options(false)
    }
}

#[test]
fn a_range_delete_is_one_entry_however_many_keys_it_covers() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), options());
    fill(&engine);
    let before = engine.stats();
    delete_range(&engine, 21, &key(100), &key(1900));
    let after = engine.stats();
    assert_eq!(after.wal.records_written, before.wal.records_written + 1);
    assert!(
        after.memtable_bytes - before.memtable_bytes < 128,
        "clearing 1,800 keys took {} memtable bytes",
        after.memtable_bytes - before.memtable_bytes
    );
    assert_eq!(engine.get(&key(500), 21).unwrap(), None);
    assert_eq!(engine.get(&key(500), 20).unwrap().unwrap(), "value-500");
    assert_eq!(engine.get(&key(99), 21).unwrap().unwrap(), "value-99");
    assert_eq!(engine.get(&key(1900), 21).unwrap().unwrap(), "value-1900");
    assert_eq!(scan_all(&engine, b"", b"", 21, false, 0).len(), 200);
    assert_eq!(scan_all(&engine, b"", b"", 21, true, 0).len(), 200);
    assert_eq!(scan_all(&engine, b"", b"", 20, false, 0).len(), 2000);
    // Written after the clear (and later in the clearing batch itself): visible.
    let mut batch = WriteBatch::new();
    batch.put(key(600), "before, same batch");
    batch.delete_range(key(500), key(700));
    batch.put(key(650), "after, same batch");
    engine.apply(22, &batch).unwrap();
    let mut batch = WriteBatch::new();
    batch.put(key(1000), "new");
    engine.apply(23, &batch).unwrap();
    assert_eq!(engine.get(&key(600), 23).unwrap(), None);
    assert_eq!(
        engine.get(&key(650), 23).unwrap().unwrap(),
        "after, same batch"
    );
    assert_eq!(engine.get(&key(1000), 23).unwrap().unwrap(), "new");
    let keys: Vec<Vec<u8>> = scan_all(&engine, &key(100), &key(1900), 23, false, 0)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, vec![key(650), key(1000)]);
    let reversed: Vec<Vec<u8>> = scan_all(&engine, &key(100), &key(1900), 23, true, 0)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(reversed, vec![key(1000), key(650)]);
}

fn check_after_clear(engine: &Engine) {
    assert_eq!(engine.get(&key(10), 21).unwrap(), None);
    assert_eq!(engine.get(&key(10), 20).unwrap().unwrap(), "value-10");
    assert_eq!(engine.get(&key(1999), 21).unwrap().unwrap(), "value-1999");
    assert_eq!(scan_all(engine, b"", b"", 21, false, 0).len(), 1);
    assert_eq!(scan_all(engine, b"", b"", 20, false, 0).len(), 2000);
}

#[test]
fn range_tombstones_survive_flush_and_restart() {
    for flush_first in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let engine = open(dir.path(), options());
        fill(&engine);
        delete_range(&engine, 21, b"", &key(1999));
        check_after_clear(&engine);
        if flush_first {
            engine.flush().unwrap();
            assert_eq!(
                live_tombstones(&engine),
                1,
                "the flush moves it to the manifest"
            );
            check_after_clear(&engine);
        }
        drop(engine); // A crash: the WAL replays what was not flushed.
        let engine = open(dir.path(), options());
        check_after_clear(&engine);
        engine.close().unwrap();
        let engine = open(dir.path(), options());
        check_after_clear(&engine);
    }
}

#[test]
fn a_scan_over_a_cleared_range_skips_the_tables_it_hides() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), small_options(false));
    fill(&engine);
    engine.flush().unwrap();
    engine.compact().unwrap();
    delete_range(&engine, 21, b"", b"");
    let mut batch = WriteBatch::new();
    batch.put(key(5), "after the clear");
    engine.apply(22, &batch).unwrap();
    // Nothing collected yet (no horizon), but no table needs reading at 22: the tombstone
    // is newer than every entry of every table.
    let misses = engine.stats().cache_misses;
    assert_eq!(scan_all(&engine, b"", b"", 22, false, 0).len(), 1);
    assert_eq!(scan_all(&engine, b"", b"", 22, true, 0).len(), 1);
    assert_eq!(
        engine.stats().cache_misses,
        misses,
        "a hidden table was read"
    );
    // At 20 every table is needed, and read.
    assert_eq!(scan_all(&engine, b"", b"", 20, false, 0).len(), 2000);
    assert!(engine.stats().cache_misses > misses);
}

#[test]
fn a_tombstone_only_memtable_is_flushed_and_its_segments_freed() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), options());
    fill(&engine);
    engine.flush().unwrap();
    delete_range(&engine, 21, b"", b"");
    engine.flush().unwrap();
    assert_eq!(live_tombstones(&engine), 1);
    assert_eq!(engine.stats().memtable_bytes, 0);
    assert_eq!(scan_all(&engine, b"", b"", 21, false, 0).len(), 0);
}

#[test]
fn compaction_below_the_horizon_drops_covered_data_then_the_tombstone() {
    let dir = tempfile::tempdir().unwrap();
    // One table per level, so the compaction of any new key rewrites all the covered data.
    let opts = EngineOptions {
        num_levels: 2,
        l0_compaction_trigger: 1,
        target_file_bytes: 1 << 20,
        ..options()
    };
    let engine = open(dir.path(), opts);
    fill(&engine);
    engine.flush().unwrap();
    engine.compact().unwrap();
    let full_bytes = engine.stats().total_sst_bytes;
    delete_range(&engine, 21, &key(0), &key(1990));
    engine.flush().unwrap();
    assert_eq!(live_tombstones(&engine), 1);

    // Below the tombstone's version nothing may be collected: reads at 20 still need it all.
    engine.set_gc_horizon(20);
    let mut batch = WriteBatch::new();
    batch.put(key(5), "rewritten");
    engine.apply(22, &batch).unwrap();
    engine.flush().unwrap();
    engine.compact().unwrap();
    assert_eq!(live_tombstones(&engine), 1);
    assert_eq!(scan_all(&engine, b"", b"", 20, false, 0).len(), 2000);

    // At or above it: a compaction of the covered tables drops their covered entries, and
    // with no table left that may hold any, the tombstone goes too.
    engine.set_gc_horizon(22);
    let mut batch = WriteBatch::new();
    batch.put(key(7), "again");
    engine.apply(23, &batch).unwrap();
    engine.flush().unwrap();
    engine.compact().unwrap();
    assert_eq!(live_tombstones(&engine), 0, "{:?}", engine.stats());
    assert!(
        engine.stats().total_sst_bytes < full_bytes / 10,
        "{} bytes left of {full_bytes}",
        engine.stats().total_sst_bytes
    );
    let keys: Vec<Vec<u8>> = scan_all(&engine, b"", b"", 23, false, 0)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let mut want = vec![key(5), key(7)];
    want.extend((1990..2000).map(key));
    assert_eq!(keys, want);
    assert_eq!(engine.get(&key(5), 23).unwrap().unwrap(), "rewritten");
    assert_eq!(engine.get(&key(6), 23).unwrap(), None);
    // After a restart the collected state reads the same.
    engine.close().unwrap();
    let engine = open(dir.path(), opts);
    assert_eq!(live_tombstones(&engine), 0);
    assert_eq!(scan_all(&engine, b"", b"", 23, false, 0).len(), want.len());
}

#[test]
fn a_cleared_range_is_compacted_away_without_new_writes() {
    let dir = tempfile::tempdir().unwrap();
    // Small memtables and files over several levels: the cleared data spans many tables.
    let engine = open(dir.path(), small_options(false));
    fill(&engine);
    engine.flush().unwrap();
    engine.compact().unwrap();
    let full = engine.stats();
    assert!(
        full.levels.iter().map(|l| l.files).sum::<usize>() > 10,
        "{full:?}"
    );
    delete_range(&engine, 21, &key(0), &key(1990));
    engine.flush().unwrap();
    engine.set_gc_horizon(21);
    engine.compact().unwrap();
    assert_eq!(live_tombstones(&engine), 0);
    let left = engine.stats().total_sst_bytes;
    assert!(
        left < full.total_sst_bytes / 20,
        "{left} bytes left of {}",
        full.total_sst_bytes
    );
    let keys: Vec<Vec<u8>> = scan_all(&engine, b"", b"", 21, false, 0)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, (1990..2000).map(key).collect::<Vec<_>>());
    // Nothing left to do: another compaction call picks nothing.
    let compactions = engine.stats().compactions;
    engine.compact().unwrap();
    assert_eq!(engine.stats().compactions, compactions);
}
