//! What every non-controller process does towards the cluster controller: keep a stable
//! worker id in its data directory, register, heartbeat with its role's status, re-register
//! when the controller asks (e.g. after a controller restart), and fetch the cluster state
//! (coordinator address, shard map) when the shard map's version changes.
//!
//! The controller may be down for a while: registration and heartbeats retry in the
//! background and never stop the process from serving.

mod identity;
pub mod session;

pub use identity::{DataDir, load_cluster_id, load_or_create_worker_id, store_cluster_id};
pub use session::{ClusterView, ControllerSession, StatusSource, endpoint, set_source_ip};
