//! The data distributor: run by the controller group's leader, it keeps every shard at the
//! replication factor on live storage servers and spreads shards over the servers there are.
//! Its decisions are shard-map changes made through Raft (`Command::UpdateShardMap`, applied
//! only over the map version they were computed from), so a new leader picks up where the
//! last one stopped.
//!
//! A move names the shard's next team in `moving_to`; its members that are not replicas yet
//! take the shard over (`storage/handoff.rs`: follow its writes, fetch it from a replica,
//! install it) and report it *ready* in their heartbeats once it is durable. When every one
//! of them has, the next round hands the shard over: `storage_ids` becomes the new team in one
//! map change, and the servers that left it stop following the range.
//!
//! Each round ([`plan`], pure) does, in order:
//! 1. **hand over** moves whose incoming members are all ready;
//! 2. **repair** moves whose incoming member failed (another server takes its place);
//! 3. **heal** shards with a *failed* replica (silent, or reporting a problem such as being
//!    stranded behind the log, for longer than the failure timeout:
//!    `--storage-failure-timeout-ms`, 30 s by default), an *excluded* one (`ferrisdb cluster
//!    exclude`: it is read from while its shards move away, and receives none) or fewer
//!    replicas than the replication factor: the new team keeps the live replicas and adds the
//!    live servers holding the fewest shards;
//! 4. **split** shards larger than the size limit, or written faster than the write-rate
//!    limit, at the middle key a replica reports (`storage/sizes.rs`): the two halves keep the
//!    team, so a split moves no data. The size limit is `--max-shard-bytes`, or by default
//!    grows with the database as FoundationDB's does: 4 × (200 kB + 45 × √(database bytes)),
//!    at most 500 MB ([`max_shard_bytes`]). The write-rate limit is
//!    `--max-shard-write-bytes-per-second` (1 MB/s by default); a shard is split for its write
//!    rate only while it holds at least an eighth of the size limit, so a hot spot on
//!    ever-new keys (a sequential insert) cuts off cold pieces of a useful size;
//! 5. **merge** neighbours with the same team that are both cold (written at under a tenth of
//!    the write-rate limit) and small (a third of the size limit together, so a merge never
//!    makes a shard the next round splits again);
//! 6. **balance**, once no shard needs healing, with the moves left: bytes first (a shard
//!    moves from the server that will hold the most bytes, counting moves under way, to the
//!    one that will hold the fewest, while they differ by more than a tenth of the mean; the
//!    shard chosen is the one whose size best halves the gap); then, while bytes are even,
//!    write load (while the busiest server takes more than a quarter over the mean write
//!    rate, the shard whose rate best halves its gap to the quietest moves there, if bytes
//!    stay within a twentieth of the mean); then shard counts (the smallest shard of the
//!    server holding the most shards moves to the one holding the fewest, if bytes stay as
//!    even and the receiver's write rate within the tolerance).
//!
//! At most [`MAX_MOVES`] moves run at once. Balancing by read load is not built.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use ferrisdb_core::{KeyRange, Shard, ShardMap};

use super::cluster::Controller;
use super::membership::{RoleStatus, ShardSize};
use super::metadata::shard_records;
use super::raft::Command;
use super::state::ClusterState;

/// How often the leader considers the shard map.
pub const DISTRIBUTE_EVERY: Duration = Duration::from_millis(250);
/// Most shards moving at once.
pub const MAX_MOVES: usize = 4;
/// Most shards split in one round.
pub const MAX_SPLITS: usize = 16;
/// Most pairs of shards merged in one round.
pub const MAX_MERGES: usize = 16;
/// The default write-rate limit of a shard, bytes per second.
pub const DEFAULT_MAX_SHARD_WRITE_BYTES_PER_SECOND: u64 = 1_000_000;
/// Bytes balancing starts when two servers differ by more than this fraction of the mean.
pub const BYTES_TOLERANCE: f64 = 0.10;
/// Write-load balancing starts when the busiest server takes more than this fraction over
/// the mean write rate. (With replication 2 on three servers, the busiest can take at most
/// half again the mean: the tolerance must be well below that to mean anything.)
pub const WRITE_LOAD_TOLERANCE: f64 = 0.25;

/// The data distributor's thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Shards larger than this are split (`None`: the automatic limit, [`max_shard_bytes`]).
    pub shard_bytes: Option<u64>,
    /// Shards written faster than this many bytes per second are split.
    pub shard_write_bytes_per_second: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            shard_bytes: None,
            shard_write_bytes_per_second: DEFAULT_MAX_SHARD_WRITE_BYTES_PER_SECOND,
        }
    }
}

impl Limits {
    /// The defaults with a fixed size limit.
    pub fn with_shard_bytes(bytes: u64) -> Limits {
        Limits {
            shard_bytes: Some(bytes),
            ..Limits::default()
        }
    }
}
/// The size limit never grows past this.
pub const MAX_SHARD_BYTES_CAP: u64 = 500_000_000;

/// The automatic size limit of a shard in a database of `database_bytes`:
/// 4 × (200 kB + 45 × √bytes), at most [`MAX_SHARD_BYTES_CAP`].
pub fn max_shard_bytes(database_bytes: u64) -> u64 {
    let grown = 200_000.0 + 45.0 * (database_bytes as f64).sqrt();
    ((4.0 * grown) as u64).min(MAX_SHARD_BYTES_CAP)
}

/// What the distributor knows of one storage server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerState {
    /// Worker id.
    pub id: String,
    /// Heard from recently and reporting no problem: may receive shards.
    pub healthy: bool,
    /// Silent, or reporting a problem (stranded behind the log, a failed engine…), for longer
    /// than the failure timeout: its shards are re-replicated.
    pub failed: bool,
    /// Excluded by an operator: its shards move away (it is still read from meanwhile) and
    /// it receives none.
    pub excluded: bool,
    /// Ranges it is taking over and holds durably.
    pub ready: Vec<KeyRange>,
    /// The shard-map version `ready` was judged against.
    pub ready_map_version: u64,
    /// The sizes it reports of the shards it holds.
    pub sizes: Vec<ShardSize>,
}

/// The storage servers as the leader sees them at `now`.
pub fn servers(state: &ClusterState, now: Instant, failure_timeout: Duration) -> Vec<ServerState> {
    let members = &state.membership;
    members
        .workers()
        .iter()
        .filter(|w| w.record.role == super::membership::Role::Storage)
        .map(|w| ServerState {
            id: w.record.id.clone(),
            healthy: members.is_healthy(w, now),
            failed: members.unhealthy_for(w, now) > failure_timeout,
            excluded: state.excluded.contains(&w.record.id),
            ready: match &w.status {
                Some(RoleStatus::Storage(s)) => s.ready_ranges.clone(),
                _ => Vec::new(),
            },
            ready_map_version: match &w.status {
                Some(RoleStatus::Storage(s)) => s.ready_map_version,
                _ => 0,
            },
            sizes: match &w.status {
                Some(RoleStatus::Storage(s)) => s.shard_sizes.clone(),
                _ => Vec::new(),
            },
        })
        .collect()
}

/// The shard-map version that last set the team of each moving shard: a move is handed over
/// only on readiness reports judged against that map or a newer one, so a report about an
/// earlier move of the same range (abandoned, then begun again) cannot finish this one.
#[derive(Debug, Default, Clone)]
pub struct MoveVersions(BTreeMap<KeyRange, u64>);

impl MoveVersions {
    /// Notes the moves of `map` not seen before (at its version) and forgets finished ones.
    pub fn observe(&mut self, map: &ShardMap) {
        self.0.retain(|range, _| {
            map.shards
                .iter()
                .any(|s| s.is_moving() && s.range == *range)
        });
        for s in map.shards.iter().filter(|s| s.is_moving()) {
            self.0.entry(s.range.clone()).or_insert(map.version);
        }
    }

    /// Records the moves `next` (at `version`) begins or changes relative to `before`.
    pub fn record(&mut self, before: &ShardMap, next: &ShardMap, version: u64) {
        for s in next.shards.iter().filter(|s| s.is_moving()) {
            let unchanged = before
                .shards
                .iter()
                .any(|b| b.range == s.range && b.moving_to == s.moving_to);
            if !unchanged {
                self.0.insert(s.range.clone(), version);
            }
        }
    }

    /// The version that set the team of the move of `range` (`fallback` if unknown).
    fn since(&self, range: &KeyRange, fallback: u64) -> u64 {
        self.0.get(range).copied().unwrap_or(fallback)
    }
}

/// The next shard map's shards and why, or `None` if the map is as it should be. Shards are
/// split and merged by `limits`; moves are handed over only on readiness judged against the
/// versions in `moves`.
pub fn plan(
    map: &ShardMap,
    servers: &[ServerState],
    replication: usize,
    limits: &Limits,
    moves: &MoveVersions,
) -> Option<(Vec<Shard>, Vec<String>)> {
    if !map.is_bootstrapped() {
        return None;
    }
    let by_id: BTreeMap<&str, &ServerState> = servers.iter().map(|s| (s.id.as_str(), s)).collect();
    let failed = |id: &String| by_id.get(id.as_str()).is_none_or(|s| s.failed);
    // Failed, or excluded: either way the shard must leave it.
    let leaving = |id: &String| failed(id) || by_id.get(id.as_str()).is_some_and(|s| s.excluded);
    let mut shards = map.shards.clone();
    let mut why = Vec::new();

    // 1. Hand over moves whose incoming members all hold the shard.
    for shard in shards.iter_mut().filter(|s| s.is_moving()) {
        let since = moves.since(&shard.range, map.version);
        let ready = shard.incoming().all(|id| {
            by_id
                .get(id.as_str())
                .is_some_and(|s| s.ready_map_version >= since && s.ready.contains(&shard.range))
        });
        if ready {
            why.push(format!(
                "{} handed over from {:?} to {:?}",
                describe(&shard.range),
                shard.storage_ids,
                shard.moving_to
            ));
            shard.storage_ids = std::mem::take(&mut shard.moving_to);
        }
    }
    // 2. Repair moves whose incoming members failed.
    for i in 0..shards.len() {
        let incoming_failed: Vec<String> = shards[i]
            .incoming()
            .filter(|id| leaving(id))
            .cloned()
            .collect();
        if incoming_failed.is_empty() {
            continue;
        }
        let mut team: Vec<String> = shards[i]
            .moving_to
            .iter()
            .filter(|id| !incoming_failed.contains(id))
            .cloned()
            .collect();
        fill_team(
            &mut team,
            replication,
            &shards,
            servers,
            &shards[i].storage_ids,
        );
        let shard = &mut shards[i];
        why.push(format!(
            "{}: {:?} failed or was excluded while taking it over; moving to {:?} instead",
            describe(&shard.range),
            incoming_failed,
            team
        ));
        shard.moving_to = if team == shard.storage_ids {
            Vec::new()
        } else {
            team
        };
    }
    let mut moving = shards.iter().filter(|s| s.is_moving()).count();
    // 3. Heal shards with failed replicas or too few of them.
    for i in 0..shards.len() {
        if moving >= MAX_MOVES {
            break;
        }
        let shard = &shards[i];
        let dead = shard.storage_ids.iter().filter(|id| leaving(id)).count();
        if shard.is_moving() || (dead == 0 && shard.storage_ids.len() >= replication) {
            continue;
        }
        if shard.storage_ids.iter().all(failed) {
            // Every replica is gone: nothing to copy from. It stays as it is (unavailable)
            // in case one comes back.
            continue;
        }
        let mut team: Vec<String> = shard
            .storage_ids
            .iter()
            .filter(|id| !leaving(id))
            .cloned()
            .collect();
        let before = team.len();
        fill_team(&mut team, replication, &shards, servers, &[]);
        if team.is_empty() || (team.len() == before && dead == 0) {
            continue; // No server to copy to.
        }
        why.push(format!(
            "{} has {dead} failed or excluded replica(s) of {:?}: re-replicating to {:?}",
            describe(&shard.range),
            shard.storage_ids,
            team
        ));
        shards[i].moving_to = team;
        moving += 1;
    }
    // 4. Split shards past the size or write-rate limit (the two halves keep the team).
    let mut sizes = shard_sizes(&shards, servers);
    let database: u64 = sizes
        .iter()
        .map(|s| s.as_ref().map_or(0, |z| z.bytes))
        .sum();
    let limit = limits
        .shard_bytes
        .unwrap_or_else(|| max_shard_bytes(database));
    let write_limit = limits.shard_write_bytes_per_second;
    let mut split = Vec::new();
    for (i, size) in sizes.iter().enumerate() {
        if split.len() >= MAX_SPLITS {
            break;
        }
        let Some(size) = size else {
            continue;
        };
        let why_split = if size.bytes > limit {
            format!("holds about {} bytes (limit {limit})", size.bytes)
        } else if size.write_bytes_per_second > write_limit && size.bytes >= limit / 8 {
            format!(
                "is written at {} bytes/s (limit {write_limit})",
                size.write_bytes_per_second
            )
        } else {
            continue;
        };
        let shard = &shards[i];
        let Some(middle) = size
            .middle_key
            .clone()
            .filter(|k| shard.range.contains(k) && *k != shard.range.begin)
        else {
            continue;
        };
        if shard.is_moving() {
            continue;
        }
        why.push(format!(
            "{} {why_split}: split at {:?}",
            describe(&shard.range),
            ferrisdb_core::keys::escape(&middle)
        ));
        split.push((i, middle));
    }
    let splitting = !split.is_empty();
    for (i, middle) in split.into_iter().rev() {
        let upper = Shard::new(
            KeyRange {
                begin: middle.clone(),
                end: shards[i].range.end.clone(),
            },
            shards[i].storage_ids.clone(),
        );
        shards[i].range.end = middle;
        shards.insert(i + 1, upper);
    }
    // 5. Merge small, cold neighbours with the same team.
    if !splitting {
        let mut merges = 0;
        let mut i = 0;
        while i + 1 < shards.len() && merges < MAX_MERGES {
            let (a, b) = (&sizes[i], &sizes[i + 1]);
            let mergeable = a.as_ref().zip(b.as_ref()).is_some_and(|(a, b)| {
                a.bytes + b.bytes <= limit / 3
                    && a.write_bytes_per_second.max(b.write_bytes_per_second) <= write_limit / 10
            }) && same_team(&shards[i], &shards[i + 1]);
            if !mergeable {
                i += 1;
                continue;
            }
            let upper = shards.remove(i + 1);
            why.push(format!(
                "{} and {} are small and cold: merged",
                describe(&shards[i].range),
                describe(&upper.range)
            ));
            shards[i].range.end = upper.range.end;
            // `sizes` stays aligned with `shards`; the merged shard has no report yet, so
            // it is not merged again this round.
            sizes.remove(i + 1);
            sizes[i] = None;
            merges += 1;
            i += 1;
        }
    }
    // 6. Balance bytes, then write load, then shard counts, with the moves left, once no
    // shard needs healing.
    let healthy_teams = shards.iter().all(|s| {
        let team = if s.is_moving() {
            &s.moving_to
        } else {
            &s.storage_ids
        };
        team.len() >= replication && !team.iter().any(&leaving)
    });
    let load = Load {
        bytes: estimated(&shards, servers, |z| z.bytes),
        rates: estimated(&shards, servers, |z| z.write_bytes_per_second),
        limit,
        write_floor: write_limit / 4,
    };
    while healthy_teams && moving < MAX_MOVES {
        let Some((i, team, reason)) = balancing_move(&shards, &load, servers) else {
            break;
        };
        why.push(format!(
            "{} moves from {:?} to {:?} {reason}",
            describe(&shards[i].range),
            shards[i].storage_ids,
            team
        ));
        shards[i].moving_to = team;
        moving += 1;
    }
    (!why.is_empty()).then_some((shards, why))
}

/// True if the two shards are still and have the same replicas.
fn same_team(a: &Shard, b: &Shard) -> bool {
    if a.is_moving() || b.is_moving() {
        return false;
    }
    let mut x = a.storage_ids.clone();
    let mut y = b.storage_ids.clone();
    x.sort();
    y.sort();
    x == y
}

/// Each shard's size as its healthy replicas report it (the largest report), if any does.
fn shard_sizes(shards: &[Shard], servers: &[ServerState]) -> Vec<Option<ShardSize>> {
    shards
        .iter()
        .map(|shard| {
            servers
                .iter()
                .filter(|s| s.healthy && shard.storage_ids.contains(&s.id))
                .flat_map(|s| s.sizes.iter())
                .filter(|z| z.range == shard.range)
                .max_by_key(|z| z.bytes)
                .cloned()
        })
        .collect()
}

/// Each shard's `measure` (bytes, or write rate) for balancing: its replicas' report, or, for
/// a shard just split or merged (no report of its exact range yet), the reports it was cut
/// from (half of a split shard's) or made of (the sum of a merge's).
fn estimated(
    shards: &[Shard],
    servers: &[ServerState],
    measure: impl Fn(&ShardSize) -> u64,
) -> Vec<u64> {
    let reports: Vec<&ShardSize> = servers
        .iter()
        .filter(|s| s.healthy)
        .flat_map(|s| s.sizes.iter())
        .collect();
    shards
        .iter()
        .map(|shard| {
            let exact = reports
                .iter()
                .filter(|z| z.range == shard.range)
                .map(|z| measure(z))
                .max();
            if let Some(value) = exact {
                return value;
            }
            let covering = reports
                .iter()
                .filter(|z| covers(&z.range, &shard.range))
                .map(|z| measure(z) / 2)
                .max();
            if let Some(value) = covering {
                return value;
            }
            let mut inside: BTreeMap<&KeyRange, u64> = BTreeMap::new();
            for z in reports.iter().filter(|z| covers(&shard.range, &z.range)) {
                let e = inside.entry(&z.range).or_default();
                *e = (*e).max(measure(z));
            }
            inside.values().sum()
        })
        .collect()
}

/// True if every key of `inner` lies in `outer`.
fn covers(outer: &KeyRange, inner: &KeyRange) -> bool {
    outer.begin <= inner.begin
        && (outer.end.is_empty() || (!inner.end.is_empty() && inner.end <= outer.end))
}

/// The team each shard will have once the moves under way finish.
fn final_team(shard: &Shard) -> &[String] {
    if shard.is_moving() {
        &shard.moving_to
    } else {
        &shard.storage_ids
    }
}

/// Shards each server will hold once the moves under way finish.
fn shard_counts(shards: &[Shard]) -> BTreeMap<&str, usize> {
    let mut load = BTreeMap::new();
    for s in shards {
        for id in final_team(s) {
            *load.entry(id.as_str()).or_default() += 1;
        }
    }
    load
}

/// What balancing goes by, per shard (index of the shard list).
struct Load {
    /// Estimated bytes.
    bytes: Vec<u64>,
    /// Estimated write rates, bytes per second.
    rates: Vec<u64>,
    /// The size limit: larger shards are split, not moved.
    limit: u64,
    /// Write rates below this, per server, are not worth moving shards for.
    write_floor: u64,
}

/// The sum of `per_shard` each server will hold once the moves under way finish.
fn sum_per_server<'a>(shards: &'a [Shard], per_shard: &[u64]) -> BTreeMap<&'a str, u64> {
    let mut load = BTreeMap::new();
    for (s, b) in shards.iter().zip(per_shard) {
        for id in final_team(s) {
            *load.entry(id.as_str()).or_default() += b;
        }
    }
    load
}

/// Adds healthy servers outside `team` and `avoid`, fewest shards first, until the team has
/// `replication` members or there are none left.
fn fill_team(
    team: &mut Vec<String>,
    replication: usize,
    shards: &[Shard],
    servers: &[ServerState],
    avoid: &[String],
) {
    let load = shard_counts(shards);
    let mut candidates: Vec<&ServerState> = servers
        .iter()
        .filter(|s| {
            s.healthy && !s.failed && !s.excluded && !team.contains(&s.id) && !avoid.contains(&s.id)
        })
        .collect();
    candidates.sort_by_key(|s| (load.get(s.id.as_str()).copied().unwrap_or(0), s.id.clone()));
    for c in candidates {
        if team.len() >= replication {
            break;
        }
        team.push(c.id.clone());
    }
}

/// One shard to move to balance the servers (see the module comment): the shard's index, its
/// next team and why.
fn balancing_move(
    shards: &[Shard],
    load: &Load,
    servers: &[ServerState],
) -> Option<(usize, Vec<String>, &'static str)> {
    let (bytes, rates) = (&load.bytes, &load.rates);
    let live: Vec<&ServerState> = servers
        .iter()
        .filter(|s| s.healthy && !s.failed && !s.excluded)
        .collect();
    if live.len() < 2 {
        return None;
    }
    let held = sum_per_server(shards, bytes);
    let bytes_of = |s: &ServerState| held.get(s.id.as_str()).copied().unwrap_or(0);
    let mean = live.iter().map(|s| bytes_of(s)).sum::<u64>() as f64 / live.len() as f64;
    // A shard that can move from `from` to `to`: still, held by `from`, not by `to`, and not
    // past the size limit (it is split first: moving it whole would copy what a split
    // would let two servers share).
    let movable = |i: usize, from: &str, to: &str| {
        let s = &shards[i];
        !s.is_moving()
            && bytes[i] <= load.limit
            && s.storage_ids.iter().any(|id| id == from)
            && !s.storage_ids.iter().any(|id| id == to)
    };
    let team_for = |i: usize, from: &str, to: &str| -> Vec<String> {
        shards[i]
            .storage_ids
            .iter()
            .map(|id| {
                if id == from {
                    to.to_string()
                } else {
                    id.clone()
                }
            })
            .collect()
    };
    // Bytes first.
    let most = live.iter().max_by_key(|s| (bytes_of(s), s.id.clone()))?;
    let least = live.iter().min_by_key(|s| (bytes_of(s), s.id.clone()))?;
    let gap = bytes_of(most) - bytes_of(least);
    if mean > 0.0 && gap as f64 > BYTES_TOLERANCE * mean {
        // The shard whose move leaves the two closest: |gap − 2 × size| smallest, and smaller
        // than the gap (so the move always narrows it).
        let best = (0..shards.len())
            .filter(|&i| movable(i, &most.id, &least.id) && bytes[i] > 0 && bytes[i] < gap)
            .min_by_key(|&i| (gap.abs_diff(2 * bytes[i]), i));
        if let Some(i) = best {
            return Some((
                i,
                team_for(i, &most.id, &least.id),
                "to balance bytes per server",
            ));
        }
    }
    // Moves made while bytes are even must keep them so: both servers stay in this band
    // around the mean.
    let band = BYTES_TOLERANCE / 2.0 * mean;
    let bytes_stay_even = |i: usize, from: &ServerState, to: &ServerState| {
        mean == 0.0
            || ((bytes_of(to) + bytes[i]) as f64 <= mean + band
                && (bytes_of(from).saturating_sub(bytes[i])) as f64 >= mean - band)
    };
    // Then write load: while the busiest server takes more than WRITE_LOAD_TOLERANCE over the
    // mean rate (and more than the floor), the shard that best halves its gap to the least
    // busy one moves there.
    let written = sum_per_server(shards, rates);
    let rate_of = |s: &ServerState| written.get(s.id.as_str()).copied().unwrap_or(0);
    let mean_rate = live.iter().map(|s| rate_of(s)).sum::<u64>() as f64 / live.len() as f64;
    let busiest = live.iter().max_by_key(|s| (rate_of(s), s.id.clone()))?;
    let quietest = live.iter().min_by_key(|s| (rate_of(s), s.id.clone()))?;
    let rate_gap = rate_of(busiest) - rate_of(quietest);
    if rate_of(busiest) > load.write_floor
        && rate_of(busiest) as f64 > (1.0 + WRITE_LOAD_TOLERANCE) * mean_rate
    {
        let best = (0..shards.len())
            .filter(|&i| {
                movable(i, &busiest.id, &quietest.id)
                    && rates[i] > 0
                    && rates[i] < rate_gap
                    && bytes_stay_even(i, busiest, quietest)
            })
            .min_by_key(|&i| (rate_gap.abs_diff(2 * rates[i]), i));
        if let Some(i) = best {
            return Some((
                i,
                team_for(i, &busiest.id, &quietest.id),
                "to balance write load",
            ));
        }
    }
    // Then shard counts, moving the smallest shard, if bytes stay even and the receiving
    // server's write rate stays within the tolerance.
    let count = shard_counts(shards);
    let count_of = |s: &ServerState| count.get(s.id.as_str()).copied().unwrap_or(0);
    let most = live.iter().max_by_key(|s| (count_of(s), s.id.clone()))?;
    let least = live.iter().min_by_key(|s| (count_of(s), s.id.clone()))?;
    if count_of(most) <= count_of(least) + 1 {
        return None;
    }
    let i = (0..shards.len())
        .filter(|&i| movable(i, &most.id, &least.id))
        .min_by_key(|&i| (bytes[i], i))?;
    let rate_after = rate_of(least) + rates[i];
    let writes_stay_even = rate_after <= load.write_floor
        || rate_after as f64 <= (1.0 + WRITE_LOAD_TOLERANCE) * mean_rate;
    (bytes_stay_even(i, most, least) && writes_stay_even).then(|| {
        (
            i,
            team_for(i, &most.id, &least.id),
            "to balance shards per server",
        )
    })
}

/// A storage server named by an exclusion, as the map stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exclusion {
    /// Worker id.
    pub id: String,
    /// Its address.
    pub address: String,
    /// Whether it is excluded.
    pub excluded: bool,
    /// Shards it is a replica of or taking over (0: safe to turn off, if excluded).
    pub shards: u32,
}

/// The registered storage servers at `addresses` (every one registered at each); an address
/// none registered at is refused.
pub fn storage_ids_at(
    state: &ClusterState,
    addresses: &[String],
) -> Result<Vec<String>, ferrisdb_core::Error> {
    if addresses.is_empty() {
        return Err(ferrisdb_core::Error::InvalidArgument(
            "name at least one storage server address (host:port)".into(),
        ));
    }
    let mut ids = Vec::new();
    for address in addresses {
        let at: Vec<String> = state
            .membership
            .workers()
            .iter()
            .filter(|w| w.record.role == super::membership::Role::Storage)
            .filter(|w| w.record.address == *address)
            .map(|w| w.record.id.clone())
            .collect();
        if at.is_empty() {
            return Err(ferrisdb_core::Error::InvalidArgument(format!(
                "no storage server is registered at {address:?}"
            )));
        }
        ids.extend(at);
    }
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// What each of `ids` holds now.
pub fn exclusions(state: &ClusterState, ids: &[String]) -> Vec<Exclusion> {
    ids.iter()
        .map(|id| Exclusion {
            id: id.clone(),
            address: state
                .membership
                .workers()
                .iter()
                .find(|w| w.record.id == *id)
                .map(|w| w.record.address.clone())
                .unwrap_or_default(),
            excluded: state.excluded.contains(id),
            shards: state
                .shard_map
                .shards
                .iter()
                .filter(|s| s.storage_ids.contains(id) || s.moving_to.contains(id))
                .count() as u32,
        })
        .collect()
}

fn describe(range: &KeyRange) -> String {
    format!(
        "shard [{}, {})",
        ferrisdb_core::keys::escape(&range.begin),
        ferrisdb_core::keys::escape(&range.end)
    )
}

/// Runs a distribution round every [`DISTRIBUTE_EVERY`] while this replica leads. Runs until
/// the task is aborted.
pub async fn run(controller: Arc<Controller>) {
    let mut tick = tokio::time::interval(DISTRIBUTE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let failure_timeout = controller.storage_failure_timeout();
    let limits = controller.distribution_limits();
    // The map version that last set each moving shard's team (this leader's memory; a move it
    // did not set counts from the version it first saw it at).
    let mut moves = MoveVersions::default();
    loop {
        tick.tick().await;
        if !controller.group().believes_it_leads() {
            moves = MoveVersions::default();
            continue;
        }
        let decided = controller
            .view(|state, now| {
                moves.observe(&state.shard_map);
                let servers = servers(state, now, failure_timeout);
                plan(
                    &state.shard_map,
                    &servers,
                    state.replication as usize,
                    &limits,
                    &moves,
                )
                .map(|(shards, why)| (state.shard_map.version, shards, why))
            })
            .await;
        let Ok(Some((based_on, shards, why))) = decided else {
            continue;
        };
        let before = controller
            .view(|state, _| state.shard_map.clone())
            .await
            .unwrap_or_default();
        let next = ShardMap {
            version: based_on,
            shards,
        };
        let command = Command::UpdateShardMap {
            based_on,
            shards: shard_records(&next),
        };
        match controller.propose_checked(command).await {
            Ok(()) => {
                moves.record(&before, &next, based_on + 1);
                for reason in why {
                    tracing::info!(map_version = based_on + 1, "data distribution: {reason}");
                }
            }
            Err(e) => tracing::warn!("data distribution could not change the shard map: {e}"),
        }
    }
}

#[cfg(test)]
mod tests;
