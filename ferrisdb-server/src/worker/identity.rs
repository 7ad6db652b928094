//! The worker's stable identity: a random id created on first start and kept in
//! `<data-dir>/worker_id`, so a restarted process is recognised as the same worker (and keeps
//! its shards) even if its address changes.

use std::io::Write;
use std::path::Path;

use ferrisdb_core::Error;

const FILE_NAME: &str = "worker_id";

/// Reads the worker id from `dir`, creating (and fsyncing) a new one with `prefix` on first use.
pub fn load_or_create_worker_id(dir: &Path, prefix: &str) -> Result<String, Error> {
    let path = dir.join(FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim();
            let valid = !id.is_empty()
                && id.len() <= 64
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid {
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
            let tmp = dir.join(format!("{FILE_NAME}.tmp"));
            let write = || -> std::io::Result<()> {
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(id.as_bytes())?;
                f.sync_all()?;
                std::fs::rename(&tmp, &path)?;
                std::fs::File::open(dir)?.sync_all()
            };
            write().map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
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
    fn garbage_id_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), "bad id with spaces\n").unwrap();
        let err = load_or_create_worker_id(dir.path(), "storage").unwrap_err();
        assert!(err.to_string().contains("worker_id"), "{err}");
    }
}
