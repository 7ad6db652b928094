//! The YCSB-style workloads: which operations each runs in what proportion, the key layout
//! and how keys are chosen (scrambled Zipfian, as YCSB's default, or uniform).
//!
//! Keys are `bench/` followed by the record number, zero-padded to `--key-size` bytes, so a
//! benchmark's data never mixes with other keys and scans stay inside `[bench/, bench0)`.

use std::str::FromStr;

use rand::Rng;

/// Prefix of every benchmark key.
pub const KEY_PREFIX: &[u8] = b"bench/";
/// The end of the benchmark's key range (the prefix's successor).
pub const KEY_END: &[u8] = b"bench0";
/// Most keys one scan of workload E reads.
pub const MAX_SCAN: usize = 100;
/// Keys one range read of workload R reads.
pub const RANGE_LEN: usize = 100;

/// One kind of operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// Read one record.
    Read,
    /// Overwrite one record (a blind write).
    Update,
    /// Write a new record after the loaded ones.
    Insert,
    /// Read up to [`MAX_SCAN`] consecutive records.
    Scan,
    /// Read one record and write it back in the same transaction.
    ReadModifyWrite,
    /// Read two different records and write both back in the same transaction.
    ReadModifyWrite2,
}

impl Op {
    /// The name used in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Update => "update",
            Op::Insert => "insert",
            Op::Scan => "scan",
            Op::ReadModifyWrite => "read_modify_write",
            Op::ReadModifyWrite2 => "read_modify_write_2",
        }
    }
}

/// A workload: a mix of operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// 50% reads, 50% updates.
    A,
    /// 95% reads, 5% updates.
    B,
    /// Reads only.
    C,
    /// 95% short scans, 5% inserts.
    E,
    /// 50% reads, 50% read-modify-writes.
    F,
    /// Updates only.
    W,
    /// Range reads of exactly [`RANGE_LEN`] consecutive records only.
    R,
    /// Two-record read-modify-write transactions only.
    T,
}

impl FromStr for Workload {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "a" => Workload::A,
            "b" => Workload::B,
            "c" => Workload::C,
            "e" => Workload::E,
            "f" => Workload::F,
            "w" => Workload::W,
            "r" => Workload::R,
            "t" => Workload::T,
            other => {
                return Err(format!(
                    "unknown workload {other:?} (a, b, c, e, f, w, r, t)"
                ));
            }
        })
    }
}

impl Workload {
    /// The lower-case letter.
    pub fn letter(self) -> &'static str {
        match self {
            Workload::A => "a",
            Workload::B => "b",
            Workload::C => "c",
            Workload::E => "e",
            Workload::F => "f",
            Workload::W => "w",
            Workload::R => "r",
            Workload::T => "t",
        }
    }

    /// The operations and their shares (summing to 100).
    pub fn mix(self) -> &'static [(Op, u32)] {
        match self {
            Workload::A => &[(Op::Read, 50), (Op::Update, 50)],
            Workload::B => &[(Op::Read, 95), (Op::Update, 5)],
            Workload::C => &[(Op::Read, 100)],
            Workload::E => &[(Op::Scan, 95), (Op::Insert, 5)],
            Workload::F => &[(Op::Read, 50), (Op::ReadModifyWrite, 50)],
            Workload::W => &[(Op::Update, 100)],
            Workload::R => &[(Op::Scan, 100)],
            Workload::T => &[(Op::ReadModifyWrite2, 100)],
        }
    }

    /// Keys the next scan reads: exactly [`RANGE_LEN`] for R, 1 to [`MAX_SCAN`] otherwise.
    pub fn scan_len(self, rng: &mut impl Rng) -> usize {
        match self {
            Workload::R => RANGE_LEN,
            _ => rng.random_range(1..=MAX_SCAN),
        }
    }

    /// Fewest records the workload can run on (T needs two different ones).
    pub fn min_records(self) -> u64 {
        match self {
            Workload::T => 2,
            _ => 1,
        }
    }

    /// Draws the next operation.
    pub fn choose(self, rng: &mut impl Rng) -> Op {
        let mix = self.mix();
        let mut roll = rng.random_range(0..100u32);
        for &(op, share) in mix {
            if roll < share {
                return op;
            }
            roll -= share;
        }
        mix.last().map_or(Op::Read, |&(op, _)| op)
    }
}

/// The key of record `i`, `size` bytes long (longer if the number needs it).
pub fn key(i: u64, size: usize) -> Vec<u8> {
    let digits = size.saturating_sub(KEY_PREFIX.len()).max(1);
    let mut k = KEY_PREFIX.to_vec();
    k.extend_from_slice(format!("{i:0digits$}").as_bytes());
    k
}

/// A value of `size` printable bytes, different for each `seed`.
pub fn value(size: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'a' + (x % 26) as u8
        })
        .collect()
}

/// A record other than `first` (`n >= 2` records), drawn from `chooser`; falls back to
/// `first`'s neighbour if the distribution keeps returning `first` (a very hot record).
pub fn other_record(chooser: &KeyChooser, rng: &mut impl Rng, first: u64) -> u64 {
    for _ in 0..16 {
        let r = chooser.next(rng);
        if r != first {
            return r;
        }
    }
    let n = chooser.records();
    (first + 1) % n.max(2)
}

/// How records are chosen.
#[derive(Debug, Clone)]
pub enum KeyChooser {
    /// Every record equally likely.
    Uniform {
        /// Records to choose from.
        n: u64,
    },
    /// YCSB's scrambled Zipfian (θ = 0.99): a few records are hot, spread over the key space.
    Zipfian(Zipfian),
}

impl KeyChooser {
    /// A chooser over `n` records (`n >= 1`); `zipfian` selects the skewed distribution.
    pub fn new(n: u64, zipfian: bool) -> Self {
        let n = n.max(1);
        if zipfian {
            KeyChooser::Zipfian(Zipfian::new(n))
        } else {
            KeyChooser::Uniform { n }
        }
    }

    /// Records chosen from.
    pub fn records(&self) -> u64 {
        match self {
            KeyChooser::Uniform { n } => *n,
            KeyChooser::Zipfian(z) => z.n,
        }
    }

    /// The next record number, in `0..n`.
    pub fn next(&self, rng: &mut impl Rng) -> u64 {
        match self {
            KeyChooser::Uniform { n } => rng.random_range(0..*n),
            KeyChooser::Zipfian(z) => {
                // Scramble the rank so hot records are not all neighbours.
                fnv64(z.next_rank(rng)) % z.n
            }
        }
    }
}

/// The Zipfian generator of Gray et al. ("Quickly generating billion-record synthetic
/// databases"), as used by YCSB.
#[derive(Debug, Clone)]
pub struct Zipfian {
    n: u64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
}

impl Zipfian {
    const THETA: f64 = 0.99;

    fn new(n: u64) -> Self {
        let theta = Self::THETA;
        let zeta = |count: u64| {
            (1..=count)
                .map(|i| 1.0 / (i as f64).powf(theta))
                .sum::<f64>()
        };
        let zetan = zeta(n);
        let zeta2 = zeta(2.min(n));
        let eta = if n > 1 {
            (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta2 / zetan)
        } else {
            0.0
        };
        Zipfian {
            n,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zetan,
            eta,
        }
    }

    fn next_rank(&self, rng: &mut impl Rng) -> u64 {
        let u: f64 = rng.random();
        let uz = u * self.zetan;
        if uz < 1.0 || self.n == 1 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1;
        }
        let rank = (self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        rank.min(self.n - 1)
    }
}

/// FNV-1a of the 8 bytes of `x`.
fn fnv64(x: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in x.to_le_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn mixes_follow_their_shares() {
        let mut rng = StdRng::seed_from_u64(1);
        let n = 20_000;
        let reads = (0..n)
            .filter(|_| Workload::B.choose(&mut rng) == Op::Read)
            .count();
        assert!((18_600..19_400).contains(&reads), "{reads}");
        assert!((0..1000).all(|_| Workload::C.choose(&mut rng) == Op::Read));
        assert!((0..1000).all(|_| Workload::W.choose(&mut rng) == Op::Update));
        assert!((0..1000).all(|_| Workload::R.choose(&mut rng) == Op::Scan));
        assert!((0..1000).all(|_| Workload::R.scan_len(&mut rng) == RANGE_LEN));
        assert!((0..1000).all(|_| Workload::T.choose(&mut rng) == Op::ReadModifyWrite2));
        let lens: Vec<usize> = (0..1000).map(|_| Workload::E.scan_len(&mut rng)).collect();
        assert!(lens.iter().all(|l| (1..=MAX_SCAN).contains(l)));
        assert!(
            lens.iter().any(|&l| l != lens[0]),
            "E's scans vary in length"
        );
        assert_eq!(Workload::T.min_records(), 2);
        assert_eq!(Workload::T.letter(), "t");
        for w in ["a", "b", "c", "e", "f", "w", "r", "t"] {
            let w: Workload = w.parse().unwrap();
            assert_eq!(w.mix().iter().map(|m| m.1).sum::<u32>(), 100);
        }
        assert!("d".parse::<Workload>().is_err());
    }

    #[test]
    fn keys_are_prefixed_padded_and_ordered() {
        assert_eq!(key(42, 16), b"bench/0000000042".to_vec());
        assert_eq!(key(123, 4), b"bench/123".to_vec());
        assert!(key(9, 16) < key(10, 16));
        assert!(key(u64::MAX, 16).as_slice() < KEY_END);
        assert_eq!(value(7, 3).len(), 7);
        assert_ne!(value(16, 1), value(16, 2));
    }

    #[test]
    fn choosers_stay_in_range_and_zipfian_is_skewed() {
        let mut rng = StdRng::seed_from_u64(7);
        for n in [1, 2, 3, 1000] {
            for zipf in [false, true] {
                let c = KeyChooser::new(n, zipf);
                assert!((0..2000).all(|_| c.next(&mut rng) < n));
            }
        }
        let c = KeyChooser::new(1000, true);
        let mut counts = vec![0u32; 1000];
        for _ in 0..20_000 {
            counts[c.next(&mut rng) as usize] += 1;
        }
        counts.sort_unstable_by(|a, b| b.cmp(a));
        let top10: u32 = counts[..10].iter().sum();
        // Uniform would give about 200 of 20,000 to any ten records.
        assert!(top10 > 4000, "{top10}");
    }

    #[test]
    fn other_record_differs_from_the_first() {
        let mut rng = StdRng::seed_from_u64(3);
        for (n, zipf) in [(2, false), (2, true), (1000, true), (1000, false)] {
            let c = KeyChooser::new(n, zipf);
            for _ in 0..2000 {
                let first = c.next(&mut rng);
                let second = other_record(&c, &mut rng, first);
                assert_ne!(first, second);
                assert!(second < n);
            }
        }
    }
}
