//! Tests of the recovery's rules: when a generation must be replaced, and the plan of the next.

use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::controller::membership::{CoordinatorStatus, Liveness, WorkerRecord};
use crate::controller::metadata::Metadata;
use crate::controller::shard_map::ShardMap;

fn locked(id: &str, durable: u64, retained_from: u64) -> LockedLog {
    LockedLog {
        id: id.into(),
        address: format!("{id}:1"),
        durable: Version(durable),
        retained_from: Version(retained_from),
    }
}

fn candidate(id: &str) -> LogCandidate {
    LogCandidate {
        id: id.into(),
        address: format!("{id}:1"),
    }
}

fn ids(plan: &Plan) -> Vec<(&str, Option<u64>)> {
    plan.logs
        .iter()
        .map(|l| (l.id.as_str(), l.holds_through.map(Version::get)))
        .collect()
}

#[test]
fn the_recovery_version_is_the_largest_locked_end_and_the_start_a_window_above() {
    let old = vec!["a".to_string(), "b".to_string()];
    let plan = plan(
        &old,
        &[locked("a", 900, 100), locked("b", 1000, 200)],
        &[candidate("a"), candidate("b"), candidate("c")],
        2,
        Version(50),
    )
    .unwrap();
    assert_eq!(plan.recovery_version, Version(1000));
    assert_eq!(plan.start_version, Version(1000 + Version::MVCC_WINDOW));
    assert_eq!(plan.source.as_ref().unwrap().id, "b");
    // The locked logs first, the one holding most first; no copy needed for it.
    assert_eq!(ids(&plan), [("b", Some(1000)), ("a", Some(900))]);
    // The wall clock far ahead decides the start.
    let later = plan_with_clock(Version(10_000_000_000));
    assert_eq!(later.start_version, Version(10_000_000_000));
}

fn plan_with_clock(now: Version) -> Plan {
    plan(
        &["a".to_string()],
        &[locked("a", 1000, 0)],
        &[candidate("a"), candidate("b")],
        2,
        now,
    )
    .unwrap()
}

#[test]
fn a_lost_log_is_replaced_by_a_healthy_one_that_is_rebuilt() {
    let old = vec!["a".to_string(), "b".to_string()];
    // "b" is gone (not locked); "c" stands by.
    let plan = plan(
        &old,
        &[locked("a", 1000, 300)],
        &[candidate("a"), candidate("c")],
        2,
        Version(0),
    )
    .unwrap();
    assert_eq!(ids(&plan), [("a", Some(1000)), ("c", None)]);
    assert_eq!(plan.source.as_ref().unwrap().retained_from, Version(300));
}

#[test]
fn a_recovery_waits_for_the_old_logs_and_for_enough_log_servers() {
    let old = vec!["a".to_string(), "b".to_string()];
    let err = plan(&old, &[], &[candidate("c"), candidate("d")], 2, Version(0)).unwrap_err();
    assert!(err.contains("none of the 2 log servers"), "{err}");
    let err = plan(
        &old,
        &[locked("a", 10, 0)],
        &[candidate("a")],
        2,
        Version(0),
    )
    .unwrap_err();
    assert!(
        err.contains("2 log servers are needed, 1 are healthy"),
        "{err}"
    );
}

#[test]
fn the_first_generation_needs_no_old_logs() {
    let plan = plan(
        &[],
        &[],
        &[candidate("c"), candidate("a"), candidate("b")],
        2,
        Version(7_000_000),
    )
    .unwrap();
    assert_eq!(plan.recovery_version, Version::ZERO);
    assert_eq!(plan.start_version, Version(7_000_000));
    assert!(plan.source.is_none());
    assert_eq!(ids(&plan), [("a", None), ("b", None)]);
}

const LIVENESS: Liveness = Liveness {
    heartbeat_interval: Duration::from_millis(100),
    missed_heartbeats: 3,
};

fn meta(generation: Generation) -> Metadata {
    let rec = |id: &str, role| WorkerRecord {
        id: id.into(),
        role,
        address: format!("{id}:1"),
    };
    Metadata {
        cluster_id: "c".into(),
        expected_storage_servers: 1,
        replication: 1,
        shard_map: ShardMap::default(),
        workers: vec![
            rec("coord", Role::Coordinator),
            rec("la", Role::Log),
            rec("lb", Role::Log),
        ],
        recovering_epoch: generation.epoch,
        generation,
        log_replication: 2,
        excluded: vec![],
    }
}

fn serving(epoch: u64) -> Generation {
    Generation {
        epoch,
        coordinator_id: "coord".into(),
        logs: vec!["la".into(), "lb".into()],
        recovery_version: 10,
        start_version: 5_000_010,
    }
}

fn coordinator_status(serving_epoch: u64, failure: Option<&str>) -> RoleStatus {
    RoleStatus::Coordinator(CoordinatorStatus {
        serving_epoch,
        generation_failure: failure.map(String::from),
        ..CoordinatorStatus::default()
    })
}

#[test]
fn a_generation_is_replaced_when_its_coordinator_or_a_log_fails() {
    let t0 = Instant::now();
    let now = t0 + Duration::from_secs(1);
    let mut state = ClusterState::from_metadata(meta(Generation::default()), LIVENESS, t0);
    assert!(
        needs_recovery(&state, now)
            .unwrap()
            .contains("not started yet")
    );

    let mut state2 = ClusterState::from_metadata(meta(serving(3)), LIVENESS, t0);
    // A leader that just took office has heard from nobody: that is not a failure.
    assert_eq!(needs_recovery(&state2, t0), None);
    for id in ["coord", "la", "lb"] {
        state2
            .heartbeat(id, None, None, now - Duration::from_millis(10))
            .unwrap();
    }
    state2
        .heartbeat("coord", Some(coordinator_status(3, None)), None, now)
        .unwrap();
    assert_eq!(needs_recovery(&state2, now), None, "all is well");

    let reason = needs_recovery(&state2, now + Duration::from_secs(1)).unwrap();
    assert!(reason.contains("silent"), "{reason}");

    state2
        .heartbeat("coord", Some(coordinator_status(0, None)), None, now)
        .unwrap();
    let reason = needs_recovery(&state2, now).unwrap();
    assert!(reason.contains("serves generation 0, not 3"), "{reason}");
    // Right after a recovery finished, the coordinator's last heartbeat may be stale.
    state2.recovery.finished = Some(now);
    assert_eq!(needs_recovery(&state2, now), None);
    state2.recovery.finished = None;

    state2
        .heartbeat(
            "coord",
            Some(coordinator_status(
                3,
                Some("log server lb ended its append stream"),
            )),
            None,
            now,
        )
        .unwrap();
    let reason = needs_recovery(&state2, now).unwrap();
    assert!(
        reason.contains("generation 3 failed: log server lb"),
        "{reason}"
    );

    // The generation's coordinator is gone from the registry (replaced and forgotten).
    state.generation = serving(3);
    state.generation.coordinator_id = "old-coord".into();
    let reason = needs_recovery(&state, now).unwrap();
    assert!(
        reason.contains("old-coord is no longer registered"),
        "{reason}"
    );
}

#[test]
fn inputs_take_the_next_epoch_and_only_healthy_processes() {
    let t0 = Instant::now();
    let now = t0 + Duration::from_secs(1);
    let mut state = ClusterState::from_metadata(meta(serving(3)), LIVENESS, t0);
    state.recovering_epoch = 5;
    state.heartbeat("la", None, None, now).unwrap();
    state.heartbeat("coord", None, None, now).unwrap();
    let inputs = Inputs::from_state(&state, now);
    assert_eq!(inputs.epoch, 6);
    assert_eq!(inputs.replication, 2);
    assert_eq!(inputs.healthy_logs, vec![candidate("la")]);
    assert_eq!(inputs.log_addresses.len(), 2);
    assert_eq!(
        inputs.coordinator,
        Some(("coord".to_string(), "coord:1".to_string()))
    );
}
