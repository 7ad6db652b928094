//! Flush on open: the replayed WAL becomes a level-0 table through a normal flush, so the WAL
//! segments go only once the manifest records the table.

use super::*;
use crate::engine::WAL_DIR;
use crate::engine::WriteBatch;

/// Memtables flushed only when asked, no background threads.
fn options() -> EngineOptions {
    EngineOptions {
        memtable_bytes: 1 << 20,
        ..small_options(false)
    }
}

/// Writes `k0..k9` at versions 1..=30 (key `k{v % 10}` gets `v{v}`), then "crashes" (drops
/// the engine without closing it, so nothing is flushed).
fn write_and_crash(dir: &Path) {
    let engine = open(dir, options());
    for v in 1..=30u64 {
        let mut batch = WriteBatch::new();
        batch.put(format!("k{}", v % 10), format!("v{v}"));
        engine.apply(v, &batch).unwrap();
    }
    assert_eq!(engine.stats().flushes, 0);
    drop(engine);
}

fn assert_every_version(engine: &Engine) {
    for read in 1..=30u64 {
        for v in read.saturating_sub(9).max(1)..=read {
            let key = format!("k{}", v % 10);
            assert_eq!(
                engine.get(key.as_bytes(), read).unwrap().unwrap(),
                format!("v{v}"),
                "{key} at {read}"
            );
        }
    }
}

fn wal_segments(dir: &Path) -> usize {
    std::fs::read_dir(dir.join(WAL_DIR)).unwrap().count()
}

#[test]
fn open_flushes_the_replayed_wal_to_level_0() {
    let dir = tempfile::tempdir().unwrap();
    write_and_crash(dir.path());
    assert!(wal_segments(dir.path()) >= 1);

    let engine = open(dir.path(), options());
    let stats = engine.stats();
    assert_eq!((stats.flushes, stats.l0_files), (1, 1));
    assert_eq!(stats.memtable_bytes, 0, "the replayed memtable was flushed");
    assert!(stats.flush_bytes > 0);
    assert_eq!(engine.last_applied_version(), 30);
    assert_eq!(engine.durable_version(), 30);
    assert_eq!(
        wal_segments(dir.path()),
        1,
        "only the segment taking new writes"
    );
    assert_every_version(&engine);
    drop(engine);

    // The table is in the manifest and nothing is left to replay.
    let opts = EngineOptions {
        flush_on_open: false,
        ..options()
    };
    let engine = open(dir.path(), opts);
    let stats = engine.stats();
    assert_eq!((stats.l0_files, stats.memtable_bytes), (1, 0));
    assert_eq!(engine.last_applied_version(), 30);
    assert_every_version(&engine);
}

#[test]
fn failed_flush_on_open_keeps_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    write_and_crash(dir.path());
    let segments = wal_segments(dir.path());

    // A table builder refuses a zero restart interval: the flush fails before any table is
    // recorded, so open fails and must leave the replayed segments in place.
    let mut broken = options();
    broken.table.restart_interval = 0;
    assert!(Engine::open(dir.path(), broken).is_err());
    assert!(wal_segments(dir.path()) >= segments);

    let opts = EngineOptions {
        flush_on_open: false,
        ..options()
    };
    let engine = open(dir.path(), opts);
    let stats = engine.stats();
    assert_eq!(stats.l0_files, 0);
    assert!(stats.memtable_bytes > 0, "the data came back from the WAL");
    assert_eq!(engine.last_applied_version(), 30);
    assert_every_version(&engine);
}
