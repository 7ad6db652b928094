//! The client's examples, run against a real cluster: their logic is a public function of
//! each example file, compiled into this test as a module. Each example brings its own copy
//! of `examples/common` (how to find the cluster from the command line), unused here.

#![allow(clippy::duplicate_mod)]

#[allow(dead_code)]
#[path = "../../../ferrisdb-client/examples/bank.rs"]
mod bank;
#[allow(dead_code)]
#[path = "../../../ferrisdb-client/examples/counter.rs"]
mod counter;
#[allow(dead_code)]
#[path = "../../../ferrisdb-client/examples/event_log.rs"]
mod event_log;
#[allow(dead_code)]
#[path = "../../../ferrisdb-client/examples/range_scan.rs"]
mod range_scan;

use super::cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_examples_run_against_a_real_cluster() {
    let (_cluster, db) = cluster(2).await;

    let outcome = bank::transfers(&db).await.expect("bank example");
    assert_eq!(outcome.total, bank::START * bank::ACCOUNTS as i64);

    let (before, after) = counter::increments(&db).await.expect("counter example");
    assert_eq!((before, after), (0, counter::TASKS * counter::PER_TASK));
    let (before, after) = counter::increments(&db).await.expect("counter again");
    assert_eq!(after - before, counter::TASKS * counter::PER_TASK);

    let scans = range_scan::scans(&db).await.expect("range_scan example");
    let name = |i: u32| bytes::Bytes::from(format!("scan/{i:03}"));
    assert_eq!(scans.forward, (0..100).map(name).collect::<Vec<_>>());
    assert_eq!(scans.last_three, vec![name(99), name(98), name(97)]);
    let mut local = vec![name(49), bytes::Bytes::from("scan/050x")];
    local.extend((60..61).map(name));
    assert_eq!(scans.with_local_writes, local);

    let log = event_log::append_and_read(&db, "e2e")
        .await
        .expect("event_log example");
    assert_eq!(
        log.read_back.len() as u32,
        event_log::WRITERS * event_log::PER_WRITER
    );
    // Every stamp is distinct and the log is in stamp order (checked by the example too).
    let stamps: std::collections::BTreeSet<_> = log.read_back.iter().map(|(s, _)| *s).collect();
    assert_eq!(stamps.len(), log.read_back.len());
    assert!(log.read_back.windows(2).all(|w| w[0].0 < w[1].0));
}
