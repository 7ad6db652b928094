//! [`SimDisk`]: an in-memory [`FileSystem`] with the crash semantics of a real disk, and
//! faults on cue.
//!
//! Every file keeps two images: what reads see (the page cache) and what is durable (on the
//! platter). `sync_data`/`sync_all` copy the first to the second. Namespace changes — create,
//! rename, remove — are queued in order and become durable when a directory is fsynced (the
//! fsync makes every queued change up to the last one touching that directory durable, as a
//! journaling file system commits its journal in order); fsyncing a file does not make its
//! name durable.
//!
//! A power cut ([`SimDisk::cut_power_after`]) freezes the disk after a given number of
//! operations: the durable image survives, plus, per file, a random prefix of the bytes that
//! were written but not synced, cut at a 512-byte sector boundary (a sector persists whole or
//! not at all), sometimes followed by zeros up to the next 4 KiB page or the end of what was
//! written (the size was updated, the data never reached those sectors: a torn last page); plus
//! a random prefix of the queued namespace changes. From then on every operation fails, so
//! the engine's operation in flight fails wherever it was, and [`SimDisk::reboot`] brings the
//! disk back with only what survived.
//!
//! Faults while running ([`Faults`]): an fsync that fails with EIO (and, as on Linux, marks
//! the unsynced pages clean: they are lost at the next crash even if a later fsync
//! succeeds), and a full disk (writes fail with `StorageFull` past a byte budget).
//!
//! Directories are created durably at once (a simplification: every directory the engine
//! uses is created before any file in it).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferrisdb_storage::vfs::{CreateMode, FileLock, FileSystem, ReadableFile, WritableFile};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Page size used for torn last pages.
const PAGE: usize = 4096;
/// A disk writes a sector whole or not at all.
const SECTOR: usize = ferrisdb_storage::fsutil::TORN_WRITE_SECTOR as usize;

/// Fault rates of a [`SimDisk`] while it runs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Faults {
    /// Probability that one fsync (of a file or directory) fails with EIO.
    pub fsync_failure: f64,
    /// When set, writes fail with `StorageFull` once this many bytes are stored.
    pub capacity_bytes: Option<u64>,
}

/// Counters of what the disk did and injected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskStats {
    /// File system calls served (including failed ones).
    pub operations: u64,
    /// Fsyncs that failed on purpose.
    pub failed_fsyncs: u64,
    /// Writes refused because the disk was full.
    pub full_disk_writes: u64,
    /// Power cuts.
    pub power_cuts: u64,
    /// Unsynced bytes dropped by power cuts.
    pub lost_bytes: u64,
    /// Files that ended a power cut with a zero-filled torn page.
    pub torn_pages: u64,
}

#[derive(Debug, Default, Clone)]
struct FileData {
    /// What reads see.
    data: Vec<u8>,
    /// What survives a power cut for sure.
    durable: Vec<u8>,
    /// `durable` is no longer a prefix of `data` (the file was truncated below it).
    diverged: bool,
}

impl FileData {
    fn sync(&mut self) {
        if self.diverged || self.durable.len() > self.data.len() {
            self.durable = self.data.clone();
            self.diverged = false;
        } else {
            let synced = self.durable.len();
            self.durable.extend_from_slice(&self.data[synced..]);
        }
    }

    /// A failed fsync on Linux: the unsynced pages are marked clean without reaching the
    /// disk, so what the disk will hold there is zeros.
    fn lose_unsynced(&mut self) {
        if self.diverged {
            return;
        }
        let len = self.data.len();
        self.durable.resize(len, 0);
    }
}

/// A namespace change not yet durable.
#[derive(Debug, Clone)]
enum NameChange {
    Link { path: PathBuf, inode: u64 },
    Unlink { path: PathBuf },
    Rename { from: PathBuf, to: PathBuf },
}

impl NameChange {
    fn touches(&self, dir: &Path) -> bool {
        let parent = |p: &Path| p.parent() == Some(dir);
        match self {
            NameChange::Link { path, .. } | NameChange::Unlink { path } => parent(path),
            NameChange::Rename { from, to } => parent(from) || parent(to),
        }
    }

    fn apply(&self, names: &mut BTreeMap<PathBuf, u64>) {
        match self {
            NameChange::Link { path, inode } => {
                names.insert(path.clone(), *inode);
            }
            NameChange::Unlink { path } => {
                names.remove(path);
            }
            NameChange::Rename { from, to } => {
                if let Some(inode) = names.remove(from) {
                    names.insert(to.clone(), inode);
                }
            }
        }
    }
}

#[derive(Debug)]
struct DiskState {
    rng: StdRng,
    faults: Faults,
    files: BTreeMap<u64, FileData>,
    /// Names as the running system sees them.
    names: BTreeMap<PathBuf, u64>,
    /// Names as they would be after a power cut that lost every queued change.
    durable_names: BTreeMap<PathBuf, u64>,
    queued: Vec<NameChange>,
    dirs: BTreeSet<PathBuf>,
    locks: BTreeSet<PathBuf>,
    next_inode: u64,
    /// Operations left before the power goes; `None`: no cut scheduled.
    power_left: Option<u64>,
    powered_off: bool,
    /// Bumped when the process using the disk dies (or the power goes): files and locks
    /// opened before belong to a dead process and fail from then on.
    generation: u64,
    stats: DiskStats,
    /// Print every call to stderr (`FERRISDB_SIM_DISK_LOG=1`, for debugging one seed).
    log: bool,
}

impl DiskState {
    fn note(&self, what: std::fmt::Arguments<'_>) {
        if self.log {
            eprintln!("disk: {what}");
        }
    }

    /// Counts an operation and fails it if the power is (or just went) off.
    fn begin(&mut self) -> io::Result<()> {
        self.stats.operations += 1;
        if let Some(left) = self.power_left {
            if left == 0 {
                self.power_left = None;
                self.cut_power();
            } else {
                self.power_left = Some(left - 1);
            }
        }
        if self.powered_off {
            self.note(format_args!("refused: power is off"));
            return Err(io::Error::other("simulated power loss: the disk is off"));
        }
        Ok(())
    }

    /// [`begin`](Self::begin) for a call through a handle opened in `generation`: fails if
    /// the process that opened it died since.
    fn begin_on(&mut self, generation: u64) -> io::Result<()> {
        self.begin()?;
        if generation != self.generation {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "simulated: this file was opened by a process that has died",
            ));
        }
        Ok(())
    }

    fn maybe_fail_fsync(&mut self) -> bool {
        let p = self.faults.fsync_failure;
        if p > 0.0 && self.rng.random_bool(p.min(1.0)) {
            self.stats.failed_fsyncs += 1;
            true
        } else {
            false
        }
    }

    fn stored_bytes(&self) -> u64 {
        self.files.values().map(|f| f.data.len() as u64).sum()
    }

    /// What survives: durable images, random prefixes of unsynced tails (sometimes with a
    /// zero-filled torn page), a random prefix of the queued namespace changes.
    fn cut_power(&mut self) {
        self.powered_off = true;
        self.stats.power_cuts += 1;
        let kept_changes = self.rng.random_range(0..=self.queued.len());
        for change in self.queued.drain(..kept_changes) {
            change.apply(&mut self.durable_names);
        }
        self.queued.clear();
        self.names = self.durable_names.clone();
        let live: BTreeSet<u64> = self.names.values().copied().collect();
        self.files.retain(|inode, _| live.contains(inode));
        for file in self.files.values_mut() {
            let mut survivor = file.durable.clone();
            if !file.diverged && file.data.len() > survivor.len() {
                let unsynced = &file.data[survivor.len()..];
                // Sectors persist whole or not at all: the kept prefix ends at a sector
                // boundary (or at the end of what was written).
                let mut keep = self.rng.random_range(0..=unsynced.len());
                if keep < unsynced.len() {
                    let end = survivor.len() + keep;
                    keep = (end - end % SECTOR).saturating_sub(survivor.len());
                }
                survivor.extend_from_slice(&unsynced[..keep]);
                self.stats.lost_bytes += (unsynced.len() - keep) as u64;
                if keep < unsynced.len() && self.rng.random_bool(0.5) {
                    let page_end = survivor.len().div_ceil(PAGE) * PAGE;
                    let torn_end = page_end.min(file.data.len());
                    if torn_end > survivor.len() {
                        survivor.resize(torn_end, 0);
                        self.stats.torn_pages += 1;
                    }
                }
            } else if file.diverged {
                self.stats.lost_bytes += file.data.len() as u64;
            }
            let _ = &file;
            file.data = survivor.clone();
            file.durable = survivor;
            file.diverged = false;
        }
        self.locks.clear();
        if self.log {
            for (path, inode) in &self.names {
                let len = self.files.get(inode).map_or(0, |f| f.data.len());
                self.note(format_args!(
                    "after power cut: {} (#{inode}) {len} bytes",
                    path.display()
                ));
            }
        }
    }

    fn inode(&self, path: &Path) -> io::Result<u64> {
        self.names.get(path).copied().ok_or_else(|| not_found(path))
    }

    fn check_parent(&self, path: &Path) -> io::Result<()> {
        match path.parent() {
            Some(dir) if self.dirs.contains(dir) => Ok(()),
            _ => Err(not_found(path)),
        }
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file or directory", path.display()),
    )
}

/// The simulated disk of one machine; clones share it. See the module docs.
#[derive(Debug, Clone)]
pub struct SimDisk {
    state: Arc<Mutex<DiskState>>,
    /// Set on a process's view of the disk ([`SimDisk::for_this_life`]): the generation it
    /// lives in; once the process dies, every call through the view fails.
    life: Option<u64>,
}

impl SimDisk {
    /// An empty disk whose random choices (crash outcomes, failed fsyncs) follow `seed`.
    pub fn new(seed: u64) -> SimDisk {
        SimDisk {
            state: Arc::new(Mutex::new(DiskState {
                rng: StdRng::seed_from_u64(seed),
                faults: Faults::default(),
                files: BTreeMap::new(),
                names: BTreeMap::new(),
                durable_names: BTreeMap::new(),
                queued: Vec::new(),
                dirs: BTreeSet::from([PathBuf::from("/")]),
                locks: BTreeSet::new(),
                next_inode: 1,
                power_left: None,
                powered_off: false,
                generation: 0,
                stats: DiskStats::default(),
                log: std::env::var_os("FERRISDB_SIM_DISK_LOG").is_some(),
            })),
            life: None,
        }
    }

    /// The disk as the process starting now sees it: once that process dies
    /// ([`process_died`](Self::process_died), or a power cut and [`reboot`](Self::reboot)),
    /// every call through this view fails, as no thread of a killed process does anything
    /// more — in the simulation a dead process's tasks may still run (a blocking task, an
    /// engine thread), and must not open files or take locks its successor needs.
    pub fn for_this_life(&self) -> SimDisk {
        SimDisk {
            state: Arc::clone(&self.state),
            life: Some(self.state.lock().generation),
        }
    }

    /// [`DiskState::begin`] for a call through this handle of the disk: also fails if the
    /// handle is a dead process's view.
    fn begin(&self, state: &mut DiskState) -> io::Result<()> {
        state.begin()?;
        match self.life {
            Some(life) if life != state.generation => Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "simulated: the process using this disk has died",
            )),
            _ => Ok(()),
        }
    }

    /// Sets the fault rates from now on.
    pub fn set_faults(&self, faults: Faults) {
        self.state.lock().faults = faults;
    }

    /// Cuts the power after `operations` more file system calls (0: at the next one).
    pub fn cut_power_after(&self, operations: u64) {
        self.state.lock().power_left = Some(operations);
    }

    /// Cuts the power now.
    pub fn cut_power(&self) {
        let mut state = self.state.lock();
        state.power_left = None;
        if !state.powered_off {
            state.cut_power();
        }
    }

    /// Whether the power is off (a cut happened and no reboot since).
    pub fn is_powered_off(&self) -> bool {
        self.state.lock().powered_off
    }

    /// Powers the disk back on with what survived the cut; cancels a scheduled cut. Files
    /// opened before the cut stay dead.
    pub fn reboot(&self) {
        let mut state = self.state.lock();
        state.powered_off = false;
        state.power_left = None;
        state.generation += 1;
    }

    /// The process using the disk died (kill -9; the machine did not): the kernel closes its
    /// files — a handle opened before fails from now on, even if some thread of the dead
    /// process's simulation still holds it — and releases its locks. What it wrote stays
    /// in the page cache, synced or not.
    pub fn process_died(&self) {
        let mut state = self.state.lock();
        state.locks.clear();
        state.generation += 1;
    }

    /// The disk is lost and replaced by an empty one (a machine rebuilt, a volume gone):
    /// every file and directory goes, its faults are cleared, and everything opened before
    /// fails from now on, as after [`process_died`](Self::process_died).
    pub fn wipe(&self) {
        let mut state = self.state.lock();
        state.files.clear();
        state.names.clear();
        state.durable_names.clear();
        state.queued.clear();
        state.dirs = BTreeSet::from([PathBuf::from("/")]);
        state.locks.clear();
        state.faults = Faults::default();
        state.power_left = None;
        state.powered_off = false;
        state.generation += 1;
    }

    /// What the disk did so far.
    pub fn stats(&self) -> DiskStats {
        self.state.lock().stats
    }

    /// Bytes stored in files (as reads see them).
    pub fn stored_bytes(&self) -> u64 {
        self.state.lock().stored_bytes()
    }

    /// The names of every file, sorted (for traces and debugging).
    pub fn file_names(&self) -> Vec<PathBuf> {
        self.state.lock().names.keys().cloned().collect()
    }
}

#[derive(Debug)]
struct SimWritable {
    disk: SimDisk,
    inode: u64,
    generation: u64,
}

impl Write for SimWritable {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut state = self.disk.state.lock();
        state.begin_on(self.generation)?;
        let needed = state.stored_bytes() + buf.len() as u64;
        if state
            .faults
            .capacity_bytes
            .is_some_and(|capacity| needed > capacity)
        {
            state.stats.full_disk_writes += 1;
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "simulated full disk",
            ));
        }
        let file = state
            .files
            .get_mut(&self.inode)
            .ok_or_else(|| io::Error::other("write to a file lost in a power cut"))?;
        let at = file.data.len();
        file.data.extend_from_slice(buf);
        state.note(format_args!(
            "write #{} {} bytes at {at}",
            self.inode,
            buf.len()
        ));
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl SimWritable {
    fn sync(&mut self) -> io::Result<()> {
        let mut state = self.disk.state.lock();
        state.begin_on(self.generation)?;
        let failed = state.maybe_fail_fsync();
        let file = state
            .files
            .get_mut(&self.inode)
            .ok_or_else(|| io::Error::other("sync of a file lost in a power cut"))?;
        if failed {
            file.lose_unsynced();
            state.note(format_args!("sync #{} FAILED", self.inode));
            return Err(io::Error::other("simulated fsync failure (EIO)"));
        }
        file.sync();
        let len = file.durable.len();
        state.note(format_args!("sync #{} durable {len}", self.inode));
        Ok(())
    }
}

impl WritableFile for SimWritable {
    fn sync_data(&mut self) -> io::Result<()> {
        self.sync()
    }

    fn sync_all(&mut self) -> io::Result<()> {
        self.sync()
    }
}

#[derive(Debug)]
struct SimReadable {
    disk: SimDisk,
    inode: u64,
    generation: u64,
}

impl ReadableFile for SimReadable {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut state = self.disk.state.lock();
        state.begin_on(self.generation)?;
        let file = state
            .files
            .get(&self.inode)
            .ok_or_else(|| io::Error::other("read of a file lost in a power cut"))?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let bytes = start
            .checked_add(buf.len())
            .and_then(|end| file.data.get(start..end))
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"))?;
        buf.copy_from_slice(bytes);
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        let mut state = self.disk.state.lock();
        state.begin_on(self.generation)?;
        state
            .files
            .get(&self.inode)
            .map(|f| f.data.len() as u64)
            .ok_or_else(|| io::Error::other("a file lost in a power cut"))
    }
}

#[derive(Debug)]
struct SimLock {
    disk: SimDisk,
    path: PathBuf,
    generation: u64,
}

impl FileLock for SimLock {}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut state = self.disk.state.lock();
        // A dead process's lock was released when it died; the path may be locked again.
        if state.generation == self.generation {
            state.locks.remove(&self.path);
        }
    }
}

impl FileSystem for SimDisk {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        self.begin(&mut state)?;
        for ancestor in dir.ancestors() {
            state.dirs.insert(ancestor.to_path_buf());
        }
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut state = self.state.lock();
        self.begin(&mut state)?;
        if !state.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        // Files and subdirectories, as `readdir` lists them.
        Ok(state
            .names
            .keys()
            .chain(state.dirs.iter())
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn create(&self, path: &Path, mode: CreateMode) -> io::Result<Box<dyn WritableFile>> {
        let mut state = self.state.lock();
        self.begin(&mut state)?;
        state.check_parent(path)?;
        let inode = match (state.names.get(path).copied(), mode) {
            (Some(_), CreateMode::New) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists", path.display()),
                ));
            }
            (Some(inode), CreateMode::Truncate) => {
                if let Some(file) = state.files.get_mut(&inode) {
                    file.data.clear();
                    file.diverged = !file.durable.is_empty();
                }
                inode
            }
            (Some(inode), CreateMode::Append) => inode,
            (None, _) => {
                let inode = state.next_inode;
                state.next_inode += 1;
                state.files.insert(inode, FileData::default());
                state.names.insert(path.to_path_buf(), inode);
                state.queued.push(NameChange::Link {
                    path: path.to_path_buf(),
                    inode,
                });
                state.note(format_args!("create {} #{inode}", path.display()));
                inode
            }
        };
        Ok(Box::new(SimWritable {
            disk: self.clone(),
            inode,
            generation: state.generation,
        }))
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadableFile>> {
        let mut state = self.state.lock();
        self.begin(&mut state)?;
        let inode = state.inode(path)?;
        Ok(Box::new(SimReadable {
            disk: self.clone(),
            inode,
            generation: state.generation,
        }))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut state = self.state.lock();
        self.begin(&mut state)?;
        let inode = state.inode(path)?;
        Ok(state
            .files
            .get(&inode)
            .map(|f| f.data.clone())
            .unwrap_or_default())
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut state = self.state.lock();
        self.begin(&mut state)?;
        let inode = state.inode(path)?;
        let failed = state.maybe_fail_fsync();
        let file = state.files.get_mut(&inode).ok_or_else(|| not_found(path))?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len < file.data.len() {
            file.data.truncate(len);
            if len < file.durable.len() {
                file.diverged = true;
            }
        } else {
            file.data.resize(len, 0);
        }
        let failed_text = if failed { " FAILED" } else { "" };
        if failed {
            file.lose_unsynced();
        } else {
            file.sync();
        }
        state.note(format_args!(
            "truncate {} to {len}{failed_text}",
            path.display()
        ));
        if failed {
            return Err(io::Error::other("simulated fsync failure (EIO)"));
        }
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        self.begin(&mut state)?;
        state.check_parent(to)?;
        let inode = state.inode(from)?;
        state.names.remove(from);
        state.names.insert(to.to_path_buf(), inode);
        state.note(format_args!(
            "rename {} -> {}",
            from.display(),
            to.display()
        ));
        state.queued.push(NameChange::Rename {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
        });
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        self.begin(&mut state)?;
        state.inode(path)?;
        state.names.remove(path);
        state.note(format_args!("remove {}", path.display()));
        state.queued.push(NameChange::Unlink {
            path: path.to_path_buf(),
        });
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        self.begin(&mut state)?;
        if !state.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        if state.maybe_fail_fsync() {
            state.note(format_args!("sync dir {} FAILED", dir.display()));
            return Err(io::Error::other("simulated directory fsync failure (EIO)"));
        }
        state.note(format_args!("sync dir {}", dir.display()));
        if let Some(last) = state.queued.iter().rposition(|c| c.touches(dir)) {
            let committed: Vec<NameChange> = state.queued.drain(..=last).collect();
            let DiskState { durable_names, .. } = &mut *state;
            for change in &committed {
                change.apply(durable_names);
            }
        }
        Ok(())
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn FileLock>>> {
        let mut state = self.state.lock();
        self.begin(&mut state)?;
        state.check_parent(path)?;
        if !state.locks.insert(path.to_path_buf()) {
            return Ok(None);
        }
        Ok(Some(Box::new(SimLock {
            disk: self.clone(),
            path: path.to_path_buf(),
            generation: state.generation,
        })))
    }

    fn available_bytes(&self, dir: &Path) -> io::Result<u64> {
        let mut state = self.state.lock();
        self.begin(&mut state)?;
        if !state.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        Ok(match state.faults.capacity_bytes {
            Some(capacity) => capacity.saturating_sub(state.stored_bytes()),
            None => UNLIMITED_DISK_BYTES,
        })
    }
}

/// What [`SimDisk`] reports as free without a capacity fault: 1 TiB.
pub const UNLIMITED_DISK_BYTES: u64 = 1 << 40;

#[cfg(test)]
mod tests {
    use super::*;

    fn write(disk: &SimDisk, path: &str, bytes: &[u8], sync: bool) {
        let mut file = disk.create(Path::new(path), CreateMode::New).unwrap();
        file.write_all(bytes).unwrap();
        if sync {
            file.sync_data().unwrap();
        }
    }

    fn power_cycle(disk: &SimDisk) {
        disk.cut_power();
        disk.reboot();
    }

    #[test]
    fn synced_data_and_synced_names_survive_a_power_cut() {
        for seed in 0..50 {
            let disk = SimDisk::new(seed);
            disk.create_dir_all(Path::new("/d")).unwrap();
            write(&disk, "/d/a", b"durable", true);
            disk.sync_dir(Path::new("/d")).unwrap();
            power_cycle(&disk);
            assert_eq!(disk.read(Path::new("/d/a")).unwrap(), b"durable");
        }
    }

    #[test]
    fn unsynced_bytes_survive_only_as_whole_sectors_or_zeros() {
        let mut outcomes = BTreeSet::new();
        for seed in 0..200 {
            let disk = SimDisk::new(seed);
            disk.create_dir_all(Path::new("/d")).unwrap();
            let mut file = disk.create(Path::new("/d/log"), CreateMode::New).unwrap();
            file.write_all(&[1; 100]).unwrap();
            file.sync_data().unwrap();
            disk.sync_dir(Path::new("/d")).unwrap();
            file.write_all(&[2; 3000]).unwrap();
            power_cycle(&disk);
            let bytes = disk.read(Path::new("/d/log")).unwrap();
            assert_eq!(&bytes[..100], &[1; 100], "seed {seed}: synced bytes lost");
            let new = &bytes[100..];
            let written = new.iter().take_while(|b| **b == 2).count();
            assert!(
                new[written..].iter().all(|b| *b == 0),
                "seed {seed}: garbage"
            );
            assert!(
                written == 0 || written == 3000 || (100 + written) % SECTOR == 0,
                "seed {seed}: cut inside a sector at {}",
                100 + written
            );
            outcomes.insert((written, new.len()));
        }
        assert!(outcomes.len() > 3, "crashes should differ: {outcomes:?}");
        assert!(outcomes.iter().any(|(w, _)| *w == 0));
        assert!(
            outcomes.iter().any(|(w, len)| *w < *len),
            "no torn page: {outcomes:?}"
        );
    }

    #[test]
    fn a_name_needs_a_directory_sync_and_renames_are_atomic() {
        let mut kept = [0; 2];
        for seed in 0..100 {
            let disk = SimDisk::new(seed);
            disk.create_dir_all(Path::new("/d")).unwrap();
            write(&disk, "/d/old", b"old", true);
            disk.sync_dir(Path::new("/d")).unwrap();
            write(&disk, "/d/new", b"new", true);
            disk.rename(Path::new("/d/new"), Path::new("/d/old"))
                .unwrap();
            power_cycle(&disk);
            // The rename is all or nothing: "old" holds one of the two contents.
            let old = disk.read(Path::new("/d/old")).unwrap();
            kept[usize::from(old == b"new")] += 1;
            assert!(old == b"old" || old == b"new", "seed {seed}: {old:?}");
        }
        assert!(
            kept[0] > 0 && kept[1] > 0,
            "both outcomes should occur: {kept:?}"
        );
        let disk = SimDisk::new(1);
        disk.create_dir_all(Path::new("/d")).unwrap();
        write(&disk, "/d/x", b"x", true);
        disk.sync_dir(Path::new("/d")).unwrap();
        disk.remove_file(Path::new("/d/x")).unwrap();
        disk.sync_dir(Path::new("/d")).unwrap();
        power_cycle(&disk);
        assert_eq!(
            disk.list_dir(Path::new("/d")).unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_failed_fsync_loses_the_unsynced_bytes_even_after_a_later_success() {
        let disk = SimDisk::new(3);
        disk.create_dir_all(Path::new("/d")).unwrap();
        let mut file = disk.create(Path::new("/d/f"), CreateMode::New).unwrap();
        file.write_all(b"first").unwrap();
        file.sync_data().unwrap();
        disk.sync_dir(Path::new("/d")).unwrap();
        file.write_all(b"second").unwrap();
        disk.set_faults(Faults {
            fsync_failure: 1.0,
            capacity_bytes: None,
        });
        assert!(file.sync_data().is_err());
        disk.set_faults(Faults::default());
        file.sync_data().unwrap();
        // The page cache still shows the bytes; the disk never got them.
        assert_eq!(disk.read(Path::new("/d/f")).unwrap(), b"firstsecond");
        power_cycle(&disk);
        assert_eq!(disk.read(Path::new("/d/f")).unwrap(), b"first\0\0\0\0\0\0");
        assert_eq!(disk.stats().failed_fsyncs, 1);
    }

    #[test]
    fn a_full_disk_refuses_writes_and_a_dead_disk_refuses_everything() {
        let disk = SimDisk::new(4);
        disk.create_dir_all(Path::new("/d")).unwrap();
        disk.set_faults(Faults {
            fsync_failure: 0.0,
            capacity_bytes: Some(10),
        });
        assert_eq!(disk.available_bytes(Path::new("/d")).unwrap(), 10);
        let mut file = disk.create(Path::new("/d/f"), CreateMode::New).unwrap();
        file.write_all(b"0123456789").unwrap();
        assert_eq!(disk.available_bytes(Path::new("/d")).unwrap(), 0);
        assert!(disk.available_bytes(Path::new("/missing")).is_err());
        let err = file.write_all(b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert_eq!(disk.stats().full_disk_writes, 1);
        disk.cut_power_after(1);
        assert!(disk.list_dir(Path::new("/d")).is_ok());
        assert!(disk.list_dir(Path::new("/d")).is_err());
        assert!(disk.is_powered_off());
        assert!(disk.try_lock(Path::new("/d/LOCK")).is_err());
        disk.reboot();
        let lock = disk.try_lock(Path::new("/d/LOCK")).unwrap();
        assert!(lock.is_some());
        assert!(disk.try_lock(Path::new("/d/LOCK")).unwrap().is_none());
        drop(lock);
        assert!(disk.try_lock(Path::new("/d/LOCK")).unwrap().is_some());
    }

    #[test]
    fn a_wiped_disk_is_empty_and_forgets_its_old_handles() {
        let disk = SimDisk::new(8);
        disk.create_dir_all(Path::new("/d")).unwrap();
        write(&disk, "/d/f", b"kept?", true);
        let mut old = disk.create(Path::new("/d/g"), CreateMode::New).unwrap();
        let lock = disk.try_lock(Path::new("/d/LOCK")).unwrap();
        assert!(lock.is_some());
        disk.wipe();
        assert!(
            disk.list_dir(Path::new("/d")).is_err(),
            "the directory survived"
        );
        assert!(disk.read(Path::new("/d/f")).is_err(), "the file survived");
        assert!(old.write_all(b"x").is_err(), "an old handle still writes");
        disk.create_dir_all(Path::new("/d")).unwrap();
        assert!(disk.list_dir(Path::new("/d")).unwrap().is_empty());
        assert!(disk.try_lock(Path::new("/d/LOCK")).unwrap().is_some());
        disk.cut_power();
        disk.reboot();
        assert!(disk.list_dir(Path::new("/d")).unwrap().is_empty());
    }

    #[test]
    fn a_listing_names_files_and_subdirectories() {
        let disk = SimDisk::new(6);
        disk.create_dir_all(Path::new("/d/sub/deeper")).unwrap();
        write(&disk, "/d/f", b"x", false);
        let mut names = disk.list_dir(Path::new("/d")).unwrap();
        names.sort();
        assert_eq!(names, ["f", "sub"]);
        assert_eq!(disk.list_dir(Path::new("/d/sub")).unwrap(), ["deeper"]);
    }

    #[test]
    fn a_dead_process_view_can_do_nothing_more() {
        let disk = SimDisk::new(7);
        disk.create_dir_all(Path::new("/d")).unwrap();
        let first_life = disk.for_this_life();
        let lock = first_life.try_lock(Path::new("/d/LOCK")).unwrap();
        assert!(lock.is_some());
        disk.process_died();
        // A task of the dead process that lingers can neither take the lock nor open a file.
        let Err(err) = first_life.try_lock(Path::new("/d/LOCK")) else {
            panic!("a dead view takes no lock");
        };
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        assert!(
            first_life
                .create(Path::new("/d/f"), CreateMode::Truncate)
                .is_err()
        );
        assert!(first_life.list_dir(Path::new("/d")).is_err());
        // The next life can.
        let second_life = disk.for_this_life();
        let new_lock = second_life.try_lock(Path::new("/d/LOCK")).unwrap();
        assert!(new_lock.is_some());
        drop(lock);
        assert!(
            second_life
                .try_lock(Path::new("/d/LOCK"))
                .unwrap()
                .is_none()
        );
        // A power cut ends the life too (the reboot starts a new one).
        disk.cut_power();
        disk.reboot();
        assert!(
            second_life
                .create(Path::new("/d/g"), CreateMode::Truncate)
                .is_err()
        );
        assert!(
            disk.for_this_life()
                .create(Path::new("/d/g"), CreateMode::Truncate)
                .is_ok()
        );
    }

    #[test]
    fn a_dead_process_keeps_its_page_cache_but_loses_its_files_and_locks() {
        let disk = SimDisk::new(5);
        disk.create_dir_all(Path::new("/d")).unwrap();
        let mut file = disk.create(Path::new("/d/f"), CreateMode::New).unwrap();
        file.write_all(b"unsynced").unwrap();
        let reader = disk.open_read(Path::new("/d/f")).unwrap();
        let old_lock = disk.try_lock(Path::new("/d/LOCK")).unwrap();
        assert!(old_lock.is_some());

        disk.process_died();
        // What it wrote is still in the page cache...
        assert_eq!(disk.read(Path::new("/d/f")).unwrap(), b"unsynced");
        // ...but its handles are closed: a thread of the dead process cannot write on.
        assert_eq!(
            file.write_all(b"more").unwrap_err().kind(),
            io::ErrorKind::BrokenPipe
        );
        assert!(file.sync_data().is_err());
        assert!(reader.len().is_err());
        // Its lock was released; the dead lock's destructor does not release the new one.
        let new_lock = disk.try_lock(Path::new("/d/LOCK")).unwrap();
        assert!(new_lock.is_some());
        drop(old_lock);
        assert!(disk.try_lock(Path::new("/d/LOCK")).unwrap().is_none());
        // Files opened by the restarted process work.
        let mut file = disk.create(Path::new("/d/f"), CreateMode::Append).unwrap();
        file.write_all(b"!").unwrap();
        assert_eq!(disk.read(Path::new("/d/f")).unwrap(), b"unsynced!");
    }
}
