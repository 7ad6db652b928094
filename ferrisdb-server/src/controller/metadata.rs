//! The replicated cluster state ([`Metadata`]: cluster id, bootstrap parameters, shard map and
//! known workers) and its JSON form, in which it travels in Raft entries and snapshots.
//!
//! Before the controller group, a single controller kept it in `<data-dir>/controller.json`;
//! [`load`] reads such a file so a group formed over that data directory imports it. Writes
//! ([`store`], kept for tests and tools) are atomic: the new contents go to a temporary file that is fsynced, renamed over
//! the old file, and the directory is fsynced, so a crash leaves either the old or the new
//! file. Keys are stored in the printable escaped form of [`ferrisdb_core::keys::escape`]. A
//! file that does not parse or violates the shard-map invariants is reported as
//! [`Error::Corruption`] naming the file.

use std::path::{Path, PathBuf};

use ferrisdb_core::keys::{escape, unescape};
use ferrisdb_core::{Error, KeyRange};
use ferrisdb_storage::fsutil::{read_if_present, write_atomically};
use ferrisdb_storage::vfs::FileSystem;
use serde::{Deserialize, Serialize};

use super::membership::WorkerRecord;
use super::shard_map::{Shard, ShardMap};

/// Name of the metadata file inside the data directory.
pub const METADATA_FILE: &str = "controller.json";
/// Format version written into the file.
const FORMAT: u32 = 1;

/// The cluster state the controller group replicates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "FileContents", into = "FileContents")]
pub struct Metadata {
    /// The cluster's identity, generated once.
    pub cluster_id: String,
    /// Storage servers the cluster bootstraps with.
    pub expected_storage_servers: u32,
    /// Replicas per shard.
    pub replication: u32,
    /// The current shard map.
    pub shard_map: ShardMap,
    /// Every worker that ever registered.
    pub workers: Vec<WorkerRecord>,
    /// The transaction system's current generation.
    pub generation: Generation,
    /// The newest epoch a recovery began (at least `generation.epoch`): the next recovery
    /// takes the one after it, so two recoveries never share an epoch.
    pub recovering_epoch: u64,
    /// Log servers in each generation: every commit is durable on all of them before it is
    /// acknowledged.
    pub log_replication: u32,
    /// Storage servers excluded by an operator (`ferrisdb cluster exclude`): their shards
    /// move away and they receive none.
    pub excluded: Vec<String>,
}

/// Log servers per generation when nothing says otherwise.
pub const DEFAULT_LOG_REPLICATION: u32 = 2;

/// A generation of the transaction system (FoundationDB's epoch): the coordinator and the log
/// servers that serve it, and where its versions begin. Recorded by the recovery that began
/// it, after the log servers were locked at its epoch and hold every version up to
/// `recovery_version`, and before its coordinator accepts a commit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generation {
    /// Generation number, starting at 1 (0: none yet).
    pub epoch: u64,
    /// The coordinator serving it (worker id).
    #[serde(default)]
    pub coordinator_id: String,
    /// Its log servers (worker ids).
    #[serde(default)]
    pub logs: Vec<String>,
    /// Every version acknowledged before this generation is at or below this one, and the
    /// generation's log servers hold every version up to it.
    #[serde(default)]
    pub recovery_version: u64,
    /// The generation's first version (its recovery commit): at least one MVCC window above
    /// `recovery_version`, so no read version of an older generation is still usable.
    #[serde(default)]
    pub start_version: u64,
}

/// A shard as it is stored (in the metadata file, Raft entries and snapshots): keys in the
/// printable escaped form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRecord {
    begin: String,
    end: String,
    storage_ids: Vec<String>,
    /// Absent before data distribution.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    moving_to: Vec<String>,
}

impl From<&Shard> for ShardRecord {
    fn from(s: &Shard) -> Self {
        ShardRecord {
            begin: escape(&s.range.begin),
            end: escape(&s.range.end),
            storage_ids: s.storage_ids.clone(),
            moving_to: s.moving_to.clone(),
        }
    }
}

impl TryFrom<&ShardRecord> for Shard {
    type Error = Error;

    fn try_from(s: &ShardRecord) -> Result<Self, Error> {
        Ok(Shard {
            range: KeyRange::new(unescape(&s.begin)?, unescape(&s.end)?)?,
            storage_ids: s.storage_ids.clone(),
            moving_to: s.moving_to.clone(),
        })
    }
}

/// The stored form of a whole shard map.
pub fn shard_records(map: &ShardMap) -> Vec<ShardRecord> {
    map.shards.iter().map(ShardRecord::from).collect()
}

/// A shard map from its stored form (not validated).
pub fn shards_from_records(records: &[ShardRecord]) -> Result<Vec<Shard>, Error> {
    records.iter().map(Shard::try_from).collect()
}

#[derive(Clone, Serialize, Deserialize)]
struct FileContents {
    format: u32,
    cluster_id: String,
    expected_storage_servers: u32,
    replication: u32,
    shard_map_version: u64,
    shards: Vec<ShardRecord>,
    workers: Vec<WorkerRecord>,
    /// Absent from a single controller's file of an earlier release.
    #[serde(default)]
    generation: Generation,
    #[serde(default)]
    recovering_epoch: u64,
    #[serde(default = "default_log_replication")]
    log_replication: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    excluded: Vec<String>,
}

fn default_log_replication() -> u32 {
    DEFAULT_LOG_REPLICATION
}

/// The metadata file's path inside `dir`.
pub fn path_in(dir: &Path) -> PathBuf {
    dir.join(METADATA_FILE)
}

/// Reads the metadata from `dir` on `fs`; `None` if the file does not exist.
pub fn load(fs: &dyn FileSystem, dir: &Path) -> Result<Option<Metadata>, Error> {
    let path = path_in(dir);
    let Some(bytes) = read_if_present(fs, &path)? else {
        return Ok(None);
    };
    let file: FileContents = serde_json::from_slice(&bytes)
        .map_err(|e| Error::corruption(&path, 0, format!("not valid metadata: {e}")))?;
    Metadata::try_from(file)
        .map(Some)
        .map_err(|e| Error::corruption(&path, 0, e))
}

impl Metadata {
    /// Checks the shard map's invariants.
    pub fn validate(&self) -> Result<(), Error> {
        self.shard_map
            .validate()
            .map_err(|e| Error::InvalidArgument(format!("bad shard map: {e}")))
    }
}

impl TryFrom<FileContents> for Metadata {
    type Error = String;

    fn try_from(file: FileContents) -> Result<Self, String> {
        if file.format != FORMAT {
            return Err(format!(
                "unknown format {} (expected {FORMAT})",
                file.format
            ));
        }
        let shards = shards_from_records(&file.shards).map_err(|e| format!("bad shard: {e}"))?;
        let shard_map = ShardMap {
            version: file.shard_map_version,
            shards,
        };
        shard_map
            .validate()
            .map_err(|e| format!("bad shard map: {e}"))?;
        Ok(Metadata {
            cluster_id: file.cluster_id,
            expected_storage_servers: file.expected_storage_servers,
            replication: file.replication,
            shard_map,
            workers: file.workers,
            recovering_epoch: file.recovering_epoch.max(file.generation.epoch),
            generation: file.generation,
            log_replication: file.log_replication,
            excluded: file.excluded,
        })
    }
}

impl From<Metadata> for FileContents {
    fn from(meta: Metadata) -> Self {
        FileContents {
            format: FORMAT,
            cluster_id: meta.cluster_id,
            expected_storage_servers: meta.expected_storage_servers,
            replication: meta.replication,
            shard_map_version: meta.shard_map.version,
            shards: shard_records(&meta.shard_map),
            workers: meta.workers,
            generation: meta.generation,
            recovering_epoch: meta.recovering_epoch,
            log_replication: meta.log_replication,
            excluded: meta.excluded,
        }
    }
}

/// Writes the metadata to `dir` atomically (temp file, fsync, rename, fsync directory).
pub fn store(fs: &dyn FileSystem, dir: &Path, meta: &Metadata) -> Result<(), Error> {
    let contents = FileContents::from(meta.clone());
    let json = serde_json::to_vec_pretty(&contents)
        .map_err(|e| Error::Internal(format!("encoding controller metadata: {e}")))?;
    write_atomically(fs, dir, METADATA_FILE, &json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::membership::Role;
    use ferrisdb_storage::vfs::OsFs;
    use std::fs;

    fn sample() -> Metadata {
        let ids: Vec<String> = (0..3).map(|i| format!("ss-{i}")).collect();
        Metadata {
            cluster_id: "c0ffee".into(),
            expected_storage_servers: 3,
            replication: 2,
            shard_map: ShardMap::bootstrap(&ids, 2, 1).unwrap(),
            workers: vec![WorkerRecord {
                id: "ss-0".into(),
                role: Role::Storage,
                address: "127.0.0.1:4502".into(),
            }],
            generation: Generation {
                epoch: 3,
                coordinator_id: "coord".into(),
                logs: vec!["log-a".into(), "log-b".into()],
                recovery_version: 7_000_000,
                start_version: 12_000_000,
            },
            recovering_epoch: 4,
            log_replication: 2,
            excluded: vec![],
        }
    }

    #[test]
    fn round_trips_and_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(&OsFs, dir.path()).unwrap(), None);
        let mut meta = sample();
        store(&OsFs, dir.path(), &meta).unwrap();
        assert_eq!(load(&OsFs, dir.path()).unwrap(), Some(meta.clone()));
        meta.shard_map.version = 2;
        store(&OsFs, dir.path(), &meta).unwrap();
        assert_eq!(load(&OsFs, dir.path()).unwrap(), Some(meta));
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(METADATA_FILE)]);
    }

    #[test]
    fn a_file_from_before_recovery_generations_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        store(&OsFs, dir.path(), &sample()).unwrap();
        let text = fs::read_to_string(path_in(dir.path())).unwrap();
        let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let obj = json.as_object_mut().unwrap();
        obj.remove("recovering_epoch");
        obj.remove("log_replication");
        obj.insert(
            "generation".into(),
            serde_json::json!({"epoch": 5, "coordinator_incarnation": "abc"}),
        );
        fs::write(path_in(dir.path()), json.to_string()).unwrap();
        let meta = load(&OsFs, dir.path()).unwrap().unwrap();
        assert_eq!(meta.generation.epoch, 5);
        assert!(meta.generation.logs.is_empty());
        assert_eq!(meta.recovering_epoch, 5);
        assert_eq!(meta.log_replication, DEFAULT_LOG_REPLICATION);
    }

    #[test]
    fn corrupt_file_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(path_in(dir.path()), b"{ not json").unwrap();
        let err = load(&OsFs, dir.path()).unwrap_err();
        assert!(matches!(err, Error::Corruption { .. }));
        assert!(err.to_string().contains(METADATA_FILE), "{err}");

        store(&OsFs, dir.path(), &sample()).unwrap();
        let text = fs::read_to_string(path_in(dir.path())).unwrap();
        // Shard 0 ends at 0x55 ("U"); moving its end makes it overlap shard 1.
        let gap = text.replacen(r#""end": "U""#, r#""end": "V""#, 1);
        assert_ne!(gap, text);
        fs::write(path_in(dir.path()), gap).unwrap();
        let err = load(&OsFs, dir.path()).unwrap_err();
        assert!(err.to_string().contains("bad shard map"), "{err}");
    }
}
