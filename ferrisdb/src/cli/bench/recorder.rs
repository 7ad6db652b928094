//! Collects the benchmark's measurements from every client task: a latency histogram per
//! operation kind, a per-second series (operations and a latency histogram for each second of
//! the run), retries (attempts beyond the first, mostly conflicts) and errors.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use parking_lot::Mutex;

use super::workload::Op;

/// Highest latency tracked, in microseconds (a minute).
const MAX_MICROS: u64 = 60_000_000;

/// A latency histogram in microseconds.
pub fn histogram() -> Histogram<u64> {
    // Constant bounds, valid by construction (1 <= low, high >= 2 * low, 3 significant digits).
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("constant histogram bounds are valid")
}

/// Totals of one operation kind.
#[derive(Debug, Clone)]
pub struct OpStats {
    /// Latencies of completed operations, microseconds.
    pub latency: Histogram<u64>,
    /// Retries made by completed and failed operations.
    pub retries: u64,
    /// Operations that failed.
    pub errors: u64,
}

/// One second of the run.
#[derive(Debug, Clone)]
pub struct Second {
    /// Operations completed during it.
    pub ops: u64,
    /// Their latencies, microseconds.
    pub latency: Histogram<u64>,
}

/// Everything measured.
#[derive(Debug, Clone, Default)]
pub struct Measurements {
    /// Per operation kind.
    pub ops: BTreeMap<Op, OpStats>,
    /// Per second since the start, in order.
    pub seconds: Vec<Second>,
    /// The first error seen, for the report.
    pub first_error: Option<String>,
}

impl Measurements {
    /// Completed operations of every kind.
    pub fn completed(&self) -> u64 {
        self.ops.values().map(|s| s.latency.len()).sum()
    }
}

/// Shared by the client tasks.
pub struct Recorder {
    start: Instant,
    inner: Mutex<Measurements>,
}

impl Recorder {
    /// A recorder whose seconds count from now.
    pub fn new() -> Self {
        Recorder {
            start: Instant::now(),
            inner: Mutex::new(Measurements::default()),
        }
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Records one operation that finished now.
    pub fn record(&self, op: Op, latency: Duration, retries: u64, error: Option<String>) {
        let micros = (latency.as_micros() as u64).clamp(1, MAX_MICROS);
        let second = self.start.elapsed().as_secs() as usize;
        let mut m = self.inner.lock();
        let stats = m.ops.entry(op).or_insert_with(|| OpStats {
            latency: histogram(),
            retries: 0,
            errors: 0,
        });
        stats.retries += retries;
        match error {
            Some(e) => {
                stats.errors += 1;
                m.first_error.get_or_insert(e);
            }
            None => {
                let _ = stats.latency.record(micros);
                while m.seconds.len() <= second {
                    m.seconds.push(Second {
                        ops: 0,
                        latency: histogram(),
                    });
                }
                if let Some(s) = m.seconds.get_mut(second) {
                    s.ops += 1;
                    let _ = s.latency.record(micros);
                }
            }
        }
    }

    /// Operations completed so far, and during the last full second.
    pub fn progress(&self) -> (u64, u64) {
        let m = self.inner.lock();
        let now = self.start.elapsed().as_secs() as usize;
        let last = now
            .checked_sub(1)
            .and_then(|s| m.seconds.get(s))
            .map_or(0, |s| s.ops);
        (m.completed(), last)
    }

    /// The measurements so far.
    pub fn snapshot(&self) -> Measurements {
        self.inner.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_per_kind_per_second_retries_and_errors() {
        let r = Recorder::new();
        r.record(Op::Read, Duration::from_micros(100), 0, None);
        r.record(Op::Read, Duration::from_micros(300), 2, None);
        r.record(Op::Update, Duration::ZERO, 1, Some("boom".into()));
        let m = r.snapshot();
        assert_eq!(m.completed(), 2);
        let read = &m.ops[&Op::Read];
        assert_eq!((read.latency.len(), read.retries, read.errors), (2, 2, 0));
        assert!(read.latency.max() >= 299);
        let update = &m.ops[&Op::Update];
        assert_eq!(
            (update.latency.len(), update.retries, update.errors),
            (0, 1, 1)
        );
        assert_eq!(m.first_error.as_deref(), Some("boom"));
        assert_eq!(m.seconds.iter().map(|s| s.ops).sum::<u64>(), 2);
    }
}
