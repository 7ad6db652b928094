//! The worker's stable identity: a random id created on first start and kept in
//! `<data-dir>/worker_id`, so a restarted process is recognised as the same worker (and keeps
//! its shards) even if its address changes; and the cluster it belongs to, kept in
//! `<data-dir>/cluster_id` from its first registration, so it never serves another cluster's
//! controller (a group rebuilt from nothing would otherwise hand it a new shard map over data
//! of the old one).

use std::path::{Path, PathBuf};

use ferrisdb_core::Error;
use ferrisdb_storage::fsutil::{read_if_present, write_atomically};
use ferrisdb_storage::vfs::{FileSystem, SharedFs};

const FILE_NAME: &str = "worker_id";

/// A process's data directory, on the file system it lives on (the operating system's, or
/// the simulator's).
#[derive(Debug, Clone)]
pub struct DataDir {
    /// The file system.
    pub fs: SharedFs,
    /// The directory.
    pub path: PathBuf,
}

impl DataDir {
    /// `path` on the operating system's file system.
    pub fn os(path: PathBuf) -> DataDir {
        DataDir {
            fs: ferrisdb_storage::vfs::os(),
            path,
        }
    }
}
/// Name of the file holding the cluster id.
pub const CLUSTER_ID_FILE: &str = "cluster_id";

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The id held in `path` (`what` names it in errors); `None` if the file does not exist.
fn read_id(fs: &dyn FileSystem, path: &Path, what: &str) -> Result<Option<String>, Error> {
    let Some(bytes) = read_if_present(fs, path)? else {
        return Ok(None);
    };
    match std::str::from_utf8(&bytes).map(str::trim) {
        Ok(id) if valid_id(id) => Ok(Some(id.to_string())),
        _ => Err(Error::corruption(
            path,
            0,
            format!("{what} file does not hold a valid id"),
        )),
    }
}

fn create_dir(fs: &dyn FileSystem, dir: &Path) -> Result<(), Error> {
    fs.create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))
}

/// The cluster this worker belongs to, if it has registered before.
pub fn load_cluster_id(fs: &dyn FileSystem, dir: &Path) -> Result<Option<String>, Error> {
    read_id(fs, &dir.join(CLUSTER_ID_FILE), "cluster id")
}

/// Records the cluster this worker joined.
pub fn store_cluster_id(fs: &dyn FileSystem, dir: &Path, cluster_id: &str) -> Result<(), Error> {
    if !valid_id(cluster_id) {
        return Err(Error::InvalidArgument(format!(
            "the controller gave an invalid cluster id {cluster_id:?}"
        )));
    }
    create_dir(fs, dir)?;
    write_atomically(fs, dir, CLUSTER_ID_FILE, cluster_id.as_bytes())
}

/// Reads the worker id from `dir`, creating (and fsyncing) a new one with `prefix` on first use.
pub fn load_or_create_worker_id(
    fs: &dyn FileSystem,
    dir: &Path,
    prefix: &str,
) -> Result<String, Error> {
    if let Some(id) = read_id(fs, &dir.join(FILE_NAME), "worker id")? {
        return Ok(id);
    }
    create_dir(fs, dir)?;
    let id = format!("{prefix}-{:016x}", ferrisdb_core::random::next_u64());
    write_atomically(fs, dir, FILE_NAME, id.as_bytes())?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrisdb_storage::vfs::OsFs;

    #[test]
    fn id_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_worker_id(&OsFs, dir.path(), "storage").unwrap();
        assert!(a.starts_with("storage-"));
        let b = load_or_create_worker_id(&OsFs, dir.path(), "storage").unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn the_cluster_id_is_kept_once_known_and_garbage_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_cluster_id(&OsFs, dir.path()).unwrap(), None);
        store_cluster_id(&OsFs, dir.path(), "c0ffee").unwrap();
        assert_eq!(
            load_cluster_id(&OsFs, dir.path()).unwrap().as_deref(),
            Some("c0ffee")
        );
        assert!(store_cluster_id(&OsFs, dir.path(), "bad id").is_err());
        std::fs::write(dir.path().join(CLUSTER_ID_FILE), "x y\n").unwrap();
        let err = load_cluster_id(&OsFs, dir.path()).unwrap_err();
        assert!(err.to_string().contains(CLUSTER_ID_FILE), "{err}");
    }

    #[test]
    fn garbage_id_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), "bad id with spaces\n").unwrap();
        let err = load_or_create_worker_id(&OsFs, dir.path(), "storage").unwrap_err();
        assert!(err.to_string().contains("worker_id"), "{err}");
    }
}
