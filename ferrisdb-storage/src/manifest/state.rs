//! The state a manifest describes (live files per level, log number, counters) and how an
//! edit changes it. Applying an edit that contradicts the state (adding a file twice, deleting
//! a missing file, a level out of range) is rejected, so a damaged manifest cannot silently
//! produce an inconsistent file set.

use std::collections::BTreeSet;

use super::edit::{FileMeta, VersionEdit};
use crate::range_tombstone::RangeTombstone;

/// Everything the manifest records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestState {
    /// First live WAL segment: segments below it hold only flushed data.
    pub log_number: u64,
    /// Next unused file number (tables and manifests share the space).
    pub next_file_number: u64,
    /// GC horizon in force when the state was last written.
    pub gc_horizon: u64,
    /// Highest version whose data is entirely in SSTables.
    pub last_flushed_version: u64,
    /// Live files per level. Level 0 is in id order (oldest first); deeper levels are sorted
    /// by smallest key and do not overlap.
    pub levels: Vec<Vec<FileMeta>>,
    /// Range tombstones the tables' entries are subject to.
    pub range_tombstones: BTreeSet<RangeTombstone>,
}

impl ManifestState {
    /// The state of a new, empty database with `num_levels` levels.
    pub fn new(num_levels: usize) -> Self {
        ManifestState {
            log_number: 1,
            next_file_number: 1,
            gc_horizon: 0,
            last_flushed_version: 0,
            levels: vec![Vec::new(); num_levels],
            range_tombstones: BTreeSet::new(),
        }
    }

    /// Applies `edit`; on error the state is unchanged.
    pub fn apply(&mut self, edit: &VersionEdit) -> Result<(), &'static str> {
        let mut levels = self.levels.clone();
        for (level, id) in &edit.deleted {
            let files = levels
                .get_mut(*level)
                .ok_or("edit deletes from a missing level")?;
            let at = files
                .iter()
                .position(|f| f.id == *id)
                .ok_or("edit deletes a file that is not live")?;
            files.remove(at);
        }
        for (level, file) in &edit.added {
            if levels.iter().flatten().any(|f| f.id == file.id) {
                return Err("edit adds a file that is already live");
            }
            let files = levels
                .get_mut(*level)
                .ok_or("edit adds to a missing level")?;
            files.push(file.clone());
            if *level == 0 {
                files.sort_by_key(|f| f.id);
            } else {
                files.sort_by(|a, b| a.smallest.cmp(&b.smallest));
            }
        }
        let mut tombstones = self.range_tombstones.clone();
        for t in &edit.dropped_range_tombstones {
            if !tombstones.remove(t) {
                return Err("edit drops a range tombstone that is not live");
            }
        }
        for t in &edit.added_range_tombstones {
            if !tombstones.insert(t.clone()) {
                return Err("edit adds a range tombstone that is already live");
            }
        }
        self.levels = levels;
        self.range_tombstones = tombstones;
        if let Some(n) = edit.log_number {
            self.log_number = self.log_number.max(n);
        }
        if let Some(n) = edit.next_file_number {
            self.next_file_number = self.next_file_number.max(n);
        }
        if let Some(h) = edit.gc_horizon {
            self.gc_horizon = self.gc_horizon.max(h);
        }
        if let Some(v) = edit.last_flushed_version {
            self.last_flushed_version = self.last_flushed_version.max(v);
        }
        Ok(())
    }

    /// An edit that recreates this whole state from an empty one.
    pub fn snapshot_edit(&self) -> VersionEdit {
        VersionEdit {
            log_number: Some(self.log_number),
            next_file_number: Some(self.next_file_number),
            gc_horizon: Some(self.gc_horizon),
            last_flushed_version: Some(self.last_flushed_version),
            added: self
                .levels
                .iter()
                .enumerate()
                .flat_map(|(level, files)| files.iter().map(move |f| (level, f.clone())))
                .collect(),
            deleted: Vec::new(),
            added_range_tombstones: self.range_tombstones.iter().cloned().collect(),
            dropped_range_tombstones: Vec::new(),
        }
    }

    /// Ids of every live file.
    pub fn live_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.levels.iter().flatten().map(|f| f.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::InternalKey;

    fn file(id: u64, lo: &str, hi: &str) -> FileMeta {
        FileMeta {
            id,
            size: 10,
            smallest: InternalKey::new(lo, 1),
            largest: InternalKey::new(hi, 1),
            clean_through: 0,
        }
    }

    #[test]
    fn apply_adds_deletes_and_rejects_contradictions() {
        let mut state = ManifestState::new(3);
        let add = VersionEdit {
            added: vec![
                (1, file(5, "m", "p")),
                (1, file(4, "a", "c")),
                (0, file(6, "a", "z")),
            ],
            next_file_number: Some(7),
            ..VersionEdit::default()
        };
        state.apply(&add).unwrap();
        let l1: Vec<u64> = state.levels[1].iter().map(|f| f.id).collect();
        assert_eq!(l1, vec![4, 5]);
        assert_eq!(state.next_file_number, 7);
        assert!(state.apply(&add).is_err(), "duplicate add");
        let bad = VersionEdit {
            deleted: vec![(2, 4)],
            ..VersionEdit::default()
        };
        assert!(state.apply(&bad).is_err());
        assert_eq!(state.levels[1].len(), 2, "failed edit changes nothing");

        let mut rebuilt = ManifestState::new(3);
        rebuilt.apply(&state.snapshot_edit()).unwrap();
        assert_eq!(rebuilt, state);
    }
}
