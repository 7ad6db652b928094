//! One writer and three readers with background flush and compaction running.

use std::sync::atomic::{AtomicBool, Ordering};

use super::*;
use crate::engine::WriteBatch;

/// Value of key `k` at version `v` in this test's write pattern: the writer at version `v`
/// writes keys `v % 50` and `(v * 7) % 50`, and deletes key `(v * 3) % 50` when `v % 5 == 0`.
fn expected(k: u64, v: u64) -> Option<Vec<u8>> {
    (1..=v).rev().find_map(|w| {
        if w % 5 == 0 && (w * 3) % 50 == k && w % 50 != k && (w * 7) % 50 != k {
            Some(None)
        } else if w % 50 == k || (w * 7) % 50 == k {
            Some(Some(format!("{k}@{w}").into_bytes()))
        } else {
            None
        }
    })?
}

fn key(k: u64) -> Vec<u8> {
    format!("key{k:02}").into_bytes()
}

#[test]
fn readers_see_exactly_what_the_writer_applied() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), small_options(true));
    let done = AtomicBool::new(false);
    const LAST: u64 = 1500;
    std::thread::scope(|s| {
        s.spawn(|| {
            for v in 1..=LAST {
                let mut batch = WriteBatch::new();
                if v % 5 == 0 {
                    batch.delete(key((v * 3) % 50));
                }
                for k in [v % 50, (v * 7) % 50] {
                    batch.put(key(k), format!("{k}@{v}"));
                }
                engine.apply(v, &batch).unwrap();
            }
            done.store(true, Ordering::SeqCst);
        });
        for reader in 0..3u64 {
            let engine = &engine;
            let done = &done;
            s.spawn(move || {
                let mut checks = 0;
                while !done.load(Ordering::SeqCst) || checks < 20 {
                    let v = engine.last_applied_version();
                    if v == 0 {
                        continue;
                    }
                    let k = (v + reader * 13) % 50;
                    let got = engine.get(&key(k), v).unwrap().map(|b| b.to_vec());
                    assert_eq!(got, expected(k, v), "key {k} at {v}");
                    if checks % 10 == 0 {
                        let pairs = scan_all(engine, b"", b"", v, reader == 1, 0);
                        let want: Vec<_> = (0..50u64)
                            .filter_map(|k| expected(k, v).map(|val| (key(k), val)))
                            .collect();
                        let mut want = want;
                        if reader == 1 {
                            want.reverse();
                        }
                        assert_eq!(pairs, want, "scan at {v}");
                    }
                    checks += 1;
                }
            });
        }
    });
    let stats = engine.stats();
    assert!(stats.flushes > 0 && stats.compactions > 0, "{stats:?}");
    engine.close().unwrap();
}
