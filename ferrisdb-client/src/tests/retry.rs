//! The retry loop: which errors retry, backoff with cache invalidation, limits and timeouts,
//! commit-unknown handling; and watches.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use ferrisdb_core::Error;

use super::{b, mem};
use crate::DatabaseOptions;

#[tokio::test]
async fn run_retries_retryable_errors_and_returns_the_value() {
    let (backend, db) = mem(&[("k", "1")]);
    backend.commit_errors.lock().extend([
        Error::NotCommitted,
        Error::WrongShard("moved".into()),
        Error::CommitUnknownResult("lost".into()),
    ]);
    let attempts = Arc::new(AtomicU32::new(0));
    let seen = attempts.clone();
    let value = db
        .run(|tx| {
            let seen = seen.clone();
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                // Each attempt starts from a clean transaction.
                assert_eq!(tx.get("mine").await?, None);
                tx.set("mine", "x")?;
                tx.get("k").await
            }
        })
        .await
        .unwrap();
    assert_eq!(value, Some(b("1")));
    assert_eq!(attempts.load(Ordering::SeqCst), 4);
    assert_eq!(backend.commits.lock().len(), 1);
    let invalidated = backend.invalidated.lock();
    assert!(
        invalidated
            .iter()
            .any(|e| matches!(e, Error::WrongShard(_))),
        "wrong_shard drops the shard map: {invalidated:?}"
    );
}

#[tokio::test]
async fn run_with_outcome_reports_the_commit_version_the_retries_and_maybe_committed() {
    let (backend, db) = mem(&[]);
    backend.commit_errors.lock().extend([
        Error::NotCommitted,
        Error::CommitUnknownResult("lost".into()),
        Error::NotCommitted,
    ]);
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let outcome = db
        .run_with_outcome(|tx| {
            let seen = seen.clone();
            async move {
                seen.lock().push(tx.maybe_committed());
                tx.set("k", "v")
            }
        })
        .await
        .unwrap();
    // Only the attempts after the unknown result may find it committed.
    assert_eq!(*seen.lock(), [false, false, true, true]);
    assert_eq!(
        outcome.retries,
        [
            (ferrisdb_core::ErrorCode::NotCommitted, 2),
            (ferrisdb_core::ErrorCode::CommitUnknownResult, 1)
        ]
    );
    assert!(outcome.commit_version.is_some_and(|v| v.get() > 0));
    // A transaction that wrote nothing has no commit version.
    let read_only = db
        .run_with_outcome(|tx| async move { tx.get("k").await })
        .await
        .unwrap();
    assert_eq!(read_only.commit_version, None);
    assert!(read_only.retries.is_empty());
}

#[tokio::test]
async fn transaction_options_override_the_database_and_last_across_retries() {
    use crate::TransactionOption;
    let (backend, db) = mem(&[]);
    // A per-transaction retry limit: two retries, then the error.
    backend
        .commit_errors
        .lock()
        .extend((0..5).map(|_| Error::NotCommitted));
    let err = db
        .run(|tx| async move {
            tx.set_option(TransactionOption::RetryLimit(2));
            tx.set_option(TransactionOption::MaxRetryDelay(Duration::from_millis(1)));
            tx.set("k", "v")
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotCommitted), "{err}");
    assert_eq!(backend.commit_errors.lock().len(), 2, "three attempts made");

    // A per-transaction timeout ends a loop that would otherwise retry for 30 s.
    backend.commit_errors.lock().clear();
    backend
        .commit_errors
        .lock()
        .extend((0..100_000).map(|_| Error::NotCommitted));
    let err = db
        .run(|tx| async move {
            tx.set_option(TransactionOption::Timeout(Duration::from_millis(50)));
            tx.set("k", "v")
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::TimedOut(m) if m.contains("50ms")),
        "{err}"
    );
    backend.commit_errors.lock().clear();

    // Read-only: writes are refused and the attempt cannot commit; reads work.
    let tx = db.create_transaction();
    tx.set_option(TransactionOption::ReadOnly);
    assert!(tx.get("k").await.unwrap().is_none());
    let err = tx.set("k", "v").unwrap_err();
    assert!(err.to_string().contains("read-only"), "{err}");
    assert!(tx.commit().await.is_err());
    tx.reset();
    tx.set("k", "v").unwrap();

    // The size estimate grows with the writes.
    let tx = db.create_transaction();
    assert_eq!(tx.approximate_size(), 0);
    tx.set("key", "value").unwrap();
    let one = tx.approximate_size();
    assert!(one >= 8, "{one}");
    tx.clear_range("a", "b").unwrap();
    assert!(tx.approximate_size() > one);
}

#[tokio::test]
async fn non_retryable_errors_and_used_up_limits_are_returned() {
    let (backend, db) = mem(&[]);
    let err = db
        .run(|tx| async move {
            tx.set("k", "v")?;
            Err::<(), _>(Error::InvalidArgument("app says no".into()))
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)));

    let db = db.with_options(DatabaseOptions {
        retry_limit: Some(2),
        ..DatabaseOptions::default()
    });
    backend
        .commit_errors
        .lock()
        .extend((0..5).map(|_| Error::NotCommitted));
    let err = db
        .run(|tx| async move { tx.set("k", "v") })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotCommitted), "{err}");
    assert_eq!(backend.commit_errors.lock().len(), 2, "three attempts made");
}

#[tokio::test]
async fn the_timeout_bounds_the_loop() {
    let (backend, db) = mem(&[]);
    let db = db.with_options(DatabaseOptions {
        timeout: Some(Duration::from_millis(50)),
        initial_backoff: Duration::from_millis(20),
        ..DatabaseOptions::default()
    });
    backend
        .commit_errors
        .lock()
        .extend((0..1000).map(|_| Error::NotCommitted));
    let err = db
        .run(|tx| async move { tx.set("k", "v") })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TimedOut(_)), "{err}");
}

#[tokio::test]
async fn an_unbounded_timeout_does_not_overflow() {
    // `Duration::MAX` used to overflow the deadline instant and panic.
    let (backend, db) = mem(&[("k", "1")]);
    let db = db.with_options(DatabaseOptions {
        timeout: Some(Duration::MAX),
        max_backoff: Duration::MAX,
        watch_timeout: Duration::MAX,
        watch_poll_max: Duration::from_millis(10),
        ..DatabaseOptions::default()
    });
    backend
        .commit_errors
        .lock()
        .extend((0..3).map(|_| Error::NotCommitted));
    db.run(|tx| async move { tx.set("k", "2") }).await.unwrap();
    assert!(backend.commit_errors.lock().is_empty(), "every retry made");
    let watch = db.create_transaction().watch("k").await.unwrap();
    backend.data.lock().insert(b("k"), Bytes::from_static(b"3"));
    watch.await.unwrap();
}

#[tokio::test]
async fn a_hand_driven_loop_can_tell_commit_unknown_apart() {
    let (backend, db) = mem(&[]);
    backend
        .commit_errors
        .lock()
        .push_back(Error::CommitUnknownResult("coordinator died".into()));
    let tx = db.create_transaction();
    tx.set("k", "v").unwrap();
    let err = tx.commit().await.unwrap_err();
    assert!(err.is_commit_unknown() && err.is_retryable());
    tx.on_error(err).await.unwrap();
    assert_eq!(tx.retries(), 1);
    assert!(
        tx.pending_commit().0.is_empty(),
        "on_error resets the writes"
    );
    tx.set("k", "v").unwrap();
    tx.commit().await.unwrap();
    assert!(matches!(tx.set("k", "w"), Err(Error::InvalidArgument(_))));
    tx.reset();
    assert_eq!(tx.retries(), 0);
    tx.set("k", "w").unwrap();
}

#[tokio::test]
async fn read_only_transactions_commit_without_the_network() {
    let (backend, db) = mem(&[("k", "v")]);
    let tx = db.create_transaction();
    tx.get("k").await.unwrap();
    let calls = backend.calls.load(Ordering::SeqCst);
    tx.commit().await.unwrap();
    assert_eq!(backend.calls.load(Ordering::SeqCst), calls);
    assert_eq!(tx.committed_version(), None);
}

#[tokio::test]
async fn read_errors_surface_and_set_read_version_is_used() {
    let (backend, db) = mem(&[("k", "v")]);
    let tx = db.create_transaction();
    tx.set_read_version(ferrisdb_core::Version(42));
    assert_eq!(tx.get_read_version().await.unwrap().get(), 42);
    backend.read_errors.lock().push_back(Error::FutureVersion {
        read_version: 42,
        applied: 41,
    });
    let err = tx.get("k").await.unwrap_err();
    assert!(err.is_retryable());
}

#[tokio::test]
async fn watches_fire_when_the_value_changes() {
    let (backend, db) = mem(&[("k", "1")]);
    let db = db.with_options(DatabaseOptions {
        watch_poll_max: Duration::from_millis(20),
        ..DatabaseOptions::default()
    });
    let tx = db.create_transaction();
    let watch = tx.watch("k").await.unwrap();
    let changer = {
        let backend = backend.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            backend.data.lock().insert(b("k"), Bytes::from_static(b"2"));
        })
    };
    watch.await.unwrap();
    changer.await.unwrap();

    // A watch that sees no change gives up after its bound.
    let db = db.with_options(DatabaseOptions {
        watch_poll_max: Duration::from_millis(10),
        watch_timeout: Duration::from_millis(60),
        ..DatabaseOptions::default()
    });
    let watch = db.create_transaction().watch("k").await.unwrap();
    assert!(matches!(watch.await, Err(Error::TimedOut(_))));
}

#[tokio::test]
async fn prepared_commits_and_read_versions_are_one_attempt_that_drops_stale_state() {
    let (backend, db) = mem(&[]);
    let commit = ferrisdb_core::Commit {
        read_version: ferrisdb_core::Version(100),
        mutations: vec![ferrisdb_core::Mutation::Set {
            key: b("k"),
            value: b("v"),
        }],
        read_conflict_ranges: vec![],
        write_conflict_ranges: vec![ferrisdb_core::KeyRange::single(b"k")],
        idempotency: None,
    };
    backend
        .commit_errors
        .lock()
        .push_back(Error::CommitUnknownResult("lost".into()));
    let err = db.commit_prepared(commit.clone()).await.unwrap_err();
    assert!(matches!(err, Error::CommitUnknownResult(_)), "{err:?}");
    assert_eq!(
        backend.sent.lock().len(),
        1,
        "no retry of a prepared commit"
    );
    assert!(
        matches!(
            backend.invalidated.lock().as_slice(),
            [Error::Internal(m)] if m.contains("lost")
        ),
        "the failed commit drops the cached coordinator"
    );
    db.commit_prepared(commit.clone()).await.unwrap();
    assert_eq!(
        backend.commits.lock().last(),
        Some(&commit),
        "sent exactly as built"
    );

    let newest = *backend.read_version.lock();
    assert_eq!(
        db.read_version(crate::Priority::Default).await.unwrap(),
        newest
    );
    backend
        .read_errors
        .lock()
        .push_back(Error::Unavailable("coordinator gone".into()));
    let err = db
        .read_version(crate::Priority::Immediate)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    assert_eq!(backend.invalidated.lock().len(), 2);
}
