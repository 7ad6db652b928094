//! The worker's stable identity: a random id created on first start and kept in
//! `<data-dir>/worker_id`, so a restarted process is recognised as the same worker (and keeps
//! its shards) even if its address changes; and the cluster it belongs to, kept in
//! `<data-dir>/cluster_id` from its first registration, so it never serves another cluster's
//! controller (a group rebuilt from nothing would otherwise hand it a new shard map over data
//! of the old one).

use std::path::Path;

use ferrisdb_core::Error;

const FILE_NAME: &str = "worker_id";
/// Name of the file holding the cluster id.
pub const CLUSTER_ID_FILE: &str = "cluster_id";

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Writes `text` to `dir/name` atomically.
fn write_atomically(dir: &Path, name: &str, text: &str) -> Result<(), Error> {
    ferrisdb_storage::fsutil::write_atomically(
        &ferrisdb_storage::vfs::OsFs,
        dir,
        name,
        text.as_bytes(),
    )
}

/// The cluster this worker belongs to, if it has registered before.
pub fn load_cluster_id(dir: &Path) -> Result<Option<String>, Error> {
    let path = dir.join(CLUSTER_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if valid_id(text.trim()) => Ok(Some(text.trim().to_string())),
        Ok(_) => Err(Error::corruption(
            &path,
            0,
            "cluster id file does not hold a valid id",
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

/// Records the cluster this worker joined.
pub fn store_cluster_id(dir: &Path, cluster_id: &str) -> Result<(), Error> {
    if !valid_id(cluster_id) {
        return Err(Error::InvalidArgument(format!(
            "the controller gave an invalid cluster id {cluster_id:?}"
        )));
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    write_atomically(dir, CLUSTER_ID_FILE, cluster_id)
}

/// Reads the worker id from `dir`, creating (and fsyncing) a new one with `prefix` on first use.
pub fn load_or_create_worker_id(dir: &Path, prefix: &str) -> Result<String, Error> {
    let path = dir.join(FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim();
            if !valid_id(id) {
                return Err(Error::corruption(
                    &path,
                    0,
                    "worker id file does not hold a valid id",
                ));
            }
            Ok(id.to_string())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
            let id = format!("{prefix}-{:016x}", rand::random::<u64>());
            write_atomically(dir, FILE_NAME, &id)?;
            Ok(id)
        }
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_worker_id(dir.path(), "storage").unwrap();
        assert!(a.starts_with("storage-"));
        let b = load_or_create_worker_id(dir.path(), "storage").unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn the_cluster_id_is_kept_once_known_and_garbage_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_cluster_id(dir.path()).unwrap(), None);
        store_cluster_id(dir.path(), "c0ffee").unwrap();
        assert_eq!(
            load_cluster_id(dir.path()).unwrap().as_deref(),
            Some("c0ffee")
        );
        assert!(store_cluster_id(dir.path(), "bad id").is_err());
        std::fs::write(dir.path().join(CLUSTER_ID_FILE), "x y\n").unwrap();
        let err = load_cluster_id(dir.path()).unwrap_err();
        assert!(err.to_string().contains(CLUSTER_ID_FILE), "{err}");
    }

    #[test]
    fn garbage_id_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), "bad id with spaces\n").unwrap();
        let err = load_or_create_worker_id(dir.path(), "storage").unwrap_err();
        assert!(err.to_string().contains("worker_id"), "{err}");
    }
}
