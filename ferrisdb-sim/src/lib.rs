//! Deterministic simulation for FerrisDB: the real code runs on simulated resources, every
//! random choice — the workload, the faults, what a crash keeps — follows one seed, and a
//! failing seed replays exactly.
//!
//! What runs today:
//! - [`disk::SimDisk`], an in-memory [`FileSystem`](ferrisdb_storage::vfs::FileSystem) that
//!   keeps written and fsynced data apart, so a power cut loses what a real disk may lose
//!   (unsynced bytes, a torn last page, unsynced renames), and that fails fsyncs or fills up
//!   on cue;
//! - [`engine_run`], the storage engine on that disk under a random workload with power
//!   cuts, kills and restarts, checked against a model after every read and recovery.
//!
//! Each seed's run folds its events into a [`trace::Trace`] hash; the same seed twice gives
//! the same hash (tested). `tests/seeds.rs` runs the seeds: `FERRISDB_SIM_SEEDS=N` runs N of
//! them, `FERRISDB_SIM_SEED=S` replays one. See `docs/simulation.md`.

pub mod disk;
pub mod engine_run;
pub mod trace;

/// The one-line verdict of a seed: `seed=<N> trace=<hex> ok` or `... FAIL <reason>`.
pub fn verdict(run: &engine_run::EngineRun) -> String {
    match &run.failure {
        None => format!("seed={} trace={:016x} ok", run.seed, run.trace),
        Some(reason) => {
            let first_line = reason.lines().next().unwrap_or_default();
            format!(
                "seed={} trace={:016x} FAIL {first_line}",
                run.seed, run.trace
            )
        }
    }
}
