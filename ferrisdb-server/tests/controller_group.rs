//! The controller group end to end: three `ferrisdb-controller` replicas, a coordinator and
//! three storage servers, each a real process on 127.0.0.1.
//!
//! Kills the leader with SIGKILL and measures how long until another replica leads; checks
//! commits go on and every acknowledged write is read back; restarts the lost replica on a
//! wiped data directory (it rejoins under a new node id in place of the old one); then kills
//! two of three replicas: the survivor says it has no quorum while the transaction system
//! keeps committing, and quorum comes back when one replica returns.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::group::{channel, identify, read_all, state, write};
use common::{ServerProcess, free_port, wait_for_port};
use ferrisdb_client::Database;
use ferrisdb_proto::v1;
use ferrisdb_proto::v1::controller_group_client::ControllerGroupClient;

struct Replica {
    addr: SocketAddr,
    dir: PathBuf,
    log: PathBuf,
    peers: String,
    process: Option<ServerProcess>,
}

impl Replica {
    fn start(&mut self) {
        let args = vec![
            "--listen".to_string(),
            self.addr.to_string(),
            "--peers".into(),
            self.peers.clone(),
            "--data-dir".into(),
            self.dir.display().to_string(),
            "--storage-servers".into(),
            "3".into(),
            "--replication".into(),
            "2".into(),
            "--heartbeat-ms".into(),
            "100".into(),
        ];
        self.process = Some(ServerProcess::spawn(
            env!("CARGO_BIN_EXE_ferrisdb-controller"),
            &args,
            &self.log,
        ));
        wait_for_port(self.addr, Duration::from_secs(30));
    }

    fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }
}

/// Three replicas (not started) under `root`: their addresses, the `--peers` list, them.
fn three_replicas(root: &Path) -> (Vec<SocketAddr>, String, Vec<Replica>) {
    let addrs: Vec<SocketAddr> = (0..3).map(|_| addr()).collect();
    let peers = addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let replicas = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| Replica {
            addr: *a,
            dir: root.join(format!("controller-{i}")),
            log: root.join(format!("controller-{i}.log")),
            peers: peers.clone(),
            process: None,
        })
        .collect();
    (addrs, peers, replicas)
}

fn addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// The replica that says it leads, among those running, polled until `deadline`.
async fn leader_among(replicas: &[&Replica], deadline: Instant) -> Option<(usize, u64)> {
    while Instant::now() < deadline {
        for (i, r) in replicas.iter().enumerate() {
            if r.process.is_some()
                && let Some(id) = identify(r.addr).await
                && id.role == "leader"
            {
                return Some((i, id.term));
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

fn worker(binary: &str, root: &Path, name: &str, controllers: &str) -> (SocketAddr, ServerProcess) {
    let a = addr();
    let mut args = vec![
        "--listen".to_string(),
        a.to_string(),
        "--data-dir".into(),
        root.join(name).display().to_string(),
        "--controller".into(),
        controllers.to_string(),
    ];
    if name.starts_with("storage") {
        args.extend(["--memtable-mib".to_string(), "1".into()]);
    }
    let p = ServerProcess::spawn(binary, &args, &root.join(format!("{name}.log")));
    wait_for_port(a, Duration::from_secs(30));
    (a, p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_survives_losing_its_leader_and_says_when_it_has_no_quorum() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path();
    let (addrs, peers, mut replicas) = three_replicas(root);
    for r in &mut replicas {
        r.start();
    }
    let (_co_addr, _coordinator) = worker(
        env!("CARGO_BIN_EXE_ferrisdb-coordinator"),
        root,
        "coordinator",
        &peers,
    );
    let _logs: Vec<_> = (0..2)
        .map(|i| {
            worker(
                env!("CARGO_BIN_EXE_ferrisdb-log-server"),
                root,
                &format!("log-{i}"),
                &peers,
            )
        })
        .collect();
    let _storage: Vec<_> = (0..3)
        .map(|i| {
            worker(
                env!("CARGO_BIN_EXE_ferrisdb-storage-server"),
                root,
                &format!("storage-{i}"),
                &peers,
            )
        })
        .collect();
    let logs = |replicas: &[Replica]| {
        replicas
            .iter()
            .map(|r| {
                format!(
                    "----- {}\n{}",
                    r.addr,
                    std::fs::read_to_string(&r.log).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };

    let db = Database::connect_all(addrs.iter().map(ToString::to_string)).expect("client");
    let mut keys = Vec::new();
    for i in 0..30 {
        let key = format!("before-{i:03}");
        write(&db, &key).await;
        keys.push(key);
    }

    // Strangers are refused before anything is decoded, and nothing changes.
    let me = identify(replicas[0].addr).await.expect("replica answers");
    let mut peer = ControllerGroupClient::new(channel(replicas[0].addr));
    let stranger = |cluster_id: &str, to_node: u64| v1::RaftMessage {
        cluster_id: cluster_id.into(),
        from_node: 42,
        to_node,
        payload: b"{}".to_vec().into(),
    };
    let err = peer
        .vote(stranger(&me.cluster_id, me.node_id + 1))
        .await
        .expect_err("a message for another node");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    let err = peer
        .append_entries(stranger("0123456789abcdef", me.node_id))
        .await
        .expect_err("a message from another cluster");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("0123456789abcdef"), "{err:?}");
    let err = peer
        .vote(stranger("", me.node_id))
        .await
        .expect_err("a message from a replica of no cluster");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("of no cluster"), "{err:?}");
    let err = peer
        .vote(stranger(&me.cluster_id, me.node_id))
        .await
        .expect_err("garbage payload");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    let leader_addr = me.leader_address.clone();
    let err = ControllerGroupClient::new(channel(&leader_addr))
        .join(v1::JoinRequest {
            node_id: 7,
            address: replicas[1].addr.to_string(),
        })
        .await
        .expect_err("a join under a false node id");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert_eq!(
        identify(replicas[0].addr)
            .await
            .expect("answers")
            .members
            .len(),
        3
    );

    // A storage server of another cluster (its data directory says so) is refused, and says
    // why in its log; the group does not record it.
    let foreign_dir = root.join("storage-foreign");
    std::fs::create_dir_all(&foreign_dir).expect("mkdir");
    std::fs::write(foreign_dir.join("cluster_id"), "0000another").expect("write cluster id");
    let (_foreign_addr, _foreign) = worker(
        env!("CARGO_BIN_EXE_ferrisdb-storage-server"),
        root,
        "storage-foreign",
        &peers,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(root.join("storage-foreign.log"))
        .unwrap_or_default()
        .contains("belongs to cluster 0000another")
    {
        assert!(
            Instant::now() < deadline,
            "the foreign worker was not refused"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (l, _) = leader_among(
        &replicas.iter().collect::<Vec<_>>(),
        Instant::now() + Duration::from_secs(5),
    )
    .await
    .expect("a leader");
    assert_eq!(
        state(replicas[l].addr).await.expect("state").workers.len(),
        6,
        "the coordinator, two log servers and three storage servers; not the foreign one"
    );
    drop(_foreign);

    // Kill the leader; another replica must lead within 2 s.
    let refs: Vec<&Replica> = replicas.iter().collect();
    let (old, old_term) = leader_among(&refs, Instant::now() + Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("no leader\n{}", logs(&replicas)));
    let old_id = identify(replicas[old].addr)
        .await
        .expect("leader answers")
        .node_id;
    replicas[old].kill();
    let killed = Instant::now();
    let refs: Vec<&Replica> = replicas.iter().collect();
    let (new, new_term) = leader_among(&refs, killed + Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("no new leader within 5 s\n{}", logs(&replicas)));
    let failover = killed.elapsed();
    println!("controller failover: new leader after {failover:?}");
    assert_ne!(new, old);
    assert!(new_term > old_term);
    assert!(
        failover < Duration::from_secs(2),
        "new leader only after {failover:?}"
    );

    // Commits go on, and nothing acknowledged was lost.
    for i in 0..30 {
        let key = format!("after-{i:03}");
        write(&db, &key).await;
        keys.push(key);
    }
    read_all(&db, &keys).await;

    // Every worker heartbeats to the new leader, which lists the lost replica as unreachable.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(s) = state(replicas[new].addr).await
            && s.workers.len() == 6
            && s.workers.iter().all(|w| w.healthy)
            && s.controllers
                .iter()
                .filter(|c| c.role == "unreachable")
                .count()
                == 1
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "status did not converge: {:?}\n{}",
            state(replicas[new].addr).await,
            logs(&replicas)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The lost replica comes back on an empty disk: it joins in place of its old self.
    std::fs::remove_dir_all(&replicas[old].dir).expect("wipe the replica");
    replicas[old].start();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let leader = leader_among(&replicas.iter().collect::<Vec<_>>(), deadline).await;
        if let Some((l, _)) = leader
            && let Ok(s) = state(replicas[l].addr).await
            && s.controllers.len() == 3
            && s.controllers.iter().all(|c| c.role != "unreachable")
            && !s.controllers.iter().any(|c| c.node_id == old_id)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the wiped replica did not rejoin\n{}",
            logs(&replicas)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Partition the leader by freezing it (SIGSTOP): the others elect a new one; when the old
    // one wakes up it must not act as leader, and nothing it held is lost.
    let (frozen, frozen_term) = leader_among(
        &replicas.iter().collect::<Vec<_>>(),
        Instant::now() + Duration::from_secs(5),
    )
    .await
    .expect("a leader");
    replicas[frozen].process.as_ref().expect("running").pause();
    let others: Vec<&Replica> = replicas
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != frozen)
        .map(|(_, r)| r)
        .collect();
    let (_, successor_term) = leader_among(&others, Instant::now() + Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("no leader while the old one is frozen\n{}", logs(&replicas)));
    assert!(successor_term > frozen_term);
    replicas[frozen].process.as_ref().expect("running").resume();
    let answer = state(replicas[frozen].addr).await;
    assert!(
        answer.is_err(),
        "a deposed leader answered as leader: {answer:?}"
    );
    let key = "after-the-partition".to_string();
    write(&db, &key).await;
    keys.push(key);
    read_all(&db, &keys).await;

    // Kill two of three: the survivor has no quorum and says so; commits still flow.
    let (leader, _) = leader_among(
        &replicas.iter().collect::<Vec<_>>(),
        Instant::now() + Duration::from_secs(5),
    )
    .await
    .expect("a leader");
    let survivor = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    // With one follower down, removing the other would leave one reachable replica of two:
    // the leader refuses, naming the quorum.
    replicas[other].kill();
    let err = ControllerGroupClient::new(channel(replicas[leader].addr))
        .leave(v1::LeaveRequest {
            address: replicas[survivor].addr.to_string(),
        })
        .await
        .expect_err("a removal that loses quorum");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("below the quorum"), "{err:?}");
    assert_eq!(
        identify(replicas[leader].addr)
            .await
            .expect("answers")
            .members
            .len(),
        3
    );
    replicas[leader].kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let err = state(replicas[survivor].addr)
        .await
        .expect_err("a replica without quorum must not answer as leader");
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    let key = "during-no-quorum".to_string();
    write(&db, &key).await;
    keys.push(key);

    // One replica back: quorum, a leader, and nothing lost.
    let back = (survivor + 1) % 3;
    replicas[back].start();
    let refs: Vec<&Replica> = replicas.iter().collect();
    leader_among(&refs, Instant::now() + Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("no leader after quorum returned\n{}", logs(&replicas)));
    read_all(&db, &keys).await;
    let (l, _) = leader_among(
        &replicas.iter().collect::<Vec<_>>(),
        Instant::now() + Duration::from_secs(5),
    )
    .await
    .expect("a leader");
    let s = state(replicas[l].addr).await.expect("the leader answers");
    assert_eq!(
        s.shard_map.map_or(0, |m| m.version),
        1,
        "one shard-map version throughout"
    );
}

/// A data directory of a single controller from before the controller group (its
/// `controller.json`) becomes the first replica of a group of three: the group keeps that
/// cluster's identity and layout, whichever replica wins the first election.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_controllers_cluster_is_imported_into_a_new_group() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path();
    let (_, _, mut replicas) = three_replicas(root);
    std::fs::create_dir_all(&replicas[0].dir).expect("mkdir");
    std::fs::write(
        replicas[0].dir.join("controller.json"),
        r#"{"format":1,"cluster_id":"5ca1ab1e5ca1ab1e","expected_storage_servers":1,
            "replication":1,"shard_map_version":1,
            "shards":[{"begin":"","end":"","storage_ids":["storage-old"]}],
            "workers":[{"id":"storage-old","role":"storage","address":"127.0.0.1:9"}]}"#,
    )
    .expect("write the old metadata");
    // The others first: the group forms when the first peer starts.
    for r in replicas.iter_mut().rev() {
        r.start();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let s = loop {
        let refs: Vec<&Replica> = replicas.iter().collect();
        if let Some((l, _)) = leader_among(&refs, deadline).await
            && let Ok(s) = state(replicas[l].addr).await
        {
            break s;
        }
        assert!(Instant::now() < deadline, "no leader with a cluster");
    };
    assert_eq!(s.cluster_id, "5ca1ab1e5ca1ab1e");
    assert_eq!(s.shard_map.map_or(0, |m| m.version), 1);
    assert_eq!(s.workers.len(), 1);
    assert_eq!(s.controllers.len(), 3);
    for r in &mut replicas {
        r.kill();
    }
}
