//! The durability workload: writers commit blind multi-key writes, each putting its unique tag
//! under [`KEYS_PER_WRITE`] keys spread over the shards, and remember how each commit ended.
//! After healing, one range read of the whole key space decides, per write, which of its keys
//! hold its tag (`ferrisdb_check::durability`).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use ferrisdb_check::Outcome;
use ferrisdb_check::durability::TaggedWrite;
use ferrisdb_client::{Database, RangeOptions};
use tokio::time::Instant;

use super::attempt::{Ended, run_once};
use super::bank::kind;
use super::{Counts, spread};

/// Keys each write puts its tag under.
pub const KEYS_PER_WRITE: usize = 3;
const TXN_DEADLINE: Duration = Duration::from_secs(20);

fn key(tag: u64, i: usize) -> Bytes {
    let mut key = vec![spread(tag.wrapping_add(i as u64)), b'd', b'/'];
    key.extend_from_slice(&tag.to_be_bytes());
    key.push(i as u8);
    Bytes::from(key)
}

/// A writer until `until`: returns each write's tag and outcome.
pub async fn writer(db: Database, id: u64, until: Instant) -> (Counts, Vec<(u64, Outcome)>) {
    let mut counts = Counts::default();
    let mut writes = Vec::new();
    let mut n = 0u64;
    while Instant::now() < until {
        let tag = (id << 40) | n;
        n += 1;
        let ended = run_once(&db, Instant::now() + TXN_DEADLINE, |tx| async move {
            for i in 0..KEYS_PER_WRITE {
                tx.set(key(tag, i), tag.to_be_bytes())?;
            }
            Ok(())
        })
        .await;
        counts.add(kind(&ended));
        let outcome = match ended {
            Ended::Ok(()) => Outcome::Ok,
            Ended::Fail(_) => Outcome::Fail,
            Ended::Unknown(_) => Outcome::Info,
        };
        writes.push((tag, outcome));
        // Blind writes are cheap: pace them so the other workloads get the cluster too, and
        // do not spin while the coordinator is down (a refused connection is reported
        // commit-unknown at once).
        let pause = if outcome == Outcome::Ok { 10 } else { 100 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    (counts, writes)
}

/// Reads the whole key space once and says, for every write, which keys hold its tag.
pub async fn observe(db: &Database, writes: &[(u64, Outcome)]) -> Vec<TaggedWrite> {
    let all = db
        .run(|tx| async move {
            tx.get_range(b"", b"", RangeOptions::default())
                .collect_vec()
                .await
        })
        .await
        .expect("final range read");
    let stored: BTreeMap<Bytes, Bytes> = all.into_iter().map(|kv| (kv.key, kv.value)).collect();
    writes
        .iter()
        .map(|&(tag, outcome)| TaggedWrite {
            tag,
            outcome,
            found: (0..KEYS_PER_WRITE)
                .map(|i| {
                    stored
                        .get(&key(tag, i))
                        .is_some_and(|v| v[..] == tag.to_be_bytes())
                })
                .collect(),
        })
        .collect()
}
