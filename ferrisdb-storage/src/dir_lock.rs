//! [`DirLock`]: one process at a time per data directory.
//!
//! Every FerrisDB process that owns files on disk (a storage engine, the coordinator's commit
//! log, the controller's state, a local cluster) takes an exclusive advisory lock on a `LOCK`
//! file in its directory before reading or writing anything there, and holds it until it is
//! done. A second process pointed at the same directory (a duplicated command line, a second
//! `ferrisdb cluster up`, a supervisor restarting a process whose predecessor still runs) fails
//! at once with an error naming the file, instead of both appending to the same log. The lock
//! is released by the kernel when the holder exits, even by `kill -9`, so a crash never leaves
//! a stale lock behind.

use std::path::{Path, PathBuf};

use ferrisdb_core::{Error, Result};

use crate::vfs::{FileLock, FileSystem, OsFs};

/// The lock file's name inside a locked directory.
pub const LOCK_FILE: &str = "LOCK";

/// An exclusive lock on `dir/LOCK`, held while this value lives.
#[derive(Debug)]
pub struct DirLock {
    path: PathBuf,
    _lock: Box<dyn FileLock>,
}

impl DirLock {
    /// Locks `dir` (which must exist) for `owner` (what holds it, for the error message:
    /// "the storage engine", "the commit log", ...). Fails with `InvalidArgument` naming the
    /// lock file when another process holds it.
    pub fn acquire(dir: &Path, owner: &str) -> Result<DirLock> {
        DirLock::acquire_in(&OsFs, dir, owner)
    }

    /// [`acquire`](Self::acquire) on the file system `fs`.
    pub fn acquire_in(fs: &dyn FileSystem, dir: &Path, owner: &str) -> Result<DirLock> {
        let path = dir.join(LOCK_FILE);
        match fs.try_lock(&path) {
            Ok(Some(lock)) => Ok(DirLock { path, _lock: lock }),
            Ok(None) => Err(Error::InvalidArgument(format!(
                "{} is locked: {owner} in {} is already open in another process",
                path.display(),
                dir.display()
            ))),
            Err(e) => Err(Error::io(format!("locking {}", path.display()), e)),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path(), "the test store").unwrap();
        assert_eq!(first.path(), dir.path().join(LOCK_FILE));
        let err = DirLock::acquire(dir.path(), "the test store").unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
        assert!(message.contains("LOCK is locked"), "{message}");
        assert!(message.contains("the test store"), "{message}");
        drop(first);
        DirLock::acquire(dir.path(), "the test store").unwrap();
    }

    #[test]
    fn a_missing_directory_is_an_io_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = DirLock::acquire(&missing, "the test store").unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
