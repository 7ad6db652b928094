//! `ferrisdb cluster up`: runs a local multi-process cluster under one data directory and
//! supervises it.
//!
//! Layout under `--dir`: `controller/` and `controller-N/` (the controller group's replicas),
//! `coordinator/` and `coordinator-N/`, `log-N/` (log servers), `storage-N/`, `gateway/` (each
//! process's data; the gateway's holds only its id), `logs/<process>.log`, and the cluster file `ferrisdb.cluster`. Ports: the first
//! controller on the base port, the gateway (the public KV and Transactions APIs) on base+1,
//! storage servers from base+2, then the other controllers, then the log servers, then the
//! coordinators (one serves the current generation, the others stand by for a recovery). The
//! gateway keeps no state, so its address stays valid through every recovery. A child that exits
//! unexpectedly is restarted (at most once per second); SIGINT/SIGTERM stops every child with
//! SIGTERM (SIGKILL after a grace period). Running it again on the same directory resumes the
//! same cluster with its data.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// Name of the cluster file inside the data directory.
pub const CLUSTER_FILE_NAME: &str = "ferrisdb.cluster";

/// How long children get to exit after SIGTERM before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Settings of `cluster up`.
#[derive(Debug, Clone)]
pub struct ClusterUp {
    /// Data directory.
    pub dir: PathBuf,
    /// First port.
    pub port_base: u16,
    /// Host (IP) every process listens on and advertises.
    pub host: String,
    /// Number of storage servers.
    pub storage_servers: u16,
    /// Replicas of the controller group.
    pub controllers: u16,
    /// Replicas per shard.
    pub replication: u16,
    /// Number of log servers.
    pub log_servers: u16,
    /// Log servers per generation.
    pub log_replication: u16,
    /// Coordinator processes (one serves, the others stand by).
    pub coordinators: u16,
    /// Directory holding the server binaries (default: next to this executable).
    pub bin_dir: Option<PathBuf>,
}

/// One supervised process.
struct Managed {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
    last_start: Instant,
    restarts: u32,
}

impl Managed {
    fn start(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("opening {}: {e}", self.log.display()))?;
        let err = log
            .try_clone()
            .map_err(|e| format!("duplicating a log handle: {e}"))?;
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.program.display()))?;
        self.child = Some(child);
        self.last_start = Instant::now();
        Ok(())
    }
}

fn binary(bin_dir: &Path, name: &str) -> Result<PathBuf, String> {
    let path = bin_dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{name} not found in {} (build it with `cargo build --release --workspace --bins`, \
             or point --bin-dir at the directory holding it)",
            bin_dir.display()
        ))
    }
}

/// Async worker threads for the coordinator and each storage server of a local cluster: half
/// this host's cores, at least one (the controller, nearly idle, gets one).
fn local_worker_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// Runs the cluster until Ctrl-C or SIGTERM. Errors are messages for the user.
pub async fn run(cfg: ClusterUp) -> Result<(), String> {
    if cfg.storage_servers == 0 || cfg.replication == 0 || cfg.replication > cfg.storage_servers {
        return Err(format!(
            "need 1 <= replication ({}) <= storage servers ({})",
            cfg.replication, cfg.storage_servers
        ));
    }
    if cfg.controllers == 0 {
        return Err("need at least one controller".into());
    }
    if cfg.coordinators == 0 {
        return Err("need at least one coordinator".into());
    }
    if cfg.log_replication == 0 || cfg.log_replication > cfg.log_servers || cfg.log_replication > 5
    {
        return Err(format!(
            "need 1 <= log replication ({}) <= log servers ({}), and log replication <= 5",
            cfg.log_replication, cfg.log_servers
        ));
    }
    if cfg.log_servers == cfg.log_replication {
        eprintln!(
            "note: with {} log servers and log replication {}, losing one for good stops \
             commits until it is replaced; one more log server than the replication is usual",
            cfg.log_servers, cfg.log_replication
        );
    }
    if cfg.controllers.is_multiple_of(2) {
        eprintln!(
            "note: {} controllers tolerate no more failures than {}; an odd number is usual",
            cfg.controllers,
            cfg.controllers - 1
        );
    }
    let last_port = u32::from(cfg.port_base)
        + 1
        + u32::from(cfg.storage_servers)
        + u32::from(cfg.controllers - 1)
        + u32::from(cfg.log_servers)
        + u32::from(cfg.coordinators);
    if last_port > u32::from(u16::MAX) {
        return Err(format!(
            "ports {}..={last_port} do not fit below 65536",
            cfg.port_base
        ));
    }
    let bin_dir = match &cfg.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .ok_or("cannot locate this executable's directory; pass --bin-dir")?,
    };
    let dir = &cfg.dir;
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| format!("creating {}: {e}", logs.display()))?;
    let dir = dir
        .canonicalize()
        .map_err(|e| format!("resolving {}: {e}", dir.display()))?;
    // Held until this supervisor exits: a second `cluster up` on the same directory would
    // start a second set of processes on the same files.
    let _lock = ferrisdb_storage::dir_lock::DirLock::acquire(&dir, "a local cluster")
        .map_err(|e| e.to_string())?;
    // A directory that holds more controller replicas than asked for: starting fewer would
    // leave the group without a quorum (its other members never come back).
    let held: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| format!("reading {}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| {
            name.strip_prefix("controller-")
                .and_then(|n| n.parse::<u16>().ok())
                .is_some_and(|n| n >= cfg.controllers)
        })
        .filter(|name| dir.join(name).join("raft-node-id").is_file())
        .collect();
    if !held.is_empty() {
        return Err(format!(
            "{} holds controller replicas beyond --controllers {} ({}): run with the number \
             it was started with, or remove replicas with `ferrisdb cluster controllers remove` \
             first",
            dir.display(),
            cfg.controllers,
            held.join(", ")
        ));
    }
    let host = &cfg.host;
    let addr = |offset: u16| format!("{host}:{}", cfg.port_base + offset);
    // The first controller keeps the base port (and its directory `controller/`); the others
    // follow the storage servers.
    let controller_addrs: Vec<String> = (0..cfg.controllers)
        .map(|i| {
            if i == 0 {
                addr(0)
            } else {
                addr(1 + cfg.storage_servers + i)
            }
        })
        .collect();
    let controller_addr = controller_addrs.join(",");
    let path = |p: PathBuf| p.to_string_lossy().into_owned();

    // Every process of the cluster shares this host: one async worker per core each would put
    // several per core in competition (see `ferrisdb_server::runtime`).
    let workers = local_worker_threads().to_string();
    let controller_bin = binary(&bin_dir, "ferrisdb-controller")?;
    let mut procs = Vec::new();
    for (i, listen) in controller_addrs.iter().enumerate() {
        let name = if i == 0 {
            "controller".to_string()
        } else {
            format!("controller-{i}")
        };
        procs.push(Managed {
            name: name.clone(),
            program: controller_bin.clone(),
            args: vec![
                "--listen".into(),
                listen.clone(),
                "--peers".into(),
                controller_addr.clone(),
                "--data-dir".into(),
                path(dir.join(&name)),
                "--storage-servers".into(),
                cfg.storage_servers.to_string(),
                "--replication".into(),
                cfg.replication.to_string(),
                "--log-replication".into(),
                cfg.log_replication.to_string(),
                "--worker-threads".into(),
                "1".into(),
            ],
            log: logs.join(format!("{name}.log")),
            child: None,
            last_start: Instant::now(),
            restarts: 0,
        });
    }
    procs.push(Managed {
        name: "gateway".into(),
        program: binary(&bin_dir, "ferrisdb-gateway")?,
        args: vec![
            "--listen".into(),
            addr(1),
            "--data-dir".into(),
            path(dir.join("gateway")),
            "--controller".into(),
            controller_addr.clone(),
            "--worker-threads".into(),
            workers.clone(),
        ],
        log: logs.join("gateway.log"),
        child: None,
        last_start: Instant::now(),
        restarts: 0,
    });
    let coordinator_bin = binary(&bin_dir, "ferrisdb-coordinator")?;
    for i in 0..cfg.coordinators {
        let name = if i == 0 {
            "coordinator".to_string()
        } else {
            format!("coordinator-{i}")
        };
        procs.push(Managed {
            name: name.clone(),
            program: coordinator_bin.clone(),
            args: vec![
                "--listen".into(),
                addr(1 + cfg.storage_servers + cfg.controllers + cfg.log_servers + i),
                "--data-dir".into(),
                path(dir.join(&name)),
                "--controller".into(),
                controller_addr.clone(),
                "--worker-threads".into(),
                workers.clone(),
            ],
            log: logs.join(format!("{name}.log")),
            child: None,
            last_start: Instant::now(),
            restarts: 0,
        });
    }
    let log_bin = binary(&bin_dir, "ferrisdb-log-server")?;
    for i in 0..cfg.log_servers {
        procs.push(Managed {
            name: format!("log-{i}"),
            program: log_bin.clone(),
            args: vec![
                "--listen".into(),
                addr(1 + cfg.storage_servers + cfg.controllers + i),
                "--data-dir".into(),
                path(dir.join(format!("log-{i}"))),
                "--controller".into(),
                controller_addr.clone(),
                "--worker-threads".into(),
                "1".into(),
            ],
            log: logs.join(format!("log-{i}.log")),
            child: None,
            last_start: Instant::now(),
            restarts: 0,
        });
    }
    let storage_bin = binary(&bin_dir, "ferrisdb-storage-server")?;
    for i in 0..cfg.storage_servers {
        procs.push(Managed {
            name: format!("storage-{i}"),
            program: storage_bin.clone(),
            args: vec![
                "--listen".into(),
                addr(2 + i),
                "--data-dir".into(),
                path(dir.join(format!("storage-{i}"))),
                "--controller".into(),
                controller_addr.clone(),
                "--worker-threads".into(),
                workers.clone(),
            ],
            log: logs.join(format!("storage-{i}.log")),
            child: None,
            last_start: Instant::now(),
            restarts: 0,
        });
    }

    let cluster_file = dir.join(CLUSTER_FILE_NAME);
    write_cluster_file(&cluster_file, None, &controller_addrs)?;

    for p in &mut procs {
        p.start()?;
    }
    println!("FerrisDB local cluster running (data in {})", dir.display());
    for p in &procs {
        let listen = p.args.get(1).cloned().unwrap_or_default();
        println!("  {:<12} {:<22} log {}", p.name, listen, p.log.display());
    }
    println!("cluster file: {}", cluster_file.display());
    // Once the group has created the cluster, the cluster file names it too.
    tokio::spawn({
        let cluster_file = cluster_file.clone();
        let controller_addrs = controller_addrs.clone();
        async move { name_cluster_in_file(&cluster_file, &controller_addrs).await }
    });
    println!(
        "connect:  ferrisdb --cluster-file {} shell",
        cluster_file.display()
    );
    println!(
        "grpcurl:  grpcurl -plaintext -d '{{\"key\":\"aGVsbG8=\",\"value\":\"d29ybGQ=\"}}' {} ferrisdb.v1.KV/Put",
        addr(1)
    );
    println!("Press Ctrl-C to stop.");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("installing the SIGTERM handler: {e}"))?;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = tick.tick() => {
                for p in &mut procs {
                    let exited = match p.child.as_mut().map(|c| c.try_wait()) {
                        Some(Ok(Some(status))) => Some(status.to_string()),
                        Some(Err(e)) => Some(e.to_string()),
                        _ => None,
                    };
                    if let Some(status) = exited {
                        p.child = None;
                        eprintln!("{} exited ({status}); see {}", p.name, p.log.display());
                    }
                    if p.child.is_none() && p.last_start.elapsed() >= Duration::from_secs(1) {
                        p.restarts += 1;
                        eprintln!("restarting {} (restart #{})", p.name, p.restarts);
                        if let Err(e) = p.start() {
                            eprintln!("{e}");
                        }
                    }
                }
            }
        }
    }
    println!("stopping the cluster...");
    stop_all(&mut procs).await;
    println!("stopped.");
    Ok(())
}

/// Writes the cluster file atomically: `<cluster id>@host:port,host:port,...` (the id once
/// known), with a comment line.
fn write_cluster_file(
    path: &Path,
    cluster_id: Option<&str>,
    controllers: &[String],
) -> Result<(), String> {
    let mut file = ferrisdb_client::ClusterFile::new(controllers.iter().cloned())
        .map_err(|e| e.to_string())?;
    file.cluster_id = cluster_id.map(String::from);
    file.store(path).map_err(|e| e.to_string())
}

/// Waits (up to a minute) until the controller group answers with its cluster id, then
/// rewrites the cluster file with it.
async fn name_cluster_in_file(path: &Path, controllers: &[String]) {
    for _ in 0..600 {
        if let Ok(report) = super::status::fetch(controllers).await
            && !report.cluster_id.is_empty()
        {
            if let Err(e) = write_cluster_file(path, Some(&report.cluster_id), controllers) {
                eprintln!("{e}");
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// SIGTERM to every child, then SIGKILL to any still running after [`STOP_GRACE`].
async fn stop_all(procs: &mut [Managed]) {
    // Storage servers and coordinator first, controller last.
    for p in procs.iter_mut().rev() {
        if let Some(pid) = p.child.as_ref().and_then(|c| c.id())
            && let Ok(pid) = libc::pid_t::try_from(pid)
        {
            // SAFETY: kill(2) on the pid of a child we spawned and have not reaped yet.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
    }
    let deadline = Instant::now() + STOP_GRACE;
    for p in procs.iter_mut() {
        if let Some(child) = p.child.as_mut() {
            let left = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(left, child.wait()).await.is_err() {
                eprintln!("{} did not stop within {STOP_GRACE:?}; killing it", p.name);
                let _ = child.kill().await;
            }
        }
        p.child = None;
    }
}
