//! `ferrisdb bench engine`: db_bench-style workloads run directly against the storage engine
//! (no network): fillseq, fillrandom, overwrite, readrandom, seekrandom (seek + 100 nexts),
//! readseq (full scan) and readwhilewriting. 16-byte keys and 100-byte half-compressible
//! values by default, as in RocksDB's db_bench. Prints ops/s, MB/s and latency percentiles.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferrisdb_storage::engine::{Engine, EngineOptions, ScanOptions, SyncPolicy, WriteBatch};
use hdrhistogram::Histogram;

/// Settings of one benchmark run.
#[derive(Debug, Clone)]
pub struct EngineBench {
    /// Comma-separated workloads, run in order on one engine.
    pub workloads: String,
    /// Keys in the data set.
    pub num: u64,
    /// Key size in bytes (at least 8).
    pub key_size: usize,
    /// Value size in bytes.
    pub value_size: usize,
    /// fsync every write batch.
    pub sync: bool,
    /// Puts per write batch.
    pub batch_size: usize,
    /// Reader threads for read workloads.
    pub threads: usize,
    /// Engine directory (default: a fresh temporary directory).
    pub dir: Option<PathBuf>,
    /// Block cache budget, MiB.
    pub cache_mib: usize,
    /// Memtable budget, MiB.
    pub memtable_mib: usize,
    /// Reads per reader thread in read workloads (default: num).
    pub reads: Option<u64>,
}

/// One workload's result.
#[derive(Debug, Clone)]
pub struct BenchResult {
    /// Workload name.
    pub name: String,
    /// Operations done.
    pub ops: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Bytes of keys and values moved.
    pub bytes: u64,
    /// Latency histogram in nanoseconds.
    pub latency: Histogram<u64>,
}

impl BenchResult {
    fn print(&self) {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let q = |p: f64| self.latency.value_at_quantile(p) as f64 / 1000.0;
        println!(
            "{:<18} {:>12.0} ops/s {:>8.1} MB/s   p50 {:>8.2} us  p99 {:>8.2} us  p99.9 {:>9.2} us  ({} ops in {:.2} s)",
            self.name,
            self.ops as f64 / secs,
            self.bytes as f64 / secs / 1e6,
            q(0.5),
            q(0.99),
            q(0.999),
            self.ops,
            secs,
        );
    }
}

/// A key of `size` bytes: the big-endian index, zero-padded in front.
fn make_key(i: u64, size: usize) -> Vec<u8> {
    let mut k = vec![b'0'; size.max(8)];
    let n = k.len();
    k[n - 8..].copy_from_slice(&i.to_be_bytes());
    k
}

/// A half-compressible value, as in db_bench.
fn make_value(size: usize, seed: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(size);
    let mut x = seed | 1;
    while v.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if v.len() % 2 == 0 {
            v.push(b'a' + (x % 26) as u8);
        } else {
            v.push(b'v');
        }
    }
    v
}

/// A small, fast, seedable generator for key choice.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn histogram() -> Result<Histogram<u64>, String> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).map_err(|e| format!("histogram: {e}"))
}

struct Writer {
    engine: Arc<Engine>,
    version: AtomicU64,
}

impl Writer {
    fn write(
        &self,
        cfg: &EngineBench,
        keys: impl Iterator<Item = u64>,
        name: &str,
    ) -> Result<BenchResult, String> {
        let mut latency = histogram()?;
        let mut ops = 0;
        let mut bytes = 0;
        let start = Instant::now();
        let mut keys = keys.peekable();
        while keys.peek().is_some() {
            let mut batch = WriteBatch::default();
            let mut in_batch = 0;
            for i in keys.by_ref().take(cfg.batch_size.max(1)) {
                let key = make_key(i, cfg.key_size);
                let value = make_value(cfg.value_size, i ^ ops);
                bytes += (key.len() + value.len()) as u64;
                batch.put(&key, &value);
                in_batch += 1;
            }
            let t = Instant::now();
            let v = self.version.fetch_add(1, Ordering::Relaxed) + 1;
            self.engine
                .apply(v, &batch)
                .map_err(|e| format!("{name}: {e}"))?;
            let _ = latency.record(t.elapsed().as_nanos() as u64);
            ops += in_batch;
        }
        Ok(BenchResult {
            name: name.into(),
            ops,
            elapsed: start.elapsed(),
            bytes,
            latency,
        })
    }
}

/// One reader thread's operations, bytes and latencies.
type ReaderTotals = (u64, u64, Histogram<u64>);

fn read_random(
    engine: &Arc<Engine>,
    cfg: &EngineBench,
    name: &str,
    seek: bool,
    stop: Option<&AtomicBool>,
) -> Result<BenchResult, String> {
    let threads = cfg.threads.max(1);
    let reads = cfg.reads.unwrap_or(cfg.num);
    let start = Instant::now();
    let results: Vec<Result<ReaderTotals, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let engine = engine.clone();
                s.spawn(move || -> Result<ReaderTotals, String> {
                    let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ ((t as u64 + 1) * 0x9e37_79b9));
                    let mut latency = histogram()?;
                    let mut bytes = 0u64;
                    let mut ops = 0u64;
                    let version = engine.last_applied_version();
                    for _ in 0..reads {
                        if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
                            break;
                        }
                        let key = make_key(rng.next() % cfg.num, cfg.key_size);
                        let t0 = Instant::now();
                        if seek {
                            let scan = engine
                                .scan(ScanOptions {
                                    begin: key.into(),
                                    end: Default::default(),
                                    read_version: version,
                                    reverse: false,
                                    limit: 100,
                                })
                                .map_err(|e| format!("{name}: {e}"))?;
                            for item in scan {
                                let (k, v) = item.map_err(|e| format!("{name}: {e}"))?;
                                bytes += (k.len() + v.len()) as u64;
                            }
                        } else if let Some(v) = engine
                            .get(&key, version)
                            .map_err(|e| format!("{name}: {e}"))?
                        {
                            bytes += (key.len() + v.len()) as u64;
                        }
                        let _ = latency.record(t0.elapsed().as_nanos() as u64);
                        ops += 1;
                    }
                    Ok((ops, bytes, latency))
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
    let elapsed = start.elapsed();
    let mut latency = histogram()?;
    let (mut ops, mut bytes) = (0, 0);
    for r in results {
        let (o, b, h) = r?;
        ops += o;
        bytes += b;
        latency
            .add(h)
            .map_err(|e| format!("merging histograms: {e}"))?;
    }
    Ok(BenchResult {
        name: name.into(),
        ops,
        elapsed,
        bytes,
        latency,
    })
}

fn read_seq(engine: &Arc<Engine>) -> Result<BenchResult, String> {
    let mut latency = histogram()?;
    let start = Instant::now();
    let version = engine.last_applied_version();
    let scan = engine
        .scan(ScanOptions {
            begin: Default::default(),
            end: Default::default(),
            read_version: version,
            reverse: false,
            limit: 0,
        })
        .map_err(|e| format!("readseq: {e}"))?;
    let (mut ops, mut bytes) = (0u64, 0u64);
    let mut t = Instant::now();
    for item in scan {
        let (k, v) = item.map_err(|e| format!("readseq: {e}"))?;
        bytes += (k.len() + v.len()) as u64;
        ops += 1;
        let now = Instant::now();
        let _ = latency.record((now - t).as_nanos() as u64);
        t = now;
    }
    Ok(BenchResult {
        name: "readseq".into(),
        ops,
        elapsed: start.elapsed(),
        bytes,
        latency,
    })
}

/// Runs the workloads and prints one line per workload.
pub fn run(cfg: EngineBench) -> Result<Vec<BenchResult>, String> {
    if cfg.key_size < 8 {
        return Err("--key-size must be at least 8".into());
    }
    // Random workloads pick keys modulo --num.
    if cfg.num == 0 {
        return Err("--num must be at least 1".into());
    }
    // A temporary directory (removed on drop) unless the user named one.
    let tmp = match &cfg.dir {
        Some(_) => None,
        None => Some(
            tempfile::Builder::new()
                .prefix("ferrisdb-bench-")
                .tempdir()
                .map_err(|e| format!("creating a temporary directory: {e}"))?,
        ),
    };
    let dir = match (&cfg.dir, &tmp) {
        (Some(d), _) => d.clone(),
        (None, Some(t)) => t.path().to_path_buf(),
        (None, None) => return Err("no benchmark directory".into()),
    };
    let options = EngineOptions {
        sync: if cfg.sync {
            SyncPolicy::Always
        } else {
            SyncPolicy::Never
        },
        memtable_bytes: cfg.memtable_mib << 20,
        block_cache_bytes: cfg.cache_mib << 20,
        ..EngineOptions::default()
    };
    let engine = Engine::open(&dir, options).map_err(|e| e.to_string())?;
    println!(
        "FerrisDB engine bench: {} keys, {}-byte keys, {}-byte values, batch {}, sync {}, {} reader threads, dir {}",
        cfg.num,
        cfg.key_size,
        cfg.value_size,
        cfg.batch_size,
        cfg.sync,
        cfg.threads,
        dir.display()
    );
    let writer = Arc::new(Writer {
        version: AtomicU64::new(engine.last_applied_version()),
        engine: engine.clone(),
    });
    let mut results = Vec::new();
    for name in cfg
        .workloads
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let result = match name {
            "fillseq" => writer.write(&cfg, 0..cfg.num, name)?,
            "fillrandom" | "overwrite" => {
                let mut rng = Rng(if name == "fillrandom" {
                    0x1234_5678
                } else {
                    0x8765_4321
                });
                writer.write(&cfg, (0..cfg.num).map(|_| rng.next() % cfg.num), name)?
            }
            "readrandom" => read_random(&engine, &cfg, name, false, None)?,
            "seekrandom" => read_random(&engine, &cfg, name, true, None)?,
            "readseq" => read_seq(&engine)?,
            "readwhilewriting" => {
                let stop = Arc::new(AtomicBool::new(false));
                let bg = {
                    let writer = writer.clone();
                    let cfg = cfg.clone();
                    let stop = stop.clone();
                    std::thread::spawn(move || -> Result<BenchResult, String> {
                        let mut rng = Rng(0xabcd_ef01);
                        let keys = std::iter::from_fn(|| {
                            (!stop.load(Ordering::Relaxed)).then(|| rng.next() % cfg.num)
                        });
                        writer.write(&cfg, keys, "  (writer)")
                    })
                };
                let r = read_random(&engine, &cfg, name, false, None);
                stop.store(true, Ordering::Relaxed);
                let w = bg
                    .join()
                    .map_err(|_| "writer thread panicked".to_string())??;
                w.print();
                r?
            }
            "flush" => {
                let t = Instant::now();
                engine.flush().map_err(|e| e.to_string())?;
                engine.compact().map_err(|e| e.to_string())?;
                println!(
                    "{:<18} flush + compaction took {:.2} s",
                    "compact",
                    t.elapsed().as_secs_f64()
                );
                continue;
            }
            other => {
                return Err(format!(
                    "unknown workload {other:?} (fillseq, fillrandom, overwrite, readrandom, seekrandom, readseq, readwhilewriting, flush)"
                ));
            }
        };
        result.print();
        results.push(result);
    }
    let stats = engine.stats();
    println!("engine: {stats:?}");
    engine.close().map_err(|e| e.to_string())?;
    drop(tmp);
    Ok(results)
}
