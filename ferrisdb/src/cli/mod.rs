//! The `ferrisdb` command-line tool's subcommands, one module each.

pub mod bench_engine;
pub mod cluster_up;
