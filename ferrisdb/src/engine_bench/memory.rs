//! Where the benchmark process's memory goes: its resident size next to what the engine
//! accounts for (memtables, block cache, the indexes and filters of open tables).

use ferrisdb_storage::engine::EngineStats;

const MIB: f64 = (1 << 20) as f64;

/// The process's resident memory now and at its peak, in bytes (`VmRSS` and `VmHWM` of
/// `/proc/self/status`); `None` where that file does not exist (not Linux).
pub fn process_resident() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    Some((
        status_kib(&status, "VmRSS:")? * 1024,
        status_kib(&status, "VmHWM:")? * 1024,
    ))
}

/// The value in KiB of the `/proc/<pid>/status` line starting with `field`.
fn status_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// One line: the resident size and peak, then the engine's share of it and the rest.
pub fn memory_line(label: &str, stats: &EngineStats) -> String {
    let engine = (stats.memtable_bytes + stats.block_cache_bytes + stats.table_memory_bytes) as f64;
    let parts = format!(
        "memtables {:.0} MiB, block cache {:.0} MiB, indexes + filters {:.0} MiB",
        stats.memtable_bytes as f64 / MIB,
        stats.block_cache_bytes as f64 / MIB,
        stats.table_memory_bytes as f64 / MIB,
    );
    match process_resident() {
        Some((resident, peak)) => format!(
            "{label:<18} resident {:.0} MiB (peak so far {:.0} MiB): {parts}, the rest {:.0} MiB",
            resident as f64 / MIB,
            peak as f64 / MIB,
            (resident as f64 - engine).max(0.0) / MIB,
        ),
        None => format!("{label:<18} {parts}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_parse_in_kib() {
        let status = "Name:\tferrisdb\nVmHWM:\t  459180 kB\nVmRSS:\t  123456 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(123_456));
        assert_eq!(status_kib(status, "VmHWM:"), Some(459_180));
        assert_eq!(status_kib(status, "VmSwap:"), None);
        assert_eq!(status_kib("VmRSS:\tlots kB\n", "VmRSS:"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_resident_memory_within_its_peak() {
        let (resident, peak) = process_resident().unwrap();
        assert!(resident > 0 && resident <= peak);
        let stats = EngineStats {
            memtable_bytes: 3 << 20,
            block_cache_bytes: 2 << 20,
            table_memory_bytes: 1 << 20,
            ..EngineStats::default()
        };
        let line = memory_line("fillrandom", &stats);
        assert!(
            line.contains("memtables 3 MiB, block cache 2 MiB, indexes + filters 1 MiB"),
            "{line}"
        );
        assert!(line.contains("resident"), "{line}");
    }
}
