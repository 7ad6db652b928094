//! The benchmark's results: the `--json` form (stable field names, documented in
//! `docs/cli.md`) and the table printed at the end.

use serde::Serialize;

use super::recorder::{Measurements, histogram};
use crate::cli::table::Table;

/// Latency and throughput of one operation kind (or of all of them).
#[derive(Debug, Clone, Serialize)]
pub struct OpReport {
    /// Completed operations.
    pub ops: u64,
    /// Completed operations per second of run time.
    pub throughput: f64,
    /// Latency percentiles and maximum, microseconds.
    pub p50_us: u64,
    /// 95th percentile.
    pub p95_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Slowest.
    pub max_us: u64,
    /// Mean.
    pub mean_us: f64,
    /// Retries (attempts beyond the first: conflicts and other retryable errors).
    pub retries: u64,
    /// `retries / (ops + errors + retries)`: the share of attempts that were aborted.
    pub abort_rate: f64,
    /// Operations that failed.
    pub errors: u64,
}

/// One second of the run.
#[derive(Debug, Clone, Serialize)]
pub struct SecondReport {
    /// Seconds since the start of the run (0-based).
    pub second: u64,
    /// Operations completed in this second.
    pub ops: u64,
    /// 99th-percentile latency of those operations, microseconds (0 when none).
    pub p99_us: u64,
}

/// The whole result (`--json PATH`).
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// The store driven: `ferrisdb`, `etcd` or `etcd-serializable`.
    pub store: String,
    /// `a`, `b`, `c`, `e`, `f`, `w`, `r` or `t`.
    pub workload: String,
    /// `zipfian` or `uniform`.
    pub distribution: String,
    /// Concurrent client tasks.
    pub clients: usize,
    /// Records in the data set.
    pub records: u64,
    /// Key size, bytes.
    pub key_size: usize,
    /// Value size, bytes.
    pub value_size: usize,
    /// Seconds spent loading the data set (`null` with `--no-load`).
    pub load_seconds: Option<f64>,
    /// Measured run time, seconds.
    pub duration_seconds: f64,
    /// All operations together.
    pub total: OpReport,
    /// Per operation kind: `read`, `update`, `insert`, `scan`, `read_modify_write`,
    /// `read_modify_write_2`.
    pub operations: std::collections::BTreeMap<String, OpReport>,
    /// Per second of the run.
    pub timeline: Vec<SecondReport>,
    /// The first error, if any operation failed.
    pub first_error: Option<String>,
}

/// Run facts that are not measurements.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// Store name.
    pub store: String,
    /// Workload letter.
    pub workload: String,
    /// Distribution name.
    pub distribution: String,
    /// Clients.
    pub clients: usize,
    /// Records.
    pub records: u64,
    /// Key size.
    pub key_size: usize,
    /// Value size.
    pub value_size: usize,
    /// Load time.
    pub load_seconds: Option<f64>,
    /// Run time.
    pub duration_seconds: f64,
}

fn op_report(
    latency: &hdrhistogram::Histogram<u64>,
    retries: u64,
    errors: u64,
    secs: f64,
) -> OpReport {
    let ops = latency.len();
    let attempts = ops + errors + retries;
    let q = |p: f64| {
        if ops == 0 {
            0
        } else {
            latency.value_at_quantile(p)
        }
    };
    OpReport {
        ops,
        throughput: ops as f64 / secs.max(1e-9),
        p50_us: q(0.5),
        p95_us: q(0.95),
        p99_us: q(0.99),
        max_us: if ops == 0 { 0 } else { latency.max() },
        mean_us: if ops == 0 { 0.0 } else { latency.mean() },
        retries,
        abort_rate: if attempts == 0 {
            0.0
        } else {
            retries as f64 / attempts as f64
        },
        errors,
    }
}

/// Builds the report from the measurements.
pub fn build(info: RunInfo, m: &Measurements) -> BenchReport {
    let secs = info.duration_seconds;
    let mut all = histogram();
    let (mut retries, mut errors) = (0, 0);
    let mut operations = std::collections::BTreeMap::new();
    for (op, s) in &m.ops {
        let _ = all.add(&s.latency);
        retries += s.retries;
        errors += s.errors;
        operations.insert(
            op.name().to_owned(),
            op_report(&s.latency, s.retries, s.errors, secs),
        );
    }
    let timeline = m
        .seconds
        .iter()
        .enumerate()
        .map(|(i, s)| SecondReport {
            second: i as u64,
            ops: s.ops,
            p99_us: if s.ops == 0 {
                0
            } else {
                s.latency.value_at_quantile(0.99)
            },
        })
        .collect();
    BenchReport {
        total: op_report(&all, retries, errors, secs),
        operations,
        timeline,
        first_error: m.first_error.clone(),
        store: info.store,
        workload: info.workload,
        distribution: info.distribution,
        clients: info.clients,
        records: info.records,
        key_size: info.key_size,
        value_size: info.value_size,
        load_seconds: info.load_seconds,
        duration_seconds: secs,
    }
}

/// The table printed at the end of a run.
pub fn render(r: &BenchReport) -> String {
    let ms = |us: u64| format!("{:.2}", us as f64 / 1000.0);
    let mut t = Table::new(&[
        "OPERATION",
        "OPS",
        "OPS/S",
        "P50 ms",
        "P95 ms",
        "P99 ms",
        "MAX ms",
        "RETRIES",
        "ABORT %",
        "ERRORS",
    ]);
    let rows = r
        .operations
        .iter()
        .map(|(name, o)| (name.as_str(), o))
        .chain(std::iter::once(("total", &r.total)));
    for (name, o) in rows {
        t.row(vec![
            name.to_owned(),
            o.ops.to_string(),
            format!("{:.0}", o.throughput),
            ms(o.p50_us),
            ms(o.p95_us),
            ms(o.p99_us),
            ms(o.max_us),
            o.retries.to_string(),
            format!("{:.2}", o.abort_rate * 100.0),
            o.errors.to_string(),
        ]);
    }
    let mut out = format!(
        "{}: workload {} ({}), {} clients, {} records of {}+{} bytes, {:.1} s\n",
        r.store,
        r.workload.to_uppercase(),
        r.distribution,
        r.clients,
        r.records,
        r.key_size,
        r.value_size,
        r.duration_seconds
    );
    out.push_str(&t.render(2));
    if let Some(e) = &r.first_error {
        out.push_str(&format!("  first error: {e}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::recorder::Recorder;
    use super::super::workload::Op;
    use super::*;

    #[test]
    fn totals_rates_and_json_fields() {
        let rec = Recorder::new();
        for i in 1..=100 {
            rec.record(Op::Read, Duration::from_micros(i * 10), 0, None);
        }
        rec.record(Op::Update, Duration::from_micros(5000), 3, None);
        rec.record(Op::Update, Duration::ZERO, 0, Some("x".into()));
        let info = RunInfo {
            store: "etcd".into(),
            workload: "a".into(),
            distribution: "zipfian".into(),
            clients: 2,
            records: 10,
            key_size: 16,
            value_size: 100,
            load_seconds: None,
            duration_seconds: 2.0,
        };
        let r = build(info, &rec.snapshot());
        assert_eq!(r.total.ops, 101);
        assert_eq!(r.total.throughput, 50.5);
        assert_eq!(r.total.errors, 1);
        assert_eq!(r.total.retries, 3);
        assert!((r.total.abort_rate - 3.0 / 105.0).abs() < 1e-9);
        let read = &r.operations["read"];
        assert!((495..=505).contains(&read.p50_us), "{}", read.p50_us);
        assert!(read.p99_us >= read.p95_us && read.max_us >= read.p99_us);
        let json = serde_json::to_value(&r).unwrap();
        for field in [
            "workload",
            "total",
            "operations",
            "timeline",
            "duration_seconds",
            "store",
        ] {
            assert!(json.get(field).is_some(), "{field}");
        }
        assert_eq!(json["operations"]["update"]["ops"], 1);
        assert_eq!(json["store"], "etcd");
        let text = render(&r);
        assert!(
            text.starts_with("etcd: workload A")
                && text.contains("total")
                && text.contains("first error: x"),
            "{text}"
        );
    }
}
