//! `ferrisdb bench engine`: db_bench-style workloads run directly against the storage engine
//! (no network): fillseq, fillrandom, overwrite, readrandom, seekrandom (seek + 99 nexts),
//! readseq (full scan), readwhilewriting and clearrange (one range delete of every key while
//! a writer runs). 16-byte keys and 100-byte half-compressible
//! values by default, as in RocksDB's db_bench. Prints ops/s, MB/s and latency percentiles.
//! The workloads are `ferrisdb::engine_bench`'s, the same ones `bench/peers` runs against
//! RocksDB and fjall.

use std::path::PathBuf;
use std::time::Instant;

use ferrisdb::engine_bench::clear_range::{clear_many, clear_range};
use ferrisdb::engine_bench::memory::memory_line;
use ferrisdb::engine_bench::{
    BenchEngine, FerrisEngine, Settings, ValueGen, WorkloadResult, check_keys, fill, permutation,
    read_random, read_seq, read_while_writing, seek_random,
};
use ferrisdb_storage::engine::{EngineOptions, SyncPolicy};
use ferrisdb_storage::sstable::{Compression, TableOptions};

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
    /// Versions kept below the newest before the GC horizon (0: every version is kept).
    pub gc_window: u64,
    /// Compression of data blocks.
    pub compression: Compression,
    /// Compression of the tables written to the deepest level holding data (`None`: as
    /// `compression`).
    pub bottommost_compression: Option<Compression>,
}

/// Prints one result line.
fn print(r: &WorkloadResult) {
    let q = |p: f64| r.quantile_us(p).map_or("-".into(), |v| format!("{v:.2}"));
    println!(
        "{:<18} {:>12.0} ops/s {:>8.1} MB/s   p50 {:>8} us  p99 {:>8} us  p99.9 {:>9} us  ({} ops in {:.2} s; {})",
        r.workload,
        r.ops_per_sec(),
        r.mb_per_sec(),
        q(0.5),
        q(0.99),
        q(0.999),
        r.ops,
        r.elapsed.as_secs_f64(),
        r.note,
    );
}

/// Seed of every key order and value of a run.
const SEED: u64 = 42;

/// Runs the workloads of `cfg` in order on one engine; prints each result and returns them.
pub fn run(cfg: EngineBench) -> Result<Vec<WorkloadResult>, String> {
    if cfg.key_size < 8 {
        return Err("--key-size must be at least 8".into());
    }
    // Random workloads pick keys modulo --num.
    if cfg.num == 0 {
        return Err("--num must be at least 1".into());
    }
    check_keys(cfg.num, cfg.key_size)?;
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
        table: TableOptions {
            compression: cfg.compression,
            ..TableOptions::default()
        },
        bottommost_compression: cfg.bottommost_compression,
        ..EngineOptions::default()
    };
    // 0 (the default) keeps every version: no GC horizon.
    let db = FerrisEngine::open(&dir, options, cfg.gc_window).map_err(|e| e.to_string())?;
    println!(
        "FerrisDB engine bench: {} keys, {}-byte keys, {}-byte values, batch {}, sync {}, {} reader threads, gc window {} versions, compression {} (bottommost {}), dir {}",
        cfg.num,
        cfg.key_size,
        cfg.value_size,
        cfg.batch_size,
        cfg.sync,
        cfg.threads,
        cfg.gc_window,
        cfg.compression.name(),
        cfg.bottommost_compression.unwrap_or(cfg.compression).name(),
        dir.display()
    );
    let reads = cfg.reads.unwrap_or(cfg.num);
    let settings = Settings {
        num: cfg.num,
        key_len: cfg.key_size,
        value_size: cfg.value_size,
        batch_size: cfg.batch_size.max(1),
        threads: cfg.threads.max(1),
        reads,
        seeks: reads,
        seek_nexts: 99,
        rww_duration: None,
        seed: SEED,
    };
    let mut values = ValueGen::new(SEED, cfg.value_size);
    let mut results = Vec::new();
    for name in cfg
        .workloads
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let result = match name {
            "fillseq" => fill(&db, name, 0..cfg.num, &settings, &mut values)?,
            "fillrandom" => fill(
                &db,
                name,
                permutation(cfg.num, SEED),
                &settings,
                &mut values,
            )?,
            "overwrite" => fill(
                &db,
                name,
                permutation(cfg.num, SEED + 1),
                &settings,
                &mut values,
            )?,
            "readrandom" => read_random(&db, name, &settings, SEED + 2)?,
            "seekrandom" => seek_random(&db, &settings)?,
            "readseq" => read_seq(&db, None)?,
            "readwhilewriting" => read_while_writing(&db, &settings)?,
            "clearrange" => clear_range(&db, &settings)?,
            "clearmany" => clear_many(&db, &settings)?,
            "flush" => {
                let t = Instant::now();
                db.flush().map_err(|e| e.to_string())?;
                db.engine().compact().map_err(|e| e.to_string())?;
                println!(
                    "{:<18} flush + compaction took {:.2} s",
                    "compact",
                    t.elapsed().as_secs_f64()
                );
                continue;
            }
            other => {
                return Err(format!(
                    "unknown workload {other:?} (fillseq, fillrandom, overwrite, readrandom, seekrandom, readseq, readwhilewriting, clearrange, clearmany, flush)"
                ));
            }
        };
        print(&result);
        println!("{}", memory_line("  memory", &db.engine().stats()));
        results.push(result);
    }
    let stats = db.engine().stats();
    println!("engine: {stats:?}");
    Box::new(db).close().map_err(|e| e.to_string())?;
    drop(tmp);
    Ok(results)
}
