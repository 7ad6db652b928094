//! How far this storage server has come: the applied version (every committed version up to
//! it is reflected in the engine) and the ranges it owns.
//!
//! Versions that carry no mutation for this server advance the applied version without
//! touching the engine, so the applied version is also persisted in
//! `<data-dir>/applied_version` (temp file + fsync + rename) before it is reported to the
//! coordinator as durable: after a restart the server resumes pulling from
//! `max(engine durable version, persisted applied version)` and never asks the log for
//! versions it already let the coordinator drop.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ferrisdb_core::{Error, KeyRange};
use parking_lot::RwLock;
use tokio::sync::watch;

const FILE_NAME: &str = "applied_version";

/// Applied version + owned ranges, shared by the puller and the read service.
pub struct Progress {
    applied: watch::Sender<u64>,
    owned: RwLock<Vec<KeyRange>>,
    file: PathBuf,
    /// Why the engine stopped applying writes, once it has.
    failure: RwLock<Option<String>>,
    /// Why this server cannot catch up from the log (the log servers dropped versions it
    /// lacks), while that lasts.
    stranded: RwLock<Option<String>>,
}

impl Progress {
    /// Starts from the persisted applied version and the engine's durable version.
    pub fn open(dir: &Path, engine_durable: u64) -> Result<Self, Error> {
        let file = dir.join(FILE_NAME);
        let persisted = match std::fs::read(&file) {
            Ok(bytes) => {
                let arr: [u8; 8] = bytes.as_slice().try_into().map_err(|_| {
                    Error::corruption(&file, 0, format!("expected 8 bytes, found {}", bytes.len()))
                })?;
                u64::from_le_bytes(arr)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(Error::io(format!("reading {}", file.display()), e)),
        };
        let (applied, _) = watch::channel(persisted.max(engine_durable));
        Ok(Progress {
            applied,
            owned: RwLock::new(Vec::new()),
            file,
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
        let tmp = self.file.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&version.to_le_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.file)?;
            if let Some(dir) = self.file.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| Error::io(format!("writing {}", self.file.display()), e))
    }

    /// Replaces the owned ranges (sorted by begin key).
    pub fn set_owned(&self, mut ranges: Vec<KeyRange>) {
        ranges.sort();
        *self.owned.write() = ranges;
    }

    /// The owned ranges.
    pub fn owned(&self) -> Vec<KeyRange> {
        self.owned.read().clone()
    }

    /// True if `key` lies in an owned range.
    pub fn owns_key(&self, key: &[u8]) -> bool {
        self.owned.read().iter().any(|r| r.contains(key))
    }

    /// True if every key of `[begin, end)` lies in owned ranges (adjacent ranges join up).
    pub fn owns_range(&self, begin: &[u8], end: &[u8]) -> bool {
        let owned = self.owned.read();
        let mut cursor = begin.to_vec();
        loop {
            let Some(r) = owned.iter().find(|r| r.contains(&cursor)) else {
                return false;
            };
            if r.end.is_empty() || (!end.is_empty() && r.end.as_ref() >= end) {
                return true;
            }
            cursor = r.end.to_vec();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applied_version_persists_and_only_moves_forward() {
        let dir = tempfile::tempdir().unwrap();
        let p = Progress::open(dir.path(), 5).unwrap();
        assert_eq!(p.applied(), 5);
        p.advance(9);
        p.advance(7);
        assert_eq!(p.applied(), 9);
        p.persist(9).unwrap();
        let again = Progress::open(dir.path(), 3).unwrap();
        assert_eq!(again.applied(), 9);
        let newer_engine = Progress::open(dir.path(), 12).unwrap();
        assert_eq!(newer_engine.applied(), 12);
    }

    #[test]
    fn damaged_progress_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"xyz").unwrap();
        let err = Progress::open(dir.path(), 0).err().unwrap();
        assert!(err.to_string().contains(FILE_NAME), "{err}");
    }

    #[test]
    fn range_ownership_joins_adjacent_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let p = Progress::open(dir.path(), 0).unwrap();
        p.set_owned(vec![
            KeyRange::new("m", "").unwrap(),
            KeyRange::new("", "g").unwrap(),
        ]);
        assert!(p.owns_key(b"a") && p.owns_key(b"z") && !p.owns_key(b"h"));
        assert!(p.owns_range(b"a", b"f"));
        assert!(p.owns_range(b"n", b""));
        assert!(!p.owns_range(b"a", b"n"));
        p.set_owned(vec![
            KeyRange::new("", "g").unwrap(),
            KeyRange::new("g", "").unwrap(),
        ]);
        assert!(p.owns_range(b"", b""));
    }

    #[tokio::test]
    async fn readers_wait_for_the_applied_version() {
        let dir = tempfile::tempdir().unwrap();
        let p = std::sync::Arc::new(Progress::open(dir.path(), 1).unwrap());
        assert!(!p.wait_for(2, Duration::from_millis(20)).await);
        let p2 = p.clone();
        let waiter = tokio::spawn(async move { p2.wait_for(3, Duration::from_secs(5)).await });
        p.advance(3);
        assert!(waiter.await.unwrap());
    }
}
