//! The `ControllerGroup` gRPC service: Raft messages from the other replicas, `Identify`,
//! and `Join`/`Leave` (served by the leader).
//!
//! Every Raft message is checked before it is decoded: one meant for another node id, or
//! sent by a replica of another cluster (or of none, once this replica belongs to one), is
//! refused with `FAILED_PRECONDITION` naming both.

use ferrisdb_proto::status::to_status;
use ferrisdb_proto::v1;
use ferrisdb_proto::v1::controller_group_server::ControllerGroup as ControllerGroupApi;
use openraft::Snapshot;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Request, Response, Status};

use super::network::SnapshotMessage;
use crate::controller::group::ControllerGroup;
use crate::controller::metadata::Metadata;

/// The gRPC face of a [`ControllerGroup`] towards the other replicas.
#[derive(Debug, Clone)]
pub struct PeerService {
    group: ControllerGroup,
}

impl PeerService {
    /// Serves `group`.
    pub fn new(group: ControllerGroup) -> Self {
        PeerService { group }
    }

    /// Checks the envelope and decodes the payload.
    fn open<T: DeserializeOwned>(&self, message: &v1::RaftMessage) -> Result<T, Status> {
        if message.to_node != self.group.node_id() {
            return Err(Status::failed_precondition(format!(
                "a Raft message for controller node {} reached node {} at {}",
                message.to_node,
                self.group.node_id(),
                self.group.address()
            )));
        }
        // Before the cluster exists (a new group) nobody has an id; once this replica has one,
        // the sender must name the same (a replica of the group that has not applied the
        // cluster's creation yet is caught up by the leader, whose messages carry the id).
        let ours = self.group.cluster_id();
        if !ours.is_empty() && message.cluster_id != ours {
            let theirs = if message.cluster_id.is_empty() {
                "no cluster".to_string()
            } else {
                format!("cluster {}", message.cluster_id)
            };
            return Err(Status::failed_precondition(format!(
                "a Raft message from node {} of {theirs} reached a controller of cluster {ours}",
                message.from_node
            )));
        }
        serde_json::from_slice(&message.payload)
            .map_err(|e| Status::invalid_argument(format!("undecodable Raft message: {e}")))
    }

    fn reply<T: Serialize>(&self, value: &T) -> Result<Response<v1::RaftMessage>, Status> {
        let payload = serde_json::to_vec(value)
            .map_err(|e| Status::internal(format!("encoding a Raft reply: {e}")))?;
        Ok(Response::new(v1::RaftMessage {
            cluster_id: self.group.cluster_id(),
            from_node: self.group.node_id(),
            to_node: 0,
            payload: payload.into(),
        }))
    }

    fn members(&self) -> Vec<v1::ControllerMember> {
        self.group
            .members()
            .into_iter()
            .map(|(node_id, address)| v1::ControllerMember { node_id, address })
            .collect()
    }
}

#[tonic::async_trait]
impl ControllerGroupApi for PeerService {
    async fn append_entries(
        &self,
        request: Request<v1::RaftMessage>,
    ) -> Result<Response<v1::RaftMessage>, Status> {
        let rpc = self.open(request.get_ref())?;
        let answer = self.group.raft().append_entries(rpc).await;
        self.reply(&answer)
    }

    async fn vote(
        &self,
        request: Request<v1::RaftMessage>,
    ) -> Result<Response<v1::RaftMessage>, Status> {
        let rpc = self.open(request.get_ref())?;
        let answer = self.group.raft().vote(rpc).await;
        self.reply(&answer)
    }

    async fn install_snapshot(
        &self,
        request: Request<v1::RaftMessage>,
    ) -> Result<Response<v1::RaftMessage>, Status> {
        let message: SnapshotMessage = self.open(request.get_ref())?;
        let snapshot = Snapshot {
            meta: message.meta,
            snapshot: Box::new(message.data),
        };
        let answer = self
            .group
            .raft()
            .install_full_snapshot(message.vote, snapshot)
            .await;
        self.reply(&answer)
    }

    async fn identify(
        &self,
        _request: Request<v1::IdentifyRequest>,
    ) -> Result<Response<v1::ControllerReplica>, Status> {
        Ok(Response::new(self.group.identify()))
    }

    async fn join(
        &self,
        request: Request<v1::JoinRequest>,
    ) -> Result<Response<v1::JoinResponse>, Status> {
        let req = request.into_inner();
        if req.node_id == 0 {
            return Err(Status::invalid_argument(
                "node id 0 is not a valid replica id",
            ));
        }
        self.group
            .join(req.node_id, req.address)
            .await
            .map_err(to_status)?;
        Ok(Response::new(v1::JoinResponse {
            members: self.members(),
        }))
    }

    async fn create_cluster(
        &self,
        request: Request<v1::CreateClusterRequest>,
    ) -> Result<Response<v1::CreateClusterResponse>, Status> {
        let cluster: Metadata = serde_json::from_slice(&request.get_ref().cluster)
            .map_err(|e| Status::invalid_argument(format!("undecodable cluster: {e}")))?;
        self.group
            .create_cluster(cluster)
            .await
            .map_err(to_status)?;
        Ok(Response::new(v1::CreateClusterResponse {
            cluster_id: self.group.cluster_id(),
        }))
    }

    async fn leave(
        &self,
        request: Request<v1::LeaveRequest>,
    ) -> Result<Response<v1::LeaveResponse>, Status> {
        let req = request.into_inner();
        self.group.leave(&req.address).await.map_err(to_status)?;
        Ok(Response::new(v1::LeaveResponse {
            members: self.members(),
        }))
    }
}
