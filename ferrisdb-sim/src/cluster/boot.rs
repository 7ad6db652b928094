//! Starting a simulated cluster: the real roles, each as its own simulated process (one
//! controller, one log server, one coordinator, one storage server), configured as
//! `ferrisdb cluster up` would, with data directories under one temporary directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ferrisdb_server::controller::{self, ControllerConfig};
use ferrisdb_server::coordinator::server::{self as coordinator, CoordinatorConfig};
use ferrisdb_server::log::process::{self as log_server, LogServerConfig};
use ferrisdb_server::storage::server::{self as storage, StorageConfig};

use super::network::process_ip;
use super::process::{ProcessId, spawn_in};

/// The controller's process.
pub const CONTROLLER: ProcessId = 1;
/// The log server's process.
pub const LOG: ProcessId = 2;
/// The coordinator's process.
pub const COORDINATOR: ProcessId = 3;
/// The storage server's process.
pub const STORAGE: ProcessId = 4;
/// Every server process.
pub const SERVERS: [ProcessId; 4] = [CONTROLLER, LOG, COORDINATOR, STORAGE];

/// The address a simulated process serves at.
pub fn server_addr(process: ProcessId) -> SocketAddr {
    SocketAddr::new(process_ip(process).into(), 4500)
}

/// Spawns the four roles, each as its own simulated process with a data directory in
/// `dir`. A role whose `serve` fails reports it through `failures`.
pub fn start_cluster(dir: &Path, failures: tokio::sync::mpsc::UnboundedSender<String>) {
    let controller_addr = server_addr(CONTROLLER).to_string();
    let data = |name: &str| -> PathBuf { dir.join(name) };
    let report = |role: &'static str, failures: &tokio::sync::mpsc::UnboundedSender<String>| {
        let failures = failures.clone();
        move |result: ferrisdb_core::Result<()>| {
            let outcome = match result {
                Ok(()) => format!("{role} stopped"),
                Err(e) => format!("{role} failed: {e}"),
            };
            let _ = failures.send(outcome);
        }
    };
    let config = ControllerConfig {
        listen: server_addr(CONTROLLER),
        advertise: None,
        data_dir: data("controller"),
        peers: Vec::new(),
        join_only: false,
        raft: Default::default(),
        peer_source_ip: None,
        storage_servers: 1,
        replication: 1,
        log_replication: 1,
        heartbeat_interval: Duration::from_millis(500),
        missed_heartbeats: 4,
        max_connections: Some(1000),
        storage_failure_timeout: Duration::from_secs(30),
        max_shard_bytes: None,
        max_shard_write_bytes_per_second: 1_000_000,
    };
    let done = report("controller", &failures);
    spawn_in(CONTROLLER, async move {
        done(controller::serve(config, std::future::pending()).await);
    });
    let config = LogServerConfig {
        listen: server_addr(LOG),
        advertise: server_addr(LOG).to_string(),
        data_dir: data("log"),
        controller: controller_addr.clone(),
        segment_bytes: 1 << 20,
        retention_budget_bytes: 64 << 20,
        max_connections: Some(1000),
    };
    let done = report("log server", &failures);
    spawn_in(LOG, async move {
        done(log_server::serve(config, std::future::pending()).await);
    });
    let config = CoordinatorConfig {
        listen: server_addr(COORDINATOR),
        advertise: server_addr(COORDINATOR).to_string(),
        data_dir: data("coordinator"),
        controller: Some(controller_addr.clone()),
        segment_bytes: 1 << 20,
        max_connections: Some(1000),
        idempotency_retention: Duration::from_secs(60),
    };
    let done = report("coordinator", &failures);
    spawn_in(COORDINATOR, async move {
        done(coordinator::serve(config, std::future::pending()).await);
    });
    let config = StorageConfig {
        listen: server_addr(STORAGE),
        advertise: server_addr(STORAGE).to_string(),
        data_dir: data("storage"),
        controller: controller_addr,
        memtable_bytes: 4 << 20,
        block_cache_bytes: 8 << 20,
        max_connections: Some(1000),
        install_piece_bytes: 1 << 20,
    };
    let done = report("storage server", &failures);
    spawn_in(STORAGE, async move {
        done(storage::serve(config, std::future::pending()).await);
    });
}
