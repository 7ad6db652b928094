//! End-to-end tests of a real multi-process cluster: commits through the coordinator, reads
//! from the storage servers holding each shard, reads at old versions, and SIGKILL + restart
//! of a storage server and of the coordinator with every acknowledged write still there, and
//! batched reads answered one by one.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::cluster::{TestCluster, storage_client};
use ferrisdb_proto::v1;

fn set(key: &[u8], value: &[u8]) -> v1::Mutation {
    v1::Mutation {
        kind: Some(v1::mutation::Kind::Set(v1::mutation::Set {
            key: Bytes::copy_from_slice(key),
            value: Bytes::copy_from_slice(value),
        })),
    }
}

/// Commits blind writes; returns the commit version.
async fn commit(cluster: &TestCluster, mutations: Vec<v1::Mutation>) -> u64 {
    let mut c = cluster.coordinator_client();
    let rv = c
        .get_read_version(v1::GetReadVersionRequest::default())
        .await
        .unwrap()
        .into_inner()
        .version;
    let writes = mutations
        .iter()
        .filter_map(|m| match &m.kind {
            Some(v1::mutation::Kind::Set(s)) => {
                let mut end = s.key.to_vec();
                end.push(0);
                Some(v1::KeyRange {
                    begin: s.key.clone(),
                    end: end.into(),
                })
            }
            _ => None,
        })
        .collect();
    let req = v1::CommitRequest {
        read_version: rv,
        mutations,
        read_conflict_ranges: vec![],
        write_conflict_ranges: writes,
        ..Default::default()
    };
    c.commit(req)
        .await
        .unwrap_or_else(|e| panic!("commit: {e}\n{}", cluster.all_logs()))
        .into_inner()
        .commit_version
}

/// Reads `key` at `version` from the storage server at `addr`, retrying while it catches up.
async fn read_at(addr: &str, key: &[u8], version: u64) -> Option<Bytes> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut c = storage_client(addr);
        let req = v1::StorageGetRequest {
            key: Bytes::copy_from_slice(key),
            version,
            newest: false,
        };
        match c.get(req).await {
            Ok(r) => {
                let r = r.into_inner();
                return r.found.then_some(r.value);
            }
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("read of {key:?} at {version} from {addr}: {e}"),
        }
    }
}

/// Reads `key` from every replica at `version`.
async fn read_all_replicas(cluster: &TestCluster, key: &[u8], version: u64) -> Vec<Option<Bytes>> {
    let mut out = Vec::new();
    for addr in cluster.replicas_of(key).await {
        out.push(read_at(&addr, key, version).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_across_shards_are_read_back_from_every_replica_and_old_versions_stay_readable() {
    let cluster = TestCluster::start(3, 2).await;
    // Keys in every shard (first bytes 0x00.., 0x55.., 0xaa..).
    let keys: Vec<Vec<u8>> = (0u8..12)
        .map(|i| vec![i.wrapping_mul(23), b'k', i])
        .collect();
    let v1 = commit(&cluster, keys.iter().map(|k| set(k, b"one")).collect()).await;
    let v2 = commit(&cluster, keys.iter().map(|k| set(k, b"two")).collect()).await;
    assert!(v2 > v1);
    for k in &keys {
        let replicas = read_all_replicas(&cluster, k, v2).await;
        assert_eq!(replicas.len(), 2, "replication factor 2");
        for got in replicas {
            assert_eq!(got.as_deref(), Some(&b"two"[..]), "key {k:?} at v2");
        }
        let old = read_at(&cluster.replicas_of(k).await[0], k, v1).await;
        assert_eq!(old.as_deref(), Some(&b"one"[..]), "key {k:?} at v1");
        let before = read_at(&cluster.replicas_of(k).await[0], k, v1 - 1).await;
        assert_eq!(before, None, "key {k:?} before it was written");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_batch_answers_each_read_on_its_own() {
    let cluster = TestCluster::start(1, 1).await;
    let v1 = commit(&cluster, vec![set(b"a", b"one"), set(b"b", b"one")]).await;
    let v2 = commit(&cluster, vec![set(b"a", b"two")]).await;
    let addr = cluster.storage[0].addr.to_string();
    // Wait until the server has applied v2.
    assert_eq!(read_at(&addr, b"a", v2).await.as_deref(), Some(&b"two"[..]));
    let get = |key: &[u8], version: u64| v1::StorageGetRequest {
        key: Bytes::copy_from_slice(key),
        version,
        newest: false,
    };
    let outcomes = storage_client(&addr)
        .get_batch(v1::StorageGetBatchRequest {
            gets: vec![
                get(b"a", v2),
                get(b"a", v1),
                get(b"b", v2),
                get(b"missing", v2),
                get(&[b'k'; 10_001], v2),
                get(b"a", 0),
            ],
        })
        .await
        .expect("get batch")
        .into_inner()
        .outcomes;
    use v1::storage_get_outcome::Outcome;
    let values: Vec<Option<Option<Bytes>>> = outcomes
        .iter()
        .map(|o| match &o.outcome {
            Some(Outcome::Value(v)) => Some(v.found.then(|| v.value.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        values,
        vec![
            Some(Some(Bytes::from_static(b"two"))),
            Some(Some(Bytes::from_static(b"one"))),
            Some(Some(Bytes::from_static(b"one"))),
            Some(None),
            None,
            None,
        ]
    );
    for bad in &outcomes[4..] {
        let Some(Outcome::Error(e)) = &bad.outcome else {
            panic!("a bad read was answered: {bad:?}");
        };
        assert_eq!(e.grpc_code, tonic::Code::InvalidArgument as i32, "{e:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_session_answers_each_start_under_its_id_and_says_when_more_remain() {
    let cluster = TestCluster::start(1, 1).await;
    let keys: Vec<Vec<u8>> = (0..600).map(|i| format!("r{i:04}").into_bytes()).collect();
    let version = commit(&cluster, keys.iter().map(|k| set(k, b"v")).collect()).await;
    let addr = cluster.storage[0].addr.to_string();
    assert_eq!(
        read_at(&addr, b"r0599", version).await.as_deref(),
        Some(&b"v"[..])
    );
    let range = |begin: &[u8], limit: u64, reverse: bool| v1::StorageGetRangeRequest {
        begin: Bytes::copy_from_slice(begin),
        end: Bytes::from_static(b"s"),
        version,
        limit,
        reverse,
        newest: false,
    };
    let longest_after = vec![b'q'; ferrisdb_core::limits::MAX_KEY_BYTES + 1];
    let requests = [
        (1, range(b"r", 0, false)),
        (2, range(b"r", 100, false)),
        (3, range(b"t", 0, false)),
        (4, range(b"r", 5, true)),
        (5, range(&longest_after, 1, false)),
        (6, range(b"r", 0, false)),
    ]
    .map(|(id, range)| v1::StorageGetRangeSessionRequest {
        id,
        range: Some(range),
    });
    let mut answers = storage_client(&addr)
        .get_range_session(tokio_stream::iter(requests))
        .await
        .expect("a session")
        .into_inner();
    let mut answered = std::collections::BTreeMap::new();
    while let Some(answer) = answers.message().await.expect("an answer") {
        answered.insert(answer.id, answer.answer.expect("an answer"));
    }
    assert_eq!(
        answered.keys().copied().collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6]
    );
    use v1::storage_get_range_session_response::Answer;
    let start = |id: u64| match &answered[&id] {
        Answer::Start(start) => {
            assert_eq!(start.version, version, "request {id}");
            let keys: Vec<&[u8]> = start.pairs.iter().map(|p| &p.key[..]).collect();
            (keys, start.more)
        }
        Answer::Error(e) => panic!("request {id} was refused: {e:?}"),
    };
    // One streamed message's worth (512 pairs), and more to read.
    let (first, more) = start(1);
    assert_eq!(
        first,
        keys[..512].iter().map(|k| &k[..]).collect::<Vec<_>>()
    );
    assert!(more);
    // A limit inside the first message: nothing more.
    let (limited, more) = start(2);
    assert_eq!(limited.len(), 100);
    assert!(!more);
    let (reversed, more) = start(4);
    let want: Vec<&[u8]> = keys[595..].iter().rev().map(|k| &k[..]).collect();
    assert_eq!((reversed, more), (want, false));
    // A begin one byte longer than a key (just past the longest key) is a valid position.
    assert_eq!(start(5), (vec![&b"r0000"[..]], false));
    assert_eq!(start(6).0.len(), 512);
    // An inverted range is refused on its own.
    let Answer::Error(refused) = &answered[&3] else {
        panic!("an inverted range was read: {:?}", answered[&3]);
    };
    assert_eq!(
        refused.grpc_code,
        tonic::Code::InvalidArgument as i32,
        "{refused:?}"
    );

    // The rest, read with GetRange from just past the start's last key, at its version.
    let mut rest = storage_client(&addr)
        .get_range(range(b"r0511\0", 0, false))
        .await
        .expect("the rest")
        .into_inner();
    let mut read = 0;
    while let Some(message) = rest.message().await.expect("a message") {
        read += message.pairs.len();
    }
    assert_eq!(read, 600 - 512);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_server_killed_with_sigkill_catches_up_after_restart() {
    let mut cluster = TestCluster::start(3, 2).await;
    let key = b"\x10victim".to_vec();
    let before = commit(&cluster, vec![set(&key, b"before")]).await;
    assert_eq!(
        read_at(&cluster.replicas_of(&key).await[0], &key, before)
            .await
            .as_deref(),
        Some(&b"before"[..])
    );
    cluster.storage[0].kill();
    let mut last = 0;
    for i in 0..20u32 {
        last = commit(&cluster, vec![set(&key, format!("v{i}").as_bytes())]).await;
    }
    cluster.storage[0].start();
    for got in read_all_replicas(&cluster, &key, last).await {
        assert_eq!(got.as_deref(), Some(&b"v19"[..]), "{}", cluster.all_logs());
    }
}

/// Every storage server's durable version, from the controller's view (0 if none reported).
async fn durable_versions(cluster: &TestCluster) -> Vec<u64> {
    let state = cluster.state().await.unwrap();
    state
        .workers
        .iter()
        .filter_map(|w| match w.status.as_ref()?.status.as_ref()? {
            v1::worker_status::Status::Storage(s) => Some(s.durable_version),
            _ => None,
        })
        .collect()
}

/// The version the coordinator's log is truncated through, from its last heartbeat (0 if none).
async fn log_truncated_through(cluster: &TestCluster) -> u64 {
    let state = cluster.state().await.unwrap();
    state
        .workers
        .iter()
        .find_map(|w| match w.status.as_ref()?.status.as_ref()? {
            v1::worker_status::Status::Coordinator(c) => Some(c.log_truncated_through),
            _ => None,
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_server_killed_after_reporting_durable_keeps_what_the_log_dropped() {
    // A storage server syncs its engine in the background and reports durable versions; the
    // coordinator then drops those versions from its log. A SIGKILL right after must not lose
    // them: the server cannot pull them again.
    let mut cluster = TestCluster::start(3, 2).await;
    let victim = cluster.storage[0].addr.to_string();
    let mut keys = Vec::new();
    for first in 0u8..=255 {
        let key = vec![first, b'd'];
        if cluster.replicas_of(&key).await.contains(&victim) {
            keys.push(key);
        }
        if keys.len() == 8 {
            break;
        }
    }
    let mut last = 0;
    for (i, key) in keys.iter().enumerate() {
        last = commit(&cluster, vec![set(key, format!("kept-{i}").as_bytes())]).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let durable = durable_versions(&cluster).await;
        if durable.len() == 3 && durable.iter().all(|&d| d >= last) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "storage servers never reported {last} durable: {durable:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Wait until the coordinator has truncated its log past `last` (it says so in its
    // heartbeat): from then on the victim cannot pull those versions again.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let truncated = log_truncated_through(&cluster).await;
        if truncated >= last {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the coordinator never truncated its log past {last} (at {truncated})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.storage[0].kill();
    cluster.storage[0].start();
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(
            read_at(&victim, key, last).await.as_deref(),
            Some(format!("kept-{i}").as_bytes()),
            "{}",
            cluster.all_logs()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_commits_survive_sigkill_of_the_coordinator() {
    let mut cluster = TestCluster::start(3, 2).await;
    let mut acked = Vec::new();
    for i in 0..30u32 {
        let key = vec![(i * 8) as u8, b'c', i as u8];
        let v = commit(&cluster, vec![set(&key, format!("value-{i}").as_bytes())]).await;
        acked.push((key, i, v));
    }
    cluster.coordinator.kill();
    cluster.coordinator.start();
    cluster.wait_ready().await;
    // New commits get versions past the old ones.
    let after = commit(&cluster, vec![set(b"\x01after", b"x")]).await;
    let last_acked = acked.last().map(|a| a.2).unwrap_or(0);
    assert!(after > last_acked, "versions never go backwards");
    for (key, i, _) in &acked {
        for got in read_all_replicas(&cluster, key, after).await {
            assert_eq!(
                got.as_deref(),
                Some(format!("value-{i}").as_bytes()),
                "{}",
                cluster.all_logs()
            );
        }
    }
}

/// A storage server asked for a codec it does not know exits at once, non-zero, naming it.
#[test]
fn a_storage_server_refuses_an_unknown_codec() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferrisdb-storage-server"))
        .args(["--data-dir", &dir.path().display().to_string()])
        .args(["--bottommost-compression", "snappy"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown codec \"snappy\": lz4, zstd or none"),
        "{stderr}"
    );
}
