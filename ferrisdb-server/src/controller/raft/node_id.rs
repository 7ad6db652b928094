//! A controller replica's node id: chosen at random on its first start and kept in
//! `raft-node-id` in its data directory. A replica whose directory was wiped comes back with
//! a new id, so the group can tell it from the replica it replaces (which may have voted and
//! acknowledged entries the new one never saw).

use std::path::Path;

use ferrisdb_core::Error;

use super::NodeId;
use ferrisdb_storage::fsutil::{read_if_present, write_atomically};
use ferrisdb_storage::vfs::FileSystem;

/// Name of the node-id file.
pub const NODE_ID_FILE: &str = "raft-node-id";

/// Reads the node id in `dir`, creating one on first use. Returns the id and whether it is new.
pub fn load_or_create(fs: &dyn FileSystem, dir: &Path) -> Result<(NodeId, bool), Error> {
    let path = dir.join(NODE_ID_FILE);
    match read_if_present(fs, &path)? {
        Some(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let id = text
                .trim()
                .parse::<NodeId>()
                .ok()
                .filter(|id| *id != 0)
                .ok_or_else(|| {
                    Error::corruption(&path, 0, format!("not a node id: {:?}", text.trim()))
                })?;
            Ok((id, false))
        }
        None => {
            // Ids below 2^53 print exactly in JSON tools.
            let id = 1 + ferrisdb_core::random::up_to((1u64 << 53) - 2);
            write_atomically(fs, dir, NODE_ID_FILE, format!("{id}\n").as_bytes())?;
            Ok((id, true))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrisdb_storage::vfs::OsFs;

    #[test]
    fn created_once_then_kept_and_garbage_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (id, new) = load_or_create(&OsFs, dir.path()).unwrap();
        assert!(new && id != 0);
        assert_eq!(load_or_create(&OsFs, dir.path()).unwrap(), (id, false));
        std::fs::write(dir.path().join(NODE_ID_FILE), "zero\n").unwrap();
        let err = load_or_create(&OsFs, dir.path()).unwrap_err();
        assert!(err.to_string().contains(NODE_ID_FILE), "{err}");
    }
}
