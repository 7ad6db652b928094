//! The public `ferrisdb.v1.KV` API against a real cluster (controller, coordinator, storage
//! servers as processes), spoken with a tonic client: point operations, ranges across every
//! shard in both directions with limits, binary-safe keys and values, `Txn` branches and
//! compares, bad input, and concurrent read-modify-write transactions on one counter.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use common::cluster::{TestCluster, channel};
use ferrisdb_proto::v1;
use ferrisdb_proto::v1::compare::Target;
use ferrisdb_proto::v1::kv_client::KvClient;
use ferrisdb_proto::v1::txn_op::Op;
use ferrisdb_proto::v1::txn_op_result::Result as OpResult;
use tonic::Code;
use tonic::transport::Channel;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn kv(cluster: &TestCluster) -> KvClient<Channel> {
    KvClient::new(channel(cluster.gateway.addr))
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20)
}

/// A key for messages: escaped, long keys cut short.
fn show(key: &[u8]) -> String {
    let shown = ferrisdb_core::keys::escape(&key[..key.len().min(24)]);
    if key.len() > 24 {
        format!("{shown}… ({} bytes)", key.len())
    } else {
        shown
    }
}

fn b(x: &[u8]) -> Bytes {
    Bytes::copy_from_slice(x)
}

async fn put(c: &mut KvClient<Channel>, key: &[u8], value: &[u8]) -> u64 {
    c.put(v1::PutRequest {
        key: b(key),
        value: b(value),
    })
    .await
    .unwrap_or_else(|e| panic!("put {}: {e}", show(key)))
    .into_inner()
    .version
}

async fn get(c: &mut KvClient<Channel>, key: &[u8]) -> Option<Vec<u8>> {
    let r = c
        .get(v1::GetRequest { key: b(key) })
        .await
        .unwrap_or_else(|e| panic!("get {}: {e}", show(key)))
        .into_inner();
    assert!(r.version > 0, "a get reports its read version");
    r.found.then(|| r.value.to_vec())
}

async fn range(
    c: &mut KvClient<Channel>,
    begin: &[u8],
    end: &[u8],
    limit: u64,
    reverse: bool,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>, tonic::Status> {
    let mut stream = c
        .range(v1::RangeRequest {
            begin: b(begin),
            end: b(end),
            limit,
            reverse,
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(kv) = stream.message().await? {
        out.push((kv.key.to_vec(), kv.value.to_vec()));
    }
    Ok(out)
}

/// The model's pairs in `[begin, end)` (empty end: unbounded), in the requested order.
fn expect(
    model: &Model,
    begin: &[u8],
    end: &[u8],
    limit: u64,
    reverse: bool,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut all: Vec<_> = model
        .iter()
        .filter(|(k, _)| k.as_slice() >= begin && (end.is_empty() || k.as_slice() < end))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if reverse {
        all.reverse();
    }
    if limit > 0 {
        all.truncate(limit as usize);
    }
    all
}

fn op(op: Op) -> v1::TxnOp {
    v1::TxnOp { op: Some(op) }
}

fn put_op(key: &[u8], value: &[u8]) -> v1::TxnOp {
    op(Op::Put(v1::PutRequest {
        key: b(key),
        value: b(value),
    }))
}

fn get_op(key: &[u8]) -> v1::TxnOp {
    op(Op::Get(v1::GetRequest { key: b(key) }))
}

fn cmp(key: &[u8], target: Target, value: &[u8]) -> v1::Compare {
    v1::Compare {
        key: b(key),
        target: target as i32,
        value: b(value),
    }
}

/// The value a `Get` result saw (`None`: absent); panics on any other result.
fn got(result: &v1::TxnOpResult) -> Option<Vec<u8>> {
    match &result.result {
        Some(OpResult::Get(g)) => g.found.then(|| g.value.to_vec()),
        other => panic!("expected a get result, got {other:?}"),
    }
}

fn assert_invalid(result: Result<impl std::fmt::Debug, tonic::Status>, needle: &str) {
    match result {
        Err(s) => {
            assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
            assert!(
                s.message().contains(needle),
                "{:?} lacks {needle:?}",
                s.message()
            );
            assert!(
                s.metadata().get("ferrisdb-error-code").is_some(),
                "carries the FerrisDB error code"
            );
        }
        Ok(r) => panic!("expected INVALID_ARGUMENT ({needle}), got {r:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_operations_and_ranges_across_every_shard() {
    let mut cluster = TestCluster::start(3, 2).await;
    let mut c = kv(&cluster);
    let mut model = Model::new();

    // Point operations; versions grow.
    assert_eq!(get(&mut c, b"greeting").await, None);
    let v1 = put(&mut c, b"greeting", b"hello").await;
    assert_eq!(
        get(&mut c, b"greeting").await.as_deref(),
        Some(&b"hello"[..])
    );
    let v2 = put(&mut c, b"greeting", b"").await;
    assert!(v2 > v1, "commit versions grow: {v1} then {v2}");
    assert_eq!(
        get(&mut c, b"greeting").await.as_deref(),
        Some(&b""[..]),
        "empty value is a value"
    );
    let d = c
        .delete(v1::DeleteRequest {
            key: b(b"greeting"),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(d.version > v2);
    assert_eq!(get(&mut c, b"greeting").await, None);

    // Binary-safe keys and values, in the first and the last shard.
    for (k, v) in [
        (&b"\x00"[..], &b"\x00\xff\x00"[..]),
        (b"\x00\x00\xff", b"\xff"),
        (b"\xfe", b"\x00"),
        (b"\xfe\xff\x00\xff", b"\xff\xfe\x00\x01"),
    ] {
        put(&mut c, k, v).await;
        model.insert(k.to_vec(), v.to_vec());
    }
    for (k, v) in &model {
        assert_eq!(get(&mut c, k).await.as_ref(), Some(v), "key {k:?}");
    }

    // 600 keys whose first bytes cover 0x00..=0xfe (0xff starts the system key space),
    // written by one Txn; a full scan crosses both shard boundaries and several storage
    // batches.
    let mut ops = Vec::new();
    for i in 0..600u32 {
        let key = vec![(i * 255 / 600) as u8, b'/', (i >> 8) as u8, i as u8];
        let value = format!("value-{i}").into_bytes();
        ops.push(put_op(&key, &value));
        model.insert(key, value);
    }
    let r = c
        .txn(v1::TxnRequest {
            success: ops,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.succeeded);
    assert_eq!(r.results.len(), 600);

    for (begin, end) in [
        (&b""[..], &b""[..]),
        (b"\x40", b"\xc0"),
        (b"\x54\xff", b"\x55\x01"),
        (b"\x00", b"\x00\x01"),
        (b"\xfe", b""),
    ] {
        for reverse in [false, true] {
            for limit in [0, 1, 7, 300] {
                let got = range(&mut c, begin, end, limit, reverse).await.unwrap();
                let want = expect(&model, begin, end, limit, reverse);
                assert_eq!(
                    got, want,
                    "range [{begin:?}, {end:?}) limit {limit} reverse {reverse}"
                );
            }
        }
    }
    assert!(
        range(&mut c, b"k", b"k", 0, false)
            .await
            .unwrap()
            .is_empty()
    );

    // DeleteRange across a shard boundary, then to the end of the key space.
    c.delete_range(v1::DeleteRangeRequest {
        begin: b(b"\x50"),
        end: b(b"\xb0"),
    })
    .await
    .unwrap();
    model.retain(|k, _| !(k.as_slice() >= &b"\x50"[..] && k.as_slice() < &b"\xb0"[..]));
    c.delete_range(v1::DeleteRangeRequest {
        begin: b(b"\xf0"),
        end: Bytes::new(),
    })
    .await
    .unwrap();
    model.retain(|k, _| k.as_slice() < &b"\xf0"[..]);
    assert_eq!(
        range(&mut c, b"", b"", 0, false).await.unwrap(),
        expect(&model, b"", b"", 0, false)
    );
    assert_eq!(
        range(&mut c, b"", b"", 0, true).await.unwrap(),
        expect(&model, b"", b"", 0, true)
    );

    // Inverted ranges are refused.
    assert_invalid(range(&mut c, b"z", b"a", 0, false).await, "invalid range");
    assert_invalid(
        c.delete_range(v1::DeleteRangeRequest {
            begin: b(b"z"),
            end: b(b"a"),
        })
        .await,
        "invalid range",
    );

    // With every storage server gone a read fails after bounded retries instead of hanging.
    for node in &mut cluster.storage {
        node.kill();
    }
    let read = tokio::time::timeout(
        Duration::from_secs(60),
        c.get(v1::GetRequest { key: b(b"\x01") }),
    )
    .await
    .expect("a KV call is bounded");
    match read {
        Err(s) => assert!(
            matches!(s.code(), Code::Unavailable | Code::DeadlineExceeded),
            "{s:?}"
        ),
        Ok(r) => panic!("read with no storage server answered {r:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_runs_the_branch_its_compares_choose_and_refuses_bad_input() {
    let cluster = TestCluster::start(3, 2).await;
    let mut c = kv(&cluster);

    // ABSENT holds: success runs, in order, reading its own write.
    let r = c
        .txn(v1::TxnRequest {
            compare: vec![cmp(b"c", Target::Absent, b"")],
            success: vec![put_op(b"c", b"1"), get_op(b"c"), get_op(b"missing")],
            failure: vec![get_op(b"c")],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.succeeded);
    assert_eq!(r.results.len(), 3);
    match &r.results[0].result {
        Some(OpResult::Put(p)) => {
            assert_eq!(p.version, r.version, "put carries the commit version")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        got(&r.results[1]).as_deref(),
        Some(&b"1"[..]),
        "read-your-writes"
    );
    assert_eq!(got(&r.results[2]), None);
    match &r.results[1].result {
        Some(OpResult::Get(g)) => assert!(g.version < r.version, "gets carry the read version"),
        other => panic!("{other:?}"),
    }
    assert_eq!(get(&mut c, b"c").await.as_deref(), Some(&b"1"[..]));

    // The same Txn again: ABSENT fails, the failure branch runs and nothing is written.
    let r = c
        .txn(v1::TxnRequest {
            compare: vec![cmp(b"c", Target::Absent, b"")],
            success: vec![put_op(b"c", b"overwritten")],
            failure: vec![get_op(b"c")],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!r.succeeded);
    assert_eq!(r.results.len(), 1);
    assert_eq!(got(&r.results[0]).as_deref(), Some(&b"1"[..]));
    assert_eq!(get(&mut c, b"c").await.as_deref(), Some(&b"1"[..]));
    let read_only_version = r.version;
    assert!(
        put(&mut c, b"later", b"x").await > read_only_version,
        "read-only txn reports its read version"
    );

    // Compare semantics, alone and combined (all must hold).
    let cases: Vec<(Vec<v1::Compare>, bool)> = vec![
        (vec![cmp(b"c", Target::ValueEquals, b"1")], true),
        (vec![cmp(b"c", Target::ValueEquals, b"2")], false),
        (vec![cmp(b"c", Target::ValueEquals, b"")], false),
        (vec![cmp(b"nope", Target::ValueEquals, b"")], false),
        (vec![cmp(b"c", Target::Present, b"")], true),
        (vec![cmp(b"nope", Target::Present, b"")], false),
        (vec![cmp(b"nope", Target::Absent, b"")], true),
        (
            vec![
                cmp(b"c", Target::Present, b""),
                cmp(b"nope", Target::Absent, b""),
                cmp(b"c", Target::ValueEquals, b"1"),
            ],
            true,
        ),
        (
            vec![
                cmp(b"c", Target::Present, b""),
                cmp(b"nope", Target::Present, b""),
            ],
            false,
        ),
        (vec![], true),
    ];
    for (compare, holds) in cases {
        let r = c
            .txn(v1::TxnRequest {
                compare: compare.clone(),
                success: vec![get_op(b"c")],
                failure: vec![],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.succeeded, holds, "{compare:?}");
        assert_eq!(r.results.len(), usize::from(holds), "{compare:?}");
    }

    // Ops run in order: put, delete, delete_range, then gets see the result.
    let r = c
        .txn(v1::TxnRequest {
            success: vec![
                put_op(b"x1", b"a"),
                put_op(b"x2", b"b"),
                op(Op::Delete(v1::DeleteRequest { key: b(b"x1") })),
                get_op(b"x1"),
                op(Op::DeleteRange(v1::DeleteRangeRequest {
                    begin: b(b"x"),
                    end: b(b"y"),
                })),
                get_op(b"x2"),
                put_op(b"x3", b"c"),
            ],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got(&r.results[3]), None);
    assert_eq!(got(&r.results[5]), None);
    assert!(matches!(r.results[4].result, Some(OpResult::Delete(_))));
    let xs = range(&mut c, b"x", b"y", 0, false).await.unwrap();
    assert_eq!(xs, vec![(b"x3".to_vec(), b"c".to_vec())]);

    // Limits: the maximum sizes are accepted, one byte more is not.
    let max_key = vec![0xabu8; 10_000];
    let max_value = vec![0xcdu8; 100_000];
    put(&mut c, &max_key, &max_value).await;
    assert!(
        get(&mut c, &max_key).await == Some(max_value.clone()),
        "the longest key reads back"
    );
    let too_long_key = vec![0xabu8; 10_001];
    assert_invalid(
        c.put(v1::PutRequest {
            key: b(&too_long_key),
            value: b(b"v"),
        })
        .await,
        "key too large",
    );
    assert_invalid(
        c.get(v1::GetRequest {
            key: b(&too_long_key),
        })
        .await,
        "key too large",
    );
    assert_invalid(
        c.put(v1::PutRequest {
            key: b(b"k"),
            value: vec![0u8; 100_001].into(),
        })
        .await,
        "value too large",
    );
    // The empty key is a key (as in the Rust client); the system key space is not open.
    c.put(v1::PutRequest {
        key: Bytes::new(),
        value: b(b"empty"),
    })
    .await
    .expect("put of the empty key");
    assert_eq!(get(&mut c, b"").await, Some(b"empty".to_vec()));
    assert_invalid(
        c.put(v1::PutRequest {
            key: b(b"\xff/config"),
            value: b(b"v"),
        })
        .await,
        "system key space",
    );
    assert_invalid(
        range(&mut c, &too_long_key, b"", 0, false).await,
        "key too large",
    );
    let big: Vec<v1::TxnOp> = (0..101u32)
        .map(|i| put_op(&i.to_be_bytes(), &max_value))
        .collect();
    assert_invalid(
        c.txn(v1::TxnRequest {
            success: big,
            ..Default::default()
        })
        .await,
        "transaction too large",
    );
    assert_invalid(
        c.txn(v1::TxnRequest {
            failure: vec![get_op(b"k"); 10_001],
            ..Default::default()
        })
        .await,
        "too many operations in `failure`",
    );
    assert_invalid(
        c.txn(v1::TxnRequest {
            success: vec![v1::TxnOp { op: None }],
            ..Default::default()
        })
        .await,
        "`success[0]` has no operation",
    );
    assert_invalid(
        c.txn(v1::TxnRequest {
            compare: vec![v1::Compare {
                key: b(b"k"),
                target: 9,
                value: Bytes::new(),
            }],
            ..Default::default()
        })
        .await,
        "`compare[0].target` is 9",
    );
    // Nothing of the refused requests was written.
    assert_eq!(get(&mut c, b"k").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_txn_increments_of_one_counter_sum_exactly() {
    const TASKS: u32 = 8;
    const INCREMENTS: u32 = 10;
    let cluster = TestCluster::start(3, 2).await;
    let key: &[u8] = b"\x80counter";
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let mut c = kv(&cluster);
        tasks.push(tokio::spawn(async move {
            let mut failed_compares = 0u32;
            let mut current: Option<Vec<u8>> = None;
            for _ in 0..INCREMENTS {
                loop {
                    let n: u64 = match &current {
                        Some(v) => String::from_utf8_lossy(v).parse().expect("a number"),
                        None => 0,
                    };
                    let compare = match &current {
                        Some(v) => cmp(key, Target::ValueEquals, v),
                        None => cmp(key, Target::Absent, b""),
                    };
                    let next = (n + 1).to_string().into_bytes();
                    let r = c
                        .txn(v1::TxnRequest {
                            compare: vec![compare],
                            success: vec![put_op(key, &next)],
                            failure: vec![get_op(key)],
                        })
                        .await;
                    match r {
                        Ok(r) => {
                            let r = r.into_inner();
                            if r.succeeded {
                                current = Some(next);
                                break;
                            }
                            failed_compares += 1;
                            current = got(&r.results[0]);
                        }
                        // Conflicts that used up the server's retries: try again.
                        Err(s) if s.code() == Code::Aborted => {}
                        Err(s) => panic!("txn failed: {s:?}"),
                    }
                }
            }
            failed_compares
        }));
    }
    let mut failed = 0;
    for t in tasks {
        failed += t.await.expect("task");
    }
    let mut c = kv(&cluster);
    let total = get(&mut c, key).await.expect("counter exists");
    assert_eq!(
        String::from_utf8_lossy(&total),
        (TASKS * INCREMENTS).to_string(),
        "every increment counted exactly once ({failed} failed compares on the way)"
    );
}
