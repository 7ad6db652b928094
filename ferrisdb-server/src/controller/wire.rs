//! Conversions between the controller's types and its `controller.proto` messages. (Core
//! types such as key ranges convert through `ferrisdb_proto::convert`.)

use tokio::time::Instant;

use ferrisdb_core::{Error, Version};
use ferrisdb_proto::v1;

use super::membership::{
    CommitStageTotals, CoordinatorStatus, LogServerStatus, Role, RoleStatus, StorageDurability,
    StorageStatus, Worker,
};
use super::shard_map::ShardMap;
use super::state::ClusterState;

/// A wire role number as a [`Role`]; unspecified and unknown roles are invalid.
pub fn role_from_proto(role: i32) -> Result<Role, Error> {
    match v1::WorkerRole::try_from(role) {
        Ok(v1::WorkerRole::Storage) => Ok(Role::Storage),
        Ok(v1::WorkerRole::Coordinator) => Ok(Role::Coordinator),
        Ok(v1::WorkerRole::Log) => Ok(Role::Log),
        Ok(v1::WorkerRole::Gateway) => Ok(Role::Gateway),
        Ok(v1::WorkerRole::Unspecified) => {
            Err(Error::InvalidArgument("worker role is unspecified".into()))
        }
        Err(_) => Err(Error::InvalidArgument(format!(
            "unknown worker role number {role}"
        ))),
    }
}

/// A [`Role`] on the wire.
pub fn role_to_proto(role: Role) -> v1::WorkerRole {
    match role {
        Role::Storage => v1::WorkerRole::Storage,
        Role::Coordinator => v1::WorkerRole::Coordinator,
        Role::Log => v1::WorkerRole::Log,
        Role::Gateway => v1::WorkerRole::Gateway,
    }
}

/// A heartbeat's status: the role status (`None` if the message carries none) and the
/// unhealthy reason (`None` if empty).
pub fn status_from_proto(status: Option<v1::WorkerStatus>) -> (Option<RoleStatus>, Option<String>) {
    let Some(status) = status else {
        return (None, None);
    };
    let problem = Some(status.unhealthy_reason).filter(|r| !r.is_empty());
    (role_status_from_proto(status.status), problem)
}

fn role_status_from_proto(status: Option<v1::worker_status::Status>) -> Option<RoleStatus> {
    use v1::worker_status::Status;
    match status? {
        Status::Log(l) => Some(RoleStatus::Log(LogServerStatus {
            locked_epoch: l.locked_epoch,
            durable_version: Version(l.durable_version),
            known_committed: Version(l.known_committed),
            retained_from: Version(l.retained_from),
            retained_bytes: l.retained_bytes,
            retention_budget_bytes: l.retention_budget_bytes,
        })),
        Status::Storage(s) => Some(RoleStatus::Storage(StorageStatus {
            applied_version: Version(s.applied_version),
            durable_version: Version(s.durable_version),
            data_bytes: s.data_bytes,
            // A malformed range is left out: it only delays a hand-over.
            ready_ranges: s
                .ready_ranges
                .into_iter()
                .filter_map(|r| ferrisdb_core::KeyRange::try_from(r).ok())
                .collect(),
            ready_map_version: s.ready_map_version,
            // Likewise a malformed size: it only delays a split.
            shard_sizes: s
                .shard_sizes
                .into_iter()
                .filter_map(|z| {
                    let range = ferrisdb_core::KeyRange::try_from(z.range?).ok()?;
                    Some(super::membership::ShardSize {
                        range,
                        bytes: z.bytes,
                        middle_key: (!z.middle_key.is_empty()).then_some(z.middle_key),
                        write_bytes_per_second: z.write_bytes_per_second,
                    })
                })
                .collect(),
            take_overs: s
                .take_overs
                .into_iter()
                .filter_map(|t| {
                    Some(super::membership::TakeOver {
                        range: ferrisdb_core::KeyRange::try_from(t.range?).ok()?,
                        fetched_bytes: t.fetched_bytes,
                        fetched: t.fetched,
                        installed: t.installed,
                    })
                })
                .collect(),
            point_reads_total: s.point_reads_total,
            point_read_calls_total: s.point_read_calls_total,
        })),
        Status::Coordinator(c) => Some(RoleStatus::Coordinator(CoordinatorStatus {
            committed_version: Version(c.committed_version),
            commits_per_second: c.commits_per_second,
            avg_batch_size: c.avg_batch_size,
            log_bytes: c.log_bytes,
            commits_total: c.commits_total,
            batches_total: c.batches_total,
            log_fsyncs_total: c.log_fsyncs_total,
            log_truncated_through: Version(c.log_truncated_through),
            commit_stages: c
                .commit_stages
                .map(|s| CommitStageTotals {
                    queue_us: s.queue_us,
                    resolve_us: s.resolve_us,
                    durable_us: s.durable_us,
                    reply_us: s.reply_us,
                })
                .unwrap_or_default(),
            log_holders: c
                .log_holders
                .into_iter()
                .map(|h| StorageDurability {
                    storage_id: h.storage_id,
                    durable_version: Version(h.durable_version),
                    ms_since_report: h.ms_since_report,
                })
                .collect(),
            serving_epoch: c.serving_epoch,
            generation_failure: Some(c.generation_failure).filter(|f| !f.is_empty()),
        })),
    }
}

/// A status on the wire, with the worker's unhealthy reason (empty: none).
pub fn status_to_proto(status: &RoleStatus, problem: Option<&str>) -> v1::WorkerStatus {
    use v1::worker_status::Status;
    let status = match status {
        RoleStatus::Log(l) => Status::Log(v1::LogServerStatus {
            locked_epoch: l.locked_epoch,
            durable_version: l.durable_version.get(),
            known_committed: l.known_committed.get(),
            retained_from: l.retained_from.get(),
            retained_bytes: l.retained_bytes,
            retention_budget_bytes: l.retention_budget_bytes,
        }),
        RoleStatus::Storage(s) => Status::Storage(v1::StorageStatus {
            applied_version: s.applied_version.get(),
            durable_version: s.durable_version.get(),
            data_bytes: s.data_bytes,
            ready_ranges: s.ready_ranges.iter().map(v1::KeyRange::from).collect(),
            ready_map_version: s.ready_map_version,
            shard_sizes: s
                .shard_sizes
                .iter()
                .map(|z| v1::ShardSize {
                    range: Some(v1::KeyRange::from(&z.range)),
                    bytes: z.bytes,
                    middle_key: z.middle_key.clone().unwrap_or_default(),
                    write_bytes_per_second: z.write_bytes_per_second,
                })
                .collect(),
            take_overs: s
                .take_overs
                .iter()
                .map(|t| v1::TakeOver {
                    range: Some(v1::KeyRange::from(&t.range)),
                    fetched_bytes: t.fetched_bytes,
                    fetched: t.fetched,
                    installed: t.installed,
                })
                .collect(),
            point_reads_total: s.point_reads_total,
            point_read_calls_total: s.point_read_calls_total,
        }),
        RoleStatus::Coordinator(c) => Status::Coordinator(v1::CoordinatorStatus {
            committed_version: c.committed_version.get(),
            commits_per_second: c.commits_per_second,
            avg_batch_size: c.avg_batch_size,
            log_bytes: c.log_bytes,
            commits_total: c.commits_total,
            batches_total: c.batches_total,
            log_fsyncs_total: c.log_fsyncs_total,
            log_truncated_through: c.log_truncated_through.get(),
            commit_stages: Some(v1::CommitStages {
                queue_us: c.commit_stages.queue_us,
                resolve_us: c.commit_stages.resolve_us,
                durable_us: c.commit_stages.durable_us,
                reply_us: c.commit_stages.reply_us,
            }),
            log_holders: c
                .log_holders
                .iter()
                .map(|h| v1::StorageDurability {
                    storage_id: h.storage_id.clone(),
                    durable_version: h.durable_version.get(),
                    ms_since_report: h.ms_since_report,
                })
                .collect(),
            serving_epoch: c.serving_epoch,
            generation_failure: c.generation_failure.clone().unwrap_or_default(),
        }),
    };
    v1::WorkerStatus {
        status: Some(status),
        unhealthy_reason: problem.unwrap_or_default().to_owned(),
    }
}

/// A shard map on the wire (the conversion lives in `ferrisdb_proto::convert`).
pub fn shard_map_to_proto(map: &ShardMap) -> v1::ShardMap {
    v1::ShardMap::from(map)
}

/// A shard map from the wire (for workers and clients), with its invariants checked.
pub fn shard_map_from_proto(map: v1::ShardMap) -> Result<ShardMap, Error> {
    ShardMap::try_from(map)
}

/// The whole cluster as `GetClusterState` reports it at `now`.
pub fn cluster_state_to_proto(
    state: &ClusterState,
    now: Instant,
    heartbeat_interval_ms: u32,
) -> v1::GetClusterStateResponse {
    let m = &state.membership;
    let worker = |w: &Worker| {
        let reason = m.unhealthy_reason(w, now);
        v1::WorkerInfo {
            worker_id: w.record.id.clone(),
            role: role_to_proto(w.record.role) as i32,
            address: w.record.address.clone(),
            healthy: reason.is_none(),
            ms_since_heartbeat: u64::try_from(m.silence(w, now).as_millis()).unwrap_or(u64::MAX),
            start_time_unix_ms: w.registered_at_unix_ms.unwrap_or(0),
            status: w
                .status
                .as_ref()
                .map(|s| status_to_proto(s, w.reported_problem.as_deref())),
            unhealthy_reason: reason.unwrap_or_default(),
        }
    };
    v1::GetClusterStateResponse {
        cluster_id: state.cluster_id.clone(),
        coordinator: state.coordinator().map(|c| v1::CoordinatorInfo {
            worker_id: c.record.id.clone(),
            address: c.record.address.clone(),
            healthy: m.is_healthy(c, now),
        }),
        shard_map: Some(shard_map_to_proto(&state.shard_map)),
        workers: m.workers().iter().map(worker).collect(),
        expected_storage_servers: state.expected_storage_servers,
        replication: state.replication,
        heartbeat_interval_ms,
        // Filled by the service, which asks every replica.
        controllers: Vec::new(),
        epoch: state.generation.epoch,
        generation: (state.generation.epoch > 0).then(|| generation_to_proto(state)),
        recovery_state: recovery_state(state),
        recovery_reason: state.recovery.reason.clone(),
        last_recovery_ms: state
            .recovery
            .last_duration
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        excluded: state.excluded.clone(),
    }
}

/// The current generation with its log servers' addresses.
pub fn generation_to_proto(state: &ClusterState) -> v1::GenerationInfo {
    let g = &state.generation;
    let address = |id: &str| {
        state
            .membership
            .workers()
            .iter()
            .find(|w| w.record.id == id)
            .map(|w| w.record.address.clone())
            .unwrap_or_default()
    };
    v1::GenerationInfo {
        epoch: g.epoch,
        coordinator_id: g.coordinator_id.clone(),
        logs: g
            .logs
            .iter()
            .map(|id| v1::GenerationLog {
                log_id: id.clone(),
                address: address(id),
            })
            .collect(),
        recovery_version: g.recovery_version,
        start_version: g.start_version,
    }
}

/// What the recovery is doing, in words: the leader's progress, and "fully recovered" once
/// the generation accepts commits and every storage server of the shard map has applied its
/// first version.
fn recovery_state(state: &ClusterState) -> String {
    let progress = &state.recovery.state;
    let serving =
        state.generation.epoch > 0 && (progress.is_empty() || progress == "accepting commits");
    if !serving {
        return progress.clone();
    }
    let start = Version(state.generation.start_version);
    let caught_up = state.shard_map.shards.iter().all(|shard| {
        shard.storage_ids.iter().all(|id| {
            state.membership.workers().iter().any(|w| {
                &w.record.id == id
                    && matches!(&w.status, Some(RoleStatus::Storage(s)) if s.applied_version >= start)
            })
        })
    });
    if caught_up {
        "fully recovered".into()
    } else {
        "accepting commits".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_convert_and_reject_unspecified() {
        for role in [Role::Storage, Role::Coordinator, Role::Log, Role::Gateway] {
            assert_eq!(role_from_proto(role_to_proto(role) as i32).unwrap(), role);
        }
        assert!(role_from_proto(0).is_err());
        assert!(role_from_proto(42).is_err());
    }

    #[test]
    fn statuses_round_trip() {
        let all = [
            RoleStatus::Storage(StorageStatus {
                applied_version: Version(5),
                durable_version: Version(4),
                data_bytes: 9,
                ready_ranges: vec![ferrisdb_core::KeyRange::new("a", "b").unwrap()],
                ready_map_version: 3,
                shard_sizes: vec![super::super::membership::ShardSize {
                    range: ferrisdb_core::KeyRange::new("a", "c").unwrap(),
                    bytes: 4096,
                    middle_key: Some(bytes::Bytes::from_static(b"b")),
                    write_bytes_per_second: 1000,
                }],
                take_overs: vec![super::super::membership::TakeOver {
                    range: ferrisdb_core::KeyRange::new("c", "d").unwrap(),
                    fetched_bytes: 77,
                    fetched: true,
                    installed: false,
                }],
                point_reads_total: 40,
                point_read_calls_total: 8,
            }),
            RoleStatus::Coordinator(CoordinatorStatus {
                committed_version: Version(7),
                commits_per_second: 1.5,
                avg_batch_size: 2.0,
                log_bytes: 3,
                commits_total: 11,
                batches_total: 6,
                log_fsyncs_total: 4,
                log_truncated_through: Version(3),
                commit_stages: CommitStageTotals {
                    queue_us: 1,
                    resolve_us: 2,
                    durable_us: 3,
                    reply_us: 4,
                },
                log_holders: vec![StorageDurability {
                    storage_id: "s1".into(),
                    durable_version: Version(2),
                    ms_since_report: 40,
                }],
                serving_epoch: 4,
                generation_failure: Some("log server l1 ended its append stream".into()),
            }),
            RoleStatus::Log(LogServerStatus {
                locked_epoch: 4,
                durable_version: Version(9),
                known_committed: Version(8),
                retained_from: Version(2),
                retained_bytes: 100,
                retention_budget_bytes: 1 << 30,
            }),
        ];
        for s in all {
            assert_eq!(
                status_from_proto(Some(status_to_proto(&s, None))),
                (Some(s.clone()), None)
            );
            assert_eq!(
                status_from_proto(Some(status_to_proto(&s, Some("disk full")))),
                (Some(s), Some("disk full".into()))
            );
        }
        let bare = v1::WorkerStatus {
            status: None,
            unhealthy_reason: String::new(),
        };
        assert_eq!(status_from_proto(Some(bare)), (None, None));
        assert_eq!(status_from_proto(None), (None, None));
    }

    #[test]
    fn shard_maps_round_trip_and_are_validated() {
        let ids: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let map = ShardMap::bootstrap(&ids, 2, 3).unwrap();
        assert_eq!(shard_map_from_proto(shard_map_to_proto(&map)).unwrap(), map);
        let mut wire = shard_map_to_proto(&map);
        wire.shards.pop();
        assert!(shard_map_from_proto(wire.clone()).is_err());
        wire.shards[0].range = None;
        assert!(shard_map_from_proto(wire).is_err());
    }
}
