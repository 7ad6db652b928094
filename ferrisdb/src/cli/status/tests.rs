use ferrisdb_proto::v1;

use super::{MoveProgress, build, render};

fn worker(id: &str, role: v1::WorkerRole, port: u16, healthy: bool) -> v1::WorkerInfo {
    let status = match role {
        v1::WorkerRole::Storage => Some(v1::worker_status::Status::Storage(v1::StorageStatus {
            applied_version: 900,
            durable_version: 800,
            data_bytes: 4096,
            ready_ranges: vec![],
            ready_map_version: 0,
            shard_sizes: vec![],
            take_overs: vec![],
            point_reads_total: 120,
            point_read_calls_total: 30,
        })),
        v1::WorkerRole::Coordinator => Some(v1::worker_status::Status::Coordinator(
            v1::CoordinatorStatus {
                committed_version: 1000,
                commits_per_second: 12.5,
                avg_batch_size: 1.5,
                log_bytes: 2048,
                commits_total: 30,
                batches_total: 20,
                log_fsyncs_total: 10,
                log_truncated_through: 700,
                commit_stages: Some(v1::CommitStages {
                    queue_us: 300,
                    resolve_us: 150,
                    durable_us: 6000,
                    reply_us: 600,
                }),
                log_holders: ["s0", "s1", "s2"]
                    .map(|id| v1::StorageDurability {
                        storage_id: id.into(),
                        durable_version: 800,
                        ms_since_report: 100,
                    })
                    .to_vec(),
                serving_epoch: 2,
                generation_failure: String::new(),
            },
        )),
        v1::WorkerRole::Log => Some(v1::worker_status::Status::Log(v1::LogServerStatus {
            locked_epoch: 2,
            durable_version: 1000,
            known_committed: 990,
            retained_from: 700,
            retained_bytes: 512,
            retention_budget_bytes: 1 << 30,
        })),
        v1::WorkerRole::Gateway | v1::WorkerRole::Unspecified => None,
    };
    v1::WorkerInfo {
        worker_id: id.into(),
        role: role as i32,
        address: format!("127.0.0.1:{port}"),
        healthy,
        ms_since_heartbeat: 300,
        start_time_unix_ms: 10_000,
        status: Some(v1::WorkerStatus {
            status,
            unhealthy_reason: String::new(),
        }),
        unhealthy_reason: if healthy {
            String::new()
        } else {
            "not heard from for 9.5 s".into()
        },
    }
}

fn state(s2_healthy: bool) -> v1::GetClusterStateResponse {
    let shard = |b: &[u8], e: &[u8], ids: [&str; 2]| v1::Shard {
        range: Some(v1::KeyRange {
            begin: b.to_vec().into(),
            end: e.to_vec().into(),
        }),
        storage_ids: ids.map(String::from).to_vec(),
        moving_to: vec![],
    };
    v1::GetClusterStateResponse {
        cluster_id: "c1".into(),
        coordinator: Some(v1::CoordinatorInfo {
            worker_id: "co".into(),
            address: "127.0.0.1:4501".into(),
            healthy: true,
        }),
        shard_map: Some(v1::ShardMap {
            version: 3,
            shards: vec![
                shard(b"", b"\x55", ["s0", "s1"]),
                shard(b"\x55", b"\xaa", ["s1", "s2"]),
                shard(b"\xaa", b"", ["s2", "s0"]),
            ],
        }),
        workers: vec![
            worker("s2", v1::WorkerRole::Storage, 4504, s2_healthy),
            worker("s0", v1::WorkerRole::Storage, 4502, true),
            worker("co", v1::WorkerRole::Coordinator, 4501, true),
            worker("s1", v1::WorkerRole::Storage, 4503, true),
            worker("l0", v1::WorkerRole::Log, 4510, true),
            worker("l1", v1::WorkerRole::Log, 4511, true),
        ],
        expected_storage_servers: 3,
        replication: 2,
        heartbeat_interval_ms: 500,
        controllers: vec![],
        epoch: 2,
        generation: Some(v1::GenerationInfo {
            epoch: 2,
            coordinator_id: "co".into(),
            logs: vec![v1::GenerationLog {
                log_id: "l0".into(),
                address: "127.0.0.1:4510".into(),
            }],
            recovery_version: 500,
            start_version: 5_000_500,
        }),
        recovery_state: "fully recovered".into(),
        recovery_reason: "coordinator co serves generation 0, not 1".into(),
        last_recovery_ms: 240,
        excluded: vec![],
    }
}

fn replica(port: u16, role: &str, term: u64) -> v1::ControllerReplicaStatus {
    v1::ControllerReplicaStatus {
        node_id: u64::from(port),
        address: format!("127.0.0.1:{port}"),
        role: role.into(),
        term,
        last_applied_index: if term > 0 { 17 } else { 0 },
    }
}

#[test]
fn every_controller_replica_is_listed_and_an_unreachable_one_degrades_the_cluster() {
    let mut s = state(true);
    s.controllers = vec![
        replica(4500, "follower", 4),
        replica(4505, "leader", 4),
        replica(4506, "unreachable", 0),
    ];
    let r = build("127.0.0.1:4505", s, Some(1000), 40_000);
    assert!(!r.healthy);
    assert!(
        r.messages
            .iter()
            .any(|m| m.contains("controller replica 127.0.0.1:4506 (node 4506) is unreachable")),
        "{:?}",
        r.messages
    );
    let controllers: Vec<_> = r
        .processes
        .iter()
        .filter(|p| p.role == "controller")
        .collect();
    assert_eq!(controllers.len(), 3);
    assert!(!controllers[2].healthy);
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["controllers"][1]["role"], "leader");
    assert_eq!(json["controllers"][1]["term"], 4);
    assert_eq!(json["controllers"][2]["role"], "unreachable");
    assert_eq!(json["controllers"][0]["address"], "127.0.0.1:4500");
    let text = render(&r);
    assert!(
        text.contains("2 of 3 replicas reachable, leader 127.0.0.1:4505 (term 4)"),
        "{text}"
    );
}

#[test]
fn a_healthy_cluster_is_fully_replicated_with_lag_from_the_latest_version() {
    let r = build("127.0.0.1:4500", state(true), Some(1000), 40_000);
    assert!(r.healthy, "{:?}", r.messages);
    assert_eq!(r.fault_tolerance, Some(1));
    let roles: Vec<&str> = r.processes.iter().map(|p| p.role.as_str()).collect();
    assert_eq!(
        roles,
        [
            "controller",
            "coordinator",
            "storage",
            "storage",
            "storage",
            "log",
            "log"
        ]
    );
    assert_eq!(r.processes[1].uptime_seconds, Some(30.0));
    let ids: Vec<&str> = r.storage_servers.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["s0", "s1", "s2"]);
    assert_eq!(r.storage_servers[0].lag_versions, Some(100));
    assert!(
        r.shards
            .iter()
            .all(|s| s.fully_replicated && s.healthy_replicas == 2)
    );
    assert_eq!(r.shards[1].begin, "U");
    assert_eq!(r.shards[2].begin, "\\xaa");
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["coordinator"]["commits_per_second"], 12.5);
    assert_eq!(json["coordinator"]["log_fsyncs_total"], 10);
    // Stage sums over 30 commits, as means per commit.
    assert_eq!(
        json["coordinator"]["commit_stage_means_us"]["durable"],
        200.0
    );
    assert_eq!(json["coordinator"]["commit_stage_means_us"]["queue"], 10.0);
    assert_eq!(json["storage_servers"][2]["data_bytes"], 4096);
    assert_eq!(json["storage_servers"][2]["point_reads_total"], 120);
    assert_eq!(json["storage_servers"][2]["point_read_calls_total"], 30);
    assert_eq!(json["epoch"], 2);
    assert_eq!(json["generation"], 2);
    assert_eq!(json["recovery_state"], "fully recovered");
    assert_eq!(json["last_recovery_ms"], 240);
    assert_eq!(json["generation_versions"]["recovery_version"], 500);
    assert_eq!(json["log_servers"][0]["in_generation"], true);
    assert_eq!(json["log_servers"][1]["in_generation"], false);
    assert_eq!(json["log_servers"][0]["known_committed"], 990);
    let text = render(&r);
    assert!(text.contains("HEALTHY"), "{text}");
    assert!(
        text.contains(
            "Generation:        2, fully recovered, last recovery took 240 ms (the last \
             recovery began because: coordinator co serves generation 0, not 1)"
        ),
        "{text}"
    );
    assert!(text.contains("Log servers:"), "{text}");
    assert!(text.contains("3/3 shards fully replicated"), "{text}");
    assert!(
        text.contains("queue 10 µs, resolve 5 µs, durable 200 µs, reply 20 µs"),
        "{text}"
    );
}

#[test]
fn a_recovery_under_way_degrades_the_cluster_and_says_what_it_waits_for() {
    let mut s = state(true);
    s.recovery_state =
        "waiting: none of the 2 log servers of the old generation can be locked".into();
    s.recovery_reason = "log server l0 silent for 3.0 s".into();
    let r = build("127.0.0.1:4500", s, Some(1000), 40_000);
    assert!(!r.healthy);
    assert!(
        r.messages.iter().any(|m| m.contains("recovering")
            && m.contains("l0 silent")
            && m.contains("can be locked")),
        "{:?}",
        r.messages
    );
    let json = serde_json::to_value(&r).unwrap();
    assert!(
        json["recovery_state"]
            .as_str()
            .unwrap()
            .starts_with("waiting")
    );
}

#[test]
fn an_unhealthy_storage_server_degrades_its_shards() {
    let r = build("127.0.0.1:4500", state(false), None, 40_000);
    assert!(!r.healthy);
    assert_eq!(r.fault_tolerance, Some(0));
    let degraded: Vec<bool> = r.shards.iter().map(|s| s.fully_replicated).collect();
    assert_eq!(degraded, [true, false, false]);
    assert!(r.storage_servers.iter().all(|s| s.lag_versions.is_none()));
    assert!(
        r.messages
            .iter()
            .any(|m| m.contains("s2") && m.contains("unhealthy"))
    );
    let text = render(&r);
    assert!(
        text.contains("DEGRADED") && text.contains("UNHEALTHY"),
        "{text}"
    );
}

#[test]
fn before_bootstrap_there_are_no_shards_and_no_fault_tolerance() {
    let mut s = state(true);
    s.shard_map = None;
    let r = build("127.0.0.1:4500", s, Some(1), 0);
    assert!(!r.healthy);
    assert_eq!(r.fault_tolerance, None);
    assert!(r.messages.iter().any(|m| m.contains("no shard map")));
}

#[test]
fn a_worker_that_reports_a_problem_is_shown_unhealthy_with_its_reason() {
    let mut s = state(true);
    let co = s.workers.iter_mut().find(|w| w.worker_id == "co").unwrap();
    co.healthy = false;
    co.unhealthy_reason = "commit log: the commit log write failed: No space left on device".into();
    let r = build("127.0.0.1:4500", s, Some(1000), 40_000);
    assert!(!r.healthy);
    let co = r.processes.iter().find(|p| p.id == "co").unwrap();
    assert!(!co.healthy);
    assert!(
        co.unhealthy_reason
            .as_deref()
            .is_some_and(|m| m.contains("No space left")),
        "{co:?}"
    );
    assert!(
        r.messages
            .iter()
            .any(|m| m.starts_with("coordinator co (127.0.0.1:4501) is unhealthy: commit log")),
        "{:?}",
        r.messages
    );
    let json = serde_json::to_value(&r).unwrap();
    assert!(
        json["processes"][1]["unhealthy_reason"]
            .as_str()
            .unwrap()
            .contains("commit log")
    );
    assert!(render(&r).contains("No space left on device"));
}

#[test]
fn a_storage_server_that_applied_nothing_has_an_unknown_lag() {
    let mut s = state(true);
    for w in &mut s.workers {
        if let Some(v1::worker_status::Status::Storage(st)) =
            w.status.as_mut().and_then(|s| s.status.as_mut())
        {
            st.applied_version = 0;
        }
    }
    let r = build("127.0.0.1:4500", s, Some(1_796_507_870_680_000), 40_000);
    assert!(r.storage_servers.iter().all(|s| s.lag_versions.is_none()));
    assert!(r.storage_servers.iter().all(|s| s.lag_seconds.is_none()));
}

#[test]
fn a_storage_server_behind_on_durability_is_named_as_holding_the_log() {
    let mut s = state(true);
    let co = s.workers.iter_mut().find(|w| w.worker_id == "co").unwrap();
    if let Some(v1::worker_status::Status::Coordinator(c)) =
        co.status.as_mut().and_then(|s| s.status.as_mut())
    {
        c.committed_version = 60_000_000;
        c.log_bytes = 300 << 20;
        c.log_holders[1].durable_version = 59_000_000;
        c.log_holders[2].durable_version = 20_000_000;
        c.log_holders[2].ms_since_report = 40_000;
        c.log_holders[0].durable_version = 0;
        c.log_holders[0].ms_since_report = 12_000;
    }
    let r = build("127.0.0.1:4500", s, Some(60_000_000), 40_000);
    assert!(!r.healthy);
    let holding: Vec<&str> = r
        .messages
        .iter()
        .filter(|m| m.starts_with("the commit log cannot truncate"))
        .map(String::as_str)
        .collect();
    assert_eq!(holding.len(), 2, "{holding:?}");
    assert!(
        holding[0].contains("s0") && holding[0].contains("has not reported durable"),
        "{}",
        holding[0]
    );
    assert!(
        holding[1].contains("s2")
            && holding[1].contains("past version 20000000")
            && holding[1].contains("40.0 s behind")
            && holding[1].contains("300.0 MiB"),
        "{}",
        holding[1]
    );
    let c = r.coordinator.as_ref().unwrap();
    assert_eq!(c.log_truncated_through, Some(700));
    let flags: Vec<bool> = c.log_holders.iter().map(|h| h.holding_log).collect();
    assert_eq!(flags, [true, false, true]);
}

#[test]
fn a_group_without_a_leader_is_reported_unavailable_with_each_replica() {
    let follower = v1::ControllerReplica {
        node_id: 7,
        address: "127.0.0.1:4500".into(),
        role: "follower".into(),
        term: 3,
        last_applied_index: 12,
        ..Default::default()
    };
    let answers = vec![
        ("127.0.0.1:4500".to_string(), Ok(follower)),
        (
            "127.0.0.1:4505".to_string(),
            Err("connection refused".to_string()),
        ),
        (
            "127.0.0.1:4506".to_string(),
            Err("connection refused".to_string()),
        ),
    ];
    let message = super::unavailable_message(
        &answers,
        &["127.0.0.1:4500: this controller replica is not the leader (no leader is known)".into()],
    );
    assert!(
        message.starts_with("cluster unavailable: 1 of 3 controllers reachable"),
        "{message}"
    );
    assert!(
        message.contains("127.0.0.1:4500: follower (node 7, term 3, applied 12)"),
        "{message}"
    );
    assert!(
        message.contains("127.0.0.1:4505: unreachable (connection refused)"),
        "{message}"
    );
}

#[test]
fn the_coordinator_section_is_the_generations_and_the_others_stand_by() {
    let mut s = state(true);
    // Registered after the serving one, with other figures: sorted after it by address.
    let mut standby = worker("co2", v1::WorkerRole::Coordinator, 4512, true);
    if let Some(v1::worker_status::Status::Coordinator(c)) =
        standby.status.as_mut().and_then(|s| s.status.as_mut())
    {
        c.committed_version = 0;
        c.serving_epoch = 0;
    }
    s.workers.push(standby);
    let mut gateway = worker("gw", v1::WorkerRole::Gateway, 4501, false);
    gateway.unhealthy_reason = "cluster: the cluster hands out no read version".into();
    s.workers.push(gateway);
    let r = build("127.0.0.1:4500", s, Some(1000), 40_000);
    let gw = r.processes.iter().find(|p| p.id == "gw").unwrap();
    assert_eq!(gw.role, "gateway");
    assert!(!gw.standby);
    assert!(
        r.messages
            .iter()
            .any(|m| m.starts_with("gateway gw (127.0.0.1:4501) is unhealthy: cluster")),
        "{:?}",
        r.messages
    );
    let co = r.coordinator.as_ref().expect("a coordinator section");
    assert_eq!(co.id, "co");
    assert_eq!(co.committed_version, Some(1000));
    let standby = r.processes.iter().find(|p| p.id == "co2").unwrap();
    assert!(standby.standby);
    assert!(!r.processes.iter().find(|p| p.id == "co").unwrap().standby);
    assert!(render(&r).contains("coordinator (standby)"));
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["coordinator"]["id"], "co");
}

#[test]
fn a_shard_being_moved_shows_its_next_team_and_servers_count_their_shards() {
    let mut st = state(true);
    if let Some(map) = st.shard_map.as_mut() {
        map.shards[0].moving_to = vec!["s1".into(), "s2".into()];
    }
    let r = build("127.0.0.1:4500", st, Some(1000), 40_000);
    assert_eq!(r.shards[0].moving_to, ["s1", "s2"]);
    let counts: Vec<(u32, u32)> = r
        .storage_servers
        .iter()
        .map(|s| (s.shards, s.incoming_shards))
        .collect();
    // Every server is a replica of two shards; s2 also takes the first one over.
    assert_eq!(counts, [(2, 0), (2, 0), (2, 1)]);
    let text = render(&r);
    assert!(
        text.contains("Data distribution: 1 shard(s) moving"),
        "{text}"
    );
    assert!(
        text.contains("MOVING TO") && text.contains("s1,s2"),
        "{text}"
    );
    assert!(text.contains("2 (+1 incoming)"), "{text}");
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["shards"][0]["moving_to"][1], "s2");
}

#[test]
fn a_moving_shard_shows_its_size_and_how_far_the_take_over_has_got() {
    let mut st = state(true);
    let first = v1::KeyRange {
        begin: b"".to_vec().into(),
        end: b"\x55".to_vec().into(),
    };
    if let Some(map) = st.shard_map.as_mut() {
        map.shards[0].moving_to = vec!["s1".into(), "s2".into()];
    }
    let storage = |st: &mut v1::GetClusterStateResponse, id: &str| -> v1::StorageStatus {
        let w = st.workers.iter_mut().find(|w| w.worker_id == id).unwrap();
        match w.status.as_mut().unwrap().status.as_mut().unwrap() {
            v1::worker_status::Status::Storage(s) => s.clone(),
            _ => unreachable!(),
        }
    };
    let set_storage = |st: &mut v1::GetClusterStateResponse, id: &str, s: v1::StorageStatus| {
        let w = st.workers.iter_mut().find(|w| w.worker_id == id).unwrap();
        w.status.as_mut().unwrap().status = Some(v1::worker_status::Status::Storage(s));
    };
    // The replicas report its size; s2, taking it over, has fetched 1 KiB of it.
    for (id, bytes) in [("s0", 4096), ("s1", 4000)] {
        let mut s = storage(&mut st, id);
        s.shard_sizes.push(v1::ShardSize {
            range: Some(first.clone()),
            bytes,
            middle_key: Default::default(),
            write_bytes_per_second: 0,
        });
        set_storage(&mut st, id, s);
    }
    let mut s2 = storage(&mut st, "s2");
    s2.take_overs.push(v1::TakeOver {
        range: Some(first.clone()),
        fetched_bytes: 1024,
        fetched: false,
        installed: false,
    });
    set_storage(&mut st, "s2", s2.clone());
    let r = build("127.0.0.1:4500", st.clone(), Some(1000), 40_000);
    assert_eq!(r.shards[0].bytes, Some(4096));
    assert_eq!(
        r.shards[0].move_progress,
        Some(MoveProgress {
            stage: "fetching".into(),
            fetched_bytes: 1024
        })
    );
    assert_eq!(r.shards[1].move_progress, None);
    let text = render(&r);
    assert!(
        text.contains("s1,s2 (fetching: 1.0 KiB of ~4.0 KiB)"),
        "{text}"
    );
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["shards"][0]["move_progress"]["fetched_bytes"], 1024);
    // Fetched, then ready.
    s2.take_overs[0].fetched_bytes = 4096;
    s2.take_overs[0].fetched = true;
    set_storage(&mut st, "s2", s2.clone());
    let text = render(&build("127.0.0.1:4500", st.clone(), Some(1000), 40_000));
    assert!(
        text.contains("s1,s2 (catching up, 4.0 KiB fetched)"),
        "{text}"
    );
    s2.take_overs[0].installed = true;
    s2.ready_ranges.push(first.clone());
    set_storage(&mut st, "s2", s2);
    let text = render(&build("127.0.0.1:4500", st, Some(1000), 40_000));
    assert!(text.contains("s1,s2 (ready, 4.0 KiB fetched)"), "{text}");
}

#[test]
fn an_excluded_server_says_whether_it_is_safe_to_turn_off() {
    let mut st = state(true);
    st.excluded = vec!["s0".into()];
    let r = build("127.0.0.1:4500", st.clone(), Some(1000), 40_000);
    assert!(r.storage_servers[0].excluded);
    assert!(
        r.messages
            .iter()
            .any(|m| m.contains("s0") && m.contains("2 shard(s) still to move away")),
        "{:?}",
        r.messages
    );
    assert!(render(&r).contains("2 excluded"));
    if let Some(map) = st.shard_map.as_mut() {
        for s in &mut map.shards {
            s.storage_ids.retain(|id| id != "s0");
        }
    }
    let r = build("127.0.0.1:4500", st, Some(1000), 40_000);
    assert!(
        r.messages.iter().any(|m| m.contains("safe to turn off")),
        "{:?}",
        r.messages
    );
}
