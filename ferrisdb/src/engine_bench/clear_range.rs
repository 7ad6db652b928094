//! `clearrange`: clears every key the fill workloads wrote with one `delete_range`, while a
//! writer keeps writing keys outside the range, and reports what the clear cost — its time,
//! the WAL bytes of its record, the writer's put latencies before and during it — and what
//! reading the cleared range then costs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrisdb_storage::engine::ScanOptions;

use super::engine::{BenchEngine, FerrisEngine};
use super::workloads::{Settings, WorkloadResult, histogram};

/// How long the writer runs before the clear, for its baseline latencies.
const BASELINE: Duration = Duration::from_millis(500);

/// Runs the workload; `ops` of the result is the keys the fills wrote (`settings.num`), its
/// latencies the writer's puts that overlapped the clear.
pub fn clear_range(db: &FerrisEngine, settings: &Settings) -> Result<WorkloadResult, String> {
    let stop = AtomicBool::new(false);
    let clearing = AtomicBool::new(false);
    let value = vec![b'w'; settings.value_size];
    let (clear_time, wal_bytes, before, during) = std::thread::scope(|s| {
        let writer = s.spawn(|| -> Result<_, String> {
            let (mut before, mut during) = (histogram(), histogram());
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Outside the cleared range: fill keys are decimal digits, these start "w".
                let key = format!("w{i:015}");
                i += 1;
                let started_clearing = clearing.load(Ordering::Relaxed);
                let t = Instant::now();
                db.put_batch(&[(key.as_bytes(), &value)])
                    .map_err(|e| e.to_string())?;
                let nanos = u64::try_from(t.elapsed().as_nanos())
                    .unwrap_or(u64::MAX)
                    .max(1);
                let overlapped = started_clearing || clearing.load(Ordering::Relaxed);
                let _ = if overlapped { &mut during } else { &mut before }.record(nanos);
            }
            Ok((before, during))
        });
        std::thread::sleep(BASELINE);
        clearing.store(true, Ordering::Relaxed);
        let t = Instant::now();
        let cleared = db.delete_range(b"0", b":");
        let clear_time = t.elapsed();
        clearing.store(false, Ordering::Relaxed);
        stop.store(true, Ordering::Relaxed);
        let latencies = writer
            .join()
            .unwrap_or_else(|_| Err("writer thread panicked".into()));
        let wal_bytes = cleared.map_err(|e| e.to_string())?;
        let (before, during) = latencies?;
        Ok::<_, String>((clear_time, wal_bytes, before, during))
    })?;
    // Reading the cleared range: nothing may come back, and how long finding that out takes.
    let t = Instant::now();
    let engine = db.engine();
    let left = engine
        .scan(ScanOptions {
            begin: Bytes::from_static(b"0"),
            end: Bytes::from_static(b":"),
            read_version: engine.last_applied_version(),
            reverse: false,
            limit: 0,
        })
        .map_err(|e| e.to_string())?
        .count();
    let scan_time = t.elapsed();
    if left != 0 {
        return Err(format!(
            "{left} keys of the cleared range are still visible"
        ));
    }
    let q = |h: &hdrhistogram::Histogram<u64>, p: f64| {
        if h.is_empty() {
            "-".to_owned()
        } else {
            format!("{:.0}", h.value_at_quantile(p) as f64 / 1000.0)
        }
    };
    let note = format!(
        "cleared {} keys in {:.2} ms with {wal_bytes} WAL bytes; writer puts p99 {} us before, \
         {} us during ({} puts overlapped the clear, max {} us); a scan of the cleared range \
         found nothing in {:.1} ms",
        settings.num,
        clear_time.as_secs_f64() * 1000.0,
        q(&before, 0.99),
        q(&during, 0.99),
        during.len(),
        q(&during, 1.0),
        scan_time.as_secs_f64() * 1000.0,
    );
    Ok(WorkloadResult {
        workload: "clearrange".into(),
        ops: settings.num,
        elapsed: clear_time,
        bytes: wal_bytes,
        latency: Some(during),
        note,
    })
}

/// Small clears while the memtable holds them: `settings.num / 10` clears of two adjacent
/// fill keys each (one batch per clear), then random point reads with those range tombstones
/// all in the memtable (the result; its note has the clears' rate).
pub fn clear_many(db: &FerrisEngine, settings: &Settings) -> Result<WorkloadResult, String> {
    use rand::{Rng, SeedableRng};
    let clears = (settings.num / 10).max(1);
    let mut rng = rand::rngs::StdRng::seed_from_u64(settings.seed + 300);
    let (mut begin, mut end) = (vec![0u8; settings.key_len], vec![0u8; settings.key_len]);
    let t = Instant::now();
    for _ in 0..clears {
        let first = rng.random_range(0..settings.num);
        super::make_key(first, &mut begin);
        super::make_key(first + 2, &mut end);
        db.delete_range(&begin, &end).map_err(|e| e.to_string())?;
    }
    let clear_secs = t.elapsed().as_secs_f64();
    let mut result = super::read_random(db, "readafterclears", settings, settings.seed + 301)?;
    result.note = format!(
        "{}; after {clears} clears of 2 keys at {:.0} clears/s, their tombstones in the memtable",
        result.note,
        clears as f64 / clear_secs.max(1e-9)
    );
    Ok(result)
}
