//! The whole cluster in one process: the real controller, log server, coordinator and
//! storage server, each a simulated process on the simulated network and a paused clock,
//! serving real clients — the bank workload with partitions, over several seeds.
//!
//! `FERRISDB_SIM_CLUSTER_SEEDS=N` runs N seeds (default 3), `FERRISDB_SIM_SEED=S` one.

use std::time::Instant;

use ferrisdb_sim::cluster::bank_run::run_bank_seed;

fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    match text.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("{name}={text:?} is not a number"),
    }
}

#[test]
fn bank_transfers_stay_consistent_and_durable_through_partitions_and_kills() {
    if std::env::var_os("RUST_LOG").is_some() {
        ferrisdb_server::grpc::init_tracing();
    }
    let seeds: Vec<u64> = match env_u64("FERRISDB_SIM_SEED") {
        Some(seed) => vec![seed],
        None => (1..=env_u64("FERRISDB_SIM_CLUSTER_SEEDS").unwrap_or(3)).collect(),
    };
    let started = Instant::now();
    let (mut simulated, mut failures) = (0.0, Vec::new());
    for seed in seeds.iter().copied() {
        let run = run_bank_seed(seed);
        simulated += run.simulated.as_secs_f64();
        match &run.failure {
            None => println!(
                "cluster seed={seed} ok: {} transfers, {} failed transactions, {} reads, {} \
                 partitions, {} kills ({} power cuts), {:.1} simulated s, {:?}",
                run.transfers,
                run.failed,
                run.reads,
                run.partitions,
                run.kills,
                run.power_cuts,
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
        "cluster: {} seeds in {wall:.1} s: {simulated:.0} simulated s ({:.0} simulated s per \
         wall s), {} failed",
        seeds.len(),
        simulated / wall.max(1e-9),
        failures.len()
    );
    assert!(failures.is_empty(), "failing cluster seeds: {failures:?}");
}
