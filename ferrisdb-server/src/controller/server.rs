//! Runs a controller replica's gRPC server: the `ClusterController` service (served by the
//! leader), the `ControllerGroup` service (Raft among the replicas), `grpc.health.v1` and
//! reflection, until a shutdown signal; plus background tasks that form or join the group,
//! create the cluster when leading a new group, recover the transaction system when it needs
//! it (`recovery`), and log health changes. A replica whose Raft node stopped on a storage
//! failure reports it (`grpc.health.v1` `NOT_SERVING`), waits until its data directory accepts
//! writes again and exits, to be restarted and replay its journal (as the other roles do,
//! `health::exit_when_writable`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use ferrisdb_core::Error;
use ferrisdb_proto::transport::{self, Listener};
use ferrisdb_proto::v1::cluster_controller_server::ClusterControllerServer;
use ferrisdb_proto::v1::controller_group_server::ControllerGroupServer;
use tonic::service::RoutesBuilder;

use super::cluster::Controller;
use super::config::ControllerConfig;
use super::raft::peer_service::PeerService;
use super::service::ControllerService;
use crate::grpc;
use crate::health::{self, RoleHealth};

/// Health problem source of a stopped Raft node.
const RAFT_STOPPED: &str = "controller journal";

/// Opens the data directory, binds `config.listen` and serves until `shutdown` completes.
pub async fn serve(
    config: ControllerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    serve_with_fs(config, ferrisdb_storage::vfs::os(), shutdown).await
}

/// [`serve`] with `config.data_dir` on the file system `fs` (the simulator's disk, in
/// simulation).
pub async fn serve_with_fs(
    config: ControllerConfig,
    fs: ferrisdb_storage::vfs::SharedFs,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    serve_with(config, fs, Arc::new(crate::clock::SystemClock), shutdown).await
}

/// [`serve_with_fs`], reading the wall clock from `clock` (the simulated machine's, in
/// simulation).
pub async fn serve_with(
    config: ControllerConfig,
    fs: ferrisdb_storage::vfs::SharedFs,
    clock: Arc<dyn crate::clock::Clock>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let controller = Arc::new(Controller::open_with(&config, fs, clock).await?);
    let listener = transport::bind(config.listen)
        .await
        .map_err(|e| Error::io(format!("binding {}", config.listen), e))?;
    let health = RoleHealth::new();
    let limit = grpc::connection_limit(config.max_connections, &health);
    serve_on(listener, controller, health, limit, shutdown).await
}

/// Serves `controller` on an already bound listener, within the connection budget `limit`,
/// until `shutdown` completes, forming or joining its group meanwhile; `health` drives
/// `grpc.health.v1`.
pub async fn serve_on(
    listener: Listener,
    controller: Arc<Controller>,
    health: RoleHealth,
    limit: Arc<grpc::ConnectionLimit>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let health_driver = tokio::spawn(health.drive(
        reporter,
        vec![ferrisdb_proto::v1::cluster_controller_server::SERVICE_NAME],
    ));

    let mut routes = RoutesBuilder::default();
    routes.add_service(health_service);
    routes.add_service(ClusterControllerServer::new(ControllerService::new(
        controller.clone(),
    )));
    routes.add_service(ControllerGroupServer::new(PeerService::new(
        controller.group().clone(),
    )));
    grpc::add_reflection(
        &mut routes,
        &[
            ferrisdb_proto::v1::cluster_controller_server::SERVICE_NAME,
            ferrisdb_proto::v1::controller_group_server::SERVICE_NAME,
        ],
    )
    .map_err(|e| Error::Internal(format!("building gRPC reflection: {e}")))?;

    let sweeper = tokio::spawn({
        let controller = controller.clone();
        async move {
            let mut tick = tokio::time::interval(controller.heartbeat_interval());
            loop {
                tick.tick().await;
                controller.log_health_changes().await;
            }
        }
    });
    let forming = tokio::spawn({
        let controller = controller.clone();
        async move { controller.form_or_join().await }
    });
    let creator = tokio::spawn({
        let controller = controller.clone();
        async move { controller.create_cluster_when_leading().await }
    });
    let recoverer = tokio::spawn(super::recovery::run(controller.clone()));
    let distributor = tokio::spawn(super::distributor::run(controller.clone()));
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<String>();
    let watchdog = tokio::spawn(exit_after_raft_stopped(
        controller.clone(),
        health.clone(),
        failed_tx,
    ));
    tracing::info!(address = ?addr, node_id = controller.group().node_id(), "cluster controller serving");
    let mut exit_for_restart = None;
    let stop = async {
        tokio::select! {
            () = shutdown => {}
            Ok(reason) = failed_rx => exit_for_restart = Some(reason),
        }
    };
    let result = grpc::serve_until(routes, listener, limit, stop).await;
    watchdog.abort();
    forming.abort();
    creator.abort();
    recoverer.abort();
    distributor.abort();
    controller.group().shutdown().await;
    sweeper.abort();
    health_driver.abort();
    tracing::info!("cluster controller stopped");
    if let Some(reason) = exit_for_restart {
        return Err(Error::Unavailable(format!(
            "{reason}; the data directory accepts writes again: exiting so that the controller \
             is restarted and replays its journal"
        )));
    }
    result
}

/// Waits for the replica's Raft node to stop on its own, reports it as a health problem,
/// waits until the data directory accepts writes again and then sends the reason on `exit`.
async fn exit_after_raft_stopped(
    controller: Arc<Controller>,
    health: RoleHealth,
    exit: tokio::sync::oneshot::Sender<String>,
) {
    let reason = controller.group().stopped().await;
    health.set_problem(
        RAFT_STOPPED,
        format!(
            "{reason}; this replica no longer takes part in the group; it exits to be restarted \
             once its data directory accepts writes again"
        ),
    );
    let data = controller.data_dir().clone();
    // Replaying the journal writes little (a torn tail cut off, at most a fresh header): a
    // margin.
    health::exit_when_writable(data.fs, data.path, |_| 4 << 20).await;
    let _ = exit.send(reason);
}
