//! The model the log-server workload checks its commit log against: every batch written and
//! not lost, what was acknowledged, how far truncation was asked.

use bytes::Bytes;
use ferrisdb_core::{Mutation, Version};
use ferrisdb_server::log::record;
use rand::Rng;
use rand::rngs::StdRng;

/// A commit batch: its version and mutations.
pub(crate) type Batch = (Version, Vec<Mutation>);

/// What a log must hold.
#[derive(Debug, Default)]
pub(crate) struct LogModel {
    /// Every batch written and not lost, in version order.
    pub batches: Vec<Batch>,
    /// Highest version synced and published.
    pub acked: Version,
    /// Highest version written (submitted or appended).
    pub written: Version,
    /// Highest truncation point asked for (a reset's start counts as one).
    pub truncated: Version,
}

impl LogModel {
    /// Records a batch written at `version` (not yet acknowledged).
    pub fn write(&mut self, version: Version, mutations: Vec<Mutation>) {
        self.batches.push((version, mutations));
        self.written = version;
    }

    /// The batches with `after < version ≤ through`.
    pub fn between(&self, after: Version, through: Version) -> Vec<&Batch> {
        self.batches
            .iter()
            .filter(|(v, _)| *v > after && *v <= through)
            .collect()
    }

    /// Checks a reopened log that ends at `last`, starts after `retained` and holds
    /// `records` after it, then forgets what the crash lost. `any_start`: the log may start
    /// after any version (an interrupted reset removed a prefix of it).
    pub fn check_recovered(
        &mut self,
        last: Version,
        retained: Version,
        records: &[Vec<u8>],
        any_start: bool,
    ) -> Result<(), String> {
        if last < self.acked {
            return Err(format!(
                "acknowledged version {} lost: the log recovered only through {last}",
                self.acked
            ));
        }
        if last > self.written {
            return Err(format!(
                "recovered version {last} was never written (last {})",
                self.written
            ));
        }
        if any_start {
            self.truncated = self.truncated.max(retained);
        } else if retained > self.truncated {
            return Err(format!(
                "the log starts after {retained}, but truncation was only asked through {}",
                self.truncated
            ));
        }
        self.batches.retain(|(v, _)| *v <= last);
        let want = self.between(retained, last);
        if records.len() != want.len() {
            return Err(format!(
                "the recovered log holds {} batches after {retained}, {} were written",
                records.len(),
                want.len()
            ));
        }
        check_chain(records, retained, &want)
            .map_err(|reason| format!("the recovered log: {reason}"))?;
        self.acked = last;
        self.written = last;
        Ok(())
    }
}

/// One to four random sets and clears of 30 keys.
pub(crate) fn random_mutations(rng: &mut StdRng) -> Vec<Mutation> {
    (0..rng.random_range(1..=4))
        .map(|_| {
            let key = Bytes::from(format!("key{:02}", rng.random_range(0..30)));
            if rng.random_bool(0.8) {
                let len = rng.random_range(0..300);
                let value: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                Mutation::Set {
                    key,
                    value: Bytes::from(value),
                }
            } else {
                Mutation::Clear { key }
            }
        })
        .collect()
}

/// Checks that `records` are the first `records.len()` of `want`, chained from `after`.
pub(crate) fn check_chain(
    records: &[Vec<u8>],
    after: Version,
    want: &[&Batch],
) -> Result<(), String> {
    let mut prev = after;
    for (payload, (version, mutations)) in records.iter().zip(want) {
        let rec = record::decode(payload).map_err(|e| format!("undecodable record: {e}"))?;
        if rec.version != *version || rec.prev_version != prev {
            return Err(format!(
                "record {} after {} where {version} after {prev} was expected",
                rec.version, rec.prev_version
            ));
        }
        if rec.mutations != *mutations {
            return Err(format!(
                "record {version} holds other mutations than written"
            ));
        }
        prev = rec.version;
    }
    Ok(())
}
