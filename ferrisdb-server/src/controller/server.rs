//! Runs a controller process's gRPC server: the `ClusterController` service, `grpc.health.v1`
//! and reflection, until a shutdown signal; plus a background task that logs health changes.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferrisdb_core::Error;
use ferrisdb_proto::v1::cluster_controller_server::ClusterControllerServer;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::RoutesBuilder;

use super::cluster::Controller;
use super::config::ControllerConfig;
use super::service::ControllerService;
use crate::grpc;

/// How long a shutdown waits for open connections before the server stops regardless.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Opens the data directory, binds `config.listen` and serves until `shutdown` completes.
pub async fn serve(
    config: ControllerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let controller = Arc::new(Controller::open(&config).await?);
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| Error::io(format!("binding {}", config.listen), e))?;
    serve_on(listener, controller, shutdown).await
}

/// Serves `controller` on an already bound listener until `shutdown` completes.
pub async fn serve_on(
    listener: TcpListener,
    controller: Arc<Controller>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<ClusterControllerServer<ControllerService>>()
        .await;

    let mut routes = RoutesBuilder::default();
    routes.add_service(health_service);
    routes.add_service(ClusterControllerServer::new(ControllerService::new(
        controller.clone(),
    )));
    grpc::add_reflection(&mut routes)
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
    tracing::info!(address = ?addr, "cluster controller serving");
    let (stopping_tx, stopping_rx) = oneshot::channel::<()>();
    let shutdown = async move {
        shutdown.await;
        let _ = stopping_tx.send(());
    };
    let server = tonic::transport::Server::builder()
        .add_routes(routes.routes())
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown);
    // Graceful shutdown waits for open connections; a stuck client must not keep us alive.
    let grace_expired = async move {
        if stopping_rx.await.is_ok() {
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let result = tokio::select! {
        r = server => r.map_err(|e| Error::Unavailable(format!("gRPC server failed: {e}"))),
        () = grace_expired => {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "connections still open after the grace period; stopping anyway");
            Ok(())
        }
    };
    sweeper.abort();
    tracing::info!("cluster controller stopped");
    result
}
