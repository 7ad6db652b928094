//! The nemesis: a thread that injects one fault at a time into a running [`TestCluster`]
//! until a deadline, from a seeded random schedule, and heals each fault before the next:
//!
//! - SIGKILL the coordinator, one storage server, several storage servers, or the
//!   controller, then restart it (same address and data directory) after a random downtime;
//! - SIGSTOP any process for a random short time, then SIGCONT it.
//!
//! It runs on a plain thread because restarting waits (blocking) for the port to listen.

use std::collections::BTreeMap;
use std::thread::sleep;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};

use super::common::cluster::{Node, TestCluster};

/// Faults injected, by kind.
pub type FaultCounts = BTreeMap<&'static str, u32>;

fn kill_restart(nodes: &mut [&mut Node], down: Duration) {
    for n in nodes.iter_mut() {
        n.kill();
    }
    sleep(down);
    for n in nodes.iter_mut() {
        n.start();
    }
}

/// Injects faults until `until`, then returns the cluster (every process running) and what
/// was injected. Each fault is logged to stderr with its time.
pub fn run(mut cluster: TestCluster, seed: u64, until: Instant) -> (TestCluster, FaultCounts) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut counts = FaultCounts::new();
    let started = Instant::now();
    loop {
        sleep(Duration::from_millis(rng.random_range(300..1500)));
        if Instant::now() >= until {
            return (cluster, counts);
        }
        let mut down = Duration::from_millis(rng.random_range(50..1500));
        let storage = cluster.storage.len();
        let fault = match rng.random_range(0..10) {
            0..=1 => {
                kill_restart(&mut [&mut cluster.coordinator], down);
                "kill coordinator"
            }
            2..=3 => {
                let i = rng.random_range(0..storage);
                kill_restart(&mut [&mut cluster.storage[i]], down);
                "kill one storage server"
            }
            4 => {
                let picked = sample(&mut rng, storage, 2.min(storage)).into_vec();
                let mut nodes: Vec<&mut Node> = cluster
                    .storage
                    .iter_mut()
                    .enumerate()
                    .filter(|(i, _)| picked.contains(i))
                    .map(|(_, n)| n)
                    .collect();
                kill_restart(&mut nodes, down);
                "kill several storage servers"
            }
            5..=6 => {
                kill_restart(&mut [&mut cluster.controller], down);
                "kill controller"
            }
            _ => {
                let which = rng.random_range(0..storage + 2);
                let node = match which {
                    0 => &cluster.controller,
                    1 => &cluster.coordinator,
                    i => &cluster.storage[i - 2],
                };
                // Pauses stay short: a paused process stalls its clients for that long.
                down = down.min(Duration::from_millis(1000));
                if let Some(p) = &node.process {
                    p.pause();
                    sleep(down);
                    p.resume();
                }
                match which {
                    0 => "pause controller",
                    1 => "pause coordinator",
                    _ => "pause storage server",
                }
            }
        };
        eprintln!(
            "nemesis {:>6.1}s: {fault} (down {down:?})",
            started.elapsed().as_secs_f64()
        );
        *counts.entry(fault).or_default() += 1;
    }
}
