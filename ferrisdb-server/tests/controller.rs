//! End-to-end test of the `ferrisdb-controller` binary: registration, shard-map bootstrap,
//! heartbeats and failure detection, health and a restart after SIGKILL on the same data dir.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{ServerProcess, free_port, wait_for_port};
use ferrisdb_proto::v1;
use ferrisdb_proto::v1::cluster_controller_client::ClusterControllerClient;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const HEARTBEAT_MS: u64 = 100;
const MISSED: u32 = 3;

fn start(addr: SocketAddr, dir: &std::path::Path) -> ServerProcess {
    let args = [
        "--listen".to_string(),
        addr.to_string(),
        "--data-dir".into(),
        dir.join("controller").display().to_string(),
        "--storage-servers".into(),
        "3".into(),
        "--replication".into(),
        "2".into(),
        "--heartbeat-ms".into(),
        HEARTBEAT_MS.to_string(),
        "--missed-heartbeats".into(),
        MISSED.to_string(),
    ];
    let process = ServerProcess::spawn(
        env!("CARGO_BIN_EXE_ferrisdb-controller"),
        &args,
        &dir.join("controller.log"),
    );
    wait_for_port(addr, Duration::from_secs(20));
    process
}

async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("valid uri")
        .connect()
        .await
        .expect("connect to the controller")
}

async fn connect(addr: SocketAddr) -> (ClusterControllerClient<Channel>, HealthClient<Channel>) {
    let channel = channel(addr).await;
    (
        ClusterControllerClient::new(channel.clone()),
        HealthClient::new(channel),
    )
}

async fn register(
    client: &mut ClusterControllerClient<Channel>,
    id: &str,
    role: v1::WorkerRole,
    address: &str,
) -> v1::RegisterWorkerResponse {
    let req = v1::RegisterWorkerRequest {
        worker_id: id.into(),
        role: role as i32,
        address: address.into(),
        cluster_id: String::new(),
        incarnation: String::new(),
    };
    client
        .register_worker(req)
        .await
        .expect("register")
        .into_inner()
}

async fn heartbeat(
    client: &mut ClusterControllerClient<Channel>,
    id: &str,
) -> v1::HeartbeatResponse {
    heartbeat_reporting(client, id, "").await
}

/// A heartbeat whose status carries `unhealthy_reason` (empty: none).
async fn heartbeat_reporting(
    client: &mut ClusterControllerClient<Channel>,
    id: &str,
    unhealthy_reason: &str,
) -> v1::HeartbeatResponse {
    let status = v1::WorkerStatus {
        status: Some(v1::worker_status::Status::Storage(v1::StorageStatus {
            applied_version: 10,
            durable_version: 9,
            data_bytes: 1234,
            ready_ranges: vec![],
            ready_map_version: 0,
            shard_sizes: vec![],
            take_overs: vec![],
            point_reads_total: 0,
            point_read_calls_total: 0,
        })),
        unhealthy_reason: unhealthy_reason.into(),
    };
    let req = v1::HeartbeatRequest {
        worker_id: id.into(),
        status: Some(status),
    };
    client.heartbeat(req).await.expect("heartbeat").into_inner()
}

async fn state(client: &mut ClusterControllerClient<Channel>) -> v1::GetClusterStateResponse {
    client
        .get_cluster_state(v1::GetClusterStateRequest {})
        .await
        .expect("state")
        .into_inner()
}

/// The services listed by gRPC reflection (v1alpha, the version grpcurl speaks).
async fn reflected_services(addr: SocketAddr) -> Vec<String> {
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;

    let mut client = ServerReflectionClient::new(channel(addr).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = client
        .server_reflection_info(tokio_stream::once(request))
        .await
        .expect("reflection call")
        .into_inner();
    let reply = replies
        .message()
        .await
        .expect("reflection reply")
        .expect("one reply");
    match reply.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected reflection reply {other:?}"),
    }
}

fn worker<'a>(state: &'a v1::GetClusterStateResponse, id: &str) -> &'a v1::WorkerInfo {
    state
        .workers
        .iter()
        .find(|w| w.worker_id == id)
        .unwrap_or_else(|| panic!("no worker {id}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_bootstraps_detects_failures_and_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut process = start(addr, dir.path());
    let (mut client, mut health) = connect(addr).await;

    assert!(
        reflected_services(addr)
            .await
            .contains(&"ferrisdb.v1.ClusterController".to_string())
    );
    for service in ["", "ferrisdb.v1.ClusterController"] {
        let req = tonic_health::pb::HealthCheckRequest {
            service: service.into(),
        };
        let reply = health.check(req).await.expect("health check").into_inner();
        assert_eq!(
            reply.status,
            ServingStatus::Serving as i32,
            "service {service:?}"
        );
    }

    // Bootstrap: nothing until the third storage server registers.
    let coord = register(
        &mut client,
        "coord-1",
        v1::WorkerRole::Coordinator,
        "127.0.0.1:4501",
    )
    .await;
    let cluster_id = coord.cluster_id.clone();
    assert_eq!(cluster_id.len(), 32);
    assert_eq!(coord.heartbeat_interval_ms, HEARTBEAT_MS as u32);
    for i in 0..3 {
        let reply = register(
            &mut client,
            &format!("ss-{i}"),
            v1::WorkerRole::Storage,
            &format!("127.0.0.1:{}", 4502 + i),
        )
        .await;
        assert_eq!(reply.cluster_id, cluster_id);
        assert_eq!(reply.shard_map_version, if i < 2 { 0 } else { 1 });
    }
    let s = state(&mut client).await;
    let map = s.shard_map.clone().expect("shard map");
    assert_eq!((map.version, map.shards.len()), (1, 3));
    let begins: Vec<Vec<u8>> = map
        .shards
        .iter()
        .map(|sh| sh.range.clone().unwrap_or_default().begin.to_vec())
        .collect();
    assert_eq!(begins, vec![vec![], vec![0x55], vec![0xaa]]);
    for shard in &map.shards {
        assert_eq!(shard.storage_ids.len(), 2);
        assert_ne!(shard.storage_ids[0], shard.storage_ids[1]);
    }
    let coordinator = s.coordinator.clone().expect("coordinator published");
    assert_eq!(
        (coordinator.address.as_str(), coordinator.healthy),
        ("127.0.0.1:4501", true)
    );
    assert_eq!((s.expected_storage_servers, s.replication), (3, 2));

    // ss-0 and ss-1 keep heartbeating, ss-2 falls silent.
    for _ in 0..(MISSED as u64 * 3) {
        tokio::time::sleep(Duration::from_millis(HEARTBEAT_MS)).await;
        for id in ["ss-0", "ss-1"] {
            let reply = heartbeat(&mut client, id).await;
            assert_eq!((reply.shard_map_version, reply.must_register), (1, false));
        }
    }
    let s = state(&mut client).await;
    let (alive, silent) = (worker(&s, "ss-0"), worker(&s, "ss-2"));
    assert!(alive.healthy && alive.ms_since_heartbeat < 2 * HEARTBEAT_MS);
    assert!(alive.status.is_some() && alive.start_time_unix_ms > 0);
    assert!(!silent.healthy, "{silent:?}");
    assert!(silent.ms_since_heartbeat > MISSED as u64 * HEARTBEAT_MS);
    assert!(
        silent.unhealthy_reason.starts_with("not heard from for"),
        "{silent:?}"
    );
    assert!(alive.unhealthy_reason.is_empty(), "{alive:?}");
    assert!(heartbeat(&mut client, "stranger").await.must_register);

    // A live worker that reports it cannot do its job is unhealthy, with its reason, until it
    // reports otherwise.
    heartbeat_reporting(
        &mut client,
        "ss-0",
        "storage engine: No space left on device",
    )
    .await;
    let s = state(&mut client).await;
    let failed = worker(&s, "ss-0");
    assert!(!failed.healthy, "{failed:?}");
    assert_eq!(
        failed.unhealthy_reason,
        "storage engine: No space left on device"
    );
    heartbeat(&mut client, "ss-0").await;
    assert!(worker(&state(&mut client).await, "ss-0").healthy);

    // A worker that moved re-registers with its new address.
    register(
        &mut client,
        "ss-1",
        v1::WorkerRole::Storage,
        "127.0.0.1:5503",
    )
    .await;
    let err = client
        .register_worker(v1::RegisterWorkerRequest {
            worker_id: "ss-1".into(),
            role: v1::WorkerRole::Coordinator as i32,
            address: "127.0.0.1:5503".into(),
            cluster_id: String::new(),
            incarnation: String::new(),
        })
        .await
        .expect_err("role change is rejected");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(matches!(
        ferrisdb_proto::status::from_status(&err),
        ferrisdb_core::Error::InvalidArgument(_)
    ));

    // SIGKILL, restart on the same data dir: identity, shard map and addresses survive.
    process.kill();
    let mut process = start(addr, dir.path());
    let (mut client, health) = connect(addr).await;
    drop(health);
    let after = state(&mut client).await;
    assert_eq!(after.cluster_id, cluster_id, "{}", process.logs());
    assert_eq!(after.shard_map, Some(map));
    assert_eq!(worker(&after, "ss-1").address, "127.0.0.1:5503");
    assert_eq!(
        after.coordinator.map(|c| c.worker_id),
        Some("coord-1".into())
    );
    assert!(
        after.workers.iter().all(|w| !w.healthy),
        "liveness is re-learned"
    );
    assert!(!heartbeat(&mut client, "ss-0").await.must_register);
    assert!(worker(&state(&mut client).await, "ss-0").healthy);

    // Clean shutdown on SIGTERM (idle client connections are closed first, as a real client
    // would; the server also stops after a grace period if one stays open).
    drop(client);
    let status = process.terminate(Duration::from_secs(10));
    let logs = process.logs();
    assert!(status.success(), "{status:?}\n{logs}");
    assert!(
        !logs.contains("grace period"),
        "shutdown had to wait for the grace period\n{logs}"
    );
}
