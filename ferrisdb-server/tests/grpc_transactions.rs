//! The public `ferrisdb.v1.Transactions` service against a real cluster: interactive
//! transactions over plain gRPC (what a client in any language does), bad requests refused
//! with INVALID_ARGUMENT, and the Python example `examples/python/bank_transfer.py` run
//! against the cluster with the coordinator restarted under it.
//!
//! The Python test needs the project's Python environment (`scripts/python-env.sh`, which
//! `scripts/test.sh` runs and names in `FERRISDB_PYTHON`); without one it fails unless
//! `FERRISDB_SKIP_PYTHON=1`.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use common::cluster::{TestCluster, channel};
use common::skip::skip_or_fail;
use ferrisdb_proto::v1;
use ferrisdb_proto::v1::transactions_client::TransactionsClient;
use tonic::Code;
use tonic::transport::Channel;

async fn client(cluster: &TestCluster) -> TransactionsClient<Channel> {
    TransactionsClient::new(channel(cluster.gateway.addr))
}

async fn begin(c: &mut TransactionsClient<Channel>) -> u64 {
    c.begin(v1::BeginRequest::default())
        .await
        .expect("begin")
        .into_inner()
        .read_version
}

fn set(key: &[u8], value: &[u8]) -> v1::Mutation {
    v1::Mutation {
        kind: Some(v1::mutation::Kind::Set(v1::mutation::Set {
            key: Bytes::copy_from_slice(key),
            value: Bytes::copy_from_slice(value),
        })),
    }
}

fn commit(
    read_version: u64,
    mutations: Vec<v1::Mutation>,
    reads: Vec<v1::KeyRange>,
) -> v1::TransactionCommitRequest {
    v1::TransactionCommitRequest {
        read_version,
        mutations,
        read_conflict_ranges: reads,
        ..Default::default()
    }
}

async fn get(
    c: &mut TransactionsClient<Channel>,
    read_version: u64,
    key: &[u8],
) -> v1::TransactionGetResponse {
    c.get(v1::TransactionGetRequest {
        read_version,
        key: Bytes::copy_from_slice(key),
        access_system_keys: false,
    })
    .await
    .expect("get")
    .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactive_transactions_over_grpc_are_serializable() {
    let cluster = TestCluster::start(3, 1).await;
    let mut c = client(&cluster).await;

    // Write, then read back at a newer read version.
    let rv = begin(&mut c).await;
    let missing = get(&mut c, rv, b"\x10g/a").await;
    assert!(!missing.present);
    let committed = c
        .commit(commit(
            rv,
            vec![
                set(b"\x10g/a", b"1"),
                set(b"\x60g/b", b"2"),
                set(b"\xc0g/c", b"3"),
            ],
            vec![missing.read_range.clone().unwrap()],
        ))
        .await
        .expect("commit")
        .into_inner();
    assert!(committed.commit_version > rv);
    assert_eq!(
        committed.versionstamp[..8],
        committed.commit_version.to_be_bytes()
    );
    let rv2 = begin(&mut c).await;
    assert!(rv2 >= committed.commit_version);
    let a = get(&mut c, rv2, b"\x10g/a").await;
    assert_eq!((a.present, &a.value[..]), (true, &b"1"[..]));
    assert_eq!(a.read_range.unwrap().begin, Bytes::from_static(b"\x10g/a"));

    // A range across the three shards, whole and cut by a limit (forward and reverse).
    let range = |limit: u32, reverse: bool| v1::TransactionGetRangeRequest {
        read_version: rv2,
        begin: Bytes::from_static(b""),
        end: Bytes::new(),
        limit,
        reverse,
        access_system_keys: false,
    };
    let all = c.get_range(range(0, false)).await.unwrap().into_inner();
    let keys: Vec<&[u8]> = all.pairs.iter().map(|p| &p.key[..]).collect();
    assert_eq!(keys, [&b"\x10g/a"[..], b"\x60g/b", b"\xc0g/c"]);
    assert!(!all.more);
    // "To the end" stops at the system key space.
    assert_eq!(all.read_range.unwrap().end, Bytes::from_static(b"\xff"));
    let first = c.get_range(range(1, false)).await.unwrap().into_inner();
    assert!(first.more);
    assert_eq!(first.pairs.len(), 1);
    assert_eq!(
        first.read_range.unwrap().end,
        Bytes::from_static(b"\x10g/a\x00")
    );
    let last = c.get_range(range(1, true)).await.unwrap().into_inner();
    assert_eq!(&last.pairs[0].key[..], b"\xc0g/c");
    assert_eq!(
        last.read_range.unwrap().begin,
        Bytes::from_static(b"\xc0g/c")
    );

    // A key selector: the first key after g/a.
    let key = c
        .get_key(v1::TransactionGetKeyRequest {
            read_version: rv2,
            selector: Some(v1::KeySelector {
                key: Bytes::from_static(b"\x10g/a"),
                or_equal: true,
                offset: 1,
            }),
            access_system_keys: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(&key.key[..], b"\x60g/b");
    assert!(key.read_range.is_some());

    // Write skew is refused: two transactions read both keys at rv2 and each writes one.
    let reads = vec![
        get(&mut c, rv2, b"\x10g/a").await.read_range.unwrap(),
        get(&mut c, rv2, b"\x60g/b").await.read_range.unwrap(),
    ];
    c.commit(commit(rv2, vec![set(b"\x10g/a", b"0")], reads.clone()))
        .await
        .expect("first of the two commits");
    let err = c
        .commit(commit(rv2, vec![set(b"\x60g/b", b"0")], reads))
        .await
        .expect_err("the second must conflict");
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
    assert_eq!(
        err.metadata().get("ferrisdb-error-code").unwrap(),
        "1020",
        "{err:?}"
    );

    // Idempotency: the same id again is answered already_committed and not applied.
    let rv3 = begin(&mut c).await;
    let with_id = |value: &[u8]| v1::TransactionCommitRequest {
        idempotency_id: Bytes::from_static(b"grpc-transfer-1"),
        first_attempt_read_version: rv3,
        ..commit(rv3, vec![set(b"g/id", value)], vec![])
    };
    let once = c.commit(with_id(b"first")).await.unwrap().into_inner();
    let twice = c.commit(with_id(b"second")).await.unwrap().into_inner();
    assert!(!once.already_committed && twice.already_committed);
    assert_eq!(once.versionstamp, twice.versionstamp);
    let rv4 = begin(&mut c).await;
    assert_eq!(&get(&mut c, rv4, b"g/id").await.value[..], b"first");

    // A versionstamped key.
    let mut stamped = b"g/log/".to_vec();
    stamped.extend_from_slice(&[0; 10]);
    stamped.extend_from_slice(&6u32.to_le_bytes());
    let mutation = v1::Mutation {
        kind: Some(v1::mutation::Kind::SetVersionstampedKey(
            v1::mutation::SetVersionstampedKey {
                key: stamped.into(),
                value: Bytes::from_static(b"event"),
            },
        )),
    };
    let done = c
        .commit(commit(0, vec![mutation], vec![]))
        .await
        .unwrap()
        .into_inner();
    let mut want = b"g/log/".to_vec();
    want.extend_from_slice(&done.versionstamp);
    let rv5 = begin(&mut c).await;
    assert_eq!(&get(&mut c, rv5, &want).await.value[..], b"event");

    // Every priority answers.
    for priority in [v1::Priority::Batch, v1::Priority::Immediate] {
        let rv = c
            .begin(v1::BeginRequest {
                priority: priority as i32,
            })
            .await
            .unwrap()
            .into_inner()
            .read_version;
        assert!(rv >= rv5);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_invalid_arguments_that_say_why() {
    let cluster = TestCluster::start(1, 1).await;
    let mut c = client(&cluster).await;
    let rv = begin(&mut c).await;
    let expect_invalid = |result: Result<(), tonic::Status>, needle: &str| {
        let err = result.expect_err(needle);
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(needle), "{needle:?} not in {err:?}");
    };
    expect_invalid(
        c.get(v1::TransactionGetRequest {
            read_version: rv,
            key: Bytes::from_static(b"\xff/secret"),
            access_system_keys: false,
        })
        .await
        .map(drop),
        "system",
    );
    expect_invalid(
        c.get(v1::TransactionGetRequest {
            read_version: 0,
            key: Bytes::from_static(b"k"),
            access_system_keys: false,
        })
        .await
        .map(drop),
        "read_version is 0",
    );
    expect_invalid(
        c.get(v1::TransactionGetRequest {
            read_version: rv + 1_000_000_000,
            key: Bytes::from_static(b"k"),
            access_system_keys: false,
        })
        .await
        .map(drop),
        "newer than the newest committed version",
    );
    expect_invalid(
        c.get_range(v1::TransactionGetRangeRequest {
            read_version: rv,
            limit: 10_001,
            ..Default::default()
        })
        .await
        .map(drop),
        "limit",
    );
    expect_invalid(
        c.get_key(v1::TransactionGetKeyRequest {
            read_version: rv,
            selector: Some(v1::KeySelector {
                key: Bytes::from_static(b"k"),
                or_equal: false,
                offset: i32::MAX,
            }),
            access_system_keys: false,
        })
        .await
        .map(drop),
        "offset",
    );
    expect_invalid(
        c.get_key(v1::TransactionGetKeyRequest {
            read_version: rv,
            selector: None,
            access_system_keys: false,
        })
        .await
        .map(drop),
        "selector",
    );
    expect_invalid(
        c.commit(commit(rv, vec![set(&[b'k'; 10_001], b"v")], vec![]))
            .await
            .map(drop),
        "key too large",
    );
    expect_invalid(
        c.commit(commit(rv, vec![set(b"\xff/conf", b"v")], vec![]))
            .await
            .map(drop),
        "mutation 0",
    );
    expect_invalid(
        c.commit(v1::TransactionCommitRequest {
            idempotency_id: Bytes::from(vec![1u8; 256]),
            ..commit(rv, vec![set(b"k", b"v")], vec![])
        })
        .await
        .map(drop),
        "idempotency id",
    );
    expect_invalid(
        c.commit(v1::TransactionCommitRequest {
            mutations: vec![v1::Mutation { kind: None }],
            ..commit(rv, vec![], vec![])
        })
        .await
        .map(drop),
        "no kind",
    );
    expect_invalid(
        c.begin(v1::BeginRequest { priority: 7 }).await.map(drop),
        "priority",
    );
    // With the flag, system keys are readable.
    c.get(v1::TransactionGetRequest {
        read_version: rv,
        key: Bytes::from_static(b"\xff/anything"),
        access_system_keys: true,
    })
    .await
    .expect("system-key read with access_system_keys");
}

/// The example's transfer counter (`<prefix>transfers`, decimal), 0 until it exists or
/// while the coordinator cannot be reached.
async fn transfers_so_far(c: &mut TransactionsClient<Channel>) -> u64 {
    let Ok(rv) = c.begin(v1::BeginRequest::default()).await else {
        return 0;
    };
    let request = v1::TransactionGetRangeRequest {
        read_version: rv.into_inner().read_version,
        begin: Bytes::from_static(b"pybank/"),
        end: Bytes::from_static(b"pybank0"),
        ..Default::default()
    };
    let Ok(reply) = c.get_range(request).await else {
        return 0;
    };
    reply
        .into_inner()
        .pairs
        .iter()
        .filter(|p| p.key.ends_with(b"/transfers"))
        .filter_map(|p| std::str::from_utf8(&p.value).ok()?.parse().ok())
        .max()
        .unwrap_or(0)
}

/// The Python interpreter of the project's environment (see the module docs).
fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FERRISDB_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("bash")
        .arg(repo.join("scripts/python-env.sh"))
        .stderr(Stdio::inherit())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout.lines().last().map(|l| PathBuf::from(l.trim()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_bank_transfer_example_commits_each_transfer_once() {
    const TEST: &str = "the_python_bank_transfer_example_commits_each_transfer_once";
    let Some(python) = python() else {
        skip_or_fail(
            TEST,
            "FERRISDB_SKIP_PYTHON",
            "no Python environment with grpcio: scripts/python-env.sh failed",
        );
        return;
    };
    let mut cluster = TestCluster::start(3, 1).await;
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/python/bank_transfer.py");
    let child = tokio::process::Command::new(&python)
        .arg(&script)
        .args(["--target", &cluster.gateway.addr.to_string()])
        .args(["--accounts", "10", "--clients", "4", "--transfers", "40"])
        .args(["--seed", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the Python example");
    // Restart the coordinator under the running example once it has made progress: its
    // retries must recognise commits that landed (already_committed) and apply none twice.
    let mut c = client(&cluster).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while transfers_so_far(&mut c).await < 20 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the Python example made no progress in 120 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.coordinator.kill();
        cluster.coordinator.start();
        cluster
    })
    .await
    .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(240), child.wait_with_output())
        .await
        .expect("the Python example finishes within 240 s")
        .expect("wait for the example");
    let (status, stdout, stderr) = (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    eprintln!("{stdout}{stderr}");
    assert!(
        status.success(),
        "bank_transfer.py exited with {status:?}\n{stdout}\n{stderr}\n{}",
        cluster.coordinator.logs()
    );
    assert!(
        stdout.contains("transfers committed once each") && stdout.contains("unchanged"),
        "{stdout}"
    );
}
