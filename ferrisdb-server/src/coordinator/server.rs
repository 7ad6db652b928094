//! Runs a coordinator process: serves `TransactionCoordinator`, `grpc.health.v1` and
//! reflection, registers with the controller in the background, and on shutdown drains
//! in-flight RPCs and finishes queued batches. The public APIs are the gateway's
//! ([`crate::gateway`]): clients never need the coordinator's address.
//!
//! In a cluster (`--controller`) the coordinator keeps nothing but its worker id on disk: it
//! waits for the controller's recovery to recruit it for a generation, whose log servers hold
//! the log; losing its disk loses nothing. A failed generation (a log server lost or fenced)
//! is reported in heartbeats, and the controller recovers.
//!
//! Without a controller it keeps its own log under `<data-dir>/log`. If that log fails (a
//! write or fsync error: a full disk, no file descriptor for the next segment), the pipeline
//! refuses every commit from then on; the failure becomes a health problem
//! ([`crate::health`]): `NOT_SERVING`, and the reason in every heartbeat. Once the log
//! directory accepts writes again the process exits with an error, so its supervisor restarts
//! it and the new process recovers from the log.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ferrisdb_core::{Error, Result};
use ferrisdb_proto::transport::{self, Listener};
use ferrisdb_proto::v1::transaction_coordinator_server::TransactionCoordinatorServer;
use tonic::service::RoutesBuilder;

use super::clock::{Clock, SystemClock};
use super::handle::{
    ClusterCoordinatorOptions, Coordinator, CoordinatorHandle, CoordinatorOptions,
};
use super::service::CoordinatorService;
use super::worker;
use crate::grpc;
use crate::health::{self, RoleHealth};
use crate::worker::DataDir;

/// Settings of a coordinator process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorConfig {
    /// Address the gRPC server binds.
    pub listen: SocketAddr,
    /// Address other processes use to reach this one (`host:port`).
    pub advertise: String,
    /// Data directory: `worker_id`, and `log/` (commit log segments) outside a cluster.
    pub data_dir: PathBuf,
    /// The controller's address, if the coordinator joins a cluster.
    pub controller: Option<String>,
    /// Commit log segment size (outside a cluster).
    pub segment_bytes: u64,
    /// Most connections served at once (default from the open-file limit; see
    /// [`crate::resources::max_connections`]).
    pub max_connections: Option<usize>,
    /// How long idempotency ids are remembered after their commit (see
    /// [`super::idempotency`]).
    pub idempotency_retention: std::time::Duration,
}

/// Health problem source of a failed commit log.
const LOG_FAILED: &str = "commit log";

/// Opens the coordinator in `config.data_dir`, binds `config.listen` and serves until
/// `shutdown` completes.
pub async fn serve(
    config: CoordinatorConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    serve_with(
        config,
        ferrisdb_storage::vfs::os(),
        Arc::new(SystemClock),
        shutdown,
    )
    .await
}

/// [`serve`] with `config.data_dir` on the file system `fs` and `clock` as the wall clock
/// its commit versions follow (the simulator's disk and clock, in simulation).
pub async fn serve_with(
    config: CoordinatorConfig,
    fs: ferrisdb_storage::vfs::SharedFs,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let data = DataDir {
        fs,
        path: config.data_dir.clone(),
    };
    data.fs
        .create_dir_all(&data.path)
        .map_err(|e| Error::io(format!("creating {}", data.path.display()), e))?;
    let log_dir = data.path.join("log");
    // In a cluster the log servers hold the log; alone, the coordinator keeps its own.
    let coordinator = if config.controller.is_some() {
        Coordinator::in_cluster_with_clock(
            ClusterCoordinatorOptions {
                idempotency_retention: config.idempotency_retention,
                ..ClusterCoordinatorOptions::default()
            },
            clock,
        )
    } else {
        let mut opts = CoordinatorOptions::new(log_dir.clone());
        opts.log.segment_bytes = config.segment_bytes;
        opts.idempotency_retention = config.idempotency_retention;
        crate::exec::blocking("opening the coordinator", move || {
            Coordinator::open_with_clock(opts, clock)
        })
        .await??
    };
    let health = RoleHealth::new();
    let membership = match &config.controller {
        Some(controller) => Some(
            worker::join(
                coordinator.clone(),
                controller,
                data,
                config.advertise.clone(),
                health.clone(),
            )
            .await?,
        ),
        None => None,
    };
    if let Some(controller) = &config.controller {
        // Reads idempotency records committed before this process started.
        coordinator.attach_cluster(crate::gateway::connect(controller)?);
    }
    let listener = transport::bind(config.listen)
        .await
        .map_err(|e| Error::io(format!("binding {}", config.listen), e))?;
    let limit = grpc::connection_limit(config.max_connections, &health);
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<String>();
    let watchdog = tokio::spawn(exit_after_log_failure(
        coordinator.clone(),
        health.clone(),
        log_dir,
        failed_tx,
    ));
    let mut exit_for_restart = None;
    let stop = async {
        tokio::select! {
            () = shutdown => {}
            Ok(reason) = failed_rx => exit_for_restart = Some(reason),
        }
    };
    let result = serve_on(listener, coordinator.clone(), health, limit, stop).await;
    watchdog.abort();
    if let Some((session, follower)) = membership {
        follower.abort();
        drop(session);
    }
    coordinator.shutdown().await;
    tracing::info!(committed = %coordinator.read_version(), "transaction coordinator stopped");
    if let Some(reason) = exit_for_restart {
        return Err(Error::Unavailable(format!(
            "{reason}; the log directory accepts writes again: exiting so that the coordinator \
             is restarted and recovers from its log"
        )));
    }
    result
}

/// Waits for the commit pipeline to fail, reports it as a health problem, waits until
/// `log_dir` accepts writes again and then sends the reason on `exit` (the process exits to be
/// restarted; see the module docs).
async fn exit_after_log_failure(
    coordinator: CoordinatorHandle,
    health: RoleHealth,
    log_dir: std::path::PathBuf,
    exit: tokio::sync::oneshot::Sender<String>,
) {
    let Some(mut failure) = coordinator.failure() else {
        return;
    };
    let Ok(reason) = failure.wait_for(Option::is_some).await.map(|f| f.clone()) else {
        return;
    };
    let reason = reason.unwrap_or_default();
    health.set_problem(
        LOG_FAILED,
        format!(
            "{reason}; every commit is refused; the coordinator exits to be restarted once its \
             log directory accepts writes again"
        ),
    );
    // Recovery writes one small record (the recovery commit); keep a margin.
    // The standalone coordinator's log is on the OS's file system (`Coordinator::open`).
    health::exit_when_writable(ferrisdb_storage::vfs::os(), log_dir, |_| 1 << 20).await;
    let _ = exit.send(reason);
}

/// Serves `coordinator` on a bound listener, within the
/// connection budget `limit`, until `shutdown` completes (does not stop the coordinator's
/// pipeline; [`serve`] does that afterwards). `health` drives `grpc.health.v1`.
pub async fn serve_on(
    listener: Listener,
    coordinator: CoordinatorHandle,
    health: RoleHealth,
    limit: std::sync::Arc<grpc::ConnectionLimit>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let health_driver = tokio::spawn(health.drive(
        reporter,
        vec![ferrisdb_proto::v1::transaction_coordinator_server::SERVICE_NAME],
    ));
    let mut routes = RoutesBuilder::default();
    routes.add_service(health_service);
    routes.add_service(
        TransactionCoordinatorServer::new(CoordinatorService::new(coordinator.clone()))
            .max_decoding_message_size(grpc::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(grpc::MAX_MESSAGE_BYTES),
    );
    grpc::add_reflection(
        &mut routes,
        &[ferrisdb_proto::v1::transaction_coordinator_server::SERVICE_NAME],
    )
    .map_err(|e| Error::Internal(format!("building gRPC reflection: {e}")))?;
    tracing::info!(address = ?addr, "transaction coordinator serving");
    let wake = coordinator.clone();
    let shutdown = async move {
        shutdown.await;
        // Long-polling pulls return at once so the drain is quick.
        wake.begin_shutdown();
    };
    let result = grpc::serve_until(routes, listener, limit, shutdown).await;
    health_driver.abort();
    result
}
