//! The log servers' retention budget in a real cluster (`TestCluster`, log servers started
//! with `--retention-budget-mib 1`): a storage server gone for good does not make the log grow
//! without bound, nothing acknowledged is lost (every shard keeps a replica past what the log
//! drops), and the server, back with its old data, says it is stranded and serves no stale
//! read.

mod common;

use std::time::{Duration, Instant};

use common::cluster::TestCluster;
use ferrisdb_client::Database;
use ferrisdb_proto::v1;

/// The log servers' retention budget in the test, in bytes (`--retention-budget-mib 1`).
const BUDGET: u64 = 1 << 20;
/// Bytes written while a storage server is down: several budgets' worth.
const WRITTEN: usize = 4 * BUDGET as usize;
const VALUE_BYTES: usize = 8 * 1024;

fn db(cluster: &TestCluster) -> Database {
    Database::connect_all(cluster.controller_addresses().split(',').map(String::from))
        .expect("client")
}

fn value(i: usize) -> Vec<u8> {
    let mut v = format!("{i:06}").into_bytes();
    v.resize(VALUE_BYTES, b'.');
    v
}

/// The generation's log servers' retained bytes, from their heartbeats.
async fn generation_log_bytes(cluster: &TestCluster) -> Vec<u64> {
    let state = cluster.state().await.expect("state");
    let logs: Vec<String> = state
        .generation
        .iter()
        .flat_map(|g| g.logs.iter().map(|l| l.log_id.clone()))
        .collect();
    state
        .workers
        .iter()
        .filter(|w| logs.contains(&w.worker_id))
        .filter_map(
            |w| match w.status.as_ref().and_then(|s| s.status.as_ref()) {
                Some(v1::worker_status::Status::Log(l)) => Some(l.retained_bytes),
                _ => None,
            },
        )
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_server_gone_for_good_does_not_hold_the_log_past_its_budget() {
    let mut cluster =
        TestCluster::start_with_log_args(3, 2, &["--retention-budget-mib", "1"]).await;
    let db = db(&cluster);
    db.run(|tx| async move { tx.set("before", "1") })
        .await
        .expect("first write");
    // Storage server 0 is lost (its disk kept, to bring it back later).
    cluster.storage[0].kill();
    let keys = WRITTEN / VALUE_BYTES;
    for i in 0..keys {
        db.run(|tx| async move { tx.set(format!("k{i:06}"), value(i)) })
            .await
            .unwrap_or_else(|e| panic!("write {i}: {e}"));
    }
    // The log holds what every storage server lacks only up to its budget (plus what
    // arrives before the next truncation).
    let deadline = Instant::now() + Duration::from_secs(30);
    let held = loop {
        let held = generation_log_bytes(&cluster).await;
        if !held.is_empty() && held.iter().all(|b| *b <= 2 * BUDGET) {
            break held;
        }
        assert!(
            Instant::now() < deadline,
            "the log servers still hold {held:?} bytes (budget {BUDGET})\n{}",
            cluster.all_logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("log servers hold {held:?} bytes after {WRITTEN} written (budget {BUDGET})");
    let logs = cluster.all_logs();
    assert!(
        logs.contains("over its retention budget"),
        "a log server says why it dropped versions"
    );

    // Every acknowledged write is there: each shard kept a replica past what was dropped.
    let check_all = || async {
        for i in 0..keys {
            let got = db
                .run(|tx| async move { tx.get(format!("k{i:06}")).await })
                .await
                .unwrap_or_else(|e| panic!("read {i}: {e}"));
            assert_eq!(got.as_deref(), Some(value(i).as_slice()), "key {i}");
        }
    };
    check_all().await;

    // The lost server comes back with its old data: it cannot catch up from the log, says
    // so, and its stale data is never served (reads go to the other replicas).
    cluster.storage[0].start();
    let id_addr = cluster.storage[0].addr.to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    let reason = loop {
        let state = cluster.state().await.expect("state");
        let reason = state
            .workers
            .iter()
            .find(|w| w.address == id_addr)
            .map(|w| w.unhealthy_reason.clone())
            .unwrap_or_default();
        if reason.contains("re-replicated") {
            break reason;
        }
        assert!(
            Instant::now() < deadline,
            "the returned server never said it is stranded ({reason:?})\n{}",
            cluster.storage[0].logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(reason.contains("retention budget"), "{reason}");
    check_all().await;
}
