//! The replicated cluster state as openraft's state machine, and its snapshots.
//!
//! The state is small (identity, workers, shard map), so a snapshot is the whole of it as
//! JSON, written atomically to `raft-snapshot.json` (temporary file, fsync, rename, fsync of
//! the directory). Applying entries does not write to disk: after a restart the state is the
//! last snapshot plus the journal's committed entries, which openraft applies again.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferrisdb_core::Error;
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use super::{Command, CommandOutcome, Entry, NodeId, TypeConfig};
use crate::controller::metadata::Metadata;
use crate::controller::state::apply_command;
use ferrisdb_storage::fsutil::{read_if_present, write_atomically};
use ferrisdb_storage::vfs::SharedFs;

/// Name of the snapshot file in the Raft directory.
pub const SNAPSHOT_FILE: &str = "raft-snapshot.json";

/// The replicated state as applied on this replica.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Replicated {
    /// The last entry applied.
    pub last_applied: Option<LogId<NodeId>>,
    /// The group's membership as last applied.
    pub membership: StoredMembership<NodeId, BasicNode>,
    /// The cluster (`None` until its creation is applied).
    pub cluster: Option<Metadata>,
}

#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    snapshot_id: String,
    state: Replicated,
}

/// The latest snapshot: what it covers and its bytes.
type StoredSnapshot = (SnapshotMeta<NodeId, BasicNode>, Vec<u8>);

/// The state machine; clones share the state.
#[derive(Debug, Clone)]
pub struct StateMachine {
    state: Arc<RwLock<Replicated>>,
    snapshot: Arc<RwLock<Option<StoredSnapshot>>>,
    fs: SharedFs,
    dir: PathBuf,
}

impl StateMachine {
    /// Opens the state machine in `dir` on `fs`, starting from its snapshot if there is one.
    pub fn open(fs: SharedFs, dir: &Path) -> Result<Self, Error> {
        let path = dir.join(SNAPSHOT_FILE);
        let (state, snapshot) = match read_if_present(fs.as_ref(), &path)? {
            Some(bytes) => {
                let file: SnapshotFile = serde_json::from_slice(&bytes).map_err(|e| {
                    Error::corruption(&path, 0, format!("not a controller snapshot: {e}"))
                })?;
                if let Some(meta) = &file.state.cluster {
                    meta.validate()
                        .map_err(|e| Error::corruption(&path, 0, e.to_string()))?;
                }
                let meta = SnapshotMeta {
                    last_log_id: file.state.last_applied,
                    last_membership: file.state.membership.clone(),
                    snapshot_id: file.snapshot_id,
                };
                (file.state, Some((meta, bytes)))
            }
            None => (Replicated::default(), None),
        };
        Ok(StateMachine {
            state: Arc::new(RwLock::new(state)),
            snapshot: Arc::new(RwLock::new(snapshot)),
            fs,
            dir: dir.to_path_buf(),
        })
    }

    /// The state as applied so far.
    pub fn current(&self) -> Replicated {
        self.state.read().clone()
    }

    /// Runs `f` on the state as applied so far.
    pub fn read<R>(&self, f: impl FnOnce(&Replicated) -> R) -> R {
        f(&self.state.read())
    }

    async fn persist_snapshot(&self, bytes: Vec<u8>) -> Result<(), Error> {
        let (fs, dir) = (self.fs.clone(), self.dir.clone());
        crate::exec::blocking("the snapshot task", move || {
            write_atomically(fs.as_ref(), &dir, SNAPSHOT_FILE, &bytes)
        })
        .await?
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let state = self.current();
        let snapshot_id = match state.last_applied {
            Some(l) => format!(
                "{}-{}-{}",
                l.leader_id.term,
                l.index,
                ferrisdb_core::random::next_u64() as u32
            ),
            None => format!("empty-{}", ferrisdb_core::random::next_u64() as u32),
        };
        let meta = SnapshotMeta {
            last_log_id: state.last_applied,
            last_membership: state.membership.clone(),
            snapshot_id: snapshot_id.clone(),
        };
        let bytes = serde_json::to_vec(&SnapshotFile { snapshot_id, state })
            .map_err(|e| io_error(StorageIOError::write_snapshot(Some(meta.signature()), &e)))?;
        self.persist_snapshot(bytes.clone())
            .await
            .map_err(|e| io_error(StorageIOError::write_snapshot(Some(meta.signature()), &e)))?;
        *self.snapshot.write() = Some((meta.clone(), bytes.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(bytes),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>>
    {
        let s = self.state.read();
        Ok((s.last_applied, s.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandOutcome>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut state = self.state.write();
        let mut outcomes = Vec::new();
        for entry in entries {
            state.last_applied = Some(entry.log_id);
            let outcome = match entry.payload {
                EntryPayload::Blank => CommandOutcome::default(),
                EntryPayload::Normal(command) => apply(&mut state.cluster, command),
                EntryPayload::Membership(m) => {
                    state.membership = StoredMembership::new(Some(entry.log_id), m);
                    CommandOutcome::default()
                }
            };
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Vec<u8>>, StorageError<NodeId>> {
        Ok(Box::default())
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Vec<u8>>,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes = *snapshot;
        let file: SnapshotFile = serde_json::from_slice(&bytes)
            .map_err(|e| io_error(StorageIOError::read_snapshot(Some(meta.signature()), &e)))?;
        if let Some(cluster) = &file.state.cluster {
            cluster
                .validate()
                .map_err(|e| io_error(StorageIOError::read_snapshot(Some(meta.signature()), &e)))?;
        }
        self.persist_snapshot(bytes.clone())
            .await
            .map_err(|e| io_error(StorageIOError::write_snapshot(Some(meta.signature()), &e)))?;
        *self.state.write() = file.state;
        *self.snapshot.write() = Some((meta.clone(), bytes));
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        Ok(self.snapshot.read().as_ref().map(|(meta, bytes)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(bytes.clone()),
        }))
    }
}

fn apply(cluster: &mut Option<Metadata>, command: Command) -> CommandOutcome {
    match apply_command(cluster, command) {
        Ok(()) => CommandOutcome::default(),
        Err(e) => CommandOutcome {
            refused: Some(e.to_string()),
        },
    }
}

fn io_error(source: StorageIOError<NodeId>) -> StorageError<NodeId> {
    StorageError::IO { source }
}
