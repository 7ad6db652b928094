//! Fault injection with history checking: a real multi-process cluster (a group of three
//! controller replicas, a coordinator, three storage servers, replication 2) runs three
//! workloads at once while a nemesis SIGKILLs and restarts processes (the controller leader
//! and followers among them), wipes controller replicas and SIGSTOPs processes for short
//! pauses, wipes storage servers (the controller re-replicates their shards and balances
//! shards onto the servers that return under new ids; shards are split past 64 KiB or 16 kB/s
//! of writes and small cold neighbours merged, so splits, merges and the moves that balance
//! bytes run throughout); then every fault is healed, every
//! shard must come back to two live replicas, final reads are taken and the checkers of
//! `ferrisdb-check` must find nothing:
//!
//! - `list_append`: Elle-style list-append transactions, checked for G0, G1a, G1b, G1c,
//!   G-single, G2, lost appends, stale reads, duplicates and incompatible orders;
//! - `bank`: transfers and whole-bank snapshot reads: constant total, no negative balance;
//! - `durability`: acknowledged multi-key writes all present, commit-unknown ones wholly
//!   present or absent.
//!
//! Environment: `FERRISDB_FAULTS_SEED` replays a nemesis/workload seed (printed by every
//! run); `FERRISDB_SOAK_SECS` sets the fault period (default 40 s: the bounded CI run);
//! `FERRISDB_HISTORY_DIR` writes the list-append history as Jepsen EDN
//! (`list-append.edn`) and the summary line (`summary.txt`) there. See
//! `docs/reliability.md`.

mod common;

#[path = "faults/attempt.rs"]
mod attempt;
#[path = "faults/bank.rs"]
mod bank;
#[path = "faults/durability.rs"]
mod durability;
#[path = "faults/list_append.rs"]
mod list_append;
#[path = "faults/nemesis.rs"]
mod nemesis;

use std::time::Duration;

use common::cluster::TestCluster;
use ferrisdb_check::OpType;
use ferrisdb_client::{Database, DatabaseOptions};
use tokio::time::Instant;

/// Fault period of the bounded (default) run.
const BOUNDED_SECS: u64 = 40;
const LIST_APPEND_CLIENTS: u64 = 4;
const TRANSFER_CLIENTS: u64 = 2;
const DURABILITY_WRITERS: u64 = 2;
/// The controller re-replicates a storage server's shards after this much silence.
const STORAGE_FAILURE_TIMEOUT_MS: &str = "3000";
/// Shards past this many bytes are split: small, so the workloads' data is split (and the
/// halves balanced) while the faults run.
const MAX_SHARD_BYTES: &str = "65536";
/// Shards written faster than this (bytes per second) are split, and neighbours written at
/// under a tenth of it merge: the workloads' hot keys split and cool, merge again.
const MAX_SHARD_WRITE_BYTES_PER_SECOND: &str = "16000";

/// Operations by outcome.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    ok: u64,
    failed: u64,
    unknown: u64,
}

impl Counts {
    fn add(&mut self, kind: OpType) {
        match kind {
            OpType::Ok => self.ok += 1,
            OpType::Fail => self.failed += 1,
            _ => self.unknown += 1,
        }
    }

    fn merge(&mut self, other: Counts) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.unknown += other.unknown;
    }
}

/// A first key byte for `n` that spreads consecutive numbers over the three shards (split at
/// first bytes 0x55 and 0xaa); never 0xff, where the system key space starts.
pub fn spread(n: u64) -> u8 {
    (n.wrapping_mul(97) % 255) as u8
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workloads_stay_consistent_and_durable_under_process_faults() {
    let seed = env_u64("FERRISDB_FAULTS_SEED").unwrap_or_else(rand::random);
    let secs = env_u64("FERRISDB_SOAK_SECS").unwrap_or(BOUNDED_SECS);
    eprintln!("faults: seed {seed} (replay: FERRISDB_FAULTS_SEED={seed}), fault period {secs} s");

    let mut cluster = TestCluster::start_group_with_controller_args(
        3,
        3,
        2,
        &[
            "--storage-failure-timeout-ms",
            STORAGE_FAILURE_TIMEOUT_MS,
            "--max-shard-bytes",
            MAX_SHARD_BYTES,
            "--max-shard-write-bytes-per-second",
            MAX_SHARD_WRITE_BYTES_PER_SECOND,
        ],
    )
    .await;
    // A standby: recoveries need not wait for a lost or cut-off coordinator to come back.
    cluster.add_coordinator().await;
    let db = Database::connect_all(cluster.controller_addresses().split(','))
        .expect("controller addresses")
        .with_options(DatabaseOptions {
            timeout: Some(Duration::from_secs(60)),
            max_backoff: Duration::from_millis(200),
            ..DatabaseOptions::default()
        });
    bank::open_accounts(&db).await;

    let until = Instant::now() + Duration::from_secs(secs);
    let nemesis =
        tokio::task::spawn_blocking(move || nemesis::run(cluster, seed, until.into_std()));
    let shared = list_append::Shared::new();
    let appenders: Vec<_> = (0..LIST_APPEND_CLIENTS)
        .map(|id| {
            let (db, shared) = (db.clone(), shared.clone());
            tokio::spawn(list_append::client(
                db,
                shared,
                id,
                LIST_APPEND_CLIENTS,
                seed,
                until,
            ))
        })
        .collect();
    let transfers: Vec<_> = (0..TRANSFER_CLIENTS)
        .map(|id| tokio::spawn(bank::transfers(db.clone(), seed ^ id, until)))
        .collect();
    let bank_reader = tokio::spawn(bank::reader(db.clone(), until));
    let writers: Vec<_> = (0..DURABILITY_WRITERS)
        .map(|id| tokio::spawn(durability::writer(db.clone(), id, until)))
        .collect();

    // Heal: the nemesis restarts whatever it broke before returning.
    let (cluster, faults) = nemesis.await.expect("nemesis");
    let mut list_counts = Counts::default();
    for t in appenders {
        list_counts.merge(t.await.expect("list-append client"));
    }
    let mut bank_counts = Counts::default();
    for t in transfers {
        bank_counts.merge(t.await.expect("transfer client"));
    }
    let (reader_counts, mut bank_reads) = bank_reader.await.expect("bank reader");
    bank_counts.merge(reader_counts);
    let mut durability_counts = Counts::default();
    let mut writes = Vec::new();
    for t in writers {
        let (counts, w) = t.await.expect("durability writer");
        durability_counts.merge(counts);
        writes.extend(w);
    }
    cluster.wait_ready().await;
    let cluster = tokio::task::spawn_blocking(move || {
        nemesis::wait_until_fully_replicated(&cluster);
        cluster
    })
    .await
    .expect("waiting for full replication");
    let final_state = cluster
        .state()
        .await
        .expect("cluster state after the faults");
    let final_map = final_state.shard_map.clone().expect("a shard map");
    let mut per_server: std::collections::BTreeMap<&str, usize> = Default::default();
    for s in &final_map.shards {
        for id in &s.storage_ids {
            *per_server.entry(id.as_str()).or_default() += 1;
        }
    }
    // What the data distributor did, from the controller replicas' logs.
    let logs = cluster.all_logs();
    let decisions = |what: &str| logs.matches(what).count();
    eprintln!(
        "faults: shard map version {} after the faults: {} shards, replicas per server {:?}; \
         distributor decisions logged: {} splits, {} merges, {} moves to balance bytes, {} to \
         balance write load, {} to balance counts, {} re-replications",
        final_map.version,
        final_map.shards.len(),
        per_server.values().collect::<Vec<_>>(),
        decisions(": split at"),
        decisions("small and cold: merged"),
        decisions("to balance bytes per server"),
        decisions("to balance write load"),
        decisions("to balance shards per server"),
        decisions("re-replicating to"),
    );
    assert_eq!(
        final_state.controllers.len(),
        3,
        "the controller group lost or gained a member: {:?}",
        final_state.controllers
    );

    // Final reads, then the checkers.
    let final_process = 1_000_000;
    list_append::final_reads(&db, &shared, final_process).await;
    match bank::read_all(&db, Instant::now() + Duration::from_secs(60)).await {
        attempt::Ended::Ok(read) => bank_reads.push(read),
        other => panic!("final bank read: {other:?}\n{}", cluster.all_logs()),
    }
    let observed = durability::observe(&db, &writes).await;

    let history = shared.recorder.snapshot();
    if let Ok(dir) = std::env::var("FERRISDB_HISTORY_DIR") {
        std::fs::create_dir_all(&dir).expect("create FERRISDB_HISTORY_DIR");
        let path = std::path::Path::new(&dir).join("list-append.edn");
        std::fs::write(&path, ferrisdb_check::edn::to_edn(&history)).expect("write the history");
        eprintln!("faults: history written to {}", path.display());
    }
    let list = ferrisdb_check::list_append::check(&history).expect("a well-formed history");
    let bank_anomalies = ferrisdb_check::bank::check_bank(
        bank::ACCOUNTS,
        bank::INITIAL * bank::ACCOUNTS as i64,
        &bank_reads,
    );
    let durable = ferrisdb_check::durability::check_durability(&observed);

    let injected: u32 = faults.values().sum();
    let mut total = list_counts;
    total.merge(bank_counts);
    total.merge(durability_counts);
    let anomalies = list.anomalies.len() + bank_anomalies.len() + durable.anomalies.len();
    let summary = format!(
        "faults: seed {seed}, {secs} s, {injected} faults injected {faults:?}; ops ok {} failed {} \
         unknown {} (list-append {}/{}/{} with {} reads and {} appends checked, {} edges; bank \
         {}/{}/{} with {} snapshot reads; durability {}/{}/{}: {} acknowledged, {} unknown \
         present, {} unknown absent); anomalies {anomalies}; acknowledged writes lost {}",
        total.ok,
        total.failed,
        total.unknown,
        list_counts.ok,
        list_counts.failed,
        list_counts.unknown,
        list.reads,
        list.appends,
        list.edges,
        bank_counts.ok,
        bank_counts.failed,
        bank_counts.unknown,
        bank_reads.len(),
        durability_counts.ok,
        durability_counts.failed,
        durability_counts.unknown,
        durable.acknowledged,
        durable.unknown_present,
        durable.unknown_absent,
        durable.lost() + lost_appends(&list),
    );
    eprintln!("{summary}");
    if let Ok(dir) = std::env::var("FERRISDB_HISTORY_DIR") {
        let path = std::path::Path::new(&dir).join("summary.txt");
        std::fs::write(path, format!("{summary}\n")).expect("write the summary");
    }
    for a in &list.anomalies {
        eprintln!("list-append anomaly: {a}");
    }
    for a in &bank_anomalies {
        eprintln!("bank anomaly: {a}");
    }
    for a in &durable.anomalies {
        eprintln!("durability anomaly: {a}");
    }
    assert!(injected > 0, "the nemesis injected no fault");
    assert!(
        list_counts.ok > 0 && durable.acknowledged > 0,
        "no work got done"
    );
    assert_eq!(anomalies, 0, "seed {seed}: anomalies found (listed above)");
}

/// Lost appends among the list-append anomalies.
fn lost_appends(report: &ferrisdb_check::list_append::Report) -> usize {
    report
        .anomalies
        .iter()
        .filter(|a| matches!(a, ferrisdb_check::list_append::Anomaly::LostAppend { .. }))
        .count()
}
