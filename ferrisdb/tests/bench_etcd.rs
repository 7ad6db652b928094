//! `ferrisdb bench --store etcd`: the flag checks and a refused connection, and short runs of
//! workloads `t` and `r` against a real etcd member on 127.0.0.1. That one needs an `etcd`
//! binary on PATH (`scripts/test.sh` installs Debian's etcd-server when it can); without one
//! it fails, unless `FERRISDB_SKIP_ETCD=1`, which skips it and reports the skip.

mod common;
#[path = "../../ferrisdb-server/tests/common/skip.rs"]
mod skip;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{ferrisdb_bin, free_port_range, port_open, stderr, stdout};

#[test]
fn a_refused_etcd_endpoint_and_bad_flags_fail_fast() {
    let port = free_port_range(1);
    let endpoint = format!("127.0.0.1:{port}");
    let out = Command::new(ferrisdb_bin())
        .args(["bench", "--store", "etcd", "--etcd-endpoint", &endpoint])
        .args(["--duration", "1", "--records", "10"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!("cannot connect to etcd at {endpoint}")),
        "{err}"
    );
    for (args, message) in [
        (
            vec!["bench", "--etcd-serializable"],
            "--etcd-serializable needs --store etcd",
        ),
        (
            vec!["bench", "--workload", "t", "--records", "1"],
            "needs --records of at least 2",
        ),
        (vec!["bench", "--store", "mysql"], "unknown store"),
    ] {
        let out = Command::new(ferrisdb_bin()).args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
    }
}

/// A single etcd member in a temporary directory; killed when dropped.
struct Etcd {
    child: Child,
    port: u16,
}

impl Etcd {
    fn start(dir: &Path) -> Etcd {
        let port = free_port_range(2);
        let client = format!("http://127.0.0.1:{port}");
        let peer = format!("http://127.0.0.1:{}", port + 1);
        let log = std::fs::File::create(dir.join("etcd.log")).unwrap();
        let child = Command::new("etcd")
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--name", "t", "--listen-client-urls", &client])
            .args([
                "--advertise-client-urls",
                &client,
                "--listen-peer-urls",
                &peer,
            ])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("t={peer}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut etcd = Etcd { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !port_open(port) {
            assert!(Instant::now() < deadline, "etcd did not listen on {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Ok(Some(status)) = etcd.child.try_wait() {
            let log = std::fs::read_to_string(dir.join("etcd.log")).unwrap_or_default();
            panic!("etcd exited ({status}) although port {port} answered; its log:\n{log}");
        }
        etcd
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_json(args: &[&str], json: &Path) -> serde_json::Value {
    let out = Command::new(ferrisdb_bin())
        .args(args)
        .arg("--json")
        .arg(json)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap()
}

#[test]
fn workloads_t_and_r_run_against_a_real_etcd_member() {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join("etcd").is_file()));
    if !found {
        skip::skip_or_fail(
            "workloads_t_and_r_run_against_a_real_etcd_member",
            "FERRISDB_SKIP_ETCD",
            "no `etcd` binary on PATH (scripts/test.sh installs it; or apt-get install \
             etcd-server)",
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(tmp.path());
    let endpoint = format!("127.0.0.1:{}", etcd.port);
    let common = ["bench", "--store", "etcd", "--etcd-endpoint", &endpoint];
    let sized = ["--records", "150", "--clients", "3", "--duration", "1"];

    // Loading (two Txns: 128 + 22 puts), then two-key read-modify-writes on 150 records.
    let t = run_json(
        &[&common[..], &sized[..], &["--workload", "t", "--uniform"]].concat(),
        &tmp.path().join("t.json"),
    );
    assert_eq!(t["store"], "etcd");
    assert_eq!(t["workload"], "t");
    let rmw = &t["operations"]["read_modify_write_2"];
    assert!(rmw["ops"].as_u64().unwrap() > 0, "{t:#}");
    assert_eq!(t["total"]["errors"], 0, "{t:#}");

    // Serializable 100-key ranges over the loaded data.
    let r = run_json(
        &[
            &common[..],
            &sized[..],
            &["--workload", "r", "--no-load", "--etcd-serializable"],
        ]
        .concat(),
        &tmp.path().join("r.json"),
    );
    assert_eq!(r["store"], "etcd-serializable");
    assert!(
        r["operations"]["scan"]["ops"].as_u64().unwrap() > 0,
        "{r:#}"
    );
    assert_eq!(r["total"]["errors"], 0, "{r:#}");
    drop(etcd);
}
