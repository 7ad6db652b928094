//! openraft's log storage for a controller replica, kept in the [`Journal`].
//!
//! Every write (vote, appended entries, truncation, purge) is fsynced before it is reported
//! done, and writes are serialised by one lock, as openraft requires. File I/O runs on the
//! blocking pool.

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::Arc;

use ferrisdb_core::Error;
use ferrisdb_storage::vfs::SharedFs;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};
use parking_lot::Mutex;

use super::journal::{Journal, JournalRecord};
use super::{Entry, NodeId, TypeConfig};

/// The log storage; clones share the journal (openraft reads logs from clones).
#[derive(Debug, Clone)]
pub struct LogStore {
    journal: Arc<Mutex<Journal>>,
}

impl LogStore {
    /// Opens the journal in `dir` on `fs`.
    pub fn open(fs: SharedFs, dir: &Path) -> Result<Self, Error> {
        Ok(LogStore {
            journal: Arc::new(Mutex::new(Journal::open_on(fs, dir)?)),
        })
    }

    /// Writes `records` (fsynced) on the blocking pool.
    async fn write(&self, records: Vec<JournalRecord>) -> Result<(), Error> {
        let journal = self.journal.clone();
        crate::exec::blocking("the Raft journal task", move || {
            journal.lock().write(records)
        })
        .await?
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        let journal = self.journal.lock();
        Ok(journal
            .state()
            .entries
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let journal = self.journal.lock();
        let state = journal.state();
        let last_purged_log_id = state.purged;
        let last_log_id = state
            .entries
            .last_key_value()
            .map(|(_, e)| e.log_id)
            .or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.write(vec![JournalRecord::Vote(*vote)])
            .await
            .map_err(|e| io_error(StorageIOError::write_vote(&e)))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.journal.lock().state().vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        self.write(vec![JournalRecord::Committed(committed)])
            .await
            .map_err(|e| io_error(StorageIOError::write_logs(&e)))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.journal.lock().state().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        match self.write(vec![JournalRecord::Append(entries)]).await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(io_error(StorageIOError::write_logs(&e)))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.write(vec![JournalRecord::Truncate(log_id.index)])
            .await
            .map_err(|e| io_error(StorageIOError::write_logs(&e)))
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.write(vec![JournalRecord::Purge(log_id)])
            .await
            .map_err(|e| io_error(StorageIOError::write_logs(&e)))
    }
}

fn io_error(source: StorageIOError<NodeId>) -> StorageError<NodeId> {
    StorageError::IO { source }
}
