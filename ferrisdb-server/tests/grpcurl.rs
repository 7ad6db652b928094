//! The README's grpcurl examples, run verbatim (only the addresses changed) with the real
//! `grpcurl` binary against a real cluster: reflection (`list`, `describe`), the KV API with
//! JSON and text payloads, health checks, and `list` + health on the controller and a storage
//! server.
//!
//! `grpcurl` is looked up on `PATH`, then in `.ci-tools/venv/bin` (where `scripts/test.sh`
//! installs it). Without it the test fails, unless `FERRISDB_SKIP_GRPCURL=1`.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::cluster::TestCluster;

/// The addresses the README uses (`ferrisdb cluster up` defaults).
const README_CONTROLLER: &str = "127.0.0.1:4500";
const README_GATEWAY: &str = "127.0.0.1:4501";
const README_STORAGE: &str = "127.0.0.1:4502";

/// The title of the README section holding the examples.
const SECTION: &str = "## Talking gRPC with grpcurl";

/// One command line and what it must print.
struct Example {
    cmd: &'static str,
    /// Whether grpcurl must exit 0.
    ok: bool,
    /// Substrings of stdout (or stderr for failures).
    shows: &'static [&'static str],
    /// Substrings that must not appear.
    hides: &'static [&'static str],
}

const fn ok(cmd: &'static str, shows: &'static [&'static str]) -> Example {
    Example {
        cmd,
        ok: true,
        shows,
        hides: &[],
    }
}

const GET_HELLO: &str =
    r#"grpcurl -plaintext -d '{"key":"aGVsbG8="}' 127.0.0.1:4501 ferrisdb.v1.KV/Get"#;
const CAS_HELLO: &str = r#"grpcurl -plaintext -d '{"compare":[{"key":"aGVsbG8=","target":"VALUE_EQUALS","value":"d29ybGQ="}],"success":[{"put":{"key":"aGVsbG8=","value":"dGhlcmU="}}],"failure":[{"get":{"key":"aGVsbG8="}}]}' 127.0.0.1:4501 ferrisdb.v1.KV/Txn"#;
const CAS_HELLO_DEFAULTS: &str = r#"grpcurl -plaintext -emit-defaults -d '{"compare":[{"key":"aGVsbG8=","target":"VALUE_EQUALS","value":"d29ybGQ="}],"success":[{"put":{"key":"aGVsbG8=","value":"dGhlcmU="}}],"failure":[{"get":{"key":"aGVsbG8="}}]}' 127.0.0.1:4501 ferrisdb.v1.KV/Txn"#;

/// The examples in the order they run (each appears in the README section).
const EXAMPLES: &[Example] = &[
    Example {
        cmd: "grpcurl -plaintext 127.0.0.1:4501 list",
        ok: true,
        shows: &[
            "ferrisdb.v1.KV\n",
            "ferrisdb.v1.Transactions\n",
            "grpc.health.v1.Health\n",
            "grpc.reflection.v1alpha.ServerReflection\n",
        ],
        // The gateway is stateless: the transaction system's own API lives elsewhere.
        hides: &["ferrisdb.v1.TransactionCoordinator\n"],
    },
    ok(
        "grpcurl -plaintext 127.0.0.1:4501 describe ferrisdb.v1.KV",
        &[
            "service KV {",
            "rpc Range ( .ferrisdb.v1.RangeRequest ) returns ( stream .ferrisdb.v1.KeyValue );",
            "rpc Txn ( .ferrisdb.v1.TxnRequest ) returns ( .ferrisdb.v1.TxnResponse );",
        ],
    ),
    ok(
        r#"grpcurl -plaintext -d '{"key":"aGVsbG8=","value":"d29ybGQ="}' 127.0.0.1:4501 ferrisdb.v1.KV/Put"#,
        &[r#""version": ""#],
    ),
    ok(GET_HELLO, &[r#""found": true"#, r#""value": "d29ybGQ=""#]),
    ok(
        r#"grpcurl -plaintext -d '{}' 127.0.0.1:4501 ferrisdb.v1.KV/Range"#,
        &[r#""key": "aGVsbG8=""#, r#""value": "d29ybGQ=""#],
    ),
    ok(CAS_HELLO, &[r#""succeeded": true"#, r#""put": {"#]),
    Example {
        cmd: CAS_HELLO_DEFAULTS,
        ok: true,
        shows: &[r#""succeeded": false"#, r#""value": "dGhlcmU=""#],
        hides: &[r#""succeeded": true"#],
    },
    ok(
        r#"grpcurl -plaintext -format text -d 'key: "counter" value: "1"' 127.0.0.1:4501 ferrisdb.v1.KV/Put"#,
        &["version: "],
    ),
    ok(
        r#"grpcurl -plaintext -format text -d 'key: "counter"' 127.0.0.1:4501 ferrisdb.v1.KV/Get"#,
        &["found: true", r#"value: "1""#],
    ),
    ok(
        r#"grpcurl -plaintext -format text -d 'compare { key: "counter" target: VALUE_EQUALS value: "1" } success { put { key: "counter" value: "2" } } failure { get { key: "counter" } }' 127.0.0.1:4501 ferrisdb.v1.KV/Txn"#,
        &["succeeded: true"],
    ),
    ok(
        r#"grpcurl -plaintext -format text -d 'begin: "a" end: "z"' 127.0.0.1:4501 ferrisdb.v1.KV/Range"#,
        &[
            r#"key: "counter""#,
            r#"value: "2""#,
            r#"key: "hello""#,
            r#"value: "there""#,
        ],
    ),
    ok(
        r#"grpcurl -plaintext -d '{"begin":"aA==","end":"aQ==","limit":10,"reverse":true}' 127.0.0.1:4501 ferrisdb.v1.KV/Range"#,
        &[r#""key": "aGVsbG8=""#],
    ),
    ok(
        r#"grpcurl -plaintext -d '{"key":"Y291bnRlcg=="}' 127.0.0.1:4501 ferrisdb.v1.KV/Delete"#,
        &[r#""version": ""#],
    ),
    ok(
        r#"grpcurl -plaintext -d '{"begin":"aA==","end":"aQ=="}' 127.0.0.1:4501 ferrisdb.v1.KV/DeleteRange"#,
        &[r#""version": ""#],
    ),
    Example {
        cmd: GET_HELLO,
        ok: true,
        shows: &[r#""version": ""#],
        hides: &["found"],
    },
    ok(
        "grpcurl -plaintext 127.0.0.1:4501 grpc.health.v1.Health/Check",
        &[r#""status": "SERVING""#],
    ),
    ok(
        r#"grpcurl -plaintext -d '{"service":"ferrisdb.v1.KV"}' 127.0.0.1:4501 grpc.health.v1.Health/Check"#,
        &[r#""status": "SERVING""#],
    ),
    Example {
        cmd: r#"grpcurl -plaintext -d '{"begin":"eg==","end":"YQ=="}' 127.0.0.1:4501 ferrisdb.v1.KV/Range"#,
        ok: false,
        shows: &["Code: InvalidArgument", "invalid range"],
        hides: &[],
    },
    ok(
        "grpcurl -plaintext 127.0.0.1:4501 ferrisdb.v1.Transactions/Begin",
        &[r#""readVersion": ""#],
    ),
    ok(
        r#"grpcurl -plaintext -d '{"mutations":[{"set":{"key":"aGVsbG8=","value":"d29ybGQ="}}]}' 127.0.0.1:4501 ferrisdb.v1.Transactions/Commit"#,
        &[r#""commitVersion": ""#, r#""versionstamp": ""#],
    ),
    Example {
        cmd: "grpcurl -plaintext 127.0.0.1:4500 list",
        ok: true,
        shows: &["ferrisdb.v1.ClusterController\n", "grpc.health.v1.Health\n"],
        hides: &["ferrisdb.v1.KV\n"],
    },
    ok(
        "grpcurl -plaintext 127.0.0.1:4500 grpc.health.v1.Health/Check",
        &[r#""status": "SERVING""#],
    ),
    Example {
        cmd: "grpcurl -plaintext 127.0.0.1:4502 list",
        ok: true,
        shows: &["ferrisdb.v1.StorageServer\n", "grpc.health.v1.Health\n"],
        hides: &["ferrisdb.v1.KV\n"],
    },
    ok(
        "grpcurl -plaintext 127.0.0.1:4502 grpc.health.v1.Health/Check",
        &[r#""status": "SERVING""#],
    ),
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the server crate lives in the workspace")
        .to_path_buf()
}

/// `grpcurl` on PATH, else the one `scripts/test.sh` installs.
fn find_grpcurl() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join("grpcurl"));
    let local = workspace_root().join(".ci-tools/venv/bin/grpcurl");
    on_path.chain([local]).find(|p| p.is_file())
}

/// The grpcurl command lines of the README section.
fn readme_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("README.md");
    let start = readme
        .find(SECTION)
        .unwrap_or_else(|| panic!("README.md has no {SECTION:?} section"));
    let section = &readme[start + SECTION.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    section
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("grpcurl "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_readme_shows_exactly_the_tested_commands() {
    let readme: BTreeSet<String> = readme_commands().into_iter().collect();
    let tested: BTreeSet<String> = EXAMPLES.iter().map(|e| e.cmd.to_owned()).collect();
    let untested: Vec<_> = readme.difference(&tested).collect();
    let missing: Vec<_> = tested.difference(&readme).collect();
    assert!(
        untested.is_empty() && missing.is_empty(),
        "README commands not tested: {untested:#?}\ntested commands not in the README: {missing:#?}"
    );
}

/// `cmd` with the README's addresses replaced by the test cluster's.
fn localize(cmd: &str, cluster: &TestCluster) -> String {
    let storage = cluster.storage[0].addr.to_string();
    let controller = cluster.controller.addr.to_string();
    let gateway = cluster.gateway.addr.to_string();
    cmd.split(' ')
        .map(|token| match token {
            README_CONTROLLER => controller.as_str(),
            README_GATEWAY => gateway.as_str(),
            README_STORAGE => storage.as_str(),
            other => other,
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` with `sh -c` (so quoting works exactly as in a terminal), `grpcurl_dir` first on
/// PATH, killing it after 30 s.
fn run(cmd: &str, grpcurl_dir: &Path) -> Output {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::iter::once(grpcurl_dir.to_path_buf()).chain(std::env::split_paths(&path));
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("PATH", std::env::join_paths(dirs).expect("a valid PATH"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sh");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{cmd} did not finish within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("collect output")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_grpcurl_examples_work_against_a_real_cluster() {
    let Some(grpcurl) = find_grpcurl() else {
        common::skip::skip_or_fail(
            "readme_grpcurl_examples_work_against_a_real_cluster",
            "FERRISDB_SKIP_GRPCURL",
            "grpcurl not found on PATH or in .ci-tools/venv/bin: run scripts/test.sh (it \
             installs grpcurl into .ci-tools/venv) or put grpcurl on PATH",
        );
        return;
    };
    let dir = grpcurl
        .parent()
        .expect("a file has a parent directory")
        .to_path_buf();
    let cluster = TestCluster::start(1, 1).await;
    for example in EXAMPLES {
        let cmd = localize(example.cmd, &cluster);
        let out = tokio::task::block_in_place(|| run(&cmd, &dir));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let context = format!(
            "{cmd}\nexit: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            out.status
        );
        assert_eq!(
            out.status.success(),
            example.ok,
            "{context}\n{}",
            cluster.all_logs()
        );
        let text = if example.ok { &stdout } else { &stderr };
        for needle in example.shows {
            assert!(text.contains(needle), "expected {needle:?} in\n{context}");
        }
        for needle in example.hides {
            assert!(
                !text.contains(needle),
                "did not expect {needle:?} in\n{context}"
            );
        }
    }
}
