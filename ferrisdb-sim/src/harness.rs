//! What the simulated workloads share: the seed loop ([`run_seed`]), telling an injected
//! fault from a real failure ([`blame`]), and reopening through faults
//! ([`open_through_faults`]).

use rand::Rng;
use rand::rngs::StdRng;

use crate::SeedRun;
use crate::disk::{DiskStats, Faults, SimDisk};
use crate::trace::Trace;

/// Steps of one seed: drawn from the seed, in this range.
const STEPS: std::ops::Range<u64> = 150..400;

/// One workload's state for one seed, driven by [`run_seed`].
pub(crate) trait SeedDriver {
    /// Takes one random step; `Err` is a broken invariant.
    fn step(&mut self) -> Result<(), String>;
    /// Ends the run: faults off, a last power cycle, the final checks.
    fn finish(&mut self) -> Result<(), String>;
    /// The run's random source.
    fn rng(&mut self) -> &mut StdRng;
    /// The run's events.
    fn trace(&self) -> &Trace;
    /// The simulated disk.
    fn disk(&self) -> &SimDisk;
    /// Restarts so far.
    fn restarts(&self) -> u64;
    /// Drops every handle, killed processes' included, once the results are taken: whatever
    /// their destructors write no longer matters.
    fn shut_down(&mut self);
}

/// Runs `driver` for its number of steps (or to its first failure), then `finish`.
pub(crate) fn run_seed(seed: u64, workload: &'static str, driver: &mut impl SeedDriver) -> SeedRun {
    let steps = driver.rng().random_range(STEPS);
    let mut taken = 0;
    let mut failure = None;
    for _ in 0..steps {
        if let Err(reason) = driver.step() {
            failure = Some(reason);
            break;
        }
        taken += 1;
    }
    if failure.is_none() {
        failure = driver.finish().err();
    }
    let failure =
        failure.map(|reason| format!("{reason}\nlast events:\n{}", driver.trace().tail()));
    let run = SeedRun {
        seed,
        workload,
        trace: driver.trace().hash(),
        steps: taken,
        restarts: driver.restarts(),
        power_cuts: driver.disk().stats().power_cuts,
        failure,
    };
    driver.shut_down();
    run
}

/// What a failed call can be blamed on, from the disk's counters since `before`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Blame {
    /// No fault was injected: the failure is a bug.
    Nothing,
    /// Only a full disk: an operator frees space and restarts the process.
    FullDisk,
    /// A power cut or a failed fsync: fatal to the machine, which is power-cycled (so no
    /// page the disk never got is read back from the page cache).
    Fatal,
}

/// Blames a failure on the faults injected since `before`.
pub(crate) fn blame(disk: &SimDisk, before: &DiskStats) -> Blame {
    let now = disk.stats();
    if disk.is_powered_off() || now.failed_fsyncs > before.failed_fsyncs {
        Blame::Fatal
    } else if now.full_disk_writes > before.full_disk_writes {
        Blame::FullDisk
    } else {
        Blame::Nothing
    }
}

/// Calls `open` until it succeeds. A failure an injected fault explains is followed by a
/// power cycle (after a full disk, with the space freed; after three failures, with every
/// fault off); any other failure is the run's.
pub(crate) fn open_through_faults<T>(
    disk: &SimDisk,
    faults: &mut Faults,
    trace: &mut Trace,
    mut open: impl FnMut() -> ferrisdb_core::Result<T>,
) -> Result<T, String> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let before = disk.stats();
        let err = match open() {
            Ok(opened) => return Ok(opened),
            Err(err) => err,
        };
        trace.record(format!("open failed: {err}"));
        let blamed = blame(disk, &before);
        if blamed == Blame::Nothing {
            return Err(format!("opening after a restart: {err}"));
        }
        if attempts >= 3 {
            *faults = Faults::default();
        }
        if blamed == Blame::FullDisk {
            faults.capacity_bytes = None;
        }
        disk.set_faults(*faults);
        disk.cut_power();
        disk.reboot();
    }
}
