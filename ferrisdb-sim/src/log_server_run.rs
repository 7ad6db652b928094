//! One seed of the log-server simulation: the real [`LogServer`] (a replica of the commit log
//! for one generation, with the fence that recovery generations rely on) on a
//! [`SimDisk`](crate::disk::SimDisk), driven by a seeded workload: appends by the current
//! generation's coordinator (append, sync, publish), appends by a generation that was locked
//! out, recovery locks at a new generation, resets of the log for a new generation,
//! truncations, kills, power cuts at any disk call, failed fsyncs and a full disk.
//!
//! What is checked, besides what the commit-log workload checks of the records:
//! - once a lock at generation `g` has answered, the log server refuses every append of a
//!   generation below `g` — before and after any number of restarts (the fence is durable
//!   before the answer);
//! - a lock's answer says the log ends at or after every acknowledged version;
//! - after a reset to `s` has answered, the log starts after `s` across restarts;
//! - a call fails only when a fault was injected (or, for a stale generation, with
//!   `Fenced`), and opening after a crash never reports corruption.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use ferrisdb_core::{Error, Mutation, Version};
use ferrisdb_server::log::server::LogServer;
use ferrisdb_server::log::{LogOptions, Submitted, record};
use ferrisdb_storage::vfs::SharedFs;
use ferrisdb_storage::wal::SyncPolicy;
use rand::Rng;

use crate::SeedRun;
use crate::disk::Faults;
use crate::harness::{self, Blame, SeedDriver, SimBase};

/// Where the log server keeps its log and fence on the simulated disk.
const LOG_DIR: &str = "/data/log-server";

/// Runs one seed to the end (or to its first failure).
pub fn run_log_server_seed(seed: u64) -> SeedRun {
    harness::run_seed(seed, "log-server", &mut Sim::new(seed))
}

impl SeedDriver for Sim {
    fn base(&mut self) -> &mut SimBase {
        &mut self.base
    }

    fn step(&mut self) -> Result<(), String> {
        Sim::step(self)
    }

    fn finish(&mut self) -> Result<(), String> {
        Sim::finish(self)
    }

    fn shut_down(&mut self) {
        self.server = None;
        self.killed.clear();
    }
}

/// What one step's call did.
enum Step {
    Done,
    /// The call failed (expected only when a fault was injected); the process restarts.
    Failed(String),
}

struct Sim {
    base: SimBase,
    fs: SharedFs,
    dir: PathBuf,
    options: LogOptions,
    /// Runs the log server's async calls (its lock), one at a time.
    runtime: tokio::runtime::Runtime,
    server: Option<Arc<LogServer>>,
    /// Servers "killed -9": kept, not dropped, so no destructor of theirs touches the disk.
    killed: Vec<Arc<LogServer>>,
    /// Every batch appended since the last reset and not lost, in version order.
    batches: Vec<(Version, Vec<Mutation>)>,
    /// Appended, not yet synced and published.
    pending: Vec<Submitted>,
    /// Where the log starts after the last reset that answered (0: never reset).
    start: Version,
    /// A reset that was asked for and has not answered: its start.
    reset_in_flight: Option<Version>,
    /// Highest version synced and published.
    acked: Version,
    /// Highest version appended.
    appended: Version,
    /// Highest truncation point asked for.
    truncated: Version,
    /// The generation of the coordinator appending now.
    epoch: u64,
    /// The highest generation whose lock answered.
    locked: u64,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut base = SimBase::new(seed);
        let options = LogOptions {
            segment_bytes: base.rng.random_range(256..4096),
            sync: SyncPolicy::Always,
        };
        base.trace.record(format!("options {options:?}"));
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(runtime) => runtime,
            Err(err) => panic!("a current-thread tokio runtime: {err}"),
        };
        Sim {
            fs: Arc::new(base.disk.clone()),
            base,
            dir: PathBuf::from(LOG_DIR),
            options,
            runtime,
            server: None,
            killed: Vec::new(),
            batches: Vec::new(),
            pending: Vec::new(),
            start: Version::ZERO,
            reset_in_flight: None,
            acked: Version::ZERO,
            appended: Version::ZERO,
            truncated: Version::ZERO,
            epoch: 0,
            locked: 0,
        }
    }

    fn server(&self) -> Result<Arc<LogServer>, String> {
        self.server
            .clone()
            .ok_or_else(|| "no open log server".to_owned())
    }

    fn step(&mut self) -> Result<(), String> {
        if self.server.is_none() {
            self.open_checked()?;
        }
        self.base.seen = self.base.disk.stats();
        match self.act()? {
            Step::Done => Ok(()),
            Step::Failed(what) => self.recover_from(&what),
        }
    }

    fn act(&mut self) -> Result<Step, String> {
        match self.base.rng.random_range(0..100) {
            0..=39 => self.commit(),
            40..=49 if self.pending.len() < 6 => self.append(),
            40..=54 => self.sync_pending(),
            55..=59 => self.stale_append(),
            60..=66 => self.lock_new_generation(),
            67..=69 => self.reset(),
            70..=75 => self.truncate(),
            76..=79 => {
                self.base.trace.record("kill -9");
                if let Some(server) = self.server.take() {
                    self.killed.push(server);
                }
                self.base.disk.release_locks();
                self.restart(false).map(|()| Step::Done)
            }
            80..=89 => {
                let after = self.base.rng.random_range(0..40);
                self.base
                    .trace
                    .record(format!("power cut in {after} disk calls"));
                self.base.disk.cut_power_after(after);
                Ok(Step::Done)
            }
            90..=94 => {
                let rate = [0.0, 0.02, 0.1][self.base.rng.random_range(0..3)];
                self.base.trace.record(format!("fsync failure rate {rate}"));
                self.base.set_faults(|f| f.fsync_failure = rate);
                Ok(Step::Done)
            }
            _ => {
                let capacity =
                    self.base.disk.stored_bytes() + self.base.rng.random_range(0..16 * 1024);
                self.base.trace.record(format!("disk capacity {capacity}"));
                self.base.set_faults(|f| f.capacity_bytes = Some(capacity));
                Ok(Step::Done)
            }
        }
    }

    fn mutations(&mut self) -> Vec<Mutation> {
        let rng = &mut self.base.rng;
        (0..rng.random_range(1..=3))
            .map(|_| Mutation::Set {
                key: Bytes::from(format!("key{:02}", rng.random_range(0..30))),
                value: Bytes::from(vec![b'v'; rng.random_range(0..200)]),
            })
            .collect()
    }

    /// The current generation appends one batch (not yet synced).
    fn append(&mut self) -> Result<Step, String> {
        let prev = self.appended.max(self.start);
        let version = Version(prev.get() + self.base.rng.random_range(1..5));
        let mutations = self.mutations();
        let payload = record::encode(version, prev, &mutations)
            .map_err(|err| format!("encoding a record: {err}"))?;
        self.batches.push((version, mutations));
        self.appended = version;
        match self.server()?.append(self.epoch, &payload) {
            Ok(submitted) => {
                self.base.trace.record(format!("append @{version}"));
                self.pending.push(submitted);
                Ok(Step::Done)
            }
            Err(err) => {
                self.base
                    .trace
                    .record(format!("append @{version} failed: {err}"));
                Ok(Step::Failed(format!("append @{version}: {err}")))
            }
        }
    }

    /// Syncs the pending batches and publishes them in order: acknowledged.
    fn sync_pending(&mut self) -> Result<Step, String> {
        let Some(last) = self.pending.last() else {
            return Ok(Step::Done);
        };
        let (seq, version) = (last.seq, last.batch.version);
        let server = self.server()?;
        if let Err(err) = server.sync(seq) {
            self.base
                .trace
                .record(format!("sync through @{version} failed: {err}"));
            return Ok(Step::Failed(format!("sync: {err}")));
        }
        for submitted in self.pending.drain(..) {
            server.publish(submitted.batch);
        }
        self.acked = version;
        self.base
            .trace
            .record(format!("synced and published through @{version}"));
        Ok(Step::Done)
    }

    fn commit(&mut self) -> Result<Step, String> {
        match self.append()? {
            Step::Done => self.sync_pending(),
            failed => Ok(failed),
        }
    }

    /// A coordinator of an older generation tries to append: it must be fenced off.
    fn stale_append(&mut self) -> Result<Step, String> {
        if self.locked == 0 {
            return Ok(Step::Done);
        }
        let stale = self.base.rng.random_range(0..self.locked);
        let prev = self.appended.max(self.start);
        let payload = record::encode(Version(prev.get() + 1), prev, &[])
            .map_err(|err| format!("encoding a record: {err}"))?;
        match self.server()?.append(stale, &payload) {
            Err(Error::Fenced(_)) => {
                self.base
                    .trace
                    .record(format!("append of generation {stale} fenced"));
                Ok(Step::Done)
            }
            Ok(_) => Err(format!(
                "an append of generation {stale} was taken after generation {} locked the log",
                self.locked
            )),
            Err(err) => {
                self.base
                    .trace
                    .record(format!("stale append failed: {err}"));
                Ok(Step::Failed(format!("stale append: {err}")))
            }
        }
    }

    /// A recovery locks the log at the next generation, which then appends.
    fn lock_new_generation(&mut self) -> Result<Step, String> {
        // The old generation's syncer publishes what it appended once it is durable (the
        // lock waits for that); here, that stream finishes first.
        if let Step::Failed(what) = self.sync_pending()? {
            return Ok(Step::Failed(what));
        }
        let epoch = self.locked + 1;
        let server = self.server()?;
        match self.runtime.block_on(server.lock(epoch)) {
            Ok(state) => {
                self.base.trace.record(format!(
                    "lock at generation {epoch}: durable through @{}",
                    state.durable_version
                ));
                if state.durable_version < self.acked {
                    return Err(format!(
                        "the lock says the log ends at {}, but {} was acknowledged",
                        state.durable_version, self.acked
                    ));
                }
                // Unpublished appends of the old generation are now either durable (and in
                // the answer) or lost with it: the new generation starts after the answer.
                self.pending.clear();
                self.batches.retain(|(v, _)| *v <= state.durable_version);
                self.acked = state.durable_version.max(self.acked);
                self.appended = state.durable_version;
                self.locked = epoch;
                self.epoch = epoch;
                Ok(Step::Done)
            }
            Err(err) => {
                self.base
                    .trace
                    .record(format!("lock at generation {epoch} failed: {err}"));
                Ok(Step::Failed(format!("lock: {err}")))
            }
        }
    }

    /// The current generation recruits the log from scratch: it starts after `start`.
    fn reset(&mut self) -> Result<Step, String> {
        if self.locked == 0 || !self.pending.is_empty() {
            return Ok(Step::Done);
        }
        let start =
            Version(self.appended.max(self.start).get() + self.base.rng.random_range(1..100));
        self.reset_in_flight = Some(start);
        match self.server()?.reset(self.epoch, start) {
            Ok(()) => {
                self.base
                    .trace
                    .record(format!("reset to start after @{start}"));
                self.reset_done(start);
                Ok(Step::Done)
            }
            Err(err) => {
                self.base.trace.record(format!("reset failed: {err}"));
                Ok(Step::Failed(format!("reset: {err}")))
            }
        }
    }

    fn reset_done(&mut self, start: Version) {
        self.reset_in_flight = None;
        self.batches.clear();
        self.start = start;
        self.acked = start;
        self.appended = start;
        self.truncated = start;
    }

    fn truncate(&mut self) -> Result<Step, String> {
        let low = self.start.get();
        let through = Version(self.base.rng.random_range(low..=self.acked.get().max(low)));
        self.truncated = self.truncated.max(through);
        match self.server()?.truncate(through) {
            Ok(()) => {
                self.base
                    .trace
                    .record(format!("truncate through @{through}"));
                Ok(Step::Done)
            }
            Err(err) => {
                self.base
                    .trace
                    .record(format!("truncate through @{through} failed: {err}"));
                Ok(Step::Failed(format!("truncate: {err}")))
            }
        }
    }

    fn recover_from(&mut self, what: &str) -> Result<(), String> {
        self.server = None;
        match harness::blame(&self.base.disk, &self.base.seen) {
            Blame::Nothing => Err(format!("{what} (no fault was injected)")),
            Blame::FullDisk => {
                self.base
                    .trace
                    .record("disk full: space freed, process restarted");
                self.base.set_faults(|f| f.capacity_bytes = None);
                self.restart(false)
            }
            Blame::Fatal => {
                self.base.trace.record("power cycle");
                self.restart(true)
            }
        }
    }

    fn restart(&mut self, power_cycle: bool) -> Result<(), String> {
        self.server = None;
        self.base.restarts += 1;
        if power_cycle || self.base.disk.is_powered_off() {
            self.base.disk.cut_power();
        }
        self.base.disk.reboot();
        self.open_checked()
    }

    /// Opens the log server (through injected faults) and checks its fence and records.
    fn open_checked(&mut self) -> Result<(), String> {
        let (fs, dir, options) = (SharedFs::clone(&self.fs), self.dir.clone(), self.options);
        let server = harness::open_through_faults(
            &self.base.disk,
            &mut self.base.faults,
            &mut self.base.trace,
            || LogServer::open_on(SharedFs::clone(&fs), &dir, "log-sim".into(), options),
        )?;
        let fenced_at = server.locked_epoch();
        if fenced_at < self.locked {
            return Err(format!(
                "the log server is fenced at generation {fenced_at} after a restart, but \
                 generation {} locked it",
                self.locked
            ));
        }
        // A lock that did not answer may have stored its fence: that generation is then the
        // one whose coordinator is gone, and the next recovery locks above it.
        self.locked = fenced_at;
        self.epoch = fenced_at;
        // Where the log ends: a lock at its own generation changes no fence.
        let state = self
            .runtime
            .block_on(server.lock(fenced_at))
            .map_err(|err| format!("locking the reopened log at its generation: {err}"))?;
        let (last, retained) = (state.durable_version, state.retained_from);
        self.base.trace.record(format!(
            "reopened at generation {fenced_at}: through @{last} from @{retained} \
             (acknowledged {}, appended {})",
            self.acked, self.appended
        ));
        // A reset that did not answer either happened (the log is empty, after its start),
        // or was cut short: its segment removals, oldest first, left a suffix of the old
        // records (checked below), which may start after any truncation point.
        let mut reset_cut_short = false;
        if let Some(start) = self.reset_in_flight.take() {
            if last == start && retained == start {
                self.reset_done(start);
            } else {
                reset_cut_short = true;
            }
        }
        if reset_cut_short {
            // What the cut-short reset removed is gone for good, like a truncation.
            self.truncated = self.truncated.max(retained);
        }
        if last < self.acked {
            return Err(format!(
                "acknowledged version {} lost: the log recovered only through {last}",
                self.acked
            ));
        }
        if last > self.appended.max(self.start) {
            return Err(format!(
                "recovered version {last} was never appended (last {})",
                self.appended
            ));
        }
        if retained > self.truncated.max(self.start) && !reset_cut_short {
            return Err(format!(
                "the log starts after {retained}, but truncation was only asked through {}",
                self.truncated
            ));
        }
        self.batches.retain(|(v, _)| *v <= last);
        self.pending.clear();
        let records = server
            .read_records(fenced_at, retained, last, u64::MAX)
            .map_err(|err| format!("reading the recovered log: {err}"))?;
        let want: Vec<&(Version, Vec<Mutation>)> =
            self.batches.iter().filter(|(v, _)| *v > retained).collect();
        if records.len() != want.len() {
            return Err(format!(
                "the recovered log holds {} batches after {retained}, {} were written",
                records.len(),
                want.len()
            ));
        }
        let mut prev = retained;
        for (payload, (version, mutations)) in records.iter().zip(&want) {
            let rec = record::decode(payload).map_err(|e| format!("undecodable record: {e}"))?;
            if rec.version != *version || rec.prev_version != prev || rec.mutations != *mutations {
                return Err(format!(
                    "the recovered log has record {} after {} where {version} after {prev} was \
                     written",
                    rec.version, rec.prev_version
                ));
            }
            prev = rec.version;
        }
        self.acked = last;
        self.appended = last;
        self.server = Some(server);
        self.base.seen = self.base.disk.stats();
        Ok(())
    }

    fn finish(&mut self) -> Result<(), String> {
        self.base.set_faults(|f| *f = Faults::default());
        self.base.trace.record("final power cycle");
        self.restart(true)?;
        let stats = self.base.disk.stats();
        self.base.trace.record(format!("disk {stats:?}"));
        Ok(())
    }
}
