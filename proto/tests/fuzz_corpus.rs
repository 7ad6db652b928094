//! Smoke run of the `proto_requests` fuzz target in the normal test suite: every file of
//! `fuzz/corpus/proto_requests/` plus deterministic mutations of each goes through
//! `ferrisdb_proto::fuzzing::requests`, which must not panic.
//!
//! `FERRISDB_WRITE_FUZZ_CORPUS=1 cargo test -p ferrisdb-proto --test fuzz_corpus` regenerates
//! the corpus: encodings of each request type (valid and invalid values) and a few mutations.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use ferrisdb_core::fuzzing::{Rng, mutate, run_corpus};
use ferrisdb_proto::fuzzing::requests;
use ferrisdb_proto::v1;
use prost::Message;

/// Mutations per corpus file.
const MUTATIONS_PER_FILE: usize = 300;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/proto_requests")
}

#[test]
fn proto_requests_corpus_and_mutations() {
    if std::env::var_os("FERRISDB_WRITE_FUZZ_CORPUS").is_some() {
        write_corpus();
    }
    let dir = corpus_dir();
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    paths.sort();
    let seeds: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| std::fs::read(p).expect("corpus file"))
        .collect();
    assert!(seeds.len() >= 10, "corpus too small");
    let run = run_corpus(&seeds, MUTATIONS_PER_FILE, requests);
    eprintln!(
        "proto_requests: {} files, {} mutations",
        run.files, run.mutations
    );
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn range(begin: &str, end: &str) -> v1::KeyRange {
    v1::KeyRange {
        begin: b(begin),
        end: b(end),
    }
}

fn mutations() -> Vec<v1::Mutation> {
    use v1::mutation::{Atomic, Clear, ClearRange, Kind, Set};
    [
        Kind::Set(Set {
            key: b("k"),
            value: b("v"),
        }),
        Kind::Clear(Clear { key: b("c") }),
        Kind::ClearRange(ClearRange {
            begin: b("a"),
            end: b("m"),
        }),
        Kind::Atomic(Atomic {
            op: v1::AtomicOp::Add as i32,
            key: b("n"),
            operand: Bytes::from_static(&[1, 0, 0, 0]),
        }),
    ]
    .into_iter()
    .map(|kind| v1::Mutation { kind: Some(kind) })
    .collect()
}

fn write_corpus() {
    let commit = v1::CommitRequest {
        read_version: 1_000_000,
        mutations: mutations(),
        read_conflict_ranges: vec![range("a", "b")],
        write_conflict_ranges: vec![range("k", "l"), range("", "")],
        ..Default::default()
    };
    let txn = v1::TxnRequest {
        compare: vec![v1::Compare {
            key: b("k"),
            target: v1::compare::Target::ValueEquals as i32,
            value: b("v"),
        }],
        success: vec![v1::TxnOp {
            op: Some(v1::txn_op::Op::Put(v1::PutRequest {
                key: b("k"),
                value: b("w"),
            })),
        }],
        failure: vec![v1::TxnOp {
            op: Some(v1::txn_op::Op::Get(v1::GetRequest { key: b("k") })),
        }],
    };
    let shard_map = v1::ShardMap {
        version: 3,
        shards: vec![
            v1::Shard {
                range: Some(range("", "m")),
                storage_ids: vec!["s1".into(), "s2".into()],
                moving_to: vec![],
            },
            v1::Shard {
                range: Some(range("m", "")),
                storage_ids: vec!["s2".into()],
                moving_to: vec![],
            },
        ],
    };
    let seeds: Vec<Vec<u8>> = vec![
        commit.encode_to_vec(),
        v1::CommitRequest {
            read_conflict_ranges: vec![range("z", "a")],
            ..commit.clone()
        }
        .encode_to_vec(),
        v1::VersionedMutations {
            version: 9,
            mutations: mutations(),
        }
        .encode_to_vec(),
        v1::PullMutationsRequest {
            storage_id: "s1".into(),
            after_version: 5,
            ranges: vec![range("", "m")],
            max_bytes: 1 << 20,
            wait_ms: 500,
        }
        .encode_to_vec(),
        txn.encode_to_vec(),
        v1::RangeRequest {
            begin: b("a"),
            end: b("z"),
            limit: 10,
            reverse: true,
        }
        .encode_to_vec(),
        v1::PutRequest {
            key: b("key"),
            value: b("value"),
        }
        .encode_to_vec(),
        v1::DeleteRangeRequest {
            begin: b("a"),
            end: b("b"),
        }
        .encode_to_vec(),
        v1::StorageGetRangeRequest {
            begin: b("a"),
            end: b(""),
            version: 7,
            limit: 0,
            reverse: false,
            newest: false,
        }
        .encode_to_vec(),
        shard_map.encode_to_vec(),
        v1::RegisterWorkerRequest {
            worker_id: "w1".into(),
            role: v1::WorkerRole::Storage as i32,
            address: "127.0.0.1:4502".into(),
            cluster_id: String::new(),
            incarnation: String::new(),
        }
        .encode_to_vec(),
        v1::HeartbeatRequest {
            worker_id: "w1".into(),
            status: None,
        }
        .encode_to_vec(),
    ];
    let dir = corpus_dir();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("corpus dir");
    for (i, seed) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:02}")), seed).expect("write seed");
        let mut rng = Rng::new(1000 + i as u64);
        let mutated = mutate(seed, &mut rng);
        std::fs::write(dir.join(format!("mutated-{i:02}")), mutated).expect("write");
    }
}
