//! `ferrisdb-coordinator`: runs a FerrisDB transaction coordinator process.
//!
//! Serves `TransactionCoordinator`, `grpc.health.v1` and gRPC reflection on `--listen` (the
//! public APIs are the gateway's, `ferrisdb-gateway`), keeps its worker id (and, outside a
//! cluster, its commit log) in `--data-dir`, registers with and heartbeats to the
//! controller at `--controller` (retrying in the background while it is unreachable), and on
//! SIGTERM or SIGINT finishes in-flight batches and exits with the log synced. Logs go to
//! stderr (`RUST_LOG` filters, default `info`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use ferrisdb_server::coordinator::{self, CoordinatorConfig};

/// Runs a FerrisDB transaction coordinator.
#[derive(Parser, Debug)]
#[command(name = "ferrisdb-coordinator", version, about)]
struct Args {
    /// Address to serve gRPC on.
    #[arg(long, default_value = "127.0.0.1:4501")]
    listen: SocketAddr,
    /// Address other processes reach this one at (host:port); defaults to --listen.
    #[arg(long)]
    advertise: Option<String>,
    /// Directory for the commit log and the worker id (created if missing).
    #[arg(long)]
    data_dir: PathBuf,
    /// Addresses of the cluster controller replicas (comma-separated host:port; the
    /// coordinator follows the group's leader); without it the coordinator runs alone.
    #[arg(long)]
    controller: Option<String>,
    /// Size at which a commit log segment is sealed, in bytes.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    log_segment_bytes: u64,
    /// Async worker threads (default: one per CPU core; `ferrisdb cluster up` passes fewer,
    /// since all of a local cluster's processes share one host).
    #[arg(long)]
    worker_threads: Option<std::num::NonZeroUsize>,
    /// Most connections served at once (default 10,000, less if the open-file limit leaves
    /// less room after a reserve for the process's own files).
    #[arg(long)]
    max_connections: Option<std::num::NonZeroUsize>,
    /// Local IP address that connections to the controller and the log servers leave from
    /// (for hosts with several interfaces; default: the system's choice).
    #[arg(long)]
    source_ip: Option<std::net::IpAddr>,
    /// How long idempotency ids are remembered after their commit, in seconds: a retry of a
    /// transaction whose first attempt is older than this cannot be checked for "already
    /// committed" and fails with commit_unknown_result_fatal (1041).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    idempotency_retention_secs: u64,
}

fn main() -> ExitCode {
    ferrisdb_server::grpc::init_tracing();
    let args = Args::parse();
    ferrisdb_server::runtime::run("ferrisdb-coordinator", args.worker_threads, serve(args))
}

async fn serve(args: Args) -> ExitCode {
    if let Some(ip) = args.source_ip {
        ferrisdb_server::worker::set_source_ip(ip);
    }
    let config = CoordinatorConfig {
        listen: args.listen,
        advertise: args.advertise.unwrap_or_else(|| args.listen.to_string()),
        data_dir: args.data_dir,
        controller: args.controller,
        segment_bytes: args.log_segment_bytes.max(1),
        max_connections: args.max_connections.map(|n| n.get()),
        idempotency_retention: std::time::Duration::from_secs(args.idempotency_retention_secs),
    };
    match coordinator::serve(config, ferrisdb_server::grpc::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("ferrisdb-coordinator: {e}");
            eprintln!("ferrisdb-coordinator: {e}");
            ExitCode::FAILURE
        }
    }
}
