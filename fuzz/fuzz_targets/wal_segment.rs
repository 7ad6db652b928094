//! Fuzz target `wal_segment`: a whole WAL segment file, then each record as a write batch
//! (`ferrisdb_storage::fuzzing::wal_segment`, which must never panic).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ferrisdb_storage::fuzzing::wal_segment(data);
});
