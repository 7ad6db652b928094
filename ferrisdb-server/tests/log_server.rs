//! End-to-end test of the `ferrisdb-log-server` binary over real gRPC: a generation locks the
//! log and appends a stream of records (each acknowledged only once durable), the process is
//! SIGKILLed and restarted on the same directory (records and fence survive), an older
//! generation is fenced with code 1011, and bad requests get clear statuses.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::{ServerProcess, free_port, wait_for_port};
use ferrisdb_core::{Mutation, Version};
use ferrisdb_proto::v1;
use ferrisdb_proto::v1::log_server_client::LogServerClient;
use ferrisdb_server::log::record;
use tonic::Code;
use tonic::transport::Channel;

fn start(addr: SocketAddr, dir: &Path) -> ServerProcess {
    // No controller listens at this address: the log server serves anyway and keeps trying.
    let nobody = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let args = [
        "--listen".to_string(),
        addr.to_string(),
        "--data-dir".into(),
        dir.join("log-server").display().to_string(),
        "--controller".into(),
        nobody.to_string(),
    ];
    let p = ServerProcess::spawn(
        env!("CARGO_BIN_EXE_ferrisdb-log-server"),
        &args,
        &dir.join("log-server.log"),
    );
    wait_for_port(addr, Duration::from_secs(20));
    p
}

fn client(addr: SocketAddr) -> LogServerClient<Channel> {
    LogServerClient::new(
        Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy(),
    )
}

/// A client of the log server at `addr` once it answers gRPC: an open TCP port alone does not
/// show that (a CI run's first call after `wait_for_port` was reset).
async fn ready_client(addr: SocketAddr) -> LogServerClient<Channel> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let answer = health
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await;
        // Any answer from the server (even "not serving") means gRPC is up.
        match answer {
            Ok(_) => return client(addr),
            Err(status) if !matches!(status.code(), Code::Unknown | Code::Unavailable) => {
                return client(addr);
            }
            Err(status) => assert!(
                std::time::Instant::now() < deadline,
                "the log server at {addr} never answered gRPC: {status:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn rec(version: u64, prev: u64) -> Vec<u8> {
    let m = Mutation::Set {
        key: format!("k{version}").into(),
        value: "v".into(),
    };
    record::encode(Version(version), Version(prev), &[m]).unwrap()
}

fn append(epoch: u64, record: Vec<u8>, known_committed: u64) -> v1::AppendRequest {
    v1::AppendRequest {
        epoch,
        record: record.into(),
        known_committed,
        truncate_through: 0,
        probe: 0,
        redundant_through: 0,
    }
}

fn error_code(status: &tonic::Status) -> String {
    status
        .metadata()
        .get("ferrisdb-error-code")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_are_durable_fenced_and_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut process = start(addr, dir.path());
    let mut c = ready_client(addr).await;

    let err = c.lock(v1::LockRequest { epoch: 0 }).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let locked = c
        .lock(v1::LockRequest { epoch: 1 })
        .await
        .unwrap()
        .into_inner();
    assert!(locked.log_id.starts_with("log"), "{locked:?}");
    assert_eq!(locked.durable_version, 0);

    // A pipelined stream of 100 records: every acknowledgement is in order and the last one
    // covers the last record.
    let requests: Vec<_> = (1..=100u64)
        .map(|i| append(1, rec(i * 10, (i - 1) * 10), (i - 1) * 10))
        .collect();
    let mut answers = c
        .append(futures_util::stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let mut last = 0;
    while let Some(answer) = answers.message().await.unwrap() {
        assert!(answer.durable_version > last, "acks in order");
        last = answer.durable_version;
        if last == 1000 {
            break;
        }
    }
    assert_eq!(last, 1000);
    drop(answers);

    process.kill();
    let _process = start(addr, dir.path());
    let mut c = ready_client(addr).await;
    let state = c
        .get_log_state(v1::GetLogStateRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        state.durable_version, 1000,
        "every acknowledged record survived"
    );
    assert_eq!(state.locked_epoch, 1, "the fence survived");

    // A recovery locks the log at generation 2 and reads what it holds, chained.
    let locked = c
        .lock(v1::LockRequest { epoch: 2 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(locked.durable_version, 1000);
    let read = c
        .read_records(v1::ReadRecordsRequest {
            epoch: 2,
            after_version: 980,
            through_version: 1000,
            max_bytes: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let chain: Vec<_> = read
        .records
        .iter()
        .map(|r| record::decode(r).unwrap())
        .map(|r| (r.prev_version.get(), r.version.get()))
        .collect();
    assert_eq!(chain, [(980, 990), (990, 1000)]);

    // A probe of generation 2 is answered at once; one of generation 1 is refused.
    let mut probe = append(2, Vec::new(), 0);
    probe.probe = 7;
    let mut answers = c
        .append(futures_util::stream::iter([probe.clone()]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().expect("an answer");
    assert_eq!(answer.probe, 7, "{answer:?}");
    probe.epoch = 1;
    let mut answers = c
        .append(futures_util::stream::iter([probe]))
        .await
        .unwrap()
        .into_inner();
    let err = answers.message().await.unwrap_err();
    assert_eq!(error_code(&err), "1011", "{err:?}");

    // Generation 1 is over: its next append is refused with 1011 and the stream ends.
    let mut answers = c
        .append(futures_util::stream::iter([append(1, rec(1010, 1000), 0)]))
        .await
        .unwrap()
        .into_inner();
    let err = answers.message().await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert_eq!(error_code(&err), "1011", "{err:?}");
    assert!(err.message().contains("locked by generation 2"), "{err:?}");
    let err = c.lock(v1::LockRequest { epoch: 1 }).await.unwrap_err();
    assert_eq!(error_code(&err), "1011", "{err:?}");

    // Bad input: an undecodable record, a record out of chain, an unknown storage server.
    for (request, wanted) in [
        (append(2, b"garbage".to_vec(), 0), "undecodable"),
        (append(2, rec(2000, 1500), 0), "ends at 1000"),
    ] {
        let mut answers = c
            .append(futures_util::stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let err = answers.message().await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(wanted), "{err:?}");
    }
    let err = c
        .stream_mutations(v1::StreamMutationsRequest {
            storage_id: String::new(),
            after_version: 0,
            ranges: vec![],
            max_bytes: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let state = c
        .get_log_state(v1::GetLogStateRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state.durable_version, 1000, "nothing refused was appended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_that_lost_its_log_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut process = start(addr, dir.path());
    process.kill();
    std::fs::remove_dir_all(dir.path().join("log-server/log")).unwrap();
    let mut process = ServerProcess::spawn(
        env!("CARGO_BIN_EXE_ferrisdb-log-server"),
        &[
            "--listen".to_string(),
            addr.to_string(),
            "--data-dir".into(),
            dir.path().join("log-server").display().to_string(),
        ],
        &dir.path().join("again.log"),
    );
    let status = process.wait_exit(Duration::from_secs(20), "with its log gone");
    assert!(!status.success());
    let logs = process.logs();
    assert!(logs.contains("its log directory"), "{logs}");
}
