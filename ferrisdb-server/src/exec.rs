//! Where the roles' blocking work runs: file I/O and fsyncs ([`blocking`]) and the
//! long-lived loops that wait on the disk (the commit syncers, the purger: [`spawn_worker`]).
//!
//! In a server process blocking calls go to tokio's blocking pool and each worker loop gets
//! a thread of its own, so the async workers never wait for a disk. In the simulator
//! (`ferrisdb-sim`), whose processes all run on one thread over in-memory disks, the same
//! calls run on that thread instead — the work inline, each worker loop as a task — once it
//! calls [`run_inline_on_this_thread`]: then nothing happens on another thread, and a seed's
//! run is the same every time.

use std::cell::Cell;
use std::future::Future;

use ferrisdb_core::{Error, Result};

thread_local! {
    static INLINE: Cell<bool> = const { Cell::new(false) };
}

/// From now on, blocking work started on this thread runs on it, and worker loops started
/// on it run as tasks of its runtime (the simulator's one-thread runtime).
pub fn run_inline_on_this_thread() {
    INLINE.with(|inline| inline.set(true));
}

/// Whether blocking work started on this thread runs on it ([`run_inline_on_this_thread`]).
pub fn runs_inline() -> bool {
    INLINE.with(Cell::get)
}

/// Runs `work` (file I/O, an fsync) off the async workers: on tokio's blocking pool, or on
/// this thread in the simulator. `what` names it in the error if it panicked.
pub async fn blocking<T: Send + 'static>(
    what: &'static str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    if runs_inline() {
        return Ok(work());
    }
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Internal(format!("{what} failed: {e}")))
}

/// Starts a loop that blocks on the disk between its awaits (a syncer): on a thread of its
/// own named `name`, driving `work` with the current runtime's handle (so its timers and
/// channels work), or as a task of the current runtime in the simulator. Must be called
/// inside a tokio runtime.
pub fn spawn_worker<F>(name: &str, work: F) -> Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    if runs_inline() {
        tokio::spawn(work);
        return Ok(());
    }
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| Error::Internal(format!("{name} must be started inside a tokio runtime")))?;
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || runtime.block_on(work))
        .map(drop)
        .map_err(|e| Error::io(format!("starting the {name} thread"), e))
}

/// Starts `work`, a short-lived future that blocks between its awaits (a scan of the engine
/// feeding a response stream): on tokio's blocking pool, or as a task in the simulator. Must
/// be called inside a tokio runtime.
pub fn spawn_blocking_task<F>(work: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    if runs_inline() {
        tokio::spawn(work);
        return;
    }
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || runtime.block_on(work));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_server_runs_blocking_work_and_workers_on_other_threads() {
        let here = std::thread::current().id();
        let there = blocking("a test", move || std::thread::current().id())
            .await
            .unwrap();
        assert_ne!(here, there);
        let (tx, rx) = tokio::sync::oneshot::channel();
        spawn_worker("test-worker", async move {
            // Timers work on the worker's thread.
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            let _ = tx.send(std::thread::current().name().map(String::from));
        })
        .unwrap();
        assert_eq!(rx.await.unwrap().as_deref(), Some("test-worker"));
    }

    #[test]
    fn the_simulator_runs_them_on_its_own_thread() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let outcome = std::thread::spawn(move || {
            run_inline_on_this_thread();
            let here = std::thread::current().id();
            runtime.block_on(async move {
                let there = blocking("a test", move || std::thread::current().id())
                    .await
                    .unwrap();
                let (tx, rx) = tokio::sync::oneshot::channel();
                spawn_worker("test-worker", async move {
                    let _ = tx.send(std::thread::current().id());
                })
                .unwrap();
                (here, there, rx.await.unwrap())
            })
        })
        .join()
        .unwrap();
        assert_eq!(outcome.0, outcome.1);
        assert_eq!(outcome.0, outcome.2);
        assert!(!runs_inline(), "the flag belongs to the thread that set it");
    }
}
