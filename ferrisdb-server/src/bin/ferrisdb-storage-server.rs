//! `ferrisdb-storage-server`: runs a FerrisDB storage server process.
//!
//! Opens (or creates) its LSM engine under `--data-dir`, registers with the controller at
//! `--controller`, pulls the mutations of its shards from the coordinator, serves reads on
//! `--listen` (plus `grpc.health.v1` and reflection) and shuts down cleanly on SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use ferrisdb_server::storage::{self, StorageConfig};
use ferrisdb_storage::sstable::Compression;

/// Runs a FerrisDB storage server.
#[derive(Parser, Debug)]
#[command(name = "ferrisdb-storage-server", version, about)]
struct Args {
    /// Address to serve gRPC on.
    #[arg(long, default_value = "127.0.0.1:4502")]
    listen: SocketAddr,
    /// Address other processes use to reach this server (default: the listen address).
    #[arg(long)]
    advertise: Option<String>,
    /// Directory for the engine's files and the server's identity.
    #[arg(long)]
    data_dir: PathBuf,
    /// Addresses of the cluster controller replicas (comma-separated host:port; the storage
    /// server follows the group's leader).
    #[arg(long, default_value = "127.0.0.1:4500")]
    controller: String,
    /// Memtable budget in MiB (a full memtable is flushed to an SSTable).
    #[arg(long, default_value_t = 64)]
    memtable_mib: usize,
    /// Block cache budget in MiB.
    #[arg(long, default_value_t = 128)]
    cache_mib: usize,
    /// Codec of the engine's SSTable data blocks: `lz4`, `zstd` or `none`.
    #[arg(long, default_value = "lz4", value_parser = codec)]
    compression: Compression,
    /// Codec of the tables compactions write to the engine's deepest level holding data,
    /// where most of the data lives (e.g. `zstd`: about a sixth smaller than LZ4, reads of
    /// blocks missing the cache about half as fast). Default: as `--compression`.
    #[arg(long, value_parser = codec)]
    bottommost_compression: Option<Compression>,
    /// Async worker threads (default: one per CPU core; `ferrisdb cluster up` passes fewer,
    /// since all of a local cluster's processes share one host).
    #[arg(long)]
    worker_threads: Option<std::num::NonZeroUsize>,
    /// Most connections served at once (default 10,000, less if the open-file limit leaves
    /// less room after a reserve for the server's own files).
    #[arg(long)]
    max_connections: Option<std::num::NonZeroUsize>,
    /// A shard taken over is installed in engine batches of at most this many KiB of its
    /// data (each batch is one WAL record).
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=32768))]
    install_piece_kib: u64,
}

/// Parses a codec name.
fn codec(name: &str) -> Result<Compression, String> {
    Compression::from_name(name).ok_or_else(|| format!("unknown codec {name:?}: lz4, zstd or none"))
}

fn main() -> ExitCode {
    ferrisdb_server::grpc::init_tracing();
    let args = Args::parse();
    ferrisdb_server::runtime::run("ferrisdb-storage-server", args.worker_threads, serve(args))
}

async fn serve(args: Args) -> ExitCode {
    let config = StorageConfig {
        listen: args.listen,
        advertise: args.advertise.unwrap_or_else(|| args.listen.to_string()),
        data_dir: args.data_dir,
        controller: args.controller,
        memtable_bytes: args.memtable_mib << 20,
        block_cache_bytes: args.cache_mib << 20,
        compression: args.compression,
        bottommost_compression: args.bottommost_compression,
        max_connections: args.max_connections.map(|n| n.get()),
        install_piece_bytes: (args.install_piece_kib << 10) as usize,
    };
    match storage::serve(config, ferrisdb_server::grpc::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("ferrisdb-storage-server: {e}");
            ExitCode::FAILURE
        }
    }
}
