//! [`Trace`]: a running hash of everything a simulation did, so two runs of one seed can be
//! compared by one number. Events are folded in with FNV-1a (64-bit); the last few are kept
//! as text to explain a failure.

use std::collections::VecDeque;
use std::fmt::Write as _;

/// Events kept as text for failure reports.
const TAIL_EVENTS: usize = 40;

/// The hash of a run's events, and the last of them.
#[derive(Debug, Clone)]
pub struct Trace {
    hash: u64,
    events: u64,
    tail: VecDeque<String>,
}

impl Default for Trace {
    fn default() -> Self {
        Trace {
            hash: 0xcbf2_9ce4_8422_2325,
            events: 0,
            tail: VecDeque::new(),
        }
    }
}

impl Trace {
    /// Folds one event into the hash.
    pub fn record(&mut self, event: impl Into<String>) {
        let event = event.into();
        for byte in event.bytes().chain(std::iter::once(b'\n')) {
            self.hash ^= u64::from(byte);
            self.hash = self.hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.events += 1;
        if self.tail.len() == TAIL_EVENTS {
            self.tail.pop_front();
        }
        self.tail.push_back(event);
    }

    /// The hash so far.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// Events recorded so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// The last events, one per line.
    pub fn tail(&self) -> String {
        let mut out = String::new();
        for event in &self.tail {
            let _ = writeln!(out, "  {event}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_events_hash_equal_and_order_matters() {
        let mut a = Trace::default();
        let mut b = Trace::default();
        let mut c = Trace::default();
        for t in [&mut a, &mut b] {
            t.record("put k1");
            t.record("flush");
        }
        c.record("flush");
        c.record("put k1");
        assert_eq!(a.hash(), b.hash());
        assert_ne!(a.hash(), c.hash());
        assert_eq!(a.events(), 2);
        assert!(a.tail().contains("put k1"));
    }
}
