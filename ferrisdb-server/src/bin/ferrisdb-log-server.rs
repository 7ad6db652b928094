//! `ferrisdb-log-server`: runs a FerrisDB log server process.
//!
//! Holds a replica of the commit log under `--data-dir`, registers with the controller at
//! `--controller`, takes commit batches from the coordinator of the generation it is recruited
//! into, serves them to the storage servers on `--listen` (plus `grpc.health.v1` and
//! reflection) and shuts down cleanly on SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use ferrisdb_server::log::process::{self, LogServerConfig};

/// Runs a FerrisDB log server.
#[derive(Parser, Debug)]
#[command(name = "ferrisdb-log-server", version, about)]
struct Args {
    /// Address to serve gRPC on.
    #[arg(long, default_value = "127.0.0.1:4503")]
    listen: SocketAddr,
    /// Address other processes use to reach this server (default: the listen address).
    #[arg(long)]
    advertise: Option<String>,
    /// Directory for the log and the server's identity.
    #[arg(long)]
    data_dir: PathBuf,
    /// Addresses of the cluster controller replicas (comma-separated host:port).
    #[arg(long, default_value = "127.0.0.1:4500")]
    controller: String,
    /// Log segment size in MiB.
    #[arg(long, default_value_t = 64)]
    segment_mib: u64,
    /// Retention budget in MiB: while the log holds more, it drops versions that only
    /// lagging storage servers (slow, or gone for good) still lack, as long as every shard
    /// keeps a replica durable past them; those servers must then be re-replicated. 0: no
    /// budget (a storage server gone for good makes the log grow without bound).
    #[arg(long, default_value_t = 1024)]
    retention_budget_mib: u64,
    /// Async worker threads (default: one per CPU core).
    #[arg(long)]
    worker_threads: Option<std::num::NonZeroUsize>,
    /// Most connections served at once (default 10,000, less if the open-file limit leaves
    /// less room).
    #[arg(long)]
    max_connections: Option<std::num::NonZeroUsize>,
}

fn main() -> ExitCode {
    ferrisdb_server::grpc::init_tracing();
    let args = Args::parse();
    ferrisdb_server::runtime::run("ferrisdb-log-server", args.worker_threads, serve(args))
}

async fn serve(args: Args) -> ExitCode {
    let Some(segment_bytes) = args.segment_mib.checked_mul(1 << 20).filter(|b| *b > 0) else {
        eprintln!(
            "ferrisdb-log-server: --segment-mib must be between 1 and {}",
            u64::MAX >> 20
        );
        return ExitCode::FAILURE;
    };
    let config = LogServerConfig {
        listen: args.listen,
        advertise: args.advertise.unwrap_or_else(|| args.listen.to_string()),
        data_dir: args.data_dir,
        controller: args.controller,
        segment_bytes,
        retention_budget_bytes: args.retention_budget_mib.saturating_mul(1 << 20),
        max_connections: args.max_connections.map(|n| n.get()),
    };
    match process::serve(config, ferrisdb_server::grpc::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("ferrisdb-log-server: {e}");
            ExitCode::FAILURE
        }
    }
}
