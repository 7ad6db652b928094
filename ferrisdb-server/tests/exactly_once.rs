//! Exactly-once transfers with the coordinator SIGKILLed mid-commit: a real cluster runs
//! concurrent bank transfers with `TransactionOption::AutomaticIdempotency` while the
//! coordinator is killed and restarted [`KILLS`] times (each kill lands while transfers are
//! committing). Every transfer also writes a key holding its attempt's versionstamp, so an
//! attempt that applied leaves exactly one key: a transfer applied twice would leave two.
//!
//! Checked at the end: the total balance is unchanged; every transfer `db.run` reported done
//! applied exactly once, and every transfer it gave up on at most once; some commits really
//! had unknown results (the kills hit commits in flight), and the retries of those were
//! recognised by their idempotency ids.
//!
//! `FERRISDB_EXACTLY_ONCE_KILLS` changes the number of kills (default 50).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::cluster::TestCluster;
use ferrisdb_client::tuple::{self, Element, Versionstamp};
use ferrisdb_client::{Database, DatabaseOptions, ErrorCode, RangeOptions, TransactionOption};

/// Coordinator kills of the default run.
const KILLS: u64 = 50;
const ACCOUNTS: u64 = 8;
const START_BALANCE: i64 = 1_000;
const WORKERS: u64 = 4;

fn account(i: u64) -> Bytes {
    // Spread over the three shards (split at 0x55 and 0xaa).
    Bytes::from(vec![(i * 0xff / ACCOUNTS) as u8, b'a', i as u8])
}

fn applied_prefix() -> Vec<u8> {
    b"\x30applied/".to_vec()
}

fn balance(v: Option<Bytes>) -> i64 {
    v.map_or(0, |v| {
        i64::from_le_bytes(v[..8].try_into().expect("8-byte balance"))
    })
}

/// What one worker saw.
#[derive(Debug, Default)]
struct WorkerReport {
    /// Transfer ids `db.run` reported committed.
    done: Vec<(u64, u64)>,
    /// Transfer ids `db.run` gave up on (outcome unknown to the worker).
    gave_up: Vec<(u64, u64)>,
    /// Retries caused by `CommitUnknownResult`.
    unknown_retries: u64,
    /// Transfers answered "already committed".
    already_committed: u64,
}

async fn worker(db: Database, w: u64, stop: Arc<AtomicBool>, done: Arc<AtomicU64>) -> WorkerReport {
    let mut report = WorkerReport::default();
    let mut n = 0u64;
    while !stop.load(Ordering::Acquire) {
        let from = (w * 7 + n * 3) % ACCOUNTS;
        let to = (from + 1 + n % (ACCOUNTS - 1)) % ACCOUNTS;
        let amount = 1 + (n % 5) as i64;
        let result = db
            .run_with_outcome(|tx| async move {
                tx.set_option(TransactionOption::AutomaticIdempotency);
                let a = balance(tx.get(account(from)).await?);
                let b = balance(tx.get(account(to)).await?);
                tx.set(account(from), (a - amount).to_le_bytes())?;
                tx.set(account(to), (b + amount).to_le_bytes())?;
                let key = tuple::pack_with_versionstamp(
                    &applied_prefix(),
                    &[
                        Element::Int(w.into()),
                        Element::Int(n.into()),
                        Element::Versionstamp(Versionstamp::incomplete(0)),
                    ],
                )?;
                tx.set_versionstamped_key(key, b"")
            })
            .await;
        match result {
            Ok(outcome) => {
                report.done.push((w, n));
                report.already_committed += u64::from(outcome.already_committed);
                report.unknown_retries += outcome
                    .retries
                    .iter()
                    .filter(|(code, _)| *code == ErrorCode::CommitUnknownResult)
                    .map(|(_, count)| u64::from(*count))
                    .sum::<u64>();
                done.fetch_add(1, Ordering::AcqRel);
            }
            Err(e) => {
                eprintln!("worker {w}: transfer {n} gave up: {e}");
                report.gave_up.push((w, n));
            }
        }
        n += 1;
    }
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_apply_exactly_once_while_the_coordinator_is_killed_mid_commit() {
    let kills: u64 = std::env::var("FERRISDB_EXACTLY_ONCE_KILLS")
        .ok()
        .map(|v| v.parse().expect("FERRISDB_EXACTLY_ONCE_KILLS is a number"))
        .unwrap_or(KILLS);
    let cluster = TestCluster::start(3, 1).await;
    let db = Database::connect(cluster.controller.addr.to_string())
        .unwrap()
        .with_options(DatabaseOptions {
            timeout: Some(Duration::from_secs(30)),
            max_backoff: Duration::from_millis(200),
            ..DatabaseOptions::default()
        });
    db.run(|tx| async move {
        for i in 0..ACCOUNTS {
            tx.set(account(i), START_BALANCE.to_le_bytes())?;
        }
        Ok(())
    })
    .await
    .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| tokio::spawn(worker(db.clone(), w, stop.clone(), done.clone())))
        .collect();

    // The nemesis: kill the coordinator once transfers have been committing since its
    // restart, so each kill lands among commits in flight.
    let progress = done.clone();
    let started = Instant::now();
    let cluster = tokio::task::spawn_blocking(move || {
        let mut cluster = cluster;
        for k in 0..kills {
            let before = progress.load(Ordering::Acquire);
            let deadline = Instant::now() + Duration::from_secs(60);
            while progress.load(Ordering::Acquire) < before + 3 {
                assert!(
                    Instant::now() < deadline,
                    "no transfer committed for 60 s after kill {k}:\n{}",
                    cluster.coordinator.logs()
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            cluster.coordinator.kill();
            cluster.coordinator.start();
        }
        cluster
    })
    .await
    .unwrap();
    let fault_secs = started.elapsed().as_secs_f64();
    // Let the workers commit after the last restart, then stop them.
    let settled = done.load(Ordering::Acquire);
    while done.load(Ordering::Acquire) < settled + 5 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Release);
    let mut reports = Vec::new();
    for w in workers {
        reports.push(w.await.unwrap());
    }

    // Final state, read in one transaction.
    let (balances, applied) = db
        .run(|tx| async move {
            let mut total = 0i64;
            for i in 0..ACCOUNTS {
                total += balance(tx.get(account(i)).await?);
            }
            let mut end = applied_prefix();
            end.push(0xff);
            let keys = tx
                .get_range(applied_prefix(), end, RangeOptions::default())
                .collect_vec()
                .await?;
            Ok((total, keys))
        })
        .await
        .unwrap();
    let mut applications: BTreeMap<(u64, u64), u32> = BTreeMap::new();
    for kv in &applied {
        match tuple::unpack(&kv.key[applied_prefix().len()..])
            .unwrap()
            .as_slice()
        {
            [Element::Int(w), Element::Int(n), Element::Versionstamp(_)] => {
                *applications
                    .entry((u64::try_from(*w).unwrap(), u64::try_from(*n).unwrap()))
                    .or_default() += 1;
            }
            other => panic!("unexpected applied key {other:?}"),
        }
    }
    let done_ids: Vec<(u64, u64)> = reports.iter().flat_map(|r| r.done.clone()).collect();
    let gave_up: Vec<(u64, u64)> = reports.iter().flat_map(|r| r.gave_up.clone()).collect();
    let unknown: u64 = reports.iter().map(|r| r.unknown_retries).sum();
    let already: u64 = reports.iter().map(|r| r.already_committed).sum();
    eprintln!(
        "exactly_once: {kills} coordinator kills in {fault_secs:.1} s; {} transfers done, {} \
         gave up; {unknown} retries after unknown commit results, {already} answered \
         already_committed",
        done_ids.len(),
        gave_up.len()
    );

    assert_eq!(
        balances,
        START_BALANCE * ACCOUNTS as i64,
        "money was created or destroyed"
    );
    for id in &done_ids {
        assert_eq!(
            applications.get(id).copied().unwrap_or(0),
            1,
            "transfer {id:?} was reported done but applied {} times",
            applications.get(id).copied().unwrap_or(0)
        );
    }
    for id in &gave_up {
        assert!(
            applications.get(id).copied().unwrap_or(0) <= 1,
            "transfer {id:?} applied more than once"
        );
    }
    let known: std::collections::BTreeSet<_> = done_ids.iter().chain(&gave_up).collect();
    for id in applications.keys() {
        assert!(
            known.contains(id),
            "transfer {id:?} applied but never attempted"
        );
    }
    assert!(
        unknown > 0,
        "no commit had an unknown result: the kills never hit a commit in flight"
    );
    drop(cluster);
}
