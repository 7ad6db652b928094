//! The shard map: which storage servers hold which key ranges.
//!
//! One definition shared by the controller (which builds, persists and publishes it) and the
//! client (which routes reads with it). The proto conversion lives in
//! `ferrisdb_proto::convert`. Shards are sorted, contiguous and cover the key space once
//! bootstrapped; [`ShardMap::validate`] checks that, and nothing here does I/O.
//!
//! At bootstrap the key space is split into N shards at evenly spaced first-byte boundaries
//! (3 shards: `["", "\x55")`, `["\x55", "\xaa")`, `["\xaa", "")`) and shard `i` is assigned to
//! storage servers `i, i+1, …, i+R-1` (mod N) of the bootstrap list: round-robin, R distinct
//! replicas per shard, every server holding R shards. The map's version is bumped on every
//! change so workers notice changes through their heartbeats.

use crate::error::Error;
use crate::keys::{KeyRange, escape};
use bytes::Bytes;

/// Most shards a first-byte split can produce.
pub const MAX_BOOTSTRAP_SHARDS: usize = 256;

/// One shard: a key range, the storage servers holding a replica of it and, while the data
/// distributor moves it, the team that will hold it next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// The keys of the shard.
    pub range: KeyRange,
    /// Worker ids of the replicas; the first is preferred for reads.
    pub storage_ids: Vec<String>,
    /// While the shard moves: the worker ids of the team taking it over (empty otherwise).
    /// Members not in `storage_ids` fetch the shard and follow its writes; once every one of
    /// them holds it durably, the team replaces `storage_ids` in one map change.
    pub moving_to: Vec<String>,
}

impl Shard {
    /// A shard that is not moving.
    pub fn new(range: KeyRange, storage_ids: Vec<String>) -> Shard {
        Shard {
            range,
            storage_ids,
            moving_to: Vec::new(),
        }
    }

    /// True while the shard moves to another team.
    pub fn is_moving(&self) -> bool {
        !self.moving_to.is_empty()
    }

    /// The members of the destination team that do not hold the shard yet.
    pub fn incoming(&self) -> impl Iterator<Item = &String> {
        self.moving_to
            .iter()
            .filter(|id| !self.storage_ids.contains(id))
    }
}

/// The assignment of the whole key space to storage servers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShardMap {
    /// Bumped on every change; 0 before bootstrap.
    pub version: u64,
    /// Sorted, contiguous shards covering the key space; empty before bootstrap.
    pub shards: Vec<Shard>,
}

impl ShardMap {
    /// Splits the key space over `storage_ids` (one shard each) with `replication` replicas.
    pub fn bootstrap(
        storage_ids: &[String],
        replication: usize,
        version: u64,
    ) -> Result<ShardMap, Error> {
        let n = storage_ids.len();
        check_layout(n, replication)?;
        let mut distinct = storage_ids.to_vec();
        distinct.sort();
        distinct.dedup();
        if distinct.len() != n {
            return Err(Error::InvalidArgument(
                "bootstrap storage ids are not distinct".into(),
            ));
        }
        let bounds = split_points(n);
        let shards = (0..n)
            .map(|i| {
                let begin = bounds[i].clone();
                let end = bounds.get(i + 1).cloned().unwrap_or_default();
                let storage_ids = (0..replication)
                    .map(|j| storage_ids[(i + j) % n].clone())
                    .collect();
                Ok(Shard::new(KeyRange::new(begin, end)?, storage_ids))
            })
            .collect::<Result<_, Error>>()?;
        Ok(ShardMap { version, shards })
    }

    /// The ranges `id` holds a replica of (sorted).
    pub fn ranges_of(&self, id: &str) -> Vec<KeyRange> {
        self.shards
            .iter()
            .filter(|s| s.storage_ids.iter().any(|x| x == id))
            .map(|s| s.range.clone())
            .collect()
    }

    /// The ranges `id` is taking over: it is in their destination team but not yet a
    /// replica (sorted).
    pub fn incoming_ranges_of(&self, id: &str) -> Vec<KeyRange> {
        self.shards
            .iter()
            .filter(|s| s.incoming().any(|x| x == id))
            .map(|s| s.range.clone())
            .collect()
    }

    /// True once the key space has been assigned.
    pub fn is_bootstrapped(&self) -> bool {
        !self.shards.is_empty()
    }

    /// The shard holding `key`, if bootstrapped.
    pub fn shard_for(&self, key: &[u8]) -> Option<&Shard> {
        self.shard_index(key).and_then(|i| self.shards.get(i))
    }

    /// Index of the shard holding `key` (binary search over the sorted shards).
    pub fn shard_index(&self, key: &[u8]) -> Option<usize> {
        // Shards are sorted by begin: the holder is the last shard beginning at or before key.
        let after = self.shards.partition_point(|s| &s.range.begin[..] <= key);
        let i = after.checked_sub(1)?;
        self.shards
            .get(i)
            .filter(|s| s.range.contains(key))
            .map(|_| i)
    }

    /// Checks the invariants of a bootstrapped map: shards sorted, contiguous, covering the
    /// whole key space, each with at least one replica. An empty map is valid.
    pub fn validate(&self) -> Result<(), String> {
        let Some(first) = self.shards.first() else {
            return Ok(());
        };
        if !first.range.begin.is_empty() {
            return Err(format!(
                "first shard begins at {:?}, not \"\"",
                escape(&first.range.begin)
            ));
        }
        for pair in self.shards.windows(2) {
            if pair[0].range.end.is_empty() || pair[0].range.end != pair[1].range.begin {
                return Err(format!(
                    "shard ending at {:?} is not followed by one beginning there (next begins at {:?})",
                    escape(&pair[0].range.end),
                    escape(&pair[1].range.begin)
                ));
            }
        }
        if let Some(last) = self.shards.last().filter(|s| !s.range.end.is_empty()) {
            return Err(format!(
                "last shard ends at {:?}, not at the end",
                escape(&last.range.end)
            ));
        }
        if let Some(s) = self
            .shards
            .iter()
            .find(|s| s.storage_ids.is_empty() || s.range.is_empty())
        {
            return Err(format!(
                "shard at {:?} is empty or has no replicas",
                escape(&s.range.begin)
            ));
        }
        for s in &self.shards {
            for team in [&s.storage_ids, &s.moving_to] {
                let mut ids: Vec<&String> = team.iter().collect();
                ids.sort();
                ids.dedup();
                if ids.len() != team.len() {
                    return Err(format!(
                        "shard at {:?} names a storage server twice in one team: {team:?}",
                        escape(&s.range.begin)
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Checks that `shards` shards with `replication` distinct replicas each can be laid out.
pub fn check_layout(shards: usize, replication: usize) -> Result<(), Error> {
    if shards == 0 || shards > MAX_BOOTSTRAP_SHARDS {
        return Err(Error::InvalidArgument(format!(
            "storage server count must be 1..={MAX_BOOTSTRAP_SHARDS}, got {shards}"
        )));
    }
    if replication == 0 || replication > shards {
        return Err(Error::InvalidArgument(format!(
            "replication {replication} needs between 1 and {shards} storage servers"
        )));
    }
    Ok(())
}

/// The `n` shard begin keys: `""` then one-byte keys at `floor(i * 256 / n)`.
fn split_points(n: usize) -> Vec<Bytes> {
    (0..n)
        .map(|i| match u8::try_from(i * 256 / n.max(1)) {
            Ok(0) | Err(_) => Bytes::new(),
            Ok(b) => Bytes::from(vec![b]),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("ss-{i}")).collect()
    }

    #[test]
    fn three_shards_split_at_0x55_and_0xaa_with_round_robin_replicas() {
        let map = ShardMap::bootstrap(&ids(3), 2, 1).unwrap();
        let ranges: Vec<_> = map
            .shards
            .iter()
            .map(|s| (s.range.begin.to_vec(), s.range.end.to_vec()))
            .collect();
        assert_eq!(
            ranges,
            vec![
                (vec![], vec![0x55]),
                (vec![0x55], vec![0xaa]),
                (vec![0xaa], vec![])
            ]
        );
        let replicas: Vec<_> = map.shards.iter().map(|s| s.storage_ids.join(",")).collect();
        assert_eq!(replicas, ["ss-0,ss-1", "ss-1,ss-2", "ss-2,ss-0"]);
        assert_eq!(map.version, 1);
        map.validate().unwrap();
        assert_eq!(map.shard_for(b"\x60").unwrap().storage_ids[0], "ss-1");
        assert_eq!(map.shard_for(b"\xff\xff").unwrap().storage_ids[0], "ss-2");
    }

    #[test]
    fn every_server_holds_replication_shards_and_replicas_are_distinct() {
        for n in [1, 2, 5, 7, 256] {
            for r in 1..=n.min(3) {
                let map = ShardMap::bootstrap(&ids(n), r, 1).unwrap();
                map.validate().unwrap();
                assert_eq!(map.shards.len(), n);
                for s in &map.shards {
                    let mut d = s.storage_ids.clone();
                    d.dedup();
                    d.sort();
                    d.dedup();
                    assert_eq!(d.len(), r);
                }
                for id in ids(n) {
                    let held = map
                        .shards
                        .iter()
                        .filter(|s| s.storage_ids.contains(&id))
                        .count();
                    assert_eq!(held, r);
                }
            }
        }
    }

    #[test]
    fn shard_index_finds_the_holder_at_every_boundary() {
        let map = ShardMap::bootstrap(&ids(3), 1, 1).unwrap();
        for (key, want) in [
            (&b""[..], 0),
            (b"\x54\xff", 0),
            (b"\x55", 1),
            (b"\xa9", 1),
            (b"\xaa", 2),
            (b"\xff\xff", 2),
        ] {
            assert_eq!(map.shard_index(key), Some(want), "{key:?}");
        }
        assert_eq!(ShardMap::default().shard_index(b"a"), None);
    }

    #[test]
    fn rejects_impossible_layouts() {
        assert!(ShardMap::bootstrap(&ids(1), 2, 1).is_err());
        assert!(ShardMap::bootstrap(&[], 1, 1).is_err());
        assert!(ShardMap::bootstrap(&ids(3), 0, 1).is_err());
        assert!(ShardMap::bootstrap(&ids(257), 1, 1).is_err());
        assert!(ShardMap::bootstrap(&["a".into(), "a".into()], 1, 1).is_err());
    }

    #[test]
    fn a_moving_shard_names_its_incoming_replicas() {
        let mut map = ShardMap::bootstrap(&ids(3), 2, 1).unwrap();
        map.shards[0].moving_to = vec!["ss-1".into(), "ss-2".into()];
        map.validate().unwrap();
        assert!(map.shards[0].is_moving() && !map.shards[1].is_moving());
        assert_eq!(
            map.incoming_ranges_of("ss-2"),
            vec![map.shards[0].range.clone()]
        );
        assert!(map.incoming_ranges_of("ss-1").is_empty());
        assert_eq!(map.ranges_of("ss-0").len(), 2);
        map.shards[0].moving_to = vec!["ss-2".into(), "ss-2".into()];
        assert!(map.validate().unwrap_err().contains("twice"));
    }

    #[test]
    fn validate_catches_gaps() {
        let mut map = ShardMap::bootstrap(&ids(3), 1, 1).unwrap();
        map.shards.remove(1);
        assert!(map.validate().unwrap_err().contains("not followed"));
        assert!(ShardMap::default().validate().is_ok());
    }
}
