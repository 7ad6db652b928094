//! Serializability and read semantics through the client: bank transfers under contention with
//! concurrent audits, write skew, read-your-writes, snapshot reads at the read version, range
//! reads and range clears across shard boundaries.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use bytes::Bytes;
use ferrisdb_client::{Error, RangeOptions, Transaction};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Barrier;

use super::{as_i64, cluster, key, model_range, pairs, read_range};

const ACCOUNTS: u8 = 10;
const START: i64 = 100;

/// Account `i`: first bytes spread over all three shards.
fn account(i: u8) -> Bytes {
    key(i * 25, &format!("acct/{i}"))
}

/// Every balance, read in one transaction: by point reads or by one range read over the whole
/// key space (which crosses both shard boundaries).
async fn balances(tx: &Transaction, by_range: bool) -> ferrisdb_client::Result<Vec<i64>> {
    if by_range {
        let all = pairs(tx, b"", b"", RangeOptions::default().batch_size(3)).await?;
        return Ok(all.into_iter().map(|(_, v)| as_i64(Some(v))).collect());
    }
    let mut out = Vec::new();
    for i in 0..ACCOUNTS {
        out.push(as_i64(tx.get(account(i)).await?));
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_bank_transfers_conserve_money_and_never_overdraw() {
    let (cluster, db) = cluster(2).await;
    db.run(|tx| async move {
        for i in 0..ACCOUNTS {
            tx.set(account(i), START.to_le_bytes())?;
        }
        Ok(())
    })
    .await
    .expect("initial balances");
    let expected = START * i64::from(ACCOUNTS);

    let done = Arc::new(AtomicBool::new(false));
    let retries = Arc::new(AtomicU32::new(0));
    let auditor = {
        let (db, done) = (db.clone(), done.clone());
        tokio::spawn(async move {
            let mut audits = 0u32;
            while !done.load(Ordering::Relaxed) || audits < 2 {
                let by_range = audits % 2 == 1;
                let seen = db
                    .run(|tx| async move { balances(&tx, by_range).await })
                    .await
                    .expect("audit");
                assert_eq!(seen.len(), usize::from(ACCOUNTS), "{seen:?}");
                assert_eq!(seen.iter().sum::<i64>(), expected, "audit saw {seen:?}");
                assert!(seen.iter().all(|b| *b >= 0), "overdrawn: {seen:?}");
                audits += 1;
            }
            audits
        })
    };

    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let (db, retries) = (db.clone(), retries.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(t);
            for _ in 0..25 {
                let from = rng.random_range(0..ACCOUNTS);
                let to = (from + rng.random_range(1..ACCOUNTS)) % ACCOUNTS;
                let amount: i64 = rng.random_range(1..=60);
                let attempts = AtomicU32::new(0);
                db.run(|tx| {
                    if attempts.fetch_add(1, Ordering::Relaxed) > 0 {
                        retries.fetch_add(1, Ordering::Relaxed);
                    }
                    async move {
                        let a = as_i64(tx.get(account(from)).await?);
                        let b = as_i64(tx.get(account(to)).await?);
                        if a >= amount {
                            tx.set(account(from), (a - amount).to_le_bytes())?;
                            tx.set(account(to), (b + amount).to_le_bytes())?;
                        }
                        Ok(())
                    }
                })
                .await
                .expect("transfer");
            }
        }));
    }
    for t in tasks {
        t.await.expect("transfer task");
    }
    done.store(true, Ordering::Relaxed);
    let audits = auditor.await.expect("auditor");
    let end = db
        .run(|tx| async move { balances(&tx, true).await })
        .await
        .expect("final balances");
    assert_eq!(end.iter().sum::<i64>(), expected, "{end:?}");
    assert!(end.iter().all(|b| *b >= 0), "{end:?}");
    eprintln!(
        "bank: {audits} audits, {} retried transfers, final {end:?}",
        retries.load(Ordering::Relaxed)
    );
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_skew_is_impossible() {
    let (_cluster, db) = cluster(1).await;
    // The two doctors live in different shards.
    let (x, y) = (key(0x10, "oncall/alice"), key(0xc0, "oncall/bob"));
    for round in 0..20 {
        db.run(|tx| {
            let (x, y) = (x.clone(), y.clone());
            async move {
                tx.set(&x, [1])?;
                tx.set(&y, [1])
            }
        })
        .await
        .expect("reset");
        // Both read before either commits, then each takes its own doctor off call.
        let barrier = Arc::new(Barrier::new(2));
        let mut attempts = Vec::new();
        for me in [x.clone(), y.clone()] {
            let (db, barrier, x, y) = (db.clone(), barrier.clone(), x.clone(), y.clone());
            attempts.push(tokio::spawn(async move {
                let tx = db.create_transaction();
                let on_call = tx.get(&x).await?.is_some_and(|v| v[..] == [1]) as u8
                    + tx.get(&y).await?.is_some_and(|v| v[..] == [1]) as u8;
                barrier.wait().await;
                if on_call == 2 {
                    tx.set(&me, [0])?;
                }
                tx.commit().await
            }));
        }
        let mut committed = 0;
        for a in attempts {
            match a.await.expect("doctor task") {
                Ok(()) => committed += 1,
                Err(Error::NotCommitted) => {}
                Err(e) => panic!("round {round}: unexpected {e}"),
            }
        }
        assert_eq!(committed, 1, "round {round}: exactly one goes off call");
        let on_call = db
            .run(|tx| {
                let (x, y) = (x.clone(), y.clone());
                async move {
                    let a = tx.get(&x).await?.map_or(0, |v| v[0]);
                    let b = tx.get(&y).await?.map_or(0, |v| v[0]);
                    Ok(a + b)
                }
            })
            .await
            .expect("check");
        assert_eq!(on_call, 1, "round {round}: someone must stay on call");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_see_own_writes_and_a_snapshot_at_the_read_version() {
    let (_cluster, db) = cluster(2).await;
    let (k, far) = (key(0x20, "ryw"), key(0xe0, "ryw"));
    db.run(|tx| {
        let k = k.clone();
        async move { tx.set(&k, "old") }
    })
    .await
    .expect("seed");

    // An open transaction pins its read version.
    let reader = db.create_transaction();
    assert_eq!(reader.get(&k).await.unwrap().as_deref(), Some(&b"old"[..]));

    let writer = db.create_transaction();
    writer.clear_range(key(0x20, "a"), key(0x20, "s")).unwrap();
    assert_eq!(writer.get(&k).await.unwrap(), None, "cleared locally");
    writer.set(&k, "new").unwrap();
    writer.set(&far, "far").unwrap();
    assert_eq!(writer.get(&k).await.unwrap().as_deref(), Some(&b"new"[..]));
    assert_eq!(
        writer.get(&far).await.unwrap().as_deref(),
        Some(&b"far"[..])
    );
    let seen = pairs(&writer, &[0x20], &[0xf0], RangeOptions::default())
        .await
        .unwrap();
    assert_eq!(
        seen,
        vec![(k.clone(), "new".into()), (far.clone(), "far".into())]
    );
    // Not visible to anyone else before the commit.
    let other = db.create_transaction();
    assert_eq!(other.get(&far).await.unwrap(), None);
    writer.commit().await.unwrap();
    let committed = writer.committed_version().expect("a commit version");
    assert!(committed > reader.get_read_version().await.unwrap());

    // The old reader still sees the old state, everywhere, including ranges.
    assert_eq!(reader.get(&k).await.unwrap().as_deref(), Some(&b"old"[..]));
    assert_eq!(reader.snapshot().get(&far).await.unwrap(), None);
    assert_eq!(
        pairs(&reader, b"", b"", RangeOptions::default())
            .await
            .unwrap(),
        vec![(k.clone(), "old".into())]
    );
    // A new transaction sees the commit.
    let fresh = db.create_transaction();
    assert!(fresh.get_read_version().await.unwrap() >= committed);
    assert_eq!(fresh.get(&k).await.unwrap().as_deref(), Some(&b"new"[..]));
    assert_eq!(fresh.get(&far).await.unwrap().as_deref(), Some(&b"far"[..]));
    // A read-only transaction commits without conflicts, even after reading stale data.
    reader.commit().await.unwrap();
    assert_eq!(reader.committed_version(), None);
}

/// Writes every pair of `model` in one transaction.
async fn write_all(db: &ferrisdb_client::Database, model: &BTreeMap<Bytes, Bytes>) {
    db.run(|tx| async move {
        for (k, v) in model {
            tx.set(k, v)?;
        }
        Ok(())
    })
    .await
    .expect("write the model");
}

/// 64 keys over the whole key space, a few per first byte, so every shard holds some.
fn spread_keys() -> BTreeMap<Bytes, Bytes> {
    (0..64u32)
        .map(|i| {
            let first = (i * 4) as u8;
            (
                key(first, &format!("r{i:02}")),
                Bytes::from(format!("v{i}")),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_reads_cross_shard_boundaries_both_ways_with_limits() {
    let (_cluster, db) = cluster(2).await;
    let model = spread_keys();
    write_all(&db, &model).await;

    let bounds: [(&[u8], &[u8]); 6] = [
        (b"", b""),
        (&[0x40], &[0xc0]),
        (&[0x55], &[0xaa]),
        (&[0x54, 0xff], &[0x55, 0x01]),
        (&[0x00], &[0x56]),
        (&[0xa9], b""),
    ];
    for (begin, end) in bounds {
        for reverse in [false, true] {
            for limit in [None, Some(1), Some(5), Some(17), Some(40)] {
                for batch in [2, 1000] {
                    let options = RangeOptions {
                        limit,
                        reverse,
                        ..RangeOptions::default().batch_size(batch)
                    };
                    let got = read_range(&db, begin, end, options).await;
                    let want = model_range(&model, begin, end, options);
                    assert_eq!(got, want, "[{begin:?}, {end:?}) {options:?}");
                }
            }
        }
    }

    // Local writes merged into a cross-shard read, both directions.
    let tx = db.create_transaction();
    let mut local = model.clone();
    for (k, v) in [(key(0x55, ""), "edge"), (key(0xaa, "x"), "edge2")] {
        tx.set(&k, v).unwrap();
        local.insert(k, Bytes::from(v));
    }
    tx.clear_range(key(0x50, ""), key(0x54, "")).unwrap();
    local.retain(|k, _| !(k.as_ref() >= &[0x50][..] && k.as_ref() < &[0x54][..]));
    for reverse in [false, true] {
        let options = RangeOptions {
            reverse,
            ..RangeOptions::default().batch_size(3).limit(9)
        };
        let got = pairs(&tx, &[0x48], &[0xb8], options).await.unwrap();
        assert_eq!(got, model_range(&local, &[0x48], &[0xb8], options));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_range_across_shards_removes_exactly_the_range() {
    let (_cluster, db) = cluster(2).await;
    let mut model = spread_keys();
    write_all(&db, &model).await;
    // [0x30, 0xc8) spans all three shards; the set inside it comes after the clear.
    db.run(|tx| async move {
        tx.clear_range([0x30], [0xc8])?;
        tx.set(key(0x80, "survivor"), "yes")
    })
    .await
    .expect("clear the range");
    model.retain(|k, _| !(k.as_ref() >= &[0x30][..] && k.as_ref() < &[0xc8][..]));
    model.insert(key(0x80, "survivor"), Bytes::from("yes"));
    for reverse in [false, true] {
        let options = RangeOptions {
            reverse,
            ..RangeOptions::default()
        };
        assert_eq!(
            read_range(&db, b"", b"", options).await,
            model_range(&model, b"", b"", options)
        );
    }
    let gone = db
        .run(|tx| async move { tx.get(key(0x60, "r24")).await })
        .await
        .unwrap();
    assert_eq!(gone, None);
    // Clearing to the end of the key space.
    db.run(|tx| async move { tx.clear_range([0x90], b"") })
        .await
        .unwrap();
    model.retain(|k, _| k.as_ref() < &[0x90][..]);
    assert_eq!(
        read_range(&db, b"", b"", RangeOptions::default()).await,
        model_range(&model, b"", b"", RangeOptions::default())
    );
}

/// A storage server answers a range's first 256 KiB on the client's range session and the
/// client reads the rest from just past the last key: past the longest key that is one byte
/// longer than any key, which the server must still take as a range's begin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_reads_continue_past_the_longest_keys() {
    let (_cluster, db) = cluster(1).await;
    let longest = |i: u8| {
        let mut k = vec![0x20, i];
        k.resize(ferrisdb_client::limits::MAX_KEY_BYTES, b'k');
        Bytes::from(k)
    };
    let model: BTreeMap<Bytes, Bytes> = (0..40u8)
        .map(|i| (longest(i), Bytes::from(format!("v{i}"))))
        .collect();
    write_all(&db, &model).await;
    for reverse in [false, true] {
        for limit in [None, Some(35)] {
            let options = RangeOptions {
                limit,
                reverse,
                ..RangeOptions::default()
            };
            let got = read_range(&db, &[0x20], &[0x21], options).await;
            assert_eq!(
                got,
                model_range(&model, &[0x20], &[0x21], options),
                "{options:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_near_the_size_limit_commits_and_reads_back() {
    let (cluster, db) = cluster(2).await;
    // 60 values of 100,000 bytes: about 6 MB in one commit, most of it in one shard.
    let value = |i: u8| Bytes::from(vec![i; ferrisdb_client::limits::MAX_VALUE_BYTES]);
    db.run(|tx| async move {
        for i in 0..60u8 {
            tx.set(key(0x10, &format!("big{i:02}")), value(i))?;
        }
        tx.set(key(0xf0, "small"), "after")
    })
    .await
    .expect("a 6 MB commit");
    let all = db
        .run(|tx| async move { pairs(&tx, b"", b"", RangeOptions::default()).await })
        .await
        .unwrap_or_else(|e| panic!("read back: {e}\n{}", cluster.all_logs()));
    assert_eq!(all.len(), 61);
    for (i, (_, v)) in all.iter().take(60).enumerate() {
        assert!(*v == value(i as u8), "value {i}");
    }
}
