//! One seed of the commit-log simulation: the real [`CommitLog`] (the log a coordinator and
//! every log server keep: one WAL record per commit batch, chained by `prev_version`) on a
//! [`SimDisk`](crate::disk::SimDisk), driven by a seeded workload of commits (submit, sync, publish — the
//! coordinator's order), batches submitted and synced later together, recovery reads
//! (`read_records`), truncations, kills, power cuts at any disk call, failed fsyncs and a full
//! disk, checked against a model after every read and every restart.
//!
//! What is checked:
//! - a read returns exactly the published batches asked for, chained from the version asked
//!   after;
//! - after a restart the log's last version is at least the last acknowledged (synced and
//!   published) one and at most the last submitted one, and it holds every version from its
//!   `retained_from` on, with the mutations submitted, in a chain: nothing acknowledged is
//!   lost, no batch is half there, nothing lost comes back;
//! - the log never starts after the newest truncation point asked for (a truncation removes
//!   only what the caller allowed);
//! - a call fails only when a fault was injected, and opening after a crash never reports
//!   corruption.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use ferrisdb_core::{Mutation, Version};
use ferrisdb_server::log::{CommitLog, LogOptions, Submitted, record};
use ferrisdb_storage::vfs::SharedFs;
use ferrisdb_storage::wal::SyncPolicy;
use rand::Rng;

use crate::SeedRun;
use crate::disk::Faults;
use crate::harness::{self, Blame, SeedDriver, SimBase};

/// Where the log keeps its segments on the simulated disk.
const LOG_DIR: &str = "/data/log";

/// Runs one seed to the end (or to its first failure).
pub fn run_commit_log_seed(seed: u64) -> SeedRun {
    harness::run_seed(seed, "commit-log", &mut Sim::new(seed))
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
        self.log = None;
        self.killed.clear();
    }
}

/// What one step's log call did.
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
    log: Option<CommitLog>,
    /// Logs "killed -9": kept, not dropped, so no destructor of theirs touches the disk.
    killed: Vec<CommitLog>,
    /// Every batch submitted and not lost, in version order.
    batches: Vec<(Version, Vec<Mutation>)>,
    /// Submitted, not yet synced and published (a prefix-closed suffix of `batches`).
    pending: Vec<Submitted>,
    /// Highest version synced and published.
    acked: Version,
    /// Highest version handed to `submit`.
    submitted: Version,
    /// Highest truncation point asked for.
    truncated: Version,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut base = SimBase::new(seed);
        let options = LogOptions {
            segment_bytes: base.rng.random_range(256..4096),
            sync: SyncPolicy::Always,
        };
        base.trace.record(format!("options {options:?}"));
        Sim {
            fs: Arc::new(base.disk.clone()),
            base,
            dir: PathBuf::from(LOG_DIR),
            options,
            log: None,
            killed: Vec::new(),
            batches: Vec::new(),
            pending: Vec::new(),
            acked: Version::ZERO,
            submitted: Version::ZERO,
            truncated: Version::ZERO,
        }
    }

    fn step(&mut self) -> Result<(), String> {
        if self.log.is_none() {
            self.open_checked()?;
        }
        self.base.seen = self.base.disk.stats();
        match self.act()? {
            Step::Done => Ok(()),
            Step::Failed(what) => self.recover_from(&what),
        }
    }

    fn log(&self) -> Result<&CommitLog, String> {
        self.log.as_ref().ok_or_else(|| "no open log".to_owned())
    }

    fn act(&mut self) -> Result<Step, String> {
        match self.base.rng.random_range(0..100) {
            0..=44 => self.commit(),
            45..=59 if self.pending.len() < 6 => self
                .submit()
                .map(|r| r.map_or_else(Step::Failed, |_| Step::Done)),
            45..=66 => self.sync_pending(),
            67..=74 => self.read(),
            75..=80 => self.truncate(),
            81..=84 => {
                // kill -9 runs no destructors; the kernel releases the lock.
                self.base.trace.record("kill -9");
                if let Some(log) = self.log.take() {
                    self.killed.push(log);
                }
                self.base.disk.release_locks();
                self.restart(false).map(|()| Step::Done)
            }
            85..=87 => {
                // The log's destructor syncs what was submitted; a failed fsync there is as
                // fatal as anywhere (the machine is power-cycled: see `recover_from`).
                self.base.trace.record("process exits");
                self.log = None;
                let failed = self.base.disk.stats().failed_fsyncs > self.base.seen.failed_fsyncs;
                self.restart(failed).map(|()| Step::Done)
            }
            88..=93 => {
                let after = self.base.rng.random_range(0..40);
                self.base
                    .trace
                    .record(format!("power cut in {after} disk calls"));
                self.base.disk.cut_power_after(after);
                Ok(Step::Done)
            }
            94..=96 => {
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
        (0..self.base.rng.random_range(1..=4))
            .map(|_| {
                let key = Bytes::from(format!("key{:02}", self.base.rng.random_range(0..30)));
                if self.base.rng.random_bool(0.8) {
                    let len = self.base.rng.random_range(0..300);
                    let value: Vec<u8> = (0..len).map(|_| self.base.rng.random()).collect();
                    Mutation::Set {
                        key,
                        value: Bytes::from(value),
                    }
                } else {
                    Mutation::Clear { key }
                }
            })
            .collect()
    }

    /// Submits one batch at a new version; `Err(what)` (inside `Ok`) if the log refused.
    fn submit(&mut self) -> Result<Result<(), String>, String> {
        let version = Version(self.submitted.get() + self.base.rng.random_range(1..5));
        let mutations = self.mutations();
        self.batches.push((version, mutations.clone()));
        self.submitted = version;
        match self.log()?.submit(version, mutations) {
            Ok(submitted) => {
                self.base.trace.record(format!("submit @{version}"));
                self.pending.push(submitted);
                Ok(Ok(()))
            }
            Err(err) => {
                self.base
                    .trace
                    .record(format!("submit @{version} failed: {err}"));
                Ok(Err(format!("submit @{version}: {err}")))
            }
        }
    }

    /// Syncs every pending batch, then publishes them in order: they are acknowledged.
    fn sync_pending(&mut self) -> Result<Step, String> {
        let Some(last) = self.pending.last() else {
            return Ok(Step::Done);
        };
        let (seq, version) = (last.seq, last.batch.version);
        if let Err(err) = self.log()?.sync(seq) {
            self.base
                .trace
                .record(format!("sync through @{version} failed: {err}"));
            return Ok(Step::Failed(format!("sync: {err}")));
        }
        let log = self.log.as_ref().ok_or("no open log")?;
        for submitted in self.pending.drain(..) {
            log.publish(submitted.batch);
        }
        self.acked = version;
        self.base
            .trace
            .record(format!("synced and published through @{version}"));
        Ok(Step::Done)
    }

    /// The coordinator's order: submit, sync, publish.
    fn commit(&mut self) -> Result<Step, String> {
        if let Err(what) = self.submit()? {
            return Ok(Step::Failed(what));
        }
        self.sync_pending()
    }

    /// A recovery read of published batches, checked against the model.
    fn read(&mut self) -> Result<Step, String> {
        let retained = self.log()?.retained_from();
        let published: Vec<Version> = self
            .batches
            .iter()
            .map(|(v, _)| *v)
            .filter(|v| *v > retained && *v <= self.acked)
            .collect();
        let mut afters = vec![retained];
        afters.extend(published.iter().copied());
        let after = afters[self.base.rng.random_range(0..afters.len())];
        let through = self.acked;
        let max_bytes = self.base.rng.random_range(1..4096);
        let records = match self.log()?.read_records(after, through, max_bytes) {
            Ok(records) => records,
            Err(err) => {
                self.base
                    .trace
                    .record(format!("read after @{after} failed: {err}"));
                return Ok(Step::Failed(format!("read_records: {err}")));
            }
        };
        self.base.trace.record(format!(
            "read after @{after} through @{through} -> {} records",
            records.len()
        ));
        let want: Vec<&(Version, Vec<Mutation>)> = self
            .batches
            .iter()
            .filter(|(v, _)| *v > after && *v <= through)
            .collect();
        if records.len() > want.len() || (records.is_empty() && !want.is_empty()) {
            return Err(format!(
                "read after {after} through {through} gave {} records, {} are published",
                records.len(),
                want.len()
            ));
        }
        check_chain(&records, after, &want)
            .map_err(|reason| format!("read after {after} through {through}: {reason}"))?;
        Ok(Step::Done)
    }

    /// Truncates through a version the caller may drop: at most the acknowledged one.
    fn truncate(&mut self) -> Result<Step, String> {
        let through = Version(self.base.rng.random_range(0..=self.acked.get()));
        match self.log()?.truncate_through(through) {
            Ok(()) => {
                self.truncated = self.truncated.max(through);
                self.base
                    .trace
                    .record(format!("truncate through @{through}"));
                Ok(Step::Done)
            }
            Err(err) => {
                // Segments may be gone or not: the point is allowed either way.
                self.truncated = self.truncated.max(through);
                self.base
                    .trace
                    .record(format!("truncate through @{through} failed: {err}"));
                Ok(Step::Failed(format!("truncate_through: {err}")))
            }
        }
    }

    /// After a failed call: a fatal failure power-cycles the machine, a full disk is freed
    /// and the process restarted.
    fn recover_from(&mut self, what: &str) -> Result<(), String> {
        self.log = None; // Dropping the log may write (and fail) once more.
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

    /// Opens the log again (after a power cut if `power_cycle`), then checks it.
    fn restart(&mut self, power_cycle: bool) -> Result<(), String> {
        self.log = None;
        self.base.restarts += 1;
        if power_cycle || self.base.disk.is_powered_off() {
            self.base.disk.cut_power();
        }
        self.base.disk.reboot();
        self.open_checked()
    }

    /// Opens the log (retrying through injected faults) and checks what it recovered.
    fn open_checked(&mut self) -> Result<(), String> {
        let (fs, dir, options) = (SharedFs::clone(&self.fs), self.dir.clone(), self.options);
        let (log, recovered) = harness::open_through_faults(
            &self.base.disk,
            &mut self.base.faults,
            &mut self.base.trace,
            || CommitLog::open_on(&fs, &dir, options, Version::ZERO),
        )?;
        let last = recovered.last_version;
        let retained = recovered.retained_from;
        self.base.trace.record(format!(
            "recovered through @{last} from @{retained} (acknowledged {}, submitted {})",
            self.acked, self.submitted
        ));
        if last < self.acked {
            return Err(format!(
                "acknowledged version {} lost: the log recovered only through {last}",
                self.acked
            ));
        }
        if last > self.submitted {
            return Err(format!(
                "recovered version {last} was never submitted (last {})",
                self.submitted
            ));
        }
        if retained > self.truncated {
            return Err(format!(
                "the log starts after {retained}, but truncation was only asked through {}",
                self.truncated
            ));
        }
        self.batches.retain(|(v, _)| *v <= last);
        self.pending.clear();
        let records = log
            .read_records(retained, last, u64::MAX)
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
        check_chain(&records, retained, &want)
            .map_err(|reason| format!("the recovered log: {reason}"))?;
        self.acked = last;
        self.submitted = last;
        self.log = Some(log);
        self.base.seen = self.base.disk.stats();
        Ok(())
    }

    /// The end of a run: faults off, a final power cycle, checks.
    fn finish(&mut self) -> Result<(), String> {
        self.base.set_faults(|f| *f = Faults::default());
        self.base.trace.record("final power cycle");
        self.restart(true)?;
        self.base
            .trace
            .record(format!("disk {:?}", self.base.disk.stats()));
        Ok(())
    }
}

/// Checks that `records` are the first `records.len()` of `want`, chained from `after`.
fn check_chain(
    records: &[Vec<u8>],
    after: Version,
    want: &[&(Version, Vec<Mutation>)],
) -> Result<(), String> {
    let mut prev = after;
    for (payload, (version, mutations)) in records.iter().zip(want) {
        let rec = record::decode(payload).map_err(|e| format!("undecodable record: {e}"))?;
        if rec.version != *version || rec.prev_version != prev {
            return Err(format!(
                "record {} after {} where {version} after {prev} was expected",
                rec.version, rec.prev_version
            ));
        }
        if rec.mutations != *mutations {
            return Err(format!(
                "record {version} holds other mutations than submitted"
            ));
        }
        prev = rec.version;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::SimDisk;

    /// Found by seed 3033: truncating through the newest durable batch while a newer one
    /// was submitted but not yet synced deleted the durable batch's segment; a crash then
    /// lost the unsynced one, and the log reopened empty, at version 0.
    #[test]
    fn a_truncation_keeps_the_segment_of_the_newest_durable_batch() {
        let disk = SimDisk::new(1);
        let fs: SharedFs = Arc::new(disk.clone());
        let dir = PathBuf::from(LOG_DIR);
        let options = LogOptions {
            segment_bytes: 64,
            sync: SyncPolicy::Always,
        };
        let (log, _) = CommitLog::open_on(&fs, &dir, options, Version::ZERO).unwrap();
        let set = |k: &str| {
            vec![Mutation::Set {
                key: Bytes::from(k.to_owned()),
                value: Bytes::from_static(b"v"),
            }]
        };
        let durable = log.submit(Version(2), set("a")).unwrap();
        log.sync(durable.seq).unwrap();
        log.publish(durable.batch);
        // A restart: new records go to a new segment.
        drop(log);
        let (log, _) = CommitLog::open_on(&fs, &dir, options, Version::ZERO).unwrap();
        let _in_flight = log.submit(Version(3), set("b")).unwrap();
        log.truncate_through(Version(2)).unwrap();
        // A crash: the process dies (no destructor runs), then the power goes.
        std::mem::forget(log);
        disk.release_locks();
        disk.cut_power();
        disk.reboot();
        let (_log, recovered) = CommitLog::open_on(&fs, &dir, options, Version::ZERO).unwrap();
        assert!(
            recovered.last_version >= Version(2),
            "the log forgot version 2: {recovered:?}"
        );
    }
}
