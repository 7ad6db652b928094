//! Idempotency ids, versionstamps, priorities and cancellation against a real cluster.

use ferrisdb_client::tuple::{self, Element, Versionstamp};
use ferrisdb_client::{Error, Priority, TransactionOption};

use super::{cluster, key};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_commit_with_the_same_id_is_answered_already_committed() {
    let (_cluster, db) = cluster(1).await;
    let counter = key(0x10, "idem/counter");

    // First commit with the id: applied.
    let first = db.create_transaction();
    first.set_idempotency_id("transfer-1").unwrap();
    first.set(&counter, "1").unwrap();
    first.commit().await.unwrap();
    assert!(!first.already_committed());
    let first_version = first.committed_version().unwrap();
    let first_stamp = first.versionstamp().unwrap();
    assert_eq!(first_stamp.version(), first_version);

    // A "retry" carrying the same id and writing something else: not applied, answered
    // with the first commit's version and stamp. It says its first attempt read before the
    // first commit, as a real retry would.
    let retry = db.create_transaction();
    retry.set_idempotency_id("transfer-1").unwrap();
    retry.set_read_version(first_version.saturating_sub(1));
    retry.set(&counter, "2").unwrap();
    retry.commit().await.unwrap();
    assert!(retry.already_committed());
    assert_eq!(retry.committed_version(), Some(first_version));
    assert_eq!(retry.versionstamp(), Some(first_stamp));
    let value = db
        .run(|tx| {
            let counter = counter.clone();
            async move { tx.get(&counter).await }
        })
        .await
        .unwrap();
    assert_eq!(
        value.as_deref(),
        Some(&b"1"[..]),
        "the retry must not apply"
    );

    // Another id commits normally; the idempotency record is in the system key space.
    let other = db.create_transaction();
    other.set_idempotency_id("transfer-2").unwrap();
    other.set(&counter, "3").unwrap();
    other.commit().await.unwrap();
    assert!(!other.already_committed());
    let record = db
        .run(|tx| async move {
            tx.set_option(TransactionOption::AccessSystemKeys);
            let mut key = b"\xff\x02/idmp/".to_vec();
            key.extend_from_slice(&first_stamp.bytes());
            tx.get(key).await
        })
        .await
        .unwrap();
    assert_eq!(record.as_deref(), Some(&b"transfer-1"[..]));

    // Bad ids are refused before any network call.
    let tx = db.create_transaction();
    assert!(matches!(
        tx.set_idempotency_id(""),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        tx.set_idempotency_id(vec![0u8; 256]),
        Err(Error::InvalidArgument(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versionstamps_fill_keys_and_values_in_commit_order() {
    let (_cluster, db) = cluster(1).await;
    let prefix = key(0x60, "vs/");
    let last_key = key(0x61, "vs-last");
    let mut stamps = Vec::new();
    for i in 0..5u16 {
        let prefix = prefix.clone();
        let outcome = db
            .run_with_outcome(|tx| {
                let (prefix, last_key) = (prefix.clone(), last_key.clone());
                async move {
                    let key = tuple::pack_with_versionstamp(
                        &prefix,
                        &[Element::Versionstamp(Versionstamp::incomplete(i))],
                    )?;
                    tx.set_versionstamped_key(key, format!("event {i}"))?;
                    // The value of another key holds the stamp too.
                    let mut value = b"at:".to_vec();
                    value.extend_from_slice(&[0u8; 10]);
                    value.extend_from_slice(&3u32.to_le_bytes());
                    tx.set_versionstamped_value(&last_key, value)?;
                    // Unreadable until committed.
                    let read = tx.get(&last_key).await;
                    assert!(
                        matches!(read, Err(Error::AccessedUnreadable(_))),
                        "{read:?}"
                    );
                    Ok(())
                }
            })
            .await
            .unwrap();
        stamps.push(outcome.versionstamp.unwrap());
    }
    assert!(stamps.windows(2).all(|w| w[0] < w[1]), "{stamps:?}");
    let (begin, end) = (prefix.to_vec(), {
        let mut e = prefix.to_vec();
        e.push(0xff);
        e
    });
    let pairs = super::read_range(&db, &begin, &end, Default::default()).await;
    assert_eq!(pairs.len(), 5);
    for (i, ((k, v), stamp)) in pairs.iter().zip(&stamps).enumerate() {
        let elements = tuple::unpack(&k[prefix.len()..]).unwrap();
        assert_eq!(
            elements,
            vec![Element::Versionstamp(
                Versionstamp::incomplete(i as u16).complete(*stamp)
            )]
        );
        assert_eq!(&v[..], format!("event {i}").as_bytes());
    }
    let last = db
        .run(|tx| {
            let k = last_key.clone();
            async move { tx.get(k).await }
        })
        .await
        .unwrap()
        .unwrap();
    let mut want = b"at:".to_vec();
    want.extend_from_slice(&stamps[4].bytes());
    assert_eq!(&last[..], &want[..]);

    // A malformed versionstamped key is refused at once and poisons the attempt.
    let tx = db.create_transaction();
    let err = tx.set_versionstamped_key("short", "v").unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert!(tx.commit().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priorities_get_read_versions_and_cancel_stops_a_transaction() {
    let (_cluster, db) = cluster(1).await;
    let mut versions = Vec::new();
    for p in [Priority::Immediate, Priority::Batch, Priority::Default] {
        let tx = db.create_transaction();
        tx.set_option(TransactionOption::Priority(p));
        versions.push(tx.get_read_version().await.unwrap());
    }
    assert!(versions.windows(2).all(|w| w[0] <= w[1]), "{versions:?}");

    // Cancelled: every operation fails with TransactionCancelled, which is not retried.
    let tx = db.create_transaction();
    tx.set(key(0x20, "cancelled"), "v").unwrap();
    tx.cancel();
    assert!(matches!(
        tx.get(key(0x20, "x")).await,
        Err(Error::TransactionCancelled)
    ));
    assert!(matches!(
        tx.set(key(0x20, "x"), "v"),
        Err(Error::TransactionCancelled)
    ));
    assert!(matches!(
        tx.commit().await,
        Err(Error::TransactionCancelled)
    ));
    assert!(matches!(
        tx.on_error(Error::TransactionCancelled).await,
        Err(Error::TransactionCancelled)
    ));
    // Reset makes it usable again, without the cancelled writes.
    tx.reset();
    assert!(!tx.is_cancelled());
    assert_eq!(tx.get(key(0x20, "cancelled")).await.unwrap(), None);
}
