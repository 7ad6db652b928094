//! The storage-engine benchmark: db_bench-style workloads written once, used by `ferrisdb
//! bench engine` (FerrisDB's engine alone) and by `bench/peers` (FerrisDB beside RocksDB and
//! fjall, same data, same workloads).
//!
//! [`data`] makes the keys and values (identical for every engine and run), [`engine`] says
//! what a workload needs from an engine ([`BenchEngine`]) and wraps FerrisDB's
//! ([`FerrisEngine`]), [`workloads`] runs fillseq / fillrandom / overwrite ([`fill`]),
//! readrandom, seekrandom, readseq and readwhilewriting against any of them; [`clear_range`]
//! (FerrisDB's engine only) times one range delete of everything while a writer runs;
//! [`memory`] splits the process's resident memory into the engine's parts and the rest.

pub mod clear_range;
pub mod data;
pub mod engine;
pub mod memory;
pub mod workloads;

pub use data::{KEY_LEN, ValueGen, check_keys, make_key, permutation};
pub use engine::{BenchEngine, BenchError, FerrisEngine, WriteStats};
pub use workloads::{
    Settings, WorkloadResult, fill, histogram, read_random, read_seq, read_while_writing,
    seek_random, write_keys,
};
