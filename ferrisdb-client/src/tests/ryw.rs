//! Read-your-writes: random local writes over a random stored snapshot, then point and range
//! reads (both directions, limits, small batches, three shards) must equal the model: the
//! writes applied to the snapshot.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;
use ferrisdb_core::AtomicOp;
use proptest::prelude::*;

use crate::testing::MemBackend;
use crate::{DatabaseOptions, KeyValue, RangeOptions, TransactionOption};

const OPS: [AtomicOp; 9] = AtomicOp::ALL;

#[derive(Debug, Clone)]
enum Op {
    Set(Vec<u8>, Vec<u8>),
    Clear(Vec<u8>),
    ClearRange(Vec<u8>, Vec<u8>),
    Atomic(usize, Vec<u8>, Vec<u8>),
    Get(Vec<u8>, bool),
    Range {
        begin: Vec<u8>,
        end: Vec<u8>,
        limit: Option<usize>,
        reverse: bool,
        batch: usize,
        snapshot: bool,
    },
}

/// Keys around the three shard boundaries (0x55, 0xaa) and the ends of the key space.
fn key() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop::sample::select(vec![0x00u8, 0x01, 0x54, 0x55, 0x56, 0xa9, 0xaa, 0xab, 0xff]);
    prop::collection::vec(byte, 0..=2)
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..=3)
}

/// An end key: empty (unbounded) or a key.
fn end_key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![1 => Just(Vec::new()), 4 => key()]
}

fn ordered(a: Vec<u8>, e: Vec<u8>) -> (Vec<u8>, Vec<u8>) {
    if !e.is_empty() && a > e {
        (e, a)
    } else {
        (a, e)
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (key(), value()).prop_map(|(k, v)| Op::Set(k, v)),
        2 => key().prop_map(Op::Clear),
        2 => (key(), end_key()).prop_map(|(a, e)| {
            let (a, e) = ordered(a, e);
            Op::ClearRange(a, e)
        }),
        3 => (0..OPS.len(), key(), value()).prop_map(|(i, k, v)| Op::Atomic(i, k, v)),
        2 => (key(), any::<bool>()).prop_map(|(k, s)| Op::Get(k, s)),
        3 => (key(), end_key(), prop::option::of(0usize..6), any::<bool>(), 1usize..4, any::<bool>())
            .prop_map(|(a, e, limit, reverse, batch, snapshot)| {
                let (begin, end) = ordered(a, e);
                Op::Range { begin, end, limit, reverse, batch, snapshot }
            }),
    ]
}

fn upper(end: &[u8]) -> Bound<Vec<u8>> {
    if end.is_empty() {
        Bound::Unbounded
    } else {
        Bound::Excluded(end.to_vec())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn reads_equal_writes_applied_to_the_snapshot(
        snapshot in prop::collection::btree_map(key(), value(), 0..16),
        ops in prop::collection::vec(op(), 1..30),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let data = snapshot
            .iter()
            .map(|(k, v)| (Bytes::from(k.clone()), Bytes::from(v.clone())))
            .collect();
        let backend = MemBackend::new(data, 3);
        let tx = backend.database(DatabaseOptions::default()).create_transaction();
        // Keys up to \xff\xff exercise the end of the key space; the system-key rules have
        // their own tests.
        tx.set_option(TransactionOption::AccessSystemKeys);
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = snapshot;
        rt.block_on(async {
            for op in ops {
                match op {
                    Op::Set(k, v) => {
                        tx.set(&k, &v).unwrap();
                        model.insert(k, v);
                    }
                    Op::Clear(k) => {
                        tx.clear(&k).unwrap();
                        model.remove(&k);
                    }
                    Op::ClearRange(a, e) => {
                        tx.clear_range(&a, &e).unwrap();
                        let doomed: Vec<_> = model
                            .range((Bound::Included(a.clone()), upper(&e)))
                            .map(|(k, _)| k.clone())
                            .collect();
                        for k in doomed {
                            model.remove(&k);
                        }
                    }
                    Op::Atomic(i, k, v) => {
                        tx.atomic_op(OPS[i], &k, &v).unwrap();
                        match OPS[i].apply(model.get(&k).map(|v| &v[..]), &v) {
                            Some(n) => model.insert(k, n),
                            None => model.remove(&k),
                        };
                    }
                    Op::Get(k, snap) => {
                        let got = if snap {
                            tx.snapshot().get(&k).await.unwrap()
                        } else {
                            tx.get(&k).await.unwrap()
                        };
                        prop_assert_eq!(got.map(|v| v.to_vec()), model.get(&k).cloned(), "get {:?}", k);
                    }
                    Op::Range { begin, end, limit, reverse, batch, snapshot } => {
                        let mut opts = RangeOptions::default().batch_size(batch);
                        opts.limit = limit;
                        opts.reverse = reverse;
                        let stream = if snapshot {
                            tx.snapshot().get_range(&begin, &end, opts)
                        } else {
                            tx.get_range(&begin, &end, opts)
                        };
                        let got: Vec<(Vec<u8>, Vec<u8>)> = stream
                            .collect_vec()
                            .await
                            .unwrap()
                            .into_iter()
                            .map(|KeyValue { key, value }| (key.to_vec(), value.to_vec()))
                            .collect();
                        let all = model.range((Bound::Included(begin.clone()), upper(&end)));
                        let all: Vec<_> = if reverse {
                            all.rev().map(|(k, v)| (k.clone(), v.clone())).collect()
                        } else {
                            all.map(|(k, v)| (k.clone(), v.clone())).collect()
                        };
                        let want: Vec<_> = all.into_iter().take(limit.unwrap_or(usize::MAX)).collect();
                        prop_assert_eq!(got, want, "range [{:?}, {:?}) limit {:?} reverse {}", begin, end, limit, reverse);
                    }
                }
            }
            Ok(())
        })?;
        // The commit replays to the same state.
        let replay = MemBackend::applying(
            backend.data.lock().clone(),
        );
        let mutations = tx.pending_commit().0;
        rt.block_on(async {
            use crate::backend::Backend;
            replay
                .commit(ferrisdb_core::Commit {
                    read_version: ferrisdb_core::Version(1),
                    mutations,
                    read_conflict_ranges: vec![],
                    write_conflict_ranges: vec![],
                    idempotency: None,
                })
                .await
                .unwrap();
        });
        let after: BTreeMap<Vec<u8>, Vec<u8>> = replay
            .data
            .lock()
            .iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        prop_assert_eq!(after, model);
    }
}
