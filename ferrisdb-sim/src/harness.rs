//! What the simulated workloads share: the seed loop ([`run_seed`]), telling an injected
//! fault from a real failure ([`blame`]), and reopening through faults
//! ([`open_through_faults`]).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::SeedRun;
use crate::disk::{DiskStats, Faults, SimDisk};
use crate::trace::Trace;

/// Steps of one seed: drawn from the seed, in this range.
const STEPS: std::ops::Range<u64> = 150..400;

/// What every workload keeps for a seed: its random source, its disk, its events, the
/// faults in force and the disk's counters when the current step began.
pub(crate) struct SimBase {
    pub rng: StdRng,
    pub disk: SimDisk,
    pub trace: Trace,
    pub faults: Faults,
    /// Disk counters at the start of the current step (see [`blame`]).
    pub seen: DiskStats,
    pub restarts: u64,
}

impl SimBase {
    /// The random source of `seed`, and a disk seeded from its first draw.
    pub fn new(seed: u64) -> SimBase {
        let mut rng = StdRng::seed_from_u64(seed);
        let disk = SimDisk::new(rng.random());
        SimBase {
            rng,
            disk,
            trace: Trace::default(),
            faults: Faults::default(),
            seen: DiskStats::default(),
            restarts: 0,
        }
    }

    /// Changes the faults in force.
    pub fn set_faults(&mut self, change: impl FnOnce(&mut Faults)) {
        change(&mut self.faults);
        self.disk.set_faults(self.faults);
    }

    /// A fault step: a power cut after 0-59 more disk calls (3 in 5), an fsync failure rate
    /// of 0, 2% or 10% from now on, or a disk capacity a little above what is stored.
    pub fn inject_fault(&mut self) {
        match self.rng.random_range(0..5) {
            0..=2 => {
                let after = self.rng.random_range(0..60);
                self.trace
                    .record(format!("power cut in {after} disk calls"));
                self.disk.cut_power_after(after);
            }
            3 => {
                let rate = [0.0, 0.02, 0.1][self.rng.random_range(0..3)];
                self.trace.record(format!("fsync failure rate {rate}"));
                self.set_faults(|f| f.fsync_failure = rate);
            }
            _ => {
                let capacity = self.disk.stored_bytes() + self.rng.random_range(0..32 * 1024);
                self.trace.record(format!("disk capacity {capacity}"));
                self.set_faults(|f| f.capacity_bytes = Some(capacity));
            }
        }
    }
}

/// One workload's state for one seed, driven by [`run_seed`].
pub(crate) trait SeedDriver {
    /// The shared part of the state.
    fn base(&mut self) -> &mut SimBase;
    /// Takes one random step; `Err` is a broken invariant.
    fn step(&mut self) -> Result<(), String>;
    /// Ends the run: faults off, a last power cycle, the final checks.
    fn finish(&mut self) -> Result<(), String>;
    /// Drops every handle, killed processes' included, once the results are taken: whatever
    /// their destructors write no longer matters.
    fn shut_down(&mut self);
    /// Drops the open handle, as a process that exits (its destructor may write, and fail).
    fn drop_handle(&mut self);
    /// Opens the component again (through injected faults) and checks what it recovered.
    fn reopen(&mut self) -> Result<(), String>;
}

/// After a call failed: a full disk is freed and the process restarted, a fatal fault
/// power-cycles the machine, a failure no fault explains is the run's.
pub(crate) fn recover_from(driver: &mut impl SeedDriver, what: &str) -> Result<(), String> {
    driver.drop_handle();
    let base = driver.base();
    match blame(&base.disk, &base.seen) {
        Blame::Nothing => Err(format!("{what} (no fault was injected)")),
        Blame::FullDisk => {
            base.trace
                .record("disk full: space freed, process restarted");
            base.set_faults(|f| f.capacity_bytes = None);
            restart(driver, false)
        }
        Blame::Fatal => {
            base.trace.record("power cycle");
            restart(driver, true)
        }
    }
}

/// Restarts the process (and first cuts the power, if `power_cycle` or it is off), then
/// reopens and checks.
pub(crate) fn restart(driver: &mut impl SeedDriver, power_cycle: bool) -> Result<(), String> {
    driver.drop_handle();
    let base = driver.base();
    base.restarts += 1;
    if power_cycle || base.disk.is_powered_off() {
        base.disk.cut_power();
    }
    base.disk.reboot();
    driver.reopen()
}

/// The end of a run: faults off, a last power cycle, the checks of the reopen.
pub(crate) fn final_power_cycle(driver: &mut impl SeedDriver) -> Result<(), String> {
    let base = driver.base();
    base.set_faults(|f| *f = Faults::default());
    base.trace.record("final power cycle");
    restart(driver, true)?;
    let base = driver.base();
    let stats = base.disk.stats();
    base.trace.record(format!("disk {stats:?}"));
    Ok(())
}

/// Runs `driver` for its number of steps (or to its first failure), then `finish`.
pub(crate) fn run_seed(seed: u64, workload: &'static str, driver: &mut impl SeedDriver) -> SeedRun {
    let steps = driver.base().rng.random_range(STEPS);
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
    let base = driver.base();
    let failure = failure.map(|reason| format!("{reason}\nlast events:\n{}", base.trace.tail()));
    let run = SeedRun {
        seed,
        workload,
        trace: base.trace.hash(),
        steps: taken,
        restarts: base.restarts,
        power_cuts: base.disk.stats().power_cuts,
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
