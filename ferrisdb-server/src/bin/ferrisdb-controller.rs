//! `ferrisdb-controller`: runs one replica of a FerrisDB cluster controller group.
//!
//! Serves the `ClusterController` gRPC service (while it leads), the `ControllerGroup`
//! service (Raft among the replicas), `grpc.health.v1` and gRPC reflection on `--listen`,
//! keeps its Raft log, snapshots and node id in `--data-dir`, and shuts down cleanly on
//! SIGTERM or SIGINT. `--peers` lists the whole group (the same list on every replica);
//! without it the replica forms a group of one. Logs go to stderr (`RUST_LOG` filters,
//! default `info`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ferrisdb_server::controller::group::RaftTimings;
use ferrisdb_server::controller::{self, ControllerConfig};

/// Runs a FerrisDB cluster controller.
#[derive(Parser, Debug)]
#[command(name = "ferrisdb-controller", version, about)]
struct Args {
    /// Address to serve gRPC on.
    #[arg(long, default_value = "127.0.0.1:4500")]
    listen: SocketAddr,
    /// Address the other replicas, workers and clients reach this one at (default: the
    /// listen address).
    #[arg(long)]
    advertise: Option<String>,
    /// Directory for the replica's Raft log, snapshots and node id (created if missing).
    #[arg(long)]
    data_dir: PathBuf,
    /// Every replica of the group, this one included, comma-separated `host:port` (the same
    /// list, in the same order, on every replica; the first forms a new group). Empty: a
    /// group of one.
    #[arg(long, value_delimiter = ',')]
    peers: Vec<String>,
    /// Never form a new group: join the group of the replicas in --peers, or wait to be
    /// added with `ferrisdb cluster controllers add ADDR`.
    #[arg(long)]
    join: bool,
    /// Local IP address that this replica's connections leave from: to the other replicas,
    /// and to the log servers and coordinators a recovery talks to (for hosts with several
    /// interfaces; default: the system's choice).
    #[arg(long)]
    peer_source_ip: Option<std::net::IpAddr>,
    /// Raft heartbeat interval among the replicas, in milliseconds.
    #[arg(long, default_value_t = 75)]
    raft_heartbeat_ms: u64,
    /// Shortest Raft election timeout, in milliseconds (the longest is 1.8 times it): how
    /// long followers wait for a silent leader before electing another.
    #[arg(long, default_value_t = 250)]
    raft_election_ms: u64,
    /// Storage servers to wait for before bootstrapping the shard map (first start only).
    #[arg(long, default_value_t = 3)]
    storage_servers: u32,
    /// Replicas per shard.
    #[arg(long, default_value_t = 2)]
    replication: u32,
    /// Log servers in each generation of the transaction system: a commit is acknowledged
    /// once it is durable on all of them (first start only).
    #[arg(long, default_value_t = 2)]
    log_replication: u32,
    /// Heartbeat interval workers are told to use, in milliseconds.
    #[arg(long, default_value_t = 500)]
    heartbeat_ms: u64,
    /// Missed heartbeat intervals after which a worker is reported unhealthy.
    #[arg(long, default_value_t = 4)]
    missed_heartbeats: u32,
    /// Milliseconds a storage server may stay silent before its shards are re-replicated on
    /// other storage servers.
    #[arg(long, default_value_t = 30_000)]
    storage_failure_timeout_ms: u64,
    /// Shards larger than this many bytes are split (0: a limit that grows with the database,
    /// 4 × (200 kB + 45 × √(database bytes)), at most 500 MB).
    #[arg(long, default_value_t = 0)]
    max_shard_bytes: u64,
    /// Shards written faster than this many bytes per second are split (while they hold at
    /// least an eighth of the size limit).
    #[arg(long, default_value_t = 1_000_000)]
    max_shard_write_bytes_per_second: u64,
    /// Async worker threads (default: one per CPU core; `ferrisdb cluster up` passes fewer,
    /// since all of a local cluster's processes share one host).
    #[arg(long)]
    worker_threads: Option<std::num::NonZeroUsize>,
    /// Most connections served at once (default 10,000, less if the open-file limit leaves
    /// less room after a reserve for the process's own files).
    #[arg(long)]
    max_connections: Option<std::num::NonZeroUsize>,
}

fn main() -> ExitCode {
    ferrisdb_server::grpc::init_tracing();
    let args = Args::parse();
    ferrisdb_server::runtime::run("ferrisdb-controller", args.worker_threads, serve(args))
}

async fn serve(args: Args) -> ExitCode {
    if let Some(ip) = args.peer_source_ip {
        ferrisdb_server::worker::set_source_ip(ip);
    }
    let config = ControllerConfig {
        listen: args.listen,
        advertise: args.advertise,
        data_dir: args.data_dir,
        peers: args.peers.into_iter().filter(|p| !p.is_empty()).collect(),
        join_only: args.join,
        peer_source_ip: args.peer_source_ip,
        raft: RaftTimings {
            heartbeat: Duration::from_millis(args.raft_heartbeat_ms),
            election_min: Duration::from_millis(args.raft_election_ms),
            election_max: Duration::from_millis(args.raft_election_ms.saturating_mul(9) / 5),
        },
        storage_servers: args.storage_servers,
        replication: args.replication,
        log_replication: args.log_replication,
        heartbeat_interval: Duration::from_millis(args.heartbeat_ms),
        missed_heartbeats: args.missed_heartbeats,
        max_connections: args.max_connections.map(|n| n.get()),
        storage_failure_timeout: Duration::from_millis(args.storage_failure_timeout_ms),
        max_shard_bytes: (args.max_shard_bytes > 0).then_some(args.max_shard_bytes),
        max_shard_write_bytes_per_second: args.max_shard_write_bytes_per_second,
    };
    match controller::serve(config, ferrisdb_server::grpc::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("ferrisdb-controller: {e}");
            ExitCode::FAILURE
        }
    }
}
