//! Hostile requests against a real cluster (controller, coordinator with the public KV service,
//! one storage server): bad values in every public RPC, malformed gRPC framing and garbage
//! protobuf for every method, unknown methods and services, messages above the size limit,
//! raw non-gRPC bytes, and 2,000 TCP connections held open with hundreds of concurrent calls.
//!
//! Asserted: every request gets the expected error status (`hostile/cases.rs` lists them),
//! every process is still running and reports SERVING afterwards, no process grew by more than
//! [`RSS_GROWTH_LIMIT_MIB`], and a normal client running throughout never saw an error.

mod common;

#[path = "hostile/cases.rs"]
mod cases;
#[path = "hostile/raw.rs"]
mod raw;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cases::{Case, Targets};
use common::cluster::{TestCluster, channel};
use ferrisdb_client::Database;
use ferrisdb_server::grpc::MAX_MESSAGE_BYTES;
use raw::Outcome;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Most a process may grow (resident memory) over the whole test.
const RSS_GROWTH_LIMIT_MIB: u64 = 256;
/// TCP connections opened and held at once.
const HELD_CONNECTIONS: usize = 2_000;
/// Concurrent calls made while they are held.
const CONCURRENT_CALLS: usize = 300;
/// Hostile calls in flight at once in the per-method phases.
const PARALLEL_CASES: usize = 16;

/// Resident memory of `pid` in KiB (`VmRSS` of `/proc/<pid>/status`).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

/// Runs `case` and checks its status is one of `case.allowed`.
async fn check(case: Case) -> Result<(), String> {
    let outcome = raw::call(case.addr, &case.path, case.body).await?;
    match outcome {
        Outcome::Replied(reply) => match reply.code {
            // Reflection ends its stream on bad input: it must not have answered anything.
            Some(Code::Ok) if case.path.contains("ServerReflection") && reply.body_len > 0 => {
                Err(format!("{}: reflection answered garbage", case.name))
            }
            // An unknown method is named in the answer.
            Some(Code::Unimplemented)
                if case.allowed.contains(&Code::Unimplemented)
                    && !reply.message.contains(&case.path) =>
            {
                Err(format!(
                    "{}: UNIMPLEMENTED without naming the method: {:?}",
                    case.name, reply.message
                ))
            }
            // FerrisDB's services say what was wrong in a form its clients decode.
            Some(Code::InvalidArgument)
                if case.path.starts_with("/ferrisdb.")
                    && (reply.error_code.is_none() || reply.message.is_empty()) =>
            {
                Err(format!(
                    "{}: INVALID_ARGUMENT without a message or ferrisdb-error-code: {reply:?}",
                    case.name
                ))
            }
            Some(code) if case.allowed.contains(&code) => Ok(()),
            _ => Err(format!(
                "{}: expected one of {:?}, got HTTP {} status {:?} {:?}",
                case.name, case.allowed, reply.http, reply.code, reply.message
            )),
        },
        Outcome::Reset(e) => Err(format!("{}: reset instead of a status: {e}", case.name)),
    }
}

/// Runs `cases` with [`PARALLEL_CASES`] in flight; returns every failure.
async fn check_all(cases: Vec<Case>) -> (usize, Vec<String>) {
    let total = cases.len();
    let mut failures = Vec::new();
    let mut pending = cases.into_iter();
    let mut running = JoinSet::new();
    loop {
        while running.len() < PARALLEL_CASES {
            let Some(case) = pending.next() else { break };
            running.spawn(check(case));
        }
        match running.join_next().await {
            Some(Ok(Ok(()))) => {}
            Some(Ok(Err(e))) => failures.push(e),
            Some(Err(e)) => failures.push(format!("task: {e}")),
            None => break,
        }
    }
    (total, failures)
}

/// A normal client: commits and reads back its own keys until `stop`; counts successes and
/// records errors.
fn normal_client(
    db: Database,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut errors = Vec::new();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let key = format!("normal/{}", n % 50);
            let value = n.to_string();
            let wrote = db
                .run(|tx| {
                    let (key, value) = (key.clone(), value.clone());
                    async move { tx.set(key, value) }
                })
                .await;
            let read = db
                .run(|tx| {
                    let key = key.clone();
                    async move { tx.get(key).await }
                })
                .await;
            match (wrote, read) {
                (Ok(()), Ok(Some(v))) if v == value.as_bytes() => {
                    done.fetch_add(1, Ordering::Relaxed);
                }
                other => errors.push(format!("{key}: {other:?}")),
            }
        }
        errors
    })
}

/// Health of the whole server at `addr`.
async fn serving(addr: SocketAddr) -> bool {
    let mut client = HealthClient::new(channel(addr));
    let req = HealthCheckRequest {
        service: String::new(),
    };
    matches!(
        client.check(req).await.map(|r| r.into_inner().status),
        Ok(s) if s == ServingStatus::Serving as i32
    )
}

/// One real message just above [`MAX_MESSAGE_BYTES`] to `path`: refused by size.
async fn oversized(addr: SocketAddr, path: &str) -> Result<(), String> {
    let payload = vec![0u8; MAX_MESSAGE_BYTES + 1];
    match raw::call(addr, path, raw::frame(&payload)).await? {
        Outcome::Replied(r)
            if matches!(r.code, Some(Code::OutOfRange | Code::ResourceExhausted)) =>
        {
            Ok(())
        }
        // Refusing the stream before reading 64 MiB is fine too.
        Outcome::Reset(_) => Ok(()),
        Outcome::Replied(r) => Err(format!(
            "{path}: {} byte message got HTTP {} {:?} {:?}",
            payload.len(),
            r.http,
            r.code,
            r.message
        )),
    }
}

/// Bytes that are not HTTP/2 at all, written on a raw TCP connection that is then closed.
async fn not_grpc(addr: SocketAddr) {
    let junk: [&[u8]; 4] = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        &[0u8; 4096],
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    ];
    for bytes in junk {
        if let Ok(mut s) = TcpStream::connect(addr).await {
            let _ = s.write_all(bytes).await;
            let _ = s.shutdown().await;
        }
    }
}

/// Holds [`HELD_CONNECTIONS`] TCP connections spread over `addrs` while
/// [`CONCURRENT_CALLS`] raw calls (half valid, half garbage) run; returns how many
/// connections opened, how many valid calls succeeded, what the others got, and how many
/// valid calls had their connection reset and succeeded when sent again (as any client
/// retries a reset connection; under this flood one or two of the 150 did in some runs on
/// the 2-core CI machine, and the count is printed).
async fn flood(
    addrs: [SocketAddr; 4],
    coordinator: SocketAddr,
) -> (usize, usize, Vec<String>, usize) {
    let mut held = Vec::with_capacity(HELD_CONNECTIONS);
    for i in 0..HELD_CONNECTIONS {
        let addr = addrs[i % addrs.len()];
        if let Ok(Ok(s)) =
            tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await
        {
            held.push(s);
        }
    }
    let opened = held.len();
    let mut calls = JoinSet::new();
    for i in 0..CONCURRENT_CALLS {
        calls.spawn(async move {
            let path = "/ferrisdb.v1.TransactionCoordinator/GetReadVersion";
            if i % 2 == 0 {
                let mut resent = false;
                loop {
                    match raw::call(coordinator, path, raw::frame(&[])).await {
                        Ok(Outcome::Replied(r)) if r.code == Some(Code::Ok) => {
                            return Ok(resent);
                        }
                        Ok(Outcome::Reset(_)) if !resent => resent = true,
                        other => return Err(format!("{other:?}")),
                    }
                }
            } else {
                let _ = raw::call(coordinator, path, raw::frame(&[0x0f])).await;
                Err(String::new())
            }
        });
    }
    let (mut ok, mut failed, mut resent) = (0, Vec::new(), 0);
    while let Some(r) = calls.join_next().await {
        match r {
            Ok(Ok(again)) => {
                ok += 1;
                resent += usize::from(again);
            }
            Ok(Err(e)) if e.is_empty() => {}
            Ok(Err(e)) => failed.push(e),
            Err(e) => failed.push(format!("task: {e}")),
        }
    }
    drop(held);
    (opened, ok, failed, resent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_error_statuses_and_every_process_survives() {
    let mut cluster = TestCluster::start(1, 1).await;
    let db = Database::connect(cluster.controller.addr.to_string()).expect("controller");
    db.run(|tx| async move { tx.set("hostile/seed", "1") })
        .await
        .expect("seed commit");
    let read_version = db
        .create_transaction()
        .get_read_version()
        .await
        .expect("read version")
        .get();
    let targets = Targets {
        controller: cluster.controller.addr,
        coordinator: cluster.coordinator.addr,
        storage: cluster.storage[0].addr,
        gateway: cluster.gateway.addr,
    };
    let nodes = || {
        [
            &cluster.controller,
            &cluster.coordinator,
            &cluster.storage[0],
            &cluster.gateway,
        ]
    };
    let pids: Vec<u32> = nodes()
        .iter()
        .map(|n| n.process.as_ref().expect("running").pid())
        .collect();
    let rss_before: Vec<u64> = pids.iter().map(|&p| rss_kib(p)).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let client = normal_client(db.clone(), stop.clone(), served.clone());
    let started = Instant::now();

    let (bad_values, mut failures) = check_all(cases::bad_values(targets, read_version)).await;
    let (malformed, more) = check_all(cases::malformed(targets)).await;
    failures.extend(more);
    for (addr, path) in [
        (
            targets.controller,
            "/ferrisdb.v1.ClusterController/RegisterWorker",
        ),
        (
            targets.coordinator,
            "/ferrisdb.v1.TransactionCoordinator/Commit",
        ),
        (targets.gateway, "/ferrisdb.v1.KV/Put"),
        (targets.gateway, "/ferrisdb.v1.Transactions/Commit"),
        (targets.storage, "/ferrisdb.v1.StorageServer/Get"),
    ] {
        if let Err(e) = oversized(addr, path).await {
            failures.push(e);
        }
        // tonic does not check the content type; the garbage body is refused all the same,
        // as a bad argument naming the message it should have been.
        match raw::call_with(addr, path, "text/plain", raw::frame(&[0x0f])).await {
            Ok(Outcome::Replied(r))
                if r.code == Some(Code::InvalidArgument)
                    && r.error_code.is_some()
                    && r.message.contains("Request") => {}
            other => failures.push(format!("{path}: text/plain garbage got {other:?}")),
        }
        not_grpc(addr).await;
    }
    let (opened, flood_ok, flood_failed, flood_resent) = flood(
        [
            targets.controller,
            targets.coordinator,
            targets.storage,
            targets.gateway,
        ],
        targets.coordinator,
    )
    .await;
    let elapsed = started.elapsed();

    stop.store(true, Ordering::Relaxed);
    let client_errors = client.await.expect("normal client task");
    let served = served.load(Ordering::Relaxed);
    let rss_after: Vec<u64> = pids.iter().map(|&p| rss_kib(p)).collect();
    eprintln!(
        "hostile: {bad_values} bad-value cases, {malformed} malformed cases, {opened} held \
         connections, {flood_ok}/{} valid calls under the flood ({flood_resent} sent again after a \
         connection reset), {served} normal client rounds \
         in {elapsed:.1?}; RSS KiB before {rss_before:?} after {rss_after:?}",
        CONCURRENT_CALLS / 2
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        client_errors.is_empty(),
        "normal client errors: {client_errors:?}"
    );
    assert!(served > 0, "the normal client completed no round");
    assert_eq!(opened, HELD_CONNECTIONS);
    assert_eq!(
        flood_ok,
        CONCURRENT_CALLS / 2,
        "valid calls failed under the flood: {flood_failed:?}\n{}",
        cluster.all_logs()
    );

    for node in [
        &mut cluster.controller,
        &mut cluster.coordinator,
        &mut cluster.storage[0],
        &mut cluster.gateway,
    ] {
        let process = node.process.as_mut().expect("running");
        assert!(
            process.try_wait().is_none(),
            "a process died\n{}",
            node.logs()
        );
        assert!(serving(node.addr).await, "{} not serving", node.addr);
    }
    for ((pid, before), after) in pids.iter().zip(&rss_before).zip(&rss_after) {
        assert!(
            *after <= before + RSS_GROWTH_LIMIT_MIB * 1024,
            "pid {pid} grew from {before} KiB to {after} KiB"
        );
    }
    let logs = cluster.all_logs();
    assert!(!logs.contains("panicked"), "a process panicked:\n{logs}");
    // And a normal client is still served.
    db.run(|tx| async move { tx.set("hostile/after", Bytes::from_static(b"ok")) })
        .await
        .expect("commit after the hostile phase");
}
