//! Tests of the log server handle: fencing, the servable version, resets and recovery reads.

use super::*;
use crate::log::record;
use ferrisdb_core::Mutation;

fn set(k: &str) -> Mutation {
    Mutation::Set {
        key: k.to_owned().into(),
        value: "v".into(),
    }
}

fn rec(version: u64, prev: u64, key: &str) -> Vec<u8> {
    record::encode(Version(version), Version(prev), &[set(key)]).unwrap()
}

fn open(dir: &Path) -> Arc<LogServer> {
    LogServer::open(dir, "log-test".into(), LogOptions::default()).unwrap()
}

/// Notes what generation `epoch` knows committed and truncates as that allows.
fn note(server: &LogServer, epoch: u64, committed: u64, truncate: u64) -> Result<()> {
    note_redundant(server, epoch, committed, truncate, 0)
}

/// [`note`], also saying how far every shard has a durable replica.
fn note_redundant(
    server: &LogServer,
    epoch: u64,
    committed: u64,
    truncate: u64,
    redundant: u64,
) -> Result<()> {
    if let Some(target) = server.note_committed(
        epoch,
        Version(committed),
        Version(truncate),
        Version(redundant),
    )? {
        server.truncate(target)?;
    }
    Ok(())
}

/// Appends, syncs and publishes one record.
fn append(server: &LogServer, epoch: u64, record: &[u8]) -> Result<()> {
    let submitted = server.append(epoch, record)?;
    server.sync(submitted.seq)?;
    server.publish(submitted.batch);
    Ok(())
}

#[tokio::test]
async fn only_the_locked_generation_appends_and_serves_only_what_is_known_committed() {
    let dir = tempfile::tempdir().unwrap();
    let server = open(dir.path());
    let err = append(&server, 1, &rec(10, 0, "a")).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    let state = server.lock(1).await.unwrap();
    assert_eq!(state.durable_version, Version::ZERO);
    append(&server, 1, &rec(10, 0, "a")).unwrap();
    append(&server, 1, &rec(20, 10, "b")).unwrap();
    assert_eq!(
        server.servable(),
        Version::ZERO,
        "nothing known committed yet"
    );
    note(&server, 1, 10, 0).unwrap();
    assert_eq!(server.servable(), Version(10));
    // A record that does not follow the newest one is refused.
    let err = append(&server, 1, &rec(40, 30, "c")).unwrap_err();
    assert!(err.to_string().contains("ends at 20"), "{err}");

    let state = server.lock(2).await.unwrap();
    assert_eq!(state.durable_version, Version(20));
    assert_eq!(state.known_committed, Version(10));
    for err in [
        append(&server, 1, &rec(30, 20, "c")).unwrap_err(),
        note(&server, 1, 20, 0).unwrap_err(),
        server.lock(1).await.unwrap_err(),
        server
            .read_records(1, Version::ZERO, Version(20), 0)
            .unwrap_err(),
    ] {
        assert!(matches!(err, Error::Fenced(_)), "{err}");
        assert!(err.to_string().contains("locked by generation 2"), "{err}");
    }
    drop(server);
    // The fence survives a restart.
    let server = open(dir.path());
    assert_eq!(server.locked_epoch(), 2);
    let err = append(&server, 1, &rec(30, 20, "c")).unwrap_err();
    assert!(matches!(err, Error::Fenced(_)), "{err}");
    append(&server, 2, &rec(30, 20, "c")).unwrap();
}

#[tokio::test]
async fn recovery_reads_are_chained_and_a_reset_log_starts_where_told() {
    let dir = tempfile::tempdir().unwrap();
    let server = open(dir.path());
    server.lock(1).await.unwrap();
    for (v, p) in [(10, 0), (20, 10), (30, 20)] {
        append(&server, 1, &rec(v, p, "k")).unwrap();
    }
    let records = server.read_records(1, Version(10), Version(30), 0).unwrap();
    let decoded: Vec<_> = records
        .iter()
        .map(|r| record::decode(r).unwrap())
        .map(|r| (r.version.get(), r.prev_version.get()))
        .collect();
    assert_eq!(decoded, [(20, 10), (30, 20)]);
    // A byte budget still returns at least one record.
    assert_eq!(
        server
            .read_records(1, Version::ZERO, Version(30), 1)
            .unwrap()
            .len(),
        1
    );

    server.reset(1, Version(100)).unwrap();
    let state = server.lock(1).await.unwrap();
    assert_eq!(state.durable_version, Version(100));
    assert_eq!(state.retained_from, Version(100));
    let err = server
        .read_records(1, Version(10), Version(30), 0)
        .unwrap_err();
    assert!(matches!(err, Error::TransactionTooOld { .. }), "{err}");
    drop(server);
    // Empty after the reset: a restart still knows where it starts.
    let server = open(dir.path());
    assert_eq!(server.state().durable_version, Version(100));
    append(&server, 1, &rec(110, 100, "k")).unwrap();
    drop(server);
    let server = open(dir.path());
    assert_eq!(server.state().durable_version, Version(110));
    assert_eq!(server.state().retained_from, Version(100));
}

#[tokio::test]
async fn only_storage_servers_of_the_shard_map_follow_and_see_committed_versions() {
    let dir = tempfile::tempdir().unwrap();
    let server = open(dir.path());
    let err = server
        .feed("s1", Version::ZERO, vec![KeyRange::all()], 0)
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err}");
    server.set_followers(["s1".to_string()].into());
    let err = server
        .feed("intruder", Version::ZERO, vec![KeyRange::all()], 0)
        .unwrap_err();
    assert!(err.to_string().contains("not a storage server"), "{err}");

    server.lock(1).await.unwrap();
    append(&server, 1, &rec(10, 0, "a")).unwrap();
    append(&server, 1, &rec(20, 10, "b")).unwrap();
    let mut feed = server
        .feed("s1", Version::ZERO, vec![KeyRange::all()], 0)
        .unwrap();
    note(&server, 1, 10, 0).unwrap();
    let pulled = feed.next().await.unwrap().unwrap();
    assert_eq!(pulled.committed_through, Version(10));
    assert_eq!(pulled.batches.len(), 1);
    // Truncation never passes what is known committed.
    note(&server, 1, 10, 20).unwrap();
    assert_eq!(server.state().retained_from, Version(10));
    note(&server, 1, 20, 10).unwrap();
    let pulled = feed.next().await.unwrap().unwrap();
    assert_eq!(pulled.committed_through, Version(20));
    note(&server, 1, 20, 20).unwrap();
    assert_eq!(server.state().retained_from, Version(20));
    server.begin_shutdown();
    assert!(feed.next().await.is_none());
}

#[tokio::test]
async fn over_its_retention_budget_the_log_drops_only_what_every_shard_has_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let server = open(dir.path());
    server.lock(1).await.unwrap();
    let mut prev = 0;
    for v in (10..=100).step_by(10) {
        append(&server, 1, &rec(v, prev, &"k".repeat(100))).unwrap();
        prev = v;
    }
    let held = server.state().stats.retained_bytes;
    assert!(held > 1000, "{held}");

    // No budget: a lagging storage server (everything durable only through 20) holds the
    // log, however far every shard has a replica.
    note_redundant(&server, 1, 60, 20, 90).unwrap();
    assert_eq!(server.state().retained_from, Version(20));

    // Under its budget: the same.
    server.set_retention_budget(held * 2);
    note_redundant(&server, 1, 60, 20, 90).unwrap();
    assert_eq!(server.state().retained_from, Version(20));
    assert_eq!(server.state().retention_budget_bytes, held * 2);

    // Over it: versions every shard holds on some replica go, never past what is known
    // committed here.
    server.set_retention_budget(100);
    note_redundant(&server, 1, 60, 20, 90).unwrap();
    assert_eq!(server.state().retained_from, Version(60));
    note_redundant(&server, 1, 100, 20, 90).unwrap();
    assert_eq!(server.state().retained_from, Version(90));
    // A shard whose every replica lags keeps its versions: nothing past its durable version
    // goes, even far over the budget.
    note_redundant(&server, 1, 100, 20, 90).unwrap();
    assert_eq!(server.state().retained_from, Version(90));
    let kept = server
        .read_records(1, Version(90), Version(100), 0)
        .unwrap();
    assert_eq!(kept.len(), 1);
}
