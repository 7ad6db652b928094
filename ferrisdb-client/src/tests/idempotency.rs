//! Idempotency ids across retries, versionstamped writes in the write map, cancellation.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use ferrisdb_core::{Error, Mutation, Result, Version};

use super::mem;
use crate::{RangeOptions, TransactionOption};

/// Runs a transaction with automatic idempotency whose commits first fail with `errors`; the
/// backend's read version is 100 on the first attempt and 100 + 100·n on attempt n.
async fn run_failing(errors: Vec<Error>) -> Vec<ferrisdb_core::Commit> {
    let (backend, db) = mem(&[]);
    backend.commit_errors.lock().extend(errors);
    let attempts = Arc::new(AtomicU32::new(0));
    let b = backend.clone();
    db.run(|tx| {
        let (attempts, b) = (attempts.clone(), b.clone());
        async move {
            let n = attempts.fetch_add(1, Ordering::SeqCst);
            *b.read_version.lock() = Version(100 + 100 * u64::from(n));
            tx.set_option(TransactionOption::AutomaticIdempotency);
            tx.get("k").await?;
            tx.set("k", "v")
        }
    })
    .await
    .unwrap();
    backend.sent.lock().clone()
}

#[tokio::test]
async fn a_retry_after_an_unknown_result_carries_the_id_and_the_first_attempts_version() {
    let sent = run_failing(vec![Error::CommitUnknownResult("lost".into())]).await;
    assert_eq!(sent.len(), 2);
    let (first, retry) = (&sent[0], &sent[1]);
    let (a, b) = (
        first.idempotency.as_ref().unwrap(),
        retry.idempotency.as_ref().unwrap(),
    );
    assert_eq!(a.id.len(), 16);
    assert_eq!(a.id, b.id, "one id for every attempt");
    assert_eq!(first.read_version, Version(100));
    assert_eq!(retry.read_version, Version(200));
    // The coordinator must look for the id from the attempt that may have committed.
    assert_eq!(a.first_read_version, Version(100));
    assert_eq!(b.first_read_version, Version(100));
}

#[tokio::test]
async fn a_retry_after_a_conflict_looks_only_from_its_own_read_version() {
    let sent = run_failing(vec![
        Error::NotCommitted,
        Error::CommitUnknownResult("lost".into()),
        Error::NotCommitted,
    ])
    .await;
    let firsts: Vec<Version> = sent
        .iter()
        .map(|c| c.idempotency.as_ref().unwrap().first_read_version)
        .collect();
    // Attempt 1 conflicted (did not commit); attempt 2's result was unknown: from then on
    // every attempt names attempt 2's read version.
    assert_eq!(
        firsts,
        vec![Version(100), Version(200), Version(200), Version(200)]
    );
}

#[tokio::test]
async fn a_blind_write_with_an_id_sends_a_read_version() {
    let (backend, db) = mem(&[]);
    let tx = db.create_transaction();
    tx.set_idempotency_id("job-7").unwrap();
    tx.set("k", "v").unwrap();
    tx.commit().await.unwrap();
    let sent = backend.sent.lock().clone();
    assert_eq!(sent[0].read_version, Version(100));
    assert_eq!(sent[0].idempotency.as_ref().unwrap().id, "job-7");
    // Without an id a blind write skips the read version.
    let tx = db.create_transaction();
    tx.set("k", "v").unwrap();
    tx.commit().await.unwrap();
    assert_eq!(backend.sent.lock()[1].read_version, Version::ZERO);
}

fn stamped(prefix: &[u8]) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&[0u8; 10]);
    k.extend_from_slice(&(prefix.len() as u32).to_le_bytes());
    k
}

#[tokio::test]
async fn versionstamped_writes_are_sent_last_and_their_keys_unreadable() {
    let (backend, db) = mem(&[("q/a", "1")]);
    let tx = db.create_transaction();
    tx.set_versionstamped_key(stamped(b"q/"), "event").unwrap();
    tx.set_versionstamped_value("last", stamped(b"at:"))
        .unwrap();
    tx.set("plain", "1").unwrap();
    // The stamped key is invisible; the stamped value's key is unreadable, alone or in a range.
    let all = tx
        .get_range("q/", "q0", RangeOptions::default())
        .collect_vec()
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    assert!(matches!(
        tx.get("last").await,
        Err(Error::AccessedUnreadable(_))
    ));
    assert!(matches!(
        tx.get_range("a", "z", RangeOptions::default())
            .collect_vec()
            .await,
        Err(Error::AccessedUnreadable(_))
    ));
    assert!(matches!(
        tx.add("last", 1u64.to_le_bytes()),
        Err(Error::InvalidArgument(_))
    ));
    tx.reset();
    tx.set_versionstamped_key(stamped(b"q/"), "event").unwrap();
    tx.set_versionstamped_value("last", stamped(b"at:"))
        .unwrap();
    tx.set("plain", "1").unwrap();
    tx.commit().await.unwrap();
    let sent = backend.sent.lock();
    let kinds: Vec<&str> = sent[0]
        .mutations
        .iter()
        .map(|m| match m {
            Mutation::Set { .. } => "set",
            Mutation::SetVersionstampedValue { .. } => "stamped value",
            Mutation::SetVersionstampedKey { .. } => "stamped key",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["stamped value", "set", "stamped key"]);
    // The stamped key's conflict range covers every key its stamp can give.
    assert!(
        sent[0]
            .write_conflict_ranges
            .iter()
            .any(|r| r.contains(b"q/\x00\x00\x00\x00\x00\x00\x00\x09\x00\x01"))
    );
}

#[tokio::test]
async fn a_clear_covering_every_possible_stamped_key_removes_it() {
    let (backend, db) = mem(&[]);
    let tx = db.create_transaction();
    tx.set_versionstamped_key(stamped(b"q/"), "event").unwrap();
    tx.clear_range("q/", "q0").unwrap();
    tx.commit().await.unwrap();
    // A clear of only some of the keys the stamp can give is refused (and poisons).
    let tx = db.create_transaction();
    tx.set_versionstamped_key(stamped(b"q/"), "event").unwrap();
    let err = tx
        .clear_range(b"q/\x00\x00\x00\x00\x00\x00\x00\x05", "q0")
        .unwrap_err();
    assert!(err.to_string().contains("versionstamped"), "{err}");
    assert!(tx.commit().await.is_err());
    assert!(
        !backend.sent.lock()[0]
            .mutations
            .iter()
            .any(Mutation::is_versionstamped)
    );
}

#[tokio::test]
async fn cancel_ends_an_operation_in_flight() {
    let (_backend, db) = mem(&[]);
    let tx = db.create_transaction();
    let waiting = tx.clone();
    let op =
        tokio::spawn(async move { waiting.guarded(std::future::pending::<Result<()>>()).await });
    tokio::task::yield_now().await;
    tx.cancel();
    assert!(matches!(
        op.await.unwrap(),
        Err(Error::TransactionCancelled)
    ));
}
