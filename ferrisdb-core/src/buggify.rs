//! BUGGIFY: fault points in rare paths, as FoundationDB has them. Code marks a place where a
//! legal but unusual thing may happen — a slow fsync, a batch held back, an answer lost on
//! the way back — with [`buggify!`](crate::buggify!): `if buggify!() { ... }`. In a server
//! it is always false (one thread-local read). In the simulator, once a seed's thread has
//! called [`enable_on_this_thread`], each point is switched on for the run with probability
//! 1/4 when it is first reached, and then fires with its probability (1/4 by default) each
//! time it is reached — both drawn from the seed ([`crate::random`]), so a run that found
//! something replays it.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

thread_local! {
    static ENABLED: Cell<bool> = const { Cell::new(false) };
    /// Points that fired since [`enable_on_this_thread`].
    static FIRED: Cell<u64> = const { Cell::new(0) };
    /// Whether each point reached so far is on for this run, by file, line and column.
    static POINTS: RefCell<BTreeMap<(&'static str, u32, u32), bool>> =
        const { RefCell::new(BTreeMap::new()) };
}

/// Switches BUGGIFY on for this thread (the simulator, at the start of a seed: every point
/// is chosen afresh).
pub fn enable_on_this_thread() {
    ENABLED.with(|on| on.set(true));
    FIRED.with(|fired| fired.set(0));
    POINTS.with(|points| points.borrow_mut().clear());
}

/// How many times a point fired on this thread since [`enable_on_this_thread`].
pub fn fired_on_this_thread() -> u64 {
    FIRED.with(Cell::get)
}

/// Switches BUGGIFY off for this thread.
pub fn disable_on_this_thread() {
    ENABLED.with(|on| on.set(false));
}

/// Whether the point at `file:line:column` fires now (see the module docs); use
/// [`buggify!`](crate::buggify!) rather than calling this.
pub fn fires(file: &'static str, line: u32, column: u32, probability: f64) -> bool {
    if !ENABLED.with(Cell::get) {
        return false;
    }
    let on = POINTS.with(|points| {
        *points
            .borrow_mut()
            .entry((file, line, column))
            .or_insert_with(|| crate::random::up_to(3) == 0)
    });
    let fires = on && chance(probability);
    if fires {
        FIRED.with(|fired| fired.set(fired.get() + 1));
    }
    fires
}

/// True with probability `p`, drawn from [`crate::random`].
pub fn chance(p: f64) -> bool {
    // 53 random bits: a uniform draw in [0, 1).
    let draw = (crate::random::next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    draw < p
}

/// `buggify!()` (fires a quarter of the times it is reached, at a point switched on for the
/// run) or `buggify!(p)` (fires with probability `p`): always false outside the simulator.
/// See [`mod@crate::buggify`].
#[macro_export]
macro_rules! buggify {
    () => {
        $crate::buggify::fires(file!(), line!(), column!(), 0.25)
    };
    ($probability:expr) => {
        $crate::buggify::fires(file!(), line!(), column!(), $probability)
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn off_it_never_fires_and_on_each_point_is_chosen_once_per_run_from_the_seed() {
        let run = |seed: u64, enabled: bool| {
            std::thread::spawn(move || {
                crate::random::seed_this_thread(seed);
                if enabled {
                    super::enable_on_this_thread();
                }
                let mut fired = Vec::new();
                for _ in 0..200 {
                    fired.push((
                        crate::buggify!(),
                        crate::buggify!(1.0),
                        crate::buggify!(0.0),
                    ));
                }
                fired
            })
            .join()
            .unwrap()
        };
        assert!(run(1, false).iter().all(|f| *f == (false, false, false)));
        let counted = std::thread::spawn(|| {
            crate::random::seed_this_thread(3);
            super::enable_on_this_thread();
            let fired = (0..100).filter(|_| crate::buggify!(1.0)).count() as u64;
            (fired, super::fired_on_this_thread())
        })
        .join()
        .unwrap();
        assert_eq!(counted.0, counted.1);
        // The same seed, the same choices.
        assert_eq!(run(7, true), run(7, true));
        let mut points_on = [0usize; 2];
        for seed in 0..40 {
            let fired = run(seed, true);
            assert!(fired.iter().all(|f| !f.2), "probability 0 never fires");
            // A point is on or off for the whole run: at probability 1 it fires every time
            // or never.
            let always = fired.iter().all(|f| f.1);
            assert!(always || fired.iter().all(|f| !f.1));
            points_on[0] += usize::from(fired.iter().any(|f| f.0));
            points_on[1] += usize::from(always);
            if fired.iter().any(|f| f.0) {
                let times = fired.iter().filter(|f| f.0).count();
                assert!((20..=90).contains(&times), "fired {times} of 200 at 1/4");
            }
        }
        // About a quarter of the runs switch each point on.
        for on in points_on {
            assert!((3..=20).contains(&on), "{on} of 40 runs");
        }
    }
}
