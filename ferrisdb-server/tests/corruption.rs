//! Damaged files under a storage server (replication 2): bytes flipped in one of its SSTables,
//! WAL segments or its manifest while it is stopped, then it is restarted.
//!
//! Asserted: it never serves wrong data. A damaged manifest or WAL record makes it refuse to
//! start with an error naming the file and the byte offset; a damaged SSTable data block makes
//! the reads that need the block fail with `DATA_LOSS` naming the table file and offset, while
//! every other read is correct; clients reading through the client library get every value
//! right from the intact replica.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::cluster::{TestCluster, storage_client};
use ferrisdb_client::Database;
use ferrisdb_proto::v1;

/// Keys written (4 KiB values, so storage servers with a 1 MiB memtable flush SSTables).
const KEYS: usize = 400;
const VALUE_BYTES: usize = 4096;

fn key(i: usize) -> String {
    format!("key/{i:04}")
}

fn value(i: usize) -> Vec<u8> {
    format!("{i:04}-")
        .bytes()
        .cycle()
        .take(VALUE_BYTES)
        .collect()
}

/// A cluster of two storage servers (replication 2) holding [`KEYS`] keys, with storage-0
/// SIGKILLed after applying them all; returns a version at or after the last commit.
async fn written_then_stopped() -> (TestCluster, Database, u64) {
    let mut cluster = TestCluster::start(2, 2).await;
    let db = Database::connect(cluster.controller.addr.to_string()).expect("controller");
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(10) {
        // `run` retries a commit whose outcome was unknown (a log server slow to fsync on
        // a loaded machine): the writes are idempotent.
        db.run(|tx| async move {
            for &i in chunk {
                tx.set(key(i), value(i))?;
            }
            Ok(())
        })
        .await
        .expect("commit");
    }
    // A read version taken now is at or after every commit above.
    let last = db
        .create_transaction()
        .get_read_version()
        .await
        .expect("read version")
        .get();
    let s0 = cluster.storage[0].addr.to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while read(&s0, &key(KEYS - 1), last).await.is_err() {
        assert!(Instant::now() < deadline, "{}", cluster.all_logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Wait until storage-0 has persisted its progress past `last`: otherwise it pulls the
    // tail again after the restart and serves it from its memtable, never reading the
    // tables this test damages.
    let progress = cluster.dir.path().join("storage-0").join("applied_version");
    while persisted_version(&progress) < last {
        assert!(Instant::now() < deadline, "{}", cluster.all_logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.storage[0].kill();
    (cluster, db, last)
}

/// The applied version a storage server persisted (8 bytes, little-endian), 0 before any.
fn persisted_version(path: &Path) -> u64 {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok())
        .map_or(0, u64::from_le_bytes)
}

async fn read(addr: &str, key: &str, version: u64) -> Result<Option<Bytes>, tonic::Status> {
    let req = v1::StorageGetRequest {
        key: key.to_owned().into(),
        version,
        newest: false,
    };
    let reply = storage_client(addr).get(req).await?.into_inner();
    Ok(reply.found.then_some(reply.value))
}

fn engine_dir(cluster: &TestCluster) -> PathBuf {
    cluster.dir.path().join("storage-0").join("engine")
}

/// Files of `dir` whose name contains `pattern`, sorted, with their sizes.
fn files(dir: &Path, pattern: &str) -> Vec<(PathBuf, u64)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(pattern))
        .map(|e| (e.path(), e.metadata().expect("metadata").len()))
        .collect();
    out.sort();
    out
}

fn flip(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).expect("read");
    let at = usize::try_from(offset).expect("offset");
    bytes[at] ^= 0x5a;
    std::fs::write(path, bytes).expect("write");
}

/// Starts storage-0 expecting it to refuse; returns its log.
async fn refused_start(cluster: &mut TestCluster) -> String {
    cluster.storage[0].spawn();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let process = cluster.storage[0].process.as_mut().expect("spawned");
        if let Some(status) = process.try_wait() {
            assert!(!status.success());
            return cluster.storage[0].logs();
        }
        assert!(
            Instant::now() < deadline,
            "storage-0 started on damaged files\n{}",
            cluster.storage[0].logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every key read through the client library is right (served by the intact replica).
async fn client_reads_are_right(db: &Database) {
    for i in 0..KEYS {
        let k = key(i);
        let got = db
            .run(|tx| {
                let k = k.clone();
                async move { tx.get(k).await }
            })
            .await
            .unwrap_or_else(|e| panic!("{k}: {e}"));
        assert!(
            got.as_deref() == Some(&value(i)[..]),
            "{k} wrong via client"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_sstable_block_fails_its_reads_and_never_returns_wrong_data() {
    let (mut cluster, db, last) = written_then_stopped().await;
    let tables = files(&engine_dir(&cluster), ".sst");
    assert!(!tables.is_empty(), "no SSTable was flushed");
    let (table, _) = &tables[0];
    // Inside the first data block (blocks are ~4 KiB and start at offset 0).
    flip(table, 200);
    cluster.storage[0].start();
    let s0 = cluster.storage[0].addr.to_string();
    // Until it knows its shards again it answers UNAVAILABLE.
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Err(s) = read(&s0, &key(KEYS - 1), last).await {
        assert_eq!(s.code(), tonic::Code::Unavailable, "{s:?}");
        assert!(Instant::now() < deadline, "{}", cluster.storage[0].logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let name = table
        .file_name()
        .expect("name")
        .to_string_lossy()
        .to_string();
    let (mut right, mut refused) = (0, 0);
    for i in 0..KEYS {
        match read(&s0, &key(i), last).await {
            Ok(got) => {
                assert!(got.as_deref() == Some(&value(i)[..]), "{} wrong", key(i));
                right += 1;
            }
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::DataLoss, "{status:?}");
                assert!(status.message().contains(&name), "{status:?}");
                assert!(status.message().contains("offset"), "{status:?}");
                refused += 1;
            }
        }
    }
    eprintln!("damaged table {name}: {right} reads right, {refused} refused");
    assert!(refused > 0, "no read touched the damaged block");
    client_reads_are_right(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_wal_record_or_manifest_stops_the_server_from_starting() {
    let (mut cluster, db, _) = written_then_stopped().await;
    let engine = engine_dir(&cluster);

    let segments: Vec<_> = files(&engine.join("wal"), ".wal")
        .into_iter()
        .filter(|(_, len)| *len > 4096)
        .collect();
    let (segment, _) = segments.first().expect("a WAL segment with records");
    let original = std::fs::read(segment).expect("read");
    // A byte inside the first record (after the 32-byte header): damage followed by more
    // records is corruption, not a torn tail.
    flip(segment, 40);
    let logs = refused_start(&mut cluster).await;
    let name = segment
        .file_name()
        .expect("name")
        .to_string_lossy()
        .to_string();
    assert!(logs.contains(&name) && logs.contains("offset 32"), "{logs}");
    client_reads_are_right(&db).await;
    std::fs::write(segment, original).expect("restore");

    let manifests = files(&engine, "MANIFEST-");
    let (manifest, len) = manifests.last().expect("a manifest");
    flip(manifest, len / 2);
    let logs = refused_start(&mut cluster).await;
    let name = manifest
        .file_name()
        .expect("name")
        .to_string_lossy()
        .to_string();
    assert!(logs.contains(&name) && logs.contains("offset"), "{logs}");
    client_reads_are_right(&db).await;
}
