//! `ferrisdb cluster up` as a test fixture: a real local cluster (a group of three controller
//! replicas, a gateway, three storage servers, three log servers and two coordinators, each
//! its own process on 127.0.0.1) under its supervisor.
//!
//! `cluster up` starts the server binaries found next to `ferrisdb` (target/debug): build them
//! first (`cargo test --workspace` does; or `cargo build --workspace --bins`).

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use super::ferrisdb_bin;

/// Processes of the test cluster: three controller replicas, a gateway, three storage
/// servers, three log servers, two coordinators.
pub const PORTS: u16 = 12;

/// Port offset (from the base) of log server `i`: after the gateway, the three storage
/// servers and the two other controllers.
pub const fn log_port_offset(i: u16) -> u16 {
    7 + i
}

/// A running `ferrisdb cluster up`; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Cluster {
    child: Option<Child>,
    /// The cluster's data directory.
    pub dir: PathBuf,
    /// The controller's port; the gateway's is the next one.
    pub port_base: u16,
}

impl Cluster {
    /// Starts `cluster up` in `dir` on ports from `port_base` and waits until it serves.
    pub fn start(dir: &Path, port_base: u16) -> Cluster {
        Self::start_with(dir, port_base, None)
    }

    /// [`start`](Self::start) with the open-file limit (soft and hard) of `cluster up`, and so
    /// of every process it starts, set to `open_files`.
    pub fn start_with(dir: &Path, port_base: u16, open_files: Option<u64>) -> Cluster {
        let bin_dir = ferrisdb_bin()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        for server in [
            "ferrisdb-controller",
            "ferrisdb-coordinator",
            "ferrisdb-gateway",
            "ferrisdb-storage-server",
            "ferrisdb-log-server",
        ] {
            assert!(
                bin_dir.join(server).is_file(),
                "{server} is missing from {}: build the server binaries first \
                 (`cargo build --workspace --bins`, or run `cargo test --workspace`)",
                bin_dir.display()
            );
        }
        std::fs::create_dir_all(dir).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("cluster-up.log"))
            .unwrap();
        let mut command = Command::new(ferrisdb_bin());
        command
            .args(["cluster", "up", "--dir"])
            .arg(dir)
            .args(["--port-base", &port_base.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some(limit) = open_files {
            // SAFETY: the closure runs in the forked child before exec and only calls
            // setrlimit(2), which is async-signal-safe; it touches no memory of the parent.
            unsafe {
                command.pre_exec(move || {
                    let l = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &l) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let child = command.spawn().expect("start `ferrisdb cluster up`");
        let cluster = Cluster {
            child: Some(child),
            dir: dir.to_path_buf(),
            port_base,
        };
        cluster.wait_ready();
        cluster
    }

    /// The cluster file `cluster up` wrote.
    pub fn cluster_file(&self) -> PathBuf {
        self.dir.join("ferrisdb.cluster")
    }

    /// Waits for the cluster file, then until `exec 'get x'` succeeds (bounded).
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = String::new();
        while Instant::now() < deadline {
            if self.cluster_file().is_file() {
                let out = self.run(&["--timeout", "2", "exec", "get x"], None);
                if out.status.success() {
                    return;
                }
                last = String::from_utf8_lossy(&out.stderr).into_owned();
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("cluster not ready after 60 s: {last}\n{}", self.logs());
    }

    /// Runs `ferrisdb --cluster-file FILE ARGS…`, with `stdin` piped in if given.
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(ferrisdb_bin());
        cmd.arg("--cluster-file")
            .arg(self.cluster_file())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        let mut child = cmd.spawn().expect("run ferrisdb");
        if let Some(text) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(text.as_bytes()).unwrap();
        }
        child.wait_with_output().unwrap()
    }

    /// `exec SCRIPT`, asserting success; returns stdout.
    pub fn exec_ok(&self, script: &str) -> String {
        let out = self.run(&["exec", script], None);
        assert!(
            out.status.success(),
            "exec {script:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// SIGTERM to `cluster up`; its exit status (bounded wait, SIGKILL on timeout).
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("cluster running");
        let pid = libc::pid_t::try_from(child.id()).unwrap();
        // SAFETY: kill(2) on the pid of our own child, not yet reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("`cluster up` did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines of the supervisor's, the controller's, the coordinators', the gateway's
    /// and storage-0's logs.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for name in [
            "cluster-up.log",
            "logs/controller.log",
            "logs/coordinator.log",
            "logs/coordinator-1.log",
            "logs/gateway.log",
            "logs/storage-0.log",
        ] {
            let body = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
            let tail: Vec<&str> = body.lines().rev().take(20).collect();
            text.push_str(&format!("--- {name}\n"));
            for line in tail.into_iter().rev() {
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop();
        }
    }
}
