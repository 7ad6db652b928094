//! Conflict-range bookkeeping and limits checked before any network call.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use ferrisdb_core::{Error, KeyRange, Mutation, key_after, limits};

use super::{b, mem};
use crate::RangeOptions;
use crate::transaction::coalesce;

fn r(begin: &str, end: &str) -> KeyRange {
    KeyRange::new(b(begin), b(end)).unwrap()
}

#[tokio::test]
async fn reads_record_what_they_read_and_snapshots_record_nothing() {
    let (_, db) = mem(&[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]);
    let tx = db.create_transaction();
    tx.get("a").await.unwrap();
    tx.snapshot().get("x").await.unwrap();
    tx.snapshot()
        .get_range("", "", RangeOptions::default())
        .collect_vec()
        .await
        .unwrap();
    assert_eq!(tx.pending_commit().1, vec![KeyRange::single(b"a")]);

    // A limited forward read records up to just after the last key returned.
    let tx = db.create_transaction();
    let got = tx
        .get_range("a", "z", RangeOptions::default().limit(2))
        .collect_vec()
        .await
        .unwrap();
    assert_eq!(got.len(), 2);
    let end = Bytes::from(key_after(b"b"));
    assert_eq!(
        tx.pending_commit().1,
        vec![KeyRange::new(b("a"), end).unwrap()]
    );

    // A limited reverse read records from the last key returned to the end.
    let tx = db.create_transaction();
    tx.get_range("a", "z", RangeOptions::default().limit(2).reverse())
        .collect_vec()
        .await
        .unwrap();
    assert_eq!(tx.pending_commit().1, vec![r("c", "z")]);

    // A complete read records the whole (user) range, in one piece across shard boundaries.
    let tx = db.create_transaction();
    tx.get_range("", "", RangeOptions::default().batch_size(1))
        .collect_vec()
        .await
        .unwrap();
    let user_keys = KeyRange::new(Bytes::new(), Bytes::from_static(b"\xff")).unwrap();
    assert_eq!(tx.pending_commit().1, vec![user_keys]);
    let tx = db.create_transaction();
    tx.set_option(crate::TransactionOption::AccessSystemKeys);
    tx.get_range("", "", RangeOptions::default().batch_size(1))
        .collect_vec()
        .await
        .unwrap();
    assert_eq!(tx.pending_commit().1, vec![KeyRange::all()]);
}

#[tokio::test]
async fn a_refused_write_poisons_the_attempt_so_nothing_commits_partially() {
    let (backend, db) = mem(&[]);
    let tx = db.create_transaction();
    tx.set("a", "1").unwrap();
    let big = vec![b'k'; limits::MAX_KEY_BYTES + 1];
    assert!(matches!(tx.set(&big, "v"), Err(Error::KeyTooLarge { .. })));
    tx.set("b", "2").unwrap();
    let err = tx.commit().await.unwrap_err();
    assert!(matches!(err, Error::KeyTooLarge { .. }), "{err}");
    assert_eq!(backend.commits.lock().len(), 0, "nothing was sent");
    // A system key without the option poisons the same way; a reset clears it.
    tx.reset();
    tx.set("a", "1").unwrap();
    let err = tx.set(b"\xffsys", "v").unwrap_err();
    assert!(err.to_string().contains("system key space"), "{err}");
    assert!(
        tx.commit()
            .await
            .unwrap_err()
            .to_string()
            .contains("system key space")
    );
    tx.reset();
    tx.set("a", "1").unwrap();
    tx.commit().await.unwrap();
    assert_eq!(backend.commits.lock().len(), 1);
}

#[tokio::test]
async fn locally_decided_reads_and_atomics_add_no_read_conflict() {
    let (backend, db) = mem(&[("a", "1")]);
    let tx = db.create_transaction();
    tx.set("k", "v").unwrap();
    tx.clear_range("m", "n").unwrap();
    assert_eq!(tx.get("k").await.unwrap(), Some(b("v")));
    assert_eq!(tx.get("m1").await.unwrap(), None);
    tx.add("counter", 1u64.to_le_bytes()).unwrap();
    assert_eq!(backend.calls.load(Ordering::SeqCst), 0, "no network call");
    let (mutations, reads, writes) = tx.pending_commit();
    assert!(reads.is_empty(), "{reads:?}");
    assert_eq!(mutations.len(), 3);
    assert_eq!(
        writes,
        vec![
            KeyRange::single(b"counter"),
            KeyRange::single(b"k"),
            r("m", "n")
        ]
    );
    // Reading the atomically updated key does read storage, and records it.
    tx.get("counter").await.unwrap();
    assert_eq!(tx.pending_commit().1, vec![KeyRange::single(b"counter")]);
}

#[tokio::test]
async fn explicit_ranges_are_added_and_commit_sends_coalesced_ranges() {
    let (backend, db) = mem(&[]);
    let tx = db.create_transaction();
    tx.add_read_conflict_range("a", "c").unwrap();
    tx.add_read_conflict_range("b", "d").unwrap();
    tx.add_write_conflict_range("x", "y").unwrap();
    tx.set("x1", "v").unwrap();
    assert!(matches!(
        tx.add_read_conflict_range("z", "a"),
        Err(Error::InvalidRange(_))
    ));
    tx.commit().await.unwrap();
    let commits = backend.commits.lock();
    let c = &commits[0];
    assert_eq!(c.read_conflict_ranges, vec![r("a", "d")]);
    assert_eq!(c.write_conflict_ranges, vec![r("x", "y")]);
    assert_eq!(
        c.mutations,
        vec![Mutation::Set {
            key: b("x1"),
            value: b("v")
        }]
    );
    assert_eq!(c.read_version.get(), 100);
    assert!(tx.committed_version().is_some());
}

#[test]
fn coalesce_merges_overlapping_touching_and_unbounded_ranges() {
    let got = coalesce(vec![
        r("d", "e"),
        r("a", "b"),
        r("b", "c"),
        r("q", "q"),
        KeyRange::new(b("x"), Bytes::new()).unwrap(),
        r("y", "z"),
    ]);
    assert_eq!(
        got,
        vec![
            r("a", "c"),
            r("d", "e"),
            KeyRange::new(b("x"), Bytes::new()).unwrap()
        ]
    );
}

#[tokio::test]
async fn limits_fail_before_any_network_call() {
    let (backend, db) = mem(&[]);
    let tx = db.create_transaction();
    let big_key = vec![b'k'; limits::MAX_KEY_BYTES + 1];
    let big_value = vec![0u8; limits::MAX_VALUE_BYTES + 1];
    assert!(matches!(
        tx.get(&big_key).await,
        Err(Error::KeyTooLarge { .. })
    ));
    assert!(matches!(
        tx.set(&big_key, "v"),
        Err(Error::KeyTooLarge { .. })
    ));
    assert!(matches!(
        tx.set("k", &big_value),
        Err(Error::ValueTooLarge { .. })
    ));
    assert!(matches!(
        tx.add("k", &big_value),
        Err(Error::ValueTooLarge { .. })
    ));
    // A range end may be one byte longer than a key (the end of the longest key's range).
    assert!(tx.clear_range("a", &big_key).is_ok());
    assert!(matches!(
        tx.clear_range("a", vec![b'k'; limits::MAX_KEY_BYTES + 2]),
        Err(Error::KeyTooLarge { .. })
    ));
    let range = tx.get_range(&big_key, "", RangeOptions::default());
    assert!(matches!(
        range.collect_vec().await,
        Err(Error::KeyTooLarge { .. })
    ));
    assert!(matches!(
        tx.watch(&big_key).await,
        Err(Error::KeyTooLarge { .. })
    ));

    // The transaction size: distinct 100 kB values until the 10 MB limit refuses one.
    let value = vec![7u8; limits::MAX_VALUE_BYTES];
    let mut refused = None;
    for i in 0..200u32 {
        if let Err(e) = tx.set(i.to_be_bytes(), &value) {
            refused = Some((i, e));
            break;
        }
    }
    let (i, e) = refused.expect("the size limit refuses a write");
    assert!(matches!(e, Error::TransactionTooLarge { .. }), "{e}");
    assert!((95..=100).contains(&i), "refused at write {i}");
    // Overwriting the same key does not grow the transaction without bound.
    let tx2 = db.create_transaction();
    for _ in 0..300 {
        tx2.set("same", &value).unwrap();
    }
    assert_eq!(backend.calls.load(Ordering::SeqCst), 0, "no network call");
}
