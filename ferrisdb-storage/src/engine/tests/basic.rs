//! Basic behaviour: versions, locking, close, crash recovery.

use ferrisdb_core::Error;

use super::*;
use crate::engine::WriteBatch;

fn put(key: &str, value: &str) -> WriteBatch {
    let mut batch = WriteBatch::new();
    batch.put(key, value);
    batch
}

#[test]
fn versions_must_increase_and_reads_see_each_version() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), small_options(false));
    engine.apply(5, &put("a", "1")).unwrap();
    let err = engine.apply(5, &put("a", "2")).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    engine.apply(9, &put("a", "2")).unwrap();
    let mut del = WriteBatch::new();
    del.delete("a");
    engine.apply(12, &del).unwrap();
    assert_eq!(engine.get(b"a", 4).unwrap(), None);
    assert_eq!(engine.get(b"a", 8).unwrap().unwrap(), "1");
    assert_eq!(engine.get(b"a", 11).unwrap().unwrap(), "2");
    assert_eq!(engine.get(b"a", 12).unwrap(), None);
    assert_eq!(engine.last_applied_version(), 12);
    assert_eq!(engine.durable_version(), 12);
    engine.apply(13, &WriteBatch::new()).unwrap();
    assert_eq!(engine.last_applied_version(), 13);
}

#[test]
fn second_open_is_refused_until_close() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), small_options(true));
    assert!(Engine::open(dir.path(), small_options(true)).is_err());
    engine.close().unwrap();
    assert!(engine.close().is_err());
    assert!(engine.apply(1, &put("a", "b")).is_err());
    assert!(engine.get(b"a", 1).is_err());
    let again = open(dir.path(), small_options(true));
    again.close().unwrap();
}

#[test]
fn crash_without_close_keeps_every_applied_batch() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EngineOptions {
        sync: SyncPolicy::Always,
        ..small_options(true)
    };
    let engine = open(dir.path(), opts);
    for v in 1..=300u64 {
        engine
            .apply(v, &put(&format!("k{:03}", v % 97), &format!("v{v}")))
            .unwrap();
    }
    engine.set_gc_horizon(100);
    drop(engine); // No close: background threads stop, nothing is flushed.
    let engine = open(dir.path(), opts);
    assert_eq!(engine.last_applied_version(), 300);
    assert_eq!(engine.durable_version(), 300);
    for v in 204..=300u64 {
        let key = format!("k{:03}", v % 97);
        assert_eq!(
            engine.get(key.as_bytes(), 300).unwrap().unwrap(),
            format!("v{v}")
        );
    }
    assert!(engine.stats().flushes == 0 || engine.stats().total_sst_bytes > 0);
}

#[test]
fn scan_bounds_limits_and_empty_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), small_options(false));
    let mut batch = WriteBatch::new();
    for k in ["a", "b", "c", "d"] {
        batch.put(k, k);
    }
    engine.apply(1, &batch).unwrap();
    engine.flush().unwrap();
    let mut batch = WriteBatch::new();
    batch.delete("b");
    batch.put("c", "c2");
    engine.apply(2, &batch).unwrap();
    let keys = |pairs: Vec<(Vec<u8>, Vec<u8>)>| -> Vec<String> {
        pairs
            .into_iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    String::from_utf8(k).unwrap(),
                    String::from_utf8(v).unwrap()
                )
            })
            .collect()
    };
    assert_eq!(
        keys(scan_all(&engine, b"b", b"d", 2, false, 0)),
        vec!["c=c2"]
    );
    assert_eq!(
        keys(scan_all(&engine, b"", b"", 1, true, 2)),
        vec!["d=d", "c=c"]
    );
    assert_eq!(
        keys(scan_all(&engine, b"", b"", 2, true, 0)),
        vec!["d=d", "c=c2", "a=a"]
    );
    assert_eq!(
        keys(scan_all(&engine, b"a", b"c", 1, true, 0)),
        vec!["b=b", "a=a"]
    );
    assert!(scan_all(&engine, b"d", b"a", 2, false, 0).is_empty());
    assert!(scan_all(&engine, b"x", b"", 2, true, 0).is_empty());
}

#[test]
fn write_stalls_wait_for_background_work() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EngineOptions {
        max_immutable_memtables: 1,
        l0_slowdown_writes: 2,
        l0_stop_writes: 3,
        ..small_options(true)
    };
    let engine = open(dir.path(), opts);
    for v in 1..=600u64 {
        engine
            .apply(v, &put(&format!("k{:04}", v), &"x".repeat(100)))
            .unwrap();
    }
    let stats = engine.stats();
    assert!(stats.flushes > 0, "{stats:?}");
    assert!(stats.write_stops + stats.write_slowdowns > 0, "{stats:?}");
    assert!(stats.l0_files < opts.l0_stop_writes + 1, "{stats:?}");
    for v in (1..=600u64).step_by(37) {
        assert!(
            engine
                .get(format!("k{v:04}").as_bytes(), 600)
                .unwrap()
                .is_some()
        );
    }
    engine.close().unwrap();
}

#[test]
fn engine_and_scans_can_cross_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send + 'static>() {}
    assert_send_sync::<Engine>();
    assert_send::<crate::engine::ScanIterator>();
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), small_options(false));
    engine.apply(1, &put("a", "1")).unwrap();
    let scan = engine
        .scan(ScanOptions {
            read_version: 1,
            ..ScanOptions::default()
        })
        .unwrap();
    engine.apply(2, &put("b", "2")).unwrap();
    let pairs: Vec<_> = std::thread::spawn(move || scan.map(Result::unwrap).collect::<Vec<_>>())
        .join()
        .unwrap();
    assert_eq!(pairs, vec![(Bytes::from("a"), Bytes::from("1"))]);
}

#[test]
fn long_scans_cross_result_batches_and_respect_limits() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), small_options(false));
    let mut batch = WriteBatch::new();
    for i in 0..3000u32 {
        // Values of varying size, some larger than a whole result batch.
        let size = if i % 997 == 0 {
            40_000
        } else {
            (i % 50) as usize
        };
        batch.put(format!("k{i:05}"), vec![(i % 251) as u8; size]);
    }
    engine.apply(1, &batch).unwrap();
    let expected: Vec<(Vec<u8>, Vec<u8>)> = (0..3000u32)
        .map(|i| {
            let size = if i % 997 == 0 {
                40_000
            } else {
                (i % 50) as usize
            };
            (format!("k{i:05}").into_bytes(), vec![(i % 251) as u8; size])
        })
        .collect();
    assert_eq!(scan_all(&engine, b"", b"", 1, false, 0), expected);
    let mut reversed = expected.clone();
    reversed.reverse();
    assert_eq!(scan_all(&engine, b"", b"", 1, true, 0), reversed);
    for limit in [1, 15, 16, 17, 1039, 2500] {
        assert_eq!(
            scan_all(&engine, b"", b"", 1, false, limit),
            expected[..limit]
        );
        assert_eq!(
            scan_all(&engine, b"", b"", 1, true, limit),
            reversed[..limit]
        );
    }
    // Results stay valid after the scan that produced them is dropped.
    let held: Vec<_> = engine
        .scan(ScanOptions {
            begin: Bytes::from_static(b"k01000"),
            end: Bytes::new(),
            read_version: 1,
            reverse: false,
            limit: 3,
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(held.len(), 3);
    assert_eq!(held[2].0.as_ref(), b"k01002");
}

#[test]
fn unsynced_applies_are_visible_at_once_and_durable_after_one_sync() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = open(dir.path(), small_options(false));
        engine
            .apply(1, &{
                let mut b = WriteBatch::new();
                b.put("k", "v1");
                b
            })
            .unwrap();
        for v in 2..=20u64 {
            let mut b = WriteBatch::new();
            b.put("k", format!("v{v}"));
            b.put(format!("key{v}"), "x");
            engine.apply_unsynced(v, &b).unwrap();
        }
        assert_eq!(engine.get(b"k", 20).unwrap().as_deref(), Some(&b"v20"[..]));
        assert_eq!(engine.last_applied_version(), 20);
        assert_eq!(
            engine.durable_version(),
            1,
            "unsynced versions are not durable yet"
        );
        assert_eq!(engine.sync().unwrap(), 20);
        assert_eq!(engine.durable_version(), 20);
        // Dropped without close: a crash after the sync.
    }
    let engine = open(dir.path(), small_options(false));
    assert_eq!(engine.last_applied_version(), 20);
    assert_eq!(engine.get(b"k", 20).unwrap().as_deref(), Some(&b"v20"[..]));
    assert_eq!(engine.get(b"k", 5).unwrap().as_deref(), Some(&b"v5"[..]));
    assert!(
        engine.apply_unsynced(20, &WriteBatch::new()).is_err(),
        "versions must increase"
    );
}

#[test]
fn counters_account_flushed_and_compacted_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), small_options(false));
    let mut user_bytes = 0u64;
    for v in 1..=200u64 {
        let (key, value) = (format!("k{:03}", v * 7 % 101), format!("value-{v}"));
        user_bytes += (key.len() + value.len()) as u64;
        engine.apply(v, &put(&key, &value)).unwrap();
    }
    engine.flush().unwrap();
    let stats = engine.stats();
    assert!(stats.flushes > 1);
    assert_eq!(
        stats.flush_bytes, stats.total_sst_bytes,
        "every table came from a flush"
    );
    assert_eq!((stats.compactions, stats.compaction_write_bytes), (0, 0));
    engine.compact().unwrap();
    let stats = engine.stats();
    assert!(stats.compactions > 0);
    assert!(
        stats.compaction_read_bytes >= stats.flush_bytes,
        "level 0 was read"
    );
    assert!(stats.compaction_write_bytes > 0);
    assert!(stats.write_amplification(user_bytes) > 1.0);
}

#[test]
fn memory_counters_follow_the_open_tables_and_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), small_options(false));
    let empty = engine.stats();
    assert_eq!((empty.table_memory_bytes, empty.block_cache_bytes), (0, 0));
    for v in 1..=200u64 {
        engine
            .apply(v, &put(&format!("k{:03}", v % 101), &format!("value-{v}")))
            .unwrap();
    }
    engine.flush().unwrap();
    let state = engine.inner.current();
    let tables: Vec<_> = state.levels.iter().flatten().collect();
    assert!(!tables.is_empty());
    let stats = engine.stats();
    assert_eq!(
        stats.table_memory_bytes,
        tables.iter().map(|t| t.memory_bytes()).sum::<usize>()
    );
    // At least the bloom filters: 10 bits per distinct key of every table.
    let keys: u64 = tables
        .iter()
        .map(|t| t.properties().distinct_key_count)
        .sum();
    assert!(
        stats.table_memory_bytes as u64 >= keys * 10 / 8,
        "{stats:?}"
    );
    assert_eq!(stats.block_cache_bytes, 0, "nothing read yet");
    assert!(engine.get(b"k050", 200).unwrap().is_some());
    assert!(engine.stats().block_cache_bytes > 0);
    drop(state);
    // Compacted into fewer, deduplicated tables: less index and filter to hold.
    engine.set_gc_horizon(200);
    engine.compact().unwrap();
    assert!(engine.stats().table_memory_bytes < stats.table_memory_bytes);
}

#[test]
fn a_flush_keeps_only_the_newest_version_at_or_below_the_gc_horizon() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(
        dir.path(),
        EngineOptions {
            memtable_bytes: 1 << 20,
            ..small_options(false)
        },
    );
    // Versions 1..=40 of "a" and "b"; "b" deleted at 35; "c" written once, at 2.
    for v in 1..=40u64 {
        let mut batch = WriteBatch::new();
        batch.put("a", format!("a{v}"));
        if v == 35 {
            batch.delete("b");
        } else if v < 35 {
            batch.put("b", format!("b{v}"));
        }
        if v == 2 {
            batch.put("c", "c2");
        }
        engine.apply(v, &batch).unwrap();
    }
    engine.set_gc_horizon(30);
    engine.flush().unwrap();
    let state = engine.inner.current();
    let props = state.levels[0][0].properties();
    // a: 31..=40 and 30; b: 31..=34 and 30 (35 is above the horizon: its tombstone stays);
    // c: 2. Versions 1..=29 of a and b are gone.
    assert_eq!(props.entry_count, 11 + 6 + 1, "{props:?}");
    assert_eq!(props.tombstone_count, 1);
    for v in 30..=40u64 {
        assert_eq!(engine.get(b"a", v).unwrap().unwrap(), format!("a{v}"));
        let b = engine.get(b"b", v).unwrap();
        if v < 35 {
            assert_eq!(b.unwrap(), format!("b{v}"));
        } else {
            assert!(b.is_none());
        }
        assert_eq!(engine.get(b"c", v).unwrap().unwrap(), "c2");
    }
    assert!(matches!(
        engine.get(b"a", 29),
        Err(Error::TransactionTooOld { .. })
    ));
    // The horizon the table was cut at survives a restart: reads below it stay refused.
    drop(state);
    engine.close().unwrap();
    let engine = open(dir.path(), small_options(false));
    assert!(engine.gc_horizon() >= 30);
    assert!(engine.get(b"a", 29).is_err());
    assert_eq!(engine.get(b"a", 30).unwrap().unwrap(), "a30");
}
