//! Shards changing hands on this server: taking over the ranges the data distributor moves
//! here, and dropping the ones it moved away.
//!
//! **Taking over** a range (this server is in its shard's `moving_to` team but not a replica
//! yet), without stopping writes anywhere:
//! 1. The pull loop starts following the range at its applied version `start`: from then on
//!    the range's mutations arrive with the rest, but are *buffered* here instead of applied
//!    (the engine does not hold the range yet, so atomic operations could not be resolved).
//! 2. A fetch task reads the range from a current replica at a version `at >= start` that
//!    the buffer already covers (`storage/fetch.rs`).
//! 3. The next time the pull loop has a committed version `c` to spare (every version up to
//!    it applied and none written to the engine at `c`), it *installs* the range as one
//!    engine batch at `c`: clear the range (whatever an earlier stay left), then the
//!    snapshot with every buffered mutation after `at` folded in, in version order. From
//!    then on the range's mutations go straight to the engine, and the range is complete at
//!    every version from `c` (recorded on disk: [`InstalledRanges`]). A snapshot larger
//!    than the piece size ([`DEFAULT_INSTALL_PIECE_BYTES`] unless configured) is installed
//!    in pieces, one per spare version, in key
//!    order: the first clears the whole range, each writes the keys up to the next piece's
//!    first key, and the part already written stops being buffered — its mutations go to
//!    the engine, which holds it complete — so the buffer folded into a later piece is
//!    clipped to what is left. The range is complete from the version of the last piece.
//! 4. Once the durability loop has persisted an applied version at or past `c`, the range is
//!    reported *ready*; the data distributor then makes this server a replica in one map
//!    change, and reads arrive.
//!
//! **Handing over**: when the map no longer lists a followed range, the stream stops
//! following it at the applied version `through`; the range stays readable at versions up
//! to `through` (a client with an older map still reads it correctly) until two MVCC windows
//! have passed, then it is cleared from the engine. After a restart, everything outside the
//! followed ranges is cleared the same way (a crash between hand-over and clear leaves
//! nothing behind).
//!
//! A move abandoned halfway (the distributor picked another team) drops the buffer and the
//! range is cleared later like a handed-over one. A crash while taking over loses only the
//! buffer: the map still names this server, so the take-over starts again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use ferrisdb_core::{Error, KeyRange, Mutation, Version};
use ferrisdb_storage::engine::WriteBatch;
use ferrisdb_storage::fsutil::{read_if_present, write_atomically};
use ferrisdb_storage::vfs::{FileSystem, SharedFs};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::progress::Readable;
use crate::log::clip;

const INSTALLED_FILE: &str = "installed_ranges.json";

/// Most snapshot bytes (keys and values) installed in one engine batch by default: a batch
/// is one WAL record, and with every move under way installing at once the batch stays far
/// below the WAL's record limit.
pub const DEFAULT_INSTALL_PIECE_BYTES: usize = 4 << 20;

/// A range fetched from a replica at one version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The version it was read at.
    pub version: u64,
    /// Its key-value pairs, in key order.
    pub pairs: Vec<(Bytes, Bytes)>,
}

/// A range being taken over.
#[derive(Debug)]
struct Incoming {
    /// Distinguishes take-overs of the same range: a fetch of an abandoned one is discarded.
    ticket: u64,
    range: KeyRange,
    /// Followed (buffered) after this version.
    start: u64,
    /// Buffered mutations by version, ascending, each clipped to the range.
    buffer: Vec<(u64, Vec<Mutation>)>,
    snapshot: Option<Snapshot>,
    /// While installed in pieces: the first key not written yet (everything of the range
    /// before it is in the engine and no longer buffered).
    cursor: Option<Bytes>,
    /// Bytes (keys and values) read so far by the fetch under way (or the last one).
    fetched_bytes: u64,
    /// The version it was installed at.
    installed_at: Option<u64>,
}

impl Incoming {
    /// The part of the range still buffered: what no installed piece has written yet.
    fn buffered_range(&self) -> KeyRange {
        KeyRange {
            begin: self
                .cursor
                .clone()
                .unwrap_or_else(|| self.range.begin.clone()),
            end: self.range.end.clone(),
        }
    }
}

/// How far one take-over has got, for `ferrisdb status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakeOver {
    /// The range taken over.
    pub range: KeyRange,
    /// Bytes fetched so far.
    pub fetched_bytes: u64,
    /// The whole range is fetched (catching up with the writes buffered meanwhile).
    pub fetched: bool,
    /// Installed in the engine (ready once durable).
    pub installed: bool,
}

/// A take-over the pull loop just began: a fetch task must fill it in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    /// Hand back with [`Handoff::set_snapshot`].
    pub ticket: u64,
    /// The range to fetch.
    pub range: KeyRange,
    /// Fetch at this version or later.
    pub start: u64,
}

/// What the pull loop does with its next stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPlan {
    /// Ranges to follow (normalized).
    pub follow: Vec<KeyRange>,
    /// What reads may be served of, at which versions.
    pub readable: Vec<Readable>,
    /// Take-overs to fetch.
    pub fetches: Vec<Fetch>,
}

/// Engine work the pull loop owes: installs and clears, written as one batch at a version.
#[derive(Debug, Default)]
pub struct Pending {
    /// The batch.
    pub batch: WriteBatch,
    /// Pieces written: the take-over's ticket, its range, and the first key of the next piece
    /// (`None`: this was the last).
    installs: Vec<(u64, KeyRange, Option<Bytes>)>,
    cleared: Vec<KeyRange>,
}

impl Pending {
    /// True if there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.installs.is_empty() && self.cleared.is_empty()
    }

    /// The ranges the batch clears: once it is applied, no reader needs any version of
    /// them and they hold no live key, so their old values can be purged.
    pub fn cleared(&self) -> &[KeyRange] {
        &self.cleared
    }
}

#[derive(Debug, Default)]
struct State {
    incoming: Vec<Incoming>,
    /// Ranges given up, readable through the version until they are cleared (0: never).
    leaving: Vec<(KeyRange, u64)>,
    /// Ranges followed by the current stream.
    followed: Vec<KeyRange>,
    /// False until the first plan: then everything outside the followed ranges is cleared.
    planned: bool,
    next_ticket: u64,
    installed: InstalledRanges,
    /// The shard-map version of the last plan: what [`Handoff::ready`] is judged against.
    map_version: u64,
}

/// The hand-over state of one storage server (see the module docs).
#[derive(Debug)]
pub struct Handoff {
    state: Mutex<State>,
    fs: SharedFs,
    dir: PathBuf,
    /// Most snapshot bytes installed in one engine batch.
    piece_bytes: usize,
}

impl Handoff {
    /// Loads the installed-range records from `dir` on `fs`.
    pub fn open(fs: SharedFs, dir: &Path) -> Result<Handoff, Error> {
        Ok(Handoff {
            state: Mutex::new(State {
                installed: InstalledRanges::load(fs.as_ref(), dir)?,
                ..State::default()
            }),
            fs,
            dir: dir.to_path_buf(),
            piece_bytes: DEFAULT_INSTALL_PIECE_BYTES,
        })
    }

    /// Installs snapshots in pieces of at most `bytes` (at least one pair each).
    pub fn with_piece_bytes(mut self, bytes: usize) -> Handoff {
        self.piece_bytes = bytes.max(1);
        self
    }

    /// Plans the next stream from the shard map at version `map_version`: this server's
    /// replica ranges `owned` and the ranges it is taking over `incoming`, at applied version
    /// `applied`.
    pub fn plan(
        &self,
        map_version: u64,
        owned: &[KeyRange],
        incoming: &[KeyRange],
        applied: u64,
    ) -> StreamPlan {
        let mut st = self.state.lock();
        st.map_version = map_version;
        let State {
            incoming: entries,
            leaving,
            followed,
            planned,
            next_ticket,
            installed,
            ..
        } = &mut *st;
        // Take-overs that left the destination team: finished (now a replica, installed)
        // or abandoned (cleared later if anything was installed).
        entries.retain(|e| {
            if incoming.contains(&e.range) {
                return true;
            }
            if owned.contains(&e.range) && e.installed_at.is_some() {
                return false;
            }
            if owned.contains(&e.range) {
                // Made a replica before it held the range: keep taking it over (reads
                // refused until then). The distributor only hands over ready ranges.
                tracing::warn!(range = ?e.range, "made a replica of a range it has not installed");
                return true;
            }
            false
        });
        let mut fetches = Vec::new();
        for range in incoming {
            if !entries.iter().any(|e| e.range == *range) {
                *next_ticket += 1;
                entries.push(Incoming {
                    ticket: *next_ticket,
                    range: range.clone(),
                    start: applied,
                    buffer: Vec::new(),
                    snapshot: None,
                    cursor: None,
                    fetched_bytes: 0,
                    installed_at: None,
                });
                fetches.push(Fetch {
                    ticket: *next_ticket,
                    range: range.clone(),
                    start: applied,
                });
            }
        }
        let follow = clip::normalize(
            owned
                .iter()
                .cloned()
                .chain(entries.iter().map(|e| e.range.clone()))
                .collect(),
        );
        // What the last stream followed and this one does not is handed over now; on the
        // first plan, everything not followed is cleared (left by an earlier run).
        let given_up = if *planned {
            followed
                .iter()
                .flat_map(|r| subtract(r, &follow))
                .map(|r| (r, applied))
                .collect::<Vec<_>>()
        } else {
            subtract(&KeyRange::all(), &follow)
                .into_iter()
                .map(|r| (r, 0))
                .collect()
        };
        leaving.extend(given_up);
        // A range followed again is no longer cleared.
        *leaving = std::mem::take(leaving)
            .into_iter()
            .flat_map(|(r, through)| {
                subtract(&r, &follow)
                    .into_iter()
                    .map(move |piece| (piece, through))
            })
            .collect();
        *followed = follow.clone();
        *planned = true;
        let not_installed: Vec<&KeyRange> = entries
            .iter()
            .filter(|e| e.installed_at.is_none())
            .map(|e| &e.range)
            .collect();
        let mut readable: Vec<Readable> = owned
            .iter()
            .filter(|r| !not_installed.contains(r))
            .map(|r| Readable {
                range: r.clone(),
                from: installed.from(r),
                through: u64::MAX,
            })
            .collect();
        readable.extend(
            leaving
                .iter()
                .filter(|(_, t)| *t > 0)
                .map(|(r, t)| Readable {
                    range: r.clone(),
                    from: installed.from(r),
                    through: *t,
                }),
        );
        StreamPlan {
            follow,
            readable,
            fetches,
        }
    }

    /// True if no take-over is installed yet: all of them may start again from a newer
    /// version ([`Handoff::restart`]).
    pub fn can_restart(&self) -> bool {
        self.state
            .lock()
            .incoming
            .iter()
            .all(|e| e.installed_at.is_none())
    }

    /// Starts every take-over (none installed) again after `start`: buffers and snapshots
    /// are dropped, and their fetches fetch at `start` or later.
    pub fn restart(&self, start: u64) {
        for e in self.state.lock().incoming.iter_mut() {
            if e.installed_at.is_none() {
                e.start = start;
                e.buffer.clear();
                e.snapshot = None;
                e.cursor = None;
            }
        }
    }

    /// True while any range is being taken over (installed or not).
    pub fn taking_over(&self) -> bool {
        !self.state.lock().incoming.is_empty()
    }

    /// True while a take-over buffers (the pull loop must route mutations through
    /// [`Handoff::divert`]).
    pub fn buffering(&self) -> bool {
        self.state
            .lock()
            .incoming
            .iter()
            .any(|e| e.installed_at.is_none())
    }

    /// Buffers the parts of version `version`'s mutations that fall in ranges being taken
    /// over, and returns the rest (to apply).
    pub fn divert(&self, version: u64, mutations: Vec<Mutation>) -> Vec<Mutation> {
        let mut st = self.state.lock();
        let buffering: Vec<&mut Incoming> = st
            .incoming
            .iter_mut()
            .filter(|e| e.installed_at.is_none() && version > e.start)
            .collect();
        if buffering.is_empty() {
            return mutations;
        }
        let ranges = clip::normalize(buffering.iter().map(|e| e.buffered_range()).collect());
        for e in buffering {
            let part = clip::clip(&[e.buffered_range()], &mutations);
            if !part.is_empty() {
                e.buffer.push((version, part));
            }
        }
        let rest = subtract(&KeyRange::all(), &ranges);
        clip::clip(&rest, &mutations)
    }

    /// Hands in the snapshot of take-over `ticket` (ignored if it was abandoned). Its version
    /// must be covered by the buffer: at least the take-over's start, at most the applied
    /// version when the fetch began.
    pub fn set_snapshot(&self, ticket: u64, snapshot: Snapshot) -> Result<(), Error> {
        let mut st = self.state.lock();
        let Some(e) = st.incoming.iter_mut().find(|e| e.ticket == ticket) else {
            return Ok(());
        };
        if snapshot.version < e.start {
            return Err(Error::Internal(format!(
                "a snapshot at version {} predates its take-over (buffered after {})",
                snapshot.version, e.start
            )));
        }
        e.snapshot = Some(snapshot);
        Ok(())
    }

    /// If take-over `ticket` still waits for its snapshot: the oldest version it may be
    /// read at (its start, which [`Handoff::restart`] may have moved).
    pub fn wants_snapshot(&self, ticket: u64) -> Option<u64> {
        self.state
            .lock()
            .incoming
            .iter()
            .find(|e| e.ticket == ticket && e.snapshot.is_none() && e.installed_at.is_none())
            .map(|e| e.start)
    }

    /// Notes that the fetch of take-over `ticket` has read `bytes` so far.
    pub fn note_fetched(&self, ticket: u64, bytes: u64) {
        if let Some(e) = self
            .state
            .lock()
            .incoming
            .iter_mut()
            .find(|e| e.ticket == ticket)
        {
            e.fetched_bytes = bytes;
        }
    }

    /// How far each take-over under way has got.
    pub fn take_overs(&self) -> Vec<TakeOver> {
        self.state
            .lock()
            .incoming
            .iter()
            .map(|e| TakeOver {
                range: e.range.clone(),
                fetched_bytes: e.fetched_bytes,
                fetched: e.snapshot.is_some() || e.installed_at.is_some(),
                installed: e.installed_at.is_some(),
            })
            .collect()
    }

    /// True if [`Handoff::pending`] at `version` would have something to write.
    pub fn owes_work(&self, version: u64) -> bool {
        let st = self.state.lock();
        st.leaving.iter().any(|(_, through)| due(*through, version))
            || st
                .incoming
                .iter()
                .any(|e| e.installed_at.is_none() && e.snapshot.is_some())
    }

    /// The engine work owed at `version` (every version up to it applied): installs of
    /// fetched take-overs and clears of ranges handed over more than an MVCC window before.
    /// Call [`Handoff::written`] once the batch is applied.
    pub fn pending(&self, version: u64) -> Result<Pending, Error> {
        let st = self.state.lock();
        let mut pending = Pending::default();
        for (range, through) in &st.leaving {
            if due(*through, version) {
                pending.batch.delete_range(&range.begin, &range.end);
                pending.cleared.push(range.clone());
            }
        }
        for e in st.incoming.iter().filter(|e| e.installed_at.is_none()) {
            let Some(snapshot) = &e.snapshot else {
                continue;
            };
            if e.cursor.is_none() {
                pending.batch.delete_range(&e.range.begin, &e.range.end);
            }
            let (piece, next) = next_piece(snapshot, &e.buffered_range(), self.piece_bytes);
            for (key, value) in fold(snapshot, &e.buffer, &piece)? {
                pending.batch.put(&key, &value);
            }
            pending.installs.push((e.ticket, e.range.clone(), next));
        }
        Ok(pending)
    }

    /// Records that `pending` was applied at `version`: installed ranges are complete from
    /// it (persisted before this returns), cleared ones are forgotten.
    pub fn written(&self, pending: Pending, version: u64) -> Result<(), Error> {
        let mut st = self.state.lock();
        st.leaving.retain(|(r, _)| !pending.cleared.contains(r));
        if pending.installs.is_empty() {
            return Ok(());
        }
        let mut finished = false;
        for (ticket, range, next) in &pending.installs {
            let Some(e) = st.incoming.iter_mut().find(|e| e.ticket == *ticket) else {
                continue;
            };
            if let Some(next) = next {
                e.cursor = Some(next.clone());
                continue;
            }
            e.installed_at = Some(version);
            e.cursor = None;
            e.buffer = Vec::new();
            e.snapshot = None;
            st.installed.record(range.clone(), version);
            finished = true;
        }
        if !finished {
            return Ok(());
        }
        st.installed.prune(version);
        st.installed.store(self.fs.as_ref(), &self.dir)
    }

    /// Take-overs installed at or below `durable` (the persisted applied version): ready to
    /// be handed over to this server, as of the shard-map version returned with them (the
    /// controller hands a move over only on a report judged against the map that made it).
    pub fn ready(&self, durable: u64) -> (Vec<KeyRange>, u64) {
        let st = self.state.lock();
        let ready = st
            .incoming
            .iter()
            .filter(|e| e.installed_at.is_some_and(|v| v <= durable))
            .map(|e| e.range.clone())
            .collect();
        (ready, st.map_version)
    }
}

/// Whether a range readable through `through` (0: never) may be cleared at `version`: no
/// read at a version it served is still possible. Two MVCC windows, not one: the engine's
/// GC horizon, which refuses older reads, trails the applied version by a window plus up
/// to one GC tick.
fn due(through: u64, version: u64) -> bool {
    through == 0 || through.saturating_add(2 * Version::MVCC_WINDOW) < version
}

/// The next piece of `snapshot` to install from what is left (`left`): the range it covers,
/// and the first key of the piece after it (`None`: it reaches the end of `left`). A piece
/// holds at least one pair, and stops before `piece_bytes` is passed.
fn next_piece(
    snapshot: &Snapshot,
    left: &KeyRange,
    piece_bytes: usize,
) -> (KeyRange, Option<Bytes>) {
    let first = snapshot
        .pairs
        .partition_point(|(k, _)| k.as_ref() < left.begin.as_ref());
    let mut bytes = 0usize;
    for (i, (key, value)) in snapshot.pairs.iter().enumerate().skip(first) {
        if !left.contains(key) {
            break;
        }
        bytes += key.len() + value.len();
        if bytes > piece_bytes && i > first {
            let piece = KeyRange {
                begin: left.begin.clone(),
                end: key.clone(),
            };
            return (piece, Some(key.clone()));
        }
    }
    (left.clone(), None)
}

/// The snapshot's keys in `piece` with every buffered mutation newer than the snapshot
/// applied in order (mutations outside `piece` leave nothing in it).
fn fold(
    snapshot: &Snapshot,
    buffer: &[(u64, Vec<Mutation>)],
    piece: &KeyRange,
) -> Result<BTreeMap<Bytes, Bytes>, Error> {
    let mut data: BTreeMap<Bytes, Bytes> = snapshot
        .pairs
        .iter()
        .filter(|(k, _)| piece.contains(k))
        .cloned()
        .collect();
    for (_, mutations) in buffer.iter().filter(|(v, _)| *v > snapshot.version) {
        for m in mutations {
            m.apply_to(&mut data)?;
        }
    }
    data.retain(|k, _| piece.contains(k));
    Ok(data)
}

/// The parts of `range` outside the normalized `others`.
fn subtract(range: &KeyRange, others: &[KeyRange]) -> Vec<KeyRange> {
    let mut out = Vec::new();
    let mut cursor = range.begin.clone();
    for o in others {
        if !o.intersects(range) {
            continue;
        }
        if o.begin > cursor {
            out.push(KeyRange {
                begin: cursor.clone(),
                end: o.begin.clone(),
            });
        }
        if o.end.is_empty() {
            return out;
        }
        if o.end > cursor {
            cursor = o.end.clone();
        }
    }
    let rest = KeyRange {
        begin: cursor,
        end: range.end.clone(),
    };
    if !rest.is_empty() && (rest.end.is_empty() || rest.begin < rest.end) {
        out.push(rest);
    }
    out
}

/// Where each range taken over became complete: reads below it are refused even after a
/// restart. Kept in `<data-dir>/installed_ranges.json` (temp file + fsync + rename);
/// records older than twice the MVCC window are dropped (no read is that old).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct InstalledRanges {
    records: Vec<(KeyRange, u64)>,
}

#[derive(Serialize, Deserialize)]
struct InstalledRecord {
    begin: String,
    end: String,
    from: u64,
}

impl InstalledRanges {
    fn load(fs: &dyn FileSystem, dir: &Path) -> Result<InstalledRanges, Error> {
        let path = dir.join(INSTALLED_FILE);
        let Some(bytes) = read_if_present(fs, &path)? else {
            return Ok(Self::default());
        };
        let records: Vec<InstalledRecord> = serde_json::from_slice(&bytes)
            .map_err(|e| Error::corruption(&path, 0, format!("not valid JSON: {e}")))?;
        let records = records
            .into_iter()
            .map(|r| {
                let range = KeyRange::new(
                    ferrisdb_core::keys::unescape(&r.begin)?,
                    ferrisdb_core::keys::unescape(&r.end)?,
                )?;
                Ok((range, r.from))
            })
            .collect::<Result<_, Error>>()
            .map_err(|e| Error::corruption(&path, 0, format!("bad range record: {e}")))?;
        Ok(InstalledRanges { records })
    }

    fn store(&self, fs: &dyn FileSystem, dir: &Path) -> Result<(), Error> {
        let records: Vec<InstalledRecord> = self
            .records
            .iter()
            .map(|(r, from)| InstalledRecord {
                begin: ferrisdb_core::keys::escape(&r.begin),
                end: ferrisdb_core::keys::escape(&r.end),
                from: *from,
            })
            .collect();
        let bytes = serde_json::to_vec(&records)
            .map_err(|e| Error::Internal(format!("encoding installed ranges: {e}")))?;
        write_atomically(fs, dir, INSTALLED_FILE, &bytes)
    }

    fn record(&mut self, range: KeyRange, from: u64) {
        self.records.push((range, from));
    }

    fn prune(&mut self, now: u64) {
        self.records
            .retain(|(_, from)| from.saturating_add(2 * Version::MVCC_WINDOW) >= now);
    }

    /// The oldest version `range` is complete at: the newest install touching it (0: none).
    fn from(&self, range: &KeyRange) -> u64 {
        self.records
            .iter()
            .filter(|(r, _)| r.intersects(range))
            .map(|(_, from)| *from)
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests;
