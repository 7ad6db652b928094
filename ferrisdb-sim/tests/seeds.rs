//! Runs the simulation over many seeds and prints one line per seed.
//!
//! - `cargo test -p ferrisdb-sim --release` runs [`DEFAULT_SEEDS`] seeds from a fixed start;
//! - `FERRISDB_SIM_SEEDS=100000` runs that many (a soak), from `FERRISDB_SIM_FIRST_SEED`
//!   (default: a fixed start);
//! - `FERRISDB_SIM_SEED=1234` replays one seed and prints its last events.

use std::time::Instant;

use ferrisdb_sim::engine_run::{EngineRun, run_engine_seed};
use ferrisdb_sim::verdict;

/// Seeds run by default (the test suite).
const DEFAULT_SEEDS: u64 = 300;
/// Seeds that failed before a fix (see `docs/simulation.md`), run on every default run. The
/// code they ran against has changed, so they no longer replay the same events; the
/// regression tests proper are the unit tests written with each fix.
const REGRESSION_SEEDS: &[u64] = &[1, 2, 22, 31, 82, 865, 20595, 21133];
/// First seed of the default run.
const DEFAULT_FIRST_SEED: u64 = 1;

fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    match text.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("{name}={text:?} is not a number"),
    }
}

/// Runs a seed; a panic (in the engine or the harness) is that seed's failure, not the end
/// of the run.
fn run_catching_panics(seed: u64) -> EngineRun {
    std::panic::catch_unwind(|| run_engine_seed(seed)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "a panic".to_owned());
        EngineRun {
            seed,
            trace: 0,
            steps: 0,
            restarts: 0,
            power_cuts: 0,
            failure: Some(format!("panicked: {message}")),
        }
    })
}

#[test]
fn engine_seeds_pass() {
    let seeds: Vec<u64> = match env_u64("FERRISDB_SIM_SEED") {
        Some(seed) => vec![seed],
        None => {
            let count = env_u64("FERRISDB_SIM_SEEDS").unwrap_or(DEFAULT_SEEDS);
            let first = env_u64("FERRISDB_SIM_FIRST_SEED").unwrap_or(DEFAULT_FIRST_SEED);
            let mut seeds: Vec<u64> = (first..first.saturating_add(count)).collect();
            for seed in REGRESSION_SEEDS {
                if !seeds.contains(seed) {
                    seeds.push(*seed);
                }
            }
            seeds
        }
    };
    let started = Instant::now();
    let mut failures = Vec::new();
    let (mut steps, mut restarts, mut power_cuts) = (0u64, 0u64, 0u64);
    for &seed in &seeds {
        let run = run_catching_panics(seed);
        println!("{}", verdict(&run));
        steps += run.steps;
        restarts += run.restarts;
        power_cuts += run.power_cuts;
        if let Some(reason) = &run.failure {
            println!("{reason}");
            println!("replay: FERRISDB_SIM_SEED={seed} cargo test -p ferrisdb-sim --release");
            failures.push(seed);
        }
    }
    println!(
        "{} seeds in {:.1} s: {steps} steps, {restarts} restarts, {power_cuts} power cuts, \
         {} failed",
        seeds.len(),
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    assert!(failures.is_empty(), "failing seeds: {failures:?}");
}

#[test]
fn a_seed_replays_to_the_same_trace() {
    for seed in [7, 99, 4242] {
        let first = run_engine_seed(seed);
        let second = run_engine_seed(seed);
        assert_eq!(
            first.trace,
            second.trace,
            "seed {seed} gave two traces:\n{}\n{}",
            verdict(&first),
            verdict(&second)
        );
        assert!(first.steps > 0);
    }
    assert_ne!(run_engine_seed(1).trace, run_engine_seed(2).trace);
}
