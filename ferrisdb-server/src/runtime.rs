//! The async runtime a server process runs on.
//!
//! By default a process gets tokio's multi-threaded runtime with one worker per CPU core,
//! right for a process that has its machine to itself. `ferrisdb cluster up` runs every
//! process of a cluster on one host, where that would put several workers per core in
//! competition; it passes `--worker-threads` (half the cores, at least one) instead, which
//! keeps a request's wake-ups on fewer threads (measured on 2 cores: ~5-10% more commits/s
//! at 128 clients with one worker per process).

use std::num::NonZeroUsize;

use ferrisdb_core::Error;
use tokio::runtime::{Builder, Runtime};

/// Builds the process's runtime: `worker_threads` workers, or one per core when `None`.
pub fn build(worker_threads: Option<NonZeroUsize>) -> Result<Runtime, Error> {
    let mut builder = Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = worker_threads {
        builder.worker_threads(n.get());
    }
    builder
        .build()
        .map_err(|e| Error::io("starting the async runtime", e))
}

/// Raises the open-file limit (logging it; see [`crate::resources`]), then runs `main` on a
/// runtime from [`build`]; a runtime that cannot start is reported as `name: error` on stderr
/// and exit code 1.
pub fn run<F>(name: &str, worker_threads: Option<NonZeroUsize>, main: F) -> std::process::ExitCode
where
    F: std::future::Future<Output = std::process::ExitCode>,
{
    match crate::resources::raise_open_file_limit() {
        Ok(limit) => tracing::info!(
            soft = limit.soft,
            hard = limit.hard,
            "open-file limit raised to the hard limit"
        ),
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
    }
    match build(worker_threads) {
        Ok(runtime) => runtime.block_on(main),
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runtime_runs_with_the_requested_workers() {
        let runtime = build(NonZeroUsize::new(1)).unwrap();
        assert_eq!(runtime.metrics().num_workers(), 1);
        assert_eq!(runtime.block_on(async { 7 }), 7);
        let default = build(None).unwrap();
        assert!(default.metrics().num_workers() >= 1);
    }
}
