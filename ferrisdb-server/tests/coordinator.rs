//! End-to-end test of the `ferrisdb-coordinator` binary outside a cluster (no `--controller`),
//! where it keeps its own commit log: commits (including a conflict, an oversized key and a
//! batch mixing good and bad commits), pulls as a fake storage server, a SIGKILL and restart on
//! the same data directory, and a clean SIGTERM shutdown. (In a cluster the coordinator keeps
//! no log: `tests/recovery.rs`.)

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::{ServerProcess, free_port, wait_for_port};
use ferrisdb_proto::v1;
use ferrisdb_proto::v1::transaction_coordinator_client::TransactionCoordinatorClient;
use tonic::Code;
use tonic::transport::Channel;

fn coordinator_args(addr: SocketAddr, dir: &Path) -> Vec<String> {
    vec![
        "--listen".to_string(),
        addr.to_string(),
        "--data-dir".into(),
        dir.join("coordinator").display().to_string(),
        "--log-segment-bytes".into(),
        "4096".into(),
    ]
}

fn start_coordinator(addr: SocketAddr, dir: &Path) -> ServerProcess {
    let p = ServerProcess::spawn(
        env!("CARGO_BIN_EXE_ferrisdb-coordinator"),
        &coordinator_args(addr, dir),
        &dir.join("coordinator.log"),
    );
    wait_for_port(addr, Duration::from_secs(20));
    p
}

/// A second coordinator started on a running one's data directory exits at once, non-zero,
/// saying the directory is locked, without touching the log (the caller checks the log
/// afterwards).
fn a_second_coordinator_on_the_same_directory_is_refused(dir: &Path) {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut second = ServerProcess::spawn(
        env!("CARGO_BIN_EXE_ferrisdb-coordinator"),
        &coordinator_args(addr, dir),
        &dir.join("coordinator-2.log"),
    );
    let status = second.wait_exit(
        Duration::from_secs(20),
        "from a second coordinator on the same directory",
    );
    assert!(!status.success(), "exit {status:?}\n{}", second.logs());
    assert!(second.logs().contains("is locked"), "{}", second.logs());
}

async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("valid uri")
        .connect()
        .await
        .expect("connect")
}

fn set(key: &str, value: &str) -> v1::Mutation {
    v1::Mutation {
        kind: Some(v1::mutation::Kind::Set(v1::mutation::Set {
            key: key.as_bytes().to_vec().into(),
            value: value.as_bytes().to_vec().into(),
        })),
    }
}

fn single(key: &str) -> v1::KeyRange {
    let mut end = key.as_bytes().to_vec();
    end.push(0);
    v1::KeyRange {
        begin: key.as_bytes().to_vec().into(),
        end: end.into(),
    }
}

fn txn(rv: u64, key: &str, value: &str, reads: bool) -> v1::CommitRequest {
    v1::CommitRequest {
        read_version: rv,
        mutations: vec![set(key, value)],
        read_conflict_ranges: if reads { vec![single(key)] } else { vec![] },
        write_conflict_ranges: vec![single(key)],
        ..Default::default()
    }
}

async fn grv(c: &mut TransactionCoordinatorClient<Channel>) -> u64 {
    c.get_read_version(v1::GetReadVersionRequest::default())
        .await
        .expect("grv")
        .into_inner()
        .version
}

/// Appends the (version, key, value) of every set in `resp`, checking its versions lie in
/// (after, committed_through].
fn collect_sets(
    resp: &v1::PullMutationsResponse,
    after: u64,
    out: &mut Vec<(u64, String, String)>,
) {
    for b in &resp.batches {
        assert!(b.version > after && b.version <= resp.committed_through);
        for m in &b.mutations {
            match &m.kind {
                Some(v1::mutation::Kind::Set(s)) => out.push((
                    b.version,
                    String::from_utf8_lossy(&s.key).into_owned(),
                    String::from_utf8_lossy(&s.value).into_owned(),
                )),
                other => panic!("unexpected mutation {other:?}"),
            }
        }
    }
}

/// Every (version, key, value) set in the caller's range, pulled from after 0 to the end.
async fn pull_all(c: &mut TransactionCoordinatorClient<Channel>) -> Vec<(u64, String, String)> {
    let mut after = 0;
    let mut out = Vec::new();
    let end = grv(c).await;
    while after < end {
        let resp = c
            .pull_mutations(v1::PullMutationsRequest {
                storage_id: "fake-ss".into(),
                after_version: after,
                ranges: vec![v1::KeyRange {
                    begin: "k".into(),
                    end: "l".into(),
                }],
                max_bytes: 200,
                wait_ms: 0,
            })
            .await
            .expect("pull")
            .into_inner();
        collect_sets(&resp, after, &mut out);
        assert!(resp.committed_through > after, "pull made no progress");
        after = resp.committed_through;
    }
    out
}

/// The same as [`pull_all`] through one `StreamMutations` call (small messages, so many).
async fn stream_all(c: &mut TransactionCoordinatorClient<Channel>) -> Vec<(u64, String, String)> {
    let end = grv(c).await;
    let mut stream = c
        .stream_mutations(v1::StreamMutationsRequest {
            storage_id: "fake-ss".into(),
            after_version: 0,
            ranges: vec![v1::KeyRange {
                begin: "k".into(),
                end: "l".into(),
            }],
            max_bytes: 200,
        })
        .await
        .expect("open the mutation stream")
        .into_inner();
    let mut after = 0;
    let mut out = Vec::new();
    while after < end {
        let message = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("a message within 10 s")
            .expect("stream message")
            .expect("the stream stays open");
        assert!(
            message.committed_through > after,
            "a message made no progress"
        );
        collect_sets(&message, after, &mut out);
        after = message.committed_through;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_survive_a_sigkill_and_the_coordinator_serves_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let coord_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut coord = start_coordinator(coord_addr, dir.path());
    let mut c = TransactionCoordinatorClient::new(channel(coord_addr).await);

    // Sequential and concurrent commits; every acknowledged one is remembered.
    let mut acked: Vec<(u64, String, String)> = Vec::new();
    for i in 0..10 {
        let rv = grv(&mut c).await;
        let (k, v) = (format!("k{i:02}"), format!("v{i}"));
        let resp = c
            .commit(txn(rv, &k, &v, true))
            .await
            .expect("commit")
            .into_inner();
        assert!(resp.commit_version > rv);
        acked.push((resp.commit_version, k, v));
    }
    let rv = grv(&mut c).await;
    let mut tasks = Vec::new();
    for i in 10..30 {
        let mut c = c.clone();
        tasks.push(tokio::spawn(async move {
            let (k, v) = (format!("k{i:02}"), format!("v{i}"));
            let resp = c.commit(txn(rv, &k, &v, false)).await.expect("commit");
            (resp.into_inner().commit_version, k, v)
        }));
    }
    for t in tasks {
        acked.push(t.await.expect("task"));
    }
    a_second_coordinator_on_the_same_directory_is_refused(dir.path());

    // A write outside the fake storage server's range is not pulled.
    let rv = grv(&mut c).await;
    c.commit(txn(rv, "zzz", "x", false))
        .await
        .expect("commit outside");

    // Conflict: a reader of k00 at an old read version, after k00 was rewritten.
    let old_rv = grv(&mut c).await;
    let rv = grv(&mut c).await;
    let resp = c
        .commit(txn(rv, "k00", "v00b", true))
        .await
        .expect("rewrite")
        .into_inner();
    acked.push((resp.commit_version, "k00".into(), "v00b".into()));
    let err = c
        .commit(txn(old_rv, "k00", "lost", true))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
    assert_eq!(
        err.metadata()
            .get("ferrisdb-error-code")
            .and_then(|v| v.to_str().ok()),
        Some("1020")
    );

    // Oversized key.
    let big = "k".repeat(10_001);
    let rv = grv(&mut c).await;
    let err = c.commit(txn(rv, &big, "v", false)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("key too large"), "{}", err.message());
    // A batch: each commit gets its own outcome, in order; the good ones commit.
    let rv = grv(&mut c).await;
    let outcomes = c
        .commit_batch(v1::CommitBatchRequest {
            commits: vec![
                txn(rv, "k60", "batched", true),
                txn(old_rv, "k00", "lost too", true),
                txn(rv, &big, "v", false),
                txn(rv, "k61", "batched", false),
            ],
        })
        .await
        .expect("commit batch")
        .into_inner()
        .outcomes;
    assert_eq!(outcomes.len(), 4, "{outcomes:?}");
    let outcome = |i: usize| outcomes[i].outcome.clone().expect("an outcome");
    use v1::commit_outcome::Outcome;
    for (i, key) in [(0, "k60"), (3, "k61")] {
        let Outcome::Committed(committed) = outcome(i) else {
            panic!("commit {i} failed: {:?}", outcome(i));
        };
        let version = committed.commit_version;
        assert!(version > rv);
        assert_eq!(committed.versionstamp[..8], version.to_be_bytes());
        assert!(!committed.already_committed);
        acked.push((version, key.into(), "batched".into()));
    }
    let Outcome::Error(conflict) = outcome(1) else {
        panic!("a conflicting commit was accepted");
    };
    assert_eq!(conflict.grpc_code, Code::Aborted as i32, "{conflict:?}");
    assert_eq!(conflict.metadata["ferrisdb-error-code"].as_ref(), b"1020");
    let Outcome::Error(too_large) = outcome(2) else {
        panic!("an oversized key was accepted");
    };
    assert_eq!(
        too_large.grpc_code,
        Code::InvalidArgument as i32,
        "{too_large:?}"
    );
    assert!(too_large.message.contains("key too large"), "{too_large:?}");
    let empty = c
        .commit_batch(v1::CommitBatchRequest { commits: vec![] })
        .await
        .expect("empty batch");
    assert!(empty.into_inner().outcomes.is_empty());
    let err = c
        .commit_batch(v1::CommitBatchRequest {
            commits: vec![v1::CommitRequest::default(); 1025],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("at most 1024"), "{}", err.message());

    // The same requests on a session: each answer carries its request's id, a malformed
    // request is refused on its own and the session goes on, and once the client ends its
    // requests the answers end too.
    let rv = grv(&mut c).await;
    let batch = |commits: Vec<v1::CommitRequest>| Some(v1::CommitBatchRequest { commits });
    let requests = vec![
        v1::CommitSessionRequest {
            id: 7,
            batch: batch(vec![txn(rv, "k62", "session", true)]),
        },
        v1::CommitSessionRequest {
            id: 8,
            batch: batch(vec![v1::CommitRequest::default(); 1025]),
        },
        v1::CommitSessionRequest {
            id: 9,
            batch: batch(vec![txn(rv, "k63", "session", false)]),
        },
    ];
    let mut answers = c
        .commit_session(tokio_stream::iter(requests))
        .await
        .expect("a session")
        .into_inner();
    let mut answered = std::collections::BTreeMap::new();
    while let Some(answer) = answers.message().await.expect("an answer") {
        answered.insert(answer.id, answer.answer.expect("an answer"));
    }
    assert_eq!(answered.keys().copied().collect::<Vec<_>>(), [7, 8, 9]);
    use v1::commit_session_response::Answer;
    for (id, key) in [(7, "k62"), (9, "k63")] {
        let Answer::Batch(batch) = &answered[&id] else {
            panic!("request {id} was refused: {:?}", answered[&id]);
        };
        let Some(Outcome::Committed(committed)) = &batch.outcomes[0].outcome else {
            panic!("request {id}'s commit failed: {batch:?}");
        };
        acked.push((committed.commit_version, key.into(), "session".into()));
    }
    let Answer::Error(refused) = &answered[&8] else {
        panic!("a batch of 1025 commits was accepted");
    };
    assert_eq!(
        refused.grpc_code,
        Code::InvalidArgument as i32,
        "{refused:?}"
    );
    assert!(refused.message.contains("at most 1024"), "{refused:?}");

    // An inverted pull range.
    let err = c
        .pull_mutations(v1::PullMutationsRequest {
            storage_id: "fake-ss".into(),
            ranges: vec![v1::KeyRange {
                begin: "b".into(),
                end: "a".into(),
            }],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    acked.sort();
    let mut pulled = pull_all(&mut c).await;
    pulled.sort();
    assert_eq!(pulled, acked);
    let last_acked = acked.iter().map(|a| a.0).max().expect("some commits");

    // Long poll: pulls past the end deliver the next commit when it comes (the in-process
    // test `pulls_are_clipped_long_poll_and_respect_the_size_cap` shows the pull waiting).
    // Idle ticks may wake a poll first with an empty answer: poll again from where it got.
    let mut poller = c.clone();
    let end = grv(&mut c).await;
    let poll = tokio::spawn(async move {
        let mut after = end;
        let mut delivered = Vec::new();
        while delivered.is_empty() {
            let reply = poller
                .pull_mutations(v1::PullMutationsRequest {
                    storage_id: "fake-ss".into(),
                    after_version: after,
                    ranges: vec![v1::KeyRange {
                        begin: "".into(),
                        end: "".into(),
                    }],
                    max_bytes: 0,
                    wait_ms: 5_000,
                })
                .await
                .expect("long poll")
                .into_inner();
            after = reply.committed_through;
            delivered = reply.batches;
        }
        delivered
    });
    let resp = c
        .commit(txn(end, "k99", "polled", false))
        .await
        .expect("commit")
        .into_inner();
    acked.push((resp.commit_version, "k99".into(), "polled".into()));
    let polled = poll.await.expect("poll task");
    let versions: Vec<u64> = polled.iter().map(|b| b.version).collect();
    assert_eq!(
        versions,
        [resp.commit_version],
        "the poll delivers the commit"
    );
    let last_acked = last_acked.max(resp.commit_version);

    // SIGKILL, restart on the same data dir.
    coord.kill();
    let mut coord = start_coordinator(coord_addr, dir.path());
    let mut c = TransactionCoordinatorClient::new(channel(coord_addr).await);
    let rv = grv(&mut c).await;
    assert!(
        rv >= last_acked,
        "read version {rv} < last acknowledged {last_acked}"
    );
    acked.sort();
    let mut pulled = pull_all(&mut c).await;
    pulled.sort();
    assert_eq!(pulled, acked, "\n{}", coord.logs());
    let mut streamed = stream_all(&mut c).await;
    streamed.sort();
    assert_eq!(streamed, acked, "\n{}", coord.logs());
    let resp = c
        .commit(txn(rv, "k50", "after", true))
        .await
        .expect("commit")
        .into_inner();
    assert!(
        resp.commit_version > last_acked,
        "{} vs {last_acked}",
        resp.commit_version
    );
    // A read-write commit at a read version of the previous generation is too old.
    let err = c
        .commit(txn(last_acked, "k51", "stale", true))
        .await
        .expect_err("a read version from before the restart must be refused");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");

    // Clean shutdown.
    let status = coord.terminate(Duration::from_secs(15));
    assert!(status.success(), "exit {status:?}\n{}", coord.logs());
    assert!(coord.logs().contains("transaction coordinator stopped"));
}
