//! Builds the etcd requests the benchmark sends and reads the revisions out of the answers:
//! pure functions, so the shapes (which compare guards which put) are tested without etcd.
//!
//! Read-modify-write on etcd is optimistic, like a FerrisDB transaction: read the keys (which
//! yields each key's `mod_revision`, 0 for a missing key), then one `Txn` whose compares require
//! every `mod_revision` to be unchanged and whose success branch holds the puts. A failed
//! compare (`succeeded == false`) means another client wrote in between: the caller retries.

use bytes::Bytes;

use super::pb::compare::{CompareResult, CompareTarget, TargetUnion};
use super::pb::request_op::Request;
use super::pb::response_op::Response;
use super::pb::{
    Compare, PutRequest, RangeRequest, RangeResponse, RequestOp, TxnRequest, TxnResponse,
};

/// Most operations etcd accepts in one transaction by default (`--max-txn-ops`).
pub const MAX_TXN_OPS: usize = 128;

/// A point read of `key`.
pub fn get(key: Bytes, serializable: bool) -> RangeRequest {
    RangeRequest {
        key,
        serializable,
        ..Default::default()
    }
}

/// A read of at most `limit` keys in `[key, end)`.
pub fn scan(key: Bytes, end: Bytes, limit: usize, serializable: bool) -> RangeRequest {
    RangeRequest {
        key,
        range_end: end,
        limit: i64::try_from(limit).unwrap_or(i64::MAX),
        serializable,
        ..Default::default()
    }
}

/// A write of `key`.
pub fn put(key: Bytes, value: Bytes) -> PutRequest {
    PutRequest {
        key,
        value,
        ..Default::default()
    }
}

/// The guard "`key`'s `mod_revision` is still `revision`" (0 = the key still does not exist).
pub fn unchanged(key: Bytes, revision: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Mod as i32,
        key,
        target_union: Some(TargetUnion::ModRevision(revision)),
        range_end: Bytes::new(),
    }
}

/// One transaction that reads every key in `keys` (linearizable: a transaction goes through
/// consensus), answered in one round trip.
pub fn read_all(keys: &[Bytes]) -> TxnRequest {
    TxnRequest {
        compare: Vec::new(),
        success: keys
            .iter()
            .map(|k| RequestOp {
                request: Some(Request::RequestRange(get(k.clone(), false))),
            })
            .collect(),
        failure: Vec::new(),
    }
}

/// The write half of a read-modify-write: the puts, applied only if every key read is
/// unchanged since (`reads`: key and the `mod_revision` read).
pub fn write_if_unchanged(reads: &[(Bytes, i64)], puts: &[(Bytes, Bytes)]) -> TxnRequest {
    TxnRequest {
        compare: reads
            .iter()
            .map(|(k, rev)| unchanged(k.clone(), *rev))
            .collect(),
        success: puts_ops(puts),
        failure: Vec::new(),
    }
}

/// An unconditional transaction of puts (loading; at most [`MAX_TXN_OPS`] of them).
pub fn put_all(puts: &[(Bytes, Bytes)]) -> TxnRequest {
    TxnRequest {
        compare: Vec::new(),
        success: puts_ops(puts),
        failure: Vec::new(),
    }
}

fn puts_ops(puts: &[(Bytes, Bytes)]) -> Vec<RequestOp> {
    puts.iter()
        .map(|(k, v)| RequestOp {
            request: Some(Request::RequestPut(put(k.clone(), v.clone()))),
        })
        .collect()
}

/// The `mod_revision` of the key a point read returned, 0 if it does not exist.
pub fn mod_revision(resp: &RangeResponse) -> i64 {
    resp.kvs.first().map_or(0, |kv| kv.mod_revision)
}

/// The `mod_revision` of each key read by a [`read_all`] transaction, in order.
pub fn mod_revisions(resp: &TxnResponse, expected: usize) -> Result<Vec<i64>, String> {
    let revisions: Vec<i64> = resp
        .responses
        .iter()
        .filter_map(|op| match &op.response {
            Some(Response::ResponseRange(r)) => Some(mod_revision(r)),
            _ => None,
        })
        .collect();
    if !resp.succeeded || revisions.len() != expected {
        return Err(format!(
            "etcd answered a {expected}-key read transaction with {} range results \
             (succeeded: {})",
            revisions.len(),
            resp.succeeded
        ));
    }
    Ok(revisions)
}

#[cfg(test)]
mod tests {
    use super::super::mvccpb::KeyValue;
    use super::super::pb::ResponseOp;
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn put_of(op: &RequestOp) -> &PutRequest {
        match &op.request {
            Some(Request::RequestPut(p)) => p,
            other => panic!("not a put: {other:?}"),
        }
    }

    #[test]
    fn reads_and_scans_carry_their_consistency_and_bounds() {
        let r = get(b("k"), true);
        assert_eq!((r.key.as_ref(), r.serializable), (&b"k"[..], true));
        assert!(r.range_end.is_empty() && r.limit == 0);
        let s = scan(b("bench/1"), b("bench0"), 100, false);
        assert_eq!(s.range_end, b("bench0"));
        assert_eq!(s.limit, 100);
        assert!(!s.serializable);
    }

    #[test]
    fn write_if_unchanged_guards_each_read_key_by_mod_revision() {
        let t = write_if_unchanged(
            &[(b("k1"), 7), (b("k2"), 0)],
            &[(b("k1"), b("v1")), (b("k2"), b("v2"))],
        );
        assert_eq!(t.compare.len(), 2);
        for (c, (key, rev)) in t.compare.iter().zip([("k1", 7), ("k2", 0)]) {
            assert_eq!(c.key, b(key));
            assert_eq!(c.result, CompareResult::Equal as i32);
            assert_eq!(c.target, CompareTarget::Mod as i32);
            assert_eq!(c.target_union, Some(TargetUnion::ModRevision(rev)));
            assert!(c.range_end.is_empty());
        }
        assert!(t.failure.is_empty(), "a failed compare must write nothing");
        let puts: Vec<_> = t.success.iter().map(put_of).collect();
        assert_eq!(
            puts.iter()
                .map(|p| (p.key.clone(), p.value.clone()))
                .collect::<Vec<_>>(),
            vec![(b("k1"), b("v1")), (b("k2"), b("v2"))]
        );
        assert!(puts.iter().all(|p| !p.prev_kv && p.lease == 0));
    }

    #[test]
    fn read_all_is_one_unguarded_linearizable_transaction() {
        let t = read_all(&[b("a"), b("b")]);
        assert!(t.compare.is_empty() && t.failure.is_empty());
        let keys: Vec<_> = t
            .success
            .iter()
            .map(|op| match &op.request {
                Some(Request::RequestRange(r)) => {
                    assert!(!r.serializable && r.range_end.is_empty());
                    r.key.clone()
                }
                other => panic!("not a range: {other:?}"),
            })
            .collect();
        assert_eq!(keys, vec![b("a"), b("b")]);
        let load = put_all(&[(b("x"), b("1"))]);
        assert!(load.compare.is_empty());
        assert_eq!(put_of(&load.success[0]).key, b("x"));
    }

    #[test]
    fn revisions_come_from_the_range_results_and_missing_keys_are_zero() {
        let found = RangeResponse {
            kvs: vec![KeyValue {
                key: b("a"),
                mod_revision: 42,
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(mod_revision(&found), 42);
        assert_eq!(mod_revision(&RangeResponse::default()), 0);
        let resp = TxnResponse {
            header: None,
            succeeded: true,
            responses: vec![
                ResponseOp {
                    response: Some(Response::ResponseRange(found)),
                },
                ResponseOp {
                    response: Some(Response::ResponseRange(RangeResponse::default())),
                },
            ],
        };
        assert_eq!(mod_revisions(&resp, 2), Ok(vec![42, 0]));
        assert!(mod_revisions(&resp, 3).is_err());
        let failed = TxnResponse {
            succeeded: false,
            ..resp
        };
        assert!(mod_revisions(&failed, 2).is_err());
    }
}
