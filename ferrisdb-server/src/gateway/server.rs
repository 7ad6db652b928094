//! Runs a gateway process: serves `ferrisdb.v1.KV`, `ferrisdb.v1.Transactions`,
//! `grpc.health.v1` and reflection on one address, as a client of the cluster at
//! `--controller`. Health is `NOT_SERVING` while the cluster hands out no read version (no
//! controller reachable, or a recovery under way), with the reason; `SERVING` again as soon
//! as one is handed out. It registers with the controller as a `gateway` worker (its id kept
//! in `--data-dir`, nothing else) and heartbeats its health, so `ferrisdb status` lists it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferrisdb_client::{Database, Priority};
use ferrisdb_core::{Error, Result};
use ferrisdb_proto::transport::{self, Listener};
use ferrisdb_proto::v1::kv_server::KvServer;
use ferrisdb_proto::v1::transactions_server::TransactionsServer;
use tonic::service::RoutesBuilder;

use super::kv::KvService;
use super::transactions::TransactionsService;
use crate::grpc;
use crate::health::RoleHealth;
use crate::worker::{ControllerSession, DataDir, StatusSource, load_or_create_worker_id};

/// Settings of a gateway process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// Address the gRPC server binds.
    pub listen: SocketAddr,
    /// Address others reach this one at (`host:port`), as registered with the controller.
    pub advertise: String,
    /// The controller replicas' addresses (comma-separated `host:port`).
    pub controller: String,
    /// Where the gateway keeps its worker id and the cluster id (nothing else).
    pub data_dir: std::path::PathBuf,
    /// Most connections served at once (default from the open-file limit; see
    /// [`crate::resources::max_connections`]).
    pub max_connections: Option<usize>,
}

/// How often a healthy gateway checks that the cluster hands out read versions (its health).
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// How often an unhealthy one checks, so it says `SERVING` soon after a recovery.
pub const UNHEALTHY_PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// Health problem source while the cluster hands out no read version.
const CLUSTER_UNREACHABLE: &str = "cluster";

/// Binds `config.listen` and serves until `shutdown` completes.
pub async fn serve(config: GatewayConfig, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
    let db = super::connect(&config.controller)?;
    let health = RoleHealth::new();
    health.set_problem(
        CLUSTER_UNREACHABLE,
        "waiting for the cluster's first read version",
    );
    let data = DataDir::os(config.data_dir.clone());
    data.fs
        .create_dir_all(&data.path)
        .map_err(|e| Error::io(format!("creating {}", data.path.display()), e))?;
    let id = load_or_create_worker_id(data.fs.as_ref(), &data.path, "gateway")?;
    let session = ControllerSession::start(
        &config.controller,
        id,
        data,
        ferrisdb_proto::v1::WorkerRole::Gateway,
        config.advertise.clone(),
        Arc::new(NoRoleStatus),
        health.clone(),
    )?;
    let listener = transport::bind(config.listen)
        .await
        .map_err(|e| Error::io(format!("binding {}", config.listen), e))?;
    let limit = grpc::connection_limit(config.max_connections, &health);
    let probe = tokio::spawn(probe_cluster(db.clone(), health.clone()));
    let result = serve_on(listener, db, health, limit, shutdown).await;
    probe.abort();
    drop(session);
    result
}

/// A gateway's heartbeats carry only its health (no role status).
struct NoRoleStatus;

impl StatusSource for NoRoleStatus {
    fn status(&self) -> ferrisdb_proto::v1::WorkerStatus {
        ferrisdb_proto::v1::WorkerStatus::default()
    }
}

/// Asks for a read version every [`PROBE_INTERVAL`] ([`UNHEALTHY_PROBE_INTERVAL`] after a
/// failure) and keeps `health` saying whether the cluster answers.
async fn probe_cluster(db: Database, health: RoleHealth) {
    loop {
        let pause = match db.read_version(Priority::Immediate).await {
            Ok(_) => {
                health.clear_problem(CLUSTER_UNREACHABLE);
                PROBE_INTERVAL
            }
            Err(e) => {
                health.set_problem(
                    CLUSTER_UNREACHABLE,
                    format!("the cluster hands out no read version: {e}"),
                );
                UNHEALTHY_PROBE_INTERVAL
            }
        };
        tokio::time::sleep(pause).await;
    }
}

/// Serves the public services over `db` on a bound listener, within the connection budget
/// `limit`, until `shutdown` completes. `health` drives `grpc.health.v1`.
pub async fn serve_on(
    listener: Listener,
    db: Database,
    health: RoleHealth,
    limit: std::sync::Arc<grpc::ConnectionLimit>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    let services = [
        ferrisdb_proto::v1::kv_server::SERVICE_NAME,
        ferrisdb_proto::v1::transactions_server::SERVICE_NAME,
    ];
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let health_driver = tokio::spawn(health.drive(reporter, services.to_vec()));
    let mut routes = RoutesBuilder::default();
    routes.add_service(health_service);
    routes.add_service(
        KvServer::new(KvService::new(db.clone()))
            .max_decoding_message_size(grpc::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(grpc::MAX_MESSAGE_BYTES),
    );
    routes.add_service(
        TransactionsServer::new(TransactionsService::new(db))
            .max_decoding_message_size(grpc::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(grpc::MAX_MESSAGE_BYTES),
    );
    grpc::add_reflection(&mut routes, &services)
        .map_err(|e| Error::Internal(format!("building gRPC reflection: {e}")))?;
    tracing::info!(address = ?addr, "gateway serving");
    let result = grpc::serve_until(routes, listener, limit, shutdown).await;
    health_driver.abort();
    result
}
