//! The nemesis: a thread that injects one fault at a time into a running [`TestCluster`]
//! until a deadline, from a seeded random schedule, and heals each fault before the next:
//!
//! - SIGKILL the coordinator, one storage server, several storage servers, the controller
//!   group's leader or one of its followers, then restart it (same address and data
//!   directory) after a random downtime;
//! - cut the controller group's leader off from the other replicas (both ways, through the
//!   proxies in front of them) for a random time, then heal;
//! - SIGKILL a controller replica, wipe its data directory and start it again: it rejoins the
//!   group under a new node id in place of its old self;
//! - SIGKILL the coordinator and wipe its data directory before starting it again (a new
//!   coordinator: the recovery recruits it);
//! - SIGKILL a log server, then restart it as it was; or wipe its data directory first (a new
//!   log server: the recovery moves the generation onto the others; the nemesis waits for
//!   that before the next fault, since losing both log servers of a generation for good is
//!   beyond what two replicas survive);
//! - SIGKILL a storage server, wipe its data directory and start it again: a new storage
//!   server; the controller (`--storage-failure-timeout-ms` short in this test) re-replicates
//!   the lost one's shards and balances shards onto the new one. The nemesis first waits until
//!   every shard is back at two live replicas (losing both replicas of a shard for good is
//!   beyond what replication 2 survives);
//! - SIGSTOP any process (the controller group's leader, the coordinator, a log server, a
//!   storage server) for a random short time, then SIGCONT it;
//! - cut the serving coordinator off from the controller group and the log servers, both
//!   ways, for up to 3 s while clients still reach it (a standby takes over; the isolated
//!   coordinator must neither acknowledge a commit nor hand out a read version), then heal.
//!
//! Coordinator faults hit whichever coordinator serves the generation at that moment.
//! It runs on a plain thread because restarting waits (blocking) for the port to listen.

use std::collections::BTreeMap;
use std::thread::sleep;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};

use ferrisdb_proto::v1;
use ferrisdb_proto::v1::controller_group_client::ControllerGroupClient;

use super::common::cluster::{Node, TestCluster, channel};
use super::common::proxy::source_ip;

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

/// Index (0: `controller`, i: `more_controllers[i - 1]`) of the replica that says it leads,
/// if one answers within a few seconds.
fn controller_leader(cluster: &TestCluster) -> Option<usize> {
    let handle = tokio::runtime::Handle::current();
    let replicas: Vec<_> = std::iter::once(&cluster.controller)
        .chain(&cluster.more_controllers)
        .map(|n| n.addr)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        for (i, addr) in replicas.iter().enumerate() {
            let answer = handle.block_on(async {
                let mut c = ControllerGroupClient::new(channel(addr));
                tokio::time::timeout(
                    Duration::from_millis(500),
                    c.identify(v1::IdentifyRequest {}),
                )
                .await
            });
            if let Ok(Ok(r)) = answer
                && r.get_ref().role == "leader"
            {
                return Some(i);
            }
        }
        sleep(Duration::from_millis(50));
    }
    None
}

/// Waits (at most 30 s) until the controller group has all its replicas back as reachable
/// voters.
fn wait_until_settled(cluster: &TestCluster) {
    let handle = tokio::runtime::Handle::current();
    let replicas = cluster.more_controllers.len() + 1;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let settled = handle.block_on(async {
            tokio::time::timeout(Duration::from_secs(2), cluster.state())
                .await
                .ok()
                .and_then(Result::ok)
                .is_some_and(|s| {
                    s.controllers.len() == replicas
                        && s.controllers
                            .iter()
                            .all(|c| c.role == "leader" || c.role == "follower")
                })
        });
        if settled {
            return;
        }
        sleep(Duration::from_millis(100));
    }
    panic!("the controller group did not settle within 30 s");
}

/// The worker id kept in a node's data directory, if any.
fn worker_id(node: &Node) -> Option<String> {
    let dir = node.data_dir()?;
    std::fs::read_to_string(dir.join("worker_id"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Waits (at most 30 s) until the transaction system serves a generation without log server
/// `id`.
fn wait_until_generation_without(cluster: &TestCluster, id: &str) {
    let handle = tokio::runtime::Handle::current();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let moved = handle.block_on(async {
            tokio::time::timeout(Duration::from_secs(2), cluster.state())
                .await
                .ok()
                .and_then(Result::ok)
                .is_some_and(|s| {
                    matches!(
                        s.recovery_state.as_str(),
                        "accepting commits" | "fully recovered"
                    ) && s
                        .generation
                        .is_some_and(|g| g.logs.iter().all(|l| l.log_id != id))
                })
        });
        if moved {
            return;
        }
        sleep(Duration::from_millis(100));
    }
    let state = handle.block_on(cluster.state());
    panic!(
        "the generation still has the wiped log server {id} after 30 s: {state:?}\n{}",
        cluster.all_logs()
    );
}

/// Waits (at most 60 s) until no shard moves and every shard has `replication` replicas, all
/// of them healthy storage servers.
pub fn wait_until_fully_replicated(cluster: &TestCluster) {
    let handle = tokio::runtime::Handle::current();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    while Instant::now() < deadline {
        let state = handle
            .block_on(async { tokio::time::timeout(Duration::from_secs(2), cluster.state()).await })
            .ok()
            .and_then(Result::ok);
        if let Some(state) = &state
            && fully_replicated(state)
        {
            return;
        }
        last = state;
        sleep(Duration::from_millis(100));
    }
    panic!(
        "shards not back at full replication after 60 s: {last:#?}\n{}",
        cluster.all_logs()
    );
}

/// Whether no shard moves and every shard has `replication` healthy replicas.
pub fn fully_replicated(state: &v1::GetClusterStateResponse) -> bool {
    let healthy = |id: &String| {
        state
            .workers
            .iter()
            .any(|w| w.worker_id == *id && w.healthy)
    };
    state.shard_map.as_ref().is_some_and(|m| {
        m.shards.iter().all(|s| {
            s.moving_to.is_empty()
                && s.storage_ids.len() == state.replication as usize
                && s.storage_ids.iter().all(healthy)
        })
    })
}

/// Index of the coordinator serving the generation (0 if none can be found).
fn serving_coordinator(cluster: &TestCluster) -> usize {
    let handle = tokio::runtime::Handle::current();
    handle
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(2), cluster.serving_coordinator()).await
        })
        .ok()
        .flatten()
        .unwrap_or(0)
}

fn controller_mut(cluster: &mut TestCluster, i: usize) -> &mut Node {
    if i == 0 {
        &mut cluster.controller
    } else {
        &mut cluster.more_controllers[i - 1]
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
        let logs = cluster.logs.len();
        let fault = match rng.random_range(0..15) {
            0..=1 => {
                let i = serving_coordinator(&cluster);
                kill_restart(&mut [cluster.coordinator_mut(i)], down);
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
            5..=6 if cluster.more_controllers.is_empty() => {
                kill_restart(&mut [&mut cluster.controller], down);
                "kill controller"
            }
            5 => {
                let replicas = cluster.more_controllers.len() + 1;
                let leader = controller_leader(&cluster).unwrap_or(0);
                let victim = if rng.random_bool(0.5) {
                    leader
                } else {
                    (leader + rng.random_range(1..replicas)) % replicas
                };
                kill_restart(&mut [controller_mut(&mut cluster, victim)], down);
                if victim == leader {
                    "kill controller leader"
                } else {
                    "kill controller follower"
                }
            }
            5..=6 if rng.random_bool(0.3) && !cluster.controller_proxies.is_empty() => {
                // Cut the leader off from the other replicas (both ways); workers and clients
                // still reach every replica.
                let replicas = cluster.controller_proxies.len();
                let leader = controller_leader(&cluster).unwrap_or(0);
                for (j, proxy) in cluster.controller_proxies.iter().enumerate() {
                    if j == leader {
                        proxy.block((0..replicas).filter(|&k| k != leader).map(source_ip));
                    } else {
                        proxy.block([source_ip(leader)]);
                    }
                }
                sleep(down);
                for proxy in &cluster.controller_proxies {
                    proxy.heal();
                }
                "partition controller leader"
            }
            6 => {
                // Losing a replica's disk is a minority failure only while every other
                // replica votes: wait until an earlier wiped replica has rejoined (else the
                // nemesis could wipe a quorum, or all, of the group's disks).
                wait_until_settled(&cluster);
                let replicas = cluster.more_controllers.len() + 1;
                let victim = rng.random_range(0..replicas);
                let node = controller_mut(&mut cluster, victim);
                node.kill();
                if let Some(dir) = node.data_dir() {
                    std::fs::remove_dir_all(&dir).expect("wipe a controller replica");
                }
                sleep(down);
                node.start();
                "wipe a controller replica"
            }
            7 => {
                let i = serving_coordinator(&cluster);
                let node = cluster.coordinator_mut(i);
                node.kill();
                if let Some(dir) = node.data_dir() {
                    std::fs::remove_dir_all(&dir).expect("wipe the coordinator");
                }
                sleep(down);
                node.start();
                "wipe coordinator"
            }
            8 => {
                let i = rng.random_range(0..logs);
                kill_restart(&mut [&mut cluster.logs[i]], down);
                "kill log server"
            }
            9 => {
                let i = rng.random_range(0..logs);
                let node = &mut cluster.logs[i];
                let id = worker_id(node);
                node.kill();
                if let Some(dir) = node.data_dir() {
                    std::fs::remove_dir_all(&dir).expect("wipe a log server");
                }
                sleep(down);
                node.start();
                if let Some(id) = id {
                    wait_until_generation_without(&cluster, &id);
                }
                "wipe log server"
            }
            11 => {
                wait_until_fully_replicated(&cluster);
                let i = rng.random_range(0..storage);
                let node = &mut cluster.storage[i];
                node.kill();
                if let Some(dir) = node.data_dir() {
                    std::fs::remove_dir_all(&dir).expect("wipe a storage server");
                }
                sleep(down);
                node.start();
                "wipe storage server"
            }
            10 if !cluster.log_proxies.is_empty() => {
                let i = serving_coordinator(&cluster);
                cluster.isolate_coordinator(i);
                down = Duration::from_millis(rng.random_range(300..3000));
                sleep(down);
                cluster.heal_partitions();
                "partition coordinator"
            }
            _ => {
                let which = rng.random_range(0..storage + 2 + logs);
                let leader = if which == 0 {
                    controller_leader(&cluster).unwrap_or(0)
                } else {
                    0
                };
                let coordinator = if which == 1 {
                    serving_coordinator(&cluster)
                } else {
                    0
                };
                let node = match which {
                    0 => controller_mut(&mut cluster, leader),
                    1 => cluster.coordinator_mut(coordinator),
                    i if i < 2 + storage => &mut cluster.storage[i - 2],
                    i => &mut cluster.logs[i - 2 - storage],
                };
                // Pauses stay short: a paused process stalls its clients for that long.
                down = down.min(Duration::from_millis(1000));
                if let Some(p) = &node.process {
                    p.pause();
                    sleep(down);
                    p.resume();
                }
                match which {
                    0 => "pause controller leader",
                    1 => "pause coordinator",
                    i if i < 2 + storage => "pause storage server",
                    _ => "pause log server",
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
