//! peer-bench: the same single-process workloads against FerrisDB's storage engine, RocksDB and
//! fjall, one engine after the other, each on a fresh directory.
//!
//! See README.md for the workloads and the exact commands.

mod engines;
mod memory;

use std::io::Write as _;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use ferrisdb::engine_bench::{self as lib, KEY_LEN, Settings, ValueGen, WriteStats, permutation};
use serde::{Deserialize, Serialize};

use engines::{Compression, EngineConfig, EngineKind};
use memory::RssSampler;

#[derive(Parser, Debug, Clone, Serialize)]
#[command(version, about = "FerrisDB storage engine vs RocksDB vs fjall, same workloads")]
struct Args {
    /// Number of keys.
    #[arg(long, default_value_t = 1_000_000)]
    num: u64,
    /// Value size in bytes (values are half-compressible, like db_bench).
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Point reads in readrandom (default: --num).
    #[arg(long)]
    reads: Option<u64>,
    /// Seeks in seekrandom (default: --num / 10).
    #[arg(long)]
    seeks: Option<u64>,
    /// Nexts after each seek in seekrandom (reads the seek's entry + N more).
    #[arg(long, default_value_t = 100)]
    seek_nexts: usize,
    /// Puts per write batch.
    #[arg(long, default_value_t = 1)]
    batch_size: usize,
    /// fdatasync the WAL on every batch (default: WAL on, write(2) only).
    #[arg(long)]
    sync: bool,
    /// Block cache budget for every engine, MiB.
    #[arg(long, default_value_t = 64)]
    cache_mib: usize,
    /// Data-block compression, every level, every engine.
    #[arg(long, value_enum, default_value_t = Compression::None)]
    compression: Compression,
    /// Data-block compression of the bottommost level (FerrisDB and RocksDB), e.g. `zstd`
    /// with `--compression lz4`. Default: as `--compression`.
    #[arg(long, value_enum)]
    bottommost_compression: Option<Compression>,
    /// Reader threads in readwhilewriting (plus one writer thread).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Duration of readwhilewriting, seconds.
    #[arg(long, default_value_t = 10)]
    rww_secs: u64,
    /// Engines to run, in order.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [EngineKind::Ferrisdb, EngineKind::Rocksdb, EngineKind::Fjall])]
    engines: Vec<EngineKind>,
    /// Parent directory for the engines' data (a fresh subdirectory per engine and run).
    /// Default: a temporary directory, removed at the end.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the data directories after the run.
    #[arg(long)]
    keep: bool,
    /// Write all results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// RNG seed (keys order and values are identical for every engine).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// FerrisDB: versions kept below the last one written; the GC horizon moves every 1024
    /// batches, as a storage server moves it. 0 = never move it (keep every version).
    #[arg(long, default_value_t = 1000)]
    gc_window: u64,
    /// FerrisDB: override an engine option, NAME=VALUE (repeatable), e.g.
    /// `--ferris-opt l0_compaction_trigger=4`.
    #[arg(long = "ferris-opt", value_name = "NAME=VALUE", value_parser = engines::parse_ferris_opt)]
    ferris_opts: Vec<(String, String)>,
    /// Run every engine inside this process. Default: each engine runs in a child process
    /// of its own, so its resident memory is measured without what an earlier engine left
    /// in the allocator.
    #[arg(long)]
    in_process: bool,
    /// Internal: run the one engine of `--engines` and write its rows to this file.
    #[arg(long, hide = true)]
    child_report: Option<PathBuf>,
}

const WORKLOADS: &[&str] = &[
    "fillseq",
    "fillrandom",
    "overwrite",
    "readrandom",
    "seekrandom",
    "readseq",
    "readwhilewriting",
    "readrandom_after_reopen",
];

#[derive(Debug, Clone, Serialize, Deserialize)]
struct WorkloadResult {
    workload: String,
    engine: String,
    ops: u64,
    secs: f64,
    ops_per_sec: f64,
    mb_per_sec: f64,
    p50_us: Option<f64>,
    p99_us: Option<f64>,
    /// Highest resident set size of the process while this row ran (since the previous row).
    peak_rss_mib: Option<f64>,
    note: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
struct EngineSummary {
    engine: String,
    /// flush() after overwrite (memtables -> SSTables).
    flush_secs: Option<f64>,
    /// close() after readwhilewriting (unflushed writes in memtable/WAL).
    close_secs: Option<f64>,
    /// open() of that closed directory (recovery).
    open_secs: Option<f64>,
    /// Bytes on disk under the engine's directory after reopen.
    disk_bytes: Option<u64>,
    /// Key + value bytes written by fillrandom and overwrite.
    user_bytes: u64,
    /// Flush and compaction counters after fillrandom + overwrite + flush (FerrisDB only).
    write_stats: Option<WriteStats>,
    /// Resident set size before the engine opened (the harness: key orders, values).
    baseline_rss_mib: Option<f64>,
    /// Highest resident set size over the engine's whole run.
    peak_rss_mib: Option<f64>,
    /// The engine's configured memory: block cache plus write buffers (`None`: unbounded).
    memory_budget_mib: Option<f64>,
    total_secs: f64,
    error: Option<String>,
}

#[derive(Serialize)]
struct Report<'a> {
    args: &'a Args,
    key_bytes: usize,
    results: &'a [WorkloadResult],
    engines: &'a [EngineSummary],
}

/// One row of the report: a library result with its engine, in the report's units.
fn result(kind: EngineKind, r: lib::WorkloadResult) -> WorkloadResult {
    WorkloadResult {
        workload: r.workload.clone(),
        engine: kind.name().to_string(),
        ops: r.ops,
        secs: r.elapsed.as_secs_f64(),
        ops_per_sec: r.ops_per_sec(),
        mb_per_sec: r.bytes as f64 / r.elapsed.as_secs_f64().max(1e-9) / 1_048_576.0,
        p50_us: r.quantile_us(0.50),
        p99_us: r.quantile_us(0.99),
        peak_rss_mib: None,
        note: r.note,
    }
}

/// The workloads' settings for this run: readrandom from one thread, readwhilewriting from
/// `--threads` readers for `--rww-secs`.
fn settings(args: &Args, threads: usize) -> Settings {
    Settings {
        num: args.num,
        key_len: KEY_LEN,
        value_size: args.value_size,
        batch_size: args.batch_size.max(1),
        threads,
        reads: args.reads.unwrap_or(args.num),
        seeks: args.seeks.unwrap_or((args.num / 10).max(1)),
        seek_nexts: args.seek_nexts,
        rww_duration: Some(Duration::from_secs(args.rww_secs)),
        seed: args.seed,
    }
}

fn dir_bytes(p: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_bytes(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

fn progress(msg: &str) {
    eprintln!("[peer-bench] {msg}");
    let _ = std::io::stderr().flush();
}

/// What every engine's run shares: where its data goes, the settings, the key orders and the
/// memory sampler.
struct RunContext<'a> {
    root: &'a Path,
    args: &'a Args,
    cfg: &'a EngineConfig,
    perms: &'a (Vec<u64>, Vec<u64>),
    rss: Option<&'a RssSampler>,
}

/// Runs every workload against one engine. Pushes results as they complete so a failure part
/// way keeps the earlier rows.
fn run_engine(
    kind: EngineKind,
    ctx: &RunContext<'_>,
    out: &mut Vec<WorkloadResult>,
    sum: &mut EngineSummary,
) -> Result<()> {
    let RunContext { root, args, cfg, perms, rss } = *ctx;
    // Every workload but readwhilewriting runs from one thread.
    let one = settings(args, 1);
    let base = root.join(kind.name());
    if base.exists() {
        std::fs::remove_dir_all(&base)?;
    }
    sum.baseline_rss_mib = rss.map(|s| mib(s.take_peak()));
    let push = |mut r: WorkloadResult, out: &mut Vec<WorkloadResult>| {
        r.peak_rss_mib = rss.map(|s| mib(s.take_peak()));
        progress(&format!(
            "{:<10} {:<24} {:>12.0} ops/s {:>8.1} MB/s {:>8} MiB RSS  {}",
            r.engine,
            r.workload,
            r.ops_per_sec,
            r.mb_per_sec,
            fmt_opt(r.peak_rss_mib),
            r.note
        ));
        out.push(r);
    };

    // fillseq: its own fresh directory, closed and deleted afterwards.
    {
        let dir = base.join("fillseq");
        let db = engines::open(kind, &dir, cfg)?;
        let mut vgen = ValueGen::new(args.seed, args.value_size);
        let r = lib::fill(db.as_ref(), "fillseq", 0..args.num, &one, &mut vgen)
            .map_err(anyhow::Error::msg)?;
        push(result(kind, r), out);
        db.close().map_err(|e| anyhow::anyhow!("{e}"))?;
        if !args.keep {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    // fillrandom + overwrite + reads: one fresh directory.
    let dir = base.join("db");
    let mut db = engines::open(kind, &dir, cfg)?;
    let mut vgen = ValueGen::new(args.seed, args.value_size);
    let r = lib::fill(db.as_ref(), "fillrandom", perms.0.iter().copied(), &one, &mut vgen)
        .map_err(anyhow::Error::msg)?;
    sum.user_bytes += (r.ops as usize * (KEY_LEN + args.value_size)) as u64;
    push(result(kind, r), out);
    let r = lib::fill(db.as_ref(), "overwrite", perms.1.iter().copied(), &one, &mut vgen)
        .map_err(anyhow::Error::msg)?;
    sum.user_bytes += (r.ops as usize * (KEY_LEN + args.value_size)) as u64;
    push(result(kind, r), out);

    let t = Instant::now();
    db.flush().map_err(|e| anyhow::anyhow!("{e}"))?;
    sum.flush_secs = Some(t.elapsed().as_secs_f64());
    progress(&format!("{:<10} flush {:.3} s", kind.name(), sum.flush_secs.unwrap()));
    sum.write_stats = db.write_stats();
    if let Some(w) = &sum.write_stats {
        progress(&format!(
            "{:<10} write amplification {:.2} ({} compactions, {} trivial moves)",
            kind.name(),
            write_amp(w, sum.user_bytes),
            w.compactions,
            w.trivial_moves
        ));
    }

    let r =
        lib::read_random(db.as_ref(), "readrandom", &one, args.seed + 2).map_err(anyhow::Error::msg)?;
    push(result(kind, r), out);
    let r = lib::seek_random(db.as_ref(), &one).map_err(anyhow::Error::msg)?;
    push(result(kind, r), out);
    let r = lib::read_seq(db.as_ref(), Some(args.num)).map_err(anyhow::Error::msg)?;
    push(result(kind, r), out);
    let mut rww = settings(args, args.threads.max(1));
    rww.reads = u64::MAX;
    let r = lib::read_while_writing(db.as_ref(), &rww).map_err(anyhow::Error::msg)?;
    push(result(kind, r), out);

    // Reopen: close (with the writer's unflushed data) + open.
    let t = Instant::now();
    db.close().map_err(|e| anyhow::anyhow!("{e}"))?;
    sum.close_secs = Some(t.elapsed().as_secs_f64());
    let t = Instant::now();
    db = engines::open(kind, &dir, cfg)?;
    sum.open_secs = Some(t.elapsed().as_secs_f64());
    sum.disk_bytes = Some(dir_bytes(&dir));
    progress(&format!(
        "{:<10} reopen: close {:.3} s + open {:.3} s; {:.1} MiB on disk",
        kind.name(),
        sum.close_secs.unwrap(),
        sum.open_secs.unwrap(),
        sum.disk_bytes.unwrap() as f64 / 1_048_576.0
    ));
    let r = lib::read_random(db.as_ref(), "readrandom_after_reopen", &one, args.seed + 5)
        .map_err(anyhow::Error::msg)?;
    push(result(kind, r), out);
    db.close().map_err(|e| anyhow::anyhow!("{e}"))?;
    if !args.keep {
        let _ = std::fs::remove_dir_all(&base);
    }
    Ok(())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

/// Table bytes written (flushes + compaction outputs) per user byte written.
fn write_amp(w: &WriteStats, user_bytes: u64) -> f64 {
    (w.flush_bytes + w.compaction_write_bytes) as f64 / user_bytes.max(1) as f64
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{x:.1}"))
}

fn print_tables(results: &[WorkloadResult], sums: &[EngineSummary]) {
    println!(
        "| workload | engine | ops/s | MB/s | p50 µs | p99 µs | peak RSS MiB | FerrisDB / best peer | note |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---|");
    for w in WORKLOADS {
        let rows: Vec<&WorkloadResult> = results.iter().filter(|r| r.workload == *w).collect();
        let best_peer = rows
            .iter()
            .filter(|r| r.engine != "ferrisdb")
            .map(|r| r.ops_per_sec)
            .fold(None, |a: Option<f64>, x| Some(a.map_or(x, |a| a.max(x))));
        for r in rows {
            let ratio = match (r.engine == "ferrisdb", best_peer) {
                (true, Some(b)) if b > 0.0 => format!("{:.2}×", r.ops_per_sec / b),
                _ => String::new(),
            };
            println!(
                "| {} | {} | {:.0} | {:.1} | {} | {} | {} | {} | {} |",
                r.workload,
                r.engine,
                r.ops_per_sec,
                r.mb_per_sec,
                fmt_opt(r.p50_us),
                fmt_opt(r.p99_us),
                fmt_opt(r.peak_rss_mib),
                ratio,
                r.note
            );
        }
    }
    println!();
    println!(
        "| engine | flush after overwrite s | close s | open s | reopen total s | disk MiB | RSS before open MiB | peak RSS MiB | budget MiB (cache + write buffers) | total s | error |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for s in sums {
        let reopen = match (s.close_secs, s.open_secs) {
            (Some(c), Some(o)) => format!("{:.3}", c + o),
            _ => "-".into(),
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {} |",
            s.engine,
            s.flush_secs.map_or("-".into(), |x| format!("{x:.3}")),
            s.close_secs.map_or("-".into(), |x| format!("{x:.3}")),
            s.open_secs.map_or("-".into(), |x| format!("{x:.3}")),
            reopen,
            s.disk_bytes.map_or("-".into(), |x| format!("{:.1}", x as f64 / 1_048_576.0)),
            fmt_opt(s.baseline_rss_mib),
            fmt_opt(s.peak_rss_mib),
            s.memory_budget_mib.map_or("unbounded".into(), |x| format!("{x:.0}")),
            s.total_secs,
            s.error.as_deref().unwrap_or("")
        );
    }
    let with_stats: Vec<_> =
        sums.iter().filter_map(|s| s.write_stats.as_ref().map(|w| (s, w))).collect();
    if with_stats.is_empty() {
        return;
    }
    println!();
    println!(
        "After fillrandom + overwrite + flush (write amplification = table bytes written by flushes and compactions / key+value bytes written):"
    );
    println!();
    println!(
        "| engine | user MiB | flush MiB | compaction read MiB | compaction write MiB | write amp | compactions | trivial moves | compaction s | write stall s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (s, w) in with_stats {
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {} | {} | {:.1} | {:.1} |",
            s.engine,
            mib(s.user_bytes),
            mib(w.flush_bytes),
            mib(w.compaction_read_bytes),
            mib(w.compaction_write_bytes),
            write_amp(w, s.user_bytes),
            w.compactions,
            w.trivial_moves,
            w.compaction_secs,
            w.write_stall_secs
        );
    }
}

#[derive(Serialize, Deserialize)]
struct ChildReport {
    results: Vec<WorkloadResult>,
    engines: Vec<EngineSummary>,
}

/// Runs each engine of `--engines` in its own process: this program again, with the same
/// arguments, one engine and a file to write its rows to.
fn run_in_children(args: &Args) -> Result<(Vec<WorkloadResult>, Vec<EngineSummary>)> {
    let exe = std::env::current_exe().context("locate this program to run each engine")?;
    let shared = child_args(std::env::args_os().skip(1));
    let (mut results, mut sums) = (Vec::new(), Vec::new());
    for &kind in &args.engines {
        let report = tempfile::NamedTempFile::new()?;
        progress(&format!("{}: its own process", kind.name()));
        let t = Instant::now();
        let status = std::process::Command::new(&exe)
            .args(&shared)
            .arg("--engines")
            .arg(kind.name())
            .arg("--child-report")
            .arg(report.path())
            .status()
            .with_context(|| format!("start {} for {}", exe.display(), kind.name()))?;
        let read = std::fs::read(report.path())
            .map_err(anyhow::Error::from)
            .and_then(|bytes| Ok(serde_json::from_slice::<ChildReport>(&bytes)?));
        match read {
            Ok(child) if status.success() => {
                results.extend(child.results);
                sums.extend(child.engines);
            }
            other => sums.push(EngineSummary {
                engine: kind.name().into(),
                total_secs: t.elapsed().as_secs_f64(),
                error: Some(match other {
                    Ok(_) => format!("its process exited with {status}"),
                    Err(e) => format!("its process exited with {status}; no report: {e:#}"),
                }),
                ..Default::default()
            }),
        }
    }
    Ok((results, sums))
}

/// The command line for one engine's process: every argument but `--engines` and `--json`
/// (the parent writes the combined JSON).
fn child_args(argv: impl Iterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut out = Vec::new();
    let mut skip_value = false;
    for arg in argv {
        if std::mem::take(&mut skip_value) {
            continue;
        }
        let text = arg.to_string_lossy();
        if text == "--engines" || text == "--json" {
            skip_value = true;
        } else if !text.starts_with("--engines=") && !text.starts_with("--json=") {
            out.push(arg);
        }
    }
    out
}

/// Runs every engine of `--engines` in this process, one after the other.
fn run_here(args: &Args, cfg: &EngineConfig) -> Result<(Vec<WorkloadResult>, Vec<EngineSummary>)> {
    let _tmp;
    let root = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
            d.clone()
        }
        None => {
            _tmp = tempfile::tempdir()?;
            _tmp.path().to_path_buf()
        }
    };
    progress(&format!("data under {}; {:?}", root.display(), args));
    let perms = (permutation(args.num, args.seed), permutation(args.num, args.seed + 1));
    let rss = RssSampler::start();
    let ctx = RunContext { root: &root, args, cfg, perms: &perms, rss: rss.as_ref() };

    let mut results = Vec::new();
    let mut sums = Vec::new();
    for &kind in &args.engines {
        let mut sum = EngineSummary {
            engine: kind.name().into(),
            memory_budget_mib: engines::memory_budget(kind, cfg)?.map(mib),
            ..Default::default()
        };
        let first_row = results.len();
        let t = Instant::now();
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
            run_engine(kind, &ctx, &mut results, &mut sum)
        }));
        sum.total_secs = t.elapsed().as_secs_f64();
        sum.peak_rss_mib = results[first_row..]
            .iter()
            .filter_map(|r| r.peak_rss_mib)
            .fold(None, |a: Option<f64>, x| Some(a.map_or(x, |a| a.max(x))));
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => sum.error = Some(format!("{e:#}")),
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".into());
                sum.error = Some(format!("panic: {msg}"));
            }
        }
        if let Some(e) = &sum.error {
            progress(&format!("{} FAILED: {e}", kind.name()));
        }
        sums.push(sum);
    }
    Ok((results, sums))
}

fn main() -> Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.num > 0 && args.num < 10u64.pow(16), "--num out of range");
    let cfg = EngineConfig {
        sync: args.sync,
        cache_bytes: args.cache_mib << 20,
        compression: args.compression,
        bottommost_compression: args.bottommost_compression,
        gc_window: args.gc_window,
        ferris_opts: args.ferris_opts.clone(),
    };
    #[cfg(feature = "ferrisdb")]
    engines::ferris_options(&cfg)?;

    if let Some(path) = &args.child_report {
        let (results, engines) = run_here(&args, &cfg)?;
        let report = ChildReport { results, engines };
        std::fs::write(path, serde_json::to_vec(&report)?)
            .with_context(|| format!("write {}", path.display()))?;
        return Ok(());
    }
    let (results, sums) = if args.in_process || args.engines.len() < 2 {
        run_here(&args, &cfg)?
    } else {
        run_in_children(&args)?
    };

    print_tables(&results, &sums);
    if let Some(path) = &args.json {
        let rep = Report { args: &args, key_bytes: KEY_LEN, results: &results, engines: &sums };
        std::fs::write(path, serde_json::to_vec_pretty(&rep)?)
            .with_context(|| format!("write {}", path.display()))?;
        progress(&format!("wrote {}", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_engines_process_gets_every_argument_but_the_engines_and_the_json_file() {
        let argv = ["--num", "5", "--engines", "ferrisdb,rocksdb", "--json=/tmp/x.json", "--keep"]
            .iter()
            .chain(&["--json", "/tmp/y.json", "--engines=fjall", "--dir", "/d"])
            .map(std::ffi::OsString::from);
        let kept: Vec<String> =
            child_args(argv).into_iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(kept, ["--num", "5", "--keep", "--dir", "/d"]);
    }
}
