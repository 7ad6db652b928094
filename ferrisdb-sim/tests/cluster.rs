//! The whole cluster in one process: the real controllers, log servers, coordinators and
//! storage servers, each a simulated process on the simulated network, its own simulated
//! disk and a paused clock, serving real clients — the bank and list-append workloads under
//! partitions, pauses, kills, power cuts, clock jumps and disk faults, over many seeds.
//!
//! `FERRISDB_SIM_CLUSTER_SEEDS=N` runs seeds 1..=N (default [`DEFAULT_SEEDS`]; without it,
//! `FERRISDB_SIM_SEEDS=N`, which also sets the disk workloads' seeds in `tests/seeds.rs`),
//! spread over the [`SHARDS`] tests below so that they run in parallel;
//! `FERRISDB_SIM_SEED=S` replays one.
//! `FERRISDB_SIM_EVENTS=DIR` writes each seed's trace events to `DIR/seed-S.events`.
//! `FERRISDB_SIM_FAILURE_LOGS=DIR` keeps each seed's role logs (`RUST_LOG`, default
//! `info,openraft=warn`) and writes those of a failing seed to `DIR/seed-S.log`; seeds then run
//! one at a time in the process (run the shards as separate processes to use more cores).

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use ferrisdb_sim::cluster::seed_run::{run_cluster_seed, run_cluster_seed_recorded};

/// Seeds run by default (the test suite): half with one replica of each role, half (the odd
/// ones) replicated as `cluster up` runs a cluster (three controllers, two coordinators, two
/// log servers, two storage servers).
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

/// The log lines of the seed being run, when `FERRISDB_SIM_FAILURE_LOGS` is set.
struct SeedLog {
    /// Where a failing seed's lines go.
    dir: PathBuf,
    /// The current seed's lines (the first [`SEED_LOG_LIMIT`] bytes).
    lines: Mutex<Vec<u8>>,
    /// Held while a seed runs, so the lines are one seed's.
    running: Mutex<()>,
    /// When the current seed began: its simulated clock starts about then.
    started: Mutex<Option<std::time::Instant>>,
}

/// Stamps each line with the simulated time since the seed began (`sim 12.345s`), or `thread`
/// on a thread outside the simulation's runtime (the engine's flush and compaction threads),
/// which has no simulated time.
struct SimTime(&'static SeedLog);

impl tracing_subscriber::fmt::time::FormatTime for SimTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        let started = *self
            .0
            .started
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match (tokio::runtime::Handle::try_current(), started) {
            (Ok(_), Some(started)) => {
                let now = tokio::time::Instant::now().into_std();
                write!(
                    w,
                    "sim {:.6}s",
                    now.saturating_duration_since(started).as_secs_f64()
                )
            }
            _ => write!(w, "thread"),
        }
    }
}

/// At most this many bytes of one seed's log are kept.
const SEED_LOG_LIMIT: usize = 512 << 20;

impl Write for &'static SeedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut lines = self
            .lines
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if lines.len() + buf.len() <= SEED_LOG_LIMIT {
            lines.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The per-seed log capture, installed on first use (`None` unless asked for).
fn seed_log() -> Option<&'static SeedLog> {
    static SEED_LOG: OnceLock<Option<&'static SeedLog>> = OnceLock::new();
    *SEED_LOG.get_or_init(|| {
        let dir = PathBuf::from(std::env::var_os("FERRISDB_SIM_FAILURE_LOGS")?);
        if let Err(err) = std::fs::create_dir_all(&dir) {
            panic!("FERRISDB_SIM_FAILURE_LOGS={}: {err}", dir.display());
        }
        let log: &'static SeedLog = Box::leak(Box::new(SeedLog {
            dir,
            lines: Mutex::new(Vec::new()),
            running: Mutex::new(()),
            started: Mutex::new(None),
        }));
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn")),
            )
            .with_ansi(false)
            .with_timer(SimTime(log))
            .with_writer(move || log)
            .init();
        Some(log)
    })
}

/// Runs one seed, writing its trace's events to `DIR/seed-S.events` with
/// `FERRISDB_SIM_EVENTS=DIR` (what each client saw, every network write, in order).
fn run_seed_keeping_events(seed: u64) -> ferrisdb_sim::cluster::seed_run::ClusterRun {
    let Some(dir) = std::env::var_os("FERRISDB_SIM_EVENTS").map(PathBuf::from) else {
        return run_cluster_seed(seed);
    };
    let (run, events) = run_cluster_seed_recorded(seed, true);
    let path = dir.join(format!("seed-{seed}.events"));
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&path, events.unwrap_or_default().join("\n")));
    match written {
        Ok(()) => println!("  events: {}", path.display()),
        Err(err) => println!("  events not written to {}: {err}", path.display()),
    }
    run
}

/// Runs one seed; with the log capture on, alone, and its log kept if it fails.
fn run_seed(seed: u64) -> ferrisdb_sim::cluster::seed_run::ClusterRun {
    let Some(log) = seed_log() else {
        return run_seed_keeping_events(seed);
    };
    let _alone = log
        .running
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    log.lines
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clear();
    *log.started
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(std::time::Instant::now());
    let run = run_seed_keeping_events(seed);
    if run.failure.is_some() {
        let path = log.dir.join(format!("seed-{seed}.log"));
        let lines = std::mem::take(
            &mut *log
                .lines
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        match std::fs::write(&path, lines) {
            Ok(()) => println!("  role logs: {}", path.display()),
            Err(err) => println!("  role logs not written to {}: {err}", path.display()),
        }
    }
    run
}

/// Runs this shard's seeds, one line each, and fails if any failed.
fn run_shard(shard: u64) {
    if seed_log().is_none() && std::env::var_os("RUST_LOG").is_some() {
        ferrisdb_server::grpc::init_tracing();
    }
    let seeds: Vec<u64> = match env_u64("FERRISDB_SIM_SEED") {
        Some(seed) => vec![seed],
        None => {
            let seeds = env_u64("FERRISDB_SIM_CLUSTER_SEEDS")
                .or_else(|| env_u64("FERRISDB_SIM_SEEDS"))
                .unwrap_or(DEFAULT_SEEDS);
            (1..=seeds).collect()
        }
    };
    let seeds: Vec<u64> = seeds.into_iter().filter(|s| s % SHARDS == shard).collect();
    let started = Instant::now();
    let (mut simulated, mut failures) = (0.0, Vec::new());
    for seed in seeds.iter().copied() {
        let run = run_seed(seed);
        simulated += run.simulated.as_secs_f64();
        match &run.failure {
            None => println!(
                "seed={seed} trace={:016x} ok (cluster{}): {} events, {} transfers, {} failed transactions, {} reads, \
                 list-append {}/{}/{} ok/failed/unknown, {} partitions, {} kills ({} power \
                 cuts), {} pauses, {} clock jumps, {} disk faults ({} disk calls failed, {} supervised \
                 restarts), {} wiped, {} log batches compared, {} storage batches checked against the log, {} BUGGIFY fires, {:.1} simulated \
                 s, {:?}",
                run.trace,
                if run.replicated { ", replicated" } else { "" },
                run.events,
                run.transfers,
                run.failed,
                run.reads,
                run.lists.ok,
                run.lists.failed,
                run.lists.unknown,
                run.partitions,
                run.kills,
                run.power_cuts,
                run.pauses,
                run.clock_jumps,
                run.disk_faults,
                run.failed_disk_calls,
                run.supervised_restarts,
                run.wipes,
                run.log_batches_compared,
                run.storage_batches_checked,
                run.buggify_fired,
                run.simulated.as_secs_f64(),
                run.network
            ),
            Some(reason) => {
                println!("seed={seed} trace={:016x} FAIL {reason}", run.trace);
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

/// The same seed twice gives the same trace: every network write and transaction outcome
/// the same, in the same order. Seeds 1 (replicated) and 2 by default;
/// `FERRISDB_SIM_DETERMINISM_SEEDS=N` checks seeds 1..=N, `FERRISDB_SIM_SEED=S` that one.
#[test]
fn the_same_seed_twice_gives_the_same_trace() {
    let seeds: Vec<u64> = match (
        env_u64("FERRISDB_SIM_SEED"),
        env_u64("FERRISDB_SIM_DETERMINISM_SEEDS"),
    ) {
        (Some(seed), _) => vec![seed],
        (None, Some(n)) => (1..=n).collect(),
        (None, None) => vec![1, 2],
    };
    let started = Instant::now();
    let mut events = 0;
    for &seed in &seeds {
        let (first, first_events) = run_cluster_seed_recorded(seed, true);
        let (second, second_events) = run_cluster_seed_recorded(seed, true);
        let (Some(first_events), Some(second_events)) = (first_events, second_events) else {
            panic!("seed {seed}: no events were kept");
        };
        assert!(
            first.events > 1000,
            "seed {seed}: only {} events",
            first.events
        );
        if let Some(divergence) =
            ferrisdb_sim::cluster::events::first_divergence(&first_events, &second_events)
        {
            panic!(
                "seed {seed} ran differently twice (traces {:016x} and {:016x}): {divergence}",
                first.trace, second.trace
            );
        }
        assert_eq!(first.trace, second.trace);
        events += first.events;
        println!(
            "seed={seed} trace={:016x} ok (twice, {} events)",
            first.trace, first.events
        );
    }
    println!(
        "determinism: {} seeds run twice, the same {events} events each time, in {:.1} s",
        seeds.len(),
        started.elapsed().as_secs_f64()
    );
}
