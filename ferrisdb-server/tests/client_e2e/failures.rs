//! The client under process failures: a storage replica SIGKILLed (replication 2) and the
//! coordinator SIGKILLed and restarted while retry loops are running.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use ferrisdb_client::RangeOptions;
use ferrisdb_proto::v1;

use super::common::cluster::storage_client;
use super::{as_i64, cluster, key, model_range, read_range};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_keeps_working_while_a_storage_replica_is_down() {
    let (mut cluster, db) = cluster(2).await;
    let keys: Vec<Bytes> = (0..12u8).map(|i| key(i * 21, &format!("rep{i}"))).collect();
    let mut model = BTreeMap::new();
    let write = |round: u32| {
        let keys = keys.clone();
        let db = db.clone();
        async move {
            db.run(|tx| {
                let keys = keys.clone();
                async move {
                    for k in &keys {
                        tx.set(k, format!("round{round}"))?;
                    }
                    Ok(())
                }
            })
            .await
            .expect("commit")
        }
    };
    write(0).await;
    // Reads work before the kill (and warm the client's connections to every replica).
    assert_eq!(
        read_range(&db, b"", b"", RangeOptions::default())
            .await
            .len(),
        keys.len()
    );

    cluster.storage[0].kill();
    for round in 1..=5 {
        write(round).await;
        for k in &keys {
            model.insert(k.clone(), Bytes::from(format!("round{round}")));
        }
        for reverse in [false, true] {
            let options = RangeOptions {
                reverse,
                ..RangeOptions::default().batch_size(4)
            };
            assert_eq!(
                read_range(&db, b"", b"", options).await,
                model_range(&model, b"", b"", options),
                "round {round} with storage 0 down"
            );
        }
        for k in &keys {
            let got = db
                .run(|tx| {
                    let k = k.clone();
                    async move { tx.get(&k).await }
                })
                .await
                .expect("point read");
            assert_eq!(got, model.get(k).cloned());
        }
    }

    // After a restart the server catches up with what it missed, and serves it itself.
    cluster.storage[0].start();
    let latest = db.create_transaction().get_read_version().await.unwrap();
    let restarted = cluster.storage[0].addr.to_string();
    let mut held = 0;
    for k in &keys {
        if !cluster.replicas_of(k).await.contains(&restarted) {
            continue;
        }
        held += 1;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let req = v1::StorageGetRequest {
                key: k.clone(),
                version: latest.get(),
                newest: false,
            };
            match storage_client(&restarted).get(req).await {
                Ok(r) => {
                    let r = r.into_inner();
                    assert!(r.found, "{k:?} missing on the restarted server");
                    assert_eq!(r.value, "round5", "{k:?} on the restarted server");
                    break;
                }
                Err(e) => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "restarted server never caught up: {e}\n{}",
                        cluster.all_logs()
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    assert!(held > 0, "storage 0 holds some of the keys");
    write(6).await;
    assert_eq!(
        read_range(&db, b"", b"", RangeOptions::default())
            .await
            .iter()
            .filter(|(_, v)| v == "round6")
            .count(),
        keys.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_loops_survive_a_coordinator_restart_without_losing_acknowledged_writes() {
    let (mut cluster, db) = cluster(2).await;
    let counter = key(0x60, "counter");
    let finished = Arc::new(AtomicU32::new(0));
    let retries = Arc::new(AtomicU32::new(0));
    const TASKS: u32 = 4;
    const PER_TASK: u32 = 15;

    // Each transaction bumps a shared counter once and records its own marker key. A retry
    // after an unknown result finds its marker and does nothing, so the counter must end up
    // equal to the number of markers: exactly once, despite commit_unknown_result.
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (db, counter) = (db.clone(), counter.clone());
        let (retries, finished) = (retries.clone(), finished.clone());
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for n in 0..PER_TASK {
                let marker = key((t * 60 + n) as u8, &format!("marker/{t}/{n}"));
                let attempts = AtomicU32::new(0);
                db.run(|tx| {
                    if attempts.fetch_add(1, Ordering::Relaxed) > 0 {
                        retries.fetch_add(1, Ordering::Relaxed);
                    }
                    let (marker, counter) = (marker.clone(), counter.clone());
                    async move {
                        if tx.get(&marker).await?.is_some() {
                            return Ok(());
                        }
                        let c = as_i64(tx.get(&counter).await?);
                        tx.set(&counter, (c + 1).to_le_bytes())?;
                        tx.set(&marker, "done")
                    }
                })
                .await
                .unwrap_or_else(|e| panic!("task {t} transaction {n}: {e}"));
                acked.push(marker);
                finished.fetch_add(1, Ordering::Relaxed);
            }
            acked
        }));
    }

    // Kill the coordinator while the loops run, twice: once some transactions are done.
    let mut killed_at = Vec::new();
    for threshold in [5, 25] {
        while finished.load(Ordering::Relaxed) < threshold {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        killed_at.push(finished.load(Ordering::Relaxed));
        cluster.coordinator.kill();
        tokio::time::sleep(Duration::from_millis(200)).await;
        cluster.coordinator.start();
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.expect("task"));
    }

    let (count, markers) = db
        .run(|tx| {
            let counter = counter.clone();
            async move {
                let c = as_i64(tx.get(&counter).await?);
                let all = tx
                    .get_range(b"", b"", RangeOptions::default())
                    .collect_vec()
                    .await?;
                Ok((c, all))
            }
        })
        .await
        .expect("final read");
    for m in &acked {
        assert!(
            markers.iter().any(|kv| kv.key == m),
            "acknowledged marker {m:?} missing\n{}",
            cluster.all_logs()
        );
    }
    let marker_count = markers.iter().filter(|kv| kv.value == "done").count();
    assert_eq!(marker_count, (TASKS * PER_TASK) as usize);
    assert_eq!(
        count, marker_count as i64,
        "each transaction counted exactly once"
    );
    eprintln!(
        "coordinator killed after {killed_at:?} of {} transactions; {} retries",
        TASKS * PER_TASK,
        retries.load(Ordering::Relaxed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_cut_off_by_a_coordinator_crash_is_reported_unknown_then_retried() {
    let (mut cluster, db) = cluster(1).await;
    let k = key(0x42, "unknown");
    let tx = db.create_transaction();
    tx.get_read_version().await.unwrap();
    tx.set(&k, "v").unwrap();
    // The commit reaches a frozen coordinator, which then dies without answering.
    let frozen = cluster.coordinator.process.as_ref().expect("running");
    frozen.pause();
    let commit = tokio::spawn({
        let tx = tx.clone();
        async move { tx.commit().await }
    });
    // The commit's bytes sit unread in the frozen coordinator's socket: it was sent.
    wait_for_unread_bytes(cluster.coordinator.addr.port()).await;
    assert!(!commit.is_finished(), "a frozen coordinator cannot answer");
    cluster.coordinator.kill();
    let err = commit.await.expect("commit task").unwrap_err();
    assert!(
        err.is_commit_unknown(),
        "expected CommitUnknownResult, got {err}"
    );
    // The manual retry loop: on_error accepts it, and the retry commits once the
    // coordinator is back.
    cluster.coordinator.start();
    tx.on_error(err)
        .await
        .expect("commit_unknown_result is retryable");
    loop {
        let attempt = async {
            tx.set(&k, "v")?;
            tx.commit().await
        };
        match attempt.await {
            Ok(()) => break,
            Err(e) => tx.on_error(e).await.expect("retryable while recovering"),
        }
    }
    let got = db
        .run(|tx| {
            let k = k.clone();
            async move { tx.get(&k).await }
        })
        .await
        .unwrap();
    assert_eq!(got.as_deref(), Some(&b"v"[..]));
}

/// Waits until a connection accepted on local port `port` holds bytes its process has not
/// read (the receive queue of `/proc/net/tcp`): what a client sent to a paused server.
async fn wait_for_unread_bytes(port: u16) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let tables = ["/proc/net/tcp", "/proc/net/tcp6"]
            .map(|t| std::fs::read_to_string(t).unwrap_or_default());
        let unread = tables.iter().flat_map(|t| t.lines().skip(1)).any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields
                .get(1)
                .and_then(|a| a.rsplit_once(':'))
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            let rx_queue = fields
                .get(4)
                .and_then(|q| q.split_once(':'))
                .and_then(|(_, rx)| u64::from_str_radix(rx, 16).ok());
            // State 01 is ESTABLISHED.
            local_port == Some(port) && fields.get(3) == Some(&"01") && rx_queue > Some(0)
        });
        if unread {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no unread bytes reached port {port}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
