//! The hostile requests: for every public RPC of every role, well-formed protobuf carrying bad
//! values (missing or wrong fields, oversized keys, values and ids, huge limits, inverted
//! ranges, absurd versions), and malformed gRPC for every method (garbage protobuf, truncated
//! and oversized frames, bad compression flags, unknown methods and services).

use std::net::SocketAddr;

use bytes::Bytes;
use ferrisdb_core::limits;
use ferrisdb_proto::v1;
use prost::Message;
use tonic::Code;

use super::raw::{frame, frame_with};

/// One request and the statuses it may get.
pub struct Case {
    /// What the request is, for failure messages.
    pub name: String,
    /// Process it goes to.
    pub addr: SocketAddr,
    /// `/package.Service/Method`.
    pub path: String,
    /// The whole request body (gRPC-framed).
    pub body: Bytes,
    /// Acceptable `grpc-status` codes.
    pub allowed: &'static [Code],
}

/// Addresses of the roles.
#[derive(Clone, Copy)]
pub struct Targets {
    pub controller: SocketAddr,
    pub coordinator: SocketAddr,
    pub storage: SocketAddr,
    pub gateway: SocketAddr,
}

const INVALID: &[Code] = &[Code::InvalidArgument];
/// A body that is not valid protobuf for the request message: FerrisDB's own services say
/// `INVALID_ARGUMENT` (their codec, `ferrisdb_proto::codec`).
const UNDECODABLE: &[Code] = &[Code::InvalidArgument];
/// Health's codec is tonic's own, which reports undecodable protobuf as `INTERNAL`.
const UNDECODABLE_BY_TONIC: &[Code] = &[Code::Internal];
/// Broken gRPC framing (a frame cut short, compression flags without an encoding): tonic
/// answers `INTERNAL` before any codec runs, as the gRPC spec requires for the compression
/// flag.
const BAD_FRAMING: &[Code] = &[Code::Internal];
/// Too large to accept: tonic's message limit.
const TOO_LARGE: &[Code] = &[Code::OutOfRange, Code::ResourceExhausted];
/// The reflection service (tonic-reflection) ends its response stream without a message or an
/// error when its request stream fails to decode: an empty OK, never an answer.
const REFLECTION_ENDS: &[Code] = &[Code::Ok];

const CONTROLLER: &str = "/ferrisdb.v1.ClusterController/";
const COORDINATOR: &str = "/ferrisdb.v1.TransactionCoordinator/";
const KV: &str = "/ferrisdb.v1.KV/";
const TRANSACTIONS: &str = "/ferrisdb.v1.Transactions/";
const STORAGE: &str = "/ferrisdb.v1.StorageServer/";

/// Every RPC path each role serves (from `proto/ferrisdb/v1/*.proto`, plus health and
/// reflection on every process).
pub fn methods(t: Targets) -> Vec<(SocketAddr, String)> {
    let mut out = Vec::new();
    let common = [
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ];
    let roles: [(SocketAddr, Vec<String>); 4] = [
        (
            t.controller,
            ["RegisterWorker", "Heartbeat", "GetClusterState"]
                .map(|m| format!("{CONTROLLER}{m}"))
                .to_vec(),
        ),
        (
            t.coordinator,
            [
                "GetReadVersion",
                "Commit",
                "CommitBatch",
                "PullMutations",
                "StreamMutations",
                "ReportDurable",
            ]
            .map(|m| format!("{COORDINATOR}{m}"))
            .to_vec(),
        ),
        (
            t.gateway,
            ["Get", "Put", "Delete", "DeleteRange", "Range", "Txn"]
                .map(|m| format!("{KV}{m}"))
                .into_iter()
                .chain(
                    ["Begin", "Get", "GetRange", "GetKey", "Commit"]
                        .map(|m| format!("{TRANSACTIONS}{m}")),
                )
                .collect(),
        ),
        (
            t.storage,
            ["Get", "GetBatch", "GetRange"]
                .map(|m| format!("{STORAGE}{m}"))
                .to_vec(),
        ),
    ];
    for (addr, paths) in roles {
        for path in paths.into_iter().chain(common.map(String::from)) {
            out.push((addr, path));
        }
    }
    out
}

/// Malformed gRPC sent to every method: each must be refused with a status.
pub fn malformed(t: Targets) -> Vec<Case> {
    // Wire type 7 does not exist; a truncated varint; a length-delimited field claiming 4 GiB.
    let garbage: [(&str, &[u8]); 3] = [
        ("invalid wire type", &[0x0f, 0x01]),
        ("truncated varint", &[0x08, 0x80]),
        (
            "length past the end",
            &[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01],
        ),
    ];
    let mut out = Vec::new();
    for (addr, path) in methods(t) {
        let reflection = path.contains("ServerReflection");
        let mut push = |name: &str, body: Bytes, allowed: &'static [Code]| {
            let allowed = if reflection { REFLECTION_ENDS } else { allowed };
            out.push(Case {
                name: format!("{path}: {name}"),
                addr,
                path: path.clone(),
                body,
                allowed,
            });
        };
        let undecodable = if path.starts_with("/ferrisdb.") {
            UNDECODABLE
        } else {
            UNDECODABLE_BY_TONIC
        };
        for (name, bytes) in garbage {
            push(name, frame(bytes), undecodable);
        }
        push(
            "frame declares 100 bytes, carries 3",
            frame_with(0, 100, b"abc"),
            BAD_FRAMING,
        );
        push(
            "half a frame header",
            Bytes::from_static(&[0, 0]),
            BAD_FRAMING,
        );
        push(
            "compressed flag without grpc-encoding",
            frame_with(1, 2, &[0x08, 0x01]),
            BAD_FRAMING,
        );
        push(
            "unknown compression flag",
            frame_with(7, 2, &[0x08, 0x01]),
            BAD_FRAMING,
        );
        push(
            "frame declares 4 GiB",
            frame_with(0, u32::MAX, &[0x08, 0x01]),
            TOO_LARGE,
        );
    }
    for (addr, service) in [
        (t.controller, "ferrisdb.v1.ClusterController"),
        (t.gateway, "ferrisdb.v1.KV"),
        (t.gateway, "ferrisdb.v1.Transactions"),
        (t.coordinator, "ferrisdb.v1.TransactionCoordinator"),
        (t.storage, "ferrisdb.v1.StorageServer"),
    ] {
        for path in [
            format!("/{service}/NoSuchMethod"),
            "/ferrisdb.v1.NoSuchService/Get".to_owned(),
            "/".to_owned(),
            format!("/{service}/"),
            format!("/{service}/Get/extra"),
        ] {
            out.push(Case {
                name: format!("unknown path {path}"),
                addr,
                path,
                body: frame(&[]),
                allowed: &[Code::Unimplemented],
            });
        }
    }
    out
}

fn case<M: Message>(
    name: &str,
    addr: SocketAddr,
    path: String,
    msg: &M,
    allowed: &'static [Code],
) -> Case {
    Case {
        name: format!("{path}: {name}"),
        addr,
        path,
        body: frame(&msg.encode_to_vec()),
        allowed,
    }
}

/// A key one byte over the limit.
fn big_key() -> Bytes {
    Bytes::from(vec![b'k'; limits::MAX_KEY_BYTES + 1])
}

fn range(begin: &str, end: &str) -> v1::KeyRange {
    v1::KeyRange {
        begin: Bytes::copy_from_slice(begin.as_bytes()),
        end: Bytes::copy_from_slice(end.as_bytes()),
    }
}

fn set(key: Bytes, value: Bytes) -> v1::Mutation {
    v1::Mutation {
        kind: Some(v1::mutation::Kind::Set(v1::mutation::Set { key, value })),
    }
}

/// Well-formed messages with bad values, for every public RPC. `read_version` is a version
/// the cluster has committed (so only the field under test is wrong).
pub fn bad_values(t: Targets, read_version: u64) -> Vec<Case> {
    let mut out = controller_cases(t.controller);
    out.extend(coordinator_cases(t.coordinator, read_version));
    out.extend(kv_cases(t.gateway));
    out.extend(transactions_cases(t.gateway, read_version));
    out.extend(storage_cases(t.storage, read_version));
    for addr in [t.controller, t.coordinator, t.storage, t.gateway] {
        out.push(case(
            "unknown service",
            addr,
            "/grpc.health.v1.Health/Check".into(),
            &tonic_health::pb::HealthCheckRequest {
                service: "no.such.Service".into(),
            },
            &[Code::NotFound],
        ));
    }
    out
}

fn controller_cases(addr: SocketAddr) -> Vec<Case> {
    let register = |worker_id: String, role: i32, address: &str| v1::RegisterWorkerRequest {
        worker_id,
        role,
        address: address.into(),
        cluster_id: String::new(),
        incarnation: String::new(),
    };
    let storage = v1::WorkerRole::Storage as i32;
    let path = |m: &str| format!("{CONTROLLER}{m}");
    vec![
        case(
            "empty request",
            addr,
            path("RegisterWorker"),
            &v1::RegisterWorkerRequest::default(),
            INVALID,
        ),
        case(
            "worker id of 100 kB",
            addr,
            path("RegisterWorker"),
            &register("w".repeat(100_000), storage, "127.0.0.1:1"),
            INVALID,
        ),
        case(
            "worker id with control characters",
            addr,
            path("RegisterWorker"),
            &register("w\n\0".into(), storage, "127.0.0.1:1"),
            INVALID,
        ),
        case(
            "unknown role",
            addr,
            path("RegisterWorker"),
            &register("hostile-1".into(), 99, "127.0.0.1:1"),
            INVALID,
        ),
        case(
            "unspecified role",
            addr,
            path("RegisterWorker"),
            &register("hostile-2".into(), 0, "127.0.0.1:1"),
            INVALID,
        ),
        case(
            "address without a port",
            addr,
            path("RegisterWorker"),
            &register("hostile-3".into(), storage, "nowhere"),
            INVALID,
        ),
        case(
            "address of 100 kB",
            addr,
            path("RegisterWorker"),
            &register("hostile-4".into(), storage, &"a".repeat(100_000)),
            INVALID,
        ),
        case(
            "empty heartbeat",
            addr,
            path("Heartbeat"),
            &v1::HeartbeatRequest::default(),
            INVALID,
        ),
        case(
            "heartbeat with control characters in the id",
            addr,
            path("Heartbeat"),
            &v1::HeartbeatRequest {
                worker_id: "\u{7}".into(),
                status: None,
            },
            INVALID,
        ),
        case(
            "heartbeat with a 100 kB id",
            addr,
            path("Heartbeat"),
            &v1::HeartbeatRequest {
                worker_id: "h".repeat(100_000),
                status: None,
            },
            INVALID,
        ),
    ]
}

fn coordinator_cases(addr: SocketAddr, read_version: u64) -> Vec<Case> {
    let path = |m: &str| format!("{COORDINATOR}{m}");
    let commit = |read_version: u64, mutations: Vec<v1::Mutation>| v1::CommitRequest {
        read_version,
        mutations,
        read_conflict_ranges: vec![],
        write_conflict_ranges: vec![range("a", "b")],
        ..Default::default()
    };
    let small = || set(Bytes::from_static(b"a"), Bytes::from_static(b"v"));
    let mut inverted = commit(read_version, vec![small()]);
    inverted.read_conflict_ranges = vec![range("z", "a")];
    let too_big: Vec<_> = (0..110)
        .map(|i| {
            set(
                Bytes::from(format!("big{i}")),
                Bytes::from(vec![0u8; limits::MAX_VALUE_BYTES]),
            )
        })
        .collect();
    let pull = |storage_id: &str, after: u64, ranges: Vec<v1::KeyRange>| v1::PullMutationsRequest {
        storage_id: storage_id.into(),
        after_version: after,
        ranges,
        max_bytes: u64::MAX,
        wait_ms: 1,
    };
    let stream = |storage_id: &str, ranges: Vec<v1::KeyRange>| v1::StreamMutationsRequest {
        storage_id: storage_id.into(),
        after_version: 0,
        ranges,
        max_bytes: u64::MAX,
    };
    vec![
        case(
            "commit without a mutation kind",
            addr,
            path("Commit"),
            &commit(read_version, vec![v1::Mutation { kind: None }]),
            INVALID,
        ),
        case(
            "commit of an oversized key",
            addr,
            path("Commit"),
            &commit(read_version, vec![set(big_key(), Bytes::new())]),
            INVALID,
        ),
        case(
            "commit of an oversized value",
            addr,
            path("Commit"),
            &commit(
                read_version,
                vec![set(
                    Bytes::from_static(b"k"),
                    Bytes::from(vec![0u8; limits::MAX_VALUE_BYTES + 1]),
                )],
            ),
            INVALID,
        ),
        case(
            "commit of 11 MB",
            addr,
            path("Commit"),
            &commit(read_version, too_big),
            INVALID,
        ),
        case(
            "commit with an inverted conflict range",
            addr,
            path("Commit"),
            &inverted,
            INVALID,
        ),
        case(
            "commit with an unknown atomic op",
            addr,
            path("Commit"),
            &commit(
                read_version,
                vec![v1::Mutation {
                    kind: Some(v1::mutation::Kind::Atomic(v1::mutation::Atomic {
                        op: 99,
                        key: Bytes::from_static(b"a"),
                        operand: Bytes::from_static(b"x"),
                    })),
                }],
            ),
            INVALID,
        ),
        case(
            "commit at read version u64::MAX",
            addr,
            path("Commit"),
            &commit(u64::MAX, vec![small()]),
            INVALID,
        ),
        case(
            "commit with reads at read version 0",
            addr,
            path("Commit"),
            &v1::CommitRequest {
                read_conflict_ranges: vec![range("a", "b")],
                ..commit(0, vec![small()])
            },
            &[Code::InvalidArgument, Code::FailedPrecondition],
        ),
        case(
            "commit batch of 1,025 commits",
            addr,
            path("CommitBatch"),
            &v1::CommitBatchRequest {
                commits: vec![commit(read_version, vec![small()]); 1025],
            },
            INVALID,
        ),
        case(
            "pull with an empty storage id",
            addr,
            path("PullMutations"),
            &pull("", 0, vec![range("", "")]),
            INVALID,
        ),
        case(
            "pull with a 100 kB storage id",
            addr,
            path("PullMutations"),
            &pull(&"s".repeat(100_000), 0, vec![range("", "")]),
            INVALID,
        ),
        case(
            "pull of an inverted range",
            addr,
            path("PullMutations"),
            &pull("hostile", 0, vec![range("z", "a")]),
            INVALID,
        ),
        case(
            "pull after u64::MAX, u32::MAX ms wait (capped), u64::MAX bytes",
            addr,
            path("PullMutations"),
            &v1::PullMutationsRequest {
                wait_ms: u32::MAX,
                ..pull("hostile", u64::MAX, vec![range("", "")])
            },
            &[Code::Ok, Code::InvalidArgument],
        ),
        case(
            "mutation stream with an empty storage id",
            addr,
            path("StreamMutations"),
            &stream("", vec![range("", "")]),
            INVALID,
        ),
        case(
            "mutation stream with a 100 kB storage id",
            addr,
            path("StreamMutations"),
            &stream(&"s".repeat(100_000), vec![range("", "")]),
            INVALID,
        ),
        case(
            "mutation stream of an inverted range",
            addr,
            path("StreamMutations"),
            &stream("hostile", vec![range("z", "a")]),
            INVALID,
        ),
        case(
            "report durable with an empty storage id",
            addr,
            path("ReportDurable"),
            &v1::ReportDurableRequest {
                storage_id: String::new(),
                durable_version: 1,
            },
            INVALID,
        ),
    ]
}

fn transactions_cases(addr: SocketAddr, read_version: u64) -> Vec<Case> {
    let path = |m: &str| format!("{TRANSACTIONS}{m}");
    let get = |read_version: u64, key: Bytes| v1::TransactionGetRequest {
        read_version,
        key,
        access_system_keys: false,
    };
    let commit = |mutations: Vec<v1::Mutation>| v1::TransactionCommitRequest {
        read_version,
        mutations,
        ..Default::default()
    };
    let stamped_key = |key: &[u8]| v1::Mutation {
        kind: Some(v1::mutation::Kind::SetVersionstampedKey(
            v1::mutation::SetVersionstampedKey {
                key: Bytes::copy_from_slice(key),
                value: Bytes::from_static(b"v"),
            },
        )),
    };
    vec![
        case(
            "unknown priority",
            addr,
            path("Begin"),
            &v1::BeginRequest { priority: 99 },
            INVALID,
        ),
        case(
            "read version 0",
            addr,
            path("Get"),
            &get(0, Bytes::from_static(b"k")),
            INVALID,
        ),
        case(
            "read version from the future",
            addr,
            path("Get"),
            &get(u64::MAX, Bytes::from_static(b"k")),
            INVALID,
        ),
        case(
            "key over the limit",
            addr,
            path("Get"),
            &get(read_version, big_key()),
            INVALID,
        ),
        case(
            "system key without the option",
            addr,
            path("Get"),
            &get(read_version, Bytes::from_static(b"\xff/x")),
            INVALID,
        ),
        case(
            "limit over the maximum",
            addr,
            path("GetRange"),
            &v1::TransactionGetRangeRequest {
                read_version,
                limit: u32::MAX,
                ..Default::default()
            },
            INVALID,
        ),
        case(
            "inverted range",
            addr,
            path("GetRange"),
            &v1::TransactionGetRangeRequest {
                read_version,
                begin: Bytes::from_static(b"z"),
                end: Bytes::from_static(b"a"),
                ..Default::default()
            },
            INVALID,
        ),
        case(
            "selector offset far out",
            addr,
            path("GetKey"),
            &v1::TransactionGetKeyRequest {
                read_version,
                selector: Some(v1::KeySelector {
                    key: Bytes::from_static(b"k"),
                    or_equal: false,
                    offset: i32::MIN,
                }),
                access_system_keys: false,
            },
            INVALID,
        ),
        case(
            "no selector",
            addr,
            path("GetKey"),
            &v1::TransactionGetKeyRequest {
                read_version,
                selector: None,
                access_system_keys: false,
            },
            INVALID,
        ),
        case(
            "key over the limit",
            addr,
            path("Commit"),
            &commit(vec![set(big_key(), Bytes::from_static(b"v"))]),
            INVALID,
        ),
        case(
            "versionstamp placeholder past the end",
            addr,
            path("Commit"),
            &commit(vec![stamped_key(b"abc\xff\xff\xff\x7f")]),
            INVALID,
        ),
        case(
            "idempotency id over 255 bytes",
            addr,
            path("Commit"),
            &v1::TransactionCommitRequest {
                idempotency_id: Bytes::from(vec![7u8; 256]),
                ..commit(vec![set(
                    Bytes::from_static(b"k"),
                    Bytes::from_static(b"v"),
                )])
            },
            INVALID,
        ),
        case(
            "reads at read version 0",
            addr,
            path("Commit"),
            &v1::TransactionCommitRequest {
                read_version: 0,
                read_conflict_ranges: vec![range("a", "b")],
                ..commit(vec![])
            },
            INVALID,
        ),
    ]
}

fn kv_cases(addr: SocketAddr) -> Vec<Case> {
    let path = |m: &str| format!("{KV}{m}");
    let get = |key: Bytes| v1::GetRequest { key };
    let range_req = |begin: &str, end: &str, limit: u64| v1::RangeRequest {
        begin: Bytes::copy_from_slice(begin.as_bytes()),
        end: Bytes::copy_from_slice(end.as_bytes()),
        limit,
        reverse: false,
    };
    let many_ops = v1::TxnRequest {
        compare: vec![],
        success: (0..100_000)
            .map(|_| v1::TxnOp {
                op: Some(v1::txn_op::Op::Get(get(Bytes::from_static(b"k")))),
            })
            .collect(),
        failure: vec![],
    };
    vec![
        case(
            "empty key (a valid key)",
            addr,
            path("Get"),
            &get(Bytes::new()),
            &[Code::Ok],
        ),
        case(
            "system key without the option",
            addr,
            path("Get"),
            &get(Bytes::from_static(b"\xffsystem")),
            INVALID,
        ),
        case("oversized key", addr, path("Get"), &get(big_key()), INVALID),
        case(
            "put of an oversized value",
            addr,
            path("Put"),
            &v1::PutRequest {
                key: Bytes::from_static(b"k"),
                value: Bytes::from(vec![1u8; limits::MAX_VALUE_BYTES + 1]),
            },
            INVALID,
        ),
        case(
            "put of an oversized key",
            addr,
            path("Put"),
            &v1::PutRequest {
                key: big_key(),
                value: Bytes::new(),
            },
            INVALID,
        ),
        case(
            "delete of the empty key (a valid key)",
            addr,
            path("Delete"),
            &v1::DeleteRequest { key: Bytes::new() },
            &[Code::Ok],
        ),
        case(
            "inverted delete range",
            addr,
            path("DeleteRange"),
            &v1::DeleteRangeRequest {
                begin: Bytes::from_static(b"z"),
                end: Bytes::from_static(b"a"),
            },
            INVALID,
        ),
        case(
            "inverted range",
            addr,
            path("Range"),
            &range_req("z", "a", 10),
            INVALID,
        ),
        case(
            "range with a limit over 32 bits (not truncated to 'no limit')",
            addr,
            path("Range"),
            &range_req("", "", limits::MAX_RANGE_LIMIT + 1),
            INVALID,
        ),
        case(
            "range with the largest limit (allowed)",
            addr,
            path("Range"),
            &range_req("", "", limits::MAX_RANGE_LIMIT),
            &[Code::Ok],
        ),
        case(
            "range with an oversized begin",
            addr,
            path("Range"),
            &v1::RangeRequest {
                begin: big_key(),
                ..range_req("", "", 1)
            },
            INVALID,
        ),
        case(
            "txn with 100,000 operations",
            addr,
            path("Txn"),
            &many_ops,
            INVALID,
        ),
        case(
            "txn operation without a kind",
            addr,
            path("Txn"),
            &v1::TxnRequest {
                compare: vec![],
                success: vec![v1::TxnOp { op: None }],
                failure: vec![],
            },
            INVALID,
        ),
        case(
            "txn compare with an unknown target",
            addr,
            path("Txn"),
            &v1::TxnRequest {
                compare: vec![v1::Compare {
                    key: Bytes::from_static(b"k"),
                    target: 99,
                    value: Bytes::new(),
                }],
                success: vec![],
                failure: vec![],
            },
            INVALID,
        ),
    ]
}

fn storage_cases(addr: SocketAddr, read_version: u64) -> Vec<Case> {
    let path = |m: &str| format!("{STORAGE}{m}");
    let get = |key: Bytes, version: u64| v1::StorageGetRequest {
        key,
        version,
        newest: false,
    };
    let get_range = |begin: &str, end: &str, version: u64| v1::StorageGetRangeRequest {
        begin: Bytes::copy_from_slice(begin.as_bytes()),
        end: Bytes::copy_from_slice(end.as_bytes()),
        version,
        limit: limits::MAX_RANGE_LIMIT,
        reverse: false,
        newest: false,
    };
    vec![
        case(
            "read at version 0",
            addr,
            path("Get"),
            &get(Bytes::from_static(b"k"), 0),
            INVALID,
        ),
        case(
            "oversized key",
            addr,
            path("Get"),
            &get(big_key(), read_version),
            INVALID,
        ),
        case(
            "read batch of 1,025 reads",
            addr,
            path("GetBatch"),
            &v1::StorageGetBatchRequest {
                gets: vec![get(Bytes::from_static(b"k"), read_version); 1025],
            },
            INVALID,
        ),
        case(
            "read at version u64::MAX",
            addr,
            path("Get"),
            &get(Bytes::from_static(b"k"), u64::MAX),
            &[Code::Unavailable],
        ),
        case(
            "read at version 1 (long gone)",
            addr,
            path("Get"),
            // Too old once the GC task has moved the horizon (every 500 ms); before that no
            // version is gone and the (empty) answer is right.
            &get(Bytes::from_static(b"k"), 1),
            &[Code::FailedPrecondition, Code::Ok],
        ),
        case(
            "inverted range",
            addr,
            path("GetRange"),
            &get_range("z", "a", read_version),
            INVALID,
        ),
        case(
            "range at version 0",
            addr,
            path("GetRange"),
            &get_range("", "", 0),
            INVALID,
        ),
        case(
            "range with an oversized end",
            addr,
            path("GetRange"),
            &v1::StorageGetRangeRequest {
                // An end may be one byte longer than a key (`key_after` of the longest key).
                end: Bytes::from(vec![b'k'; limits::MAX_KEY_BYTES + 2]),
                ..get_range("", "", read_version)
            },
            INVALID,
        ),
        case(
            "range with an oversized begin",
            addr,
            path("GetRange"),
            &v1::StorageGetRangeRequest {
                // A begin may be one byte longer than a key (just past the longest key).
                begin: Bytes::from(vec![b'k'; limits::MAX_KEY_BYTES + 2]),
                ..get_range("", "", read_version)
            },
            INVALID,
        ),
        case(
            "range with a u32::MAX limit (allowed)",
            addr,
            path("GetRange"),
            &get_range("", "", read_version),
            &[Code::Ok],
        ),
        case(
            "range with a limit over 32 bits (not truncated to 'no limit')",
            addr,
            path("GetRange"),
            &v1::StorageGetRangeRequest {
                limit: u64::MAX,
                ..get_range("", "", read_version)
            },
            INVALID,
        ),
    ]
}
