//! Tests of the commit pipeline: group commit, in-batch conflicts, ordering, read-only and
//! too-old transactions, and shutdown.
//!
//! Some tests hold the batcher's gate (an async mutex) while commits queue up: the batcher
//! waits on it before taking a batch.

use std::path::Path;
use std::time::Duration;

use ferrisdb_core::KeyRange;

use super::*;
use crate::coordinator::clock::ManualClock;
use crate::coordinator::log::LogOptions;
use crate::coordinator::resolver::ResolverConfig;

fn start(dir: &Path, clock: ManualClock) -> (Arc<CommitLog>, Arc<Pipeline>) {
    let (log, rec) = CommitLog::open(dir, LogOptions::default()).unwrap();
    let log = Arc::new(log);
    let pipeline = Pipeline::start(
        log.clone(),
        rec.last_version,
        Sequencer::recover(clock, rec.last_version),
        Resolver::new(ResolverConfig::default()),
        BatchLimits::default(),
    )
    .unwrap();
    (log, Arc::new(pipeline))
}

fn txn(read_version: Version, key: &str, reads: bool) -> Commit {
    let k = bytes::Bytes::copy_from_slice(key.as_bytes());
    Commit {
        read_version,
        mutations: vec![Mutation::Set {
            key: k.clone(),
            value: "v".into(),
        }],
        read_conflict_ranges: if reads {
            vec![KeyRange::single(&k)]
        } else {
            vec![]
        },
        write_conflict_ranges: vec![KeyRange::single(&k)],
    }
}

async fn wait_queued(p: &Pipeline, n: u64) {
    for _ in 0..10_000 {
        if p.queued() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("only {} of {n} commits queued", p.queued());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_commits_share_one_version_and_one_log_record() {
    let dir = tempfile::tempdir().unwrap();
    let (log, p) = start(dir.path(), ManualClock::new(1_000));
    let gate = p.gate().await;
    let mut tasks = Vec::new();
    for i in 0..32 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            p.commit(txn(Version::ZERO, &format!("k{i}"), false)).await
        }));
    }
    wait_queued(&p, 32).await;
    drop(gate);
    let mut versions = Vec::new();
    for t in tasks {
        versions.push(t.await.unwrap().unwrap());
    }
    assert!(versions.iter().all(|v| *v == versions[0]), "{versions:?}");
    let stats = p.stats();
    assert_eq!(
        (stats.commits, stats.batches, stats.log_records),
        (32, 1, 1)
    );
    assert_eq!(stats.avg_batch_size(), 32.0);
    assert_eq!(log.stats().records, 1);
    assert_eq!(p.committed_version(), versions[0]);
    let batches = log.read_after(Version::ZERO, versions[0], 10).unwrap();
    assert_eq!(batches[0].mutations.len(), 32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_need_fewer_records_than_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let (log, p) = start(dir.path(), ManualClock::new(1_000));
    let mut tasks = Vec::new();
    for i in 0..200 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            p.commit(txn(Version::ZERO, &format!("k{i}"), false)).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let stats = p.stats();
    assert_eq!(stats.commits, 200);
    assert_eq!(stats.log_records, log.stats().records);
    assert!(stats.log_records <= 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_second_of_two_conflicting_transactions_in_a_batch_aborts() {
    let dir = tempfile::tempdir().unwrap();
    let (log, p) = start(dir.path(), ManualClock::new(1_000));
    let gate = p.gate().await;
    let first = tokio::spawn({
        let p = p.clone();
        async move { p.commit(txn(Version::ZERO, "x", true)).await }
    });
    wait_queued(&p, 1).await;
    let second = tokio::spawn({
        let p = p.clone();
        async move { p.commit(txn(Version::ZERO, "x", true)).await }
    });
    wait_queued(&p, 2).await;
    drop(gate);
    let v = first.await.unwrap().unwrap();
    let err = second.await.unwrap().unwrap_err();
    assert!(matches!(err, Error::NotCommitted), "{err}");
    let stats = p.stats();
    assert_eq!((stats.commits, stats.conflicts, stats.batches), (1, 1, 1));
    // Only the accepted transaction's mutation is in the log.
    assert_eq!(
        log.read_after(Version::ZERO, v, 10).unwrap()[0]
            .mutations
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_strictly_increase_and_bad_transactions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000);
    let (log, p) = start(dir.path(), clock.clone());
    let mut last = Version::ZERO;
    let mut first = None;
    for i in 0..20 {
        let rv = p.committed_version();
        let v = p
            .commit(txn(rv, &format!("k{}", i % 3), true))
            .await
            .unwrap();
        assert!(v > last && v > rv, "{v} after {last}");
        assert_eq!(p.committed_version(), v);
        last = v;
        first.get_or_insert(v);
    }
    // A stale reader of a key written since conflicts.
    let stale = first.unwrap();
    let err = p.commit(txn(stale, "k1", true)).await.unwrap_err();
    assert!(matches!(err, Error::NotCommitted), "{err}");
    // Read-only: no log record, commits at its read version.
    let records = log.stats().records;
    let ro = Commit {
        read_version: last,
        mutations: vec![],
        read_conflict_ranges: vec![KeyRange::single(b"k1")],
        write_conflict_ranges: vec![],
    };
    assert_eq!(p.commit(ro).await.unwrap(), last);
    assert_eq!(log.stats().records, records);
    // A read version the coordinator never handed out.
    let err = p.commit(txn(last.next(), "z", false)).await.unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    // Older than the MVCC window.
    clock.advance(2 * Version::MVCC_WINDOW);
    let err = p.commit(txn(last, "z", true)).await.unwrap_err();
    assert!(matches!(err, Error::TransactionTooOld { .. }), "{err}");
    assert_eq!(p.stats().too_old, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_queued_commits_then_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let (log, p) = start(dir.path(), ManualClock::new(1_000));
    let gate = p.gate().await;
    let mut tasks = Vec::new();
    for i in 0..5 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            p.commit(txn(Version::ZERO, &format!("k{i}"), false)).await
        }));
    }
    wait_queued(&p, 5).await;
    let stopper = tokio::spawn({
        let p = p.clone();
        async move { p.shutdown().await }
    });
    // The stop request queues behind the commits before the batcher runs.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !p.stop_queued() {
        assert!(
            std::time::Instant::now() < deadline,
            "the stop never queued"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    drop(gate);
    stopper.await.unwrap();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let err = p
        .commit(txn(Version::ZERO, "late", false))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err}");
    assert_eq!(log.stats().records, 1);
    drop(p);
    drop(log);
    let (_, rec) = CommitLog::open(dir.path(), LogOptions::default()).unwrap();
    assert_eq!(rec.batches, 1);
}
