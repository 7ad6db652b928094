//! Histories of client operations and the checkers that judge them.
//!
//! The fault-injection tests (`ferrisdb-server/tests/faults.rs`) record every transaction a
//! client runs as an *invocation* and a *completion* ([`history`]), then hand the history to
//! the checkers here:
//!
//! - [`list_append`]: an Elle-style checker for list-append transactions: per-key version
//!   orders, write-write / write-read / read-write dependencies, cycles classified as G0, G1c,
//!   G-single or G2, aborted reads (G1a), intermediate reads (G1b), lost appends, stale reads
//!   and duplicates;
//! - [`bank`]: every snapshot read of the accounts sums to the same total, no balance negative;
//! - [`durability`]: acknowledged multi-key writes are wholly present, commit-unknown ones
//!   wholly present or wholly absent, failed ones absent;
//! - [`edn`]: the history in Jepsen's EDN format, so Elle can check it independently.
//!
//! This crate does no I/O and depends on nothing: it is pure logic, unit-tested with
//! hand-built histories containing each anomaly.

#![deny(missing_docs)]

pub mod bank;
pub mod durability;
pub mod edn;
pub mod history;
pub mod list_append;

pub use history::{History, MicroOp, Op, OpType, Outcome, Recorder, Txn};
