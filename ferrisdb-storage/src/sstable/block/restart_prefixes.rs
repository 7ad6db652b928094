//! A search aid for index blocks: the restart keys' first bytes, as one array of integers.
//!
//! Seeking in a table starts with a binary search over its index block, one restart per data
//! block (thousands in a 32 MiB table). Each probe reads the restart array and then decodes an
//! entry somewhere in a block of hundreds of KiB: two cache misses per probe, about 13 probes,
//! for every table a seek or point read visits. At 50M keys a profile of seekrandom put 21% of
//! its time in those probes.
//!
//! [`RestartPrefixes`] is built once, when the table opens. Every restart key of an index
//! block starts with the bytes its first and last keys share (`common`); for each restart it
//! keeps the next 8 bytes of the user key as a big-endian `u64` (zero-padded). Comparing those
//! integers orders keys as their bytes do, except that keys equal in those 8 bytes compare
//! equal: a binary search over the integer array (8 bytes per data block, contiguous) finds the
//! restarts surely below and surely above the target, and only the few restarts whose 8 bytes
//! equal the target's are compared in full. The answer is exactly the one
//! [`BlockIter::seek`](super::BlockIter::seek)'s own binary search gives.

use std::cmp::Ordering;

use super::Block;
use crate::key::compare_internal;
use crate::sstable::format::DecodeError;

/// The restart keys of one block reduced to 8-byte integers after their common prefix.
#[derive(Debug, Default)]
pub(crate) struct RestartPrefixes {
    /// The bytes every restart key's user key starts with.
    common: Box<[u8]>,
    /// Per restart, the 8 bytes of its user key after `common`, big-endian, zero-padded.
    prefixes: Box<[u64]>,
    /// Every [`SAMPLE_EVERY`]-th entry of `prefixes`: the search starts in this small array
    /// (a few cache lines) and ends in one window of `prefixes`, so a seek touches a few lines
    /// of each instead of one line per probe across the whole array.
    sample: Box<[u64]>,
}

/// Distance between the sampled prefixes.
const SAMPLE_EVERY: usize = 64;

impl RestartPrefixes {
    /// Reads every restart key of `block`.
    pub(crate) fn build(block: &Block) -> Result<RestartPrefixes, DecodeError> {
        let count = block.restarts.len();
        if count == 0 {
            return Ok(RestartPrefixes::default());
        }
        let (first, _) = block.restart_key(0)?;
        let (last, _) = block.restart_key(count - 1)?;
        // Keys are sorted, so every key between the first and the last shares their prefix.
        let shared = first.iter().zip(last).take_while(|(a, b)| a == b).count();
        let common: Box<[u8]> = first[..shared].into();
        let mut prefixes = Vec::with_capacity(count);
        for index in 0..count {
            let (key, _) = block.restart_key(index)?;
            prefixes.push(window(key, shared));
        }
        let sample = prefixes.iter().step_by(SAMPLE_EVERY).copied().collect();
        Ok(RestartPrefixes {
            common,
            prefixes: prefixes.into_boxed_slice(),
            sample,
        })
    }

    /// Heap bytes held.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.common.len() + (self.prefixes.len() + self.sample.len()) * 8
    }

    /// The number of prefixes below `target`, found through the sample: the sampled prefix
    /// `sample[j]` is `prefixes[j * SAMPLE_EVERY]`, so the answer lies in one window.
    fn count_below(&self, target: u64) -> usize {
        let sampled = self.sample.partition_point(|&p| p < target);
        let start = sampled.saturating_sub(1) * SAMPLE_EVERY;
        let end = (sampled * SAMPLE_EVERY).min(self.prefixes.len());
        let window = self.prefixes.get(start..end).unwrap_or_default();
        start + window.partition_point(|&p| p < target)
    }

    /// The last restart of `block` (the block this was built from) whose entry is below
    /// `(key, version)` in internal order, or 0 if none is.
    pub(crate) fn last_restart_below(
        &self,
        block: &Block,
        key: &[u8],
        version: u64,
    ) -> Result<usize, DecodeError> {
        let count = self.prefixes.len();
        if count == 0 {
            return Ok(0);
        }
        let shared = self.common.len();
        let head = &key[..shared.min(key.len())];
        match head.cmp(&self.common[..head.len()]) {
            Ordering::Less => return Ok(0),
            Ordering::Greater => return Ok(count - 1),
            // A proper prefix of `common` sorts before every restart key.
            Ordering::Equal if key.len() < shared => return Ok(0),
            Ordering::Equal => {}
        }
        let target = window(key, shared);
        // Restarts before `low` are below the target, from `high` on above it.
        let low = self.count_below(target);
        let high = low + self.prefixes[low..].partition_point(|&p| p == target);
        let (mut left, mut right) = (low, high);
        while left < right {
            let mid = left + (right - left) / 2;
            let (mid_key, mid_version) = block.restart_key(mid)?;
            if compare_internal(mid_key, mid_version, key, version) == Ordering::Less {
                left = mid + 1;
            } else {
                right = mid;
            }
        }
        // `left` is the first restart at or above the target.
        Ok(left.saturating_sub(1))
    }
}

/// The 8 bytes of `key` after its first `skip`, big-endian, zero-padded.
fn window(key: &[u8], skip: usize) -> u64 {
    let mut bytes = [0u8; 8];
    let rest = key.get(skip..).unwrap_or_default();
    let n = rest.len().min(8);
    bytes[..n].copy_from_slice(&rest[..n]);
    u64::from_be_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use proptest::prelude::*;

    use super::super::{BlockBuilder, BlockIter};
    use super::*;
    use crate::key::ValueKind;

    /// A block with one restart per entry (as index blocks are) holding `keys` in order.
    fn block(keys: &[(Vec<u8>, u64)]) -> Block {
        let mut builder = BlockBuilder::new(1);
        for (key, version) in keys {
            builder.add(key, *version, ValueKind::Put, b"handle");
        }
        Block::decode(Bytes::copy_from_slice(builder.finish())).unwrap()
    }

    /// What `BlockIter::seek`'s binary search over the restarts finds.
    fn plain(block: &Block, key: &[u8], version: u64) -> usize {
        let count = block.restarts.len();
        let (mut left, mut right) = (0usize, count.saturating_sub(1));
        while left < right {
            let mid = left + (right - left).div_ceil(2);
            let (k, v) = block.restart_key(mid).unwrap();
            if compare_internal(k, v, key, version) == Ordering::Less {
                left = mid;
            } else {
                right = mid - 1;
            }
        }
        left
    }

    /// Sorted, distinct internal keys from arbitrary user keys and versions.
    fn sorted(mut keys: Vec<(Vec<u8>, u64)>) -> Vec<(Vec<u8>, u64)> {
        keys.sort_by(|a, b| compare_internal(&a.0, a.1, &b.0, b.1));
        keys.dedup();
        keys
    }

    #[test]
    fn windows_order_keys_like_their_bytes() {
        assert!(window(b"prefix-a", 7) < window(b"prefix-b", 7));
        assert_eq!(
            window(b"ab", 0),
            window(b"ab\0", 0),
            "padding ties, resolved in full"
        );
        assert!(window(b"ab", 0) < window(b"ab\x01", 0));
        assert_eq!(window(b"short", 9), 0);
        assert_eq!(
            window(b"0123456789abcdef", 8),
            u64::from_be_bytes(*b"89abcdef")
        );
    }

    #[test]
    fn zero_padded_decimal_keys_and_targets_outside_the_common_prefix() {
        // The benchmark's keys: 16 decimal digits, the first 8 shared by every key.
        let keys = sorted(
            (0..500u64)
                .map(|i| (format!("{:016}", i * 7).into_bytes(), 5))
                .collect(),
        );
        let block = block(&keys);
        let prefixes = RestartPrefixes::build(&block).unwrap();
        assert!(prefixes.common.len() >= 8);
        for target in [
            "",
            "0",
            "00000000",
            "0000000000000013",
            "0000000000003493",
            "1",
            "9999",
        ] {
            for version in [0, 5, u64::MAX] {
                assert_eq!(
                    prefixes
                        .last_restart_below(&block, target.as_bytes(), version)
                        .unwrap(),
                    plain(&block, target.as_bytes(), version),
                    "{target:?} at {version}"
                );
            }
        }
    }

    #[test]
    fn blocks_spanning_many_samples_agree_with_the_plain_search() {
        // 1,000 restarts (16 samples), runs of equal 8-byte windows across sample edges.
        let keys = sorted(
            (0..1_000u64)
                .map(|i| (format!("k{:08}-{}", i / 3 * 3, i % 3).into_bytes(), i % 2))
                .collect(),
        );
        let block = block(&keys);
        let prefixes = RestartPrefixes::build(&block).unwrap();
        assert_eq!(prefixes.sample.len(), 1_000usize.div_ceil(SAMPLE_EVERY));
        for i in (0..1_010u64).step_by(7) {
            for target in [
                format!("k{i:08}"),
                format!("k{i:08}-1"),
                format!("k{i:08}-9"),
            ] {
                for version in [0, 1, 7] {
                    assert_eq!(
                        prefixes
                            .last_restart_below(&block, target.as_bytes(), version)
                            .unwrap(),
                        plain(&block, target.as_bytes(), version),
                        "{target} at {version}"
                    );
                }
            }
        }
    }

    #[test]
    fn an_empty_block_answers_zero() {
        let empty = Block::decode(Bytes::from_static(&[0, 0, 0, 0])).unwrap();
        let prefixes = RestartPrefixes::build(&empty).unwrap();
        assert_eq!(prefixes.last_restart_below(&empty, b"k", 1).unwrap(), 0);
        assert_eq!(prefixes.memory_bytes(), 0);
    }

    proptest! {
        /// Same answer as the plain binary search, and a seek from it lands where
        /// `BlockIter::seek` does, for keys with long shared prefixes, many versions of one
        /// key, empty keys and targets anywhere.
        #[test]
        fn agrees_with_the_plain_search(
            keys in prop::collection::vec(
                (prop::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(0u8), Just(0xFF)], 0..12), 0u64..4),
                1..200,
            ),
            stem in prop::collection::vec(any::<u8>(), 0..10),
            targets in prop::collection::vec(
                (prop::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(0u8), Just(0xFF)], 0..14), 0u64..5, any::<bool>()),
                1..20,
            ),
        ) {
            let keys = sorted(
                keys.into_iter().map(|(k, v)| ([stem.as_slice(), &k].concat(), v)).collect(),
            );
            let block = Arc::new(block(&keys));
            let prefixes = RestartPrefixes::build(&block).unwrap();
            for (tail, version, with_stem) in targets {
                let target = if with_stem { [stem.as_slice(), &tail].concat() } else { tail };
                let fast = prefixes.last_restart_below(&block, &target, version).unwrap();
                prop_assert_eq!(fast, plain(&block, &target, version));
                let mut from_restart = BlockIter::new(block.clone());
                from_restart.seek_from_restart(fast, &target, version).unwrap();
                let mut seeked = BlockIter::new(block.clone());
                seeked.seek(&target, version).unwrap();
                prop_assert_eq!(from_restart.valid(), seeked.valid());
                if seeked.valid() {
                    prop_assert_eq!(from_restart.key(), seeked.key());
                    prop_assert_eq!(from_restart.version(), seeked.version());
                }
            }
        }
    }

    use std::sync::Arc;
}
