//! How far this storage server has come: the applied version (every committed version up to
//! it is reflected in the engine) and the ranges it serves reads of, each at which versions
//! (a range taken over from another server is complete only from the version it was
//! installed at; one handed over stays readable up to the version it stopped following).
//!
//! Versions that carry no mutation for this server advance the applied version without
//! touching the engine, so the applied version is also persisted in
//! `<data-dir>/applied_version` (temp file + fsync + rename) before it is reported to the
//! coordinator as durable: after a restart the server resumes pulling from
//! `max(engine durable version, persisted applied version)` and never asks the log for
//! versions it already let the coordinator drop.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ferrisdb_core::{Error, KeyRange};
use ferrisdb_storage::fsutil::{read_if_present, write_atomically};
use ferrisdb_storage::vfs::SharedFs;
use parking_lot::RwLock;
use tokio::sync::watch;

const FILE_NAME: &str = "applied_version";

/// A range this server serves reads of, and at which versions it holds it complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readable {
    /// The keys.
    pub range: KeyRange,
    /// Oldest version held complete (0: every version still retained).
    pub from: u64,
    /// Newest version held complete (`u64::MAX` while the server follows the range's writes).
    pub through: u64,
}

impl Readable {
    /// A range followed since before any version still retained.
    pub fn followed(range: KeyRange) -> Readable {
        Readable {
            range,
            from: 0,
            through: u64::MAX,
        }
    }

    fn serves(&self, version: u64) -> bool {
        (self.from..=self.through).contains(&version)
    }
}

/// Applied version + readable ranges, shared by the puller and the read service.
pub struct Progress {
    applied: watch::Sender<u64>,
    /// The newest applied version persisted (the engine synced through it).
    persisted: AtomicU64,
    owned: RwLock<Vec<Readable>>,
    fs: SharedFs,
    dir: PathBuf,
    /// Why the engine stopped applying writes, once it has.
    failure: RwLock<Option<String>>,
    /// Why this server cannot catch up from the log (the log servers dropped versions it
    /// lacks), while that lasts.
    stranded: RwLock<Option<String>>,
}

impl Progress {
    /// Starts from the applied version persisted in `dir` on `fs` and the engine's durable
    /// version.
    pub fn open(fs: SharedFs, dir: &Path, engine_durable: u64) -> Result<Self, Error> {
        let file = dir.join(FILE_NAME);
        let persisted = match read_if_present(fs.as_ref(), &file)? {
            Some(bytes) => {
                let arr: [u8; 8] = bytes.as_slice().try_into().map_err(|_| {
                    Error::corruption(&file, 0, format!("expected 8 bytes, found {}", bytes.len()))
                })?;
                u64::from_le_bytes(arr)
            }
            None => 0,
        };
        let (applied, _) = watch::channel(persisted.max(engine_durable));
        Ok(Progress {
            applied,
            persisted: AtomicU64::new(persisted),
            owned: RwLock::new(Vec::new()),
            fs,
            dir: dir.to_path_buf(),
            failure: RwLock::new(None),
            stranded: RwLock::new(None),
        })
    }

    /// Records that the engine failed: the applied version will not move again in this
    /// process. The first reason is kept.
    pub fn set_failed(&self, reason: String) {
        self.failure.write().get_or_insert(reason);
    }

    /// Why the engine stopped applying writes, if it has.
    pub fn failure(&self) -> Option<String> {
        self.failure.read().clone()
    }

    /// Records why this server cannot catch up from the log (`None`: it can again).
    pub fn set_stranded(&self, reason: Option<String>) {
        *self.stranded.write() = reason;
    }

    /// Why this server cannot catch up from the log, if it cannot.
    pub fn stranded(&self) -> Option<String> {
        self.stranded.read().clone()
    }

    /// Why reads above the applied version cannot be served here: the engine failed, or the
    /// server cannot catch up from the log.
    pub fn stuck(&self) -> Option<String> {
        self.failure().or_else(|| self.stranded())
    }

    /// The applied version.
    pub fn applied(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Raises the applied version (never lowers it) and wakes waiting readers.
    pub fn advance(&self, version: u64) {
        self.applied.send_if_modified(|v| {
            if version > *v {
                *v = version;
                true
            } else {
                false
            }
        });
    }

    /// Waits until the applied version reaches `version`; false on timeout.
    pub async fn wait_for(&self, version: u64, timeout: Duration) -> bool {
        let mut rx = self.applied.subscribe();
        let reached = rx.wait_for(|v| *v >= version);
        matches!(tokio::time::timeout(timeout, reached).await, Ok(Ok(_)))
    }

    /// Persists `version` as applied-and-durable (atomically, fsynced).
    pub fn persist(&self, version: u64) -> Result<(), Error> {
        write_atomically(
            self.fs.as_ref(),
            &self.dir,
            FILE_NAME,
            &version.to_le_bytes(),
        )?;
        self.persisted.fetch_max(version, Ordering::AcqRel);
        Ok(())
    }

    /// The newest applied version persisted by this process (everything applied up to it is
    /// synced to disk); the persisted file's value at start.
    pub fn persisted(&self) -> u64 {
        self.persisted.load(Ordering::Acquire)
    }

    /// Replaces the readable ranges with `ranges`, each followed and complete at every version.
    pub fn set_owned(&self, ranges: Vec<KeyRange>) {
        self.set_readable(ranges.into_iter().map(Readable::followed).collect());
    }

    /// Replaces the readable ranges.
    pub fn set_readable(&self, mut ranges: Vec<Readable>) {
        ranges.sort_by(|a, b| a.range.begin.cmp(&b.range.begin));
        *self.owned.write() = ranges;
    }

    /// The readable ranges' keys.
    pub fn owned(&self) -> Vec<KeyRange> {
        self.owned.read().iter().map(|r| r.range.clone()).collect()
    }

    /// Whether `key` can be read here at `version`: `WrongShard` if this server does not hold
    /// it, `Unavailable` (read another replica) if it holds it but not complete at `version`.
    pub fn check_key(&self, key: &[u8], version: u64) -> Result<(), Error> {
        let owned = self.owned.read();
        let holding: Vec<&Readable> = owned.iter().filter(|r| r.range.contains(key)).collect();
        if holding.iter().any(|r| r.serves(version)) {
            return Ok(());
        }
        match holding.first() {
            None => Err(Error::WrongShard(format!(
                "key {} is not on this storage server",
                ferrisdb_core::keys::escape(key)
            ))),
            Some(r) => Err(not_complete_at(r, version)),
        }
    }

    /// Whether every key of `[begin, end)` can be read here at `version` (adjacent ranges
    /// join up); errors as [`Progress::check_key`].
    pub fn check_range(&self, begin: &[u8], end: &[u8], version: u64) -> Result<(), Error> {
        let owned = self.owned.read();
        let mut cursor = begin.to_vec();
        loop {
            let holding: Vec<&Readable> =
                owned.iter().filter(|r| r.range.contains(&cursor)).collect();
            let Some(r) = holding.iter().find(|r| r.serves(version)) else {
                return Err(match holding.first() {
                    None => Error::WrongShard(format!(
                        "range [{}, {}) is not wholly on this storage server",
                        ferrisdb_core::keys::escape(begin),
                        ferrisdb_core::keys::escape(end)
                    )),
                    Some(r) => not_complete_at(r, version),
                });
            };
            if r.range.end.is_empty() || (!end.is_empty() && r.range.end.as_ref() >= end) {
                return Ok(());
            }
            cursor = r.range.end.to_vec();
        }
    }
}

fn not_complete_at(r: &Readable, version: u64) -> Error {
    let held = if r.through == u64::MAX {
        format!("from version {} on (it took the shard over then)", r.from)
    } else {
        format!(
            "from version {} through {} (it has handed the shard over)",
            r.from, r.through
        )
    };
    Error::Unavailable(format!(
        "this storage server holds [{}, {}) complete only {held}, not at version {version}; \
         read another replica",
        ferrisdb_core::keys::escape(&r.range.begin),
        ferrisdb_core::keys::escape(&r.range.end)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applied_version_persists_and_only_moves_forward() {
        let dir = tempfile::tempdir().unwrap();
        let p = Progress::open(ferrisdb_storage::vfs::os(), dir.path(), 5).unwrap();
        assert_eq!(p.applied(), 5);
        p.advance(9);
        p.advance(7);
        assert_eq!(p.applied(), 9);
        p.persist(9).unwrap();
        let again = Progress::open(ferrisdb_storage::vfs::os(), dir.path(), 3).unwrap();
        assert_eq!(again.applied(), 9);
        let newer_engine = Progress::open(ferrisdb_storage::vfs::os(), dir.path(), 12).unwrap();
        assert_eq!(newer_engine.applied(), 12);
    }

    #[test]
    fn damaged_progress_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"xyz").unwrap();
        let err = Progress::open(ferrisdb_storage::vfs::os(), dir.path(), 0)
            .err()
            .unwrap();
        assert!(err.to_string().contains(FILE_NAME), "{err}");
    }

    #[test]
    fn range_ownership_joins_adjacent_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let p = Progress::open(ferrisdb_storage::vfs::os(), dir.path(), 0).unwrap();
        p.set_owned(vec![
            KeyRange::new("m", "").unwrap(),
            KeyRange::new("", "g").unwrap(),
        ]);
        assert!(p.check_key(b"a", 1).is_ok() && p.check_key(b"z", 1).is_ok());
        assert!(matches!(p.check_key(b"h", 1), Err(Error::WrongShard(_))));
        assert!(p.check_range(b"a", b"f", 1).is_ok());
        assert!(p.check_range(b"n", b"", 1).is_ok());
        assert!(p.check_range(b"a", b"n", 1).is_err());
        p.set_owned(vec![
            KeyRange::new("", "g").unwrap(),
            KeyRange::new("g", "").unwrap(),
        ]);
        assert!(p.check_range(b"", b"", 1).is_ok());
    }

    #[test]
    fn a_range_taken_over_or_handed_over_is_readable_only_where_it_is_complete() {
        let dir = tempfile::tempdir().unwrap();
        let p = Progress::open(ferrisdb_storage::vfs::os(), dir.path(), 0).unwrap();
        let readable = |b: &str, e: &str, from: u64, through: u64| Readable {
            range: KeyRange::new(b.to_string(), e.to_string()).unwrap(),
            from,
            through,
        };
        p.set_readable(vec![
            readable("a", "m", 100, u64::MAX),
            readable("m", "t", 0, 50),
        ]);
        assert!(p.check_key(b"b", 100).is_ok());
        let before = p.check_key(b"b", 99).unwrap_err();
        assert!(matches!(before, Error::Unavailable(_)), "{before}");
        assert!(before.to_string().contains("from version 100"), "{before}");
        assert!(p.check_key(b"n", 50).is_ok());
        assert!(matches!(p.check_key(b"n", 51), Err(Error::Unavailable(_))));
        assert!(matches!(p.check_key(b"x", 51), Err(Error::WrongShard(_))));
        assert!(p.check_range(b"b", b"p", 60).is_err());
        assert!(p.check_range(b"b", b"p", 50).is_err());
        assert!(p.check_range(b"b", b"l", 120).is_ok());
        p.set_readable(vec![
            readable("a", "m", 100, u64::MAX),
            readable("m", "t", 0, u64::MAX),
        ]);
        assert!(p.check_range(b"b", b"p", 120).is_ok());
        assert!(p.check_range(b"b", b"p", 60).is_err());
    }

    #[tokio::test]
    async fn readers_wait_for_the_applied_version() {
        let dir = tempfile::tempdir().unwrap();
        let p = std::sync::Arc::new(
            Progress::open(ferrisdb_storage::vfs::os(), dir.path(), 1).unwrap(),
        );
        assert!(!p.wait_for(2, Duration::from_millis(20)).await);
        let p2 = p.clone();
        let waiter = tokio::spawn(async move { p2.wait_for(3, Duration::from_secs(5)).await });
        p.advance(3);
        assert!(waiter.await.unwrap());
    }
}
