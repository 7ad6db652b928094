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
use crate::coordinator::idempotency;
use crate::coordinator::resolver::ResolverConfig;
use crate::log::LogOptions;

fn start(dir: &Path, clock: ManualClock) -> (Arc<CommitLog>, Arc<Pipeline>) {
    start_with_retention(
        dir,
        clock,
        idempotency::retention_versions(idempotency::DEFAULT_RETENTION),
    )
}

fn start_with_retention(
    dir: &Path,
    clock: ManualClock,
    id_retention: u64,
) -> (Arc<CommitLog>, Arc<Pipeline>) {
    start_with(dir, clock, id_retention, BatchLimits::default())
}

fn start_with(
    dir: &Path,
    clock: ManualClock,
    id_retention: u64,
    limits: BatchLimits,
) -> (Arc<CommitLog>, Arc<Pipeline>) {
    let (log, rec) = CommitLog::open(dir, LogOptions::default()).unwrap();
    let log = Arc::new(log);
    let pipeline = Pipeline::start(
        log.clone(),
        rec.last_version,
        Sequencer::recover(clock, rec.last_version),
        Resolver::new(ResolverConfig::default()),
        limits,
        id_retention,
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
        idempotency: None,
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
            p.commit(txn(Version::ZERO, &format!("k{i}"), false))
                .await
                .map(|c| c.version)
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
            p.commit(txn(Version::ZERO, &format!("k{i}"), false))
                .await
                .map(|c| c.version)
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
        async move {
            p.commit(txn(Version::ZERO, "x", true))
                .await
                .map(|c| c.version)
        }
    });
    wait_queued(&p, 1).await;
    let second = tokio::spawn({
        let p = p.clone();
        async move {
            p.commit(txn(Version::ZERO, "x", true))
                .await
                .map(|c| c.version)
        }
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

/// A storage server may apply a version a moment before the coordinator's committed version
/// shows it (the batch is published just before), and a client may read at it: its commit
/// waits for the committed version instead of being refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_version_just_ahead_of_the_committed_version_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, p) = start(dir.path(), ManualClock::new(1_000));
    let rv = p.committed_version();
    let ahead = rv.next();
    let early = {
        let p = p.clone();
        tokio::spawn(async move { p.commit(txn(ahead, "x", true)).await })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(
        !early.is_finished(),
        "refused before the version was committed"
    );
    // Any commit takes a version past `ahead`.
    let v = p.commit(txn(rv, "y", false)).await.unwrap().version;
    assert!(v >= ahead);
    let committed = early
        .await
        .unwrap()
        .expect("accepted once its read version committed");
    assert!(committed.version > v);
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
            .map(|c| c.version)
            .unwrap();
        assert!(v > last && v > rv, "{v} after {last}");
        assert_eq!(p.committed_version(), v);
        last = v;
        first.get_or_insert(v);
    }
    // A stale reader of a key written since conflicts.
    let stale = first.unwrap();
    let err = p
        .commit(txn(stale, "k1", true))
        .await
        .map(|c| c.version)
        .unwrap_err();
    assert!(matches!(err, Error::NotCommitted), "{err}");
    // Read-only: no log record, commits at its read version.
    let records = log.stats().records;
    let ro = Commit {
        read_version: last,
        mutations: vec![],
        read_conflict_ranges: vec![KeyRange::single(b"k1")],
        write_conflict_ranges: vec![],
        idempotency: None,
    };
    assert_eq!(p.commit(ro).await.map(|c| c.version).unwrap(), last);
    assert_eq!(log.stats().records, records);
    // A read version the coordinator never handed out.
    let err = p
        .commit(txn(last.next(), "z", false))
        .await
        .map(|c| c.version)
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    // Older than the MVCC window.
    clock.advance(2 * Version::MVCC_WINDOW);
    let err = p
        .commit(txn(last, "z", true))
        .await
        .map(|c| c.version)
        .unwrap_err();
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
            p.commit(txn(Version::ZERO, &format!("k{i}"), false))
                .await
                .map(|c| c.version)
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
        .map(|c| c.version)
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err}");
    assert_eq!(log.stats().records, 1);
    drop(p);
    drop(log);
    let (_, rec) = CommitLog::open(dir.path(), LogOptions::default()).unwrap();
    assert_eq!(rec.batches, 1);
}

fn with_id(mut c: Commit, id: &str, first_read: Version) -> Commit {
    c.idempotency = Some(ferrisdb_core::IdempotencyId {
        id: bytes::Bytes::copy_from_slice(id.as_bytes()),
        first_read_version: first_read,
    });
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remembered_idempotency_id_is_answered_with_its_commit_and_not_applied_again() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let (log, p) = start(dir.path(), clock.clone());
    let rv = p.committed_version();
    let first = p
        .commit(with_id(txn(rv, "a", false), "t1", rv))
        .await
        .unwrap();
    assert!(!first.already_committed);
    assert_eq!(first.stamp.version(), first.version);
    clock.advance(10);
    // The retry (another write, a newer read version) is not applied.
    let rv2 = p.committed_version();
    let again = p
        .commit(with_id(txn(rv2, "b", true), "t1", rv))
        .await
        .unwrap();
    assert!(again.already_committed);
    assert_eq!((again.version, again.stamp), (first.version, first.stamp));
    assert_eq!(p.stats().already_committed, 1);
    // Two with one id in the same batch: the first commits, the second is answered with it.
    let gate = p.gate().await;
    let (p1, p2) = (p.clone(), p.clone());
    let rv3 = p.committed_version();
    let a = tokio::spawn(async move { p1.commit(with_id(txn(rv3, "c", false), "t2", rv3)).await });
    wait_queued(&p, 3).await;
    let b = tokio::spawn(async move { p2.commit(with_id(txn(rv3, "d", false), "t2", rv3)).await });
    wait_queued(&p, 4).await;
    drop(gate);
    let (a, b) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());
    assert!(!a.already_committed && b.already_committed);
    assert_eq!(a.stamp, b.stamp);
    // The log holds "a" and "c" with their idempotency records, never "b" or "d".
    let keys: Vec<bytes::Bytes> = log
        .read_after(Version::ZERO, p.committed_version(), 100)
        .unwrap()
        .iter()
        .flat_map(|batch| batch.mutations.clone())
        .filter_map(|m| match m {
            Mutation::Set { key, .. } => Some(key),
            _ => None,
        })
        .collect();
    assert!(keys.contains(&bytes::Bytes::from("a")) && keys.contains(&bytes::Bytes::from("c")));
    assert!(!keys.contains(&bytes::Bytes::from("b")) && !keys.contains(&bytes::Bytes::from("d")));
    assert!(keys.contains(&ferrisdb_core::system_keys::idempotency_key(first.stamp)));
    assert!(keys.contains(&ferrisdb_core::system_keys::idempotency_key(a.stamp)));
    // A later transaction reusing an id (its first read after that commit) is not one of its
    // attempts: it commits.
    let later = p.committed_version();
    let reused = p
        .commit(with_id(txn(later, "e", false), "t1", later))
        .await
        .unwrap();
    assert!(!reused.already_committed);
    assert!(reused.version > first.version);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_older_than_the_retention_is_refused_as_fatal_and_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let (_log, p) = start_with_retention(dir.path(), clock.clone(), 1_000);
    p.commit(txn(Version::ZERO, "first", false)).await.unwrap();
    let rv = p.committed_version();
    p.commit(with_id(txn(rv, "a", false), "t1", rv))
        .await
        .unwrap();
    // Versions follow the clock once it passes the recovery floor.
    clock.set(rv.get() + 5_000);
    let err = p
        .commit(with_id(txn(p.committed_version(), "b", false), "t1", rv))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::CommitUnknownResultFatal(_)), "{err}");
    // A fresh first attempt with the same id commits again: the id was forgotten.
    p.commit(txn(Version::ZERO, "later", false)).await.unwrap();
    let now = p.committed_version();
    let again = p
        .commit(with_id(txn(now, "c", false), "t1", now))
        .await
        .unwrap();
    assert!(!again.already_committed);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versionstamps_number_a_batch_and_fill_versionstamped_sets() {
    let dir = tempfile::tempdir().unwrap();
    let (log, p) = start(dir.path(), ManualClock::new(1_000_000));
    let gate = p.gate().await;
    let mut tasks = Vec::new();
    for i in 0..3u8 {
        let pc = p.clone();
        let mut key = vec![b'q', i];
        key.extend_from_slice(&[0u8; 10]);
        key.extend_from_slice(&2u32.to_le_bytes());
        let commit = Commit {
            read_version: Version::ZERO,
            mutations: vec![Mutation::SetVersionstampedKey {
                key: key.into(),
                value: "v".into(),
            }],
            read_conflict_ranges: vec![],
            write_conflict_ranges: vec![],
            idempotency: None,
        };
        tasks.push(tokio::spawn(async move { pc.commit(commit).await }));
        wait_queued(&p, u64::from(i) + 1).await;
    }
    drop(gate);
    let mut stamps = Vec::new();
    for t in tasks {
        stamps.push(t.await.unwrap().unwrap().stamp);
    }
    let indexes: Vec<u16> = stamps.iter().map(|s| s.batch_index()).collect();
    assert_eq!(indexes, [0, 1, 2]);
    let logged: Vec<Mutation> = log
        .read_after(Version::ZERO, p.committed_version(), 100)
        .unwrap()
        .iter()
        .flat_map(|batch| batch.mutations.clone())
        .collect();
    for (i, stamp) in stamps.iter().enumerate() {
        let mut key = vec![b'q', i as u8];
        key.extend_from_slice(&stamp.bytes());
        assert!(
            logged.contains(&Mutation::Set {
                key: key.into(),
                value: "v".into(),
            }),
            "{logged:?}"
        );
    }
    assert!(!logged.iter().any(Mutation::is_versionstamped));
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_counts_as_over_half_full_only_while_commits_pile_up() {
    let dir = tempfile::tempdir().unwrap();
    let limits = BatchLimits {
        queue: 4,
        ..BatchLimits::default()
    };
    let (_log, p) = start_with(
        dir.path(),
        ManualClock::new(1_000_000),
        idempotency::retention_versions(idempotency::DEFAULT_RETENTION),
        limits,
    );
    assert!(!p.queue_over_half());
    let gate = p.gate().await;
    let mut tasks = Vec::new();
    for i in 0..4 {
        let pc = p.clone();
        tasks.push(tokio::spawn(async move {
            pc.commit(txn(Version::ZERO, &format!("k{i}"), false)).await
        }));
        wait_queued(&p, i + 1).await;
    }
    // The batcher took the first one and waits on the gate; three wait in a queue of four.
    assert!(p.queue_over_half());
    drop(gate);
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert!(!p.queue_over_half());
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_times_add_up_over_the_committed_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, p) = start(dir.path(), ManualClock::new(1_000_000));
    let started = std::time::Instant::now();
    for i in 0..20 {
        p.commit(txn(Version::ZERO, &format!("k{i}"), false))
            .await
            .unwrap();
    }
    let elapsed = started.elapsed();
    let s = p.stats().stages;
    // Every commit waited for an fsync, and the stages of sequential commits add up to no
    // more than the time they all took.
    assert!(s.durable > Duration::ZERO, "{s:?}");
    assert!(
        s.queue + s.resolve + s.durable + s.reply <= elapsed,
        "{s:?} vs {elapsed:?}"
    );
    p.shutdown().await;
}
