//! Runs the simulations over many seeds and prints one line per seed.
//!
//! - `cargo test -p ferrisdb-sim --release` runs [`DEFAULT_SEEDS`] seeds of each workload
//!   from a fixed start, plus the regression seeds;
//! - `FERRISDB_SIM_SEEDS=100000` runs that many of each (a soak), from
//!   `FERRISDB_SIM_FIRST_SEED` (default: a fixed start);
//! - `FERRISDB_SIM_SEED=1234` replays one seed of each workload and prints its last events.

use std::time::Instant;

use ferrisdb_sim::engine_run::run_engine_seed;
use ferrisdb_sim::log_server_run::run_log_server_seed;
use ferrisdb_sim::raft_journal_run::run_raft_journal_seed;
use ferrisdb_sim::{SeedRun, verdict};

/// Seeds of each workload run by default (the test suite).
const DEFAULT_SEEDS: u64 = 300;
/// First seed of the default run.
const DEFAULT_FIRST_SEED: u64 = 1;
/// Engine seeds that failed before a fix (see `docs/simulation.md`), run on every default
/// run. The code they ran against has changed, so they no longer replay the same events;
/// the regression tests proper are the unit tests written with each fix.
const ENGINE_REGRESSION_SEEDS: &[u64] = &[1, 2, 22, 31, 82, 865, 20595, 21133];

fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    match text.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("{name}={text:?} is not a number"),
    }
}

/// The seeds to run: the one replayed, or a range plus `regressions`.
fn seeds(regressions: &[u64]) -> Vec<u64> {
    if let Some(seed) = env_u64("FERRISDB_SIM_SEED") {
        return vec![seed];
    }
    let count = env_u64("FERRISDB_SIM_SEEDS").unwrap_or(DEFAULT_SEEDS);
    let first = env_u64("FERRISDB_SIM_FIRST_SEED").unwrap_or(DEFAULT_FIRST_SEED);
    let mut seeds: Vec<u64> = (first..first.saturating_add(count)).collect();
    for seed in regressions {
        if !seeds.contains(seed) {
            seeds.push(*seed);
        }
    }
    seeds
}

/// Runs a seed; a panic (in the code under test or the harness) is that seed's failure, not
/// the end of the run.
fn run_catching_panics(workload: &'static str, run: fn(u64) -> SeedRun, seed: u64) -> SeedRun {
    std::panic::catch_unwind(|| run(seed)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "a panic".to_owned());
        SeedRun {
            seed,
            workload,
            trace: 0,
            steps: 0,
            restarts: 0,
            power_cuts: 0,
            failure: Some(format!("panicked: {message}")),
        }
    })
}

/// Runs every seed of `workload`, prints a line per seed and a summary; fails on any failure.
fn run_seeds(workload: &'static str, run: fn(u64) -> SeedRun, regressions: &[u64]) {
    let seeds = seeds(regressions);
    let started = Instant::now();
    let mut failures = Vec::new();
    let (mut steps, mut restarts, mut power_cuts) = (0u64, 0u64, 0u64);
    for &seed in &seeds {
        let result = run_catching_panics(workload, run, seed);
        println!("{}", verdict(&result));
        steps += result.steps;
        restarts += result.restarts;
        power_cuts += result.power_cuts;
        if let Some(reason) = &result.failure {
            println!("{reason}");
            println!("replay: FERRISDB_SIM_SEED={seed} cargo test -p ferrisdb-sim --release");
            failures.push(seed);
        }
    }
    println!(
        "{workload}: {} seeds in {:.1} s: {steps} steps, {restarts} restarts, {power_cuts} \
         power cuts, {} failed",
        seeds.len(),
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "failing {workload} seeds: {failures:?}"
    );
}

#[test]
fn engine_seeds_pass() {
    run_seeds("engine", run_engine_seed, ENGINE_REGRESSION_SEEDS);
}

#[test]
fn log_server_seeds_pass() {
    run_seeds("log-server", run_log_server_seed, &[]);
}

#[test]
fn raft_journal_seeds_pass() {
    run_seeds("raft-journal", run_raft_journal_seed, &[]);
}

#[test]
fn a_seed_replays_to_the_same_trace() {
    for (run, name) in [
        (run_engine_seed as fn(u64) -> SeedRun, "engine"),
        (run_log_server_seed, "log-server"),
        (run_raft_journal_seed, "raft-journal"),
    ] {
        for seed in [7, 99, 4242] {
            let first = run(seed);
            let second = run(seed);
            assert_eq!(
                first.trace,
                second.trace,
                "{name} seed {seed} gave two traces:\n{}\n{}",
                verdict(&first),
                verdict(&second)
            );
            assert!(first.steps > 0);
        }
        assert_ne!(run(1).trace, run(2).trace);
    }
}
