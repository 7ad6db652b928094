//! The storage server role: one LSM engine ([`ferrisdb_storage::engine::Engine`]) holding
//! the shards the controller assigned to this server.
//!
//! - [`puller`] pulls committed mutations of its ranges from the coordinator's log in version
//!   order and applies each version atomically ([`apply`] resolves atomic operations);
//! - [`service`] serves point and range reads at a read version;
//! - [`progress`] tracks the applied version and the owned ranges;
//! - [`handoff`] takes shards over ([`fetch`]) and gives them up; [`purge`] gives back the
//!   disk space of those given up; [`sizes`] measures the shards held;
//! - a GC task keeps the engine's horizon one MVCC window behind the applied version.

pub mod apply;
pub mod fetch;
pub mod handoff;
pub mod progress;
pub mod puller;
pub mod purge;
pub mod server;
pub mod service;
pub mod sizes;

pub use server::{StorageConfig, serve};
