//! The data every engine gets, identical from run to run: decimal keys that sort like their
//! numbers, db_bench-style half-compressible values, and seeded key orders.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// Key length of the peer comparison and the CLI's default (as db_bench's).
pub const KEY_LEN: usize = 16;

/// Writes key number `i` into `out`: decimal, zero-padded to `out.len()`, so keys sort like
/// their numbers (`out` must hold the digits of the largest number used; see [`check_keys`]).
pub fn make_key(i: u64, out: &mut [u8]) {
    let mut n = i;
    for b in out.iter_mut().rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// Checks that `num` keys fit `key_len` decimal digits.
pub fn check_keys(num: u64, key_len: usize) -> Result<(), String> {
    let digits = num.saturating_sub(1).max(1).ilog10() as usize + 1;
    if key_len < digits {
        return Err(format!(
            "{num} keys need keys of at least {digits} bytes, not {key_len}"
        ));
    }
    Ok(())
}

/// db_bench-style value source: a 1 MiB pool in which every `len`-byte piece is random
/// printable bytes repeated, so a value compresses to about half.
#[derive(Clone)]
pub struct ValueGen {
    pool: Vec<u8>,
    pos: usize,
    len: usize,
}

impl ValueGen {
    /// Values of `len` bytes from a pool seeded with `seed`.
    pub fn new(seed: u64, len: usize) -> Self {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_0fda_7a00);
        let mut pool = Vec::with_capacity((1 << 20) + len);
        while pool.len() < (1 << 20).max(len) {
            let half = len.div_ceil(2).max(1);
            let piece: Vec<u8> = (0..half).map(|_| rng.random_range(b' '..=b'~')).collect();
            let mut v = Vec::with_capacity(len);
            while v.len() < len {
                let take = (len - v.len()).min(piece.len());
                v.extend_from_slice(&piece[..take]);
            }
            pool.extend_from_slice(&v);
        }
        ValueGen { pool, pos: 0, len }
    }

    /// The length of every value.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether values are empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The next value.
    pub fn next_value(&mut self) -> &[u8] {
        if self.pos + self.len > self.pool.len() {
            self.pos = 0;
        }
        let start = self.pos;
        self.pos += self.len;
        &self.pool[start..start + self.len]
    }
}

/// `0..num` in a random order fixed by `seed`.
pub fn permutation(num: u64, seed: u64) -> Vec<u64> {
    let mut v: Vec<u64> = (0..num).collect();
    v.shuffle(&mut StdRng::seed_from_u64(seed));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_like_their_numbers() {
        let mut a = [0u8; KEY_LEN];
        let mut b = [0u8; KEY_LEN];
        make_key(99, &mut a);
        make_key(100, &mut b);
        assert!(a < b);
        assert_eq!(&a, b"0000000000000099");
        assert!(check_keys(100_000_000, 8).is_ok());
        assert!(check_keys(100_000_001, 8).is_err());
        assert!(check_keys(1, 1).is_ok());
    }

    #[test]
    fn values_are_half_compressible_and_orders_repeatable() {
        let mut g = ValueGen::new(7, 100);
        let v = g.next_value().to_vec();
        assert_eq!(v.len(), 100);
        assert_eq!(&v[..50], &v[50..], "each value repeats its first half");
        assert_eq!(permutation(50, 3), permutation(50, 3));
        let mut p = permutation(50, 3);
        p.sort_unstable();
        assert_eq!(p, (0..50).collect::<Vec<_>>());
    }
}
