//! Runs a log server process: opens the log under `<data-dir>/log`, registers with the
//! controller (role `log`), follows the shard map (the storage servers allowed to read the
//! log), and serves `ferrisdb.v1.LogServer`, `grpc.health.v1` and reflection until shutdown.
//!
//! If the log fails (a write or fsync error: a full disk), it refuses every append from then
//! on; the failure becomes a health problem (`NOT_SERVING`, and the reason in every
//! heartbeat), the coordinator's generation fails with it and the controller recovers with
//! other log servers. Once the data directory accepts writes again the process exits with an
//! error, so its supervisor restarts it and it recovers its log from disk.
//!
//! The worker id lives beside the log on the same disk: a log server whose disk was replaced
//! comes back under a new id, so a recovery never mistakes its empty log for the one the old
//! id held. A data directory whose worker id survived without its log is refused at start.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ferrisdb_core::{Error, Result};
use ferrisdb_proto::transport;
use ferrisdb_proto::v1;
use ferrisdb_proto::v1::log_server_server::LogServerServer;
use tonic::service::RoutesBuilder;

use super::LogOptions;
use super::server::LogServer;
use super::service::LogService;
use crate::grpc;
use crate::health::{self, RoleHealth};
use crate::worker::{ControllerSession, DataDir, StatusSource, load_or_create_worker_id};

/// Settings of a log server process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogServerConfig {
    /// Address the gRPC server binds.
    pub listen: SocketAddr,
    /// Address other processes use to reach this one (`host:port`).
    pub advertise: String,
    /// Data directory: `log/` (segments and the fence) and `worker_id`.
    pub data_dir: PathBuf,
    /// The controller replicas' addresses (comma-separated).
    pub controller: String,
    /// Log segment size.
    pub segment_bytes: u64,
    /// Retained bytes past which the log drops versions only lagging storage servers still
    /// need (see [`LogServer::set_retention_budget`]); 0: no budget.
    pub retention_budget_bytes: u64,
    /// Most connections served at once.
    pub max_connections: Option<usize>,
}

struct LogStatusSource(Arc<LogServer>);

impl StatusSource for LogStatusSource {
    fn status(&self) -> v1::WorkerStatus {
        let s = self.0.state();
        v1::WorkerStatus {
            unhealthy_reason: String::new(),
            status: Some(v1::worker_status::Status::Log(v1::LogServerStatus {
                locked_epoch: s.locked_epoch,
                durable_version: s.durable_version.get(),
                known_committed: s.known_committed.get(),
                retained_from: s.retained_from.get(),
                retained_bytes: s.stats.retained_bytes,
                retention_budget_bytes: s.retention_budget_bytes,
            })),
        }
    }
}

/// Opens the log server in `config.data_dir`, binds `config.listen` and serves until
/// `shutdown` completes.
pub async fn serve(
    config: LogServerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    serve_with_fs(config, ferrisdb_storage::vfs::os(), shutdown).await
}

/// [`serve`] with `config.data_dir` on the file system `fs` (the simulator's disk, in
/// simulation).
pub async fn serve_with_fs(
    config: LogServerConfig,
    fs: ferrisdb_storage::vfs::SharedFs,
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
    let id_file = data.path.join("worker_id");
    let names = data
        .fs
        .list_dir(&data.path)
        .map_err(|e| Error::io(format!("listing {}", data.path.display()), e))?;
    let has = |name: &str| names.iter().any(|n| n == name);
    if has("worker_id") && !has("log") {
        return Err(Error::corruption(
            &id_file,
            0,
            format!(
                "this log server's id survived but its log directory {} is gone: start it on an \
                 empty data directory to join as a new log server",
                log_dir.display()
            ),
        ));
    }
    let dir = data.clone();
    let segment_bytes = config.segment_bytes;
    let server = crate::exec::blocking("opening the log", move || {
        let id = load_or_create_worker_id(dir.fs.as_ref(), &dir.path, "log")?;
        let opts = LogOptions {
            segment_bytes,
            ..LogOptions::default()
        };
        LogServer::open_on(dir.fs, &dir.path.join("log"), id, opts)
    })
    .await??;
    server.set_retention_budget(config.retention_budget_bytes);
    let health = RoleHealth::new();
    let session = ControllerSession::start(
        &config.controller,
        server.id().to_string(),
        data.clone(),
        v1::WorkerRole::Log,
        config.advertise.clone(),
        Arc::new(LogStatusSource(server.clone())),
        health.clone(),
    )?;
    let follower = tokio::spawn({
        let server = server.clone();
        let mut view = session.view();
        async move {
            loop {
                let ids: Option<BTreeSet<String>> = {
                    let v = view.borrow_and_update();
                    (v.shard_map.version > 0).then(|| {
                        v.shard_map
                            .shards
                            .iter()
                            // Servers taking a shard over follow it too.
                            .flat_map(|s| s.storage_ids.iter().chain(&s.moving_to).cloned())
                            .collect()
                    })
                };
                if let Some(ids) = ids {
                    server.set_followers(ids);
                }
                if view.changed().await.is_err() {
                    return;
                }
            }
        }
    });
    let listener = transport::bind(config.listen)
        .await
        .map_err(|e| Error::io(format!("binding {}", config.listen), e))?;
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let health_driver = tokio::spawn(
        health
            .clone()
            .drive(reporter, vec![v1::log_server_server::SERVICE_NAME]),
    );
    let mut routes = RoutesBuilder::default();
    routes.add_service(health_service);
    routes.add_service(
        LogServerServer::new(LogService::new(server.clone()))
            .max_decoding_message_size(grpc::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(grpc::MAX_MESSAGE_BYTES),
    );
    grpc::add_reflection(&mut routes, &[v1::log_server_server::SERVICE_NAME])
        .map_err(|e| Error::Internal(format!("building gRPC reflection: {e}")))?;
    tracing::info!(listen = %config.listen, advertise = %config.advertise, log_id = server.id(), "log server serving");
    let limit = grpc::connection_limit(config.max_connections, &health);
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<String>();
    let watchdog = tokio::spawn(exit_after_log_failure(
        server.clone(),
        health.clone(),
        data.clone(),
        failed_tx,
    ));
    let wake = server.clone();
    let mut exit_for_restart = None;
    let stop = async {
        tokio::select! {
            () = shutdown => {}
            Ok(reason) = failed_rx => exit_for_restart = Some(reason),
        }
        wake.begin_shutdown();
    };
    let result = grpc::serve_until(routes, listener, limit, stop).await;
    watchdog.abort();
    follower.abort();
    health_driver.abort();
    drop(session);
    tracing::info!("log server stopped");
    if let Some(reason) = exit_for_restart {
        return Err(Error::Unavailable(format!(
            "{reason}; the data directory accepts writes again: exiting so that the log server \
             is restarted and recovers its log"
        )));
    }
    result
}

/// Health problem source of a failed log.
const LOG_FAILED: &str = "commit log";

/// Waits for the log to fail, reports it as a health problem, waits until `data` accepts
/// writes again (room for the log's newest segment plus a margin) and then sends the reason on
/// `exit`.
async fn exit_after_log_failure(
    server: Arc<LogServer>,
    health: RoleHealth,
    data: DataDir,
    exit: tokio::sync::oneshot::Sender<String>,
) {
    let mut failure = server.failure();
    let Ok(reason) = failure.wait_for(Option::is_some).await.map(|f| f.clone()) else {
        return;
    };
    let reason = reason.unwrap_or_default();
    health.set_problem(
        LOG_FAILED,
        format!(
            "{reason}; every append is refused; the log server exits to be restarted once its \
             data directory accepts writes again"
        ),
    );
    health::exit_when_writable(data.fs, data.path, |_| 4 << 20).await;
    let _ = exit.send(reason);
}
