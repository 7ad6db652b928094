//! The cluster controller role: membership, heartbeats and failure detection, the shard map
//! and its bootstrap, persistence of the cluster's identity, and the `ClusterController` gRPC
//! service. See `docs/cluster-protocol.md`.
//!
//! Layers, innermost first: [`shard_map`] and [`membership`] (pure data and rules),
//! [`state`] (the state machine with the bootstrap rule), [`metadata`] (the atomic metadata
//! file), [`cluster`] (the locked, persistent [`Controller`]), [`wire`] (proto conversions),
//! [`service`] (gRPC handlers) and [`server`] (the process's gRPC server).

pub mod cluster;
pub mod config;
pub mod membership;
pub mod metadata;
pub mod server;
pub mod service;
pub mod shard_map;
pub mod state;
pub mod wire;

pub use cluster::Controller;
pub use config::ControllerConfig;
pub use server::{serve, serve_on};
pub use service::ControllerService;
