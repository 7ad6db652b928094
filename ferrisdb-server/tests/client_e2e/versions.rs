//! Versions through the client: reads at old read versions, the MVCC window
//! (`TransactionTooOld`), versions the cluster has not reached (`FutureVersion`), commits whose
//! reads are stale (`NotCommitted`), and watches firing after another transaction's commit.

use std::time::Duration;

use ferrisdb_client::{DatabaseOptions, Error, Version};

use super::{cluster, key};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_read_versions_see_old_data_until_the_mvcc_window_passes() {
    let (_cluster, db) = cluster(2).await;
    let k = key(0x70, "history");
    let mut versions = Vec::new();
    for i in 0..3u32 {
        let tx = db.create_transaction();
        tx.set(&k, format!("v{i}")).unwrap();
        tx.commit().await.unwrap();
        versions.push(tx.committed_version().expect("commit version"));
    }
    for (i, v) in versions.iter().enumerate() {
        let tx = db.create_transaction();
        tx.set_read_version(*v);
        assert_eq!(
            tx.get(&k).await.unwrap().as_deref(),
            Some(format!("v{i}").as_bytes())
        );
        let all = tx
            .get_range(b"", b"", Default::default())
            .collect_vec()
            .await
            .unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].value, format!("v{i}"));
    }
    let before = db.create_transaction();
    before.set_read_version(Version(versions[0].get() - 1));
    assert_eq!(before.get(&k).await.unwrap(), None);

    // A version no one has committed yet: the storage server waits, then gives up.
    let future = db.create_transaction();
    let now = future.get_read_version().await.unwrap();
    future.set_read_version(Version(now.get() + 1_000 * Version::PER_SECOND));
    match future.get(&k).await {
        Err(Error::FutureVersion { .. }) => {}
        other => panic!("expected FutureVersion, got {other:?}"),
    }

    // Past the MVCC window (5 s of versions), and once the storage server has applied newer
    // versions of the key, the old version is gone for reads and for commits.
    let old = versions[0];
    tokio::time::sleep(Duration::from_millis(5_500)).await;
    db.run(|tx| {
        let k = k.clone();
        async move { tx.set(&k, "latest") }
    })
    .await
    .unwrap();
    // The storage server moves its GC horizon every 500 ms: retry until it has.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let tx = db.create_transaction();
        tx.set_read_version(old);
        match tx.get(&k).await {
            Err(Error::TransactionTooOld { read_version, .. }) => {
                assert_eq!(read_version, old.get());
                break;
            }
            Ok(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("expected TransactionTooOld, got {other:?}"),
        }
    }
    // The retry loop gets a fresh read version after TransactionTooOld.
    let attempts = std::sync::atomic::AtomicU32::new(0);
    let latest = db
        .run(|tx| {
            let k = k.clone();
            if attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0 {
                tx.set_read_version(old);
            }
            async move { tx.get(&k).await }
        })
        .await
        .unwrap();
    assert_eq!(latest.as_deref(), Some(&b"latest"[..]));
    assert_eq!(attempts.into_inner(), 2);
    let stale = db.create_transaction();
    stale.set_read_version(old);
    stale
        .add_read_conflict_range(&k, key(0x70, "history\0"))
        .unwrap();
    stale.set(key(0x71, "x"), "y").unwrap();
    match stale.commit().await {
        Err(Error::TransactionTooOld { .. }) => {}
        other => panic!("expected TransactionTooOld from the coordinator, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_reads_were_overwritten_is_not_committed() {
    let (_cluster, db) = cluster(1).await;
    let (k, out) = (key(0x30, "read-me"), key(0xb0, "derived"));
    db.run(|tx| {
        let k = k.clone();
        async move { tx.set(&k, "1") }
    })
    .await
    .unwrap();

    // Read, then someone else writes the key, then commit a write derived from the read.
    let tx = db.create_transaction();
    assert_eq!(tx.get(&k).await.unwrap().as_deref(), Some(&b"1"[..]));
    let rv = tx.get_read_version().await.unwrap();
    db.run(|other| {
        let k = k.clone();
        async move { other.set(&k, "2") }
    })
    .await
    .unwrap();
    tx.set(&out, "from 1").unwrap();
    assert!(matches!(tx.commit().await, Err(Error::NotCommitted)));

    // The same with an explicitly chosen (older) read version.
    let pinned = db.create_transaction();
    pinned.set_read_version(rv);
    assert_eq!(pinned.get(&k).await.unwrap().as_deref(), Some(&b"1"[..]));
    pinned.set(&out, "from 1 again").unwrap();
    assert!(matches!(pinned.commit().await, Err(Error::NotCommitted)));

    // A snapshot read adds no conflict: the same pattern commits.
    let snap = db.create_transaction();
    snap.set_read_version(rv);
    assert_eq!(
        snap.snapshot().get(&k).await.unwrap().as_deref(),
        Some(&b"1"[..])
    );
    snap.set(&out, "snapshot").unwrap();
    snap.commit().await.unwrap();

    // The retry loop turns the conflict into a retry that reads the new value.
    let attempts = std::sync::atomic::AtomicU32::new(0);
    let seen = db
        .run(|tx| {
            let (k, out) = (k.clone(), out.clone());
            let attempt = attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async move {
                if attempt == 0 {
                    tx.set_read_version(rv);
                }
                let v = tx.get(&k).await?;
                tx.set(&out, v.clone().unwrap_or_default())?;
                Ok(v)
            }
        })
        .await
        .unwrap();
    assert_eq!(seen.as_deref(), Some(&b"2"[..]));
    assert_eq!(attempts.into_inner(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_fire_after_another_transaction_commits() {
    let (_cluster, db) = cluster(2).await;
    let db = db.with_options(DatabaseOptions {
        watch_poll_max: Duration::from_millis(50),
        watch_timeout: Duration::from_secs(15),
        ..DatabaseOptions::default()
    });
    let (k, missing) = (key(0xd0, "watched"), key(0x05, "born"));
    db.run(|tx| {
        let k = k.clone();
        async move { tx.set(&k, "a") }
    })
    .await
    .unwrap();

    let tx = db.create_transaction();
    let changed = tokio::spawn(tx.watch(&k).await.unwrap());
    let created = tokio::spawn(tx.watch(&missing).await.unwrap());
    // Setting the same value is no change.
    db.run(|tx| {
        let k = k.clone();
        async move { tx.set(&k, "a") }
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !changed.is_finished() && !created.is_finished(),
        "nothing changed yet"
    );
    db.run(|tx| {
        let (k, missing) = (k.clone(), missing.clone());
        async move {
            tx.set(&k, "b")?;
            tx.set(&missing, "here")
        }
    })
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(10), changed)
        .await
        .expect("the watch fires")
        .expect("watch task")
        .expect("watch result");
    tokio::time::timeout(Duration::from_secs(10), created)
        .await
        .expect("the watch on a new key fires")
        .expect("watch task")
        .expect("watch result");

    // A watch on an untouched key ends with TimedOut after the watch timeout.
    let quick = db.with_options(DatabaseOptions {
        watch_poll_max: Duration::from_millis(50),
        watch_timeout: Duration::from_millis(300),
        ..DatabaseOptions::default()
    });
    let idle = quick.create_transaction().watch(&k).await.unwrap();
    assert!(matches!(idle.await, Err(Error::TimedOut(_))));
}
