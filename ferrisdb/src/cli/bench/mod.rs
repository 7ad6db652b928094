//! `ferrisdb bench`: YCSB-style workloads run through the client against a live cluster, or
//! with `--store etcd` the same workloads against an etcd member (see [`store`]).
//!
//! First the data set is loaded (`--records` keys under `bench/`, in batched transactions,
//! skipped with `--no-load`), then `--clients` concurrent tasks each run one operation at a
//! time (on FerrisDB each its own transaction through `Database::run`) for `--duration`
//! seconds. A
//! progress bar shows live throughput when stderr is a terminal. At the end a table gives
//! throughput, latency percentiles, retries and errors per operation kind; `--json` and
//! `--plot` write the same results as JSON and as an SVG chart.
//!
//! The benchmark writes into the store it runs against (only keys under `bench/`).

mod etcd;
mod plot;
mod recorder;
mod report;
pub mod store;
mod workload;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrisdb_core::limits;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use self::recorder::Recorder;
use self::store::{Request, Store, StoreConfig};
pub use self::workload::Workload;
use self::workload::{KeyChooser, Op, key, other_record, value};
use super::connect::Target;

/// Bytes of keys and values per load transaction (about).
const LOAD_BATCH_BYTES: usize = 64 << 10;
/// Largest data set accepted: record numbers of inserts stay far from overflowing.
const MAX_RECORDS: u64 = u32::MAX as u64;
/// Longest run accepted: keeps the deadline instant from overflowing.
const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// Settings of one run.
#[derive(Debug, Clone)]
pub struct ClusterBench {
    /// The workload.
    pub workload: Workload,
    /// Run time.
    pub duration: Duration,
    /// Concurrent client tasks.
    pub clients: usize,
    /// Records in the data set.
    pub records: u64,
    /// Skip loading.
    pub no_load: bool,
    /// Read every record back after the run.
    pub check: bool,
    /// Key size, bytes.
    pub key_size: usize,
    /// Value size, bytes.
    pub value_size: usize,
    /// Uniform instead of Zipfian key choice.
    pub uniform: bool,
    /// Write the results as JSON here.
    pub json: Option<PathBuf>,
    /// Write an SVG chart here.
    pub plot: Option<PathBuf>,
    /// The store to drive.
    pub store: StoreConfig,
}

/// Loads, runs, prints the table and writes the requested files. Fails if any operation
/// failed (after reporting).
pub async fn run(target: &Target, cfg: ClusterBench) -> Result<(), String> {
    if cfg.clients == 0 || cfg.records == 0 || cfg.duration.is_zero() {
        return Err("--clients, --records and --duration must be at least 1".into());
    }
    // Larger keys or values would be refused by the cluster; bounding them (and the record
    // count) also keeps the size and record-number arithmetic below from overflowing.
    if cfg.key_size > limits::MAX_KEY_BYTES || cfg.value_size > limits::MAX_VALUE_BYTES {
        return Err(format!(
            "--key-size must be at most {} and --value-size at most {}",
            limits::MAX_KEY_BYTES,
            limits::MAX_VALUE_BYTES
        ));
    }
    if cfg.records > MAX_RECORDS {
        return Err(format!("--records must be at most {MAX_RECORDS}"));
    }
    if cfg.records < cfg.workload.min_records() {
        return Err(format!(
            "workload {} needs --records of at least {}",
            cfg.workload.letter(),
            cfg.workload.min_records()
        ));
    }
    if cfg.check && cfg.store != StoreConfig::FerrisDb {
        return Err("--check reads the data set back from FerrisDB only".into());
    }
    if cfg.duration > MAX_DURATION {
        return Err(format!(
            "--duration must be at most {} seconds (a year)",
            MAX_DURATION.as_secs()
        ));
    }
    let store = Store::open(target, &cfg.store).await?;
    let load_seconds = if cfg.no_load {
        None
    } else {
        Some(load(&store, &cfg).await?)
    };
    let recorder = Arc::new(Recorder::new());
    let chooser = Arc::new(KeyChooser::new(cfg.records, !cfg.uniform));
    let bar = progress_bar(
        cfg.duration.as_secs(),
        "{spinner} running [{bar:30}] {pos}/{len} s  {msg}",
    );
    let deadline = Instant::now() + cfg.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..cfg.clients {
        let (store, cfg, recorder, chooser) = (
            store.clone(),
            cfg.clone(),
            recorder.clone(),
            chooser.clone(),
        );
        tasks.spawn(
            async move { client_loop(client, store, cfg, recorder, chooser, deadline).await },
        );
    }
    while !tasks.is_empty() {
        tokio::select! {
            joined = tasks.join_next() => {
                if let Some(Err(e)) = joined {
                    return Err(format!("a client task failed: {e}"));
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(250)) => {
                if let Some(bar) = &bar {
                    let (total, last) = recorder.progress();
                    bar.set_position(recorder.elapsed().as_secs().min(cfg.duration.as_secs()));
                    bar.set_message(format!("{total} ops, {last} ops/s"));
                }
            }
        }
    }
    let duration_seconds = recorder.elapsed().as_secs_f64();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let info = report::RunInfo {
        store: cfg.store.name().into(),
        workload: cfg.workload.letter().into(),
        distribution: if cfg.uniform { "uniform" } else { "zipfian" }.into(),
        clients: cfg.clients,
        records: cfg.records,
        key_size: key(0, cfg.key_size).len(),
        value_size: cfg.value_size,
        load_seconds,
        duration_seconds,
    };
    let mut measured = recorder.snapshot();
    // The timeline covers the whole seconds of the requested duration: the operations that
    // finish after the deadline count in the totals but would show as a partial second.
    measured.seconds.truncate(cfg.duration.as_secs() as usize);
    let result = report::build(info, &measured);
    print!("{}", report::render(&result));
    if let Some(path) = &cfg.json {
        let text = serde_json::to_string_pretty(&result)
            .map_err(|e| format!("encoding the results: {e}"))?;
        std::fs::write(path, text + "\n")
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    if let Some(path) = &cfg.plot {
        let title = format!(
            "{} workload {}: {} clients, {} records",
            cfg.store.name(),
            cfg.workload.letter().to_uppercase(),
            cfg.clients,
            cfg.records
        );
        std::fs::write(path, plot::svg(&title, &result.timeline))
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    if result.total.errors > 0 {
        return Err(format!(
            "{} operations failed (first: {})",
            result.total.errors,
            result.first_error.as_deref().unwrap_or("?")
        ));
    }
    if result.total.ops == 0 {
        return Err("no operation completed".into());
    }
    if cfg.check
        && let Store::FerrisDb(db) = &store
    {
        check_records(db, &cfg).await?;
    }
    Ok(())
}

/// Records read back per range read of `--check`.
const CHECK_CHUNK: u64 = 1_000;

/// Reads records `0..records` back in range reads of [`CHECK_CHUNK`] from `clients` tasks;
/// fails on the first read that fails or finds a record missing, extra or of the wrong size.
async fn check_records(db: &ferrisdb_client::Database, cfg: &ClusterBench) -> Result<(), String> {
    let start = Instant::now();
    let chunks = cfg.records.div_ceil(CHECK_CHUNK);
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..cfg.clients.min(chunks as usize).max(1) {
        let (db, next) = (db.clone(), next.clone());
        let (records, key_size, value_size) = (cfg.records, cfg.key_size, cfg.value_size);
        tasks.spawn(async move {
            loop {
                let chunk = next.fetch_add(1, Ordering::Relaxed);
                if chunk >= chunks {
                    return Ok::<(), String>(());
                }
                let range = chunk * CHECK_CHUNK..((chunk + 1) * CHECK_CHUNK).min(records);
                let (begin, end) = (key(range.start, key_size), key(range.end, key_size));
                let found = db
                    .run(|tx| {
                        let (begin, end) = (begin.clone(), end.clone());
                        async move {
                            tx.get_range(begin, end, ferrisdb_client::RangeOptions::default())
                                .collect_vec()
                                .await
                        }
                    })
                    .await
                    .map_err(|e| format!("reading records {range:?} back: {e}"))?;
                for (i, record) in range.clone().enumerate() {
                    let expected = key(record, key_size);
                    match found.get(i) {
                        Some(kv) if kv.key[..] == expected[..] && kv.value.len() == value_size => {}
                        Some(kv) if kv.key[..] == expected[..] => {
                            return Err(format!(
                                "record {record}: a value of {} bytes, not {value_size}",
                                kv.value.len()
                            ));
                        }
                        _ => return Err(format!("record {record} is missing")),
                    }
                }
                if found.len() as u64 != range.end - range.start {
                    return Err(format!("records {range:?}: unexpected keys among them"));
                }
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.map_err(|e| format!("a check task failed: {e}"))??;
    }
    eprintln!(
        "checked {} records: every one present ({:.1} s)",
        cfg.records,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A progress bar on stderr, only when it is a terminal.
fn progress_bar(len: u64, template: &str) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(100));
    Some(bar)
}

/// Writes records `0..records` in batched transactions from `clients` tasks.
async fn load(store: &Store, cfg: &ClusterBench) -> Result<f64, String> {
    let start = Instant::now();
    let per_tx = (LOAD_BATCH_BYTES / (cfg.key_size + cfg.value_size).max(1))
        .clamp(1, store.max_load_batch()) as u64;
    let batches = cfg.records.div_ceil(per_tx);
    let next = Arc::new(AtomicU64::new(0));
    let bar = progress_bar(
        cfg.records,
        "{spinner} loading [{bar:30}] {pos}/{len} records",
    );
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..cfg.clients.min(batches as usize).max(1) {
        let (store, next, bar) = (store.clone(), next.clone(), bar.clone());
        let (records, key_size, value_size) = (cfg.records, cfg.key_size, cfg.value_size);
        tasks.spawn(async move {
            loop {
                let batch = next.fetch_add(1, Ordering::Relaxed);
                if batch >= batches {
                    return Ok::<(), String>(());
                }
                let range = batch * per_tx..((batch + 1) * per_tx).min(records);
                let count = range.end - range.start;
                store
                    .load(range.clone(), key_size, value_size)
                    .await
                    .map_err(|e| format!("loading records {range:?}: {e}"))?;
                if let Some(bar) = &bar {
                    bar.inc(count);
                }
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.map_err(|e| format!("a load task failed: {e}"))??;
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!("loaded {} records in {secs:.1} s", cfg.records);
    Ok(secs)
}

/// One client: operations back to back until the deadline.
async fn client_loop(
    client: usize,
    store: Store,
    cfg: ClusterBench,
    recorder: Arc<Recorder>,
    chooser: Arc<KeyChooser>,
    deadline: Instant,
) {
    let mut rng = StdRng::seed_from_u64(0x5eed ^ (client as u64).wrapping_mul(0x9e37_79b9));
    let mut inserted = 0u64;
    while Instant::now() < deadline {
        let op = cfg.workload.choose(&mut rng);
        let record = match op {
            Op::Insert => {
                inserted += 1;
                cfg.records + client as u64 + (inserted - 1) * cfg.clients as u64
            }
            _ => chooser.next(&mut rng),
        };
        let (key2, value2) = if op == Op::ReadModifyWrite2 {
            let other = other_record(&chooser, &mut rng, record);
            (
                Bytes::from(key(other, cfg.key_size)),
                Bytes::from(value(cfg.value_size, rng.random())),
            )
        } else {
            (Bytes::new(), Bytes::new())
        };
        let scan_len = cfg.workload.scan_len(&mut rng);
        let req = Request {
            op,
            key: Bytes::from(key(record, cfg.key_size)),
            value: Bytes::from(value(cfg.value_size, rng.random())),
            key2,
            value2,
            scan_len,
            scan_end: Bytes::from(key(record + scan_len as u64, cfg.key_size)),
        };
        let start = Instant::now();
        let outcome = store.execute(&req).await;
        recorder.record(op, start.elapsed(), outcome.retries, outcome.error);
    }
}
