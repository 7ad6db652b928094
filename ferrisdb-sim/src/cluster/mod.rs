//! The cluster simulation: the real roles run as simulated processes ([`process`]) on one
//! current-thread tokio runtime with a seeded scheduler ([`runtime`]), talking gRPC over the
//! simulated network ([`network`]); [`boot`] starts them and [`bank_run`] runs the bank
//! workload against them with partitions.
//!
//! The clock is still the real one. A paused clock (tokio's, which jumps to the next timer
//! whenever every task waits) runs ahead of the work the roles do on threads of their own —
//! the coordinator's syncer and idle ticker, the log servers' syncers, the engine's flush and
//! compaction — so their timeouts fired spuriously; those threads must first become tasks
//! (or run inline) in simulation.

#[cfg(not(tokio_unstable))]
compile_error!(
    "the cluster simulation needs `--cfg tokio_unstable` (set in .cargo/config.toml; a \
     RUSTFLAGS variable in the environment replaces it: add the flag there too)"
);

pub mod bank_run;
pub mod boot;
pub mod network;
pub mod process;

use tokio::runtime::{Builder, RngSeed, Runtime};

/// The runtime a seed's simulation runs on: one thread, `select!` choosing branches from
/// `seed`, and every task attributed to its simulated process.
pub fn runtime(seed: u64) -> std::io::Result<Runtime> {
    let mut builder = Builder::new_current_thread();
    process::track_processes(&mut builder)
        .enable_all()
        .rng_seed(RngSeed::from_bytes(&seed.to_le_bytes()))
        .build()
}
