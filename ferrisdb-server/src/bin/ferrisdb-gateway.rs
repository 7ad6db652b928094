//! `ferrisdb-gateway`: runs a FerrisDB gateway, the cluster's public gRPC endpoint.
//!
//! Serves `ferrisdb.v1.KV`, `ferrisdb.v1.Transactions`, `grpc.health.v1` and gRPC reflection
//! on `--listen`, as a client of the cluster whose controller replicas are at
//! `--controller`, registered with the controller as a `gateway` worker (its id in
//! `--data-dir`). Keeps no data: run several, restart any at will; its address stays valid
//! through every recovery of the transaction system. On SIGTERM or SIGINT it stops accepting
//! calls and exits. Logs go to stderr (`RUST_LOG` filters, default `info`).

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use ferrisdb_server::gateway::{self, GatewayConfig};

/// Runs a FerrisDB gateway.
#[derive(Parser, Debug)]
#[command(name = "ferrisdb-gateway", version, about)]
struct Args {
    /// Address to serve gRPC on.
    #[arg(long, default_value = "127.0.0.1:4501")]
    listen: SocketAddr,
    /// Address other processes and `ferrisdb status` reach this one at (host:port); defaults
    /// to --listen.
    #[arg(long)]
    advertise: Option<String>,
    /// Addresses of the cluster controller replicas (comma-separated host:port).
    #[arg(long)]
    controller: String,
    /// Directory for the gateway's worker id (created if missing; it holds no data).
    #[arg(long)]
    data_dir: std::path::PathBuf,
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
    ferrisdb_server::runtime::run("ferrisdb-gateway", args.worker_threads, serve(args))
}

async fn serve(args: Args) -> ExitCode {
    let config = GatewayConfig {
        listen: args.listen,
        advertise: args.advertise.unwrap_or_else(|| args.listen.to_string()),
        controller: args.controller,
        data_dir: args.data_dir,
        max_connections: args.max_connections.map(|n| n.get()),
    };
    match gateway::serve(config, ferrisdb_server::grpc::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("ferrisdb-gateway: {e}");
            eprintln!("ferrisdb-gateway: {e}");
            ExitCode::FAILURE
        }
    }
}
