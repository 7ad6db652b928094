//! File-system helpers for WAL segments: listing the segment files of a directory, creating a
//! new segment durably, and syncing the directory.
//!
//! Creating a segment is always durable regardless of the sync policy: the header is written
//! and fdatasync'ed, then the directory is fsync'ed, so a segment that exists after a crash
//! has its name and (unless the crash hit creation itself) its header.

use std::path::{Path, PathBuf};

use ferrisdb_core::{Error, Result};

use crate::vfs::{CreateMode, FileSystem, WritableFile};

use super::format::{encode_segment_header, parse_segment_file_name, segment_file_name};

/// One segment file found in the log directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentPath {
    /// Segment id parsed from the file name.
    pub id: u64,
    /// Full path of the file.
    pub path: PathBuf,
}

/// Lists the segment files in `dir`, ascending by id. Other files are ignored.
pub fn list_segments(fs: &dyn FileSystem, dir: &Path) -> Result<Vec<SegmentPath>> {
    let names = fs
        .list_dir(dir)
        .map_err(|e| Error::io(format!("listing WAL dir {}", dir.display()), e))?;
    let mut segments = Vec::new();
    for name in names {
        if let Some(id) = parse_segment_file_name(&name) {
            segments.push(SegmentPath {
                id,
                path: dir.join(name),
            });
        }
    }
    segments.sort_unstable_by_key(|segment| segment.id);
    Ok(segments)
}

pub use crate::fsutil::{remove_if_present as remove_file_if_present, sync_dir};

/// An open segment file receiving appends.
#[derive(Debug)]
pub struct SegmentFile {
    id: u64,
    path: PathBuf,
    file: Box<dyn WritableFile>,
}

impl SegmentFile {
    /// Creates segment `id` in `dir` (failing if it already exists), writes its header,
    /// fdatasyncs it and fsyncs the directory.
    pub fn create(fs: &dyn FileSystem, dir: &Path, id: u64) -> Result<Self> {
        let path = dir.join(segment_file_name(id));
        let file = fs
            .create(&path, CreateMode::New)
            .map_err(|e| Error::io(format!("creating WAL segment {}", path.display()), e))?;
        let mut segment = SegmentFile { id, path, file };
        segment.write_all(&encode_segment_header(id))?;
        segment.sync_data()?;
        sync_dir(fs, dir)?;
        Ok(segment)
    }

    /// Id of this segment.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Writes `bytes` at the end of the file (one `write` call unless the OS writes short).
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        self.file
            .write_all(bytes)
            .map_err(|e| Error::io(format!("writing WAL segment {}", self.path.display()), e))
    }

    /// fdatasyncs the file.
    pub fn sync_data(&mut self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io(format!("syncing WAL segment {}", self.path.display()), e))
    }
}
