//! What a log server must remember across restarts besides its records: the generation it is
//! locked at (appends of older generations are refused for ever) and, after a reset, the
//! version an empty log starts after. Kept in `<log dir>/FENCE`, replaced atomically (temp
//! file, fsync, rename, directory fsync) before the log server answers the request that
//! changed it:
//!
//! ```text
//! ferrisdb-log-fence 1
//! locked_epoch 7
//! reset_start 1733480000000000
//! ```

use std::path::{Path, PathBuf};

use ferrisdb_core::{Error, Result, Version};
use ferrisdb_storage::fsutil::write_atomically;
use ferrisdb_storage::vfs::FileSystem;

/// File name in the log directory.
pub const FILE_NAME: &str = "FENCE";
const HEADER: &str = "ferrisdb-log-fence 1";

/// The persisted fence of a log server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fence {
    /// Appends of generations below this one are refused (0: never locked).
    pub locked_epoch: u64,
    /// Where an empty log starts (set by a reset; 0 for a log never reset).
    pub reset_start: Version,
}

impl Fence {
    /// Reads the fence in `dir` (the default when there is none yet). A damaged file is
    /// [`Error::Corruption`] naming it: a log that forgot its fence could accept a fenced
    /// generation's appends.
    pub fn load(fs: &dyn FileSystem, dir: &Path) -> Result<Fence> {
        let path = dir.join(FILE_NAME);
        let Some(bytes) = ferrisdb_storage::fsutil::read_if_present(fs, &path)? else {
            return Ok(Fence::default());
        };
        let text = String::from_utf8(bytes)
            .map_err(|_| Error::corruption(&path, 0, "the fence file is not UTF-8"))?;
        parse(&text).map_err(|reason| Error::corruption(&path, 0, reason))
    }

    /// Persists the fence in `dir` (atomically, durably).
    pub fn store(&self, fs: &dyn FileSystem, dir: &Path) -> Result<()> {
        let text = format!(
            "{HEADER}\nlocked_epoch {}\nreset_start {}\n",
            self.locked_epoch,
            self.reset_start.get()
        );
        write_atomically(fs, dir, FILE_NAME, text.as_bytes())
    }

    /// Where the fence of the log in `dir` lives.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(FILE_NAME)
    }
}

fn parse(text: &str) -> std::result::Result<Fence, String> {
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err(format!("the fence file does not start with {HEADER:?}"));
    }
    let mut field = |name: &str| -> std::result::Result<u64, String> {
        let line = lines
            .next()
            .ok_or_else(|| format!("the fence file ends before {name}"))?;
        let value = line
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(' '))
            .ok_or_else(|| format!("expected {name}, found {line:?}"))?;
        value
            .parse()
            .map_err(|e| format!("{name} {value:?} is not a number: {e}"))
    };
    let locked_epoch = field("locked_epoch")?;
    let reset_start = Version(field("reset_start")?);
    if lines.next().is_some() {
        return Err("unexpected lines after reset_start".into());
    }
    Ok(Fence {
        locked_epoch,
        reset_start,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrisdb_storage::vfs::OsFs;

    #[test]
    fn round_trips_and_defaults_when_absent() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Fence::load(&OsFs, dir.path()).unwrap(), Fence::default());
        let fence = Fence {
            locked_epoch: 7,
            reset_start: Version(1_733_480_000_000_000),
        };
        fence.store(&OsFs, dir.path()).unwrap();
        assert_eq!(Fence::load(&OsFs, dir.path()).unwrap(), fence);
        let text = std::fs::read_to_string(Fence::path(dir.path())).unwrap();
        assert_eq!(
            text,
            "ferrisdb-log-fence 1\nlocked_epoch 7\nreset_start 1733480000000000\n"
        );
    }

    #[test]
    fn a_damaged_fence_is_corruption_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [
            "",
            "ferrisdb-log-fence 2\nlocked_epoch 1\nreset_start 0\n",
            "ferrisdb-log-fence 1\nlocked_epoch x\nreset_start 0\n",
            "ferrisdb-log-fence 1\nlocked_epoch 1\n",
            "ferrisdb-log-fence 1\nreset_start 0\nlocked_epoch 1\n",
            "ferrisdb-log-fence 1\nlocked_epoch 1\nreset_start 0\nmore\n",
        ] {
            std::fs::write(Fence::path(dir.path()), bad).unwrap();
            let err = Fence::load(&OsFs, dir.path()).unwrap_err();
            assert!(
                matches!(&err, Error::Corruption { file, .. } if file.ends_with(FILE_NAME)),
                "{bad:?}: {err}"
            );
        }
    }
}
