//! Tests of the commit log: round trips through a reopen, truncation and segment removal,
//! recovery of the truncation point, and corruption reporting.

use super::*;
use ferrisdb_core::Mutation;

fn set(k: &str) -> Mutation {
    Mutation::Set {
        key: k.to_owned().into(),
        value: "v".into(),
    }
}

fn opts(segment_bytes: u64) -> LogOptions {
    LogOptions {
        segment_bytes,
        sync: SyncPolicy::Always,
    }
}

fn write(log: &CommitLog, v: u64, keys: &[&str]) {
    let s = log
        .submit(Version(v), keys.iter().map(|k| set(k)).collect())
        .unwrap();
    log.sync(s.seq).unwrap();
    log.publish(s.batch);
}

fn versions(batches: &[Arc<LoggedBatch>]) -> Vec<u64> {
    batches.iter().map(|b| b.version.get()).collect()
}

fn segment_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".wal"))
        .collect();
    names.sort();
    names
}

#[test]
fn batches_survive_a_reopen_in_order() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (log, rec) = CommitLog::open(dir.path(), opts(1 << 20)).unwrap();
        assert_eq!(rec.last_version, Version::ZERO);
        write(&log, 10, &["a", "b"]);
        write(&log, 20, &[]);
        write(&log, 35, &["c"]);
        let all = log.read_after(Version::ZERO, Version(35), 100).unwrap();
        assert_eq!(versions(&all), vec![10, 20, 35]);
        assert_eq!(
            versions(&log.read_after(Version(10), Version(20), 100).unwrap()),
            vec![20]
        );
        assert_eq!(log.read_after(Version(0), Version(35), 2).unwrap().len(), 2);
        assert_eq!(log.stats().records, 3);
        // Versions must increase.
        assert!(log.submit(Version(35), vec![]).is_err());
    }
    let (log, rec) = CommitLog::open(dir.path(), opts(1 << 20)).unwrap();
    assert_eq!(rec.last_version, Version(35));
    assert_eq!(rec.batches, 3);
    assert_eq!(rec.retained_from, Version::ZERO);
    let all = log.read_after(Version::ZERO, Version(35), 100).unwrap();
    assert_eq!(versions(&all), vec![10, 20, 35]);
    assert_eq!(all[0].mutations, vec![set("a"), set("b")]);
    assert_eq!(all[2].mutations, vec![set("c")]);
    // The chain continues after a reopen.
    write(&log, 40, &["d"]);
    drop(log);
    let (_, rec) = CommitLog::open(dir.path(), opts(1 << 20)).unwrap();
    assert_eq!((rec.last_version, rec.batches), (Version(40), 4));
}

#[test]
fn truncation_drops_batches_and_whole_segments_and_is_recovered() {
    let dir = tempfile::tempdir().unwrap();
    {
        // One record per segment.
        let (log, _) = CommitLog::open(dir.path(), opts(1)).unwrap();
        for v in 1..=4 {
            write(&log, v * 10, &["k"]);
        }
        assert_eq!(segment_files(dir.path()).len(), 4);
        log.truncate_through(Version(20)).unwrap();
        assert_eq!(log.retained_from(), Version(20));
        let err = log.read_after(Version(10), Version(40), 10).unwrap_err();
        assert!(matches!(err, Error::TransactionTooOld { .. }), "{err}");
        assert_eq!(
            versions(&log.read_after(Version(20), Version(40), 10).unwrap()),
            vec![30, 40]
        );
        assert_eq!(segment_files(dir.path()).len(), 2);
        assert_eq!(log.stats().retained_batches, 2);
        // Truncating everything keeps the newest record's segment.
        log.truncate_through(Version(40)).unwrap();
        assert_eq!(log.stats().retained_batches, 0);
        assert_eq!(segment_files(dir.path()).len(), 1);
        // Nothing newer than 40 exists, so reading after 40 is fine; after 30 is not.
        assert!(
            log.read_after(Version(40), Version(40), 10)
                .unwrap()
                .is_empty()
        );
    }
    let (log, rec) = CommitLog::open(dir.path(), opts(1)).unwrap();
    assert_eq!(rec.last_version, Version(40));
    assert_eq!(rec.retained_from, Version(30));
    assert_eq!(
        versions(&log.read_after(Version(30), Version(40), 10).unwrap()),
        vec![40]
    );
    assert!(log.read_after(Version(20), Version(40), 10).is_err());
}

#[test]
fn segments_of_unpublished_batches_are_never_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = CommitLog::open(dir.path(), opts(1)).unwrap();
    write(&log, 10, &["a"]);
    // Durable but not yet published (still in the pipeline), in its own segment.
    let b = log.submit(Version(20), vec![set("b")]).unwrap();
    log.sync(b.seq).unwrap();
    let c = log.submit(Version(30), vec![set("c")]).unwrap();
    log.sync(c.seq).unwrap();
    log.truncate_through(Version(10)).unwrap();
    let b_file = dir.path().join(segment_file_name(b.batch.segment));
    assert!(b_file.exists(), "segment of an in-flight batch was deleted");
    log.publish(b.batch);
    log.publish(c.batch);
    assert_eq!(
        versions(&log.read_after(Version(10), Version(30), 10).unwrap()),
        vec![20, 30]
    );
}

#[test]
fn damaged_or_unchained_records_are_corruption() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, _) = Wal::open(
            &ferrisdb_storage::vfs::os(),
            dir.path(),
            WalOptions::default(),
            0,
        )
        .unwrap();
        wal.append(&record::encode(Version(5), Version(0), &[set("a")]).unwrap())
            .unwrap();
        wal.append(&record::encode(Version(9), Version(7), &[set("b")]).unwrap())
            .unwrap();
    }
    let err = CommitLog::open(dir.path(), opts(1 << 20)).unwrap_err();
    assert!(matches!(err, Error::Corruption { .. }), "{err}");
    assert!(err.to_string().contains("follows 7"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, _) = Wal::open(
            &ferrisdb_storage::vfs::os(),
            dir.path(),
            WalOptions::default(),
            0,
        )
        .unwrap();
        wal.append(b"\x01garbage").unwrap();
    }
    let err = CommitLog::open(dir.path(), opts(1 << 20)).unwrap_err();
    match err {
        Error::Corruption { file, .. } => assert!(file.to_string_lossy().ends_with(".wal")),
        other => panic!("expected corruption, got {other}"),
    }
}
