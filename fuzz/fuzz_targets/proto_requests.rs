//! Fuzz target `proto_requests`: every request message, validated through ferrisdb_proto::convert
//! (`ferrisdb_proto::fuzzing::requests`, which must never panic).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ferrisdb_proto::fuzzing::requests(data);
});
