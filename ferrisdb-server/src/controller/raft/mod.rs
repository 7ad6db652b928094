//! The controller group's replication layer: the cluster state replicated through Raft
//! (the openraft library) among the controller replicas.
//!
//! - [`journal`]: the durable Raft log, vote and committed pointer (one checksummed file).
//! - [`log_store`]: openraft's log storage over the journal.
//! - [`state_machine`]: the replicated cluster state ([`super::metadata::Metadata`]) that
//!   committed [`Command`]s change, and its snapshots.
//! - [`network`]: Raft messages to the other replicas over gRPC (`ControllerGroup`).
//! - [`peer_service`]: the `ControllerGroup` service receiving them.
//! - [`node_id`]: the replica's stable node id.
//! - [`runtime`]: the async runtime openraft runs on (tokio, FerrisDB's random source).
//!
//! [`super::group`] forms a group or joins one and follows leadership.

pub mod journal;
pub mod log_store;
pub mod network;
pub mod node_id;
pub mod peer_service;
pub mod runtime;
pub mod state_machine;

use serde::{Deserialize, Serialize};

use super::membership::WorkerRecord;
use super::metadata::{Generation, Metadata};

/// A controller replica's id in its group.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The openraft type configuration of the controller group.
    pub TypeConfig:
        D = Command,
        R = CommandOutcome,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Vec<u8>,
        AsyncRuntime = runtime::RaftRuntime,
);

/// A Raft log entry of the controller group.
pub type Entry = openraft::Entry<TypeConfig>;
/// The Raft instance of one controller replica.
pub type ControllerRaft = openraft::Raft<TypeConfig>;

/// A change to the replicated cluster state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Creates the cluster: its identity and layout (or the state of a single controller's
    /// metadata file being imported). Applied only to a state that has no cluster yet; a later
    /// one (a second leader that had not seen the first yet) changes nothing.
    CreateCluster(Metadata),
    /// A worker registered: a new worker, or a known one at a new address.
    RegisterWorker(WorkerRecord),
    /// Written by releases before recovery generations (one per coordinator start); kept so
    /// their journals still replay. Changes nothing.
    NewGeneration {
        /// The registered coordinator's worker id.
        coordinator_id: String,
        /// Its process incarnation.
        incarnation: String,
    },
    /// A recovery takes `epoch`, which must be the one after every epoch begun so far.
    BeginRecovery {
        /// The new generation's epoch.
        epoch: u64,
    },
    /// A recovery finished: its generation (whose epoch must be the newest one begun)
    /// replaces the current one.
    CompleteRecovery {
        /// The new generation.
        generation: Generation,
        /// Log servers the leader found unreachable and outside the new generation: their
        /// records are dropped (one that comes back registers again).
        forget_logs: Vec<String>,
    },
    /// An operator excluded storage servers (their shards move away, they receive none) or
    /// included them again.
    SetExcluded {
        /// Worker ids of registered storage servers.
        ids: Vec<String>,
        /// Exclude (true) or include again (false).
        excluded: bool,
    },
    /// The data distributor changed the shard map (a move begun, finished or given up, a
    /// split or a merge): applied only over the map version it was computed from, so two
    /// leaders' decisions never interleave.
    UpdateShardMap {
        /// The shard-map version the change was computed from; the new map gets the next.
        based_on: u64,
        /// The new shards.
        shards: Vec<super::metadata::ShardRecord>,
    },
}

/// What applying a [`Command`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CommandOutcome {
    /// Why the command was refused (`None`: applied).
    pub refused: Option<String>,
}
