//! Network partitions of the controller group, injected on loopback by a TCP proxy in front
//! of each replica.
//!
//! Replica `i` listens on its own port, advertises its proxy's address, and opens its
//! connections to the other replicas from its own loopback address `127.0.0.(11 + i)`
//! (`--peer-source-ip`), so each proxy knows which replica a connection comes from and can
//! refuse it. Workers and the test connect from 127.0.0.1 and are never cut off.
//!
//! Checks: with the leader cut off from the other replicas (both ways), it stops acting at
//! once, before and after another replica is elected (every call to it fails), commits go on,
//! and when the partition heals it follows the new leader; with the leader's outgoing traffic
//! alone cut (one-way), the others elect a new leader and the old one steps down. The shard
//! map never changes and no acknowledged write is lost.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::group::{identify, read_all, state, write};
use common::proxy::{Proxy, source_ip};
use common::{ServerProcess, free_port, wait_for_port};
use ferrisdb_client::Database;

/// The replica (by index) that says it leads, among `candidates`, polled until `deadline`.
async fn leader_among(
    proxies: &[Proxy],
    candidates: &[usize],
    deadline: Instant,
) -> Option<(usize, u64)> {
    while Instant::now() < deadline {
        for &i in candidates {
            if let Some(r) = identify(proxies[i].addr).await
                && r.role == "leader"
            {
                return Some((i, r.term));
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

/// Calls the cut-off old leader repeatedly until `until`; it must never answer as leader.
async fn never_acts(old: SocketAddr, until: Instant) -> u32 {
    let mut refused = 0;
    while Instant::now() < until {
        let answer = state(old).await;
        assert!(
            answer.is_err(),
            "a controller cut off from its group answered as leader: {answer:?}"
        );
        refused += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    refused
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_stops_acting_and_the_rest_elect_another() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path();
    let listens: Vec<SocketAddr> = (0..3)
        .map(|_| SocketAddr::from(([127, 0, 0, 1], free_port())))
        .collect();
    let mut proxies = Vec::new();
    for l in &listens {
        proxies.push(Proxy::start(*l).await);
    }
    let peers = proxies
        .iter()
        .map(|p| p.addr.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let mut replicas: Vec<ServerProcess> = Vec::new();
    for (i, l) in listens.iter().enumerate() {
        let args = vec![
            "--listen".to_string(),
            l.to_string(),
            "--advertise".into(),
            proxies[i].addr.to_string(),
            "--peer-source-ip".into(),
            source_ip(i).to_string(),
            "--peers".into(),
            peers.clone(),
            "--data-dir".into(),
            root.join(format!("controller-{i}")).display().to_string(),
            "--storage-servers".into(),
            "3".into(),
            "--replication".into(),
            "2".into(),
            "--heartbeat-ms".into(),
            "100".into(),
        ];
        replicas.push(ServerProcess::spawn(
            env!("CARGO_BIN_EXE_ferrisdb-controller"),
            &args,
            &root.join(format!("controller-{i}.log")),
        ));
        wait_for_port(*l, Duration::from_secs(30));
    }
    let mut workers = Vec::new();
    for (name, binary) in [
        ("coordinator", env!("CARGO_BIN_EXE_ferrisdb-coordinator")),
        ("log-0", env!("CARGO_BIN_EXE_ferrisdb-log-server")),
        ("log-1", env!("CARGO_BIN_EXE_ferrisdb-log-server")),
        ("storage-0", env!("CARGO_BIN_EXE_ferrisdb-storage-server")),
        ("storage-1", env!("CARGO_BIN_EXE_ferrisdb-storage-server")),
        ("storage-2", env!("CARGO_BIN_EXE_ferrisdb-storage-server")),
    ] {
        let a = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let args = vec![
            "--listen".to_string(),
            a.to_string(),
            "--data-dir".into(),
            root.join(name).display().to_string(),
            "--controller".into(),
            peers.clone(),
        ];
        workers.push(ServerProcess::spawn(
            binary,
            &args,
            &root.join(format!("{name}.log")),
        ));
        wait_for_port(a, Duration::from_secs(30));
    }
    let logs = || {
        (0..3)
            .map(|i| {
                format!(
                    "----- controller-{i}\n{}",
                    std::fs::read_to_string(root.join(format!("controller-{i}.log")))
                        .unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };

    let db = Database::connect_all(proxies.iter().map(|p| p.addr.to_string())).expect("client");
    let mut keys = Vec::new();
    for i in 0..20 {
        let key = format!("before-{i:02}");
        write(&db, &key).await;
        keys.push(key);
    }
    let all = [0, 1, 2];
    let (old, old_term) = leader_among(&proxies, &all, Instant::now() + Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("no leader\n{}", logs()));
    let map = state(proxies[old].addr)
        .await
        .expect("the leader answers")
        .shard_map;

    // Cut the leader off from the other replicas, both ways.
    let others: Vec<usize> = all.iter().copied().filter(|&i| i != old).collect();
    for &i in &others {
        proxies[i].block([source_ip(old)]);
    }
    proxies[old].block(others.iter().map(|&i| source_ip(i)));
    let cut = Instant::now();
    // It stops acting at once: well before the others can have elected anyone.
    let refused = never_acts(proxies[old].addr, cut + Duration::from_millis(300)).await;
    assert!(refused > 0);
    let (new, new_term) = leader_among(&proxies, &others, cut + Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("no new leader on the majority side\n{}", logs()));
    println!(
        "partition: new leader after {:?}, old leader refused {refused} calls meanwhile",
        cut.elapsed()
    );
    assert!(new_term > old_term);
    never_acts(proxies[old].addr, Instant::now() + Duration::from_secs(1)).await;
    for i in 0..20 {
        let key = format!("during-{i:02}");
        write(&db, &key).await;
        keys.push(key);
    }

    // Heal: the old leader follows the new one.
    for p in &proxies {
        p.heal();
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = identify(proxies[old].addr).await;
        if let Some(r) = &r
            && r.role == "follower"
            && r.term >= new_term
            && let Ok(s) = state(proxies[new].addr).await
            && s.controllers.iter().all(|c| c.role != "unreachable")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the old leader did not rejoin: {r:?}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // One way: the leader's own connections to the others are refused; it still hears them.
    let (leader, term) = leader_among(&proxies, &all, Instant::now() + Duration::from_secs(5))
        .await
        .expect("a leader");
    for i in all.iter().copied().filter(|&i| i != leader) {
        proxies[i].block([source_ip(leader)]);
    }
    let cut = Instant::now();
    let rest: Vec<usize> = all.iter().copied().filter(|&i| i != leader).collect();
    let (_, after) = leader_among(&proxies, &rest, cut + Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("no new leader after a one-way cut\n{}", logs()));
    assert!(after > term);
    never_acts(
        proxies[leader].addr,
        Instant::now() + Duration::from_millis(500),
    )
    .await;
    for p in &proxies {
        p.heal();
    }
    write(&db, "after-heal").await;
    keys.push("after-heal".into());
    read_all(&db, &keys).await;
    let (l, _) = leader_among(&proxies, &all, Instant::now() + Duration::from_secs(5))
        .await
        .expect("a leader");
    let end = state(proxies[l].addr).await.expect("the leader answers");
    assert_eq!(end.shard_map, map, "the shard map changed");
    drop(workers);
    drop(replicas);
}
