//! Raft messages to the other controller replicas, over the `ControllerGroup` gRPC service.
//!
//! Each message travels in a [`v1::RaftMessage`] envelope naming the sender's cluster id and
//! node id and the intended receiver's node id, so a receiver refuses messages from another
//! cluster, or meant for another replica, before it decodes them. The payload is the Raft
//! library's message as JSON (controller traffic is small: registrations, heartbeats of the
//! group, shard-map changes). A whole snapshot travels in one message.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ferrisdb_proto::v1;
use ferrisdb_proto::v1::controller_group_client::ControllerGroupClient;
use openraft::error::{
    Fatal, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed, StreamingError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, OptionalSend, Snapshot, SnapshotMeta, Vote};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tonic::transport::Channel;

use super::state_machine::StateMachine;
use super::{NodeId, TypeConfig};

/// A whole snapshot as one message.
#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotMessage {
    /// The sender's vote.
    pub vote: Vote<NodeId>,
    /// What the snapshot covers.
    pub meta: SnapshotMeta<NodeId, BasicNode>,
    /// The snapshot's bytes.
    pub data: Vec<u8>,
}

/// Creates connections to the other replicas; channels are shared per address.
#[derive(Debug, Clone)]
pub struct PeerNetwork {
    node_id: NodeId,
    state: StateMachine,
    source_ip: Option<std::net::IpAddr>,
    channels: Arc<Mutex<BTreeMap<String, Channel>>>,
}

impl PeerNetwork {
    /// The network of replica `node_id`, whose cluster id is read from `state`; connections
    /// leave from `source_ip` when given.
    pub fn new(node_id: NodeId, state: StateMachine, source_ip: Option<std::net::IpAddr>) -> Self {
        PeerNetwork {
            node_id,
            state,
            source_ip,
            channels: Arc::default(),
        }
    }

    /// A client of the replica at `address` (connecting lazily).
    pub fn client(&self, address: &str) -> Result<ControllerGroupClient<Channel>, String> {
        let mut channels = self.channels.lock();
        if let Some(c) = channels.get(address) {
            return Ok(ControllerGroupClient::new(c.clone()));
        }
        let endpoint = crate::worker::session::endpoint(address)
            .map_err(|e| e.to_string())?
            .connect_timeout(Duration::from_millis(500))
            .local_address(self.source_ip)
            .tcp_nodelay(true);
        let channel = ferrisdb_proto::transport::channel(&endpoint);
        channels.insert(address.to_string(), channel.clone());
        Ok(ControllerGroupClient::new(channel))
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerConnection {
        PeerConnection {
            network: self.clone(),
            target,
            address: node.addr.clone(),
        }
    }
}

/// The connection to one replica.
#[derive(Debug)]
pub struct PeerConnection {
    network: PeerNetwork,
    target: NodeId,
    address: String,
}

/// Why a call failed before an answer arrived.
#[derive(Debug, thiserror::Error)]
#[error("controller replica {address}: {reason}")]
struct CallError {
    address: String,
    reason: String,
    unreachable: bool,
}

#[derive(Clone, Copy)]
enum Rpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

impl PeerConnection {
    /// Sends `message`, returns the decoded answer.
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        rpc: Rpc,
        message: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        let fail = |reason: String, unreachable: bool| CallError {
            address: self.address.clone(),
            reason,
            unreachable,
        };
        let payload = serde_json::to_vec(message)
            .map_err(|e| fail(format!("encoding a Raft message: {e}"), false))?;
        let cluster_id = self
            .network
            .state
            .read(|s| s.cluster.as_ref().map(|c| c.cluster_id.clone()))
            .unwrap_or_default();
        let mut request = tonic::Request::new(v1::RaftMessage {
            cluster_id,
            from_node: self.network.node_id,
            to_node: self.target,
            payload: payload.into(),
        });
        request.set_timeout(timeout);
        let mut client = self
            .network
            .client(&self.address)
            .map_err(|e| fail(e, true))?;
        let reply = match rpc {
            Rpc::AppendEntries => client.append_entries(request).await,
            Rpc::Vote => client.vote(request).await,
            Rpc::InstallSnapshot => client.install_snapshot(request).await,
        }
        .map_err(|s| {
            let unreachable = matches!(
                s.code(),
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
            );
            fail(format!("{:?}: {}", s.code(), s.message()), unreachable)
        })?;
        serde_json::from_slice(&reply.into_inner().payload)
            .map_err(|e| fail(format!("undecodable Raft reply: {e}"), false))
    }

    fn rpc_error<E: std::error::Error>(
        &self,
        e: CallError,
    ) -> RPCError<NodeId, BasicNode, RaftError<NodeId, E>> {
        if e.unreachable {
            RPCError::Unreachable(Unreachable::new(&e))
        } else {
            RPCError::Network(NetworkError::new(&e))
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let answer: Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>> = self
            .call(Rpc::AppendEntries, &rpc, option.hard_ttl())
            .await
            .map_err(|e| self.rpc_error(e))?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let answer: Result<VoteResponse<NodeId>, RaftError<NodeId>> = self
            .call(Rpc::Vote, &rpc, option.hard_ttl())
            .await
            .map_err(|e| self.rpc_error(e))?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote<NodeId>,
        snapshot: Snapshot<TypeConfig>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let message = SnapshotMessage {
            vote,
            meta: snapshot.meta,
            data: *snapshot.snapshot,
        };
        let sent = self.call::<_, Result<SnapshotResponse<NodeId>, Fatal<NodeId>>>(
            Rpc::InstallSnapshot,
            &message,
            option.hard_ttl(),
        );
        let answer = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            answer = sent => answer,
        };
        match answer {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(fatal)) => Err(StreamingError::RemoteError(RemoteError::new(
                self.target,
                fatal,
            ))),
            Err(e) if e.unreachable => Err(StreamingError::Unreachable(Unreachable::new(&e))),
            Err(e) => Err(StreamingError::Network(NetworkError::new(&e))),
        }
    }
}
