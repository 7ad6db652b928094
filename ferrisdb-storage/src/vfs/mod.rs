//! The file system the engine stores its files in, as a trait: [`FileSystem`] opens
//! [`WritableFile`]s (append-only) and [`ReadableFile`]s (positional reads), lists, renames,
//! removes and fsyncs. Everything the engine writes — WAL segments, SSTables, the manifest,
//! `CURRENT`, `LOCK` — goes through it.
//!
//! Production code uses [`OsFs`], a thin layer over `std::fs`. The deterministic simulator
//! (`ferrisdb-sim`) supplies an in-memory file system that keeps what was fsynced apart from
//! what was only written, so a simulated crash loses exactly what a power cut may lose, and
//! that can fail an fsync or run out of space on cue. The trait is the seam that lets the same
//! engine code run on both (FoundationDB's `IAsyncFile`, RocksDB's `Env`).
//!
//! Methods return `std::io::Result`: callers wrap failures with the path and the step, as
//! they do for the OS.

mod os;

use std::fmt::Debug;
use std::io;
use std::path::Path;
use std::sync::{Arc, LazyLock};

pub use os::OsFs;

/// How [`FileSystem::create`] treats an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateMode {
    /// Fail with `AlreadyExists` if the file exists.
    New,
    /// Replace the file's contents if it exists.
    Truncate,
    /// Keep the file's contents and append after them, creating the file if it is missing.
    Append,
}

/// A file open for appending.
pub trait WritableFile: io::Write + Send + Sync + Debug {
    /// Makes the file's data durable (fdatasync).
    fn sync_data(&mut self) -> io::Result<()>;
    /// Makes the file's data and metadata durable (fsync).
    fn sync_all(&mut self) -> io::Result<()>;
}

/// A file open for positional reads; `Send + Sync`, so readers share one handle.
pub trait ReadableFile: Send + Sync + Debug {
    /// Reads exactly `buf.len()` bytes at `offset` (`UnexpectedEof` past the end).
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// The file's length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// A held exclusive lock on a file, released when dropped.
pub trait FileLock: Send + Sync + Debug {}

/// Where the engine keeps its files. See the module docs.
pub trait FileSystem: Send + Sync + Debug {
    /// Creates `dir` and its missing parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The names of the entries of `dir` (unordered; names that are not UTF-8 are skipped).
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Creates `path` for appending.
    fn create(&self, path: &Path, mode: CreateMode) -> io::Result<Box<dyn WritableFile>>;
    /// Opens an existing file for positional reads.
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadableFile>>;
    /// Reads a whole file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Cuts an existing file to `len` bytes and fsyncs it.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Renames `from` to `to`, replacing `to` if it exists.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Fsyncs a directory, so entries created, renamed or removed in it survive a crash.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes an exclusive lock on `path` (creating the file), or `None` if another holder
    /// has it.
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn FileLock>>>;
    /// Bytes an unprivileged process may still write to the file system holding `dir`.
    fn available_bytes(&self, dir: &Path) -> io::Result<u64>;
}

/// The shared handle to a file system that components hold.
pub type SharedFs = Arc<dyn FileSystem>;

/// The operating system's file system, shared.
pub fn os() -> SharedFs {
    static OS: LazyLock<SharedFs> = LazyLock::new(|| Arc::new(OsFs));
    Arc::clone(&OS)
}

/// Sequential `Read + Seek` over a [`ReadableFile`] (wrap it in a `BufReader` for small
/// reads).
#[derive(Debug)]
pub struct ReadCursor {
    file: Box<dyn ReadableFile>,
    position: u64,
    len: u64,
}

impl ReadCursor {
    /// A cursor at the start of `file`.
    pub fn new(file: Box<dyn ReadableFile>) -> io::Result<ReadCursor> {
        let len = file.len()?;
        Ok(ReadCursor {
            file,
            position: 0,
            len,
        })
    }

    /// The file's length when the cursor was made.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file was empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl io::Read for ReadCursor {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.position);
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        if n == 0 {
            return Ok(0);
        }
        self.file.read_exact_at(&mut buf[..n], self.position)?;
        self.position += n as u64;
        Ok(n)
    }
}

impl io::Seek for ReadCursor {
    fn seek(&mut self, to: io::SeekFrom) -> io::Result<u64> {
        let target = match to {
            io::SeekFrom::Start(at) => Some(at),
            io::SeekFrom::End(delta) => self.len.checked_add_signed(delta),
            io::SeekFrom::Current(delta) => self.position.checked_add_signed(delta),
        };
        self.position = target.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of a file",
            )
        })?;
        Ok(self.position)
    }
}
