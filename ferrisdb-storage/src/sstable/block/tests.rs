//! Block round-trip, positioning and robustness tests.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;

use super::{Block, BlockBuilder, BlockIter};
use crate::key::{InternalKey, ValueKind};

type Model = BTreeMap<InternalKey, (ValueKind, Vec<u8>)>;

fn build(model: &Model, restart_interval: usize) -> Arc<Block> {
    let mut builder = BlockBuilder::new(restart_interval);
    for (key, (kind, value)) in model {
        builder.add(&key.key, key.version, *kind, value);
    }
    Arc::new(Block::decode(Bytes::copy_from_slice(builder.finish())).unwrap())
}

fn current(iter: &BlockIter) -> Option<(InternalKey, ValueKind, Vec<u8>)> {
    iter.valid().then(|| {
        (
            InternalKey::new(iter.key(), iter.version()),
            iter.kind(),
            iter.value().to_vec(),
        )
    })
}

fn expected(
    entry: Option<(&InternalKey, &(ValueKind, Vec<u8>))>,
) -> Option<(InternalKey, ValueKind, Vec<u8>)> {
    entry.map(|(k, (kind, v))| (k.clone(), *kind, v.clone()))
}

fn model_strategy() -> impl Strategy<Value = Model> {
    let entry = (
        "[a-c]{0,4}",
        0u64..20,
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..20),
    );
    proptest::collection::vec(entry, 0..80).prop_map(|entries| {
        entries
            .into_iter()
            .map(|(key, version, put, value)| {
                let kind = if put {
                    ValueKind::Put
                } else {
                    ValueKind::Tombstone
                };
                (InternalKey::new(key, version), (kind, value))
            })
            .collect()
    })
}

#[test]
fn empty_block_is_valid_and_has_no_entries() {
    let block = build(&Model::new(), 16);
    assert!(block.is_empty());
    let mut iter = BlockIter::new(block);
    iter.seek_to_first().unwrap();
    assert!(!iter.valid());
    iter.seek_to_last().unwrap();
    assert!(!iter.valid());
    iter.seek(b"a", 1).unwrap();
    assert!(!iter.valid());
}

#[test]
fn rejects_malformed_restart_arrays() {
    assert!(Block::decode(Bytes::from_static(&[1, 2])).is_err());
    // Count says 100 restarts but the block has room for none.
    assert!(Block::decode(Bytes::from_static(&[100, 0, 0, 0])).is_err());
    // Entries present but zero restarts.
    assert!(Block::decode(Bytes::from_static(&[9, 9, 0, 0, 0, 0])).is_err());
    // First restart not at 0.
    assert!(Block::decode(Bytes::from_static(&[0, 0, 1, 0, 0, 0, 1, 0, 0, 0])).is_err());
}

#[test]
fn corrupt_entry_is_an_error_not_a_panic() {
    let mut model = Model::new();
    model.insert(
        InternalKey::new("key", 5),
        (ValueKind::Put, b"value".to_vec()),
    );
    let mut builder = BlockBuilder::new(16);
    for (key, (kind, value)) in &model {
        builder.add(&key.key, key.version, *kind, value);
    }
    let mut bytes = builder.finish().to_vec();
    bytes[2] = 0x7f; // value length now runs past the entries
    let block = Arc::new(Block::decode(Bytes::from(bytes)).unwrap());
    let mut iter = BlockIter::new(block);
    assert!(iter.seek_to_first().is_err());
    assert!(!iter.valid());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn round_trip_and_positioning_match_model(
        model in model_strategy(),
        restart_interval in 1usize..5,
        targets in proptest::collection::vec(("[a-c]{0,4}", 0u64..22), 1..10),
    ) {
        let block = build(&model, restart_interval);
        let mut iter = BlockIter::new(block);

        let mut forward = Vec::new();
        iter.seek_to_first().unwrap();
        while let Some(entry) = current(&iter) {
            forward.push(entry);
            iter.next().unwrap();
        }
        let all: Vec<_> = model.iter().map(|e| expected(Some(e)).unwrap()).collect();
        prop_assert_eq!(&forward, &all);

        let mut backward = Vec::new();
        iter.seek_to_last().unwrap();
        while let Some(entry) = current(&iter) {
            backward.push(entry);
            iter.prev().unwrap();
        }
        backward.reverse();
        prop_assert_eq!(&backward, &all);

        for (key, version) in targets {
            let target = InternalKey::new(key.as_bytes(), version);
            iter.seek(&target.key, version).unwrap();
            let mut walk = model.range(target.clone()..);
            prop_assert_eq!(current(&iter), expected(walk.next()));
            for _ in 0..3 {
                iter.next().unwrap();
                prop_assert_eq!(current(&iter), expected(walk.next()));
            }

            iter.seek_for_prev(&target.key, version).unwrap();
            let mut walk = model.range(..=target).rev();
            prop_assert_eq!(current(&iter), expected(walk.next()));
            for _ in 0..3 {
                iter.prev().unwrap();
                prop_assert_eq!(current(&iter), expected(walk.next()));
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(block) = Block::decode(Bytes::from(bytes)) {
            let mut iter = BlockIter::new(Arc::new(block));
            let mut steps = 0;
            if iter.seek_to_first().is_ok() {
                while iter.valid() && steps < 100 {
                    let _ = iter.value_bytes();
                    if iter.next().is_err() { break; }
                    steps += 1;
                }
            }
            if iter.seek_to_last().is_ok() {
                while iter.valid() && steps < 200 {
                    if iter.prev().is_err() { break; }
                    steps += 1;
                }
            }
            let _ = iter.seek(b"b", 3);
            let _ = iter.seek_for_prev(b"b", 3);
        }
    }
}

proptest! {
    #[test]
    fn reset_iterator_matches_a_fresh_one(first in model_strategy(), second in model_strategy()) {
        let mut iter = BlockIter::new(build(&first, 3));
        iter.seek_to_last().unwrap();
        iter.reset(build(&second, 3));
        prop_assert!(!iter.valid());
        let mut forward = Vec::new();
        iter.seek_to_first().unwrap();
        while let Some(entry) = current(&iter) {
            forward.push(entry);
            iter.next().unwrap();
        }
        let expected: Vec<_> = second.iter().map(|e| expected(Some(e)).unwrap()).collect();
        prop_assert_eq!(&forward, &expected);
        let mut backward = Vec::new();
        iter.seek_to_last().unwrap();
        while let Some(entry) = current(&iter) {
            backward.push(entry);
            iter.prev().unwrap();
        }
        backward.reverse();
        prop_assert_eq!(backward, expected);
    }
}
