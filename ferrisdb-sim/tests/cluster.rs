//! The whole cluster in one process: the real controller, log server, coordinator and
//! storage server, each a simulated process on the simulated network and a paused clock,
//! serving a real client's transactions.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ferrisdb_client::Database;
use ferrisdb_server::controller::{self, ControllerConfig};
use ferrisdb_server::coordinator::server::{self as coordinator, CoordinatorConfig};
use ferrisdb_server::log::process::{self as log_server, LogServerConfig};
use ferrisdb_server::storage::server::{self as storage, StorageConfig};
use ferrisdb_sim::cluster::network::{SimNetwork, process_ip};
use ferrisdb_sim::cluster::process::{ProcessId, spawn_in};
use ferrisdb_sim::cluster::runtime;

const CONTROLLER: ProcessId = 1;
const LOG: ProcessId = 2;
const COORDINATOR: ProcessId = 3;
const STORAGE: ProcessId = 4;
const CLIENT: ProcessId = 9;

fn addr(process: ProcessId) -> SocketAddr {
    SocketAddr::new(process_ip(process).into(), 4500)
}

/// Starts the four roles, each as its own simulated process with a data directory in `dir`.
fn start_cluster(dir: &Path) {
    let controller_addr = addr(CONTROLLER).to_string();
    let config = ControllerConfig {
        listen: addr(CONTROLLER),
        advertise: None,
        data_dir: dir.join("controller"),
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
    spawn_in(CONTROLLER, async move {
        if let Err(e) = controller::serve(config, std::future::pending()).await {
            panic!("controller: {e}");
        }
    });
    let config = LogServerConfig {
        listen: addr(LOG),
        advertise: addr(LOG).to_string(),
        data_dir: dir.join("log"),
        controller: controller_addr.clone(),
        segment_bytes: 1 << 20,
        retention_budget_bytes: 64 << 20,
        max_connections: Some(1000),
    };
    spawn_in(LOG, async move {
        if let Err(e) = log_server::serve(config, std::future::pending()).await {
            panic!("log server: {e}");
        }
    });
    let config = CoordinatorConfig {
        listen: addr(COORDINATOR),
        advertise: addr(COORDINATOR).to_string(),
        data_dir: dir.join("coordinator"),
        controller: Some(controller_addr.clone()),
        segment_bytes: 1 << 20,
        max_connections: Some(1000),
        idempotency_retention: Duration::from_secs(60),
    };
    spawn_in(COORDINATOR, async move {
        if let Err(e) = coordinator::serve(config, std::future::pending()).await {
            panic!("coordinator: {e}");
        }
    });
    let config = StorageConfig {
        listen: addr(STORAGE),
        advertise: addr(STORAGE).to_string(),
        data_dir: dir.join("storage"),
        controller: controller_addr,
        memtable_bytes: 4 << 20,
        block_cache_bytes: 8 << 20,
        max_connections: Some(1000),
        install_piece_bytes: 1 << 20,
    };
    spawn_in(STORAGE, async move {
        if let Err(e) = storage::serve(config, std::future::pending()).await {
            panic!("storage server: {e}");
        }
    });
}

#[test]
fn a_whole_cluster_serves_transactions_in_one_process() {
    if std::env::var_os("RUST_LOG").is_some() {
        ferrisdb_server::grpc::init_tracing();
    }
    let dir = tempfile::tempdir().unwrap();
    let network = SimNetwork::default();
    let _entered = network.enter();
    let runtime = runtime(1).unwrap();
    let started = std::time::Instant::now();
    let simulated = runtime.block_on(async {
        let begin = tokio::time::Instant::now();
        start_cluster(dir.path());
        let client = spawn_in(CLIENT, async move {
            let db = Database::connect(addr(CONTROLLER).to_string()).unwrap();
            for i in 0..20u32 {
                db.run(move |tx| async move {
                    tx.set(format!("key/{i:02}"), format!("value {i}"))?;
                    Ok(())
                })
                .await
                .unwrap();
            }
            db.run(|tx| async move {
                let mut found = Vec::new();
                for i in 0..20u32 {
                    found.push(tx.get(format!("key/{i:02}")).await?);
                }
                Ok(found)
            })
            .await
            .unwrap()
        });
        let found = client.await.unwrap();
        for (i, value) in found.iter().enumerate() {
            assert_eq!(value.as_deref(), Some(format!("value {i}").as_bytes()));
        }
        begin.elapsed()
    });
    println!(
        "simulated {:.1} s in {:.1} s of wall time; network {:?}",
        simulated.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        network.stats()
    );
    assert!(network.stats().connections > 0);
}
