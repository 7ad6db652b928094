//! The cluster simulation: the real roles run as simulated processes ([`process`]) on one
//! current-thread tokio runtime with a seeded scheduler and a simulated clock ([`runtime`],
//! [`run_clock`]), talking gRPC over the simulated network ([`network`]); [`boot`] starts
//! them, each on its own simulated disk, and kills and restarts them; [`seed_run`] runs one
//! seed: the bank and list-append workloads against them under partitions, kills, power
//! cuts and clock jumps.
//!
//! **The clock.** The runtime's clock is paused and moves only in steps of [`TICK`], made by
//! [`run_clock`] once the tasks woken by the previous step have run. It does not jump to the
//! next timer when every task waits (tokio's auto-advance, which a blocking-pool task held
//! for the whole run switches off): the roles still do some work on threads of their own
//! (the coordinator's syncer, the log servers' syncers, the engine's flush and compaction,
//! the storage purger), and a clock that jumped while such a thread worked would fire
//! timeouts that never fire in production. With steps, a thread's work takes the simulated
//! time that passes while it runs — a few steps.

#[cfg(not(tokio_unstable))]
compile_error!(
    "the cluster simulation needs `--cfg tokio_unstable` (set in .cargo/config.toml; a \
     RUSTFLAGS variable in the environment replaces it: add the flag there too)"
);

pub mod boot;
pub mod clock;
pub mod list_append;
pub mod network;
pub mod process;
pub mod seed_run;

use std::future::Future;
use std::time::Duration;

use tokio::runtime::{Builder, RngSeed, Runtime};

/// One step of the simulated clock.
pub const TICK: Duration = Duration::from_millis(1);

/// The runtime a seed's simulation runs on: one thread, a paused clock, `select!` choosing
/// branches from `seed`, and every task attributed to its simulated process (every process
/// in its first life).
pub fn runtime(seed: u64) -> std::io::Result<Runtime> {
    process::reset_lives();
    let mut builder = Builder::new_current_thread();
    process::track_processes(&mut builder)
        .enable_all()
        .start_paused(true)
        .rng_seed(RngSeed::from_bytes(&seed.to_le_bytes()))
        .build()
}

/// Drives the simulated clock in steps of [`TICK`] until `done` completes, and returns its
/// output. Call it as the runtime's `block_on` future, with the workload spawned as tasks.
pub async fn run_clock<T>(done: impl Future<Output = T>) -> T {
    // A blocking-pool task in flight stops tokio from advancing a paused clock on its own.
    let (release, held) = std::sync::mpsc::channel::<()>();
    let hold = tokio::task::spawn_blocking(move || {
        let _ = held.recv();
    });
    let mut done = std::pin::pin!(done);
    let output = loop {
        // Let every task the last step woke run before the next step.
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
        if let Some(output) = futures_util::FutureExt::now_or_never(done.as_mut()) {
            break output;
        }
        tokio::time::advance(TICK).await;
    };
    drop(release);
    let _ = hold.await;
    output
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_moves_in_steps_until_the_workload_is_done() {
        let runtime = runtime(7).unwrap();
        let (simulated, answer) = runtime.block_on(async {
            let begin = tokio::time::Instant::now();
            let workload = tokio::spawn(async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                42
            });
            let answer = run_clock(workload).await.unwrap();
            (begin.elapsed(), answer)
        });
        assert_eq!(answer, 42);
        assert!(simulated >= Duration::from_secs(3), "{simulated:?}");
        assert!(
            simulated <= Duration::from_secs(3) + 10 * TICK,
            "{simulated:?}"
        );
    }
}
