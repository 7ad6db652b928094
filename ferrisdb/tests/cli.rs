//! The `ferrisdb` binary against a real local cluster started with `ferrisdb cluster up`
//! (a controller, a coordinator and three storage servers, each its own process on
//! 127.0.0.1): `exec` with binary keys, failures, piped scripts with transactions, the piped
//! shell, `status --json`, a short `bench`, a clean SIGTERM shutdown and a restart that keeps
//! the data.
//!
//! `cluster up` starts the server binaries found next to `ferrisdb` (target/debug): build them
//! first (`cargo test --workspace` does; or `cargo build --workspace --bins`).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cluster_up::{Cluster, PORTS};
use common::{ferrisdb_bin, port_open, stderr, stdout};

#[test]
fn the_cli_against_a_real_cluster() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let port_base = common::free_port_range(PORTS);
    let mut cluster = Cluster::start(&dir, port_base);

    a_second_cluster_up_on_the_same_directory_is_refused(&dir, port_base);
    exec_reads_and_writes_binary_keys(&cluster);
    exec_failures_exit_non_zero(&cluster);
    piped_scripts_run_transactions(&cluster);
    the_piped_shell_keeps_going(&cluster);
    status_shows_a_fully_replicated_cluster(&cluster);
    a_short_benchmark_reports_sane_numbers(&cluster, tmp.path());
    controller_replicas_are_added_and_removed(&cluster, tmp.path());

    cluster.exec_ok("set persist/key \"survives a restart\"");
    let epoch = |c: &Cluster| -> u64 {
        let out = c.run(&["status", "--json"], None);
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        status["epoch"].as_u64().unwrap()
    };
    let epoch_before = epoch(&cluster);
    assert!(epoch_before >= 1);
    let status = cluster.stop();
    assert!(status.success(), "cluster up exited with {status}");
    for port in port_base..port_base + PORTS {
        assert!(
            !port_open(port),
            "port {port} still accepts connections after `cluster up` stopped"
        );
    }

    // Fewer controllers than the directory holds would leave the group without a quorum.
    let out = Command::new(ferrisdb_bin())
        .args(["cluster", "up", "--controllers", "1", "--dir"])
        .arg(&dir)
        .args(["--port-base", &port_base.to_string()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("holds controller replicas beyond --controllers 1"),
        "{}",
        stderr(&out)
    );

    let cluster = Cluster::start(&dir, port_base);
    assert_eq!(cluster.exec_ok("get persist/key"), "survives a restart\n");
    // The restarted coordinator registers in the background: a new generation soon.
    let deadline = Instant::now() + Duration::from_secs(15);
    while epoch(&cluster) <= epoch_before {
        assert!(
            Instant::now() < deadline,
            "a restarted coordinator did not begin a new generation"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(cluster.exec_ok("get \\x00bin\\xff"), "v a\\x01\n");
}

/// `cluster controllers add|list|remove` with a fourth replica started with `--join`; the
/// cluster file follows; bad addresses fail with a clear error and a non-zero exit.
fn controller_replicas_are_added_and_removed(c: &Cluster, tmp: &Path) {
    let port = common::free_port_range(1);
    let addr = format!("127.0.0.1:{port}");
    let bin = common::ferrisdb_bin()
        .parent()
        .unwrap()
        .join("ferrisdb-controller");
    let log = std::fs::File::create(tmp.join("extra-controller.log")).unwrap();
    /// Kills the extra replica even when an assertion fails first.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _extra = KillOnDrop(
        Command::new(bin)
            .args(["--join", "--listen", &addr, "--data-dir"])
            .arg(tmp.join("extra-controller"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !port_open(port) {
        assert!(
            Instant::now() < deadline,
            "the extra controller did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let file = || std::fs::read_to_string(c.cluster_file()).unwrap();

    let out = c.run(&["cluster", "controllers", "add", &addr], None);
    assert!(out.status.success(), "add: {}", common::stderr(&out));
    assert!(
        common::stdout(&out).contains(&addr),
        "{}",
        common::stdout(&out)
    );
    assert!(file().contains(&addr), "{}", file());
    let out = c.run(&["cluster", "controllers", "list"], None);
    let listed = common::stdout(&out);
    assert!(out.status.success(), "list: {}", common::stderr(&out));
    assert_eq!(listed.lines().count(), 4, "{listed}");
    assert_eq!(listed.matches(" leader ").count(), 1, "{listed}");
    let out = c.run(&["status", "--json"], None);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        status["controllers"].as_array().unwrap().len(),
        4,
        "{status:#}\nlist:\n{listed}"
    );

    let out = c.run(&["cluster", "controllers", "add", &addr], None);
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("already a member"),
        "{}",
        common::stderr(&out)
    );
    let out = c.run(&["cluster", "controllers", "remove", &addr], None);
    assert!(out.status.success(), "remove: {}", common::stderr(&out));
    assert!(!file().contains(&addr), "{}", file());
    let out = c.run(&["cluster", "controllers", "remove", "127.0.0.1:1"], None);
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("is not a controller replica"),
        "{}",
        common::stderr(&out)
    );
    let out = c.run(&["cluster", "controllers", "add", "127.0.0.1:1"], None);
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("no controller replica answers at 127.0.0.1:1"),
        "{}",
        common::stderr(&out)
    );
    let out = c.run(&["cluster", "controllers", "add", "not an address"], None);
    assert!(!out.status.success());
}

/// A second `cluster up` on a running cluster's directory exits at once with an error naming
/// the lock, instead of starting a second set of processes on the same files.
fn a_second_cluster_up_on_the_same_directory_is_refused(dir: &Path, port_base: u16) {
    let mut second = Command::new(ferrisdb_bin())
        .args(["cluster", "up", "--dir"])
        .arg(dir)
        .args(["--port-base", &port_base.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a second `ferrisdb cluster up`");
    let deadline = Instant::now() + Duration::from_secs(20);
    while second
        .try_wait()
        .expect("poll the second cluster up")
        .is_none()
    {
        if Instant::now() > deadline {
            let _ = second.kill();
            panic!("a second `cluster up` on the same directory kept running");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = second.wait_with_output().expect("second cluster up output");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is locked"), "{stderr}");
}

fn exec_reads_and_writes_binary_keys(c: &Cluster) {
    c.exec_ok(r#"set \x00bin\xff "v a\x01"; set r\x00a 1; set r\x00b 2; set r\x01 3"#);
    assert_eq!(c.exec_ok(r"get \x00bin\xff"), "v a\\x01\n");
    assert_eq!(c.exec_ok("set k v; get k"), "v\n");
    assert_eq!(
        c.exec_ok(r"getrange r\x00 r\x01"),
        "r\\x00a\t1\nr\\x00b\t2\n"
    );
    assert_eq!(c.exec_ok(r#"getrange r "" 1 reverse"#), "r\\x01\t3\n");
    assert_eq!(c.exec_ok("clear k; get k"), "(not found)\n");
    c.exec_ok(r"clearrange r\x00 r\x01");
    assert_eq!(c.exec_ok(r"getrange r r\xff"), "r\\x01\t3\n");
}

fn exec_failures_exit_non_zero(c: &Cluster) {
    let out = c.run(&["exec", "get"], None);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("usage: get KEY"), "{}", stderr(&out));

    let out = c.run(&["exec", "set before 1; commit; set after 1"], None);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("command 2 (`commit`) failed"), "{err}");
    assert!(err.contains("no transaction to commit"), "{err}");
    // Commands before the failure ran, commands after it did not.
    assert_eq!(c.exec_ok("get before; get after"), "1\n(not found)\n");

    let big_key = "k".repeat(20_000);
    let out = c.run(&["exec", &format!("set {big_key} v")], None);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("key"), "{}", stderr(&out));

    let out = Command::new(ferrisdb_bin())
        .args([
            "--cluster-file",
            "/nonexistent/ferrisdb.cluster",
            "exec",
            "get a",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cluster file"), "{}", stderr(&out));
}

fn piped_scripts_run_transactions(c: &Cluster) {
    let script = "# a transaction\nbegin\nset tx/a 1\nset tx/b 2\nget tx/a\ncommit\n\
                  begin; set tx/c 3; rollback\nget tx/c\n";
    let out = c.run(&["exec"], Some(script));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "1\n(not found)\n");
    assert_eq!(c.exec_ok("getrange tx/ tx0"), "tx/a\t1\ntx/b\t2\n");

    // A script that ends inside a transaction fails and writes nothing.
    let out = c.run(&["exec"], Some("begin\nset tx/d 4\n"));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("rolled back"), "{}", stderr(&out));
    assert_eq!(c.exec_ok("get tx/d"), "(not found)\n");
}

fn the_piped_shell_keeps_going(c: &Cluster) {
    let out = c.run(
        &["shell"],
        Some(
            "set sh/1 one\nnot-a-command\nget sh/1\nbegin\nset sh/2 two\ncommit\nexit\nget sh/1\n",
        ),
    );
    // One command failed: the shell went on but reports it in its exit code.
    assert!(!out.status.success());
    let text = stdout(&out);
    assert!(text.contains("\none\n"), "{text}");
    assert_eq!(text.matches("Committed (version").count(), 2, "{text}");
    assert!(stderr(&out).contains("unknown command"), "{}", stderr(&out));
    assert_eq!(c.exec_ok("get sh/2"), "two\n");
}

fn status_shows_a_fully_replicated_cluster(c: &Cluster) {
    // Health and statistics come with heartbeats: allow the first ones to arrive.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let out = c.run(&["status", "--json"], None);
        assert!(out.status.success(), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status is JSON");
        let reported = v["storage_servers"].as_array().is_some_and(|servers| {
            servers
                .iter()
                .all(|s| s["applied_version"].as_u64().is_some())
        });
        let reported = reported && v["coordinator"]["log_bytes"].as_u64().is_some();
        if (v["healthy"] == true && reported) || Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(status["healthy"], true, "{status:#}");
    let storage = status["storage_servers"].as_array().unwrap();
    assert_eq!(storage.len(), 3, "{status:#}");
    assert!(storage.iter().all(|s| s["healthy"] == true));
    assert!(
        storage
            .iter()
            .all(|s| s["applied_version"].as_u64().is_some()),
        "{status:#}"
    );
    let shards = status["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 3);
    assert!(
        shards
            .iter()
            .all(|s| s["fully_replicated"] == true && s["replicas"].as_array().unwrap().len() == 2)
    );
    assert_eq!(status["replication"], 2);
    assert_eq!(status["fault_tolerance"], 1);
    assert!(status["latest_version"].as_u64().unwrap() > 0);
    let roles: Vec<&str> = status["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["role"].as_str())
        .collect();
    assert_eq!(
        roles,
        [
            "controller",
            "controller",
            "controller",
            "coordinator",
            "coordinator",
            "gateway",
            "storage",
            "storage",
            "storage",
            "log",
            "log",
            "log"
        ]
    );
    // Two coordinators: one serves the generation, the other stands by.
    let standbys: Vec<bool> = status["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["role"] == "coordinator")
        .map(|p| p["standby"] == true)
        .collect();
    assert_eq!(standbys.iter().filter(|s| **s).count(), 1, "{status:#}");
    assert_eq!(standbys.len(), 2, "{status:#}");
    // `cluster up` runs three log servers, two of them in the generation, which accepts
    // commits (its storage servers may still be catching up to its first version).
    assert!(status["generation"].as_u64().unwrap() >= 1, "{status:#}");
    let in_generation = status["log_servers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["in_generation"] == true)
        .count();
    assert_eq!(in_generation, 2, "{status:#}");
    assert!(
        ["accepting commits", "fully recovered"]
            .contains(&status["recovery_state"].as_str().unwrap()),
        "{status:#}"
    );
    let mut controller_roles: Vec<&str> = status["controllers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["role"].as_str())
        .collect();
    controller_roles.sort_unstable();
    assert_eq!(
        controller_roles,
        ["follower", "follower", "leader"],
        "{status:#}"
    );
    // `cluster up` adds the cluster id to the cluster file once the group created it.
    let named = format!("{}@", status["cluster_id"].as_str().unwrap());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !std::fs::read_to_string(c.cluster_file())
        .unwrap()
        .contains(&named)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the cluster file does not name the cluster"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        status["coordinator"]["log_bytes"].as_u64().is_some(),
        "{status:#}"
    );

    let text = c.run(&["cluster", "status"], None);
    assert!(text.status.success());
    let text = stdout(&text);
    assert!(
        text.contains("HEALTHY") && text.contains("3/3 shards fully replicated"),
        "{text}"
    );
}

fn a_short_benchmark_reports_sane_numbers(c: &Cluster, tmp: &Path) {
    let json = tmp.join("bench.json");
    let plot = tmp.join("bench.svg");
    let out = c.run(
        &[
            "bench",
            "--workload",
            "a",
            "--duration",
            "2",
            "--clients",
            "4",
            "--records",
            "200",
            "--json",
            json.to_str().unwrap(),
            "--plot",
            plot.to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("total"), "{}", stdout(&out));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(r["workload"], "a");
    assert_eq!(r["store"], "ferrisdb");
    assert_eq!(r["records"], 200);
    assert_eq!(r["clients"], 4);
    assert!(r["load_seconds"].as_f64().is_some());
    let total = &r["total"];
    let ops = total["ops"].as_u64().unwrap();
    assert!(ops > 0, "{r:#}");
    assert_eq!(total["errors"], 0);
    assert!(total["throughput"].as_f64().unwrap() > 0.0);
    let (p50, p99, max) = (
        total["p50_us"].as_u64().unwrap(),
        total["p99_us"].as_u64().unwrap(),
        total["max_us"].as_u64().unwrap(),
    );
    assert!(0 < p50 && p50 <= p99 && p99 <= max, "{total:#}");
    let read = r["operations"]["read"]["ops"].as_u64().unwrap();
    let update = r["operations"]["update"]["ops"].as_u64().unwrap();
    assert_eq!(read + update, ops);
    assert!(read > 0 && update > 0, "{r:#}");
    let rate = total["abort_rate"].as_f64().unwrap();
    assert!((0.0..1.0).contains(&rate));
    assert_eq!(r["timeline"].as_array().unwrap().len(), 2, "{r:#}");
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("<polyline"));
    // The loaded records are really there.
    assert_eq!(
        c.exec_ok("getrange bench/ bench0 1000").lines().count(),
        200
    );
    // --check reads them all back, and fails once one is gone (workload C only reads, so
    // nothing writes it again).
    let check = [
        "bench",
        "--workload",
        "c",
        "--no-load",
        "--duration",
        "1",
        "--records",
        "200",
        "--check",
    ];
    let out = c.run(&check, None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("checked 200 records: every one present"),
        "{}",
        stderr(&out)
    );
    c.exec_ok("clear bench/0000000142");
    let out = c.run(&check, None);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("record 142 is missing"),
        "{}",
        stderr(&out)
    );

    // `bench engine` still parses as a subcommand of `bench`.
    let out = Command::new(ferrisdb_bin())
        .args([
            "bench",
            "engine",
            "--num",
            "200",
            "--workloads",
            "fillseq,readrandom",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("readrandom"), "{}", stdout(&out));
}

#[test]
fn bench_engine_rejects_an_empty_key_set() {
    // Random workloads pick keys modulo --num: zero used to panic the writer thread.
    let out = Command::new(ferrisdb_bin())
        .args([
            "bench",
            "engine",
            "--num",
            "0",
            "--workloads",
            "readwhilewriting",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("--num must be at least 1"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bench_rejects_out_of_range_flags_before_connecting() {
    // The run's deadline is now + --duration: u64::MAX seconds used to overflow the instant.
    let out = Command::new(ferrisdb_bin())
        .args(["bench", "--duration", &u64::MAX.to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("--duration must be at most"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // Sizes past the limits used to overflow `key_size + value_size` while loading.
    let max = usize::MAX.to_string();
    for args in [
        vec!["bench", "--key-size", &max, "--value-size", "1"],
        vec!["bench", "--records", "18446744073709551615", "--no-load"],
    ] {
        let out = Command::new(ferrisdb_bin()).args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains("must be at most"), "{args:?}: {err}");
    }
}

#[test]
fn every_command_has_help_with_examples() {
    for args in [
        vec!["--help"],
        vec!["exec", "--help"],
        vec!["shell", "--help"],
        vec!["status", "--help"],
        vec!["bench", "--help"],
        vec!["bench", "engine", "--help"],
        vec!["cluster", "up", "--help"],
        vec!["cluster", "status", "--help"],
    ] {
        let out = Command::new(ferrisdb_bin()).args(&args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        let text = stdout(&out);
        assert!(text.contains("Example"), "{args:?} has no example:\n{text}");
    }
    let out = Command::new(ferrisdb_bin())
        .args(["bench", "--workload", "z"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unknown workload"),
        "{}",
        stderr(&out)
    );
}
