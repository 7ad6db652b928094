//! Recovery of the transaction system in a real cluster (`TestCluster`: a controller, a
//! coordinator, three log servers with two per generation, storage servers), each process
//! killed the way a machine is lost:
//!
//! - the coordinator SIGKILLed and its data directory wiped, a new one started in its place;
//! - a log server of the generation SIGKILLed and wiped for good (the spare takes its place);
//! - the coordinator SIGSTOPped while a replacement takes over, then resumed: it commits
//!   nothing;
//! - the serving coordinator cut off from the controller group and the log servers (both
//!   ways) while its clients still reach it: a standby takes over, and the isolated one hands
//!   out no read version and commits nothing;
//! - the coordinator lost with its disk, then its replacement paused with a standby
//!   registered, while a KV client of the gateway writes: the gateway's address serves
//!   throughout, and its calls wait for each recovery instead of failing.
//!
//! Each checks that every acknowledged write is still there and that the cluster commits
//! again on its own. `recovery_times` (ignored; run it with `--ignored --nocapture`) repeats
//! the coordinator loss and prints how long the cluster took to commit again.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::cluster::{Node, TestCluster, channel};
use common::group::{read_all, write};
use ferrisdb_client::Database;
use ferrisdb_proto::v1;
use ferrisdb_proto::v1::kv_client::KvClient;
use ferrisdb_proto::v1::transaction_coordinator_client::TransactionCoordinatorClient;
use ferrisdb_proto::v1::transactions_client::TransactionsClient;

fn db(cluster: &TestCluster) -> Database {
    Database::connect_all(cluster.controller_addresses().split(',').map(String::from))
        .expect("client")
}

/// Writes `count` keys named `prefix-N`, returning them.
async fn write_keys(db: &Database, prefix: &str, count: usize) -> Vec<String> {
    let mut keys = Vec::new();
    for i in 0..count {
        let key = format!("{prefix}-{i:03}");
        write(db, &key).await;
        keys.push(key);
    }
    keys
}

/// Waits until the controller reports a generation newer than `than`; returns its state.
async fn new_generation(cluster: &TestCluster, than: u64) -> v1::GetClusterStateResponse {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(state) = cluster.state().await
            && state.epoch > than
            && matches!(
                state.recovery_state.as_str(),
                "accepting commits" | "fully recovered"
            )
        {
            return state;
        }
        assert!(
            Instant::now() < deadline,
            "no generation after {than}\n{}",
            cluster.all_logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A coordinator on a fresh data directory and port, as if on a new machine.
fn replacement_coordinator(cluster: &TestCluster, name: &str) -> Node {
    let addr = SocketAddr::from(([127, 0, 0, 1], common::free_port()));
    Node::with_args(
        env!("CARGO_BIN_EXE_ferrisdb-coordinator"),
        vec![
            "--listen".into(),
            addr.to_string(),
            "--data-dir".into(),
            cluster.dir.path().join(name).display().to_string(),
            "--controller".into(),
            cluster.controller_addresses(),
        ],
        addr,
        cluster.dir.path().join(format!("{name}.log")),
    )
}

/// Kills the coordinator, wipes its data directory and starts it again (a new worker id):
/// returns how long until a commit through the client succeeded again.
async fn lose_the_coordinator_disk(
    cluster: &mut TestCluster,
    db: &Database,
    key: &str,
) -> Duration {
    let data = cluster.coordinator.data_dir().expect("data dir");
    cluster.coordinator.kill();
    let lost = Instant::now();
    std::fs::remove_dir_all(&data).expect("wipe the coordinator");
    cluster.coordinator.start();
    write(db, key).await;
    lost.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_coordinators_disk_loses_no_acknowledged_write() {
    let mut cluster = TestCluster::start(3, 2).await;
    let db = db(&cluster);
    let mut keys = write_keys(&db, "before", 40).await;
    let epoch = cluster.state().await.expect("state").epoch;

    // Writers keep going while the coordinator is lost; each key they were told is
    // committed must survive.
    let writer = tokio::spawn({
        let db = db.clone();
        async move { write_keys(&db, "during", 60).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let took = lose_the_coordinator_disk(&mut cluster, &db, "after-loss").await;
    keys.extend(writer.await.expect("writer"));
    keys.push("after-loss".into());
    eprintln!("committed again {took:?} after the coordinator was lost");

    let state = new_generation(&cluster, epoch).await;
    let generation = state.generation.expect("a generation");
    assert_ne!(
        state.coordinator.expect("a coordinator").worker_id,
        "",
        "a coordinator serves"
    );
    assert!(generation.start_version >= generation.recovery_version + 5_000_000);
    keys.extend(write_keys(&db, "after", 10).await);
    read_all(&db, &keys).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_a_log_server_for_good_recovers_onto_the_spare() {
    let mut cluster = TestCluster::start(3, 2).await;
    let db = db(&cluster);
    let mut keys = write_keys(&db, "before", 40).await;
    let state = cluster.state().await.expect("state");
    let old = state.generation.expect("a generation");
    let victim = &old.logs[0];
    let index = cluster
        .logs
        .iter()
        .position(|n| n.addr.to_string() == victim.address)
        .expect("a log server of the cluster");
    let data = cluster.logs[index].data_dir().expect("data dir");
    cluster.logs[index].kill();
    std::fs::remove_dir_all(&data).expect("wipe the log server");

    keys.extend(write_keys(&db, "after", 40).await);
    let state = new_generation(&cluster, old.epoch).await;
    let generation = state.generation.expect("a generation");
    assert_eq!(generation.logs.len(), 2, "{generation:?}");
    assert!(
        generation.logs.iter().all(|l| l.log_id != victim.log_id),
        "the lost log server left the generation: {generation:?}"
    );
    assert!(generation.recovery_version > 0);
    read_all(&db, &keys).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_coordinator_commits_nothing_after_a_recovery_replaced_it() {
    let cluster = TestCluster::start(3, 2).await;
    let db = db(&cluster);
    let mut keys = write_keys(&db, "before", 20).await;
    let epoch = cluster.state().await.expect("state").epoch;
    let old_addr = cluster.coordinator.addr;
    let mut old = TransactionCoordinatorClient::new(channel(old_addr));
    let stale_rv = old
        .get_read_version(v1::GetReadVersionRequest::default())
        .await
        .expect("read version")
        .into_inner()
        .version;

    cluster
        .coordinator
        .process
        .as_ref()
        .expect("running")
        .pause();
    let mut replacement = replacement_coordinator(&cluster, "coordinator-b");
    replacement.start();
    let state = new_generation(&cluster, epoch).await;
    assert_eq!(
        state.coordinator.as_ref().map(|c| c.address.clone()),
        Some(replacement.addr.to_string()),
        "the replacement serves"
    );
    keys.extend(write_keys(&db, "after", 20).await);

    // The old coordinator wakes up: the first thing asked of it is a read version, which it
    // must not hand out (it would be older than the replacement's commits); and whatever it
    // tries, nothing of it commits.
    cluster
        .coordinator
        .process
        .as_ref()
        .expect("running")
        .resume();
    let err = old
        .get_read_version(v1::GetReadVersionRequest::default())
        .await
        .expect_err("a replaced coordinator hands out no read version, even right after resuming");
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    let zombie = zombie_commit(stale_rv);
    for _ in 0..5 {
        let answer = tokio::time::timeout(Duration::from_secs(10), old.commit(zombie.clone()))
            .await
            .expect("the old coordinator answers");
        assert!(
            answer.is_err(),
            "a replaced coordinator acknowledged a commit: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let err = old
        .get_read_version(v1::GetReadVersionRequest::default())
        .await
        .expect_err("a replaced coordinator hands out no read version");
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    let zombie_seen = db
        .run(|tx| async move { tx.get(b"zombie").await })
        .await
        .expect("read");
    assert_eq!(zombie_seen, None, "a fenced commit became visible");
    read_all(&db, &keys).await;
    drop(replacement);
}

/// What a KV client of the gateway saw while it put keys `prefix-N` one after another until
/// `stop`: the keys acknowledged, and every failed call's code and message.
async fn put_through_gateway(
    gateway: SocketAddr,
    prefix: &str,
    stop: tokio::sync::watch::Receiver<bool>,
) -> (Vec<String>, Vec<(tonic::Code, String)>) {
    let mut kv = KvClient::new(channel(gateway));
    let (mut acknowledged, mut failed) = (Vec::new(), Vec::new());
    for i in 0.. {
        if *stop.borrow() {
            break;
        }
        let key = format!("{prefix}-{i:04}");
        let put = v1::PutRequest {
            key: key.clone().into(),
            value: key.clone().into(),
        };
        match kv.put(put).await {
            Ok(_) => acknowledged.push(key),
            Err(e) => failed.push((e.code(), e.message().to_owned())),
        }
    }
    (acknowledged, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_keeps_its_address_and_serves_through_a_recovery() {
    let mut cluster = TestCluster::start(3, 2).await;
    let db = db(&cluster);
    let epoch = cluster.state().await.expect("state").epoch;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let writer = tokio::spawn(put_through_gateway(cluster.gateway.addr, "gw", stop));
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The coordinator is lost with its disk; a new one starts on a fresh port.
    let data = cluster.coordinator.data_dir().expect("data dir");
    cluster.coordinator.kill();
    std::fs::remove_dir_all(&data).expect("wipe the coordinator");
    let mut replacement = replacement_coordinator(&cluster, "coordinator-b");
    replacement.start();
    let state = new_generation(&cluster, epoch).await;
    assert_eq!(
        state.coordinator.as_ref().map(|c| c.address.clone()),
        Some(replacement.addr.to_string()),
        "the replacement serves"
    );
    // The writer goes on a while in the new generation, at the same gateway address.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Then that coordinator is paused (a machine that stops answering) with a standby
    // registered: calls waiting on the paused one end as soon as the standby serves.
    let mut standby = replacement_coordinator(&cluster, "coordinator-c");
    standby.start();
    wait_registered(&cluster, standby.addr).await;
    let epoch = state.epoch;
    replacement.process.as_ref().expect("running").pause();
    let state = new_generation(&cluster, epoch).await;
    assert_eq!(
        state.coordinator.as_ref().map(|c| c.address.clone()),
        Some(standby.addr.to_string()),
        "the standby serves"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_tx.send_replace(true);
    let (acknowledged, failed) = writer.await.expect("writer");
    eprintln!(
        "through the gateway: {} puts acknowledged, {} failed",
        acknowledged.len(),
        failed.len()
    );

    // Calls made during the recovery waited for it (within the KV call bound) instead of
    // failing; any that ran out of time failed with a retryable code, never a lost write.
    assert!(
        failed.iter().all(|(code, _)| matches!(
            code,
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
        )),
        "{failed:?}"
    );
    assert!(
        failed.is_empty(),
        "calls failed instead of riding through the recoveries: {failed:?}\n{}",
        cluster.all_logs()
    );
    assert!(acknowledged.len() > 20, "{} puts", acknowledged.len());
    read_all(&db, &acknowledged).await;
    // The interactive Transactions API answers at the same address too.
    let mut txns = TransactionsClient::new(channel(cluster.gateway.addr));
    let begun = txns
        .begin(v1::BeginRequest::default())
        .await
        .expect("Begin after the recovery")
        .into_inner();
    assert!(begun.read_version > state.generation.expect("generation").recovery_version);
    assert!(
        cluster.gateway_serving().await,
        "the gateway says it serves"
    );
    replacement.process.as_ref().expect("running").resume();
    drop(replacement);
    drop(standby);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_cut_off_from_the_cluster_but_not_its_clients_commits_nothing() {
    let mut cluster = TestCluster::start_group(3, 3, 2).await;
    cluster.add_coordinator().await;
    let db = db(&cluster);
    let mut keys = write_keys(&db, "before", 20).await;
    let state = cluster.state().await.expect("state");
    let isolated = cluster
        .serving_coordinator()
        .await
        .expect("a serving coordinator");
    let isolated_addr = cluster.coordinator_mut(isolated).addr;
    let mut old = TransactionCoordinatorClient::new(channel(isolated_addr));
    let stale_rv = old
        .get_read_version(v1::GetReadVersionRequest::default())
        .await
        .expect("read version")
        .into_inner()
        .version;

    // Cut it off from the controller group and the log servers, both ways; this test (its
    // clients) still reaches it.
    cluster.isolate_coordinator(isolated);
    let state = new_generation(&cluster, state.epoch).await;
    assert_ne!(
        state.coordinator.as_ref().map(|c| c.address.clone()),
        Some(isolated_addr.to_string()),
        "the standby serves"
    );
    keys.extend(write_keys(&db, "after", 20).await);

    // Still cut off and still running: it hands out no read version and commits nothing.
    let err = tokio::time::timeout(
        Duration::from_secs(10),
        old.get_read_version(v1::GetReadVersionRequest::default()),
    )
    .await
    .expect("the isolated coordinator answers")
    .expect_err("an isolated coordinator hands out no read version");
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    let zombie = zombie_commit(stale_rv);
    let answer = tokio::time::timeout(Duration::from_secs(10), old.commit(zombie))
        .await
        .expect("the isolated coordinator answers");
    assert!(
        answer.is_err(),
        "an isolated coordinator acknowledged a commit: {answer:?}"
    );

    cluster.heal_partitions();
    keys.extend(write_keys(&db, "healed", 10).await);
    let zombie_seen = db
        .run(|tx| async move { tx.get(b"zombie").await })
        .await
        .expect("read");
    assert_eq!(
        zombie_seen, None,
        "a commit of the isolated coordinator became visible"
    );
    read_all(&db, &keys).await;
}

/// A blind write of key `zombie`, at a read version from before a recovery.
fn zombie_commit(stale_rv: u64) -> v1::CommitRequest {
    v1::CommitRequest {
        read_version: stale_rv,
        mutations: vec![v1::Mutation {
            kind: Some(v1::mutation::Kind::Set(v1::mutation::Set {
                key: "zombie".into(),
                value: "x".into(),
            })),
        }],
        write_conflict_ranges: vec![v1::KeyRange {
            begin: "zombie".into(),
            end: "zombie\0".into(),
        }],
        ..Default::default()
    }
}

/// Waits until a worker at `addr` is registered with the controller.
async fn wait_registered(cluster: &TestCluster, addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = addr.to_string();
    loop {
        if let Ok(state) = cluster.state().await
            && state.workers.iter().any(|w| w.address == addr && w.healthy)
        {
            return;
        }
        assert!(Instant::now() < deadline, "{addr} never registered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Kills a log server of the generation, wipes it and starts it again as a new (spare) log
/// server: returns how long until a commit through the client succeeded again.
async fn lose_a_log_server_disk(cluster: &mut TestCluster, db: &Database, key: &str) -> Duration {
    let generation = cluster
        .state()
        .await
        .expect("state")
        .generation
        .expect("a generation");
    let index = cluster
        .logs
        .iter()
        .position(|n| n.addr.to_string() == generation.logs[0].address)
        .expect("a log server of the generation");
    let data = cluster.logs[index].data_dir().expect("data dir");
    cluster.logs[index].kill();
    let lost = Instant::now();
    std::fs::remove_dir_all(&data).expect("wipe the log server");
    cluster.logs[index].start();
    write(db, key).await;
    lost.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_log_server_dead_and_the_other_paused_the_cluster_waits_and_loses_nothing() {
    let mut cluster = TestCluster::start(3, 2).await;
    let db = db(&cluster);
    let mut keys = write_keys(&db, "before", 30).await;
    let old = cluster
        .state()
        .await
        .expect("state")
        .generation
        .expect("a generation");
    let position = |address: &str| {
        cluster
            .logs
            .iter()
            .position(|n| n.addr.to_string() == address)
            .expect("a log server of the cluster")
    };
    let (dead, paused) = (
        position(&old.logs[0].address),
        position(&old.logs[1].address),
    );
    cluster.logs[paused]
        .process
        .as_ref()
        .expect("running")
        .pause();
    cluster.logs[dead].kill();
    // No log server of the generation can be locked: the recovery waits, and says so.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let state = cluster.state().await.expect("state");
        if state
            .recovery_state
            .starts_with("waiting: none of the 2 log servers")
        {
            assert_eq!(state.epoch, old.epoch, "no generation without the old logs");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the recovery does not say it waits: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A commit attempted meanwhile is not acknowledged (it cannot be on both log servers).
    let attempt = tokio::time::timeout(Duration::from_secs(2), write(&db, "while-waiting")).await;
    assert!(
        attempt.is_err(),
        "a commit was acknowledged with no log server to hold it"
    );
    cluster.logs[paused]
        .process
        .as_ref()
        .expect("running")
        .resume();
    new_generation(&cluster, old.epoch).await;
    keys.extend(write_keys(&db, "after", 20).await);
    read_all(&db, &keys).await;
    cluster.logs[dead].start();
}

/// Loses the coordinator's disk `FERRISDB_RECOVERY_RUNS` times (default 20), then a log
/// server's disk as many times, and prints for each the time from the loss to the next
/// successful commit: min, median, max.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check: run with --ignored --nocapture"]
async fn recovery_times() {
    let runs: usize = std::env::var("FERRISDB_RECOVERY_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut cluster = TestCluster::start(3, 2).await;
    let db = db(&cluster);
    let mut keys = write_keys(&db, "before", 10).await;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    for what in ["coordinator", "log server"] {
        let mut times = Vec::new();
        for run in 0..runs {
            let key = format!("{what}-run-{run:03}");
            times.push(if what == "coordinator" {
                lose_the_coordinator_disk(&mut cluster, &db, &key).await
            } else {
                lose_a_log_server_disk(&mut cluster, &db, &key).await
            });
            keys.push(key);
            // Let the cluster settle (the lost process back as a standby) before the next.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        read_all(&db, &keys).await;
        times.sort();
        println!(
            "{what} disk lost {runs} times, 0 acknowledged writes lost; loss to next commit: \
             min {:.0} ms, median {:.0} ms, max {:.0} ms",
            ms(times[0]),
            ms(times[times.len() / 2]),
            ms(times[times.len() - 1])
        );
    }
}
