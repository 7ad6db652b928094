//! Disk faults under a storage server, with real processes: its data directory lives on a
//! small tmpfs mounted by the test, which then fills it up or remounts it read-only.
//!
//! Asserted: a full disk makes the server log the error, report `NOT_SERVING`, stop applying
//! (reads above what it made durable get `UNAVAILABLE`, never stale or missing data), keep
//! serving older reads, while clients read from the other replica; once space returns and the
//! server restarts it catches up with every write. A read-only data directory makes the server
//! refuse to start with a message naming the problem; it starts once the directory is
//! writable again. Mounting needs `CAP_SYS_ADMIN`: without it the tests fail, unless
//! `FERRISDB_SKIP_MOUNT_TESTS=1`, which skips them and reports the skip (`common/skip.rs`).

mod common;

#[path = "common/tmpfs.rs"]
mod tmpfs;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::cluster::{TestCluster, channel, storage_client};
use ferrisdb_client::Database;
use ferrisdb_proto::v1;
use tmpfs::Tmpfs;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Starts a two-server cluster (replication 2) with storage-0's data on a `mib` MiB tmpfs, or
/// `None` when mounting is not permitted here and `FERRISDB_SKIP_MOUNT_TESTS=1` says to skip
/// `test` (see `common/skip.rs`; without it the test fails).
async fn cluster_with_tmpfs(mib: u32, test: &str) -> Option<(TestCluster, Tmpfs)> {
    let mut mounted = None;
    let cluster = TestCluster::start_with(2, 2, |root| {
        mounted = Some(Tmpfs::mount(&root.join("storage-0"), mib));
    })
    .await;
    match mounted {
        Some(Ok(fs)) => Some((cluster, fs)),
        Some(Err(why)) => {
            common::skip::skip_or_fail(
                test,
                "FERRISDB_SKIP_MOUNT_TESTS",
                &format!("cannot mount a tmpfs ({why}); disk-fault tests need CAP_SYS_ADMIN"),
            );
            None
        }
        None => unreachable!("prepare always runs"),
    }
}

/// Polls the controller until worker `id` satisfies `done` (panics after 30 s); returns it.
async fn wait_for_worker(
    cluster: &TestCluster,
    id: &str,
    what: &str,
    done: impl Fn(&v1::WorkerInfo) -> bool,
) -> v1::WorkerInfo {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state = cluster.state().await.expect("state");
        let w = state.workers.into_iter().find(|w| w.worker_id == id);
        let w = w.unwrap_or_else(|| panic!("worker {id} is not registered"));
        if done(&w) {
            return w;
        }
        assert!(Instant::now() < deadline, "never saw {what}: {w:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The health status of `service` ("" = the whole server) at `addr`.
async fn health(addr: impl std::fmt::Display, service: &str) -> Option<ServingStatus> {
    let mut client = HealthClient::new(channel(addr));
    let req = HealthCheckRequest {
        service: service.into(),
    };
    let reply = client.check(req).await.ok()?.into_inner();
    ServingStatus::try_from(reply.status).ok()
}

/// Commits `key = value` through the client; returns the commit version.
async fn put(db: &Database, key: &str, value: &[u8]) -> u64 {
    let tx = db.create_transaction();
    tx.set(key, value).expect("set");
    tx.commit().await.expect("commit");
    tx.committed_version().expect("a committed version").get()
}

/// A value recognisable per key, `len` bytes long.
fn value_of(key: &str, len: usize) -> Vec<u8> {
    key.bytes().cycle().take(len).collect()
}

/// Reads `key` at `version` straight from the storage server at `addr`.
async fn read_at(addr: &str, key: &str, version: u64) -> Result<Option<Bytes>, tonic::Status> {
    let req = v1::StorageGetRequest {
        key: key.to_owned().into(),
        version,
        newest: false,
    };
    let reply = storage_client(addr).get(req).await?.into_inner();
    Ok(reply.found.then_some(reply.value))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_applying_and_the_server_recovers_every_write_after_restart() {
    let test = "a_full_disk_stops_applying_and_the_server_recovers_every_write_after_restart";
    let Some((mut cluster, fs)) = cluster_with_tmpfs(8, test).await else {
        return;
    };
    let db = Database::connect(cluster.controller.addr.to_string()).expect("controller");
    let s0 = cluster.storage[0].addr.to_string();
    let before: Vec<String> = (0..10).map(|i| format!("before/{i:02}")).collect();
    let mut v1 = 0;
    for k in &before {
        v1 = put(&db, k, &value_of(k, 1000)).await;
    }
    // storage-0 has applied (and made durable) the first writes.
    let deadline = Instant::now() + Duration::from_secs(20);
    while read_at(&s0, &before[9], v1).await.is_err() {
        assert!(Instant::now() < deadline, "{}", cluster.all_logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let filler = fs.fill();
    let during: Vec<String> = (0..30).map(|i| format!("during/{i:02}")).collect();
    // One commit, durable in the coordinator's log (not on the full disk), so it succeeds.
    // storage-0 applies it to its memtable, then fails to sync it: a server that persisted or
    // reported it anyway would lose it once space returns and the log drops it.
    let tx = db.create_transaction();
    for k in &during {
        tx.set(k, value_of(k, 8000)).expect("set");
    }
    tx.commit().await.expect("commit");
    let v2 = tx.committed_version().expect("committed").get();

    // storage-0 notices, says why, and reports NOT_SERVING; it stays up.
    let deadline = Instant::now() + Duration::from_secs(30);
    while health(&s0, "").await != Some(ServingStatus::NotServing) {
        assert!(
            Instant::now() < deadline,
            "storage-0 still serving on a full disk\n{}",
            cluster.storage[0].logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        health(&s0, "ferrisdb.v1.StorageServer").await,
        Some(ServingStatus::NotServing)
    );
    let logs = cluster.storage[0].logs();
    assert!(logs.contains("unhealthy"), "{logs}");
    assert!(logs.contains("No space left on device"), "{logs}");
    // The controller (and so `ferrisdb status`) reports it unhealthy, saying why.
    let s0_id = cluster
        .state()
        .await
        .expect("state")
        .workers
        .into_iter()
        .find(|w| w.address == s0)
        .expect("storage-0 registered")
        .worker_id;
    let w = wait_for_worker(&cluster, &s0_id, "storage-0 reported failed", |w| {
        !w.healthy && w.unhealthy_reason.contains("storage engine")
    })
    .await;
    assert!(
        w.unhealthy_reason.contains("No space left on device"),
        "{w:?}"
    );

    // It still serves what it applied (versions are readable once applied; the coordinator's
    // log holds them durably until this server reports them), and refuses (never guesses)
    // versions it can no longer reach.
    assert_eq!(
        read_at(&s0, &before[3], v1).await.expect("old read"),
        Some(Bytes::from(value_of(&before[3], 1000)))
    );
    match read_at(&s0, &during[29], v2).await {
        Ok(got) => assert!(
            got.as_deref() == Some(&value_of(&during[29], 8000)[..]),
            "wrong data for the last write: {:?} bytes",
            got.map(|v| v.len())
        ),
        Err(err) => {
            assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
            assert!(err.message().contains("stopped applying"), "{err:?}");
        }
    }
    let v3 = put(&db, "after/0", b"later").await;
    let err = read_at(&s0, "after/0", v3)
        .await
        .expect_err("storage-0 stopped applying before this write");
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(err.message().contains("stopped applying"), "{err:?}");

    // Clients read every write from the other replica.
    for k in &during {
        let got = db
            .run(|tx| async move { tx.get(k).await })
            .await
            .expect("client read");
        assert!(got.as_deref() == Some(&value_of(k, 8000)[..]), "{k}");
    }

    // Space returns: the server notices and exits to be restarted (by its supervisor; here,
    // by the test). The restarted server must hold every write, none lost to the failed
    // writes.
    std::fs::remove_file(&filler).expect("remove filler");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let process = cluster.storage[0].process.as_mut().expect("running");
        if let Some(status) = process.try_wait() {
            assert!(!status.success(), "exit {status:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "storage-0 did not exit after space returned\n{}",
            cluster.storage[0].logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logs = cluster.storage[0].logs();
    assert!(logs.contains("accepts writes again"), "{logs}");
    cluster.storage[0].start();
    let deadline = Instant::now() + Duration::from_secs(30);
    for k in before.iter().chain(&during) {
        let len = if k.starts_with("before") { 1000 } else { 8000 };
        loop {
            match read_at(&s0, k, v2).await {
                Ok(got) => {
                    let want = value_of(k, len);
                    assert!(
                        got.as_deref() == Some(&want[..]),
                        "{k} after restart: {:?} bytes, want {len}",
                        got.map(|v| v.len())
                    );
                    break;
                }
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "{k}: {e:?}\n{}",
                    cluster.storage[0].logs()
                ),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(health(&s0, "").await, Some(ServingStatus::Serving));
    // ... and the controller reports it healthy again.
    wait_for_worker(
        &cluster,
        &s0_id,
        "storage-0 healthy after its restart",
        |w| w.healthy,
    )
    .await;
    cluster.storage[0].kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_data_directory_is_refused_at_start_then_recovered() {
    let test = "a_read_only_data_directory_is_refused_at_start_then_recovered";
    let Some((mut cluster, fs)) = cluster_with_tmpfs(16, test).await else {
        return;
    };
    let db = Database::connect(cluster.controller.addr.to_string()).expect("controller");
    let keys: Vec<String> = (0..10).map(|i| format!("ro/{i}")).collect();
    let mut last = 0;
    for k in &keys {
        last = put(&db, k, &value_of(k, 100)).await;
    }
    cluster.storage[0].kill();
    fs.remount("ro");

    cluster.storage[0].spawn();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let process = cluster.storage[0].process.as_mut().expect("spawned");
        if let Some(status) = process.try_wait() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "storage-0 keeps running on a read-only directory\n{}",
            cluster.storage[0].logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.success());
    let logs = cluster.storage[0].logs();
    assert!(logs.contains("Read-only file system"), "{logs}");

    // Writes go on meanwhile (replica storage-1), and storage-0 catches up once writable.
    for k in &keys {
        last = put(&db, k, b"second").await;
    }
    fs.remount("rw");
    cluster.storage[0].start();
    let s0 = cluster.storage[0].addr.to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    for k in &keys {
        loop {
            match read_at(&s0, k, last).await {
                Ok(got) => {
                    assert_eq!(got, Some(Bytes::from_static(b"second")), "{k}");
                    break;
                }
                Err(e) => assert!(Instant::now() < deadline, "{k}: {e:?}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    cluster.storage[0].kill();
}
