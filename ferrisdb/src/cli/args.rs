//! The command line: every subcommand, flag and help text (with examples).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use super::bench::Workload;
use super::bench::store::StoreKind;

/// FerrisDB: a distributed transactional key-value database.
#[derive(Parser, Debug)]
#[command(
    name = "ferrisdb",
    version,
    about,
    after_help = "Examples:
  ferrisdb cluster up --dir ./ferrisdb-data --port-base 4500
  ferrisdb exec 'set hello world; get hello'
  ferrisdb shell
  ferrisdb status --json
  ferrisdb bench --workload a --duration 30 --clients 16 --records 100000
  ferrisdb --controller 10.0.0.5:4500 status"
)]
pub struct Cli {
    /// Cluster file naming the controller (default: ./ferrisdb-data/ferrisdb.cluster, written
    /// by `ferrisdb cluster up`).
    #[arg(long, global = true, value_name = "PATH")]
    pub cluster_file: Option<PathBuf>,
    /// Controller address(es) HOST:PORT[,HOST:PORT…], instead of a cluster file.
    #[arg(long, global = true, value_name = "ADDR")]
    pub controller: Option<String>,
    /// Give up on a transaction (retries included) after this many seconds.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 10.0)]
    pub timeout: f64,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Manage a local multi-process cluster.
    Cluster {
        /// What to do with it.
        #[command(subcommand)]
        action: ClusterAction,
    },
    /// Run shell commands non-interactively (from the argument, or from standard input).
    #[command(
        after_help = "Commands: get K, set K V, clear K, getrange B E [LIMIT] [reverse], \
clearrange B E, begin, commit, rollback, status, help, exit. Separate them with ';' or newlines. \
Keys and values take \\xNN escapes and \"...\" quoting. Stops at the first failed command and \
exits non-zero. `get` prints the value alone on its line, or `(not found)`.

Examples:
  ferrisdb exec 'set user/1 ada; get user/1'
  ferrisdb exec 'set \"key with spaces\" \\x00\\xff; getrange user/ user0 10'
  printf 'begin\\nset a 1\\nset b 2\\ncommit\\n' | ferrisdb exec"
    )]
    Exec {
        /// The commands; read from standard input when omitted.
        commands: Option<String>,
    },
    /// Interactive shell with line editing and history (~/.ferrisdb_history).
    #[command(after_help = "Type `help` inside the shell for its commands.

Examples:
  ferrisdb shell
  ferrisdb --cluster-file /etc/ferrisdb/ferrisdb.cluster shell")]
    Shell,
    /// Cluster status: processes, versions, replication, commit statistics.
    #[command(after_help = "Examples:
  ferrisdb status
  ferrisdb status --json | jq '.storage_servers[].lag_seconds'")]
    Status(StatusArgs),
    /// Benchmarks: YCSB-style workloads against the cluster (or an etcd member), or
    /// `bench engine`.
    #[command(
        args_conflicts_with_subcommands = true,
        after_help = "Workloads: a (50% read, 50% update), b (95% read, 5% update), c (read only), \
e (95% scans of up to 100 keys, 5% inserts), f (50% read, 50% read-modify-write), w (update only), \
r (range reads of exactly 100 keys), t (read-modify-write of two different keys in one transaction).
Keys live under `bench/`; keys are chosen with YCSB's scrambled Zipfian distribution unless \
--uniform. With --store etcd the same workloads run against an etcd member instead.

Examples:
  ferrisdb bench --workload a --duration 30 --clients 16 --records 100000
  ferrisdb bench --workload f --duration 10 --no-load --json out.json --plot out.svg
  ferrisdb bench --store etcd --etcd-endpoint 127.0.0.1:2379 --workload t --clients 16
  ferrisdb bench --store etcd --etcd-serializable --workload c --no-load --uniform
  ferrisdb bench engine --num 1000000 --workloads fillrandom,readrandom"
    )]
    Bench(Box<BenchArgs>),
}

/// `status` flags.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Machine-readable output (field names are documented in docs/cli.md).
    #[arg(long)]
    pub json: bool,
}

/// `bench`: either a cluster workload (the flags) or the `engine` subcommand.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// `bench engine`.
    #[command(subcommand)]
    pub target: Option<BenchTarget>,
    /// The cluster workload's flags.
    #[command(flatten)]
    pub workload: WorkloadArgs,
}

/// Flags of a cluster workload.
#[derive(Args, Debug)]
pub struct WorkloadArgs {
    /// Workload: a, b, c, e, f, w, r or t.
    #[arg(long, default_value = "a")]
    pub workload: Workload,
    /// Seconds to run (after loading).
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub duration: u64,
    /// Concurrent clients (tasks, each running one transaction at a time).
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Records in the data set.
    #[arg(long, default_value_t = 10_000)]
    pub records: u64,
    /// Do not load the data set first (reuse one loaded before).
    #[arg(long)]
    pub no_load: bool,
    /// After the run, read every record of the data set back (range reads of 1,000) and fail
    /// unless each is present with a value of --value-size bytes (FerrisDB only).
    #[arg(long)]
    pub check: bool,
    /// Key size in bytes (`bench/` plus a zero-padded number).
    #[arg(long, default_value_t = 16)]
    pub key_size: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
    /// Choose keys uniformly instead of Zipfian.
    #[arg(long)]
    pub uniform: bool,
    /// Write the results as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Write an SVG chart of throughput and p99 latency per second to this file.
    #[arg(long, value_name = "PATH.svg")]
    pub plot: Option<PathBuf>,
    /// The store to benchmark: ferrisdb (the cluster of --cluster-file/--controller) or etcd.
    #[arg(long, value_name = "ferrisdb|etcd", default_value = "ferrisdb")]
    pub store: StoreKind,
    /// The etcd member's client address, with --store etcd.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:2379")]
    pub etcd_endpoint: String,
    /// With --store etcd: serializable point and range reads (served by the member locally)
    /// instead of linearizable ones. Read-modify-writes always read linearizably.
    #[arg(long)]
    pub etcd_serializable: bool,
}

/// `bench` subcommands.
#[derive(Subcommand, Debug)]
pub enum BenchTarget {
    /// db_bench-style workloads straight against the storage engine (no network).
    #[command(after_help = "Example:
  ferrisdb bench engine --num 1000000 --workloads fillrandom,readrandom,readseq")]
    Engine(EngineArgs),
}

/// `bench engine` flags.
#[derive(Args, Debug)]
pub struct EngineArgs {
    /// Comma-separated workloads, run in order on one engine: fillseq, fillrandom,
    /// overwrite, readrandom, seekrandom, readseq, readwhilewriting, clearrange,
    /// clearmany, flush.
    #[arg(
        long,
        default_value = "fillseq,fillrandom,overwrite,readrandom,seekrandom,readseq,readwhilewriting"
    )]
    pub workloads: String,
    /// Keys in the data set.
    #[arg(long, default_value_t = 1_000_000)]
    pub num: u64,
    /// Key size in bytes (at least 8).
    #[arg(long, default_value_t = 16)]
    pub key_size: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
    /// fsync every write batch (group commit across writers).
    #[arg(long)]
    pub sync: bool,
    /// Puts per write batch.
    #[arg(long, default_value_t = 1)]
    pub batch_size: usize,
    /// Reader threads in read workloads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Reads per reader thread (default: --num).
    #[arg(long)]
    pub reads: Option<u64>,
    /// Engine directory (default: a temporary directory, removed afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Block cache budget in MiB.
    #[arg(long, default_value_t = 32)]
    pub cache_mib: usize,
    /// Memtable budget in MiB.
    #[arg(long, default_value_t = 64)]
    pub memtable_mib: usize,
    /// Versions kept below the newest (one version per write batch): the GC horizon follows
    /// this far behind, so flushes and compactions drop older versions, as a storage server
    /// keeps its 5 s MVCC window. 0 keeps every version.
    #[arg(long, default_value_t = 0)]
    pub gc_window: u64,
    /// Compression of the SSTables' data blocks: `lz4` (the engine's default), `zstd` or
    /// `none`.
    #[arg(long, default_value = "lz4", value_parser = ["lz4", "zstd", "none"])]
    pub compression: String,
    /// Compression of the tables compactions write to the deepest level holding data
    /// (default: as `--compression`), e.g. `zstd` with `--compression lz4`.
    #[arg(long, value_parser = ["lz4", "zstd", "none"])]
    pub bottommost_compression: Option<String>,
}

/// `cluster controllers` subcommands.
#[derive(Subcommand, Debug)]
pub enum ControllersAction {
    /// Every replica with its role, term and last applied Raft index.
    List,
    /// Add a running replica that waits to join (`ferrisdb-controller --join`).
    Add {
        /// Its address (host:port).
        address: String,
    },
    /// Remove a replica (refused when the rest would have no quorum of reachable replicas).
    Remove {
        /// Its address (host:port).
        address: String,
    },
}

/// `cluster` subcommands.
#[derive(Subcommand, Debug)]
pub enum ClusterAction {
    /// Start (or resume) a local cluster: a controller group, a gateway, coordinators, log
    /// servers and storage servers, each its own process, supervised until Ctrl-C or SIGTERM.
    #[command(after_help = "Examples:
  ferrisdb cluster up
  ferrisdb cluster up --controllers 1
  ferrisdb cluster up --dir /tmp/fdb --port-base 5500 --storage-servers 5 --replication 3")]
    Up {
        /// Data directory holding every process's files, logs and the cluster file.
        #[arg(long, default_value = "./ferrisdb-data")]
        dir: PathBuf,
        /// First port: the first controller on it, the gateway (public KV and Transactions
        /// APIs) on +1, storage servers from +2, then the other controllers, then the log
        /// servers, then the coordinators.
        #[arg(long, default_value_t = 4500)]
        port_base: u16,
        /// Replicas of the cluster controller (1, 3 or 5): the cluster survives the loss of
        /// any minority of them.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=7))]
        controllers: u16,
        /// IP address every process listens on and advertises.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Number of storage servers.
        #[arg(long, default_value_t = 3)]
        storage_servers: u16,
        /// Replicas per shard.
        #[arg(long, default_value_t = 2)]
        replication: u16,
        /// Number of log servers.
        #[arg(long, default_value_t = 3)]
        log_servers: u16,
        /// Log servers per generation of the transaction system: every commit is durable on
        /// all of them before it is acknowledged; the others stand by to replace a lost one.
        #[arg(long, default_value_t = 2)]
        log_replication: u16,
        /// Coordinator processes: one serves the current generation, the others stand by so
        /// that a recovery need not wait for a lost one to restart.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=5))]
        coordinators: u16,
        /// Directory holding the server binaries (default: next to `ferrisdb`).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
    },
    /// The replicas of the controller group: list them, add one, remove one.
    #[command(after_help = "Examples:
  ferrisdb cluster controllers list
  ferrisdb-controller --join --listen 127.0.0.1:4507 --data-dir ./controller-3 &
  ferrisdb cluster controllers add 127.0.0.1:4507
  ferrisdb cluster controllers remove 127.0.0.1:4506")]
    Controllers {
        /// What to do.
        #[command(subcommand)]
        action: ControllersAction,
    },
    /// Exclude storage servers: their shards move to the others (reads go on meanwhile) and
    /// they receive none; says when each is safe to turn off.
    #[command(after_help = "Examples:
  ferrisdb cluster exclude 127.0.0.1:4502
  ferrisdb cluster exclude 127.0.0.1:4502 127.0.0.1:4503 --wait")]
    Exclude {
        /// Storage server addresses (host:port, as `status` lists them).
        #[arg(required = true)]
        addresses: Vec<String>,
        /// Wait until they hold no shard, printing progress.
        #[arg(long)]
        wait: bool,
    },
    /// Include excluded storage servers again: they may receive shards.
    #[command(after_help = "Example:
  ferrisdb cluster include 127.0.0.1:4502")]
    Include {
        /// Storage server addresses (host:port).
        #[arg(required = true)]
        addresses: Vec<String>,
    },
    /// Same as `ferrisdb status`.
    #[command(after_help = "Example:
  ferrisdb cluster status --json")]
    Status(StatusArgs),
}
