//! Data distribution in a real cluster (`TestCluster`, the controller started with a short
//! storage failure timeout): a storage server lost for good has its shards re-replicated on
//! the others, after which losing another loses nothing acknowledged; a storage server that
//! joins later receives shards while writes go on, and range reads across shards that moved
//! return exactly what was written.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::TestCluster;
use ferrisdb_client::{Database, RangeOptions};
use ferrisdb_proto::v1;
use parking_lot::Mutex;

/// The controller's storage failure timeout in these tests.
const FAILURE_TIMEOUT_MS: &str = "2000";
const VALUE_BYTES: usize = 512;

fn db(cluster: &TestCluster) -> Database {
    Database::connect_all(cluster.controller_addresses().split(',').map(String::from))
        .expect("client")
}

/// Key `i`: its first byte spreads keys over the whole key space (every bootstrap shard).
fn key(i: u64) -> Vec<u8> {
    let mut k = vec![(i.wrapping_mul(97) % 255) as u8];
    k.extend_from_slice(format!("/key-{i:08}").as_bytes());
    k
}

fn value(i: u64, round: u64) -> Vec<u8> {
    let mut v = format!("{i}:{round}:").into_bytes();
    v.resize(VALUE_BYTES, b'.');
    v
}

/// `len` incompressible bytes (so the shard sizes on disk match the bytes written).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes keys until `stop`, each a fresh key or a rewrite of an earlier one; records every
/// acknowledged write in `model`.
async fn writer(
    db: Database,
    model: Arc<Mutex<BTreeMap<Vec<u8>, Vec<u8>>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> u64 {
    let mut written = 0u64;
    let mut i = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        // Every fourth write rewrites an earlier key.
        let (k, round) = if i % 4 == 3 { (i / 2, i) } else { (i, 0) };
        let (key, value) = (key(k), value(k, round));
        let (kk, vv) = (key.clone(), value.clone());
        match db
            .run(move |tx| {
                let (k, v) = (kk.clone(), vv.clone());
                async move { tx.set(k, v) }
            })
            .await
        {
            Ok(()) => {
                model.lock().insert(key, value);
                written += 1;
            }
            // Not acknowledged: it may or may not have landed; later rewrites of the key are
            // not made, so the model only checks acknowledged keys.
            Err(e) => panic!("write {i} failed: {e}"),
        }
        i += 1;
    }
    written
}

/// The shard map, from the controller.
async fn shard_map(cluster: &TestCluster) -> v1::ShardMap {
    cluster
        .state()
        .await
        .expect("state")
        .shard_map
        .expect("shard map")
}

fn worker_id(state: &v1::GetClusterStateResponse, address: &str) -> String {
    state
        .workers
        .iter()
        .find(|w| w.address == address)
        .map(|w| w.worker_id.clone())
        .expect("worker registered")
}

/// The bytes each storage server reports holding (the sum of its shard sizes).
fn bytes_per_server(state: &v1::GetClusterStateResponse) -> BTreeMap<String, u64> {
    state
        .workers
        .iter()
        .filter_map(|w| match w.status.as_ref()?.status.as_ref()? {
            v1::worker_status::Status::Storage(s) => Some((
                w.worker_id.clone(),
                s.shard_sizes.iter().map(|z| z.bytes).sum(),
            )),
            _ => None,
        })
        .collect()
}

/// Waits until no shard moves and `done(map)` holds.
async fn wait_for_map(
    cluster: &TestCluster,
    what: &str,
    timeout: Duration,
    done: impl Fn(&v1::ShardMap) -> bool,
) -> v1::ShardMap {
    let deadline = Instant::now() + timeout;
    loop {
        let map = shard_map(cluster).await;
        if map.shards.iter().all(|s| s.moving_to.is_empty()) && done(&map) {
            return map;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not done after {timeout:?}; map {map:#?}\n{}",
            cluster.all_logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads every key of the model one by one and the whole key space as one range read:
/// both must match the model exactly.
async fn check(db: &Database, model: &BTreeMap<Vec<u8>, Vec<u8>>) {
    let expected: Vec<(Vec<u8>, Vec<u8>)> =
        model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let got = db
        .run(|tx| async move {
            let kvs = tx
                .get_range(&b""[..], &b"\xff"[..], RangeOptions::default())
                .collect_vec()
                .await?;
            Ok(kvs
                .into_iter()
                .map(|kv| (kv.key.to_vec(), kv.value.to_vec()))
                .collect::<Vec<_>>())
        })
        .await
        .expect("range read");
    assert_eq!(
        got.len(),
        expected.len(),
        "range read returned {} pairs, the model holds {}",
        got.len(),
        expected.len()
    );
    assert!(got == expected, "the range read differs from the model");
    for (k, v) in model.iter().step_by(7) {
        let k2 = k.clone();
        let read = db
            .run(move |tx| {
                let k = k2.clone();
                async move { tx.get(k).await }
            })
            .await
            .expect("point read");
        assert_eq!(read.as_deref(), Some(&v[..]), "key {k:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_server_lost_for_good_is_replaced_and_losing_another_loses_nothing() {
    let mut cluster = TestCluster::start_with_controller_args(
        3,
        2,
        &["--storage-failure-timeout-ms", FAILURE_TIMEOUT_MS],
    )
    .await;
    // A spare, to hold the lost server's shards (it first receives a shard to balance).
    let spare = cluster.add_storage_server();
    let db = db(&cluster);
    let model = Arc::new(Mutex::new(BTreeMap::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writing = tokio::spawn(writer(db.clone(), model.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Storage server 0 is lost with its disk while the writer runs.
    let state = cluster.state().await.expect("state");
    let lost = worker_id(&state, &cluster.storage[0].addr.to_string());
    cluster.storage[0].kill();
    if let Some(dir) = cluster.storage[0].data_dir() {
        std::fs::remove_dir_all(dir).expect("wipe");
    }
    let started = Instant::now();
    let healed = wait_for_map(&cluster, "re-replication", Duration::from_secs(60), |map| {
        map.shards
            .iter()
            .all(|s| s.storage_ids.len() == 2 && !s.storage_ids.contains(&lost))
    })
    .await;
    let took = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writing.await.expect("writer");
    println!(
        "every shard back at 2 replicas {:.1} s after the kill (failure timeout {FAILURE_TIMEOUT_MS} ms); \
         {written} writes acknowledged; map version {}",
        took.as_secs_f64(),
        healed.version
    );
    let spare_id = worker_id(&state, &cluster.storage[spare].addr.to_string());
    assert!(
        healed
            .shards
            .iter()
            .any(|s| s.storage_ids.contains(&spare_id)),
        "the spare holds no shard: {healed:#?}"
    );

    // Another storage server is lost: every shard still has a replica with everything.
    let model = model.lock().clone();
    let second = healed.shards[0].storage_ids[0].clone();
    let index = (0..cluster.storage.len())
        .find(|&i| i != 0 && worker_id(&state, &cluster.storage[i].addr.to_string()) == second)
        .expect("second victim");
    cluster.storage[index].kill();
    check(&db, &model).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_servers_that_join_receive_shards_while_writes_go_on() {
    let mut cluster = TestCluster::start_with_controller_args(
        3,
        2,
        &["--storage-failure-timeout-ms", FAILURE_TIMEOUT_MS],
    )
    .await;
    let db = db(&cluster);
    let model = Arc::new(Mutex::new(BTreeMap::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writing = tokio::spawn(writer(db.clone(), model.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let joined = [cluster.add_storage_server(), cluster.add_storage_server()];
    // Registered: their ids.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let state = cluster.state().await.expect("state");
    let ids: Vec<String> = joined
        .iter()
        .map(|&i| worker_id(&state, &cluster.storage[i].addr.to_string()))
        .collect();
    let started = Instant::now();
    let map = wait_for_map(&cluster, "balancing", Duration::from_secs(60), |map| {
        ids.iter()
            .all(|id| map.shards.iter().any(|s| s.storage_ids.contains(id)))
    })
    .await;
    println!(
        "both new servers hold shards {:.1} s after joining; map version {}",
        started.elapsed().as_secs_f64(),
        map.version
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writing.await.expect("writer");
    assert!(written > 0);
    let model = model.lock().clone();
    check(&db, &model).await;
    // One more server joins: range reads across the shards it takes over, while they move,
    // return exactly the model.
    let last = cluster.add_storage_server();
    let address = cluster.storage[last].addr.to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut reads_during_moves = 0;
    loop {
        let state = cluster.state().await.expect("state");
        let map = state.shard_map.clone().expect("shard map");
        let moving = map.shards.iter().any(|s| !s.moving_to.is_empty());
        check(&db, &model).await;
        if moving {
            reads_during_moves += 1;
        } else if let Some(id) = state.workers.iter().find(|w| w.address == address)
            && map
                .shards
                .iter()
                .any(|s| s.storage_ids.contains(&id.worker_id))
        {
            break;
        }
        assert!(Instant::now() < deadline, "no move seen within 60 s");
    }
    println!("{reads_during_moves} range reads while shards moved matched the model");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_with_one_prefix_are_split_into_many_shards_spread_over_every_server() {
    let cluster = TestCluster::start_with_controller_args(
        3,
        2,
        &[
            "--storage-failure-timeout-ms",
            FAILURE_TIMEOUT_MS,
            "--max-shard-bytes",
            "131072",
        ],
    )
    .await;
    let db = db(&cluster);
    // 3 MB under one prefix: every key lands in the same bootstrap shard.
    let mut model = BTreeMap::new();
    for chunk in 0..60u64 {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..50)
            .map(|j| {
                let i = chunk * 50 + j;
                (format!("user/{i:08}").into_bytes(), noise(i, 1024))
            })
            .collect();
        let batch = pairs.clone();
        db.run(move |tx| {
            let batch = batch.clone();
            async move {
                for (k, v) in &batch {
                    tx.set(k, v)?;
                }
                Ok(())
            }
        })
        .await
        .expect("write");
        model.extend(pairs);
    }
    let started = Instant::now();
    let map = wait_for_map(&cluster, "splitting", Duration::from_secs(90), |map| {
        let prefix: Vec<_> = map
            .shards
            .iter()
            .filter(|s| {
                let r = s.range.as_ref().expect("range");
                r.end.is_empty() || r.end.as_ref() > &b"user/"[..]
            })
            .filter(|s| {
                let r = s.range.as_ref().expect("range");
                r.begin.as_ref() < &b"user0"[..]
            })
            .collect();
        let mut held: BTreeMap<&str, usize> = BTreeMap::new();
        for s in &map.shards {
            for id in &s.storage_ids {
                *held.entry(id.as_str()).or_default() += 1;
            }
        }
        prefix.len() >= 12 && held.len() == 3
    })
    .await;
    // Bytes per server end within a quarter of the mean (as the servers report them).
    let deadline = Instant::now() + Duration::from_secs(90);
    let bytes = loop {
        let state = cluster.state().await.expect("state");
        let bytes = bytes_per_server(&state);
        let mean = bytes.values().sum::<u64>() as f64 / bytes.len().max(1) as f64;
        let still = state
            .shard_map
            .as_ref()
            .is_some_and(|m| m.shards.iter().all(|s| s.moving_to.is_empty()));
        if still
            && bytes.len() == 3
            && mean > 0.0
            && bytes
                .values()
                .all(|b| (*b as f64 - mean).abs() <= 0.25 * mean)
        {
            break bytes;
        }
        assert!(
            Instant::now() < deadline,
            "bytes per server never balanced: {bytes:?}\n{}",
            cluster.all_logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!(
        "3 MB under one prefix: {} shards, bytes per server {:?} {:.1} s after the writes",
        map.shards.len(),
        bytes.values().collect::<Vec<_>>(),
        started.elapsed().as_secs_f64()
    );
    check(&db, &model).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_excluded_server_drains_under_writes_and_can_then_be_turned_off() {
    use ferrisdb_proto::v1::cluster_controller_client::ClusterControllerClient;
    let mut cluster = TestCluster::start_with_controller_args(
        4,
        2,
        &["--storage-failure-timeout-ms", FAILURE_TIMEOUT_MS],
    )
    .await;
    let mut controller =
        ClusterControllerClient::new(common::cluster::channel(cluster.controller.addr));
    // An address no storage server registered at is refused.
    let refused = controller
        .exclude_servers(v1::ExcludeServersRequest {
            addresses: vec!["127.0.0.1:1".into()],
            include: false,
        })
        .await
        .expect_err("unknown address");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");

    let db = db(&cluster);
    let model = Arc::new(Mutex::new(BTreeMap::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writing = tokio::spawn(writer(db.clone(), model.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let address = cluster.storage[1].addr.to_string();
    let answer = controller
        .exclude_servers(v1::ExcludeServersRequest {
            addresses: vec![address.clone()],
            include: false,
        })
        .await
        .expect("exclude")
        .into_inner();
    assert_eq!(answer.servers.len(), 1);
    assert!(
        answer.servers[0].excluded && answer.servers[0].shards > 0,
        "{answer:?}"
    );
    let id = answer.servers[0].worker_id.clone();
    let started = Instant::now();
    wait_for_map(&cluster, "draining", Duration::from_secs(60), |map| {
        map.shards
            .iter()
            .all(|s| !s.storage_ids.contains(&id) && s.storage_ids.len() == 2)
    })
    .await;
    println!(
        "excluded server drained {:.1} s after the exclusion",
        started.elapsed().as_secs_f64()
    );
    let state = cluster.state().await.expect("state");
    assert_eq!(state.excluded, vec![id.clone()]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writing.await.expect("writer");
    // Safe to turn off: nothing is lost without it.
    cluster.storage[1].kill();
    let model = model.lock().clone();
    check(&db, &model).await;
    // Included again (it still registered at its address), it may receive shards.
    let back = controller
        .exclude_servers(v1::ExcludeServersRequest {
            addresses: vec![address],
            include: true,
        })
        .await
        .expect("include")
        .into_inner();
    assert!(!back.servers[0].excluded);
    assert!(cluster.state().await.expect("state").excluded.is_empty());
}
