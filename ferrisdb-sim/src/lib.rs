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
//! - [`log_server_run`], a log server (its commit log and its generation fence) on that
//!   disk under appends, recovery locks, resets, truncations and the same faults, checked
//!   against a model of the log.
//! - [`raft_journal_run`], a controller replica's Raft journal on that disk under the
//!   writes openraft makes and the same faults, checked against the writes that answered.
//! - [`cluster`], the whole cluster in one process: the real roles as simulated processes,
//!   each on its own simulated disk, on one current-thread runtime, talking gRPC over a
//!   simulated network and a stepped simulated clock, under the bank workload with
//!   partitions, kills, power cuts and disk faults (`tests/cluster.rs`), deterministic: the
//!   roles' blocking work runs on the simulation's one thread (`ferrisdb_server::exec`),
//!   their ids follow the seed (`ferrisdb_core::random`) and their clocks are simulated, so
//!   a seed's trace ([`cluster::events`]) is the same in every run.
//!
//! Each seed's run folds its events into a [`trace::Trace`] hash; the same seed twice gives
//! the same hash (tested). `tests/seeds.rs` runs the seeds: `FERRISDB_SIM_SEEDS=N` runs N of
//! them, `FERRISDB_SIM_SEED=S` replays one. See `docs/simulation.md`.

pub mod cluster;
pub mod disk;
pub mod engine_run;
mod harness;
mod log_model;
pub mod log_server_run;
pub mod raft_journal_run;
pub mod trace;

/// How one seed of one workload ended.
#[derive(Debug, Clone)]
pub struct SeedRun {
    /// The seed.
    pub seed: u64,
    /// Which workload ran (`engine`, `log-server`).
    pub workload: &'static str,
    /// The hash of every event of the run.
    pub trace: u64,
    /// Steps taken.
    pub steps: u64,
    /// Restarts (clean, kills and power cuts).
    pub restarts: u64,
    /// Power cuts.
    pub power_cuts: u64,
    /// The first invariant broken, with the last events; `None` if the run passed.
    pub failure: Option<String>,
}

/// The one-line verdict of a seed: `seed=<N> trace=<hex> ok` or `... FAIL <reason>` (the
/// workload's name first when it is not the engine's).
pub fn verdict(run: &SeedRun) -> String {
    let seed = if run.workload == "engine" {
        format!("seed={}", run.seed)
    } else {
        format!("{} seed={}", run.workload, run.seed)
    };
    match &run.failure {
        None => format!("{seed} trace={:016x} ok", run.trace),
        Some(reason) => {
            let first_line = reason.lines().next().unwrap_or_default();
            format!("{seed} trace={:016x} FAIL {first_line}", run.trace)
        }
    }
}
