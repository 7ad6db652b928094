//! The simulated cluster's server processes: the real roles (one controller, one log server,
//! one coordinator, one storage server; or, replicated, a controller group of three and two
//! each of coordinators, log servers and storage servers), each its own simulated process
//! with its own
//! simulated disk ([`SimDisk`]), configured as `ferrisdb cluster up` would — and killed and
//! started again on cue ([`SimCluster::kill`], [`SimCluster::restart`]), as a supervisor
//! restarts a crashed role. A role that exits after its disk failed it (a failed fsync, a
//! full disk: it waits until the disk accepts writes again, then exits to recover from its
//! files) is started again by the cluster's supervisor, as `ferrisdb cluster up` or systemd
//! would; any other end of a living role is reported as a failure.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ferrisdb_server::controller::group::RaftTimings;
use ferrisdb_server::controller::{self, ControllerConfig};
use ferrisdb_server::coordinator::server::{self as coordinator, CoordinatorConfig};
use ferrisdb_server::log::process::{self as log_server, LogServerConfig};
use ferrisdb_server::storage::server::{self as storage, StorageConfig};
use ferrisdb_storage::sstable::Compression;
use tokio::sync::mpsc::UnboundedSender;

use super::clock::SimClock;
use super::network::{SimNetwork, process_ip};
use super::process::{self, ProcessId, spawn_in};
use crate::disk::{Faults, SimDisk};

/// The controller's process.
pub const CONTROLLER: ProcessId = 1;
/// The log server's process.
pub const LOG: ProcessId = 2;
/// The coordinator's process.
pub const COORDINATOR: ProcessId = 3;
/// The storage server's process.
pub const STORAGE: ProcessId = 4;
/// The second log server's process (replicated clusters).
pub const LOG_B: ProcessId = 5;
/// The second storage server's process (replicated clusters).
pub const STORAGE_B: ProcessId = 6;
/// The second controller replica's process (replicated clusters).
pub const CONTROLLER_B: ProcessId = 7;
/// The third controller replica's process (replicated clusters).
pub const CONTROLLER_C: ProcessId = 8;
/// The standby coordinator's process (replicated clusters): recruited by a recovery when
/// the serving one is gone.
pub const COORDINATOR_B: ProcessId = 14;
/// The server processes of a cluster with one replica of each role.
pub const SERVERS: [ProcessId; 4] = [CONTROLLER, LOG, COORDINATOR, STORAGE];
/// The server processes of a replicated cluster, as `ferrisdb cluster up` runs one: a
/// controller group of three (the cluster state replicated through Raft), two coordinators
/// (one serves, one stands by), two log servers (each generation's log on both) and two
/// storage servers (each shard on both).
pub const REPLICATED_SERVERS: [ProcessId; 9] = [
    CONTROLLER,
    LOG,
    COORDINATOR,
    STORAGE,
    LOG_B,
    STORAGE_B,
    CONTROLLER_B,
    CONTROLLER_C,
    COORDINATOR_B,
];
/// The controller replicas of a replicated cluster.
pub const CONTROLLER_GROUP: [ProcessId; 3] = [CONTROLLER, CONTROLLER_B, CONTROLLER_C];

/// The address a simulated process serves at.
pub fn server_addr(process: ProcessId) -> SocketAddr {
    SocketAddr::new(process_ip(process).into(), 4500)
}

/// How a process dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Death {
    /// kill -9: the process goes, the machine stays; what it wrote (synced or not) is in the
    /// page cache.
    Process,
    /// The machine loses power: what the process wrote but did not fsync may be lost, torn
    /// or kept, sector by sector.
    PowerCut,
}

/// How long the supervisor waits before it starts a role that exited again.
pub const SUPERVISOR_RESTART_DELAY: Duration = Duration::from_millis(200);

/// The server processes of one simulation, their disks and the network they are on. Clones
/// share them.
#[derive(Debug, Clone)]
pub struct SimCluster {
    network: SimNetwork,
    disks: BTreeMap<ProcessId, SimDisk>,
    /// Each server machine's wall clock (it survives the process's kills).
    clocks: BTreeMap<ProcessId, Arc<SimClock>>,
    /// Where a role that ends (in its current life) reports it.
    ended: UnboundedSender<String>,
    /// The storage engine's bottom level is written with zstd (odd seeds) or LZ4.
    bottom_zstd: bool,
    /// Its server processes ([`SERVERS`] or [`REPLICATED_SERVERS`]).
    servers: &'static [ProcessId],
    /// Roles the supervisor started again after they exited on a disk failure.
    supervised_restarts: Arc<AtomicU64>,
}

impl SimCluster {
    /// Starts the roles, each as its own process with an empty disk whose random choices
    /// follow `seed`: one of each ([`SERVERS`]), or with `replicated` two log servers and two
    /// storage servers, every commit on both logs and every shard on both storage servers
    /// ([`REPLICATED_SERVERS`]). A role that stops or fails while alive reports it on `ended`.
    pub fn start(
        network: SimNetwork,
        seed: u64,
        replicated: bool,
        ended: UnboundedSender<String>,
    ) -> SimCluster {
        let servers: &'static [ProcessId] = if replicated {
            &REPLICATED_SERVERS
        } else {
            &SERVERS
        };
        let disks = servers
            .iter()
            .map(|&p| (p, SimDisk::new(seed ^ (u64::from(p) << 56))))
            .collect();
        // Each machine its own wall clock, somewhere in the 2040s (machines disagree by up
        // to three years): the controller's sets where a new generation's versions start at
        // the least, the coordinator's its commit versions.
        let clocks = servers
            .iter()
            .map(|&p| {
                let base = 2_300_000_000_000_000 + (seed ^ u64::from(p)) % 100_000_000_000_000;
                (p, Arc::new(SimClock::new(base)))
            })
            .collect();
        let cluster = SimCluster {
            network,
            disks,
            clocks,
            ended,
            bottom_zstd: seed % 2 == 1,
            servers,
            supervised_restarts: Arc::default(),
        };
        for &process in servers {
            cluster.spawn_role(process);
        }
        cluster
    }

    /// Its server processes.
    pub fn servers(&self) -> &'static [ProcessId] {
        self.servers
    }

    /// Replicas of each role's data: 2 in a replicated cluster, else 1.
    fn replicas(&self) -> u32 {
        if self.servers.len() > SERVERS.len() {
            2
        } else {
            1
        }
    }

    /// Its controller replicas: [`CONTROLLER_GROUP`] in a replicated cluster, else
    /// [`CONTROLLER`] alone.
    pub fn controllers(&self) -> &'static [ProcessId] {
        if self.servers.len() > SERVERS.len() {
            &CONTROLLER_GROUP
        } else {
            &SERVERS[..1]
        }
    }

    /// Where the roles and clients find the controllers: every replica's address, separated
    /// by commas (as `ferrisdb cluster up` passes them).
    pub fn controllers_target(&self) -> String {
        let addrs: Vec<String> = self
            .controllers()
            .iter()
            .map(|&p| server_addr(p).to_string())
            .collect();
        addrs.join(",")
    }

    /// Kills `process` as `death` says: its listeners and connections go, its tasks are
    /// cut off from the network and its disk, its file locks are released.
    pub fn kill(&self, process: ProcessId, death: Death) {
        process::kill(process);
        self.network.kill(process);
        let disk = &self.disks[&process];
        match death {
            Death::Process => disk.process_died(),
            Death::PowerCut => {
                disk.cut_power();
                disk.reboot();
            }
        }
    }

    /// Kills `process` and replaces its disk with an empty one (the machine is rebuilt): it
    /// starts again ([`restart`](Self::restart)) as a new server with a new identity.
    pub fn kill_and_wipe(&self, process: ProcessId) {
        self.kill(process, Death::Process);
        self.disks[&process].wipe();
    }

    /// Sets the faults of `process`'s disk from now on ([`Faults::default`]: none).
    pub fn set_disk_faults(&self, process: ProcessId, faults: Faults) {
        self.disks[&process].set_faults(faults);
    }

    /// `process`'s disk.
    pub fn disk(&self, process: ProcessId) -> &SimDisk {
        &self.disks[&process]
    }

    /// Roles the supervisor started again after they exited on a disk failure.
    pub fn supervised_restarts(&self) -> u64 {
        self.supervised_restarts.load(Ordering::Relaxed)
    }

    /// `process`'s role exited (its current life): its files and connections close, and
    /// after [`SUPERVISOR_RESTART_DELAY`] it is started again, unless the nemesis killed or
    /// restarted it meanwhile.
    fn exited_and_restart(&self, process: ProcessId) {
        self.kill(process, Death::Process);
        let exited = process::incarnation(process);
        let cluster = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(SUPERVISOR_RESTART_DELAY).await;
            if process::incarnation(process) == exited {
                cluster.supervised_restarts.fetch_add(1, Ordering::Relaxed);
                cluster.restart(process);
            }
        });
    }

    /// Steps `process`'s machine clock by `micros` (negative: backwards).
    pub fn jump_clock(&self, process: ProcessId, micros: i64) {
        self.clocks[&process].jump(micros);
    }

    /// Starts `process`'s role again on what its disk kept.
    pub fn restart(&self, process: ProcessId) {
        self.spawn_role(process);
    }

    fn spawn_role(&self, process: ProcessId) {
        let fs: ferrisdb_storage::vfs::SharedFs = Arc::new(self.disks[&process].for_this_life());
        let clock: Arc<dyn ferrisdb_server::coordinator::Clock> = self.clocks[&process].clone();
        let controller_addr = self.controllers_target();
        let data_dir = |role: &str| PathBuf::from("/ferrisdb-sim").join(role);
        let ended = self.ended.clone();
        let life = process::incarnation(process);
        let disk = self.disks[&process].clone();
        let disk_failures = |disk: &SimDisk| {
            let stats = disk.stats();
            stats.failed_fsyncs + stats.full_disk_writes
        };
        let failures_before = disk_failures(&disk);
        let supervisor = self.clone();
        // A dead life's role fails as its calls fail: only the living one's end counts. A
        // role whose disk failed it in this life exits to recover from its files: the
        // supervisor starts it again.
        let report = move |role: &str, result: ferrisdb_core::Result<()>| {
            if !process::is_alive(life) {
                return;
            }
            match result {
                Err(e) if disk_failures(&disk) > failures_before => {
                    tracing::info!(%role, error = %e, "the role exited after a disk failure");
                    supervisor.exited_and_restart(process);
                }
                Ok(()) => {
                    let _ = ended.send(format!("{role} stopped"));
                }
                Err(e) => {
                    let _ = ended.send(format!("{role} failed: {e}"));
                }
            }
        };
        let shutdown = std::future::pending::<()>;
        match process {
            CONTROLLER | CONTROLLER_B | CONTROLLER_C => {
                // A group forms from every replica's address (the same list on each); a
                // lone controller is a group of one.
                let peers = if self.controllers().len() > 1 {
                    controller_addr.split(',').map(str::to_string).collect()
                } else {
                    Vec::new()
                };
                let config = ControllerConfig {
                    listen: server_addr(process),
                    advertise: None,
                    data_dir: data_dir("controller"),
                    peers,
                    join_only: false,
                    // Election timeouts are drawn from the seed (`controller::raft::runtime`).
                    raft: RaftTimings::default(),
                    peer_source_ip: None,
                    storage_servers: self.replicas(),
                    replication: self.replicas(),
                    log_replication: self.replicas(),
                    heartbeat_interval: Duration::from_millis(500),
                    missed_heartbeats: 4,
                    max_connections: Some(1000),
                    storage_failure_timeout: Duration::from_secs(30),
                    max_shard_bytes: None,
                    max_shard_write_bytes_per_second: 1_000_000,
                };
                spawn_in(process, async move {
                    let result = controller::serve_with(config, fs, clock, shutdown()).await;
                    report("controller", result);
                });
            }
            LOG | LOG_B => {
                let config = LogServerConfig {
                    listen: server_addr(process),
                    advertise: server_addr(process).to_string(),
                    data_dir: data_dir("log"),
                    controller: controller_addr,
                    segment_bytes: 1 << 20,
                    retention_budget_bytes: 64 << 20,
                    max_connections: Some(1000),
                };
                spawn_in(process, async move {
                    let result = log_server::serve_with_fs(config, fs, shutdown()).await;
                    report("log server", result);
                });
            }
            COORDINATOR | COORDINATOR_B => {
                let config = CoordinatorConfig {
                    listen: server_addr(process),
                    advertise: server_addr(process).to_string(),
                    data_dir: data_dir("coordinator"),
                    controller: Some(controller_addr),
                    segment_bytes: 1 << 20,
                    max_connections: Some(1000),
                    idempotency_retention: Duration::from_secs(60),
                };
                spawn_in(process, async move {
                    let result = coordinator::serve_with(config, fs, clock, shutdown()).await;
                    report("coordinator", result);
                });
            }
            STORAGE | STORAGE_B => {
                let config = StorageConfig {
                    listen: server_addr(process),
                    advertise: server_addr(process).to_string(),
                    data_dir: data_dir("storage"),
                    controller: controller_addr,
                    // Small, so that runs flush and compact.
                    memtable_bytes: 64 << 10,
                    block_cache_bytes: 8 << 20,
                    compression: Compression::Lz4,
                    bottommost_compression: self.bottom_zstd.then_some(Compression::Zstd),
                    max_connections: Some(1000),
                    install_piece_bytes: 1 << 20,
                };
                spawn_in(process, async move {
                    let result = storage::serve_with_fs(config, fs, shutdown()).await;
                    report("storage server", result);
                });
            }
            other => unreachable!("process {other} is not a server"),
        }
    }
}
