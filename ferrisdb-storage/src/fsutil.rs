//! Crash-safe file-system steps shared by everything that keeps files: fsyncing a directory
//! so entries created, renamed or deleted in it survive a crash; reading or deleting a file
//! that may not exist; and replacing a small file atomically. Each works on any
//! [`crate::vfs::FileSystem`].

use std::io::Write;
use std::path::Path;

use ferrisdb_core::{Error, Result};

use crate::vfs::{CreateMode, FileSystem};

/// The unit in which a crash may tear a write: a disk persists a sector whole or not at
/// all, so a write cut by a crash leaves whole sectors of new data followed by sectors that
/// read as zeros (allocated, never written).
pub const TORN_WRITE_SECTOR: u64 = 512;

/// Whether a damaged record at `start..end` (its declared extent, inside the file) is a
/// write torn by a crash, given `zeros_from`: where the run of zero bytes that ends the file
/// begins. It is when the record is zero from its start, or from a sector boundary inside
/// it, to end of file: whole sectors of it reached the disk, the rest never did. Damage
/// followed by anything but zeros is corruption.
pub fn is_torn_write(start: u64, end: u64, zeros_from: u64) -> bool {
    zeros_from <= start || zeros_from.div_ceil(TORN_WRITE_SECTOR) * TORN_WRITE_SECTOR < end
}

/// Fsyncs a directory so created, renamed or deleted entries survive a crash.
pub fn sync_dir(fs: &dyn FileSystem, dir: &Path) -> Result<()> {
    fs.sync_dir(dir)
        .map_err(|e| Error::io(format!("syncing directory {}", dir.display()), e))
}

/// Reads a whole small file; `None` if it does not exist.
pub fn read_if_present(fs: &dyn FileSystem, path: &Path) -> Result<Option<Vec<u8>>> {
    match fs.read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

/// Deletes a file, treating "already gone" as success.
pub fn remove_if_present(fs: &dyn FileSystem, path: &Path) -> Result<()> {
    match fs.remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("deleting {}", path.display()), e)),
    }
}

/// Replaces `dir/name` with `bytes` atomically: a temporary file `name.tmp` is written and
/// fsynced, renamed over the old file, and the directory fsynced, so a crash leaves either
/// the old contents or the new, never a mix.
pub fn write_atomically(fs: &dyn FileSystem, dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let io = |what: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |e| Error::io(format!("{what} {}", p.display()), e)
    };
    let mut f = fs
        .create(&tmp, CreateMode::Truncate)
        .map_err(io("creating", &tmp))?;
    f.write_all(bytes).map_err(io("writing", &tmp))?;
    f.sync_all().map_err(io("syncing", &tmp))?;
    drop(f);
    fs.rename(&tmp, &path)
        .map_err(io("renaming into place", &path))?;
    sync_dir(fs, dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::OsFs;
    use std::fs;

    #[test]
    fn atomic_replacement_leaves_only_the_new_file() {
        let dir = tempfile::tempdir().unwrap();
        write_atomically(&OsFs, dir.path(), "f", b"one").unwrap();
        write_atomically(&OsFs, dir.path(), "f", b"two").unwrap();
        assert_eq!(fs::read(dir.path().join("f")).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["f"]);
        remove_if_present(&OsFs, &dir.path().join("f")).unwrap();
        remove_if_present(&OsFs, &dir.path().join("f")).unwrap();
        let err = write_atomically(&OsFs, &dir.path().join("missing"), "f", b"x").unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
