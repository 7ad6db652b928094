//! Tests of the coordinator handle: pulls (clipping, long poll, size cap), mutation feeds,
//! recovery after a restart, and truncation gated on every storage server's durable version.

use std::path::Path;

use ferrisdb_core::Mutation;

use super::*;
use crate::coordinator::clock::ManualClock;

fn open(dir: &Path, clock: &ManualClock) -> CoordinatorHandle {
    let mut opts = CoordinatorOptions::new(dir);
    opts.log.segment_bytes = 1; // one record per segment: exercises rotation and removal
    Coordinator::open_with_clock(opts, clock.clone()).unwrap()
}

fn blind(rv: Version, muts: Vec<Mutation>) -> Commit {
    Commit {
        read_version: rv,
        mutations: muts,
        read_conflict_ranges: vec![],
        write_conflict_ranges: vec![KeyRange::all()],
        idempotency: None,
    }
}

/// Commits keys `k0`, `k1`, … one transaction each; returns their commit versions.
async fn commit_keys(c: &CoordinatorHandle, n: usize) -> Vec<Version> {
    let mut vs = Vec::new();
    for i in 0..n {
        let rv = c.read_version();
        vs.push(
            c.commit(blind(rv, vec![set(&format!("k{i}"), "v")]))
                .await
                .map(|c| c.version)
                .unwrap(),
        );
    }
    vs
}

fn set(k: &str, v: &str) -> Mutation {
    Mutation::Set {
        key: k.to_owned().into(),
        value: v.to_owned().into(),
    }
}

fn range(b: &'static str, e: &'static str) -> KeyRange {
    KeyRange::new(b, e).unwrap()
}

fn pull(after: Version, ranges: Vec<KeyRange>) -> Pull {
    Pull {
        after,
        ranges,
        max_bytes: 0,
        wait: Duration::ZERO,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_are_clipped_long_poll_and_respect_the_size_cap() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000);
    let c = open(dir.path(), &clock);
    // A long poll that a commit wakes up.
    let start = c.read_version();
    let waiter = tokio::spawn({
        let c = c.clone();
        async move {
            let mut p = pull(start, vec![range("a", "m")]);
            p.wait = Duration::from_secs(30);
            c.pull(p).await
        }
    });
    // The pull is waiting (it watches for the shutdown only while it waits).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while c.shutdown_watchers() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the pull never waited"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(!waiter.is_finished());
    let clear_all = Mutation::ClearRange {
        begin: "".into(),
        end: "".into(),
    };
    let v1 = c
        .commit(blind(
            Version::ZERO,
            vec![set("a", "1"), set("z", "2"), clear_all],
        ))
        .await
        .map(|c| c.version)
        .unwrap();
    let got = waiter.await.unwrap().unwrap();
    assert_eq!(got.committed_through, v1);
    assert_eq!(got.batches.len(), 1);
    assert_eq!(
        got.batches[0].mutations,
        vec![
            set("a", "1"),
            Mutation::ClearRange {
                begin: "a".into(),
                end: "m".into()
            }
        ]
    );
    // A version touching none of the ranges is covered by committed_through only.
    let v2 = c
        .commit(blind(v1, vec![set("z", "3")]))
        .await
        .map(|c| c.version)
        .unwrap();
    let got = c.pull(pull(v1, vec![range("a", "m")])).await.unwrap();
    assert!(got.batches.is_empty());
    assert_eq!(got.committed_through, v2);
    // Nothing newer and no wait: empty, through = after.
    let got = c.pull(pull(v2, vec![KeyRange::all()])).await.unwrap();
    assert_eq!((got.batches.len(), got.committed_through), (0, v2));
    // Size cap: one version per response.
    let v3 = c
        .commit(blind(v2, vec![set("b", "x")]))
        .await
        .map(|c| c.version)
        .unwrap();
    let mut p = pull(Version::ZERO, vec![KeyRange::all()]);
    p.max_bytes = 1;
    let got = c.pull(p).await.unwrap();
    assert_eq!(got.batches.len(), 1);
    assert_eq!(got.committed_through, v1);
    let got = c.pull(pull(v1, vec![KeyRange::all()])).await.unwrap();
    let versions: Vec<_> = got.batches.iter().map(|b| b.version).collect();
    assert_eq!(versions, vec![v2, v3]);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutation_feed_delivers_every_version_in_order_and_catches_up_in_one_message() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000);
    let c = open(dir.path(), &clock);
    let mut feed = c
        .mutation_feed(c.read_version(), vec![range("a", "m")], 0)
        .unwrap();
    // Three commits before the follower asks: one message carries both in-range versions.
    let mut versions = Vec::new();
    for (k, v) in [("a", "1"), ("z", "2"), ("b", "3")] {
        versions.push(
            c.commit(blind(Version::ZERO, vec![set(k, v)]))
                .await
                .map(|c| c.version)
                .unwrap(),
        );
    }
    let mut got = Vec::new();
    let mut through = Version::ZERO;
    while through < versions[2] {
        let message = feed.next().await.unwrap().unwrap();
        assert!(message.committed_through > through);
        for b in message.batches {
            assert!(b.version > through && b.version <= message.committed_through);
            got.push((b.version, b.mutations));
        }
        through = message.committed_through;
    }
    assert_eq!(
        got,
        vec![
            (versions[0], vec![set("a", "1")]),
            (versions[2], vec![set("b", "3")]),
        ]
    );
    // Caught up, the feed waits for the next commit and continues after the last message:
    // polled now it has nothing to deliver (but an empty message, if an idle tick moved the
    // committed version), and the commit made while it waits wakes it.
    let mut committed = None;
    let mut delivered = Vec::new();
    while delivered.is_empty() {
        let next = feed.next();
        tokio::pin!(next);
        let ready = tokio::select! {
            biased;
            message = &mut next => Some(message),
            () = std::future::ready(()) => None,
        };
        let message = match ready {
            Some(message) => message,
            None => {
                if committed.is_none() {
                    let v = c
                        .commit(blind(Version::ZERO, vec![set("c", "4")]))
                        .await
                        .map(|c| c.version)
                        .unwrap();
                    committed = Some(v);
                }
                next.await
            }
        };
        let message = message.unwrap().unwrap();
        assert!(message.committed_through > through);
        through = message.committed_through;
        if committed.is_none() {
            assert!(message.batches.is_empty(), "nothing was committed yet");
        }
        delivered.extend(message.batches.into_iter().map(|b| b.version));
    }
    assert_eq!(Some(delivered), committed.map(|v| vec![v]));
    // Shutting down ends the feed instead of leaving it waiting.
    c.begin_shutdown();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), feed.next()).await {
            Ok(None) => break,
            Ok(Some(message)) => assert!(message.is_ok()),
            Err(_) => panic!("the feed kept waiting after shutdown began"),
        }
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_every_commit_and_jumps_the_mvcc_window() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000);
    let mut acked = Vec::new();
    {
        let c = open(dir.path(), &clock);
        for i in 0..10 {
            let rv = c.read_version();
            acked.push(
                c.commit(blind(rv, vec![set(&format!("k{i}"), "v")]))
                    .await
                    .map(|c| c.version)
                    .unwrap(),
            );
        }
        c.shutdown().await;
    }
    let last = *acked.last().unwrap();
    let c = open(dir.path(), &clock);
    // Ten commits plus the first generation's empty recovery commit.
    assert_eq!(c.recovered().batches, 11);
    assert_eq!(c.recovered().last_version, last);
    // The new generation starts after the old one.
    assert!(c.read_version() > last);
    let got = c
        .pull(pull(Version::ZERO, vec![KeyRange::all()]))
        .await
        .unwrap();
    let versions: Vec<_> = got.batches.iter().map(|b| b.version).collect();
    assert_eq!(versions, acked);
    let v = c
        .commit(blind(last, vec![set("new", "v")]))
        .await
        .map(|c| c.version)
        .unwrap();
    assert!(v > c.recovered().last_version, "{v} vs {last}");
    // A transaction that read in the previous generation cannot commit: this resolver has
    // no history from then.
    let mut stale = blind(last, vec![set("k1", "again")]);
    stale.read_conflict_ranges = vec![KeyRange::single(b"k1")];
    let err = c.commit(stale).await.unwrap_err();
    assert!(matches!(err, Error::TransactionTooOld { .. }), "{err}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_truncated_only_when_every_storage_server_reported() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000);
    let c = open(dir.path(), &clock);
    let vs = commit_keys(&c, 4).await;
    // Reports before the shard map is known never truncate.
    c.report_durable("s1", vs[3]).await.unwrap();
    assert!(
        c.pull(pull(Version::ZERO, vec![KeyRange::all()]))
            .await
            .is_ok()
    );
    let ids: BTreeSet<String> = ["s1", "s2"].into_iter().map(String::from).collect();
    c.set_storage_servers(ids).await.unwrap();
    assert_eq!(c.min_durable(), None);
    assert!(
        c.pull(pull(Version::ZERO, vec![KeyRange::all()]))
            .await
            .is_ok()
    );
    c.report_durable("s2", vs[1]).await.unwrap();
    assert_eq!(c.min_durable(), Some(vs[1]));
    let err = c
        .pull(pull(Version::ZERO, vec![KeyRange::all()]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TransactionTooOld { .. }), "{err}");
    // A feed that needs truncated versions fails once, then ends.
    let mut feed = c
        .mutation_feed(Version::ZERO, vec![KeyRange::all()], 0)
        .unwrap();
    let err = feed.next().await.unwrap().unwrap_err();
    assert!(matches!(err, Error::TransactionTooOld { .. }), "{err}");
    assert!(feed.next().await.is_none());
    let got = c.pull(pull(vs[1], vec![KeyRange::all()])).await.unwrap();
    assert_eq!(got.batches.len(), 2);
    assert_eq!(c.stats().log.retained_batches, 2);
    assert!(c.report_durable("", vs[0]).await.is_err());
    // What `status` shows: every storage server of the map with what it reported, and how
    // far the log is truncated.
    let (holders, truncated) = c.log_holders();
    assert_eq!(truncated, vs[1]);
    let reported: Vec<_> = holders
        .iter()
        .map(|h| (h.storage_id.as_str(), h.durable))
        .collect();
    assert_eq!(reported, [("s1", Some(vs[3])), ("s2", Some(vs[1]))]);
    let ids: BTreeSet<String> = ["s1", "s3"].into_iter().map(String::from).collect();
    c.set_storage_servers(ids).await.unwrap();
    let (holders, _) = c.log_holders();
    assert_eq!(holders[1].storage_id, "s3");
    assert_eq!(holders[1].durable, None, "s3 never reported");
    assert!(holders[1].since_report >= holders[0].since_report);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redundant_version_is_the_least_of_each_shards_most_durable_replica() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000);
    let c = open(dir.path(), &clock);
    let vs = commit_keys(&c, 4).await;
    assert_eq!(c.redundant_through(), None, "shards not known yet");
    let shards = |pairs: &[[&str; 2]]| -> Vec<Vec<String>> {
        pairs
            .iter()
            .map(|p| p.iter().map(|s| s.to_string()).collect())
            .collect()
    };
    c.set_shards(shards(&[["s1", "s2"], ["s2", "s3"]]))
        .await
        .unwrap();
    assert_eq!(c.redundant_through(), Some(Version::ZERO));
    c.report_durable("s1", vs[3]).await.unwrap();
    // The second shard has no replica durable anywhere yet.
    assert_eq!(c.redundant_through(), Some(Version::ZERO));
    c.report_durable("s3", vs[2]).await.unwrap();
    assert_eq!(c.redundant_through(), Some(vs[2]));
    // s2 lags (or is gone): it holds back truncation, not the redundant version.
    c.report_durable("s2", vs[0]).await.unwrap();
    assert_eq!(c.min_durable(), Some(vs[0]));
    assert_eq!(c.redundant_through(), Some(vs[2]));
    // A shard whose only replica lags bounds it.
    c.set_shards(shards(&[["s1", "s2"], ["s2", "s3"], ["s2", "s2"]]))
        .await
        .unwrap();
    assert_eq!(c.redundant_through(), Some(vs[0]));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_log_refuses_every_commit_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000);
    let mut opts = CoordinatorOptions::new(dir.path().join("log"));
    // Every record seals its segment, so the next commit must create a new file.
    opts.log.segment_bytes = 1;
    let c = Coordinator::open_with_clock(opts, clock.clone()).unwrap();
    let mut failure = c.failure().unwrap();
    assert!(failure.borrow().is_none());
    c.commit(blind(c.read_version(), vec![set("a", "1")]))
        .await
        .map(|c| c.version)
        .unwrap();
    // The directory disappears: the next segment cannot be created.
    std::fs::remove_dir_all(dir.path().join("log")).unwrap();
    let err = c
        .commit(blind(c.read_version(), vec![set("b", "2")]))
        .await
        .map(|c| c.version)
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err}");
    let reason = tokio::time::timeout(Duration::from_secs(10), failure.wait_for(Option::is_some))
        .await
        .expect("the failure is announced")
        .unwrap()
        .clone()
        .unwrap();
    assert!(reason.contains("commit log write failed"), "{reason}");
    let err = c
        .commit(blind(c.read_version(), vec![set("c", "3")]))
        .await
        .map(|c| c.version)
        .unwrap_err();
    assert!(
        matches!(&err, Error::Unavailable(m) if m.contains(&reason)),
        "a later refusal names the cause: {err}"
    );
    c.shutdown().await;
}

/// Regression: after a quiet spell longer than the MVCC window, a fresh read version must
/// still commit a read-write transaction (the idle ticker keeps the committed version moving).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_versions_stay_fresh_while_idle() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000);
    let c = open(dir.path(), &clock);
    let first = c
        .commit(blind(c.read_version(), vec![set("a", "1")]))
        .await
        .map(|c| c.version)
        .unwrap();
    // Six seconds pass with no commits.
    clock.advance(6 * Version::PER_SECOND);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while c.read_version().get() < first.get() + 6 * Version::PER_SECOND {
        assert!(
            std::time::Instant::now() < deadline,
            "the committed version never moved"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rv = c.read_version();
    let read_write = Commit {
        read_version: rv,
        mutations: vec![set("b", "2")],
        read_conflict_ranges: vec![range("a", "b")],
        write_conflict_ranges: vec![range("b", "c")],
        idempotency: None,
    };
    let v = c
        .commit(read_write)
        .await
        .map(|c| c.version)
        .expect("a fresh read version is not too old");
    assert!(v > rv);
}
