//! Shared by the fuzz corpus smoke tests of the decoding crates: a small deterministic
//! mutator and a runner that feeds seeds plus mutations of each through a fuzzing entry
//! point. No I/O (the tests read the corpus files). Not part of the core API.

/// A deterministic xorshift64* generator (seeded, so every run mutates identically).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced by a fixed odd constant).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next_u64() % n as u64) as usize
    }
}

/// One mutation of `seed`: bit flips, random bytes, truncation, insertion, duplication of a
/// slice, or an interesting little-endian or varint length written at a random offset.
pub fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = seed.to_vec();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let at = rng.below(out.len().max(1));
        match rng.below(7) {
            0 if !out.is_empty() => out[at] ^= 1 << rng.below(8),
            1 if !out.is_empty() => out[at] = rng.next_u64() as u8,
            2 => out.truncate(at),
            3 => {
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                out.splice(at.min(out.len())..at.min(out.len()), bytes);
            }
            4 if !out.is_empty() => {
                let end = (at + 1 + rng.below(64)).min(out.len());
                let slice = out[at..end].to_vec();
                out.splice(end..end, slice);
            }
            5 => {
                let values = [0u32, 1, 0x7f, 0x80, 0xffff, 0x7fff_ffff, u32::MAX];
                let v = values[rng.below(values.len())].to_le_bytes();
                let end = (at + 4).min(out.len());
                out.splice(at.min(out.len())..end, v);
            }
            _ => {
                let varint = [0xff, 0xff, 0xff, 0xff, 0x0f];
                let end = (at + 2).min(out.len());
                out.splice(at.min(out.len())..end, varint);
            }
        }
    }
    out
}

/// What [`run_corpus`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CorpusRun {
    /// Corpus files fed as they are.
    pub files: usize,
    /// Mutated inputs fed.
    pub mutations: usize,
}

/// Feeds every seed to `target`, then `mutations_per_seed` mutations of each (seeded by the
/// seed's position, so runs are reproducible), and returns the counts. A panic in `target`
/// propagates.
pub fn run_corpus(
    seeds: &[Vec<u8>],
    mutations_per_seed: usize,
    target: impl Fn(&[u8]),
) -> CorpusRun {
    let mut run = CorpusRun::default();
    for (i, seed) in seeds.iter().enumerate() {
        target(seed);
        run.files += 1;
        let mut rng = Rng::new(i as u64 + 1);
        for _ in 0..mutations_per_seed {
            target(&mutate(seed, &mut rng));
            run.mutations += 1;
        }
    }
    run
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_are_deterministic_and_change_the_input() {
        let seed = b"hello fuzzing world".to_vec();
        let (mut a, mut b) = (Rng::new(3), Rng::new(3));
        let first: Vec<_> = (0..50).map(|_| mutate(&seed, &mut a)).collect();
        let second: Vec<_> = (0..50).map(|_| mutate(&seed, &mut b)).collect();
        assert_eq!(first, second);
        assert!(first.iter().any(|m| *m != seed));
        assert!(mutate(&[], &mut a).len() <= 16 + 5 * 4);
    }
}
