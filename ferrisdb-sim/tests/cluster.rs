//! The whole cluster in one process: the real controller, log server, coordinator and
//! storage server, each a simulated process on the simulated network, its own simulated disk
//! and a paused clock, serving real clients — the bank workload with partitions, kills and
//! power cuts, over many seeds.
//!
//! `FERRISDB_SIM_CLUSTER_SEEDS=N` runs seeds 1..=N (default [`DEFAULT_SEEDS`]), spread over
//! the [`SHARDS`] tests below so that they run in parallel; `FERRISDB_SIM_SEED=S` replays one.

use std::time::Instant;

use ferrisdb_sim::cluster::seed_run::run_cluster_seed;

/// Seeds run by default (the test suite).
const DEFAULT_SEEDS: u64 = 200;
/// The tests the seeds are spread over (seed `s` runs in test `s % SHARDS`).
const SHARDS: u64 = 4;

fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    match text.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("{name}={text:?} is not a number"),
    }
}

/// Runs this shard's seeds, one line each, and fails if any failed.
fn run_shard(shard: u64) {
    if std::env::var_os("RUST_LOG").is_some() {
        ferrisdb_server::grpc::init_tracing();
    }
    let seeds: Vec<u64> = match env_u64("FERRISDB_SIM_SEED") {
        Some(seed) => vec![seed],
        None => (1..=env_u64("FERRISDB_SIM_CLUSTER_SEEDS").unwrap_or(DEFAULT_SEEDS)).collect(),
    };
    let seeds: Vec<u64> = seeds.into_iter().filter(|s| s % SHARDS == shard).collect();
    let started = Instant::now();
    let (mut simulated, mut failures) = (0.0, Vec::new());
    for seed in seeds.iter().copied() {
        let run = run_cluster_seed(seed);
        simulated += run.simulated.as_secs_f64();
        match &run.failure {
            None => println!(
                "cluster seed={seed} ok: {} transfers, {} failed transactions, {} reads, \
                 list-append {}/{}/{} ok/failed/unknown, {} partitions, {} kills ({} power \
                 cuts), {} clock jumps, {:.1} simulated s, {:?}",
                run.transfers,
                run.failed,
                run.reads,
                run.lists.ok,
                run.lists.failed,
                run.lists.unknown,
                run.partitions,
                run.kills,
                run.power_cuts,
                run.clock_jumps,
                run.simulated.as_secs_f64(),
                run.network
            ),
            Some(reason) => {
                println!("cluster seed={seed} FAIL {reason}");
                println!("  faults: {}", run.faults.join("; "));
                println!(
                    "replay: FERRISDB_SIM_SEED={seed} cargo test -p ferrisdb-sim --test cluster"
                );
                failures.push(seed);
            }
        }
    }
    let wall = started.elapsed().as_secs_f64();
    println!(
        "cluster shard {shard}: {} seeds in {wall:.1} s: {simulated:.0} simulated s ({:.0} \
         simulated s per wall s), {} failed",
        seeds.len(),
        simulated / wall.max(1e-9),
        failures.len()
    );
    assert!(failures.is_empty(), "failing cluster seeds: {failures:?}");
}

#[test]
fn bank_stays_consistent_and_durable_through_partitions_and_kills_shard_0() {
    run_shard(0);
}

#[test]
fn bank_stays_consistent_and_durable_through_partitions_and_kills_shard_1() {
    run_shard(1);
}

#[test]
fn bank_stays_consistent_and_durable_through_partitions_and_kills_shard_2() {
    run_shard(2);
}

#[test]
fn bank_stays_consistent_and_durable_through_partitions_and_kills_shard_3() {
    run_shard(3);
}
