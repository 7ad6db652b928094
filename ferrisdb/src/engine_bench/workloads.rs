//! The workloads, written once against [`BenchEngine`]: fills in a given key order,
//! random point reads, seeks with nexts, a full scan, and reads while one writer writes.
//! Every result carries a latency histogram (one sample per batch, read or seek).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::data::{ValueGen, make_key};
use super::engine::BenchEngine;

/// What every workload of one run shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Keys in the data set (`0..num`).
    pub num: u64,
    /// Key length (decimal digits, zero-padded).
    pub key_len: usize,
    /// Value length.
    pub value_size: usize,
    /// Puts per write batch.
    pub batch_size: usize,
    /// Reader threads of the read workloads.
    pub threads: usize,
    /// Point reads per reader thread.
    pub reads: u64,
    /// Seeks per reader thread.
    pub seeks: u64,
    /// Entries read after each seek.
    pub seek_nexts: usize,
    /// Readwhilewriting ends after this long (if set) or after `reads` reads per reader.
    pub rww_duration: Option<Duration>,
    /// Seed of every key order and value.
    pub seed: u64,
}

/// One workload's outcome.
#[derive(Debug, Clone)]
pub struct WorkloadResult {
    /// Workload name.
    pub workload: String,
    /// Operations: puts, reads, seeks or scanned entries.
    pub ops: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Key + value bytes moved.
    pub bytes: u64,
    /// Latencies in nanoseconds (batches, reads or seeks); `None` for the scan.
    pub latency: Option<Histogram<u64>>,
    /// What else to know (found counts, the writer's rate).
    pub note: String,
}

impl WorkloadResult {
    /// Operations per second.
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Megabytes (10^6) per second.
    pub fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64().max(1e-9) / 1e6
    }

    /// The latency at quantile `q` in microseconds, if sampled.
    pub fn quantile_us(&self, q: f64) -> Option<f64> {
        self.latency
            .as_ref()
            .filter(|h| !h.is_empty())
            .map(|h| h.value_at_quantile(q) as f64 / 1000.0)
    }
}

/// An empty latency histogram (1 ns to 1 h, 3 significant digits).
pub fn histogram() -> Histogram<u64> {
    // Constant bounds that hdrhistogram accepts (1 <= low, high >= 2 * low, 3 digits).
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid constant histogram bounds")
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    let _ = h.record(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1));
}

/// Writes the keys of `order` in batches of `settings.batch_size`, values from `values`;
/// stops early once `stop` is set. Returns (puts, bytes) and records one latency per batch.
pub fn write_keys(
    db: &dyn BenchEngine,
    order: impl Iterator<Item = u64>,
    settings: &Settings,
    values: &mut ValueGen,
    latency: &mut Histogram<u64>,
    stop: Option<&AtomicBool>,
) -> Result<(u64, u64), String> {
    let batch = settings.batch_size.max(1);
    let mut keys = vec![vec![0u8; settings.key_len]; batch];
    let mut vals: Vec<Vec<u8>> = vec![Vec::new(); batch];
    let (mut ops, mut bytes) = (0u64, 0u64);
    let mut order = order.peekable();
    while order.peek().is_some() {
        if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
            break;
        }
        let mut n = 0;
        while n < batch {
            let Some(i) = order.next() else { break };
            make_key(i, &mut keys[n]);
            vals[n].clear();
            vals[n].extend_from_slice(values.next_value());
            n += 1;
        }
        let kvs: Vec<(&[u8], &[u8])> = (0..n).map(|j| (&keys[j][..], &vals[j][..])).collect();
        let t = Instant::now();
        db.put_batch(&kvs).map_err(|e| e.to_string())?;
        record(latency, t.elapsed());
        ops += n as u64;
        bytes += (n * (settings.key_len + values.len())) as u64;
    }
    Ok((ops, bytes))
}

/// Writes every key of `order` (fillseq, fillrandom, overwrite).
pub fn fill(
    db: &dyn BenchEngine,
    name: &str,
    order: impl IntoIterator<Item = u64>,
    settings: &Settings,
    values: &mut ValueGen,
) -> Result<WorkloadResult, String> {
    let mut latency = histogram();
    let start = Instant::now();
    let (ops, bytes) = write_keys(db, order.into_iter(), settings, values, &mut latency, None)?;
    Ok(WorkloadResult {
        workload: name.into(),
        ops,
        elapsed: start.elapsed(),
        bytes,
        latency: Some(latency),
        note: format!("batch {}", settings.batch_size.max(1)),
    })
}

/// Per-thread totals of a read workload: operations, bytes, hits, latencies.
type ReaderTotals = (u64, u64, u64, Histogram<u64>);

/// One read operation on a key: whether it found something, and the bytes it read.
type ReadOp<'a> = dyn Fn(&[u8]) -> Result<(bool, u64), String> + Sync + 'a;

/// Runs `per_op` (which returns (hit, bytes)) on random keys from `settings.threads` threads,
/// `per_thread` times each or until `stop`; seeded per thread.
fn random_ops(
    settings: &Settings,
    seed: u64,
    per_thread: u64,
    stop: Option<&AtomicBool>,
    deadline: Option<Instant>,
    per_op: &ReadOp<'_>,
) -> Result<ReaderTotals, String> {
    let threads = settings.threads.max(1);
    let results: Vec<Result<ReaderTotals, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || -> Result<ReaderTotals, String> {
                    let mut rng = StdRng::seed_from_u64(seed.wrapping_add(t as u64 * 7919));
                    let mut latency = histogram();
                    let mut key = vec![0u8; settings.key_len];
                    let (mut ops, mut bytes, mut hits) = (0u64, 0u64, 0u64);
                    while ops < per_thread {
                        if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
                            break;
                        }
                        if ops % 256 == 0 && deadline.is_some_and(|d| Instant::now() >= d) {
                            break;
                        }
                        make_key(rng.random_range(0..settings.num.max(1)), &mut key);
                        let t0 = Instant::now();
                        let (hit, b) = per_op(&key)?;
                        record(&mut latency, t0.elapsed());
                        ops += 1;
                        bytes += b;
                        hits += u64::from(hit);
                    }
                    Ok((ops, bytes, hits, latency))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("reader thread panicked".into()))
            })
            .collect()
    });
    let mut total = (0, 0, 0, histogram());
    for r in results {
        let (o, b, h, l) = r?;
        total.0 += o;
        total.1 += b;
        total.2 += h;
        total
            .3
            .add(l)
            .map_err(|e| format!("merging histograms: {e}"))?;
    }
    Ok(total)
}

/// A point read as a read operation: whether the key was found, and its key + value bytes.
fn point_read(db: &dyn BenchEngine) -> impl Fn(&[u8]) -> Result<(bool, u64), String> + Sync + '_ {
    move |key| {
        Ok(match db.get(key).map_err(|e| e.to_string())? {
            Some(len) => (true, (key.len() + len) as u64),
            None => (false, 0),
        })
    }
}

/// Point reads of random keys (readrandom).
pub fn read_random(
    db: &dyn BenchEngine,
    name: &str,
    settings: &Settings,
    seed: u64,
) -> Result<WorkloadResult, String> {
    let start = Instant::now();
    let get = point_read(db);
    let (ops, bytes, hits, latency) = random_ops(settings, seed, settings.reads, None, None, &get)?;
    Ok(WorkloadResult {
        workload: name.into(),
        ops,
        elapsed: start.elapsed(),
        bytes,
        latency: Some(latency),
        note: format!(
            "{hits} of {ops} found, {} thread(s)",
            settings.threads.max(1)
        ),
    })
}

/// Seeks to random keys and reads `settings.seek_nexts` more entries (seekrandom).
pub fn seek_random(db: &dyn BenchEngine, settings: &Settings) -> Result<WorkloadResult, String> {
    let start = Instant::now();
    let n = settings.seek_nexts + 1;
    let seek = |key: &[u8]| -> Result<(bool, u64), String> {
        let (entries, bytes) = db.seek_next_n(key, n).map_err(|e| e.to_string())?;
        Ok((entries > 0, bytes))
    };
    let (ops, bytes, _, latency) = random_ops(
        settings,
        settings.seed + 3,
        settings.seeks,
        None,
        None,
        &seek,
    )?;
    Ok(WorkloadResult {
        workload: "seekrandom".into(),
        ops,
        elapsed: start.elapsed(),
        bytes,
        latency: Some(latency),
        note: format!("seek + {} nexts", settings.seek_nexts),
    })
}

/// One full forward scan (readseq); fails unless it sees exactly `expect` entries (when
/// given).
pub fn read_seq(db: &dyn BenchEngine, expect: Option<u64>) -> Result<WorkloadResult, String> {
    let start = Instant::now();
    let (entries, bytes) = db.scan_all().map_err(|e| e.to_string())?;
    if let Some(want) = expect.filter(|&w| w != entries) {
        return Err(format!("readseq saw {entries} entries, expected {want}"));
    }
    Ok(WorkloadResult {
        workload: "readseq".into(),
        ops: entries,
        elapsed: start.elapsed(),
        bytes,
        latency: None,
        note: "one full scan; ops = entries".into(),
    })
}

/// Random point reads from `settings.threads` readers while one writer overwrites random
/// keys, until the readers are done (`reads` each, or `rww_duration`).
pub fn read_while_writing(
    db: &dyn BenchEngine,
    settings: &Settings,
) -> Result<WorkloadResult, String> {
    let stop = AtomicBool::new(false);
    let written = AtomicU64::new(0);
    let start = Instant::now();
    let deadline = settings.rww_duration.map(|d| start + d);
    let (reads, writer_secs) = std::thread::scope(|s| -> Result<_, String> {
        let writer = s.spawn(|| -> Result<f64, String> {
            let mut values = ValueGen::new(settings.seed + 100, settings.value_size);
            let mut rng = StdRng::seed_from_u64(settings.seed + 101);
            let num = settings.num.max(1);
            let order = std::iter::repeat_with(move || rng.random_range(0..num));
            let mut latency = histogram();
            let t = Instant::now();
            let result = write_keys(db, order, settings, &mut values, &mut latency, Some(&stop));
            match result {
                Ok((ops, _)) => {
                    written.store(ops, Ordering::Relaxed);
                    Ok(t.elapsed().as_secs_f64())
                }
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    Err(e)
                }
            }
        });
        let get = point_read(db);
        let reads = random_ops(
            settings,
            settings.seed + 200,
            settings.reads,
            Some(&stop),
            deadline,
            &get,
        );
        stop.store(true, Ordering::Relaxed);
        let writer = writer
            .join()
            .unwrap_or_else(|_| Err("writer thread panicked".into()));
        Ok((reads?, writer?))
    })?;
    let (ops, bytes, hits, latency) = reads;
    let w = written.load(Ordering::Relaxed);
    Ok(WorkloadResult {
        workload: "readwhilewriting".into(),
        ops,
        elapsed: start.elapsed(),
        bytes,
        latency: Some(latency),
        note: format!(
            "{} reader(s) + 1 writer; writer {:.0} puts/s; {hits} of {ops} found",
            settings.threads.max(1),
            w as f64 / writer_secs.max(1e-9)
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine_bench::{FerrisEngine, permutation};

    #[test]
    fn every_workload_runs_on_ferrisdb_and_counts_what_it_did() {
        let dir = tempfile::tempdir().unwrap();
        let db = FerrisEngine::open(dir.path(), Default::default(), 100).unwrap();
        let settings = Settings {
            num: 500,
            key_len: 16,
            value_size: 20,
            batch_size: 7,
            threads: 2,
            reads: 300,
            seeks: 20,
            seek_nexts: 9,
            rww_duration: None,
            seed: 1,
        };
        let mut values = ValueGen::new(1, 20);
        let r = fill(&db, "fillseq", 0..500, &settings, &mut values).unwrap();
        assert_eq!((r.ops, r.bytes), (500, 500 * 36));
        let r = fill(
            &db,
            "overwrite",
            permutation(500, 2),
            &settings,
            &mut values,
        )
        .unwrap();
        assert_eq!(r.ops, 500);
        let r = read_random(&db, "readrandom", &settings, 3).unwrap();
        assert_eq!(r.ops, 600, "300 reads on each of 2 threads");
        assert!(r.note.starts_with("600 of 600 found"), "{}", r.note);
        let r = seek_random(&db, &settings).unwrap();
        assert_eq!((r.ops, r.bytes > 0), (40, true));
        let r = read_seq(&db, Some(500)).unwrap();
        assert_eq!((r.ops, r.bytes), (500, 500 * 36));
        assert!(
            read_seq(&db, Some(501)).is_err(),
            "a wrong count is an error"
        );
        let r = read_while_writing(&db, &settings).unwrap();
        assert_eq!(r.ops, 600);
        assert!(r.quantile_us(0.5).is_some());
        Box::new(db).close().unwrap();
    }
}
