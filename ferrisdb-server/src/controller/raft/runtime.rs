//! The async runtime openraft runs the controller group on: tokio, as openraft's own
//! [`openraft::TokioRuntime`], except that its random draws (each replica's election
//! timeout, picked anew whenever it waits for a leader) come from [`ferrisdb_core::random`]:
//! the operating system's random source in a server, the seed in the simulator, so that a
//! simulated controller group elects the same leader at the same moment in every run of a
//! seed.

use std::future::Future;
use std::time::Duration;

use openraft::async_runtime::{AsyncRuntime, TokioOneShotSender};
use openraft::{OptionalSend, TokioInstant, TokioRuntime};

/// openraft's tokio runtime with FerrisDB's random source.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RaftRuntime;

/// A random generator drawing from [`ferrisdb_core::random`] (openraft needs the `rand_core`
/// 0.6 traits; FerrisDB's generator is behind a function).
#[derive(Debug, Default, Clone, Copy)]
pub struct CoreRandom;

impl rand_core_06::RngCore for CoreRandom {
    fn next_u32(&mut self) -> u32 {
        // The high half: the better half of most generators' output.
        (ferrisdb_core::random::next_u64() >> 32) as u32
    }

    fn next_u64(&mut self) -> u64 {
        ferrisdb_core::random::next_u64()
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let word = ferrisdb_core::random::next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core_06::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl AsyncRuntime for RaftRuntime {
    type JoinError = <TokioRuntime as AsyncRuntime>::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = <TokioRuntime as AsyncRuntime>::JoinHandle<T>;
    type Sleep = <TokioRuntime as AsyncRuntime>::Sleep;
    type Instant = TokioInstant;
    type TimeoutError = <TokioRuntime as AsyncRuntime>::TimeoutError;
    type Timeout<R, T: Future<Output = R> + OptionalSend> =
        <TokioRuntime as AsyncRuntime>::Timeout<R, T>;
    type ThreadLocalRng = CoreRandom;
    type OneshotSender<T: OptionalSend> = TokioOneShotSender<T>;
    type OneshotReceiver<T: OptionalSend> = <TokioRuntime as AsyncRuntime>::OneshotReceiver<T>;
    type OneshotReceiverError = <TokioRuntime as AsyncRuntime>::OneshotReceiverError;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        TokioRuntime::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        TokioRuntime::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        TokioRuntime::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        TokioRuntime::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        TokioRuntime::timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        TokioRuntime::is_panic(join_error)
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        CoreRandom
    }

    fn oneshot<T>() -> (Self::OneshotSender<T>, Self::OneshotReceiver<T>)
    where
        T: OptionalSend,
    {
        TokioRuntime::oneshot()
    }
}

#[cfg(test)]
mod tests {
    use rand_08::Rng;

    use super::*;

    #[test]
    fn election_timeouts_follow_a_seeded_thread_and_stay_in_their_range() {
        let draws = |seed| {
            std::thread::spawn(move || {
                ferrisdb_core::random::seed_this_thread(seed);
                let mut rng = RaftRuntime::thread_rng();
                let timeouts: Vec<u64> = (0..32).map(|_| rng.gen_range(150..300)).collect();
                let mut bytes = [0u8; 13];
                rng.fill(&mut bytes[..]);
                (timeouts, bytes)
            })
            .join()
            .unwrap()
        };
        let (timeouts, bytes) = draws(5);
        assert_eq!((timeouts.clone(), bytes), draws(5));
        assert_ne!(timeouts, draws(6).0);
        assert!(timeouts.iter().all(|t| (150..300).contains(t)));
        // The draws spread over the range (32 draws all in one half: 1 in 2^31).
        assert!(timeouts.iter().any(|t| *t < 225) && timeouts.iter().any(|t| *t >= 225));
        assert_ne!(bytes, [0; 13]);
    }
}
