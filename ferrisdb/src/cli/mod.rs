//! The `ferrisdb` command-line tool's subcommands, one module each, plus the shared pieces:
//! argument definitions, the cluster connection, the shell language and tables.

pub mod args;
pub mod bench;
pub mod bench_engine;
pub mod cluster_up;
pub mod command;
pub mod connect;
pub mod controllers;
pub mod exclude;
pub mod exec;
pub mod session;
pub mod shell;
pub mod status;
pub mod table;
