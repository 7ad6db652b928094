//! Resident memory of this process, sampled in the background: the peak of each workload
//! (since the previous row was reported) and of each engine's whole run.
//!
//! Linux only (`/proc/self/statm`); elsewhere every figure is `None`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// How often the sampler reads the resident set size.
const SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// A background thread that keeps the highest resident set size seen since the last
/// [`RssSampler::take_peak`].
pub struct RssSampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    /// Starts sampling; `None` where the resident set size cannot be read.
    pub fn start() -> Option<Self> {
        let now = resident_bytes()?;
        let peak = Arc::new(AtomicU64::new(now));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("rss-sampler".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    if let Some(rss) = resident_bytes() {
                        p.fetch_max(rss, Ordering::Relaxed);
                    }
                    std::thread::sleep(SAMPLE_EVERY);
                }
            })
            .ok()?;
        Some(RssSampler { peak, stop, thread: Some(thread) })
    }

    /// The highest resident set size since the previous call (or the start), in bytes; the
    /// next period starts from the current size.
    pub fn take_peak(&self) -> u64 {
        let now = resident_bytes().unwrap_or(0);
        self.peak.swap(now, Ordering::Relaxed).max(now)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// This process's resident set size in bytes, from `/proc/self/statm` (second field, pages).
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_bytes())
}

/// The kernel's page size, the unit of `statm` (`getconf PAGESIZE`; 4 KiB if that fails).
fn page_bytes() -> u64 {
    static PAGE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("PAGESIZE")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(4096)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_allocation_raises_the_peak_and_take_peak_starts_over() {
        let Some(sampler) = RssSampler::start() else {
            return;
        };
        let before = sampler.take_peak();
        let block = std::hint::black_box(vec![1u8; 64 << 20]);
        std::thread::sleep(SAMPLE_EVERY * 5);
        let during = sampler.take_peak();
        assert!(during >= before + (48 << 20), "peak {during} after 64 MiB touched, before {before}");
        drop(std::hint::black_box(block));
        // This period began while the block was resident; the next one begins without it.
        sampler.take_peak();
        std::thread::sleep(SAMPLE_EVERY * 5);
        let after = sampler.take_peak();
        assert!(after < during, "peak {after} after the block was freed, {during} while it lived");
    }
}
