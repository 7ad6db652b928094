use super::*;

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("ss-{i}")).collect()
}

fn live(id: &str) -> ServerState {
    ServerState {
        id: id.into(),
        healthy: true,
        failed: false,
        excluded: false,
        ready: Vec::new(),
        ready_map_version: u64::MAX,
        sizes: Vec::new(),
    }
}

fn dead(id: &str) -> ServerState {
    ServerState {
        id: id.into(),
        healthy: false,
        failed: true,
        excluded: false,
        ready: Vec::new(),
        ready_map_version: u64::MAX,
        sizes: Vec::new(),
    }
}

fn held(shards: &[Shard], id: &str) -> usize {
    shards
        .iter()
        .filter(|s| s.storage_ids.iter().any(|x| x == id))
        .count()
}

#[test]
fn a_balanced_healthy_cluster_is_left_alone() {
    let map = ShardMap::bootstrap(&ids(3), 2, 1).unwrap();
    let servers: Vec<_> = ids(3).iter().map(|i| live(i)).collect();
    assert_eq!(
        plan(&map, &servers, 2, None, &MoveVersions::default()),
        None
    );
    assert_eq!(
        plan(
            &ShardMap::default(),
            &servers,
            2,
            None,
            &MoveVersions::default()
        ),
        None
    );
}

#[test]
fn a_failed_server_is_replaced_on_each_of_its_shards_then_handed_over() {
    let map = ShardMap::bootstrap(&ids(3), 2, 1).unwrap();
    let mut servers = vec![live("ss-0"), dead("ss-1"), live("ss-2"), live("ss-3")];
    let (shards, why) = plan(&map, &servers, 2, None, &MoveVersions::default()).unwrap();
    // ss-1 held shards 0 and 1: each moves to a team without it.
    let moving: Vec<&Shard> = shards.iter().filter(|s| s.is_moving()).collect();
    assert_eq!(moving.len(), 2, "{why:?}");
    for s in &moving {
        assert!(!s.moving_to.contains(&"ss-1".to_string()));
        assert_eq!(s.moving_to.len(), 2);
        // The live replica stays in the team.
        assert!(
            s.storage_ids
                .iter()
                .any(|id| s.moving_to.contains(id) && id != "ss-1")
        );
    }
    // The spare server, holding nothing, is picked first.
    assert!(
        moving
            .iter()
            .any(|s| s.moving_to.contains(&"ss-3".to_string()))
    );
    // Nothing is handed over before the incoming servers are ready.
    let map2 = ShardMap {
        version: 2,
        shards: shards.clone(),
    };
    assert_eq!(
        plan(&map2, &servers, 2, None, &MoveVersions::default()),
        None
    );
    for s in &moving {
        for id in s.incoming() {
            let server = servers.iter_mut().find(|x| x.id == *id).unwrap();
            server.ready.push(s.range.clone());
        }
    }
    let (done, why) = plan(&map2, &servers, 2, None, &MoveVersions::default()).unwrap();
    assert!(why.iter().all(|w| w.contains("handed over")), "{why:?}");
    assert!(done.iter().all(|s| !s.is_moving()));
    assert_eq!(held(&done, "ss-1"), 0);
    assert!(done.iter().all(|s| s.storage_ids.len() == 2));
}

#[test]
fn a_failed_incoming_server_is_replaced_in_the_move() {
    let mut map = ShardMap::bootstrap(&ids(3), 2, 1).unwrap();
    map.shards[0].moving_to = vec!["ss-0".into(), "ss-3".into()];
    let servers = vec![
        live("ss-0"),
        live("ss-1"),
        live("ss-2"),
        dead("ss-3"),
        live("ss-4"),
    ];
    let (shards, why) = plan(&map, &servers, 2, None, &MoveVersions::default()).unwrap();
    assert_eq!(shards[0].moving_to, vec!["ss-0", "ss-4"], "{why:?}");
}

#[test]
fn a_new_server_receives_shards_until_counts_are_within_one() {
    let mut map = ShardMap::bootstrap(&ids(3), 2, 1).unwrap();
    let mut servers: Vec<_> = ids(4).iter().map(|i| live(i)).collect();
    for round in 0..10 {
        let Some((shards, _)) = plan(&map, &servers, 2, None, &MoveVersions::default()) else {
            break;
        };
        // Every incoming server gets ready at once.
        for s in shards.iter().filter(|s| s.is_moving()) {
            for id in s.incoming() {
                let server = servers.iter_mut().find(|x| x.id == *id).unwrap();
                server.ready.push(s.range.clone());
            }
        }
        map = ShardMap {
            version: map.version + 1,
            shards,
        };
        map.validate().unwrap();
        assert!(round < 9, "never settles");
    }
    let counts: Vec<usize> = ids(4).iter().map(|id| held(&map.shards, id)).collect();
    assert!(counts.iter().all(|&c| (1..=2).contains(&c)), "{counts:?}");
    assert!(held(&map.shards, "ss-3") >= 1);
}

#[test]
fn a_shard_whose_every_replica_failed_is_left_for_them_to_come_back() {
    let map = ShardMap::bootstrap(&ids(2), 1, 1).unwrap();
    let servers = vec![dead("ss-0"), live("ss-1"), live("ss-2")];
    let (shards, _) = plan(&map, &servers, 1, None, &MoveVersions::default())
        .unwrap_or((map.shards.clone(), vec![]));
    assert_eq!(shards[0].storage_ids, vec!["ss-0"]);
    assert!(!shards[0].is_moving());
}

#[test]
fn with_no_spare_a_failed_replica_is_dropped_from_the_map() {
    let map = ShardMap::bootstrap(&ids(2), 2, 1).unwrap();
    let mut servers = vec![live("ss-0"), dead("ss-1")];
    let (shards, _) = plan(&map, &servers, 2, None, &MoveVersions::default()).unwrap();
    assert!(shards.iter().all(|s| s.moving_to == vec!["ss-0"]));
    let map = ShardMap { version: 2, shards };
    let (shards, _) = plan(&map, &servers, 2, None, &MoveVersions::default()).unwrap();
    assert!(
        shards
            .iter()
            .all(|s| s.storage_ids == vec!["ss-0"] && !s.is_moving())
    );
    // A server that joins later brings them back to two replicas.
    servers.push(live("ss-2"));
    let map = ShardMap { version: 3, shards };
    let (shards, _) = plan(&map, &servers, 2, None, &MoveVersions::default()).unwrap();
    assert!(shards.iter().all(|s| s.moving_to == vec!["ss-0", "ss-2"]));
}

#[test]
fn at_most_max_moves_run_at_once() {
    let map = ShardMap::bootstrap(&ids(12), 2, 1).unwrap();
    let mut servers: Vec<_> = ids(12).iter().map(|i| live(i)).collect();
    // Every other server failed: ten shards lost one replica each.
    for i in [0, 2, 4, 6, 8] {
        servers[i] = dead(&format!("ss-{i}"));
    }
    servers.push(live("ss-12"));
    let (shards, _) = plan(&map, &servers, 2, None, &MoveVersions::default()).unwrap();
    assert_eq!(shards.iter().filter(|s| s.is_moving()).count(), MAX_MOVES);
}

fn sized(id: &str, range: &KeyRange, bytes: u64, middle: &str) -> ServerState {
    let mut s = live(id);
    s.sizes.push(ShardSize {
        range: range.clone(),
        bytes,
        middle_key: Some(bytes::Bytes::copy_from_slice(middle.as_bytes())),
    });
    s
}

#[test]
fn the_automatic_size_limit_grows_with_the_square_root_of_the_database() {
    assert_eq!(max_shard_bytes(0), 800_000);
    // 100 MB: 4 × (200 kB + 45 × 10,000) = 2.6 MB, so dozens of shards.
    assert_eq!(max_shard_bytes(100_000_000), 2_600_000);
    assert_eq!(max_shard_bytes(u64::MAX), MAX_SHARD_BYTES_CAP);
}

#[test]
fn a_shard_past_the_limit_splits_at_its_middle_key_and_keeps_its_team() {
    let map = ShardMap::bootstrap(&ids(3), 2, 1).unwrap();
    let first = map.shards[0].range.clone();
    let mut servers: Vec<_> = ids(3).iter().map(|i| live(i)).collect();
    servers[0] = sized("ss-0", &first, 5_000, "M");
    // Under the limit: nothing to do.
    assert_eq!(
        plan(&map, &servers, 2, Some(10_000), &MoveVersions::default()),
        None
    );
    let (shards, why) = plan(&map, &servers, 2, Some(4_000), &MoveVersions::default()).unwrap();
    assert_eq!(shards.len(), 4, "{why:?}");
    assert_eq!(&shards[0].range.end[..], b"M");
    assert_eq!(&shards[1].range.begin[..], b"M");
    assert_eq!(shards[1].range.end, first.end);
    assert_eq!(shards[0].storage_ids, shards[1].storage_ids);
    assert!(shards.iter().all(|s| !s.is_moving()));
    ShardMap { version: 2, shards }.validate().unwrap();
    // A middle key outside the shard, or at its first key, is no split point.
    servers[0] = sized("ss-0", &first, 5_000, "");
    assert_eq!(
        plan(&map, &servers, 2, Some(4_000), &MoveVersions::default()),
        None
    );
    // Reports from a server that is not a replica are ignored.
    servers[0] = live("ss-0");
    servers[2] = sized("ss-2", &first, 5_000, "M");
    assert_eq!(
        plan(&map, &servers, 2, Some(4_000), &MoveVersions::default()),
        None
    );
}

#[test]
fn a_moving_shard_is_not_split() {
    let mut map = ShardMap::bootstrap(&ids(3), 2, 1).unwrap();
    map.shards[0].moving_to = vec!["ss-0".into(), "ss-2".into()];
    let first = map.shards[0].range.clone();
    let servers = vec![
        sized("ss-0", &first, 5_000, "M"),
        live("ss-1"),
        live("ss-2"),
    ];
    // (The move unbalances the counts, so another shard may move; none is split.)
    let shards = plan(&map, &servers, 2, Some(4_000), &MoveVersions::default())
        .map_or(map.shards.clone(), |(s, _)| s);
    assert_eq!(shards.len(), 3);
    assert_eq!(shards[0], map.shards[0]);
}

#[test]
fn an_excluded_server_is_drained_onto_the_others_even_when_both_replicas_are_excluded() {
    let map = ShardMap::bootstrap(&ids(3), 2, 1).unwrap();
    let mut servers: Vec<_> = ids(5).iter().map(|i| live(i)).collect();
    servers[0].excluded = true;
    servers[1].excluded = true;
    let (shards, why) = plan(&map, &servers, 2, None, &MoveVersions::default()).unwrap();
    for s in &shards {
        assert!(s.is_moving(), "{why:?}");
        assert!(
            !s.moving_to.contains(&"ss-0".to_string())
                && !s.moving_to.contains(&"ss-1".to_string()),
            "{s:?}"
        );
        assert_eq!(s.moving_to.len(), 2);
    }
    // Shard 0 was on ss-0 and ss-1 only: both new replicas come from the spares.
    assert!(
        shards[0]
            .moving_to
            .iter()
            .all(|id| id == "ss-3" || id == "ss-4" || id == "ss-2")
    );
    // Once handed over, nothing is left on the excluded servers and balancing leaves them be.
    let mut servers2 = servers.clone();
    for s in &shards {
        for id in s.incoming() {
            servers2
                .iter_mut()
                .find(|x| x.id == *id)
                .unwrap()
                .ready
                .push(s.range.clone());
        }
    }
    let map2 = ShardMap { version: 2, shards };
    let (done, _) = plan(&map2, &servers2, 2, None, &MoveVersions::default()).unwrap();
    assert_eq!(held(&done, "ss-0") + held(&done, "ss-1"), 0);
    let map3 = ShardMap {
        version: 3,
        shards: done,
    };
    if let Some((next, _)) = plan(&map3, &servers, 2, None, &MoveVersions::default()) {
        assert!(
            next.iter()
                .all(|s| !s.moving_to.iter().any(|id| id == "ss-0" || id == "ss-1"))
        );
    }
}

#[test]
fn balancing_fills_every_free_move_slot_without_overshooting() {
    // Twelve shards all on ss-0 and ss-1 (as after splitting one shard); ss-2 and ss-3 new.
    let range_at = |i: u8| {
        let begin = if i == 0 { vec![] } else { vec![i * 20] };
        let end = if i == 11 { vec![] } else { vec![(i + 1) * 20] };
        KeyRange::new(begin, end).unwrap()
    };
    let map = ShardMap {
        version: 1,
        shards: (0..12)
            .map(|i| Shard::new(range_at(i), vec!["ss-0".into(), "ss-1".into()]))
            .collect(),
    };
    map.validate().unwrap();
    let servers: Vec<_> = ids(4).iter().map(|i| live(i)).collect();
    let (shards, _) = plan(&map, &servers, 2, None, &MoveVersions::default()).unwrap();
    assert_eq!(shards.iter().filter(|s| s.is_moving()).count(), MAX_MOVES);
    let after = load(&shards);
    // Each move takes one shard from ss-0 or ss-1 to ss-2 or ss-3.
    assert_eq!(after["ss-0"] + after["ss-1"], 24 - MAX_MOVES);
    assert_eq!(after["ss-2"] + after["ss-3"], MAX_MOVES);
    // Nothing more while every slot is taken.
    let map2 = ShardMap { version: 2, shards };
    assert_eq!(
        plan(&map2, &servers, 2, None, &MoveVersions::default()),
        None
    );
}

#[test]
fn a_readiness_report_judged_against_an_older_map_does_not_finish_a_move() {
    let mut map = ShardMap::bootstrap(&ids(3), 2, 1).unwrap();
    map.shards[0].moving_to = vec!["ss-0".into(), "ss-2".into()];
    map.version = 7;
    let first = map.shards[0].range.clone();
    let mut servers: Vec<_> = ids(3).iter().map(|i| live(i)).collect();
    servers[2].ready.push(first.clone());
    servers[2].ready_map_version = 6;
    let mut moves = MoveVersions::default();
    moves.observe(&map);
    // The move's team was set at version 7 (first seen there): a report from version 6 is
    // about an earlier take-over of the range.
    let handed = |plan: Option<(Vec<Shard>, Vec<String>)>| {
        plan.is_some_and(|(shards, _)| shards[0].storage_ids == ["ss-0", "ss-2"])
    };
    assert!(!handed(plan(&map, &servers, 2, None, &moves)));
    servers[2].ready_map_version = 7;
    assert!(handed(plan(&map, &servers, 2, None, &moves)));
    // A team changed at version 9 needs a report from version 9 on.
    let mut next = map.clone();
    next.shards[0].moving_to = vec!["ss-1".into(), "ss-2".into()];
    next.version = 9;
    moves.record(&map, &next, 9);
    assert!(!handed(plan(&next, &servers, 2, None, &moves)));
    moves.observe(&ShardMap::bootstrap(&ids(3), 2, 10).unwrap());
    assert_eq!(moves.since(&first, 0), 0, "a finished move is forgotten");
}
