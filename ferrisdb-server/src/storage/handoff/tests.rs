use super::*;
use ferrisdb_core::AtomicOp;
use ferrisdb_storage::engine::{Engine, EngineOptions};

fn range(b: &str, e: &str) -> KeyRange {
    KeyRange::new(b.to_string(), e.to_string()).unwrap()
}

fn set(k: &str, v: &str) -> Mutation {
    Mutation::Set {
        key: Bytes::copy_from_slice(k.as_bytes()),
        value: Bytes::copy_from_slice(v.as_bytes()),
    }
}

fn pair(k: &str, v: &str) -> (Bytes, Bytes) {
    (
        Bytes::copy_from_slice(k.as_bytes()),
        Bytes::copy_from_slice(v.as_bytes()),
    )
}

#[test]
fn subtract_leaves_the_gaps() {
    let all = KeyRange::all();
    assert_eq!(
        subtract(&all, &[range("b", "d"), range("f", "")]),
        vec![range("", "b"), range("d", "f")]
    );
    assert_eq!(subtract(&range("c", "e"), &[range("a", "z")]), vec![]);
    assert_eq!(
        subtract(&range("c", "e"), &[range("a", "d")]),
        vec![range("d", "e")]
    );
    assert_eq!(subtract(&range("c", ""), &[]), vec![range("c", "")]);
}

#[test]
fn a_take_over_is_followed_buffered_and_not_readable_until_installed() {
    let dir = tempfile::tempdir().unwrap();
    let h = Handoff::open(ferrisdb_storage::vfs::os(), dir.path()).unwrap();
    let plan = h.plan(1, &[range("", "m")], &[range("m", "t")], 10);
    assert_eq!(plan.follow, vec![range("", "t")]);
    assert_eq!(plan.readable, vec![Readable::followed(range("", "m"))]);
    assert_eq!(
        plan.fetches,
        vec![Fetch {
            ticket: 1,
            range: range("m", "t"),
            start: 10
        }]
    );
    // Planning again (a stream restart) starts no second fetch.
    assert!(
        h.plan(1, &[range("", "m")], &[range("m", "t")], 12)
            .fetches
            .is_empty()
    );
    assert!(h.buffering());
    let rest = h.divert(
        13,
        vec![
            set("a", "1"),
            set("n", "2"),
            Mutation::ClearRange {
                begin: Bytes::from_static(b"k"),
                end: Bytes::from_static(b"p"),
            },
        ],
    );
    assert_eq!(
        rest,
        vec![
            set("a", "1"),
            Mutation::ClearRange {
                begin: Bytes::from_static(b"k"),
                end: Bytes::from_static(b"m"),
            },
        ]
    );
    assert_eq!(h.wants_snapshot(1), Some(10));
    // Only what lies outside every followed range ([t, ), left by an earlier run) is owed.
    assert_eq!(h.pending(20).unwrap().batch.len(), 1);
}

#[test]
fn an_install_folds_the_buffer_into_the_snapshot_in_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(&dir.path().join("engine"), EngineOptions::default()).unwrap();
    // Stale data of the range from an earlier stay, and data outside it.
    let mut old = WriteBatch::default();
    old.put(b"n-stale", b"x");
    old.put(b"a", b"keep");
    engine.apply_unsynced(5, &old).unwrap();

    let h = Handoff::open(ferrisdb_storage::vfs::os(), dir.path()).unwrap();
    let fetch = h
        .plan(1, &[range("", "m")], &[range("m", "t")], 10)
        .fetches
        .remove(0);
    // Versions 11 (already in the snapshot taken at 11) and 12, 13 (after it).
    assert!(h.divert(11, vec![set("n1", "old")]).is_empty());
    assert!(
        h.divert(12, vec![set("n1", "new"), set("q", "gone")])
            .is_empty()
    );
    assert!(
        h.divert(
            13,
            vec![Mutation::Clear {
                key: Bytes::from_static(b"q")
            }]
        )
        .is_empty()
    );
    let add_one = Mutation::Atomic {
        op: AtomicOp::Add,
        key: Bytes::from_static(b"n-counter"),
        operand: Bytes::from_static(&[1, 0, 0, 0]),
    };
    assert!(h.divert(14, vec![add_one]).is_empty());
    let progress = |h: &Handoff| {
        let t = h.take_overs();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].range, range("m", "t"));
        (t[0].fetched_bytes, t[0].fetched, t[0].installed)
    };
    assert_eq!(progress(&h), (0, false, false));
    h.note_fetched(fetch.ticket, 19);
    assert_eq!(progress(&h), (19, false, false));
    h.set_snapshot(
        fetch.ticket,
        Snapshot {
            version: 11,
            pairs: vec![pair("n-counter", "\u{4}\0\0\0"), pair("n1", "old")],
        },
    )
    .unwrap();
    assert_eq!(h.wants_snapshot(fetch.ticket), None);
    assert_eq!(progress(&h), (19, true, false));
    assert!(h.owes_work(15));
    let pending = h.pending(15).unwrap();
    engine.apply_unsynced(15, &pending.batch).unwrap();
    h.written(pending, 15).unwrap();
    assert_eq!(progress(&h), (19, true, true));
    assert!(!h.buffering());
    let get = |k: &str, v: u64| engine.get(k.as_bytes(), v).unwrap();
    assert_eq!(get("n1", 15).as_deref(), Some(&b"new"[..]));
    assert_eq!(get("q", 15), None);
    assert_eq!(get("n-stale", 15), None);
    assert_eq!(get("n-counter", 15).as_deref(), Some(&[5u8, 0, 0, 0][..]));
    assert_eq!(get("a", 15).as_deref(), Some(&b"keep"[..]));
    // Ready only once the durable (persisted) version reaches the install.
    assert!(h.ready(14).0.is_empty());
    assert_eq!(h.ready(15), (vec![range("m", "t")], 1));
    // Handed over: it becomes a replica range, complete from 15, even after a restart.
    let plan = h.plan(1, &[range("", "t")], &[], 16);
    assert!(plan.readable.iter().any(|r| r.from == 15));
    let reopened = Handoff::open(ferrisdb_storage::vfs::os(), dir.path()).unwrap();
    let plan = reopened.plan(1, &[range("", "m"), range("m", "t")], &[], 16);
    let taken = plan.readable.iter().find(|r| r.range == range("m", "t"));
    assert_eq!(taken.map(|r| r.from), Some(15));
    assert_eq!(
        plan.readable
            .iter()
            .find(|r| r.range == range("", "m"))
            .map(|r| r.from),
        Some(0)
    );
}

#[test]
fn a_range_handed_over_stays_readable_through_its_last_version_then_is_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let h = Handoff::open(ferrisdb_storage::vfs::os(), dir.path()).unwrap();
    h.plan(1, &[range("", "m"), range("m", "")], &[], 10);
    let plan = h.plan(1, &[range("", "m")], &[], 20);
    assert_eq!(plan.follow, vec![range("", "m")]);
    assert!(plan.readable.contains(&Readable {
        range: range("m", ""),
        from: 0,
        through: 20,
    }));
    let window = 2 * Version::MVCC_WINDOW;
    assert!(!h.owes_work(20 + window));
    assert!(h.owes_work(21 + window));
    let pending = h.pending(21 + window).unwrap();
    assert_eq!(pending.batch.len(), 1);
    // The batch clears [m, ): its old values may be purged once it is applied.
    assert_eq!(pending.cleared(), [range("m", "")]);
    h.written(pending, 21 + window).unwrap();
    assert!(!h.owes_work(u64::MAX));
    let plan = h.plan(1, &[range("", "m")], &[], 30 + window);
    assert_eq!(plan.readable, vec![Readable::followed(range("", "m"))]);
}

#[test]
fn the_first_plan_clears_everything_not_followed_and_a_range_taken_back_is_not_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let h = Handoff::open(ferrisdb_storage::vfs::os(), dir.path()).unwrap();
    h.plan(1, &[range("c", "f")], &[], 10);
    let pending = h.pending(11).unwrap();
    // [, c) and [f, ) are left over from an earlier run: cleared at once.
    assert_eq!(pending.batch.len(), 2);
    let dir = tempfile::tempdir().unwrap();
    let h = Handoff::open(ferrisdb_storage::vfs::os(), dir.path()).unwrap();
    h.plan(1, &[range("", "m")], &[], 10);
    h.plan(1, &[range("", "m")], &[range("m", "")], 11);
    assert!(
        !h.owes_work(u64::MAX),
        "a range being taken over is not cleared"
    );
}

#[test]
fn an_abandoned_take_over_drops_its_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let h = Handoff::open(ferrisdb_storage::vfs::os(), dir.path()).unwrap();
    let fetch = h
        .plan(1, &[range("", "m")], &[range("m", "")], 10)
        .fetches
        .remove(0);
    h.plan(1, &[range("", "m")], &[], 12);
    assert_eq!(h.wants_snapshot(fetch.ticket), None);
    h.set_snapshot(fetch.ticket, Snapshot::default()).unwrap();
    assert!(!h.buffering());
    // Taken over again later: a new fetch, starting afresh.
    let again = h.plan(1, &[range("", "m")], &[range("m", "")], 20).fetches;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].start, 20);
    assert!(again[0].ticket > fetch.ticket);
    let early = Snapshot {
        version: 19,
        pairs: vec![],
    };
    assert!(h.set_snapshot(again[0].ticket, early).is_err());
}

#[test]
fn a_damaged_installed_ranges_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(INSTALLED_FILE), b"{not json").unwrap();
    let err = Handoff::open(ferrisdb_storage::vfs::os(), dir.path()).unwrap_err();
    assert!(err.to_string().contains(INSTALLED_FILE), "{err}");
}

#[test]
fn take_overs_not_installed_restart_from_a_newer_version() {
    let dir = tempfile::tempdir().unwrap();
    let h = Handoff::open(ferrisdb_storage::vfs::os(), dir.path()).unwrap();
    let fetch = h.plan(1, &[], &[range("m", "")], 10).fetches.remove(0);
    assert_eq!(h.wants_snapshot(fetch.ticket), Some(10));
    assert!(h.divert(11, vec![set("n", "1")]).is_empty());
    assert!(h.can_restart());
    h.restart(50);
    assert_eq!(h.wants_snapshot(fetch.ticket), Some(50));
    let stale = Snapshot {
        version: 40,
        pairs: vec![],
    };
    assert!(h.set_snapshot(fetch.ticket, stale).is_err());
    h.set_snapshot(
        fetch.ticket,
        Snapshot {
            version: 50,
            pairs: vec![pair("m1", "x")],
        },
    )
    .unwrap();
    // The buffer from before the restart is gone: only the snapshot is installed (a clear
    // and one put), beside the clear of [, m) left from before this process.
    let pending = h.pending(51).unwrap();
    assert_eq!(pending.batch.len(), 3);
    h.written(pending, 51).unwrap();
    assert!(!h.can_restart());
}

#[test]
fn a_large_snapshot_is_installed_in_pieces_and_writes_to_the_part_written_go_to_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(&dir.path().join("engine"), EngineOptions::default()).unwrap();
    let mut stale = WriteBatch::default();
    stale.put(b"s-stale", b"x");
    engine.apply_unsynced(5, &stale).unwrap();
    let h = Handoff::open(ferrisdb_storage::vfs::os(), dir.path()).unwrap();
    let fetch = h
        .plan(1, &[range("", "m")], &[range("m", "t")], 10)
        .fetches
        .remove(0);
    let key = |i: usize| format!("m{i:04}");
    let big = "v".repeat(2000);
    // 3,000 pairs of about 2 kB: two pieces of at most 4 MiB.
    let pairs: Vec<(Bytes, Bytes)> = (0..3000).map(|i| pair(&key(i), &big)).collect();
    // Buffered before the snapshot is handed in: one write in each half.
    assert!(h.divert(12, vec![set(&key(10), "early")]).is_empty());
    assert!(h.divert(13, vec![set(&key(2990), "late")]).is_empty());
    h.set_snapshot(fetch.ticket, Snapshot { version: 11, pairs })
        .unwrap();
    let mut model: BTreeMap<String, String> = (0..3000).map(|i| (key(i), big.clone())).collect();
    model.insert(key(10), "early".into());
    model.insert(key(2990), "late".into());

    // The first piece: the whole range is cleared, the first keys written.
    let first = h.pending(20).unwrap();
    assert!(first.batch.approximate_bytes() < 2 * DEFAULT_INSTALL_PIECE_BYTES);
    engine.apply_unsynced(20, &first.batch).unwrap();
    h.written(first, 20).unwrap();
    assert!(
        h.ready(u64::MAX).0.is_empty(),
        "not installed until the last piece"
    );
    assert!(h.buffering());
    // A write to the part written goes to the engine; one to the rest is still buffered;
    // a range clear across the cursor is split between them.
    let add = Mutation::Atomic {
        op: AtomicOp::Add,
        key: Bytes::copy_from_slice(key(1).as_bytes()),
        operand: Bytes::from_static(&[1, 0, 0, 0]),
    };
    let clear = Mutation::ClearRange {
        begin: Bytes::copy_from_slice(key(1500).as_bytes()),
        end: Bytes::copy_from_slice(key(2500).as_bytes()),
    };
    let rest = h.divert(
        21,
        vec![set(&key(0), "direct"), set(&key(2999), "buffered"), clear],
    );
    assert!(rest.contains(&set(&key(0), "direct")), "{rest:?}");
    assert!(!rest.contains(&set(&key(2999), "buffered")), "{rest:?}");
    let batch = crate::storage::apply::build_batch(&engine, &rest).unwrap();
    engine.apply_unsynced(21, &batch).unwrap();
    let rest = h.divert(22, vec![add.clone()]);
    assert_eq!(rest, vec![add.clone()]);
    engine
        .apply_unsynced(
            22,
            &crate::storage::apply::build_batch(&engine, &rest).unwrap(),
        )
        .unwrap();
    model.insert(key(0), "direct".into());
    model.insert(key(2999), "buffered".into());
    model.retain(|k, _| !(k.as_str() >= key(1500).as_str() && k.as_str() < key(2500).as_str()));
    // key(1) held 2,000 'v's: an add is as long as its operand (four bytes), the first one
    // incremented (little-endian).
    model.insert(key(1), "wvvv".into());

    // The last piece completes it.
    let mut version = 30;
    loop {
        let pending = h.pending(version).unwrap();
        assert!(!pending.is_empty());
        engine.apply_unsynced(version, &pending.batch).unwrap();
        h.written(pending, version).unwrap();
        if !h.buffering() {
            break;
        }
        version += 1;
        assert!(version < 40, "never finished");
    }
    assert_eq!(h.ready(version), (vec![range("m", "t")], 1));
    let got: BTreeMap<String, String> = engine
        .scan(ferrisdb_storage::engine::ScanOptions {
            begin: Bytes::from_static(b"m"),
            end: Bytes::from_static(b"t"),
            read_version: version,
            ..Default::default()
        })
        .unwrap()
        .map(|kv| {
            let (k, v) = kv.unwrap();
            (
                String::from_utf8(k.to_vec()).unwrap(),
                String::from_utf8(v.to_vec()).unwrap(),
            )
        })
        .collect();
    assert_eq!(got.len(), model.len());
    for (k, v) in &model {
        let g = got.get(k);
        assert!(
            g == Some(v),
            "{k}: got {:?}, expected {:?}",
            g.map(|g| &g[..g.len().min(8)]),
            &v[..v.len().min(8)]
        );
    }
    assert_eq!(engine.get(b"s-stale", version).unwrap(), None);
}
