//! FerrisDB's server roles. Each role runs as its own binary and talks gRPC:
//! the cluster controller ([`controller`], binary `ferrisdb-controller`), the transaction
//! coordinator ([`coordinator`], binary `ferrisdb-coordinator`), the log server ([`log`],
//! binary `ferrisdb-log-server`), the storage server ([`storage`], binary
//! `ferrisdb-storage-server`) and the gateway serving the public APIs ([`gateway`], binary
//! `ferrisdb-gateway`).
//! The internal protocol is described in `docs/cluster-protocol.md`.

#![deny(missing_docs)]

pub mod clock;
pub mod controller;
pub mod coordinator;
pub mod exec;
pub mod gateway;
pub mod grpc;
pub mod health;
pub mod log;
pub mod resources;
pub mod runtime;
pub mod storage;
pub mod worker;
