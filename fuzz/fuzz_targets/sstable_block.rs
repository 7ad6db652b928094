//! Fuzz target `sstable_block`: SSTable block contents, and the bytes as a whole table image
//! (`ferrisdb_storage::fuzzing::sstable_block`, which must never panic).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ferrisdb_storage::fuzzing::sstable_block(data);
});
