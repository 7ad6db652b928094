//! The manifest: the durable record of which SSTables are live at each level, the first live
//! WAL segment (log number), the next file number, the GC horizon and the last flushed version.
//!
//! It is an append-only file `MANIFEST-{id:06}` of checksummed [`VersionEdit`] records
//! (framing in `log.rs`), plus a file `CURRENT` naming the active manifest. Every open writes
//! a fresh manifest holding one snapshot edit of the whole state and switches `CURRENT` to it
//! atomically (write `CURRENT.tmp`, fsync, rename, fsync the directory), then deletes the old
//! manifest. Each later edit is appended and fdatasync'ed before [`Manifest::log_and_apply`]
//! returns, so callers follow the crash-safety rule: an SSTable is fsync'ed before the edit
//! that adds it, and a file is deleted only after the edit that removes it is durable.

mod edit;
mod log;
mod state;

use std::io::Write;
use std::path::{Path, PathBuf};

use ferrisdb_core::{Error, Result};

use crate::vfs::{CreateMode, FileSystem, SharedFs, WritableFile};

pub use edit::{FileMeta, VersionEdit};
pub(crate) use log::decode_edits;
pub use state::ManifestState;

/// Name of the file naming the active manifest.
pub const CURRENT_FILE: &str = "CURRENT";
const CURRENT_TEMP_FILE: &str = "CURRENT.tmp";
const MANIFEST_PREFIX: &str = "MANIFEST-";
const TABLE_SUFFIX: &str = ".sst";

/// File name of table `id`: `{id:06}.sst`.
pub fn table_file_name(id: u64) -> String {
    format!("{id:06}{TABLE_SUFFIX}")
}

/// Parses a table file name back into its id.
pub fn parse_table_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(TABLE_SUFFIX)?;
    if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// File name of manifest `id`: `MANIFEST-{id:06}`.
pub fn manifest_file_name(id: u64) -> String {
    format!("{MANIFEST_PREFIX}{id:06}")
}

/// The open manifest of a database directory.
#[derive(Debug)]
pub struct Manifest {
    fs: SharedFs,
    dir: PathBuf,
    path: PathBuf,
    file: Box<dyn WritableFile>,
    state: ManifestState,
    /// Set after a failed append: the file's tail is then unknown, so no more edits.
    poisoned: bool,
}

impl Manifest {
    /// Opens the manifest of `dir` (or starts an empty state if there is no `CURRENT`),
    /// replays it, and rewrites it as a new manifest holding one snapshot edit.
    pub fn open(fs: &SharedFs, dir: &Path, num_levels: usize) -> Result<Manifest> {
        let current_path = dir.join(CURRENT_FILE);
        let old_manifest = match crate::fsutil::read_if_present(fs.as_ref(), &current_path)? {
            Some(bytes) => Some(parse_current(&current_path, &bytes)?),
            None => None,
        };
        let mut state = ManifestState::new(num_levels);
        if let Some(name) = &old_manifest {
            let path = dir.join(name);
            for (offset, edit) in log::read_edits(&**fs, &path)? {
                state
                    .apply(&edit)
                    .map_err(|reason| Error::corruption(&path, offset, reason))?;
            }
        }
        let id = state.next_file_number;
        state.next_file_number = id
            .checked_add(1)
            .ok_or_else(|| Error::Internal("file numbers exhausted".into()))?;
        let path = dir.join(manifest_file_name(id));
        // A crash during an earlier open, between creating this file and pointing CURRENT
        // at it, leaves it behind; CURRENT does not name it, so nothing in it is needed.
        remove_if_present(&**fs, &path)?;
        let file = log::create(&**fs, &path, &state.snapshot_edit())?;
        set_current(&**fs, dir, &manifest_file_name(id))?;
        if let Some(name) = old_manifest.filter(|n| *n != manifest_file_name(id)) {
            remove_if_present(&**fs, &dir.join(name))?;
        }
        Ok(Manifest {
            fs: SharedFs::clone(fs),
            dir: dir.to_path_buf(),
            path,
            file,
            state,
            poisoned: false,
        })
    }

    /// The state after every applied edit.
    pub fn state(&self) -> &ManifestState {
        &self.state
    }

    /// Path of the active manifest file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `edit`, fdatasyncs, then applies it to the in-memory state.
    pub fn log_and_apply(&mut self, edit: &VersionEdit) -> Result<()> {
        if self.poisoned {
            return Err(Error::Internal(format!(
                "manifest {} failed earlier; no more edits",
                self.path.display()
            )));
        }
        let mut next = self.state.clone();
        next.apply(edit)
            .map_err(|reason| Error::Internal(format!("invalid manifest edit: {reason}")))?;
        if let Err(err) = log::append(&mut *self.file, &self.path, edit) {
            self.poisoned = true;
            return Err(err);
        }
        self.state = next;
        Ok(())
    }

    /// Deletes `.sst` files in the directory that no live file entry names.
    pub fn remove_orphan_tables(&self) -> Result<Vec<u64>> {
        let names = self
            .fs
            .list_dir(&self.dir)
            .map_err(|e| Error::io(format!("listing {}", self.dir.display()), e))?;
        let live: std::collections::HashSet<u64> = self.state.live_ids().collect();
        let mut removed = Vec::new();
        for name in names {
            let orphan = parse_table_file_name(&name).filter(|id| !live.contains(id));
            if let Some(id) = orphan {
                remove_if_present(&*self.fs, &self.dir.join(&name))?;
                removed.push(id);
            }
        }
        if !removed.is_empty() {
            sync_dir(&*self.fs, &self.dir)?;
        }
        Ok(removed)
    }
}

/// Validates the contents of `CURRENT` and returns the manifest file name.
fn parse_current(path: &Path, bytes: &[u8]) -> Result<String> {
    let name = std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.strip_suffix('\n'))
        .filter(|s| {
            s.strip_prefix(MANIFEST_PREFIX)
                .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        })
        .ok_or_else(|| Error::corruption(path, 0, "CURRENT does not name a manifest"))?;
    Ok(name.to_owned())
}

/// Atomically points `CURRENT` at `name`.
fn set_current(fs: &dyn FileSystem, dir: &Path, name: &str) -> Result<()> {
    let temp = dir.join(CURRENT_TEMP_FILE);
    let io = |e| Error::io(format!("writing {}", temp.display()), e);
    let mut file = fs.create(&temp, CreateMode::Truncate).map_err(io)?;
    file.write_all(format!("{name}\n").as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs.rename(&temp, &dir.join(CURRENT_FILE))
        .map_err(|e| Error::io(format!("renaming {}", temp.display()), e))?;
    sync_dir(fs, dir)
}

pub use crate::fsutil::{remove_if_present, sync_dir};

#[cfg(test)]
mod tests;
