//! Fuzzing entry point over protobuf request handling: arbitrary bytes are decoded as every
//! request message the services accept and each decoded message is run through the
//! validation in [`crate::convert`] that the servers apply, then through the error ↔ status
//! mapping. It must never panic. Used by the `fuzz/` target `proto_requests` and by the corpus
//! smoke test; not part of the protocol's API.
//!
//! Invariant checked on the way: a request that validates converts back to a wire message
//! that validates again to the same value.

use bytes::Bytes;
use ferrisdb_core::{Commit, Error, KeyRange, Mutation, ShardMap, VersionedMutations, limits};
use prost::Message;

use crate::convert::{KvTxn, RangeQuery, kv_key, kv_range, kv_value, ranges_from_proto};
use crate::status::{from_status, to_status};
use crate::v1;

/// Decodes `data` as each request message and validates whatever decodes.
pub fn requests(data: &[u8]) {
    if let Ok(req) = v1::CommitRequest::decode(data)
        && let Ok(commit) = Commit::try_from(req).map_err(status_round_trip)
    {
        let again = Commit::try_from(v1::CommitRequest::from(commit.clone()));
        assert_eq!(again.ok(), Some(commit), "a valid commit must round-trip");
    }
    if let Ok(req) = v1::VersionedMutations::decode(data)
        && let Ok(batch) = VersionedMutations::try_from(req).map_err(status_round_trip)
    {
        let again = VersionedMutations::try_from(v1::VersionedMutations::from(batch.clone()));
        assert_eq!(again.ok(), Some(batch), "valid mutations must round-trip");
    }
    if let Ok(req) = v1::PullMutationsRequest::decode(data) {
        let _ = ranges_from_proto(req.ranges).map_err(status_round_trip);
    }
    if let Ok(req) = v1::TxnRequest::decode(data) {
        let _ = KvTxn::try_from(req).map_err(status_round_trip);
    }
    if let Ok(req) = v1::RangeRequest::decode(data) {
        let _ = RangeQuery::try_from(req).map_err(status_round_trip);
    }
    if let Ok(req) = v1::PutRequest::decode(data) {
        let _ = kv_key(req.key)
            .and_then(|_| kv_value(req.value))
            .map_err(status_round_trip);
    }
    if let Ok(req) = v1::DeleteRangeRequest::decode(data) {
        let _ = kv_range(req.begin, req.end).map_err(status_round_trip);
    }
    if let Ok(req) = v1::StorageGetRangeRequest::decode(data) {
        let _ = limits::check_range_begin(&req.begin)
            .and_then(|()| limits::check_range_end(&req.end))
            .and_then(|()| KeyRange::new(req.begin, req.end))
            .map_err(status_round_trip);
    }
    if let Ok(req) = v1::Mutation::decode(data)
        && let Ok(m) = Mutation::try_from(req).map_err(status_round_trip)
    {
        assert_eq!(
            Mutation::try_from(v1::Mutation::from(m.clone())).ok(),
            Some(m),
            "a valid mutation must round-trip"
        );
    }
    if let Ok(map) = v1::ShardMap::decode(data)
        && let Ok(map) = ShardMap::try_from(map).map_err(status_round_trip)
    {
        assert!(
            ShardMap::try_from(v1::ShardMap::from(&map)).is_ok(),
            "a valid shard map must round-trip"
        );
    }
    for decoded in [
        v1::RegisterWorkerRequest::decode(data).map(|r| r.encoded_len()),
        v1::HeartbeatRequest::decode(data).map(|r| r.encoded_len()),
        v1::GetResponse::decode(data).map(|r| r.encoded_len()),
    ] {
        std::hint::black_box(decoded.ok());
    }
    let _ = kv_key(Bytes::copy_from_slice(data)).map_err(status_round_trip);
}

/// Maps `err` to a status and back, as a server and a client would; returns the error.
fn status_round_trip(err: Error) -> Error {
    let status = to_status(err);
    std::hint::black_box(from_status(&status));
    from_status(&status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_empty_garbage_and_valid_requests() {
        requests(&[]);
        requests(&[0x0f, 0xff, 0x00]);
        let commit = v1::CommitRequest {
            read_version: 7,
            mutations: vec![v1::Mutation::from(Mutation::Set {
                key: Bytes::from_static(b"k"),
                value: Bytes::from_static(b"v"),
            })],
            read_conflict_ranges: vec![],
            write_conflict_ranges: vec![],
            ..Default::default()
        };
        requests(&commit.encode_to_vec());
    }
}
