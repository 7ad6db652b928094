//! A whole local cluster for integration tests: a controller group (one replica, or several),
//! a coordinator, three log servers (two per generation), N storage servers and a gateway
//! (the public KV and Transactions APIs), each a real process on 127.0.0.1 with a free port,
//! under one temporary directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferrisdb_proto::v1;
use ferrisdb_proto::v1::cluster_controller_client::ClusterControllerClient;
use ferrisdb_proto::v1::storage_server_client::StorageServerClient;
use ferrisdb_proto::v1::transaction_coordinator_client::TransactionCoordinatorClient;
use tonic::transport::Channel;

use super::proxy::{Proxy, source_ip};
use super::{ServerProcess, free_port, wait_for_port};

/// Storage servers of test clusters install a shard taken over in pieces of this many KiB,
/// so the small shards of tests are installed in several pieces, as large ones are in
/// production (with storage servers killed between pieces in the fault suite).
const INSTALL_PIECE_KIB: &str = "16";

/// The codec of storage server `i`'s deepest engine level: zstd for every other server, so
/// that the tests read tables of both codecs.
fn bottom_codec(i: usize) -> &'static str {
    if i % 2 == 1 { "zstd" } else { "lz4" }
}

/// One role process and how to start it again.
pub struct Node {
    /// Address others reach it at (a controller replica of a group: its proxy).
    pub addr: SocketAddr,
    /// Address it listens on.
    listen: SocketAddr,
    binary: &'static str,
    args: Vec<String>,
    log: PathBuf,
    /// The running process, if any.
    pub process: Option<ServerProcess>,
}

impl Node {
    fn new(binary: &'static str, args: Vec<String>, addr: SocketAddr, log: PathBuf) -> Self {
        Node {
            addr,
            listen: addr,
            binary,
            args,
            log,
            process: None,
        }
    }

    /// A node not yet started that runs `binary` with `args`, listening on `addr`, logging
    /// to `log`.
    pub fn with_args(
        binary: &'static str,
        args: Vec<String>,
        addr: SocketAddr,
        log: PathBuf,
    ) -> Self {
        Node::new(binary, args, addr, log)
    }

    /// Starts the process and waits for its port.
    pub fn start(&mut self) {
        self.process = Some(ServerProcess::spawn(self.binary, &self.args, &self.log));
        wait_for_port(self.listen, Duration::from_secs(30));
    }

    /// Starts the process without waiting for its port (for a process expected to fail).
    pub fn spawn(&mut self) {
        self.process = Some(ServerProcess::spawn(self.binary, &self.args, &self.log));
    }

    /// SIGKILLs the process.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }

    /// Its data directory (the `--data-dir` argument).
    pub fn data_dir(&self) -> Option<PathBuf> {
        let at = self.args.iter().position(|a| a == "--data-dir")?;
        self.args.get(at + 1).map(PathBuf::from)
    }

    /// Its log so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A running test cluster.
pub struct TestCluster {
    /// Keeps the data alive.
    pub dir: tempfile::TempDir,
    /// The controller (the first replica of the controller group).
    pub controller: Node,
    /// The other replicas of the controller group (none for a group of one).
    pub more_controllers: Vec<Node>,
    /// For a group: the proxy in front of each replica (index 0: `controller`), through which
    /// every connection to it passes, so tests can partition the replicas.
    pub controller_proxies: Vec<Proxy>,
    /// The coordinator.
    pub coordinator: Node,
    /// Standby coordinators ([`add_coordinator`](Self::add_coordinator)).
    pub more_coordinators: Vec<Node>,
    /// For a group: the proxy in front of each coordinator (index 0: `coordinator`); each
    /// coordinator's own connections leave from [`coordinator_source_ip`]`(i)`.
    pub coordinator_proxies: Vec<Proxy>,
    /// The log servers.
    pub logs: Vec<Node>,
    /// For a group: the proxy in front of each log server.
    pub log_proxies: Vec<Proxy>,
    /// The storage servers.
    pub storage: Vec<Node>,
    /// The gateway: the public `KV` and `Transactions` services.
    pub gateway: Node,
}

/// Log servers every test cluster runs.
pub const LOG_SERVERS: usize = 3;
/// Log servers per generation.
pub const LOG_REPLICATION: usize = 2;

/// The loopback address coordinator `i` of a group's cluster connects from (see
/// [`TestCluster::coordinator_proxies`]).
pub fn coordinator_source_ip(i: usize) -> std::net::IpAddr {
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 31 + i as u8))
}

/// Puts `node` behind a new proxy: it advertises the proxy's address, and others reach it
/// through the proxy.
async fn behind_proxy(node: &mut Node) -> Proxy {
    let proxy = Proxy::start(node.listen).await;
    node.addr = proxy.addr;
    node.args
        .extend(["--advertise".to_string(), proxy.addr.to_string()]);
    proxy
}

fn addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

impl TestCluster {
    /// Starts `storage_servers` storage servers with `replication`, waits until the shard map
    /// is bootstrapped and a commit can be read back.
    pub async fn start(storage_servers: usize, replication: usize) -> TestCluster {
        Self::start_with(storage_servers, replication, |_| {}).await
    }

    /// [`start`](Self::start), calling `prepare(root)` on the cluster's root directory before
    /// any process starts (storage server `i` keeps its data in `root/storage-{i}`).
    pub async fn start_with(
        storage_servers: usize,
        replication: usize,
        prepare: impl FnOnce(&Path),
    ) -> TestCluster {
        Self::start_full(1, storage_servers, replication, prepare).await
    }

    /// [`start`](Self::start) with `args` added to every log server's command line.
    pub async fn start_with_log_args(
        storage_servers: usize,
        replication: usize,
        args: &[&str],
    ) -> TestCluster {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let mut cluster = Self::build(1, storage_servers, replication, |_| {}).await;
        for log in &mut cluster.logs {
            log.args.extend(args.iter().cloned());
        }
        cluster.start_all().await;
        cluster
    }

    /// [`start`](Self::start) with `args` added to the controller's command line.
    pub async fn start_with_controller_args(
        storage_servers: usize,
        replication: usize,
        args: &[&str],
    ) -> TestCluster {
        let mut cluster = Self::build(1, storage_servers, replication, |_| {}).await;
        cluster
            .controller
            .args
            .extend(args.iter().map(|a| a.to_string()));
        cluster.start_all().await;
        cluster
    }

    /// A cluster whose controller is a group of `controllers` replicas.
    pub async fn start_group(
        controllers: usize,
        storage_servers: usize,
        replication: usize,
    ) -> TestCluster {
        Self::start_full(controllers, storage_servers, replication, |_| {}).await
    }

    /// [`start_group`](Self::start_group) with `args` added to every controller replica's
    /// command line.
    pub async fn start_group_with_controller_args(
        controllers: usize,
        storage_servers: usize,
        replication: usize,
        args: &[&str],
    ) -> TestCluster {
        let mut cluster = Self::build(controllers, storage_servers, replication, |_| {}).await;
        for node in std::iter::once(&mut cluster.controller).chain(&mut cluster.more_controllers) {
            node.args.extend(args.iter().map(|a| a.to_string()));
        }
        cluster.start_all().await;
        cluster
    }

    async fn start_full(
        controllers: usize,
        storage_servers: usize,
        replication: usize,
        prepare: impl FnOnce(&Path),
    ) -> TestCluster {
        let mut cluster = Self::build(controllers, storage_servers, replication, prepare).await;
        cluster.start_all().await;
        cluster
    }

    /// The cluster's nodes, none started.
    async fn build(
        controllers: usize,
        storage_servers: usize,
        replication: usize,
        prepare: impl FnOnce(&Path),
    ) -> TestCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        prepare(root);
        let listens: Vec<SocketAddr> = (0..controllers.max(1)).map(|_| addr()).collect();
        // A group's replicas sit behind proxies (their advertised addresses) and connect to
        // each other from their own loopback addresses, so tests can partition them.
        let mut proxies = Vec::new();
        if controllers > 1 {
            for l in &listens {
                proxies.push(Proxy::start(*l).await);
            }
        }
        let controller_addrs: Vec<SocketAddr> = if proxies.is_empty() {
            listens.clone()
        } else {
            proxies.iter().map(|p| p.addr).collect()
        };
        let peers = controller_addrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut replicas: Vec<Node> = controller_addrs
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let name = if i == 0 {
                    "controller".to_string()
                } else {
                    format!("controller-{i}")
                };
                let mut args = vec![
                    "--listen".into(),
                    listens[i].to_string(),
                    "--data-dir".into(),
                    s(&root.join(&name)),
                    "--storage-servers".into(),
                    storage_servers.to_string(),
                    "--replication".into(),
                    replication.to_string(),
                    "--log-replication".into(),
                    LOG_REPLICATION.to_string(),
                    "--heartbeat-ms".into(),
                    "100".into(),
                ];
                if controllers > 1 {
                    args.extend([
                        "--peers".into(),
                        peers.clone(),
                        "--advertise".into(),
                        a.to_string(),
                        "--peer-source-ip".into(),
                        source_ip(i).to_string(),
                    ]);
                }
                let mut node = Node::new(
                    env!("CARGO_BIN_EXE_ferrisdb-controller"),
                    args,
                    *a,
                    root.join(format!("{name}.log")),
                );
                node.listen = listens[i];
                node
            })
            .collect();
        let controller = replicas.remove(0);
        let c_addr = peers.clone();
        let co_addr = addr();
        let coordinator = Node::new(
            env!("CARGO_BIN_EXE_ferrisdb-coordinator"),
            vec![
                "--listen".into(),
                co_addr.to_string(),
                "--data-dir".into(),
                s(&root.join("coordinator")),
                "--controller".into(),
                c_addr.to_string(),
            ],
            co_addr,
            root.join("coordinator.log"),
        );
        let logs: Vec<Node> = (0..LOG_SERVERS)
            .map(|i| {
                let a = addr();
                Node::new(
                    env!("CARGO_BIN_EXE_ferrisdb-log-server"),
                    vec![
                        "--listen".into(),
                        a.to_string(),
                        "--data-dir".into(),
                        s(&root.join(format!("log-{i}"))),
                        "--controller".into(),
                        c_addr.to_string(),
                    ],
                    a,
                    root.join(format!("log-{i}.log")),
                )
            })
            .collect();
        let storage = (0..storage_servers)
            .map(|i| {
                let a = addr();
                Node::new(
                    env!("CARGO_BIN_EXE_ferrisdb-storage-server"),
                    vec![
                        "--listen".into(),
                        a.to_string(),
                        "--data-dir".into(),
                        s(&root.join(format!("storage-{i}"))),
                        "--controller".into(),
                        c_addr.to_string(),
                        "--memtable-mib".into(),
                        "1".into(),
                        "--install-piece-kib".into(),
                        INSTALL_PIECE_KIB.into(),
                        "--bottommost-compression".into(),
                        bottom_codec(i).into(),
                    ],
                    a,
                    root.join(format!("storage-{i}.log")),
                )
            })
            .collect();
        let gw_addr = addr();
        let gateway = Node::new(
            env!("CARGO_BIN_EXE_ferrisdb-gateway"),
            vec![
                "--listen".into(),
                gw_addr.to_string(),
                "--data-dir".into(),
                s(&root.join("gateway")),
                "--controller".into(),
                c_addr.to_string(),
            ],
            gw_addr,
            root.join("gateway.log"),
        );
        let mut cluster = TestCluster {
            dir,
            controller,
            more_controllers: replicas,
            controller_proxies: proxies,
            coordinator,
            logs,
            storage,
            gateway,
            more_coordinators: Vec::new(),
            coordinator_proxies: Vec::new(),
            log_proxies: Vec::new(),
        };
        if controllers > 1 {
            // Every process a partition may cut off sits behind a proxy too.
            cluster
                .coordinator
                .args
                .extend(["--source-ip".into(), coordinator_source_ip(0).to_string()]);
            let proxy = behind_proxy(&mut cluster.coordinator).await;
            cluster.coordinator_proxies.push(proxy);
            for log in &mut cluster.logs {
                let proxy = behind_proxy(log).await;
                cluster.log_proxies.push(proxy);
            }
        }
        cluster
    }

    /// Starts one more coordinator (a standby a recovery may recruit), behind a proxy in a
    /// group's cluster; returns its index in [`more_coordinators`](Self::more_coordinators).
    pub async fn add_coordinator(&mut self) -> usize {
        let i = self.more_coordinators.len() + 1;
        let name = format!("coordinator-{i}");
        let a = addr();
        let mut node = Node::new(
            env!("CARGO_BIN_EXE_ferrisdb-coordinator"),
            vec![
                "--listen".into(),
                a.to_string(),
                "--data-dir".into(),
                s(&self.dir.path().join(&name)),
                "--controller".into(),
                self.controller_addresses(),
            ],
            a,
            self.dir.path().join(format!("{name}.log")),
        );
        if !self.controller_proxies.is_empty() {
            node.args
                .extend(["--source-ip".into(), coordinator_source_ip(i).to_string()]);
            let proxy = behind_proxy(&mut node).await;
            self.coordinator_proxies.push(proxy);
        }
        node.start();
        self.more_coordinators.push(node);
        i - 1
    }

    /// Starts one more storage server (registering after bootstrap); returns its index in
    /// [`storage`](Self::storage).
    pub fn add_storage_server(&mut self) -> usize {
        let i = self.storage.len();
        let a = addr();
        let mut node = Node::new(
            env!("CARGO_BIN_EXE_ferrisdb-storage-server"),
            vec![
                "--listen".into(),
                a.to_string(),
                "--data-dir".into(),
                s(&self.dir.path().join(format!("storage-{i}"))),
                "--controller".into(),
                self.controller_addresses(),
                "--memtable-mib".into(),
                "1".into(),
                "--install-piece-kib".into(),
                INSTALL_PIECE_KIB.into(),
                "--bottommost-compression".into(),
                bottom_codec(i).into(),
            ],
            a,
            self.dir.path().join(format!("storage-{i}.log")),
        );
        node.start();
        self.storage.push(node);
        i
    }

    /// Index (0: `coordinator`, i: `more_coordinators[i - 1]`) of the coordinator serving
    /// the current generation, by the controller's state.
    pub async fn serving_coordinator(&self) -> Option<usize> {
        let state = self.state().await.ok()?;
        let serving = state.coordinator?.address;
        std::iter::once(&self.coordinator)
            .chain(&self.more_coordinators)
            .position(|n| n.addr.to_string() == serving)
    }

    /// Cuts coordinator `i` off from the controller group and the log servers, both ways,
    /// through the proxies (a group's cluster only); clients still reach it. Undone by
    /// [`heal_partitions`](Self::heal_partitions).
    pub fn isolate_coordinator(&self, i: usize) {
        let replicas = self.controller_proxies.len();
        for proxy in self.controller_proxies.iter().chain(&self.log_proxies) {
            proxy.block([coordinator_source_ip(i)]);
        }
        self.coordinator_proxies[i].block((0..replicas).map(super::proxy::source_ip));
    }

    /// Lets every connection through every proxy again.
    pub fn heal_partitions(&self) {
        for proxy in self
            .controller_proxies
            .iter()
            .chain(&self.log_proxies)
            .chain(&self.coordinator_proxies)
        {
            proxy.heal();
        }
    }

    /// Coordinator `i` (0: `coordinator`, i: `more_coordinators[i - 1]`).
    pub fn coordinator_mut(&mut self, i: usize) -> &mut Node {
        if i == 0 {
            &mut self.coordinator
        } else {
            &mut self.more_coordinators[i - 1]
        }
    }

    /// Starts every process and waits until the cluster is ready.
    async fn start_all(&mut self) {
        self.controller.start();
        for node in &mut self.more_controllers {
            node.start();
        }
        self.coordinator.start();
        for node in &mut self.logs {
            node.start();
        }
        for node in &mut self.storage {
            node.start();
        }
        self.gateway.start();
        self.wait_ready().await;
    }

    /// Waits until the shard map is bootstrapped, a generation of the transaction system
    /// accepts commits and the gateway says it serves.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(state) = self.state().await {
                let mapped = state
                    .shard_map
                    .as_ref()
                    .is_some_and(|m| !m.shards.is_empty());
                let serving = state.epoch > 0
                    && (state.recovery_state == "accepting commits"
                        || state.recovery_state == "fully recovered");
                // The state may still describe the generation before a restart: the
                // coordinator itself says whether it serves.
                let answers = match &state.coordinator {
                    Some(c) => TransactionCoordinatorClient::new(channel(&c.address))
                        .get_read_version(v1::GetReadVersionRequest::default())
                        .await
                        .is_ok(),
                    None => false,
                };
                if mapped
                    && state.coordinator.is_some()
                    && serving
                    && answers
                    && self.gateway_serving().await
                {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "cluster not ready\n{}",
                self.all_logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every controller replica's address, comma-separated (what workers and clients get).
    pub fn controller_addresses(&self) -> String {
        std::iter::once(&self.controller)
            .chain(&self.more_controllers)
            .map(|n| n.addr.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The controller group's view, from whichever replica leads.
    pub async fn state(&self) -> Result<v1::GetClusterStateResponse, tonic::Status> {
        let mut last = None;
        for node in std::iter::once(&self.controller).chain(&self.more_controllers) {
            let mut c = ClusterControllerClient::new(channel(node.addr));
            match c.get_cluster_state(v1::GetClusterStateRequest {}).await {
                Ok(r) => return Ok(r.into_inner()),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| tonic::Status::unavailable("no controller")))
    }

    /// Whether the gateway's health says `SERVING` (it does once the cluster hands out read
    /// versions).
    pub async fn gateway_serving(&self) -> bool {
        let mut health =
            tonic_health::pb::health_client::HealthClient::new(channel(self.gateway.addr));
        health
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .is_ok_and(|r| {
                r.into_inner().status
                    == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
            })
    }

    /// A client of the coordinator.
    pub fn coordinator_client(&self) -> TransactionCoordinatorClient<Channel> {
        TransactionCoordinatorClient::new(channel(self.coordinator.addr))
    }

    /// Addresses of the storage servers holding `key`, from the controller's shard map.
    pub async fn replicas_of(&self, key: &[u8]) -> Vec<String> {
        let state = self.state().await.expect("cluster state");
        let map = state.shard_map.expect("shard map");
        let shard = map
            .shards
            .iter()
            .find(|s| {
                let r = s.range.as_ref().expect("range");
                key >= r.begin.as_ref() && (r.end.is_empty() || key < r.end.as_ref())
            })
            .expect("a shard holds every key")
            .clone();
        shard
            .storage_ids
            .iter()
            .filter_map(|id| state.workers.iter().find(|w| &w.worker_id == id))
            .map(|w| w.address.clone())
            .collect()
    }

    /// Every process's log, for failure messages.
    pub fn all_logs(&self) -> String {
        let mut out = String::new();
        for (name, node) in [
            ("controller", &self.controller),
            ("coordinator", &self.coordinator),
        ]
        .into_iter()
        .chain(self.more_controllers.iter().map(|n| ("controller", n)))
        .chain(self.logs.iter().map(|n| ("log", n)))
        .chain(self.storage.iter().map(|n| ("storage", n)))
        .chain(self.more_coordinators.iter().map(|n| ("coordinator", n)))
        .chain(std::iter::once(("gateway", &self.gateway)))
        {
            out.push_str(&format!("----- {name} {}\n{}\n", node.addr, node.logs()));
        }
        out
    }
}

/// A lazily connecting channel to `addr`.
pub fn channel(addr: impl std::fmt::Display) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("valid uri")
        .connect_lazy()
}

/// A storage-server client for `addr`.
pub fn storage_client(addr: &str) -> StorageServerClient<Channel> {
    StorageServerClient::new(channel(addr))
}
