//! One seed of the log-server simulation: the real [`LogServer`] (a replica of the commit log
//! for one generation, with the fence that recovery generations rely on) on a
//! [`SimDisk`](crate::disk::SimDisk), driven by a seeded workload: appends by the current
//! generation's coordinator (append, sync, publish), appends by a generation that was locked
//! out, recovery locks at a new generation, resets of the log for a new generation,
//! truncations, kills, power cuts at any disk call, failed fsyncs and a full disk.
//!
//! What is checked:
//! - a recovery read returns exactly the published batches asked for, chained from the
//!   version asked after;
//! - after a restart the log ends at or after the last acknowledged (synced and published)
//!   version and at most at the last appended one, and holds every version from its start
//!   on, with the mutations appended, in a chain; it never starts after the newest
//!   truncation point asked for (unless a reset was cut short);
//! - once a lock at generation `g` has answered, the log server refuses every append of a
//!   generation below `g` — before and after any number of restarts (the fence is durable
//!   before the answer);
//! - a lock's answer says the log ends at or after every acknowledged version;
//! - after a reset to `s` has answered, the log starts after `s` across restarts;
//! - a call fails only when a fault was injected (or, for a stale generation, with
//!   `Fenced`), and opening after a crash never reports corruption.

use std::path::PathBuf;
use std::sync::Arc;

use ferrisdb_core::{Error, Version};
use ferrisdb_server::log::server::LogServer;
use ferrisdb_server::log::{LogOptions, Submitted, record};
use ferrisdb_storage::vfs::SharedFs;
use ferrisdb_storage::wal::SyncPolicy;
use rand::Rng;

use crate::SeedRun;
use crate::harness::{self, SeedDriver, SimBase};
use crate::log_model::{LogModel, check_chain, random_mutations};

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
        if self.server.is_none() {
            self.reopen()?;
        }
        self.base.seen = self.base.disk.stats();
        match self.act()? {
            Step::Done => Ok(()),
            Step::Failed(what) => harness::recover_from(self, &what),
        }
    }

    fn finish(&mut self) -> Result<(), String> {
        harness::final_power_cycle(self)
    }

    fn shut_down(&mut self) {
        self.server = None;
        self.killed.clear();
    }

    fn drop_handle(&mut self) {
        self.server = None;
    }

    /// Opens the log server and checks its fence and records.
    fn reopen(&mut self) -> Result<(), String> {
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
        // A lock that did not answer may have stored its fence: that generation's
        // coordinator is gone, and the next recovery locks above it.
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
            self.model.acked, self.model.written
        ));
        // A reset that did not answer either happened (the log is empty, after its start)
        // or was cut short: its segment removals, oldest first, left a suffix of the old
        // records, which may start after any truncation point.
        let mut reset_cut_short = false;
        if let Some(start) = self.reset_in_flight.take() {
            if last == start && retained == start {
                self.reset_done(start);
            } else {
                reset_cut_short = true;
            }
        }
        let records = server
            .read_records(fenced_at, retained, last, u64::MAX)
            .map_err(|err| format!("reading the recovered log: {err}"))?;
        self.model
            .check_recovered(last, retained, &records, reset_cut_short)?;
        self.pending.clear();
        self.server = Some(server);
        self.base.seen = self.base.disk.stats();
        Ok(())
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
    /// The records since the last reset.
    model: LogModel,
    /// Appended, not yet synced and published.
    pending: Vec<Submitted>,
    /// Where the log starts after the last reset that answered (0: never reset).
    start: Version,
    /// A reset that was asked for and has not answered: its start.
    reset_in_flight: Option<Version>,
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
            model: LogModel::default(),
            pending: Vec::new(),
            start: Version::ZERO,
            reset_in_flight: None,
            epoch: 0,
            locked: 0,
        }
    }

    fn server(&self) -> Result<Arc<LogServer>, String> {
        self.server
            .clone()
            .ok_or_else(|| "no open log server".to_owned())
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
            76..=80 => self.read(),
            81..=82 => {
                // The log's destructor syncs what was appended; a failed fsync there is as
                // fatal as anywhere.
                self.base.trace.record("process exits");
                self.server = None;
                let failed = self.base.disk.stats().failed_fsyncs > self.base.seen.failed_fsyncs;
                harness::restart(self, failed).map(|()| Step::Done)
            }
            83..=86 => {
                self.base.trace.record("kill -9");
                if let Some(server) = self.server.take() {
                    self.killed.push(server);
                }
                self.base.disk.process_died();
                harness::restart(self, false).map(|()| Step::Done)
            }
            _ => {
                self.base.inject_fault();
                Ok(Step::Done)
            }
        }
    }

    /// The current generation appends one batch (not yet synced).
    fn append(&mut self) -> Result<Step, String> {
        let prev = self.model.written;
        let version = Version(prev.get() + self.base.rng.random_range(1..5));
        let mutations = random_mutations(&mut self.base.rng);
        let payload = record::encode(version, prev, &mutations)
            .map_err(|err| format!("encoding a record: {err}"))?;
        self.model.write(version, mutations);
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
        self.model.acked = version;
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
        let prev = self.model.written;
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
                let durable = state.durable_version;
                self.base.trace.record(format!(
                    "lock at generation {epoch}: durable through @{durable}"
                ));
                if durable < self.model.acked {
                    return Err(format!(
                        "the lock says the log ends at {durable}, but {} was acknowledged",
                        self.model.acked
                    ));
                }
                self.model.batches.retain(|(v, _)| *v <= durable);
                self.model.acked = durable;
                self.model.written = durable;
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
        let start = Version(self.model.written.get() + self.base.rng.random_range(1..100));
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
        self.start = start;
        self.model = LogModel {
            batches: Vec::new(),
            acked: start,
            written: start,
            truncated: start,
        };
    }

    /// A recovery read of published batches, checked against the model.
    fn read(&mut self) -> Result<Step, String> {
        let retained = self.server()?.state().retained_from;
        let through = self.model.acked;
        let mut afters = vec![retained];
        afters.extend(
            self.model
                .between(retained, through)
                .iter()
                .map(|(v, _)| *v),
        );
        let after = afters[self.base.rng.random_range(0..afters.len())];
        let max_bytes = self.base.rng.random_range(1..4096);
        let read = self
            .server()?
            .read_records(self.epoch, after, through, max_bytes);
        let records = match read {
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
        let want = self.model.between(after, through);
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

    fn truncate(&mut self) -> Result<Step, String> {
        let low = self.start.get();
        let through = Version(
            self.base
                .rng
                .random_range(low..=self.model.acked.get().max(low)),
        );
        self.model.truncated = self.model.truncated.max(through);
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
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use ferrisdb_core::Mutation;

    use super::*;
    use crate::disk::SimDisk;
    use ferrisdb_server::log::CommitLog;

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
        disk.process_died();
        disk.cut_power();
        disk.reboot();
        let (_log, recovered) = CommitLog::open_on(&fs, &dir, options, Version::ZERO).unwrap();
        assert!(
            recovered.last_version >= Version(2),
            "the log forgot version 2: {recovered:?}"
        );
    }
}
