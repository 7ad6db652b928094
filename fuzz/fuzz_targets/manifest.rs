//! Fuzz target `manifest`: a whole manifest file and its edits
//! (`ferrisdb_storage::fuzzing::manifest`, which must never panic).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ferrisdb_storage::fuzzing::manifest(data);
});
