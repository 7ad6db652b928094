//! A role that can no longer do its job says so and gets replaced, with no manual step: real
//! clusters under `ferrisdb cluster up` (the supervisor that restarts what exits), driven into
//! the conditions that used to hide behind a `HEALTHY` status.
//!
//! Each test checks the same three things: while the condition lasts, commits fail with an
//! error that says what is wrong; `grpc.health.v1` and `ferrisdb status` report the process
//! unhealthy with the reason within seconds; once the resource is usable again the cluster
//! commits again (after the process exited and `cluster up` restarted it, where a restart is
//! the cure) and `status` is healthy.
//!
//! - **Out of connections**: every process under an open-file limit of 256, the coordinator
//!   flooded with idle connections.
//! - **Disks full**: the log servers' and a storage server's data directories on small tmpfs
//!   mounts that the test fills (a log server of the current generation and the storage
//!   engine each fail for good; the transaction system recovers onto the other log servers);
//!   needs `CAP_SYS_ADMIN` to mount (without it the test fails unless
//!   `FERRISDB_SKIP_MOUNT_TESTS=1`).

mod common;

#[path = "../../ferrisdb-server/tests/common/skip.rs"]
mod skip;
#[path = "../../ferrisdb-server/tests/common/tmpfs.rs"]
mod tmpfs;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::cluster_up::{Cluster, PORTS, log_port_offset};
use serde_json::Value;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient as Health;

/// Open-file limit (soft and hard) of every process in the connection test.
const OPEN_FILES: u64 = 256;
/// Idle connections opened against the coordinator: more than the limit lets it serve.
const IDLE_CONNECTIONS: usize = 400;
/// How long a condition may take to show (or to clear) before a test fails.
const WITHIN: Duration = Duration::from_secs(30);

/// `ferrisdb status --json` as JSON (whatever its exit code: a degraded cluster exits 1).
fn status(c: &Cluster) -> Value {
    let out = c.run(&["--timeout", "3", "status", "--json"], None);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "status --json is not JSON ({e}): {}\n{}",
            common::stdout(&out),
            common::stderr(&out)
        )
    })
}

/// The process at `address` in a status report.
fn process_at<'a>(report: &'a Value, address: &str) -> &'a Value {
    report["processes"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["address"] == address))
        .unwrap_or_else(|| panic!("no process at {address} in {report}"))
}

/// Polls `status --json` until `done` holds (panics after [`WITHIN`]); returns that report.
fn wait_for_status(c: &Cluster, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WITHIN;
    loop {
        let report = status(c);
        if done(&report) {
            return report;
        }
        assert!(
            Instant::now() < deadline,
            "status never showed {what}: {report:#}\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs `exec SCRIPT` until it succeeds (panics after [`WITHIN`]).
fn wait_for_commit(c: &Cluster, script: &str) {
    let deadline = Instant::now() + WITHIN;
    loop {
        let out = c.run(&["--timeout", "3", "exec", script], None);
        if out.status.success() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{script:?} still fails: {}\n{}",
            common::stderr(&out),
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The health of the whole process behind `client` (`None` if the call failed).
async fn serving(client: &mut Health<tonic::transport::Channel>) -> Option<ServingStatus> {
    let reply = client.check(HealthCheckRequest::default()).await.ok()?;
    ServingStatus::try_from(reply.into_inner().status).ok()
}

/// A health client on its own connection to `port`, opened now.
async fn health_client(port: u16) -> Health<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect for health");
    Health::new(channel)
}

/// Polls health over `client` until it is `want` (panics after [`WITHIN`], with the logs).
async fn wait_for_health(
    c: &Cluster,
    client: &mut Health<tonic::transport::Channel>,
    want: ServingStatus,
) {
    let deadline = Instant::now() + WITHIN;
    loop {
        let got = serving(client).await;
        if got == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "health stayed {got:?}, want {want:?}\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn a_coordinator_out_of_connections_says_so_and_serves_again_once_they_close() {
    let tmp = tempfile::tempdir().unwrap();
    let port_base = common::free_port_range(PORTS);
    let c = Cluster::start_with(&tmp.path().join("data"), port_base, Some(OPEN_FILES));
    c.exec_ok("set before 1");
    // The coordinator serving the generation (the other stands by).
    let coordinator_addr = status(&c)["coordinator"]["address"]
        .as_str()
        .expect("a serving coordinator")
        .to_owned();
    let coordinator_port: u16 = coordinator_addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("host:port");
    let rt = runtime();
    // Opened before the flood: a monitoring connection keeps working and sees the state.
    let mut health = rt.block_on(health_client(coordinator_port));
    assert_eq!(
        rt.block_on(serving(&mut health)),
        Some(ServingStatus::Serving)
    );

    let idle: Vec<TcpStream> = (0..IDLE_CONNECTIONS)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", coordinator_port)).ok())
        .collect();
    assert_eq!(
        idle.len(),
        IDLE_CONNECTIONS,
        "the kernel took every connection"
    );

    // A new client is refused with an error naming the limit; nothing hangs.
    let deadline = Instant::now() + WITHIN;
    let refusal = loop {
        let out = c.run(&["--timeout", "3", "exec", "set during 1"], None);
        let err = common::stderr(&out);
        if !out.status.success() && err.contains("connection limit") {
            break err;
        }
        assert!(
            Instant::now() < deadline,
            "no clear refusal: exit {:?}, stderr {err}\n{}",
            out.status,
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(refusal.contains("ulimit -n"), "{refusal}");

    // Health (over the connection opened before) and status say so, with the reason.
    rt.block_on(wait_for_health(&c, &mut health, ServingStatus::NotServing));
    let report = wait_for_status(&c, "the coordinator unhealthy", |r| {
        process_at(r, &coordinator_addr)["healthy"] == false
    });
    assert_eq!(report["healthy"], false);
    let reason = process_at(&report, &coordinator_addr)["unhealthy_reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        reason.contains("connection limit") && reason.contains(&OPEN_FILES.to_string()),
        "{reason}"
    );

    // The connections close: the same coordinator serves again (no restart needed).
    drop(idle);
    wait_for_commit(&c, "set after 1");
    rt.block_on(wait_for_health(&c, &mut health, ServingStatus::Serving));
    wait_for_status(&c, "a healthy cluster", |r| r["healthy"] == true);
    assert_eq!(c.exec_ok("get before; get after"), "1\n1\n");
    let supervisor = std::fs::read_to_string(c.dir.join("cluster-up.log")).unwrap_or_default();
    assert!(
        !supervisor.contains("restarting coordinator"),
        "the coordinator was restarted: {supervisor}"
    );
}

#[test]
fn full_disks_make_the_log_and_an_engine_fail_loudly_and_recover_after_a_supervised_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mounts = ["log-0", "log-1", "log-2", "storage-0"]
        .map(|name| tmpfs::Tmpfs::mount(&dir.join(name), 16));
    let [log_fs_0, log_fs_1, log_fs_2, storage_fs] = match mounts {
        [Ok(a), Ok(b), Ok(c), Ok(d)] => [a, b, c, d],
        mounts => {
            let why = mounts.into_iter().find_map(|m| m.err()).unwrap_or_default();
            skip::skip_or_fail(
                "full_disks_make_the_log_and_an_engine_fail_loudly_and_recover_after_a_supervised_restart",
                "FERRISDB_SKIP_MOUNT_TESTS",
                &format!("cannot mount a tmpfs ({why}); disk-fault tests need CAP_SYS_ADMIN"),
            );
            return;
        }
    };
    let port_base = common::free_port_range(PORTS);
    let c = Cluster::start(&dir, port_base);
    c.exec_ok("set acknowledged 1");
    let rt = runtime();

    // storage-0's disk fills: its next sync fails and its engine stops for good. Keys under
    // three prefixes land in all three shards, so storage-0 holds some of them.
    let storage_filler = storage_fs.fill();
    let mut storage_health = rt.block_on(health_client(port_base + 2));
    let prefixes = ["0", "f", "\\xc0"];
    for prefix in prefixes {
        let script: String = (0..64)
            .map(|i| format!("set {prefix}/{i:02} {}\n", "x".repeat(4000)))
            .collect();
        let out = c.run(&["exec"], Some(&script));
        assert!(out.status.success(), "{}", common::stderr(&out));
    }
    rt.block_on(wait_for_health(
        &c,
        &mut storage_health,
        ServingStatus::NotServing,
    ));
    let report = wait_for_status(&c, "storage-0 unhealthy", |r| {
        r["processes"].as_array().is_some_and(|ps| {
            ps.iter().any(|p| {
                p["address"] == format!("127.0.0.1:{}", port_base + 2) && p["healthy"] == false
            })
        })
    });
    let s0 = report["processes"]
        .as_array()
        .and_then(|ps| {
            ps.iter()
                .find(|p| p["address"] == format!("127.0.0.1:{}", port_base + 2))
        })
        .expect("storage-0 listed");
    let reason = s0["unhealthy_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("storage engine") && reason.contains("No space left on device"),
        "{reason}"
    );

    // The disk of a log server of the current generation fills: its next append fails, the
    // generation with it, and the controller recovers onto the other two log servers. Commits
    // may be refused while it does (with a retryable error); every acknowledged one survives.
    let report = status(&c);
    let generation = report["generation"].as_u64().unwrap();
    let victim = report["log_servers"]
        .as_array()
        .and_then(|logs| logs.iter().find(|l| l["in_generation"] == true))
        .expect("a log server of the generation")
        .clone();
    let victim_port: u16 = victim["address"]
        .as_str()
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .expect("a port");
    let index = (0..3)
        .find(|i| port_base + log_port_offset(*i) == victim_port)
        .expect("one of the three log servers");
    let victim_fs = [&log_fs_0, &log_fs_1, &log_fs_2][usize::from(index)];
    let log_filler = victim_fs.fill();
    let mut log_health = rt.block_on(health_client(victim_port));
    let mut acknowledged = vec!["acknowledged".to_string()];
    let deadline = Instant::now() + WITHIN;
    loop {
        let key = format!("during/{}", acknowledged.len());
        let out = c.run(&["--timeout", "5", "exec", &format!("set {key} 1")], None);
        if out.status.success() {
            acknowledged.push(key);
        }
        let r = status(&c);
        if r["generation"].as_u64().unwrap_or(0) > generation && acknowledged.len() > 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery onto the other log servers: {r:#}\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    rt.block_on(wait_for_health(
        &c,
        &mut log_health,
        ServingStatus::NotServing,
    ));
    let report = wait_for_status(&c, "the full log server unhealthy", |r| {
        r["processes"].as_array().is_some_and(|ps| {
            ps.iter()
                .any(|p| p["address"] == victim["address"] && p["healthy"] == false)
        })
    });
    let reason = report["processes"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["address"] == victim["address"]))
        .and_then(|p| p["unhealthy_reason"].as_str())
        .unwrap_or_default()
        .to_owned();
    assert!(
        reason.contains("commit log") && reason.contains("No space left on device"),
        "{reason}"
    );
    let in_generation: Vec<&Value> = report["log_servers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["in_generation"] == true)
        .collect();
    assert_eq!(in_generation.len(), 2, "{report:#}");
    assert!(
        in_generation
            .iter()
            .all(|l| l["address"] != victim["address"]),
        "the full log server left the generation: {report:#}"
    );

    // Space returns: both exit, `cluster up` restarts them, they recover from their files.
    std::fs::remove_file(&storage_filler).expect("free storage-0's disk");
    std::fs::remove_file(&log_filler).expect("free the log server's disk");
    wait_for_commit(&c, "set recovered 1");
    wait_for_status(&c, "a healthy cluster", |r| r["healthy"] == true);
    for key in acknowledged
        .iter()
        .chain(std::iter::once(&"recovered".to_string()))
    {
        assert_eq!(c.exec_ok(&format!("get {key}")), "1\n", "{key} was lost");
    }
    for prefix in prefixes {
        let pairs = c.exec_ok(&format!("getrange {prefix}/ {prefix}0"));
        assert_eq!(pairs.lines().count(), 64, "{prefix}/ keys lost");
    }
    let supervisor = std::fs::read_to_string(dir.join("cluster-up.log")).unwrap_or_default();
    for name in [format!("log-{index}"), "storage-0".to_string()] {
        assert!(
            supervisor.contains(&format!("restarting {name}")),
            "{name} was not restarted by its supervisor: {supervisor}"
        );
    }
}
