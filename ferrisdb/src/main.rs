//! The `ferrisdb` command-line tool.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

/// FerrisDB: a distributed transactional key-value database.
#[derive(Parser, Debug)]
#[command(name = "ferrisdb", version, about)]
struct Cli {
    /// Cluster file naming the controller (default: ./ferrisdb-data/ferrisdb.cluster).
    #[arg(long, global = true)]
    cluster_file: Option<PathBuf>,
    /// Controller address, instead of a cluster file.
    #[arg(long, global = true)]
    controller: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Manage a local multi-process cluster.
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        target: BenchTarget,
    },
}

#[derive(Subcommand, Debug)]
enum BenchTarget {
    /// db_bench-style workloads straight against the storage engine (no network).
    ///
    /// Example: `ferrisdb bench engine --num 1000000 --workloads fillrandom,readrandom,readseq`
    Engine {
        /// Comma-separated workloads, run in order on one engine: fillseq, fillrandom,
        /// overwrite, readrandom, seekrandom, readseq, readwhilewriting, flush.
        #[arg(
            long,
            default_value = "fillseq,fillrandom,overwrite,readrandom,seekrandom,readseq,readwhilewriting"
        )]
        workloads: String,
        /// Keys in the data set.
        #[arg(long, default_value_t = 1_000_000)]
        num: u64,
        /// Key size in bytes (at least 8).
        #[arg(long, default_value_t = 16)]
        key_size: usize,
        /// Value size in bytes.
        #[arg(long, default_value_t = 100)]
        value_size: usize,
        /// fsync every write batch (group commit across writers).
        #[arg(long)]
        sync: bool,
        /// Puts per write batch.
        #[arg(long, default_value_t = 1)]
        batch_size: usize,
        /// Reader threads in read workloads.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Reads per reader thread (default: --num).
        #[arg(long)]
        reads: Option<u64>,
        /// Engine directory (default: a temporary directory, removed afterwards).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Block cache budget in MiB.
        #[arg(long, default_value_t = 32)]
        cache_mib: usize,
        /// Memtable budget in MiB.
        #[arg(long, default_value_t = 64)]
        memtable_mib: usize,
    },
}

#[derive(Subcommand, Debug)]
enum ClusterAction {
    /// Start (or resume) a local cluster: a controller, a coordinator and storage servers,
    /// each its own process, supervised until Ctrl-C or SIGTERM.
    ///
    /// Example: `ferrisdb cluster up --dir ./ferrisdb-data --port-base 4500`
    Up {
        /// Data directory holding every process's files, logs and the cluster file.
        #[arg(long, default_value = "./ferrisdb-data")]
        dir: PathBuf,
        /// First port: controller on it, coordinator on +1, storage servers from +2.
        #[arg(long, default_value_t = 4500)]
        port_base: u16,
        /// IP address every process listens on and advertises.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Number of storage servers.
        #[arg(long, default_value_t = 3)]
        storage_servers: u16,
        /// Replicas per shard.
        #[arg(long, default_value_t = 2)]
        replication: u16,
        /// Directory holding the server binaries (default: next to `ferrisdb`).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Cluster { action } => match action {
                ClusterAction::Up {
                    dir,
                    port_base,
                    host,
                    storage_servers,
                    replication,
                    bin_dir,
                } => {
                    cli::cluster_up::run(cli::cluster_up::ClusterUp {
                        dir,
                        port_base,
                        host,
                        storage_servers,
                        replication,
                        bin_dir,
                    })
                    .await
                }
            },
            Command::Bench {
                target:
                    BenchTarget::Engine {
                        workloads,
                        num,
                        key_size,
                        value_size,
                        sync,
                        batch_size,
                        threads,
                        reads,
                        dir,
                        cache_mib,
                        memtable_mib,
                    },
            } => {
                let cfg = cli::bench_engine::EngineBench {
                    workloads,
                    num,
                    key_size,
                    value_size,
                    sync,
                    batch_size,
                    threads,
                    dir,
                    cache_mib,
                    memtable_mib,
                    reads,
                };
                tokio::task::spawn_blocking(move || cli::bench_engine::run(cfg).map(|_| ()))
                    .await
                    .map_err(|e| format!("benchmark thread failed: {e}"))?
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
