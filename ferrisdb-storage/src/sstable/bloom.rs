//! The per-table bloom filter over distinct user keys.
//!
//! Layout of the bloom block: `bit array (m/8 bytes) | k u8`. Each key is hashed once with
//! [`hash64`] (a single-lane xxHash64-style mix); its low and high 32 bits give `h1` and `h2`,
//! and probe `i` (0..k) sets bit `(h1 + i·h2) mod m` (Kirsch–Mitzenmacher double hashing).
//! With `b` bits per key, `k = round(b · ln 2)` clamped to 1..=30, giving a false-positive
//! rate near `0.6185^b` (≈ 0.8 % at b = 10). An empty bloom block means "no filter".

use bytes::Bytes;

use super::format::DecodeError;

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;
const P4: u64 = 0x85EB_CA77_C2B2_AE63;
const P5: u64 = 0x27D4_EB2F_1656_67C5;

/// Largest number of probes a filter may use.
const MAX_PROBES: u8 = 30;

/// A 64-bit hash of `data` (xxHash64's short-input path applied to any length).
pub fn hash64(data: &[u8]) -> u64 {
    let mut hash = P5.wrapping_add(data.len() as u64);
    let mut words = data.chunks_exact(8);
    for word in &mut words {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(word);
        let lane = u64::from_le_bytes(raw)
            .wrapping_mul(P2)
            .rotate_left(31)
            .wrapping_mul(P1);
        hash = (hash ^ lane)
            .rotate_left(27)
            .wrapping_mul(P1)
            .wrapping_add(P4);
    }
    let mut halves = words.remainder().chunks_exact(4);
    for half in &mut halves {
        let mut raw = [0u8; 4];
        raw.copy_from_slice(half);
        hash ^= u64::from(u32::from_le_bytes(raw)).wrapping_mul(P1);
        hash = hash.rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
    }
    for &byte in halves.remainder() {
        hash ^= u64::from(byte).wrapping_mul(P5);
        hash = hash.rotate_left(11).wrapping_mul(P1);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(P2);
    hash ^= hash >> 29;
    hash = hash.wrapping_mul(P3);
    hash ^ (hash >> 32)
}

/// Number of probes for `bits_per_key`: round(bits · 0.69), clamped to 1..=30.
fn probe_count(bits_per_key: usize) -> u8 {
    let k = (bits_per_key as f64 * 0.69).round();
    k.clamp(1.0, f64::from(MAX_PROBES)) as u8
}

/// The bit positions probed for `hash` in a filter of `bit_count` bits.
#[inline]
fn probes(hash: u64, bit_count: u64, probe_count: u8) -> impl Iterator<Item = u64> {
    let h1 = hash & 0xFFFF_FFFF;
    let h2 = hash >> 32;
    (0..u64::from(probe_count)).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % bit_count)
}

/// Collects key hashes while a table is built, then lays out the filter.
#[derive(Debug, Default)]
pub(crate) struct BloomBuilder {
    hashes: Vec<u64>,
}

impl BloomBuilder {
    /// Adds a (distinct) user key.
    pub(crate) fn add_key(&mut self, key: &[u8]) {
        self.hashes.push(hash64(key));
    }

    /// Approximate size of the finished filter.
    pub(crate) fn estimated_size(&self, bits_per_key: usize) -> usize {
        self.hashes.len().saturating_mul(bits_per_key) / 8 + 9
    }

    /// Builds the bloom block contents; empty if `bits_per_key` is 0 (no filter).
    pub(crate) fn finish(&self, bits_per_key: usize) -> Vec<u8> {
        if bits_per_key == 0 {
            return Vec::new();
        }
        let bits = self.hashes.len().saturating_mul(bits_per_key).max(64);
        let bytes = bits.div_ceil(8);
        let bit_count = (bytes * 8) as u64;
        let k = probe_count(bits_per_key);
        let mut filter = vec![0u8; bytes + 1];
        for &hash in &self.hashes {
            for bit in probes(hash, bit_count, k) {
                if let Some(byte) = filter.get_mut((bit / 8) as usize) {
                    *byte |= 1 << (bit % 8);
                }
            }
        }
        if let Some(last) = filter.last_mut() {
            *last = k;
        }
        filter
    }
}

/// A decoded bloom filter, kept in memory by its table.
#[derive(Debug, Clone)]
pub struct BloomFilter {
    /// The bit array (empty = no filter: everything may match).
    bits: Bytes,
    probe_count: u8,
}

impl BloomFilter {
    /// Decodes a bloom block.
    pub fn decode(block: Bytes) -> Result<BloomFilter, DecodeError> {
        let Some((&k, _)) = block.split_last() else {
            return Ok(BloomFilter {
                bits: Bytes::new(),
                probe_count: 0,
            });
        };
        if k == 0 || k > MAX_PROBES {
            return Err(DecodeError::new(
                block.len() - 1,
                "bloom probe count out of range",
            ));
        }
        if block.len() < 2 {
            return Err(DecodeError::new(0, "bloom filter has no bits"));
        }
        let mut bits = block;
        bits.truncate(bits.len() - 1);
        Ok(BloomFilter {
            bits,
            probe_count: k,
        })
    }

    /// False only if `key` was certainly not added.
    pub fn may_contain(&self, key: &[u8]) -> bool {
        self.may_contain_hash(hash64(key))
    }

    /// [`may_contain`](Self::may_contain) for a key whose [`hash64`] is `hash`, so a reader
    /// probing many filters hashes the key once.
    pub fn may_contain_hash(&self, hash: u64) -> bool {
        if self.bits.is_empty() {
            return true;
        }
        let bit_count = self.bits.len() as u64 * 8;
        probes(hash, bit_count, self.probe_count).all(|bit| {
            self.bits
                .get((bit / 8) as usize)
                .is_some_and(|byte| byte & (1 << (bit % 8)) != 0)
        })
    }

    /// Bytes of the bit array.
    pub fn size_bytes(&self) -> usize {
        self.bits.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter_for(keys: impl Iterator<Item = Vec<u8>>, bits_per_key: usize) -> BloomFilter {
        let mut builder = BloomBuilder::default();
        for key in keys {
            builder.add_key(&key);
        }
        BloomFilter::decode(Bytes::from(builder.finish(bits_per_key))).unwrap()
    }

    #[test]
    fn no_false_negatives_and_low_false_positive_rate() {
        let filter = filter_for((0..10_000u32).map(|i| format!("key{i}").into_bytes()), 10);
        for i in 0..10_000u32 {
            assert!(
                filter.may_contain(format!("key{i}").as_bytes()),
                "false negative {i}"
            );
        }
        let false_positives = (0..10_000u32)
            .filter(|i| filter.may_contain(format!("absent{i}").as_bytes()))
            .count();
        let rate = false_positives as f64 / 10_000.0;
        assert!(rate < 0.02, "false-positive rate {rate}");
        assert!(rate > 0.0, "suspiciously perfect filter: {rate}");
    }

    #[test]
    fn probe_count_follows_bits_per_key() {
        assert_eq!(probe_count(10), 7);
        assert_eq!(probe_count(1), 1);
        assert_eq!(probe_count(1000), 30);
    }

    #[test]
    fn zero_bits_per_key_means_no_filter() {
        let filter = filter_for([b"a".to_vec()].into_iter(), 0);
        assert!(filter.may_contain(b"anything"));
    }

    #[test]
    fn rejects_bad_probe_counts() {
        assert!(BloomFilter::decode(Bytes::from_static(&[0xff, 0])).is_err());
        assert!(BloomFilter::decode(Bytes::from_static(&[0xff, 31])).is_err());
        assert!(BloomFilter::decode(Bytes::from_static(&[7])).is_err());
    }

    #[test]
    fn hash_spreads_short_and_long_keys() {
        let a = hash64(b"");
        let b = hash64(b"a");
        let c = hash64(b"abcdefghijklmnopqrstuvwxyz");
        let d = hash64(b"abcdefghijklmnopqrstuvwxyZ");
        assert!(a != b && b != c && c != d);
        assert!((c ^ d).count_ones() > 16, "weak avalanche");
    }
}
