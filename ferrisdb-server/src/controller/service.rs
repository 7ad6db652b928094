//! The `ClusterController` gRPC service: validates requests, calls [`Controller`] and maps
//! errors to statuses with `ferrisdb_proto::status`.

use std::sync::Arc;

use ferrisdb_proto::status::to_status;
use ferrisdb_proto::v1;
use ferrisdb_proto::v1::cluster_controller_server::ClusterController;
use tonic::{Request, Response, Status};

use super::cluster::Controller;
use super::membership::WorkerRecord;
use super::wire;

/// The gRPC face of a [`Controller`].
#[derive(Debug, Clone)]
pub struct ControllerService {
    controller: Arc<Controller>,
}

impl ControllerService {
    /// Serves `controller`.
    pub fn new(controller: Arc<Controller>) -> Self {
        ControllerService { controller }
    }

    fn heartbeat_interval_ms(&self) -> u32 {
        u32::try_from(self.controller.heartbeat_interval().as_millis()).unwrap_or(u32::MAX)
    }
}

#[tonic::async_trait]
impl ClusterController for ControllerService {
    async fn register_worker(
        &self,
        request: Request<v1::RegisterWorkerRequest>,
    ) -> Result<Response<v1::RegisterWorkerResponse>, Status> {
        let req = request.into_inner();
        let role = wire::role_from_proto(req.role).map_err(to_status)?;
        let record = WorkerRecord {
            id: req.worker_id,
            role,
            address: req.address,
        };
        let reply = self
            .controller
            .register(record, &req.cluster_id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(v1::RegisterWorkerResponse {
            cluster_id: reply.cluster_id,
            shard_map_version: reply.shard_map_version,
            heartbeat_interval_ms: self.heartbeat_interval_ms(),
            epoch: reply.epoch,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<v1::HeartbeatRequest>,
    ) -> Result<Response<v1::HeartbeatResponse>, Status> {
        let req = request.into_inner();
        let (status, problem) = wire::status_from_proto(req.status);
        let reply = self
            .controller
            .heartbeat(&req.worker_id, status, problem)
            .await
            .map_err(to_status)?;
        Ok(Response::new(v1::HeartbeatResponse {
            shard_map_version: reply.shard_map_version,
            epoch: reply.epoch,
            must_register: reply.must_register,
        }))
    }

    async fn exclude_servers(
        &self,
        request: Request<v1::ExcludeServersRequest>,
    ) -> Result<Response<v1::ExcludeServersResponse>, Status> {
        let req = request.into_inner();
        let servers = self
            .controller
            .exclude(&req.addresses, !req.include)
            .await
            .map_err(to_status)?;
        Ok(Response::new(v1::ExcludeServersResponse {
            servers: servers
                .into_iter()
                .map(|s| v1::ExcludedServer {
                    worker_id: s.id,
                    address: s.address,
                    excluded: s.excluded,
                    shards: s.shards,
                })
                .collect(),
        }))
    }

    async fn get_cluster_state(
        &self,
        _request: Request<v1::GetClusterStateRequest>,
    ) -> Result<Response<v1::GetClusterStateResponse>, Status> {
        let interval = self.heartbeat_interval_ms();
        let mut state = self
            .controller
            .view(|state, now| wire::cluster_state_to_proto(state, now, interval))
            .await
            .map_err(to_status)?;
        state.controllers = self.controller.group().replica_statuses().await;
        Ok(Response::new(state))
    }
}
