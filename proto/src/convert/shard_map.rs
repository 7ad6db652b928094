//! [`ShardMap`] ↔ `v1::ShardMap` (used by the controller to publish the map and by clients
//! and workers to read it).

use ferrisdb_core::{Error, KeyRange, Shard, ShardMap};

use super::required;
use crate::v1;

impl From<&ShardMap> for v1::ShardMap {
    fn from(map: &ShardMap) -> Self {
        v1::ShardMap {
            version: map.version,
            shards: map
                .shards
                .iter()
                .map(|s| v1::Shard {
                    range: Some(v1::KeyRange::from(&s.range)),
                    storage_ids: s.storage_ids.clone(),
                    moving_to: s.moving_to.clone(),
                })
                .collect(),
        }
    }
}

impl TryFrom<v1::ShardMap> for ShardMap {
    type Error = Error;

    /// Converts every shard and checks the map's invariants ([`ShardMap::validate`]).
    fn try_from(map: v1::ShardMap) -> Result<Self, Error> {
        let shards = map
            .shards
            .into_iter()
            .map(|s| {
                let range = KeyRange::try_from(required(s.range, "shard.range")?)?;
                Ok(Shard {
                    range,
                    storage_ids: s.storage_ids,
                    moving_to: s.moving_to,
                })
            })
            .collect::<Result<_, Error>>()?;
        let map = ShardMap {
            version: map.version,
            shards,
        };
        map.validate().map_err(Error::InvalidArgument)?;
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_maps_round_trip_and_are_validated() {
        let ids: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let map = ShardMap::bootstrap(&ids, 2, 3).unwrap();
        assert_eq!(ShardMap::try_from(v1::ShardMap::from(&map)).unwrap(), map);
        let mut wire = v1::ShardMap::from(&map);
        wire.shards.pop();
        assert!(ShardMap::try_from(wire.clone()).is_err());
        wire.shards[0].range = None;
        assert!(ShardMap::try_from(wire).is_err());
    }
}
