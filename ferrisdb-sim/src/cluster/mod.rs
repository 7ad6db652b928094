//! The cluster simulation: the real roles run as simulated processes ([`process`]) on one
//! current-thread tokio runtime with a seeded scheduler and a simulated clock ([`runtime`],
//! [`run_clock`]), talking gRPC over the simulated network ([`network`]); [`boot`] starts
//! them, each on its own simulated disk, and kills and restarts them; [`seed_run`] runs one
//! seed: the bank and list-append workloads against them under partitions, kills, power
//! cuts and clock jumps, and [`replicas`] checks at the end that storage replicas agree.
//!
//! **Determinism.** Everything a seed's run does happens on the runtime's one thread: the
//! roles' blocking work (file I/O, fsyncs, the engine's flushes and compactions) runs inline
//! and their syncer and purger loops run as tasks (`ferrisdb_server::exec`, switched on for
//! the thread by [`runtime`]); ids and retry jitter come from a generator seeded per thread
//! (`ferrisdb_core::random`); every clock a role reads is simulated (tokio's paused clock,
//! each machine's [`clock::SimClock`]); and nothing iterates a `HashMap` where the order
//! shows. The same seed therefore does the same things in the same order, which
//! [`events`] records as one hash per run.
//!
//! **The clock.** The runtime's clock is paused and moves only in steps of [`TICK`], made by
//! [`run_clock`] once the tasks woken by the previous step have run, rather than jumping to
//! the next timer whenever every task waits (tokio's auto-advance, which a blocking-pool
//! task held for the whole run switches off): work takes the step it runs in, as it would
//! take a little time on a real machine.
//!
//! The roles no longer use tokio's blocking pool in simulation. If work lands there anyway
//! (a dependency's), it takes at most [`BLOCKING_POOL_GRACE_STEPS`] steps of simulated time:
//! after that many steps with the pool busy, a step waits until the pool is idle, for at
//! most [`BLOCKING_POOL_WAIT`] of real time, so that the load of the machine cannot let the
//! clock run on for seconds while the work waits for a thread (such work would make the run
//! depend on the machine's scheduler: the determinism test would show it).

#[cfg(not(tokio_unstable))]
compile_error!(
    "the cluster simulation needs `--cfg tokio_unstable` (set in .cargo/config.toml; a \
     RUSTFLAGS variable in the environment replaces it: add the flag there too)"
);

pub mod boot;
pub mod clock;
pub mod events;
pub mod list_append;
pub mod network;
pub mod process;
pub mod replicas;
pub mod seed_run;

use std::future::Future;
use std::time::Duration;

use tokio::runtime::{Builder, RngSeed, Runtime};

/// One step of the simulated clock.
pub const TICK: Duration = Duration::from_millis(1);

/// Longest real time a step of the clock waits for the blocking pool to finish its work (a
/// task that waits for something else to happen must not stop the clock).
pub const BLOCKING_POOL_WAIT: Duration = Duration::from_millis(5);

/// Steps the clock takes in a row while the blocking pool has work before it waits for the
/// pool: blocking work takes at most this many steps of simulated time (waiting at every
/// step would make the runs twice as slow, each step waiting for a thread to wake).
pub const BLOCKING_POOL_GRACE_STEPS: u32 = 5;

/// The runtime a seed's simulation runs on: one thread, a paused clock, `select!` choosing
/// branches from `seed`, and every task attributed to its simulated process (every process
/// in its first life).
pub fn runtime(seed: u64) -> std::io::Result<Runtime> {
    process::reset_lives();
    // The roles' blocking work and worker loops run on this thread: nothing of the
    // simulation runs on another.
    ferrisdb_server::exec::run_inline_on_this_thread();
    // Ids and jitter drawn by the roles and clients follow the seed.
    ferrisdb_core::random::seed_this_thread(seed);
    // The roles' BUGGIFY points, chosen afresh for the seed (`FERRISDB_SIM_BUGGIFY=0`: off).
    if std::env::var("FERRISDB_SIM_BUGGIFY").as_deref() == Ok("0") {
        ferrisdb_core::buggify::disable_on_this_thread();
    } else {
        ferrisdb_core::buggify::enable_on_this_thread();
    }
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
    // Steps taken in a row while the blocking pool had work.
    let mut busy_steps = 0;
    let output = loop {
        // Let every task the last step woke run before the next step.
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
        if let Some(output) = futures_util::FutureExt::now_or_never(done.as_mut()) {
            break output;
        }
        if blocking_pool_busy() {
            busy_steps += 1;
            if busy_steps > BLOCKING_POOL_GRACE_STEPS {
                wait_for_blocking_pool().await;
                busy_steps = 0;
            }
        } else {
            busy_steps = 0;
        }
        tokio::time::advance(TICK).await;
    };
    drop(release);
    let _ = hold.await;
    output
}

/// Whether a task other than [`run_clock`]'s own holds a thread of the blocking pool or
/// waits for one.
fn blocking_pool_busy() -> bool {
    let metrics = tokio::runtime::Handle::current().metrics();
    let working = metrics
        .num_blocking_threads()
        .saturating_sub(metrics.num_idle_blocking_threads());
    working > 1 || metrics.blocking_queue_depth() > 0
}

/// Waits (in real time, at most [`BLOCKING_POOL_WAIT`]) until the blocking pool is idle
/// ([`blocking_pool_busy`]), letting the runtime's tasks run in between (a blocking task may
/// wait for one of them).
async fn wait_for_blocking_pool() {
    let started = std::time::Instant::now();
    while blocking_pool_busy() {
        let waited = started.elapsed();
        if waited >= BLOCKING_POOL_WAIT {
            break;
        }
        tokio::task::yield_now().await;
        // Most blocking tasks end within microseconds: spin a little before sleeping.
        if waited < Duration::from_micros(200) {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
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

    #[test]
    fn blocking_pool_work_takes_a_few_steps_of_simulated_time() {
        let runtime = runtime(7).unwrap();
        let simulated = runtime.block_on(async {
            let begin = tokio::time::Instant::now();
            let workload = tokio::spawn(async {
                for _ in 0..3 {
                    // Shorter than one wait (BLOCKING_POOL_WAIT), as blocking work is.
                    tokio::task::spawn_blocking(|| {
                        std::thread::sleep(Duration::from_millis(3));
                    })
                    .await
                    .unwrap();
                }
            });
            run_clock(workload).await.unwrap();
            begin.elapsed()
        });
        // 9 ms of real work on the pool: a few steps each (a task may outlast a wait or
        // three on a loaded machine), not the hundreds of steps the clock takes in 3 ms of
        // real time without the wait.
        let most = 3 * 4 * (BLOCKING_POOL_GRACE_STEPS + 1);
        assert!(simulated <= most * TICK, "{simulated:?}");
    }
}
