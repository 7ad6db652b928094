use bytes::Bytes;
use ferrisdb_core::{Error, limits};

use super::*;
use crate::v1;
use crate::v1::txn_op::Op;

fn put(key: &[u8], value: &[u8]) -> v1::TxnOp {
    v1::TxnOp {
        op: Some(Op::Put(v1::PutRequest {
            key: Bytes::copy_from_slice(key),
            value: Bytes::copy_from_slice(value),
        })),
    }
}

fn compare(key: &[u8], target: i32, value: &[u8]) -> v1::Compare {
    v1::Compare {
        key: Bytes::copy_from_slice(key),
        target,
        value: Bytes::copy_from_slice(value),
    }
}

fn message(err: Error) -> String {
    err.to_string()
}

#[test]
fn a_valid_txn_converts_every_op_kind() {
    let req = v1::TxnRequest {
        compare: vec![
            compare(b"a", v1::compare::Target::ValueEquals as i32, b"1"),
            compare(b"b", v1::compare::Target::Absent as i32, b""),
            compare(b"c", v1::compare::Target::Present as i32, b""),
        ],
        success: vec![
            put(b"a", b"2"),
            v1::TxnOp {
                op: Some(Op::Get(v1::GetRequest { key: "a".into() })),
            },
            v1::TxnOp {
                op: Some(Op::Delete(v1::DeleteRequest { key: "b".into() })),
            },
            v1::TxnOp {
                op: Some(Op::DeleteRange(v1::DeleteRangeRequest {
                    begin: "x".into(),
                    end: Bytes::new(),
                })),
            },
        ],
        failure: vec![],
    };
    let txn = KvTxn::try_from(req).unwrap();
    assert_eq!(
        txn.compares[0].target,
        CompareTarget::ValueEquals("1".into())
    );
    assert_eq!(txn.compares[1].target, CompareTarget::Absent);
    assert_eq!(txn.compares[2].target, CompareTarget::Present);
    assert_eq!(txn.success.len(), 4);
    assert!(matches!(&txn.success[3], KvOp::DeleteRange(r) if r.is_unbounded()));
    // a, 1, b, c + a, 2, a, b, x
    assert_eq!(txn.size(), 4 + 5);
}

#[test]
fn compare_targets_hold_as_documented() {
    let eq = CompareTarget::ValueEquals("v".into());
    assert!(eq.holds(Some(b"v")));
    assert!(!eq.holds(Some(b"w")));
    assert!(!eq.holds(None));
    let empty = CompareTarget::ValueEquals(Bytes::new());
    assert!(empty.holds(Some(b"")), "an empty value is a value");
    assert!(!empty.holds(None), "an absent key has no value");
    assert!(CompareTarget::Absent.holds(None));
    assert!(!CompareTarget::Absent.holds(Some(b"")));
    assert!(CompareTarget::Present.holds(Some(b"")));
    assert!(!CompareTarget::Present.holds(None));
}

#[test]
fn oversized_keys_and_values_are_rejected_and_the_empty_key_is_a_key() {
    // The empty key is valid, as in the Rust client and FoundationDB.
    KvTxn::try_from(v1::TxnRequest {
        success: vec![put(b"ok", b""), put(b"", b"v")],
        ..Default::default()
    })
    .unwrap();

    let big_key = vec![b'k'; limits::MAX_KEY_BYTES + 1];
    let err = KvTxn::try_from(v1::TxnRequest {
        failure: vec![put(&big_key, b"v")],
        ..Default::default()
    })
    .unwrap_err();
    assert!(
        matches!(err, Error::KeyTooLarge { len: 10_001, .. }),
        "{err}"
    );

    let big_value = vec![b'v'; limits::MAX_VALUE_BYTES + 1];
    let err = KvTxn::try_from(v1::TxnRequest {
        compare: vec![compare(b"k", 0, &big_value)],
        ..Default::default()
    })
    .unwrap_err();
    assert!(matches!(err, Error::ValueTooLarge { .. }), "{err}");

    assert!(kv_key(Bytes::new()).is_ok(), "the empty key is a key");
    assert!(kv_key(vec![0u8; limits::MAX_KEY_BYTES + 1].into()).is_err());
    assert!(kv_key(vec![0u8; limits::MAX_KEY_BYTES].into()).is_ok());
    assert!(kv_value(vec![0u8; limits::MAX_VALUE_BYTES].into()).is_ok());
}

#[test]
fn missing_ops_unknown_targets_and_inverted_ranges_are_rejected() {
    let err = KvTxn::try_from(v1::TxnRequest {
        success: vec![v1::TxnOp { op: None }],
        ..Default::default()
    })
    .unwrap_err();
    assert!(message(err).contains("`success[0]` has no operation"));

    let err = KvTxn::try_from(v1::TxnRequest {
        compare: vec![compare(b"k", 7, b"")],
        ..Default::default()
    })
    .unwrap_err();
    assert!(message(err).contains("`compare[0].target` is 7"));

    let err = KvTxn::try_from(v1::TxnRequest {
        failure: vec![v1::TxnOp {
            op: Some(Op::DeleteRange(v1::DeleteRangeRequest {
                begin: "z".into(),
                end: "a".into(),
            })),
        }],
        ..Default::default()
    })
    .unwrap_err();
    assert!(matches!(&err, Error::InvalidRange(m) if m.contains("`failure[0].delete_range`")));

    let err = RangeQuery::try_from(v1::RangeRequest {
        begin: "b".into(),
        end: "a".into(),
        limit: 0,
        reverse: false,
    })
    .unwrap_err();
    assert!(matches!(err, Error::InvalidRange(_)));
}

#[test]
fn too_many_ops_and_too_many_bytes_are_rejected() {
    let ops = vec![put(b"k", b""); limits::MAX_TXN_OPS + 1];
    let err = KvTxn::try_from(v1::TxnRequest {
        success: ops,
        ..Default::default()
    })
    .unwrap_err();
    assert!(message(err).contains("too many operations in `success`: 10001"));

    let value = vec![0u8; limits::MAX_VALUE_BYTES];
    let ops = vec![put(b"k", &value); 99];
    assert!(
        KvTxn::try_from(v1::TxnRequest {
            success: ops.clone(),
            ..Default::default()
        })
        .is_ok(),
        "99 values of the maximum size plus keys fit"
    );
    let err = KvTxn::try_from(v1::TxnRequest {
        success: ops.clone(),
        failure: vec![put(b"k", &value)],
        ..Default::default()
    })
    .unwrap_err();
    assert!(matches!(err, Error::TransactionTooLarge { .. }), "{err}");
}

#[test]
fn range_queries_map_a_zero_limit_to_none() {
    let q = RangeQuery::try_from(v1::RangeRequest {
        begin: Bytes::new(),
        end: Bytes::new(),
        limit: 0,
        reverse: true,
    })
    .unwrap();
    assert!(q.range.is_unbounded());
    assert_eq!(q.limit, None);
    assert!(q.reverse);
    let q = RangeQuery::try_from(v1::RangeRequest {
        begin: "a".into(),
        end: "a".into(),
        limit: 3,
        reverse: false,
    })
    .unwrap();
    assert!(q.range.is_empty());
    assert_eq!(q.limit, Some(3));
}
