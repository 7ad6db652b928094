//! Where FerrisDB's random ids and jitter come from: the operating system's random source,
//! or — on a thread the simulator seeded ([`seed_this_thread`]) — a generator drawn from the
//! seed, so that a simulated cluster's ids (worker ids, cluster ids, idempotency ids, retry
//! jitter) are the same in every run of a seed.

use std::cell::RefCell;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

thread_local! {
    static SEEDED: RefCell<Option<StdRng>> = const { RefCell::new(None) };
}

/// From now on, random values drawn on this thread follow `seed` (the simulator, whose
/// whole cluster runs on one thread).
pub fn seed_this_thread(seed: u64) {
    SEEDED.with(|rng| *rng.borrow_mut() = Some(StdRng::seed_from_u64(seed)));
}

/// A random `u64`: from the seeded generator on a seeded thread, else from the OS.
pub fn next_u64() -> u64 {
    SEEDED.with(|rng| match rng.borrow_mut().as_mut() {
        Some(seeded) => seeded.random(),
        None => rand::random(),
    })
}

/// A random value in `0..=max` (uniform up to a bias of `max / 2^64`, which jitter and ids
/// can ignore).
pub fn up_to(max: u64) -> u64 {
    match max.checked_add(1) {
        Some(n) => next_u64() % n,
        None => next_u64(),
    }
}

/// 16 random bytes (an id).
pub fn bytes16() -> [u8; 16] {
    let mut out = [0; 16];
    out[..8].copy_from_slice(&next_u64().to_le_bytes());
    out[8..].copy_from_slice(&next_u64().to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seeded_thread_draws_the_same_values_every_time_and_others_do_not_follow_it() {
        let draw = |seed| {
            std::thread::spawn(move || {
                seed_this_thread(seed);
                (next_u64(), up_to(10), bytes16())
            })
            .join()
            .unwrap()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        // An unseeded thread draws from the OS: two draws differ (1 in 2^64 they would not).
        let unseeded = std::thread::spawn(|| (next_u64(), next_u64()))
            .join()
            .unwrap();
        assert_ne!(unseeded.0, unseeded.1);
        for max in [0, 1, 5, u64::MAX] {
            assert!(up_to(max) <= max);
        }
    }
}
