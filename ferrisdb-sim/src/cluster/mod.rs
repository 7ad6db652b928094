//! The cluster simulation's machinery: the real roles run as simulated processes
//! ([`process`]) on one current-thread tokio runtime with a paused clock and a seeded
//! scheduler ([`runtime`]), talking gRPC over the simulated network ([`network`]).

#[cfg(not(tokio_unstable))]
compile_error!(
    "the cluster simulation needs `--cfg tokio_unstable` (set in .cargo/config.toml; a \
     RUSTFLAGS variable in the environment replaces it: add the flag there too)"
);

pub mod network;
pub mod process;

use tokio::runtime::{Builder, RngSeed, Runtime};

/// The runtime a seed's simulation runs on: one thread, a paused clock that jumps to the next
/// timer whenever every task waits, `select!` choosing branches from `seed`, and every task
/// attributed to its simulated process.
pub fn runtime(seed: u64) -> std::io::Result<Runtime> {
    let mut builder = Builder::new_current_thread();
    process::track_processes(&mut builder)
        .enable_all()
        .start_paused(true)
        .rng_seed(RngSeed::from_bytes(&seed.to_le_bytes()))
        .build()
}
