//! The cluster controller role: a group of replicas (1, 3 or 5) that replicate the cluster's
//! identity, workers and shard map through Raft; the leader runs membership, heartbeats and
//! failure detection and serves the `ClusterController` gRPC service. See
//! `docs/cluster-protocol.md` and `docs/controller-group.md`.
//!
//! Layers, innermost first: [`shard_map`] and [`membership`] (pure data and rules),
//! [`metadata`] (the replicated state and its JSON form), [`state`] (the rules that change
//! it and the leader's view), [`raft`] (replication: journal, state machine, peer network),
//! [`group`] (forming, joining, leadership), [`cluster`] (the [`Controller`] the handlers
//! call), [`recovery`] (the leader's recovery of the transaction system), [`distributor`] (the
//! leader's data distribution: moving shards to heal and balance), [`wire`] (proto conversions), [`service`] (gRPC handlers) and [`server`] (the
//! process's gRPC server).

pub mod cluster;
pub mod config;
pub mod distributor;
pub mod group;
pub mod membership;
pub mod metadata;
pub mod raft;
pub mod recovery;
pub mod server;
pub mod service;
pub mod shard_map;
pub mod state;
pub mod wire;

pub use cluster::Controller;
pub use config::ControllerConfig;
pub use server::{serve, serve_on, serve_with, serve_with_fs};
pub use service::ControllerService;
