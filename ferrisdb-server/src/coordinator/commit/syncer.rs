//! The pipeline's stages besides the batcher: the syncer (fsync, publish, answer) and
//! the idle ticker task (keeps the committed version following the clock when nothing
//! commits).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use ferrisdb_core::{Error, Version};
use tokio::sync::{mpsc, watch};

use super::stages::nanos;
use super::{IDLE_TICK, Job, LogPlace, Msg, Shared};

/// Queues a [`Msg::Tick`] whenever the committed version stood still for [`IDLE_TICK`];
/// ends when the pipeline is gone (it holds only a weak sender, so it never keeps the
/// batcher alive). A task on the runtime's clock, so a test's paused clock drives it too.
pub(super) async fn run_idle_ticker(
    tx: mpsc::WeakSender<Msg>,
    committed: watch::Receiver<Version>,
) {
    let mut last_seen = *committed.borrow();
    loop {
        tokio::time::sleep(IDLE_TICK).await;
        let Some(tx) = tx.upgrade() else {
            return;
        };
        if tx.is_closed() || committed.has_changed().is_err() {
            return;
        }
        let now = *committed.borrow();
        if now == last_seen {
            // A full queue means commits are flowing anyway.
            let _ = tx.try_send(Msg::Tick);
        }
        last_seen = now;
    }
}

pub(super) async fn run_syncer(
    mut jobs: mpsc::Receiver<Job>,
    shared: Arc<Shared>,
    committed: watch::Sender<Version>,
) {
    while let Some(Job::Batch {
        seq,
        batch,
        replies,
        submitted,
        fresh,
    }) = jobs.recv().await
    {
        let version = batch.version;
        match shared.log.sync(seq).await {
            Ok(()) => {
                shared.counters.durable_ns.fetch_add(
                    nanos(submitted.elapsed()).saturating_mul(fresh),
                    Ordering::Relaxed,
                );
                // A local log's batch is readable before the committed version covers it (a
                // mutation feed serves what the log holds up to that version); the log servers
                // are told after the answers.
                let place = shared.log.place();
                let notice = match place {
                    LogPlace::Local => {
                        shared.log.publish(batch);
                        None
                    }
                    LogPlace::Remote => Some(batch),
                };
                // The committed version advances before any answer (a client that got its
                // answer and asks for a read version must see its commit), but watchers (the
                // storage servers' mutation feeds) and the log servers' notice come only after
                // the answers: first, they would run ahead of the request handlers on a busy
                // runtime (measured with one client: ~200 µs from fsync to handler, mostly
                // that). A reader whose read version comes before the storage servers have the
                // commit waits for it at the storage server, as for any recent commit.
                committed.send_if_modified(|v| {
                    *v = version;
                    false
                });
                shared.counters.commits.fetch_add(fresh, Ordering::Relaxed);
                shared.counters.log_records.fetch_add(1, Ordering::Relaxed);
                for (r, committed) in replies {
                    let _ = r.send(Ok(committed));
                }
                if let Some(batch) = notice {
                    // Let the request handlers (woken above, on this runtime) send their
                    // answers before the notice's sends take the worker.
                    tokio::task::yield_now().await;
                    shared.log.publish(batch);
                }
                committed.send_modify(|_| {});
            }
            Err(e) => {
                if !shared.failed.load(Ordering::Acquire) {
                    tracing::error!(error = %e, %version, "commit log fsync failed; refusing further commits");
                }
                shared.fail(format!("the commit log could not be made durable: {e}"));
                for (r, _) in replies {
                    let _ = r.send(Err(Error::CommitUnknownResult(format!(
                        "the commit log could not be made durable: {e}"
                    ))));
                }
            }
        }
    }
}
