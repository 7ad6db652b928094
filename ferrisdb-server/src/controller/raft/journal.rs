//! The Raft journal: one append-only file holding a controller replica's Raft log, its vote
//! and its committed pointer, with a CRC32 per record and torn-tail recovery.
//!
//! ```text
//! file   = magic "FDBRJNL1" record*
//! record = len: u32 LE | crc32(payload): u32 LE | payload (JSON of a JournalRecord)
//! ```
//!
//! Opening replays every record into memory. A last record cut short, or a bad record (checksum
//! mismatch, undecodable, oversized length) that reaches the end of the file or is followed
//! only by zeros from its start or from a sector boundary inside it
//! (`ferrisdb_storage::fsutil::is_torn_write`: a crash persists whole sectors), is a write torn
//! by a crash: it was never acknowledged (every acknowledged record is fsynced), so the file is
//! truncated before it. A bad record with anything else after it is corruption and is reported
//! with the file and offset. Once
//! purged entries make up most of the file it is rewritten (temporary file, fsync, rename,
//! fsync of the directory).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use ferrisdb_core::Error;
use ferrisdb_storage::fsutil::{is_torn_write, read_if_present, sync_dir};
use ferrisdb_storage::vfs::{CreateMode, SharedFs, WritableFile};
use openraft::{LogId, Vote};
use serde::{Deserialize, Serialize};

use super::{Entry, NodeId};

/// Name of the journal file in the Raft directory.
pub const JOURNAL_FILE: &str = "raft-journal";
const MAGIC: &[u8; 8] = b"FDBRJNL1";
const RECORD_HEADER: usize = 8;
/// Largest record accepted when reading (a longer length field is corruption).
const MAX_RECORD: u32 = 64 << 20;
/// The file is rewritten when it exceeds this size and purged entries make up most of it.
const REWRITE_THRESHOLD: u64 = 1 << 20;

/// One change to the replica's Raft state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum JournalRecord {
    /// The vote, saved before it is acted on.
    Vote(Vote<NodeId>),
    /// The newest committed log id known.
    Committed(Option<LogId<NodeId>>),
    /// Log entries appended.
    Append(Vec<Entry>),
    /// Entries at and after this index removed (a new leader overwrote them).
    Truncate(u64),
    /// Entries up to and including this log id removed (covered by a snapshot).
    Purge(LogId<NodeId>),
}

/// The Raft state a journal holds, as replayed.
#[derive(Debug, Default, Clone)]
pub struct JournalState {
    /// The saved vote.
    pub vote: Option<Vote<NodeId>>,
    /// The saved committed log id.
    pub committed: Option<LogId<NodeId>>,
    /// The newest purged log id.
    pub purged: Option<LogId<NodeId>>,
    /// The entries present, by index.
    pub entries: BTreeMap<u64, Entry>,
}

impl JournalState {
    /// Applies one record, as replaying it does.
    pub fn apply(&mut self, record: JournalRecord) {
        match record {
            JournalRecord::Vote(v) => self.vote = Some(v),
            JournalRecord::Committed(c) => self.committed = c,
            JournalRecord::Append(entries) => {
                for e in entries {
                    self.entries.insert(e.log_id.index, e);
                }
            }
            JournalRecord::Truncate(since) => {
                self.entries.split_off(&since);
            }
            JournalRecord::Purge(upto) => {
                self.entries = self.entries.split_off(&(upto.index + 1));
                if self.purged.is_none_or(|p| p.index < upto.index) {
                    self.purged = Some(upto);
                }
            }
        }
    }

    /// The records that rebuild this state from nothing.
    fn as_records(&self) -> Vec<JournalRecord> {
        let mut out = Vec::new();
        if let Some(v) = self.vote {
            out.push(JournalRecord::Vote(v));
        }
        if let Some(p) = self.purged {
            out.push(JournalRecord::Purge(p));
        }
        if !self.entries.is_empty() {
            out.push(JournalRecord::Append(
                self.entries.values().cloned().collect(),
            ));
        }
        if self.committed.is_some() {
            out.push(JournalRecord::Committed(self.committed));
        }
        out
    }
}

/// An open journal: the file and the state it holds.
#[derive(Debug)]
pub struct Journal {
    fs: SharedFs,
    dir: PathBuf,
    path: PathBuf,
    file: Box<dyn WritableFile>,
    len: u64,
    state: JournalState,
    rewrite_threshold: u64,
    /// Why the journal stopped accepting writes: a write or fsync failed, so the file's tail
    /// is unknown (a partial record, or data the kernel dropped after a failed fsync).
    /// Reopening replays the file and truncates whatever tail it left.
    failed: Option<String>,
}

impl Journal {
    /// Opens (or creates) the journal in `dir` on `fs`, replaying it.
    pub fn open_on(fs: SharedFs, dir: &Path) -> Result<Self, Error> {
        let path = dir.join(JOURNAL_FILE);
        let io = |what: &'static str| {
            let p = path.clone();
            move |e| Error::io(format!("{what} {}", p.display()), e)
        };
        let bytes = read_if_present(fs.as_ref(), &path)?.unwrap_or_default();
        let (state, good_len) = replay(&path, &bytes)?;
        if good_len < MAGIC.len() as u64 {
            // Missing, empty, or a crash while its header was written: start it afresh.
            let mut file = fs
                .create(&path, CreateMode::Truncate)
                .map_err(io("creating"))?;
            file.write_all(MAGIC).map_err(io("writing"))?;
            file.sync_all().map_err(io("syncing"))?;
            sync_dir(fs.as_ref(), dir)?;
        } else if good_len < bytes.len() as u64 {
            tracing::warn!(
                file = %path.display(),
                offset = good_len,
                dropped = bytes.len() as u64 - good_len,
                "Raft journal ends in a torn record; truncating it"
            );
            fs.truncate(&path, good_len).map_err(io("truncating"))?;
        }
        let file = fs
            .create(&path, CreateMode::Append)
            .map_err(io("opening"))?;
        Ok(Journal {
            fs,
            dir: dir.to_path_buf(),
            path,
            file,
            len: good_len.max(MAGIC.len() as u64),
            state,
            rewrite_threshold: REWRITE_THRESHOLD,
            failed: None,
        })
    }

    /// The state replayed and kept up to date by [`Journal::write`].
    pub fn state(&self) -> &JournalState {
        &self.state
    }

    /// Sets the size above which a purge rewrites the file (the simulator makes it small so
    /// rewrites happen often).
    pub fn set_rewrite_threshold(&mut self, bytes: u64) {
        self.rewrite_threshold = bytes;
    }

    /// Appends `records`, fsyncs, then applies them to the in-memory state. Each record is
    /// atomic across a crash, a write of several is not: a crash during it may keep a prefix
    /// of them. After a failed write or fsync every later write fails too, until the journal
    /// is reopened.
    pub fn write(&mut self, records: Vec<JournalRecord>) -> Result<(), Error> {
        if let Some(reason) = &self.failed {
            return Err(Error::Unavailable(format!(
                "the Raft journal {} stopped accepting writes after an earlier failure \
                 ({reason}); restart the replica to recover it",
                self.path.display()
            )));
        }
        let mut buf = Vec::new();
        for r in &records {
            encode_record(r, &mut buf)?;
        }
        let written = self
            .file
            .write_all(&buf)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            self.failed = Some(e.to_string());
            return Err(Error::io(
                format!("appending to {}", self.path.display()),
                e,
            ));
        }
        self.len += buf.len() as u64;
        let purged = records.iter().any(|r| matches!(r, JournalRecord::Purge(_)));
        for r in records {
            self.state.apply(r);
        }
        if purged && self.len > self.rewrite_threshold {
            self.rewrite()?;
        }
        Ok(())
    }

    /// Replaces the file with one holding just the live state.
    fn rewrite(&mut self) -> Result<(), Error> {
        let mut buf = MAGIC.to_vec();
        for r in self.state.as_records() {
            encode_record(&r, &mut buf)?;
        }
        if buf.len() as u64 * 2 > self.len {
            return Ok(()); // Mostly live entries: not worth it yet.
        }
        // On failure the old file (complete and fsynced) is still in place, or the new one
        // is (the rename happened): either holds the state, so appending can go on only
        // once the journal is reopened and knows which.
        let reopened = ferrisdb_storage::fsutil::write_atomically(
            self.fs.as_ref(),
            &self.dir,
            JOURNAL_FILE,
            &buf,
        )
        .and_then(|()| {
            self.fs
                .create(&self.path, CreateMode::Append)
                .map_err(|e| Error::io(format!("reopening {}", self.path.display()), e))
        });
        match reopened {
            Ok(file) => {
                self.file = file;
                self.len = buf.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.failed = Some(e.to_string());
                Err(e)
            }
        }
    }
}

fn encode_record(record: &JournalRecord, out: &mut Vec<u8>) -> Result<(), Error> {
    let payload = serde_json::to_vec(record)
        .map_err(|e| Error::Internal(format!("encoding a Raft journal record: {e}")))?;
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|l| *l <= MAX_RECORD)
        .ok_or_else(|| {
            Error::Internal(format!(
                "a Raft journal record of {} bytes is too large",
                payload.len()
            ))
        })?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(())
}

/// Replays `bytes`; returns the state and the length of the intact prefix.
fn replay(path: &Path, bytes: &[u8]) -> Result<(JournalState, u64), Error> {
    let mut state = JournalState::default();
    if bytes.is_empty() {
        return Ok((state, 0));
    }
    if bytes.len() < MAGIC.len() {
        // A crash while the header itself was written.
        if MAGIC.starts_with(bytes) {
            return Ok((state, 0));
        }
        return Err(Error::corruption(path, 0, "not a Raft journal (bad magic)"));
    }
    if &bytes[..MAGIC.len()] != MAGIC {
        return Err(Error::corruption(path, 0, "not a Raft journal (bad magic)"));
    }
    // Where the run of zeros ending the file begins (a torn write leaves one).
    let zeros_from = bytes
        .iter()
        .rposition(|b| *b != 0)
        .map_or(0, |last| last + 1) as u64;
    let torn = |start: usize, end: usize| is_torn_write(start as u64, end as u64, zeros_from);
    let mut pos = MAGIC.len();
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        if rest.len() < RECORD_HEADER {
            break; // Torn header.
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if len > MAX_RECORD {
            if rest.len() <= RECORD_HEADER + MAX_RECORD as usize || torn(pos, pos + RECORD_HEADER) {
                break; // A torn length field.
            }
            return Err(Error::corruption(
                path,
                pos as u64,
                format!("record length {len} exceeds the limit"),
            ));
        }
        let end = RECORD_HEADER + len as usize;
        if rest.len() < end {
            break; // Torn payload.
        }
        let payload = &rest[RECORD_HEADER..end];
        let at_tail = rest.len() == end;
        if crc32fast::hash(payload) != crc {
            if at_tail || torn(pos, pos + end) {
                break;
            }
            return Err(Error::corruption(
                path,
                pos as u64,
                "Raft journal record checksum mismatch",
            ));
        }
        let record: JournalRecord = match serde_json::from_slice(payload) {
            Ok(record) => record,
            // An all-zero header (length 0, checksum 0) passes the checksum.
            Err(_) if torn(pos, pos + end) => break,
            Err(e) => {
                return Err(Error::corruption(
                    path,
                    pos as u64,
                    format!("undecodable Raft record: {e}"),
                ));
            }
        };
        state.apply(record);
        pos += end;
    }
    Ok((state, pos as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};
    use std::fs;

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    fn indexes(j: &Journal) -> Vec<u64> {
        j.state().entries.keys().copied().collect()
    }

    #[test]
    fn replays_votes_entries_truncation_and_purge() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open_on(ferrisdb_storage::vfs::os(), dir.path()).unwrap();
        j.write(vec![JournalRecord::Vote(Vote::new(2, 7))]).unwrap();
        j.write(vec![JournalRecord::Append(
            (1..=5).map(|i| entry(2, i)).collect(),
        )])
        .unwrap();
        j.write(vec![JournalRecord::Truncate(4)]).unwrap();
        j.write(vec![JournalRecord::Purge(entry(2, 1).log_id)])
            .unwrap();
        j.write(vec![JournalRecord::Committed(Some(entry(2, 3).log_id))])
            .unwrap();
        drop(j);
        let j = Journal::open_on(ferrisdb_storage::vfs::os(), dir.path()).unwrap();
        assert_eq!(indexes(&j), vec![2, 3]);
        assert_eq!(j.state().vote, Some(Vote::new(2, 7)));
        assert_eq!(j.state().purged.map(|p| p.index), Some(1));
        assert_eq!(j.state().committed.map(|p| p.index), Some(3));
    }

    #[test]
    fn a_torn_tail_is_dropped_and_the_journal_stays_writable() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open_on(ferrisdb_storage::vfs::os(), dir.path()).unwrap();
        j.write(vec![JournalRecord::Append(vec![entry(1, 1)])])
            .unwrap();
        j.write(vec![JournalRecord::Append(vec![entry(1, 2)])])
            .unwrap();
        drop(j);
        let path = dir.path().join(JOURNAL_FILE);
        let full = fs::read(&path).unwrap();
        for cut in [1, 5, 9, 20] {
            fs::write(&path, &full[..full.len() - cut]).unwrap();
            let mut j = Journal::open_on(ferrisdb_storage::vfs::os(), dir.path()).unwrap();
            assert_eq!(indexes(&j), vec![1], "cut {cut}");
            j.write(vec![JournalRecord::Append(vec![entry(1, 2)])])
                .unwrap();
            drop(j);
            assert_eq!(
                indexes(&Journal::open_on(ferrisdb_storage::vfs::os(), dir.path()).unwrap()),
                vec![1, 2]
            );
        }
    }

    #[test]
    fn a_write_torn_at_a_sector_boundary_or_zeroed_is_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open_on(ferrisdb_storage::vfs::os(), dir.path()).unwrap();
        j.write(vec![JournalRecord::Append(vec![entry(1, 1)])])
            .unwrap();
        let first_end = fs::metadata(dir.path().join(JOURNAL_FILE)).unwrap().len() as usize;
        // One write of several records, long enough to span sectors.
        j.write(
            (2..40)
                .map(|i| JournalRecord::Append(vec![entry(1, i)]))
                .collect(),
        )
        .unwrap();
        drop(j);
        let path = dir.path().join(JOURNAL_FILE);
        let full = fs::read(&path).unwrap();
        let sector = ferrisdb_storage::fsutil::TORN_WRITE_SECTOR as usize;
        // Zeros from a sector boundary inside the second write to its end.
        let boundary = (first_end / sector + 2) * sector;
        assert!(boundary + sector < full.len());
        let mut torn = full.clone();
        torn[boundary..].fill(0);
        fs::write(&path, &torn).unwrap();
        let kept = indexes(&Journal::open_on(ferrisdb_storage::vfs::os(), dir.path()).unwrap());
        assert!(kept.len() > 1 && kept.len() < 39, "{kept:?}");
        assert_eq!(kept, (1..=kept.len() as u64).collect::<Vec<_>>());
        // Zeros from the second write's start: only the first record is kept.
        let mut zeroed = full.clone();
        zeroed[first_end..].fill(0);
        fs::write(&path, &zeroed).unwrap();
        assert_eq!(
            indexes(&Journal::open_on(ferrisdb_storage::vfs::os(), dir.path()).unwrap()),
            vec![1]
        );
    }

    #[test]
    fn a_bad_record_before_good_ones_is_corruption_naming_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open_on(ferrisdb_storage::vfs::os(), dir.path()).unwrap();
        j.write(vec![JournalRecord::Append(vec![entry(1, 1)])])
            .unwrap();
        j.write(vec![JournalRecord::Append(vec![entry(1, 2)])])
            .unwrap();
        drop(j);
        let path = dir.path().join(JOURNAL_FILE);
        let mut bytes = fs::read(&path).unwrap();
        bytes[MAGIC.len() + RECORD_HEADER + 3] ^= 0x55;
        fs::write(&path, &bytes).unwrap();
        let err = Journal::open_on(ferrisdb_storage::vfs::os(), dir.path()).unwrap_err();
        match &err {
            Error::Corruption { file, offset, .. } => {
                assert_eq!(file, &path);
                assert_eq!(*offset, MAGIC.len() as u64);
            }
            other => panic!("{other:?}"),
        }
        fs::write(&path, b"something else entirely").unwrap();
        assert!(matches!(
            Journal::open_on(ferrisdb_storage::vfs::os(), dir.path()),
            Err(Error::Corruption { .. })
        ));
    }

    #[test]
    fn purged_journals_are_rewritten_smaller() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open_on(ferrisdb_storage::vfs::os(), dir.path()).unwrap();
        let mut index = 0;
        while j.len <= REWRITE_THRESHOLD {
            let batch: Vec<Entry> = (0..100)
                .map(|_| {
                    index += 1;
                    entry(3, index)
                })
                .collect();
            j.write(vec![JournalRecord::Append(batch)]).unwrap();
        }
        let before = j.len;
        j.write(vec![JournalRecord::Purge(entry(3, index - 10).log_id)])
            .unwrap();
        assert!(j.len < before / 10, "{} vs {before}", j.len);
        j.write(vec![JournalRecord::Append(vec![entry(3, index + 1)])])
            .unwrap();
        drop(j);
        let j = Journal::open_on(ferrisdb_storage::vfs::os(), dir.path()).unwrap();
        assert_eq!(j.state().entries.len(), 11);
        assert_eq!(j.state().purged.map(|p| p.index), Some(index - 10));
    }
}
