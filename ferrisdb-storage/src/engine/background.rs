//! The background flush and compaction threads. Each sleeps on `Inner::signals_cv` until
//! asked for work (or shut down), then works until nothing is left; a failure is recorded
//! with `set_background_error` so stalled writers fail instead of waiting forever.

use std::sync::Arc;
use std::thread::JoinHandle;

use ferrisdb_core::{Error, Result};

use super::Inner;

/// Which kind of work a thread does.
#[derive(Clone, Copy)]
enum Work {
    Flush,
    Compaction,
}

/// Starts the flush and compaction threads.
pub(crate) fn spawn(inner: &Arc<Inner>) -> Result<Vec<JoinHandle<()>>> {
    let mut threads = Vec::new();
    for (name, work) in [
        ("ferrisdb-flush", Work::Flush),
        ("ferrisdb-compact", Work::Compaction),
    ] {
        let inner = Arc::clone(inner);
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || run(&inner, work))
            .map_err(|e| Error::io("starting a background thread", e))?;
        threads.push(thread);
    }
    // Work left over from before a restart (a deep level 0, say).
    inner.request_background(true, true);
    Ok(threads)
}

fn run(inner: &Inner, work: Work) {
    loop {
        {
            let mut signals = inner.signals.lock();
            loop {
                if signals.shutdown {
                    return;
                }
                let requested = match work {
                    Work::Flush => std::mem::take(&mut signals.flush_requested),
                    Work::Compaction => std::mem::take(&mut signals.compaction_requested),
                };
                if requested {
                    break;
                }
                inner.signals_cv.wait(&mut signals);
            }
        }
        if inner.background_error.lock().is_some() {
            continue;
        }
        let result = match work {
            Work::Flush => flush_all_immutables(inner),
            Work::Compaction => compact_while_needed(inner),
        };
        if let Err(err) = result {
            inner.set_background_error(&err);
        }
    }
}

/// With [`EngineOptions::inline_background_work`](super::EngineOptions): runs the flushes
/// and compactions requested so far on this thread, until none is left; a failure is
/// recorded as a background thread's would be.
pub(crate) fn run_requested_inline(inner: &Inner) {
    if inner.opts.background_threads || !inner.opts.inline_background_work {
        return;
    }
    loop {
        let (flush, compaction) = {
            let mut signals = inner.signals.lock();
            if signals.shutdown {
                return;
            }
            (
                std::mem::take(&mut signals.flush_requested),
                std::mem::take(&mut signals.compaction_requested),
            )
        };
        if !(flush || compaction) || inner.background_error.lock().is_some() {
            return;
        }
        let mut result = Ok(());
        if flush {
            result = flush_all_immutables(inner);
        }
        if compaction && result.is_ok() {
            result = compact_while_needed(inner);
        }
        if let Err(err) = result {
            inner.set_background_error(&err);
            return;
        }
    }
}

fn flush_all_immutables(inner: &Inner) -> Result<()> {
    while !inner.signals.lock().shutdown && inner.flush_one()? {}
    Ok(())
}

fn compact_while_needed(inner: &Inner) -> Result<()> {
    while !inner.signals.lock().shutdown && inner.compact_once()? {}
    Ok(())
}
