//! Whether a process can do its job, said the same way everywhere: [`RoleHealth`] holds the
//! problems its parts report (a failed commit log, a failed storage engine, a full connection
//! budget), keeps `grpc.health.v1` in step (`NOT_SERVING`, for the whole server and each of
//! its services, while any problem stands) and gives the reason the worker's heartbeats carry
//! to the controller, which reports the worker unhealthy with it (`ferrisdb status`).
//!
//! A failure that only a restart cures is handled by [`exit_when_writable`]: the process keeps
//! reporting the problem until the directory it writes to has room for what recovery writes
//! and accepts a write and an fsync again, then exits with an error so its supervisor
//! (`ferrisdb cluster up`, systemd, ...) restarts it and the new process recovers from its
//! files. Exiting at once, or as soon as a few bytes are free, would only trade a clear report
//! for a restart loop of processes that fail while recovering.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ferrisdb_storage::vfs::{CreateMode, FileSystem, SharedFs};
use tokio::sync::watch;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// The problems of one process, by source. Cheap to clone; all clones share the state.
#[derive(Debug, Clone)]
pub struct RoleHealth {
    problems: Arc<watch::Sender<BTreeMap<&'static str, String>>>,
}

impl Default for RoleHealth {
    fn default() -> Self {
        Self::new()
    }
}

impl RoleHealth {
    /// A healthy process.
    pub fn new() -> Self {
        RoleHealth {
            problems: Arc::new(watch::channel(BTreeMap::new()).0),
        }
    }

    /// Records (or updates) the problem of `source`, logging it when it is new.
    pub fn set_problem(&self, source: &'static str, reason: impl Into<String>) {
        let reason = reason.into();
        self.problems.send_if_modified(|problems| {
            if problems.get(source) == Some(&reason) {
                return false;
            }
            tracing::error!(%source, %reason, "unhealthy");
            problems.insert(source, reason);
            true
        });
    }

    /// Clears the problem of `source`, if any.
    pub fn clear_problem(&self, source: &'static str) {
        if !self.problems.borrow().contains_key(source) {
            return;
        }
        self.problems.send_if_modified(|problems| {
            let cleared = problems.remove(source).is_some();
            if cleared {
                tracing::info!(%source, "problem cleared");
            }
            cleared
        });
    }

    /// Every current problem in one sentence, or `None` while the process is healthy.
    pub fn unhealthy_reason(&self) -> Option<String> {
        let problems = self.problems.borrow();
        (!problems.is_empty()).then(|| {
            problems
                .iter()
                .map(|(source, reason)| format!("{source}: {reason}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    /// Keeps `reporter` in step with the problems: the whole server (`""`) and each of
    /// `services` are `SERVING` while there are none and `NOT_SERVING` otherwise. Runs until
    /// every clone of this `RoleHealth` is gone; spawn it.
    pub fn drive(
        &self,
        reporter: HealthReporter,
        services: Vec<&'static str>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut problems = self.problems.subscribe();
        async move {
            loop {
                let status = if problems.borrow_and_update().is_empty() {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                };
                for service in std::iter::once("").chain(services.iter().copied()) {
                    reporter.set_service_status(service, status).await;
                }
                if problems.changed().await.is_err() {
                    return;
                }
            }
        }
    }
}

/// How often a failed process probes whether its directory accepts writes again.
pub const WRITABLE_PROBE_EVERY: Duration = Duration::from_secs(1);

/// Completes once `dir` (on `fs`) has `needed()` bytes free and accepts a 64 KiB write and
/// its fsync (a probe file, removed afterwards); checks every [`WRITABLE_PROBE_EVERY`]. A
/// process whose files failed awaits this and then exits to be restarted (see the module
/// docs); `needed` says how much its recovery writes.
pub async fn exit_when_writable(
    fs: SharedFs,
    dir: PathBuf,
    needed: impl Fn(&dyn FileSystem) -> u64 + Send + Sync + 'static,
) {
    let needed = Arc::new(needed);
    loop {
        tokio::time::sleep(WRITABLE_PROBE_EVERY).await;
        let (probe_fs, probe_dir) = (fs.clone(), dir.clone());
        let needed = needed.clone();
        let writable = crate::exec::blocking("the writability probe", move || {
            let fs = probe_fs.as_ref();
            fs.available_bytes(&probe_dir)
                .is_ok_and(|free| free >= needed(fs))
                && accepts_writes(fs, &probe_dir)
        })
        .await
        .unwrap_or(false);
        if writable {
            tracing::warn!(
                dir = %dir.display(),
                "the directory accepts writes again; exiting so that this process is restarted \
                 and recovers from its files"
            );
            return;
        }
    }
}

/// Bytes of the files directly in `dir` (0 if it cannot be read; a subdirectory counts as
/// what opening it reports): what replaying them may need to write again.
pub fn files_bytes(fs: &dyn FileSystem, dir: &Path) -> u64 {
    let Ok(names) = fs.list_dir(dir) else {
        return 0;
    };
    names
        .iter()
        .filter_map(|name| fs.open_read(&dir.join(name)).ok()?.len().ok())
        .sum()
}

/// Whether `dir` accepts a 64 KiB write and its fsync (the probe file is removed afterwards).
pub fn accepts_writes(fs: &dyn FileSystem, dir: &Path) -> bool {
    let path = dir.join(".write-probe");
    let written = fs.create(&path, CreateMode::Truncate).and_then(|mut file| {
        file.write_all(&[0u8; 64 << 10])?;
        file.sync_all()
    });
    let _ = fs.remove_file(&path);
    written.is_ok()
}

#[cfg(test)]
mod tests {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_server::Health;

    use super::*;

    #[test]
    fn problems_are_kept_by_source_and_cleared() {
        let health = RoleHealth::new();
        assert_eq!(health.unhealthy_reason(), None);
        health.set_problem("commit log", "disk full");
        health.set_problem("connections", "at the limit");
        assert_eq!(
            health.unhealthy_reason().unwrap(),
            "commit log: disk full; connections: at the limit"
        );
        health.clear_problem("connections");
        assert_eq!(health.unhealthy_reason().unwrap(), "commit log: disk full");
        health.clone().clear_problem("commit log");
        assert_eq!(health.unhealthy_reason(), None);
    }

    /// The status of `name`, or `None` while it is not registered yet.
    async fn status_of(service: &tonic_health::server::HealthService, name: &str) -> Option<i32> {
        let request = tonic::Request::new(HealthCheckRequest {
            service: name.into(),
        });
        Some(service.check(request).await.ok()?.into_inner().status)
    }

    #[tokio::test]
    async fn the_health_service_follows_the_problems() {
        let reporter = HealthReporter::new();
        let service = tonic_health::server::HealthService::from_health_reporter(reporter.clone());
        let health = RoleHealth::new();
        let driver = tokio::spawn(health.drive(reporter, vec!["ferrisdb.v1.KV"]));
        let wait_for = |want: ServingStatus| {
            let service = &service;
            async move {
                tokio::time::timeout(Duration::from_secs(10), async {
                    while status_of(service, "").await != Some(want as i32)
                        || status_of(service, "ferrisdb.v1.KV").await != Some(want as i32)
                    {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                })
                .await
                .unwrap_or_else(|_| panic!("health never became {want:?}"));
            }
        };
        wait_for(ServingStatus::Serving).await;
        health.set_problem("commit log", "failed");
        wait_for(ServingStatus::NotServing).await;
        health.clear_problem("commit log");
        wait_for(ServingStatus::Serving).await;
        driver.abort();
    }

    #[test]
    fn a_writable_directory_accepts_the_probe_and_a_missing_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let fs = ferrisdb_storage::vfs::os();
        assert!(accepts_writes(fs.as_ref(), dir.path()));
        assert!(
            !dir.path().join(".write-probe").exists(),
            "probe left behind"
        );
        assert!(!accepts_writes(fs.as_ref(), &dir.path().join("missing")));
    }

    #[test]
    fn files_bytes_sums_the_files_of_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), [0u8; 100]).unwrap();
        std::fs::write(dir.path().join("b"), [0u8; 23]).unwrap();
        let fs = ferrisdb_storage::vfs::os();
        assert_eq!(files_bytes(fs.as_ref(), dir.path()), 123);
        assert_eq!(files_bytes(fs.as_ref(), &dir.path().join("missing")), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn exit_when_writable_waits_for_room() {
        let dir = tempfile::tempdir().unwrap();
        let room = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let needed = {
            let room = room.clone();
            move |_: &dyn FileSystem| {
                if room.load(std::sync::atomic::Ordering::SeqCst) {
                    0
                } else {
                    u64::MAX
                }
            }
        };
        let waiting = tokio::spawn(exit_when_writable(
            ferrisdb_storage::vfs::os(),
            dir.path().to_path_buf(),
            needed,
        ));
        tokio::time::sleep(WRITABLE_PROBE_EVERY * 3).await;
        assert!(!waiting.is_finished(), "exited without room");
        room.store(true, std::sync::atomic::Ordering::SeqCst);
        tokio::time::timeout(WRITABLE_PROBE_EVERY * 10, waiting)
            .await
            .expect("did not exit once there was room")
            .unwrap();
    }
}
