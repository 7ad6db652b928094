//! One seed of the storage-engine simulation: the real [`Engine`] on a [`SimDisk`], driven
//! by a seeded random workload of batches (puts, deletes, range deletes; synced or not),
//! syncs, reads at the latest and older versions, scans, flushes, compactions, GC-horizon
//! moves, clean restarts, process kills, power cuts at any file-system call, failed fsyncs
//! and a full disk — checked against a model (`BTreeMap` per version) after every read and
//! every restart.
//!
//! What is checked:
//! - every read and scan equals the model at its read version;
//! - after a restart the engine's recovered version `V` is at least the last acknowledged
//!   (synced) version and at most the last one attempted, and its data at `V` (and at older
//!   versions down to the GC horizon) equals the model's — nothing acknowledged is lost, no
//!   batch is half applied, nothing unacknowledged that was lost comes back;
//! - reads below the GC horizon fail instead of answering with partly collected data;
//! - opening after a crash never reports corruption: the disk model only loses what a real
//!   disk may lose.
//!
//! The engine runs without background threads (flushes and compactions are steps of the
//! workload), so one seed always makes the same calls in the same order.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use ferrisdb_storage::engine::{Engine, EngineOptions, ScanOptions, WriteBatch};
use ferrisdb_storage::sstable::{Compression, TableOptions};
use ferrisdb_storage::wal::SyncPolicy;
use rand::Rng;
use rand::rngs::StdRng;

use crate::SeedRun;
use crate::disk::SimDisk;
use crate::harness::{self, SeedDriver, SimBase};

/// Where the engine keeps its files on the simulated disk.
const ENGINE_DIR: &str = "/data/engine";
/// Distinct keys the workload writes.
const KEYS: u32 = 48;

/// One op of a batch, as the model applies it.
#[derive(Debug, Clone)]
enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    DeleteRange(Vec<u8>, Vec<u8>),
}

/// Every batch applied, by version; the state at any version is a replay.
#[derive(Debug, Default)]
struct Model {
    batches: BTreeMap<u64, Vec<Op>>,
}

impl Model {
    fn state_at(&self, version: u64) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let mut state = BTreeMap::new();
        for ops in self.batches.range(..=version).map(|(_, ops)| ops) {
            for op in ops {
                match op {
                    Op::Put(k, v) => {
                        state.insert(k.clone(), v.clone());
                    }
                    Op::Delete(k) => {
                        state.remove(k);
                    }
                    Op::DeleteRange(begin, end) => {
                        let doomed: Vec<Vec<u8>> = state
                            .range(begin.clone()..end.clone())
                            .map(|(k, _)| k.clone())
                            .collect();
                        for k in doomed {
                            state.remove(&k);
                        }
                    }
                }
            }
        }
        state
    }

    /// Forgets batches after `version` (lost in a crash before they were acknowledged).
    fn forget_after(&mut self, version: u64) {
        self.batches.split_off(&(version + 1));
    }
}

/// Runs one seed to the end (or to its first failure).
pub fn run_engine_seed(seed: u64) -> SeedRun {
    harness::run_seed(seed, "engine", &mut Sim::new(seed))
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
        self.engine = None;
        self.killed.clear();
    }

    fn drop_handle(&mut self) {
        self.engine = None;
    }

    fn reopen(&mut self) -> Result<(), String> {
        self.reopen_checked()
    }
}

struct Sim {
    base: SimBase,
    dir: PathBuf,
    options: EngineOptions,
    engine: Option<Arc<Engine>>,
    model: Model,
    /// Highest version whose `apply` or `sync` returned success.
    acked: u64,
    /// Highest version handed to the engine.
    attempted: u64,
    /// Highest GC horizon set.
    horizon: u64,
    /// Engines "killed -9": kept, not dropped, so no destructor of theirs touches the disk
    /// while the run goes on.
    killed: Vec<Arc<Engine>>,
}

/// What one step's engine call did.
enum Step {
    Done,
    /// The call failed (expected only when a fault was injected); the process restarts.
    Failed(String),
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut base = SimBase::new(seed);
        let options = engine_options(&mut base.rng);
        let mut sim = Sim {
            base,
            dir: PathBuf::from(ENGINE_DIR),
            options,
            engine: None,
            model: Model::default(),
            acked: 0,
            attempted: 0,
            horizon: 0,
            killed: Vec::new(),
        };
        sim.base.trace.record(format!("options {:?}", sim.options));
        sim
    }

    fn engine(&mut self) -> Result<Arc<Engine>, String> {
        if let Some(engine) = &self.engine {
            return Ok(Arc::clone(engine));
        }
        let engine = open(&self.base.disk, &self.dir, self.options)
            .map_err(|err| format!("opening the engine: {err}"))?;
        self.engine = Some(Arc::clone(&engine));
        Ok(engine)
    }

    fn step(&mut self) -> Result<(), String> {
        let engine = self.engine()?;
        self.base.seen = self.base.disk.stats();
        // `act` takes the handle, so it is gone before a failure restarts the engine.
        match self.act(engine)? {
            Step::Done => Ok(()),
            Step::Failed(what) => harness::recover_from(self, &what),
        }
    }

    /// Takes one random step with `engine`.
    fn act(&mut self, engine: Arc<Engine>) -> Result<Step, String> {
        let roll = self.base.rng.random_range(0..100);
        match roll {
            0..=39 => self.write(&engine, true),
            40..=51 => self.write(&engine, false),
            52..=55 => self.sync(&engine),
            56..=69 => self.read(&engine),
            70..=77 => self.scan(&engine),
            78..=82 => self.call(&engine, "flush", |e| e.flush()),
            83..=85 => self.call(&engine, "compact", |e| e.compact()),
            86..=87 => {
                // Like a storage server, only ever up to what is durable.
                let horizon = self
                    .base
                    .rng
                    .random_range(self.horizon.min(self.acked)..=self.acked);
                self.horizon = self.horizon.max(horizon);
                engine.set_gc_horizon(horizon);
                self.base.trace.record(format!("gc horizon {horizon}"));
                Ok(Step::Done)
            }
            88..=89 => {
                self.base.trace.record("close and reopen");
                let closed = engine.close();
                drop(engine);
                self.engine = None;
                match closed {
                    Ok(()) => harness::restart(self, false).map(|()| Step::Done),
                    Err(err) => Ok(Step::Failed(format!("close: {err}"))),
                }
            }
            90..=91 => {
                // kill -9 runs no destructors: the process's memory is simply gone (the
                // handle is parked until the run ends), and the kernel releases its locks.
                self.base.trace.record("kill -9");
                self.engine = None;
                self.killed.push(engine);
                self.base.disk.process_died();
                harness::restart(self, false).map(|()| Step::Done)
            }
            _ => {
                self.base.inject_fault();
                Ok(Step::Done)
            }
        }
    }
}

impl Sim {
    /// Runs an engine call; an error becomes [`Step::Failed`].
    fn call(
        &mut self,
        engine: &Engine,
        name: &str,
        f: impl FnOnce(&Engine) -> ferrisdb_core::Result<()>,
    ) -> Result<Step, String> {
        match f(engine) {
            Ok(()) => {
                self.base.trace.record(format!("{name} ok"));
                Ok(Step::Done)
            }
            Err(err) => {
                self.base.trace.record(format!("{name} failed: {err}"));
                Ok(Step::Failed(format!("{name}: {err}")))
            }
        }
    }

    fn write(&mut self, engine: &Engine, synced: bool) -> Result<Step, String> {
        let version = self.attempted + 1;
        let applied = engine.last_applied_version();
        if applied != self.attempted {
            return Err(format!(
                "the engine's last applied version is {applied}, the workload's {}",
                self.attempted
            ));
        }
        let mut batch = WriteBatch::new();
        let mut ops = Vec::new();
        let mut summary = String::new();
        for _ in 0..self.base.rng.random_range(1..=6) {
            let roll = self.base.rng.random_range(0..100);
            let key = self.key();
            if roll < 70 {
                let len = if self.base.rng.random_bool(0.8) {
                    self.base.rng.random_range(0..100)
                } else {
                    self.base.rng.random_range(100..2000)
                };
                let mut value = format!("v{version}-").into_bytes();
                value.extend((0..len).map(|_| self.base.rng.random::<u8>()));
                summary.push_str(&format!(" put {} {}", show(&key), value.len()));
                batch.put(&key, &value);
                ops.push(Op::Put(key, value));
            } else if roll < 85 {
                summary.push_str(&format!(" del {}", show(&key)));
                batch.delete(&key);
                ops.push(Op::Delete(key));
            } else {
                let other = self.key();
                let (begin, end) = if key <= other {
                    (key, other)
                } else {
                    (other, key)
                };
                summary.push_str(&format!(" delrange {}..{}", show(&begin), show(&end)));
                batch.delete_range(&begin, &end);
                ops.push(Op::DeleteRange(begin, end));
            }
        }
        self.model.batches.insert(version, ops);
        self.attempted = version;
        let result = if synced {
            engine.apply(version, &batch)
        } else {
            engine.apply_unsynced(version, &batch)
        };
        let how = if synced { "apply" } else { "apply_unsynced" };
        match result {
            Ok(()) => {
                if synced {
                    self.acked = version;
                }
                self.base
                    .trace
                    .record(format!("{how} @{version}{summary} ok"));
                Ok(Step::Done)
            }
            Err(err) => {
                self.base
                    .trace
                    .record(format!("{how} @{version}{summary} failed: {err}"));
                Ok(Step::Failed(format!("{how} @{version}: {err}")))
            }
        }
    }

    fn sync(&mut self, engine: &Engine) -> Result<Step, String> {
        match engine.sync() {
            Ok(durable) => {
                self.base.trace.record(format!("sync -> {durable}"));
                if durable != self.attempted {
                    return Err(format!(
                        "sync reported version {durable} durable, {} was applied",
                        self.attempted
                    ));
                }
                self.acked = durable;
                Ok(Step::Done)
            }
            Err(err) => {
                self.base.trace.record(format!("sync failed: {err}"));
                Ok(Step::Failed(format!("sync: {err}")))
            }
        }
    }

    /// A read version: the latest, or one at or above the engine's GC horizon.
    fn read_version(&mut self, engine: &Engine) -> u64 {
        let latest = engine.last_applied_version();
        if self.base.rng.random_bool(0.7) {
            latest
        } else {
            self.base
                .rng
                .random_range(engine.gc_horizon().min(latest)..=latest)
        }
    }

    fn read(&mut self, engine: &Engine) -> Result<Step, String> {
        let key = self.key();
        let version = self.read_version(engine);
        let got = match engine.get(&key, version) {
            Ok(got) => got,
            Err(err) => {
                self.base
                    .trace
                    .record(format!("get {} @{version} failed: {err}", show(&key)));
                return Ok(Step::Failed(format!("get: {err}")));
            }
        };
        let want = self.model.state_at(version).get(&key).cloned();
        self.base.trace.record(format!(
            "get {} @{version} -> {:?}",
            show(&key),
            got.as_ref().map(|v| v.len())
        ));
        if got.as_deref() != want.as_deref() {
            return Err(format!(
                "get {} at version {version}: engine has {:?}, model has {:?}",
                show(&key),
                got.map(|v| describe(&v)),
                want.map(|v| describe(&v))
            ));
        }
        Ok(Step::Done)
    }

    fn scan(&mut self, engine: &Engine) -> Result<Step, String> {
        let (a, b) = (self.key(), self.key());
        let (begin, end) = if a <= b { (a, b) } else { (b, a) };
        let end = if self.base.rng.random_bool(0.2) {
            Vec::new()
        } else {
            end
        };
        let reverse = self.base.rng.random_bool(0.3);
        let limit = self.base.rng.random_range(0..12);
        let version = self.read_version(engine);
        let what = format!(
            "scan {}..{} @{version} reverse={reverse} limit={limit}",
            show(&begin),
            show(&end)
        );
        let got = match scan_all(engine, &begin, &end, version, reverse, limit) {
            Ok(got) => got,
            Err(err) => {
                self.base.trace.record(format!("{what} failed: {err}"));
                return Ok(Step::Failed(format!("scan: {err}")));
            }
        };
        let state = self.model.state_at(version);
        let in_range = state
            .iter()
            .filter(|(k, _)| **k >= begin && (end.is_empty() || **k < end))
            .map(|(k, v)| (k.clone(), v.clone()));
        let mut want: Vec<(Vec<u8>, Vec<u8>)> = if reverse {
            in_range.rev().collect()
        } else {
            in_range.collect()
        };
        if limit > 0 {
            want.truncate(limit);
        }
        self.base
            .trace
            .record(format!("{what} -> {} pairs", got.len()));
        if got != want {
            return Err(format!(
                "{what}: engine returned keys {:?}, model has {:?}",
                got.iter().map(|(k, _)| show(k)).collect::<Vec<_>>(),
                want.iter().map(|(k, _)| show(k)).collect::<Vec<_>>()
            ));
        }
        Ok(Step::Done)
    }

    /// Opens the engine (through injected faults), then checks what it recovered.
    fn reopen_checked(&mut self) -> Result<(), String> {
        let (disk, dir, options) = (self.base.disk.clone(), self.dir.clone(), self.options);
        let engine = harness::open_through_faults(
            &self.base.disk,
            &mut self.base.faults,
            &mut self.base.trace,
            || open(&disk, &dir, options),
        )?;
        self.engine = Some(Arc::clone(&engine));
        self.check_recovered(&engine)
    }

    fn check_recovered(&mut self, engine: &Engine) -> Result<(), String> {
        let recovered = engine.last_applied_version();
        self.base.trace.record(format!(
            "recovered @{recovered} (acknowledged {}, attempted {})",
            self.acked, self.attempted
        ));
        if recovered < self.acked {
            return Err(format!(
                "acknowledged version {} lost: the engine recovered only through {recovered}",
                self.acked
            ));
        }
        if recovered > self.attempted {
            return Err(format!(
                "recovered version {recovered} was never written (last attempted {})",
                self.attempted
            ));
        }
        self.model.forget_after(recovered);
        self.attempted = recovered;
        self.acked = recovered;
        let horizon = engine.gc_horizon();
        if horizon > self.horizon {
            return Err(format!(
                "GC horizon {horizon} after recovery, but only {} was ever set",
                self.horizon
            ));
        }
        let mut versions = vec![recovered];
        for _ in 0..2 {
            versions.push(
                self.base
                    .rng
                    .random_range(horizon.min(recovered)..=recovered),
            );
        }
        for version in versions {
            let got = scan_all(engine, b"", b"", version, false, 0)
                .map_err(|err| format!("full scan at {version} after recovery: {err}"))?;
            let want: Vec<(Vec<u8>, Vec<u8>)> = self.model.state_at(version).into_iter().collect();
            if got != want {
                return Err(format!(
                    "after recovery the data at version {version} differs: engine keys {:?}, \
                     model keys {:?}",
                    got.iter().map(|(k, _)| show(k)).collect::<Vec<_>>(),
                    want.iter().map(|(k, _)| show(k)).collect::<Vec<_>>()
                ));
            }
        }
        if horizon > 1 && engine.get(b"k000", horizon - 2).is_ok() {
            return Err(format!(
                "a read at {} (below the GC horizon {horizon}) answered",
                horizon - 2
            ));
        }
        self.base.seen = self.base.disk.stats();
        Ok(())
    }

    /// The end of a run: faults off, a final power cycle, a full compaction, checks.
    fn finish(&mut self) -> Result<(), String> {
        harness::final_power_cycle(self)?;
        let engine = self.engine()?;
        engine
            .flush()
            .and_then(|()| engine.compact())
            .map_err(|err| format!("final flush and compaction: {err}"))?;
        self.check_recovered(&engine)
    }

    fn key(&mut self) -> Vec<u8> {
        format!("k{:03}", self.base.rng.random_range(0..KEYS)).into_bytes()
    }
}

fn open(disk: &SimDisk, dir: &Path, options: EngineOptions) -> ferrisdb_core::Result<Arc<Engine>> {
    Engine::open_on(Arc::new(disk.clone()), dir, options)
}

fn scan_all(
    engine: &Engine,
    begin: &[u8],
    end: &[u8],
    read_version: u64,
    reverse: bool,
    limit: usize,
) -> ferrisdb_core::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    engine
        .scan(ScanOptions {
            begin: Bytes::copy_from_slice(begin),
            end: Bytes::copy_from_slice(end),
            read_version,
            reverse,
            limit,
        })?
        .map(|pair| pair.map(|(k, v)| (k.to_vec(), v.to_vec())))
        .collect()
}

/// Engine options drawn from the seed: tiny memtables, files and levels, so a few hundred
/// batches flush and compact through several levels.
fn engine_options(rng: &mut StdRng) -> EngineOptions {
    let compression = if rng.random_bool(0.5) {
        Compression::Lz4
    } else {
        Compression::None
    };
    let memtable_bytes = rng.random_range(2 * 1024..16 * 1024);
    // zstd at the bottom for half the seeds, picked without a draw of its own so that every
    // seed's schedule stays what it was.
    let bottommost_compression = (memtable_bytes % 2 == 0).then_some(Compression::Zstd);
    // Static or dynamic level sizing, the same way.
    let dynamic_level_bytes = memtable_bytes / 2 % 2 == 0;
    EngineOptions {
        sync: SyncPolicy::Always,
        memtable_bytes,
        bottommost_compression,
        max_immutable_memtables: 2,
        block_cache_bytes: [4 * 1024, 64 * 1024, 1024 * 1024][rng.random_range(0..3)],
        table: TableOptions {
            block_size: rng.random_range(256..4096),
            compression,
            ..TableOptions::default()
        },
        compress_from_level: rng.random_range(0..3),
        target_file_bytes: rng.random_range(4 * 1024..32 * 1024),
        l0_compaction_trigger: rng.random_range(2..5),
        level1_bytes: rng.random_range(16 * 1024..128 * 1024),
        level_multiplier: rng.random_range(2..6),
        dynamic_level_bytes,
        num_levels: rng.random_range(3..6),
        background_threads: false,
        flush_on_open: rng.random_bool(0.5),
        ..EngineOptions::default()
    }
}

fn show(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

fn describe(value: &[u8]) -> String {
    let prefix: String = value
        .iter()
        .take_while(|b| **b != b'-')
        .map(|b| char::from(*b))
        .collect();
    format!("{prefix} ({} bytes)", value.len())
}
