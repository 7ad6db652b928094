//! Runs a storage server process: engine, controller session, puller, GC task and the gRPC
//! server (StorageServer + health + reflection) until shutdown.
//!
//! If the engine fails (a write or fsync error: full or read-only disk), the puller stops and
//! the failure becomes a health problem ([`crate::health`]): `NOT_SERVING` for the overall
//! server and for `ferrisdb.v1.StorageServer`, and the reason in every heartbeat, so the
//! controller and `ferrisdb status` report the server unhealthy and why. Reads at versions
//! already applied (and durable) are still served. Every second the server then probes its
//! data directory (free space for recovery — its WAL's size plus a margin — and a 64 KiB
//! write and fsync); once it passes (space came back) the server exits with an error so its
//! supervisor (`ferrisdb cluster up`, systemd, ...) restarts it, and the restarted server recovers from its files and pulls what it missed from
//! the log. Recovery is a restart on purpose: the failed engine's state after a failed write or
//! fsync is not trusted.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferrisdb_core::{Error, Version};
use ferrisdb_proto::transport;
use ferrisdb_proto::v1;
use ferrisdb_proto::v1::storage_server_server::StorageServerServer;
use ferrisdb_storage::engine::{Engine, EngineOptions, SyncPolicy};
use ferrisdb_storage::sstable::{Compression, TableOptions};
use tonic::service::RoutesBuilder;

use super::handoff::Handoff;
use super::progress::Progress;
use super::service::{ReadCounters, StorageService};
use super::sizes::ShardSizes;
use crate::grpc;
use crate::health::{self, RoleHealth};
use crate::worker::{ControllerSession, DataDir, StatusSource, load_or_create_worker_id};

/// Settings of a storage server process.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// Address to bind.
    pub listen: SocketAddr,
    /// Address other processes use to reach this one.
    pub advertise: String,
    /// Data directory (engine files, worker id, progress).
    pub data_dir: PathBuf,
    /// The cluster controller's address.
    pub controller: String,
    /// Engine memtable budget in bytes.
    pub memtable_bytes: usize,
    /// Engine block cache budget in bytes.
    pub block_cache_bytes: usize,
    /// Codec of the engine's SSTable data blocks.
    pub compression: Compression,
    /// Codec of the tables written to the engine's deepest level holding data (`None`: as
    /// `compression`).
    pub bottommost_compression: Option<Compression>,
    /// Most connections served at once (default from the open-file limit; see
    /// [`crate::resources::max_connections`]).
    pub max_connections: Option<usize>,
    /// Most snapshot bytes a take-over installs in one engine batch
    /// ([`super::handoff::DEFAULT_INSTALL_PIECE_BYTES`] by default).
    pub install_piece_bytes: usize,
}

/// Free space a restarted server needs beyond its WAL's size before it exits to recover.
const RECOVERY_MARGIN: u64 = 4 << 20;

/// Health problem source of a failed engine.
const ENGINE_FAILED: &str = "storage engine";

struct EngineStatus {
    engine: Arc<Engine>,
    progress: Arc<Progress>,
    handoff: Arc<Handoff>,
    sizes: Arc<ShardSizes>,
    reads: Arc<ReadCounters>,
}

impl StatusSource for EngineStatus {
    fn status(&self) -> v1::WorkerStatus {
        let stats = self.engine.stats();
        let (ready, ready_map_version) = self.handoff.ready(self.progress.persisted());
        v1::WorkerStatus {
            unhealthy_reason: String::new(),
            status: Some(v1::worker_status::Status::Storage(v1::StorageStatus {
                applied_version: self.progress.applied(),
                durable_version: self.engine.durable_version().max(self.progress.applied()),
                data_bytes: stats.total_sst_bytes + stats.memtable_bytes as u64,
                ready_ranges: ready.iter().map(v1::KeyRange::from).collect(),
                ready_map_version,
                shard_sizes: self.sizes.latest(),
                take_overs: self
                    .handoff
                    .take_overs()
                    .into_iter()
                    .map(|t| v1::TakeOver {
                        range: Some(v1::KeyRange::from(&t.range)),
                        fetched_bytes: t.fetched_bytes,
                        fetched: t.fetched,
                        installed: t.installed,
                    })
                    .collect(),
                point_reads_total: self.reads.point_reads(),
                point_read_calls_total: self.reads.calls(),
            })),
        }
    }
}

/// Opens the engine and serves until `shutdown` completes.
pub async fn serve(
    config: StorageConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    serve_with_fs(config, ferrisdb_storage::vfs::os(), shutdown).await
}

/// [`serve`] with `config.data_dir` on the file system `fs` (the simulator's disk, in
/// simulation).
pub async fn serve_with_fs(
    config: StorageConfig,
    fs: ferrisdb_storage::vfs::SharedFs,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let data = DataDir {
        fs,
        path: config.data_dir.clone(),
    };
    data.fs
        .create_dir_all(&data.path)
        .map_err(|e| Error::io(format!("creating {}", data.path.display()), e))?;
    let worker_id = load_or_create_worker_id(data.fs.as_ref(), &data.path, "storage")?;
    let options = EngineOptions {
        sync: SyncPolicy::Always,
        memtable_bytes: config.memtable_bytes,
        block_cache_bytes: config.block_cache_bytes,
        table: TableOptions {
            compression: config.compression,
            ..TableOptions::default()
        },
        bottommost_compression: config.bottommost_compression,
        // In the simulator, flushes and compactions run inline like every other piece of
        // blocking work (`crate::exec`).
        background_threads: !crate::exec::runs_inline(),
        inline_background_work: crate::exec::runs_inline(),
        ..EngineOptions::default()
    };
    let engine_dir = data.path.join("engine");
    let engine_fs = data.fs.clone();
    let engine = crate::exec::blocking("the engine open task", move || {
        Engine::open_on(engine_fs, &engine_dir, options)
    })
    .await??;
    let progress = Arc::new(Progress::open(
        data.fs.clone(),
        &data.path,
        engine.durable_version(),
    )?);
    tracing::info!(
        worker = %worker_id,
        applied = progress.applied(),
        "storage engine open"
    );

    let listener = transport::bind(config.listen)
        .await
        .map_err(|e| Error::io(format!("binding {}", config.listen), e))?;
    let handoff = Arc::new(
        Handoff::open(data.fs.clone(), &data.path)?.with_piece_bytes(config.install_piece_bytes),
    );
    let sizes = Arc::new(ShardSizes::default());
    let reads = Arc::new(ReadCounters::default());
    let status = Arc::new(EngineStatus {
        engine: engine.clone(),
        progress: progress.clone(),
        handoff: handoff.clone(),
        sizes: sizes.clone(),
        reads: reads.clone(),
    });
    let health = RoleHealth::new();
    let session = ControllerSession::start(
        &config.controller,
        worker_id.clone(),
        data.clone(),
        v1::WorkerRole::Storage,
        config.advertise.clone(),
        status,
        health.clone(),
    )?;
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let health_driver =
        tokio::spawn(health.drive(reporter, vec![v1::storage_server_server::SERVICE_NAME]));
    let (recovered_tx, recovered_rx) = tokio::sync::oneshot::channel::<()>();
    // Returns true once the engine failed and the data directory accepts writes again.
    let puller = tokio::spawn({
        let data = data.clone();
        let pulled = super::puller::run(
            worker_id.clone(),
            engine.clone(),
            progress.clone(),
            handoff,
            sizes.clone(),
            session.view(),
            health.clone(),
        );
        let health = health.clone();
        let applied = progress.clone();
        async move {
            let err = pulled.await;
            applied.set_failed(err.to_string());
            health.set_problem(
                ENGINE_FAILED,
                format!(
                    "{err}; no longer applying writes (reads at or below version {} are still \
                     served); the server exits to be restarted once its data directory accepts \
                     writes again",
                    applied.applied()
                ),
            );
            // Recovery replays the engine's WAL into a table: room for it, plus a margin.
            let wal_dir = data.path.join("engine").join("wal");
            health::exit_when_writable(data.fs, data.path, move |fs| {
                health::files_bytes(fs, &wal_dir) + RECOVERY_MARGIN
            })
            .await;
            let _ = recovered_tx.send(());
            true
        }
    });
    let sizer = tokio::spawn(super::sizes::run(
        worker_id.clone(),
        engine.clone(),
        session.view(),
        sizes,
    ));
    let gc = tokio::spawn({
        let engine = engine.clone();
        let progress = progress.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                let horizon = progress.applied().saturating_sub(Version::MVCC_WINDOW);
                engine.set_gc_horizon(horizon.min(engine.last_applied_version()));
            }
        }
    });

    let mut routes = RoutesBuilder::default();
    routes.add_service(health_service);
    routes.add_service(StorageServerServer::new(
        StorageService::new(engine.clone(), progress).counting(reads),
    ));
    grpc::add_reflection(&mut routes, &[v1::storage_server_server::SERVICE_NAME])
        .map_err(|e| Error::Internal(format!("building gRPC reflection: {e}")))?;
    tracing::info!(listen = %config.listen, advertise = %config.advertise, "storage server serving");
    let stop = async move {
        // A dropped sender (the puller task aborted at shutdown) must not stop the server.
        let recovered = async {
            if recovered_rx.await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = shutdown => {}
            _ = recovered => {}
        }
    };
    let limit = grpc::connection_limit(config.max_connections, &health);
    let result = grpc::serve_until(routes, listener, limit, stop).await;
    puller.abort();
    gc.abort();
    sizer.abort();
    health_driver.abort();
    drop(session);
    let exiting_to_recover = matches!(puller.await, Ok(true));
    let closed = crate::exec::blocking("the engine close task", move || engine.close()).await?;
    if exiting_to_recover {
        return Err(Error::Unavailable(
            "the storage engine failed earlier and the data directory accepts writes again: \
             exiting so that the server is restarted and recovers from its files"
                .into(),
        ));
    }
    closed?;
    tracing::info!("storage server stopped");
    result
}
