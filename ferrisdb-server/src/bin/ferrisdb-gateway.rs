//! `ferrisdb-gateway`: runs a FerrisDB gateway, the cluster's public gRPC endpoint.
//!
//! Serves `ferrisdb.v1.KV`, `ferrisdb.v1.Transactions`, `grpc.health.v1` and gRPC reflection
//! on `--listen`, as a client of the cluster whose controller replicas are at
//! `--controller`. Keeps no state: run several, restart any at will; its address stays valid
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
    /// Addresses of the cluster controller replicas (comma-separated host:port).
    #[arg(long)]
    controller: String,
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
        controller: args.controller,
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
