//! Runs a coordinator process: opens the data directory, serves `TransactionCoordinator`, the
//! public `KV` service (as a client of the cluster at `--controller`), `grpc.health.v1` and
//! reflection, registers with the controller in the background, and on
//! shutdown drains in-flight RPCs, finishes queued batches and leaves the log synced.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

use ferrisdb_core::{Error, Result};
use ferrisdb_proto::v1::kv_server::KvServer;
use ferrisdb_proto::v1::transaction_coordinator_server::TransactionCoordinatorServer;
use tokio::net::TcpListener;
use tonic::service::RoutesBuilder;

use super::handle::{Coordinator, CoordinatorHandle, CoordinatorOptions};
use super::kv::{self, KvService};
use super::service::CoordinatorService;
use super::worker;
use crate::grpc;

/// Settings of a coordinator process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorConfig {
    /// Address the gRPC server binds.
    pub listen: SocketAddr,
    /// Address other processes use to reach this one (`host:port`).
    pub advertise: String,
    /// Data directory: `log/` (commit log segments) and `worker_id`.
    pub data_dir: PathBuf,
    /// The controller's address, if the coordinator joins a cluster.
    pub controller: Option<String>,
    /// Commit log segment size.
    pub segment_bytes: u64,
}

/// Opens the coordinator in `config.data_dir`, binds `config.listen` and serves until
/// `shutdown` completes.
pub async fn serve(
    config: CoordinatorConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| Error::io(format!("creating {}", config.data_dir.display()), e))?;
    let mut opts = CoordinatorOptions::new(config.data_dir.join("log"));
    opts.log.segment_bytes = config.segment_bytes;
    let coordinator = tokio::task::spawn_blocking(move || Coordinator::open(opts))
        .await
        .map_err(|e| Error::Internal(format!("opening the coordinator: {e}")))??;
    let membership = match &config.controller {
        Some(controller) => Some(
            worker::join(
                coordinator.clone(),
                controller,
                config.data_dir.clone(),
                config.advertise.clone(),
            )
            .await?,
        ),
        None => None,
    };
    let kv = KvService::new(config.controller.as_deref().map(kv::connect).transpose()?);
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| Error::io(format!("binding {}", config.listen), e))?;
    let result = serve_on(listener, coordinator.clone(), kv, shutdown).await;
    if let Some((session, follower)) = membership {
        follower.abort();
        drop(session);
    }
    coordinator.shutdown().await;
    tracing::info!(committed = %coordinator.read_version(), "transaction coordinator stopped");
    result
}

/// Serves `coordinator` and `kv` on a bound listener until `shutdown` completes (does not stop
/// the coordinator's pipeline; [`serve`] does that afterwards).
pub async fn serve_on(
    listener: TcpListener,
    coordinator: CoordinatorHandle,
    kv: KvService,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<TransactionCoordinatorServer<CoordinatorService>>()
        .await;
    health.set_serving::<KvServer<KvService>>().await;
    let mut routes = RoutesBuilder::default();
    routes.add_service(health_service);
    routes.add_service(
        TransactionCoordinatorServer::new(CoordinatorService::new(coordinator.clone()))
            .max_decoding_message_size(grpc::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(grpc::MAX_MESSAGE_BYTES),
    );
    routes.add_service(
        KvServer::new(kv)
            .max_decoding_message_size(grpc::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(grpc::MAX_MESSAGE_BYTES),
    );
    grpc::add_reflection(
        &mut routes,
        &[
            ferrisdb_proto::v1::transaction_coordinator_server::SERVICE_NAME,
            ferrisdb_proto::v1::kv_server::SERVICE_NAME,
        ],
    )
    .map_err(|e| Error::Internal(format!("building gRPC reflection: {e}")))?;
    tracing::info!(address = ?addr, "transaction coordinator serving");
    let wake = coordinator.clone();
    let shutdown = async move {
        shutdown.await;
        // Long-polling pulls return at once so the drain is quick.
        wake.begin_shutdown();
    };
    grpc::serve_until(routes, listener, shutdown).await
}
