//! Model test: random operations against the engine and a `BTreeMap` model.

use std::collections::BTreeMap;

use ferrisdb_core::Error;
use proptest::prelude::*;

use super::*;
use crate::engine::WriteBatch;

#[derive(Debug, Clone)]
enum BatchOp {
    Put(u8, Vec<u8>),
    Delete(u8),
    DeleteRange(u8, Option<u8>),
}

#[derive(Debug, Clone)]
enum Op {
    Apply(Vec<BatchOp>),
    Get(u8, u16),
    Scan {
        begin: u8,
        end: Option<u8>,
        reverse: bool,
        limit: usize,
        at: u16,
    },
    TooOld(u8),
    Flush,
    Compact,
    Horizon(u16),
    Reopen {
        clean: bool,
    },
    /// A range cleared at a new version, then purged through it (a shard handed away).
    ClearAndPurge(u8, Option<u8>),
}

fn key(k: u8) -> Vec<u8> {
    format!("key{k:02}").into_bytes()
}

fn batch_op() -> impl Strategy<Value = BatchOp> {
    prop_oneof![
        6 => (0u8..30, prop::collection::vec(any::<u8>(), 0..120)).prop_map(|(k, v)| BatchOp::Put(k, v)),
        2 => (0u8..30).prop_map(BatchOp::Delete),
        1 => (0u8..30, prop::option::of(0u8..32)).prop_map(|(b, e)| BatchOp::DeleteRange(b, e)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => prop::collection::vec(batch_op(), 0..8).prop_map(Op::Apply),
        5 => (0u8..32, any::<u16>()).prop_map(|(k, at)| Op::Get(k, at)),
        4 => (0u8..32, prop::option::of(0u8..34), any::<bool>(), prop_oneof![Just(0usize), 1usize..6], any::<u16>())
            .prop_map(|(begin, end, reverse, limit, at)| Op::Scan { begin, end, reverse, limit, at }),
        1 => (0u8..32).prop_map(Op::TooOld),
        1 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => any::<u16>().prop_map(Op::Horizon),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
        1 => (0u8..30, prop::option::of(0u8..32)).prop_map(|(b, e)| Op::ClearAndPurge(b, e)),
    ]
}

/// Every version of every key: `None` is a deletion.
#[derive(Default)]
struct Model {
    keys: BTreeMap<Vec<u8>, BTreeMap<u64, Option<Vec<u8>>>>,
    last: u64,
    horizon: u64,
    /// Purged ranges `[begin, end)` and the version they were purged through: reads of them
    /// below it are unspecified.
    purged: Vec<(Vec<u8>, Vec<u8>, u64)>,
}

impl Model {
    /// True if a read of `k` at `at` is of purged data (no answer is specified).
    fn unspecified(&self, k: &[u8], at: u64) -> bool {
        self.purged.iter().any(|(b, e, through)| {
            at < *through && k >= b.as_slice() && (e.is_empty() || k < e.as_slice())
        })
    }

    fn get(&self, k: &[u8], at: u64) -> Option<Vec<u8>> {
        self.keys
            .get(k)
            .and_then(|versions| versions.range(..=at).next_back())
            .and_then(|(_, v)| v.clone())
    }

    fn live_in(&self, begin: &[u8], end: &[u8]) -> Vec<Vec<u8>> {
        self.keys
            .keys()
            .filter(|k| k.as_slice() >= begin && (end.is_empty() || k.as_slice() < end))
            .filter(|k| self.get(k, u64::MAX).is_some())
            .cloned()
            .collect()
    }

    fn apply(&mut self, version: u64, ops: &[BatchOp]) {
        let mut last: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        for op in ops {
            match op {
                BatchOp::Put(k, v) => {
                    last.insert(key(*k), Some(v.clone()));
                }
                BatchOp::Delete(k) => {
                    last.insert(key(*k), None);
                }
                BatchOp::DeleteRange(b, e) => {
                    let (b, e) = (key(*b), e.map(key).unwrap_or_default());
                    let mut doomed = self.live_in(&b, &e);
                    doomed.extend(
                        last.keys()
                            .filter(|k| {
                                k.as_slice() >= b.as_slice()
                                    && (e.is_empty() || k.as_slice() < e.as_slice())
                            })
                            .cloned(),
                    );
                    for k in doomed {
                        last.insert(k, None);
                    }
                }
            }
        }
        for (k, v) in last {
            self.keys.entry(k).or_default().insert(version, v);
        }
        self.last = version;
    }

    fn scan(
        &self,
        begin: &[u8],
        end: &[u8],
        at: u64,
        reverse: bool,
        limit: usize,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out: Vec<_> = self
            .keys
            .keys()
            .filter(|k| k.as_slice() >= begin && (end.is_empty() || k.as_slice() < end))
            .filter_map(|k| self.get(k, at).map(|v| (k.clone(), v)))
            .collect();
        if reverse {
            out.reverse();
        }
        if limit > 0 {
            out.truncate(limit);
        }
        out
    }

    /// A read version in [horizon, last] chosen by `at`.
    fn pick_version(&self, at: u16) -> u64 {
        let span = self.last.saturating_sub(self.horizon);
        self.horizon + (u64::from(at) * (span + 1)) / 65536
    }
}

fn build_batch(ops: &[BatchOp]) -> WriteBatch {
    let mut batch = WriteBatch::new();
    for op in ops {
        match op {
            BatchOp::Put(k, v) => batch.put(key(*k), v),
            BatchOp::Delete(k) => batch.delete(key(*k)),
            BatchOp::DeleteRange(b, e) => {
                batch.delete_range(key(*b), e.map(key).unwrap_or_default())
            }
        }
    }
    batch
}

fn run(ops: Vec<Op>, steps: Vec<u8>, dynamic_level_bytes: bool) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let opts = EngineOptions {
        dynamic_level_bytes,
        ..small_options(false)
    };
    let mut engine = open(dir.path(), opts);
    let mut model = Model::default();
    let mut step = steps.into_iter().cycle();
    for op in ops {
        match op {
            Op::Apply(ops) => {
                let version = model.last + 1 + u64::from(step.next().unwrap_or(0) % 3);
                engine.apply(version, &build_batch(&ops)).unwrap();
                model.apply(version, &ops);
                prop_assert!(engine.apply(version, &WriteBatch::new()).is_err());
            }
            Op::Get(k, at) => {
                let version = model.pick_version(at);
                let got = engine.get(&key(k), version).unwrap().map(|b| b.to_vec());
                if !model.unspecified(&key(k), version) {
                    prop_assert_eq!(got, model.get(&key(k), version), "get {} at {}", k, version);
                }
            }
            Op::Scan {
                begin,
                end,
                reverse,
                limit,
                at,
            } => {
                let version = model.pick_version(at);
                let (b, e) = (key(begin), end.map(key).unwrap_or_default());
                // With purged ranges in play, compare whole scans with the unspecified keys
                // left out (a limit would cut them at different places).
                let purged = !model.purged.is_empty();
                let limit = if purged { 0 } else { limit };
                let specified = |rows: Vec<(Vec<u8>, Vec<u8>)>| -> Vec<(Vec<u8>, Vec<u8>)> {
                    rows.into_iter()
                        .filter(|(k, _)| !model.unspecified(k, version))
                        .collect()
                };
                let got = specified(scan_all(&engine, &b, &e, version, reverse, limit));
                let expected = specified(model.scan(&b, &e, version, reverse, limit));
                prop_assert_eq!(
                    got,
                    expected,
                    "scan {}..{:?} at {} rev {} limit {}",
                    begin,
                    end,
                    version,
                    reverse,
                    limit
                );
            }
            Op::TooOld(k) => {
                if model.horizon > 0 {
                    let err = engine.get(&key(k), model.horizon - 1).unwrap_err();
                    prop_assert!(matches!(err, Error::TransactionTooOld { .. }), "{}", err);
                    let err = engine
                        .scan(ScanOptions {
                            read_version: model.horizon - 1,
                            ..ScanOptions::default()
                        })
                        .unwrap_err();
                    prop_assert!(matches!(err, Error::TransactionTooOld { .. }), "{}", err);
                }
            }
            Op::Flush => engine.flush().unwrap(),
            Op::Compact => engine.compact().unwrap(),
            Op::Horizon(at) => {
                let h = model.pick_version(at);
                engine.set_gc_horizon(h);
                model.horizon = model.horizon.max(h);
                prop_assert_eq!(engine.gc_horizon(), model.horizon);
            }
            Op::ClearAndPurge(b, e) => {
                let version = model.last + 1;
                let ops = [BatchOp::DeleteRange(b, e)];
                engine.apply(version, &build_batch(&ops)).unwrap();
                model.apply(version, &ops);
                let (begin, end) = (key(b), e.map(key).unwrap_or_default());
                engine
                    .purge_ranges(&[crate::engine::PurgeRange {
                        begin: begin.clone(),
                        end: end.clone(),
                        through: version,
                    }])
                    .unwrap();
                model.purged.push((begin, end, version));
            }
            Op::Reopen { clean } => {
                if clean {
                    engine.close().unwrap();
                }
                drop(engine);
                engine = open(dir.path(), opts);
                prop_assert_eq!(engine.last_applied_version(), model.last);
                prop_assert_eq!(engine.durable_version(), model.last);
                if clean {
                    prop_assert_eq!(engine.gc_horizon(), model.horizon);
                } else {
                    // Unpersisted horizon moves are lost on a crash; re-apply the model's.
                    prop_assert!(engine.gc_horizon() <= model.horizon);
                    engine.set_gc_horizon(model.horizon);
                }
            }
        }
    }
    // Everything still matches after a final flush + compaction.
    engine.flush().unwrap();
    engine.compact().unwrap();
    for at in [0u16, 30000, u16::MAX] {
        let version = model.pick_version(at);
        let specified = |rows: Vec<(Vec<u8>, Vec<u8>)>| -> Vec<(Vec<u8>, Vec<u8>)> {
            rows.into_iter()
                .filter(|(k, _)| !model.unspecified(k, version))
                .collect()
        };
        prop_assert_eq!(
            specified(scan_all(&engine, b"", b"", version, false, 0)),
            specified(model.scan(b"", b"", version, false, 0))
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
    #[test]
    fn engine_matches_model(ops in prop::collection::vec(op(), 1..60), steps in prop::collection::vec(any::<u8>(), 1..8), dynamic in any::<bool>()) {
        run(ops, steps, dynamic)?;
    }
}

#[test]
fn long_sequence_reaches_deep_levels_with_static_sizing() {
    long_sequence(false);
}

#[test]
fn long_sequence_reaches_deep_levels_with_dynamic_sizing() {
    long_sequence(true);
}

fn long_sequence(dynamic_level_bytes: bool) {
    let dir = tempfile::tempdir().unwrap();
    // Compressed tables are small: a smaller level 1 still makes this data reach level 2.
    let engine = open(
        dir.path(),
        EngineOptions {
            level1_bytes: 1024,
            dynamic_level_bytes,
            ..small_options(false)
        },
    );
    let mut model = Model::default();
    for version in 1..=400u64 {
        let k = (version * 7 % 30) as u8;
        let ops = if version % 17 == 0 {
            vec![BatchOp::DeleteRange(k, Some(k + 3))]
        } else {
            vec![
                BatchOp::Put(k, vec![version as u8; 60]),
                BatchOp::Put((k + 11) % 30, vec![1; 40]),
            ]
        };
        engine.apply(version, &build_batch(&ops)).unwrap();
        model.apply(version, &ops);
        if version % 50 == 0 {
            engine.set_gc_horizon(version - 20);
            model.horizon = version - 20;
            engine.flush().unwrap();
            engine.compact().unwrap();
        }
    }
    let stats = engine.stats();
    assert!(
        stats.levels.iter().skip(2).any(|l| l.files > 0),
        "{stats:?}"
    );
    for version in [model.horizon, model.horizon + 7, model.last] {
        assert_eq!(
            scan_all(&engine, b"", b"", version, false, 0),
            model.scan(b"", b"", version, false, 0)
        );
        assert_eq!(
            scan_all(&engine, b"", b"", version, true, 0),
            model.scan(b"", b"", version, true, 0)
        );
        for k in 0..32 {
            assert_eq!(
                engine.get(&key(k), version).unwrap().map(|b| b.to_vec()),
                model.get(&key(k), version)
            );
        }
    }
}
