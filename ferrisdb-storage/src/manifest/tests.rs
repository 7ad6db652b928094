//! Tests of the manifest: reopen, invalid edits, torn tails, flipped bytes, a bad `CURRENT`,
//! orphan tables, and the golden test of the worked example in `docs/engine.md`.

use std::fs;

use super::*;
use crate::doc_hex::{assert_doc_bytes, doc_hex};
use crate::key::InternalKey;
use crate::sstable::Table;
use crate::sstable::cache::BlockCache;
use crate::vfs::{OsFs, os};

fn meta(id: u64) -> FileMeta {
    FileMeta {
        id,
        size: 100 + id,
        smallest: InternalKey::new(format!("k{id:03}"), 9),
        largest: InternalKey::new(format!("k{id:03}z"), 1),
        clean_through: 0,
    }
}

fn add(level: usize, id: u64) -> VersionEdit {
    VersionEdit {
        added: vec![(level, meta(id))],
        next_file_number: Some(id + 1),
        ..VersionEdit::default()
    }
}

/// Path of the manifest that CURRENT names.
fn current_manifest(dir: &Path) -> PathBuf {
    let name = fs::read_to_string(dir.join(CURRENT_FILE)).unwrap();
    dir.join(name.trim_end())
}

#[test]
fn edits_survive_reopen_and_old_manifest_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Manifest::open(&os(), dir.path(), 4).unwrap();
    let first = m.path().to_path_buf();
    m.log_and_apply(&add(0, 10)).unwrap();
    m.log_and_apply(&add(1, 11)).unwrap();
    m.log_and_apply(&VersionEdit {
        deleted: vec![(0, 10)],
        log_number: Some(5),
        gc_horizon: Some(40),
        last_flushed_version: Some(33),
        ..VersionEdit::default()
    })
    .unwrap();
    let expected = m.state().clone();
    drop(m);

    let m = Manifest::open(&os(), dir.path(), 4).unwrap();
    let mut state = m.state().clone();
    assert!(
        state.next_file_number > expected.next_file_number,
        "manifest took an id"
    );
    state.next_file_number = expected.next_file_number;
    assert_eq!(state, expected);
    assert_eq!(m.state().levels[1], vec![meta(11)]);
    assert_eq!(m.state().log_number, 5);
    assert!(!first.exists(), "old manifest deleted");
    assert_eq!(current_manifest(dir.path()), m.path());
}

#[test]
fn invalid_edit_is_rejected_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Manifest::open(&os(), dir.path(), 2).unwrap();
    m.log_and_apply(&add(1, 3)).unwrap();
    assert!(m.log_and_apply(&add(1, 3)).is_err());
    assert!(m.log_and_apply(&add(5, 4)).is_err());
    drop(m);
    let m = Manifest::open(&os(), dir.path(), 2).unwrap();
    assert_eq!(m.state().levels[1], vec![meta(3)]);
}

#[test]
fn torn_tail_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Manifest::open(&os(), dir.path(), 2).unwrap();
    m.log_and_apply(&add(0, 7)).unwrap();
    m.log_and_apply(&add(0, 8)).unwrap();
    let path = m.path().to_path_buf();
    drop(m);
    let full = fs::read(&path).unwrap();
    // Find the start of the last record by re-reading the edits.
    let last_offset = log::read_edits(&OsFs, &path).unwrap().last().unwrap().0 as usize;
    for cut in last_offset + 1..full.len() {
        fs::write(&path, &full[..cut]).unwrap();
        let edits = log::read_edits(&OsFs, &path).unwrap();
        assert_eq!(edits.len(), 2, "cut at {cut}");
    }
    // Zero-filled tail.
    let mut zeroed = full.clone();
    zeroed[last_offset..].fill(0);
    fs::write(&path, &zeroed).unwrap();
    assert_eq!(log::read_edits(&OsFs, &path).unwrap().len(), 2);
    fs::write(&path, &full).unwrap();
    let m = Manifest::open(&os(), dir.path(), 2).unwrap();
    let ids: Vec<u64> = m.state().levels[0].iter().map(|f| f.id).collect();
    assert_eq!(ids, vec![7, 8]);
}

#[test]
fn every_flipped_byte_is_corruption_or_harmless() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Manifest::open(&os(), dir.path(), 2).unwrap();
    m.log_and_apply(&add(0, 7)).unwrap();
    m.log_and_apply(&add(1, 8)).unwrap();
    let path = m.path().to_path_buf();
    let expected = m.state().clone();
    drop(m);
    let full = fs::read(&path).unwrap();
    for at in 0..full.len() {
        let mut bad = full.clone();
        bad[at] ^= 0x41;
        fs::write(&path, &bad).unwrap();
        match log::read_edits(&OsFs, &path) {
            Err(Error::Corruption { file, .. }) => assert_eq!(file, path),
            Err(other) => panic!("byte {at}: unexpected error {other}"),
            Ok(edits) => {
                let mut state = ManifestState::new(2);
                for (_, e) in &edits {
                    state.apply(e).unwrap();
                }
                assert_eq!(state.levels, expected.levels, "byte {at} changed the state");
            }
        }
    }
}

#[test]
fn damaged_current_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    drop(Manifest::open(&os(), dir.path(), 2).unwrap());
    fs::write(dir.path().join(CURRENT_FILE), b"garbage").unwrap();
    let err = Manifest::open(&os(), dir.path(), 2).unwrap_err();
    assert!(matches!(err, Error::Corruption { .. }), "{err}");
}

#[test]
fn orphan_tables_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Manifest::open(&os(), dir.path(), 2).unwrap();
    m.log_and_apply(&add(0, 7)).unwrap();
    for id in [7, 9] {
        fs::write(dir.path().join(table_file_name(id)), b"x").unwrap();
    }
    fs::write(dir.path().join("notes.txt"), b"x").unwrap();
    assert_eq!(m.remove_orphan_tables().unwrap(), vec![9]);
    assert!(dir.path().join(table_file_name(7)).exists());
    assert!(dir.path().join("notes.txt").exists());
    assert_eq!(parse_table_file_name("000012.sst"), Some(12));
    assert_eq!(parse_table_file_name("12.sst"), None);
}

/// The worked example of `docs/engine.md` is exactly what `Manifest` writes for a flush of the
/// table of the SSTable worked example.
#[test]
fn doc_example_is_what_the_manifest_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Manifest::open(&os(), dir.path(), 4).unwrap();
    assert_eq!(m.path(), dir.path().join(manifest_file_name(1)));

    let table_path = dir.path().join(table_file_name(2));
    fs::write(&table_path, doc_hex("sstable.md", "sstable-example")).unwrap();
    let table = Table::open(&OsFs, &table_path, 2, BlockCache::new(0)).unwrap();
    let props = table.properties();
    m.log_and_apply(&VersionEdit {
        log_number: Some(2),
        next_file_number: Some(3),
        gc_horizon: Some(0),
        last_flushed_version: Some(props.max_version),
        added: vec![(
            0,
            FileMeta {
                id: table.id(),
                size: table.file_size(),
                smallest: props.smallest.clone(),
                largest: props.largest.clone(),
                clean_through: 0,
            },
        )],
        ..VersionEdit::default()
    })
    .unwrap();
    drop(m);

    let manifest = fs::read(dir.path().join(manifest_file_name(1))).unwrap();
    assert_doc_bytes(&manifest, "engine.md", "manifest-example");
    let current = fs::read(dir.path().join(CURRENT_FILE)).unwrap();
    assert_doc_bytes(&current, "engine.md", "current-example");
}

#[test]
fn last_record_cut_at_a_sector_boundary_then_zeros_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Manifest::open(&os(), dir.path(), 2).unwrap();
    m.log_and_apply(&add(0, 7)).unwrap();
    let mut big = VersionEdit::default();
    for id in 100..160 {
        big.added.push((1, meta(id)));
    }
    m.log_and_apply(&big).unwrap();
    let path = m.path().to_path_buf();
    drop(m);
    let full = fs::read(&path).unwrap();
    let last = log::read_edits(&OsFs, &path).unwrap().last().unwrap().0 as usize;
    let sector = crate::fsutil::TORN_WRITE_SECTOR as usize;
    let boundary = (last / sector + 1) * sector;
    assert!(
        boundary + 200 < full.len(),
        "the last record must span sectors"
    );
    // Whole sectors of the record reached the disk, the rest reads as zeros: torn.
    let mut torn = full.clone();
    torn[boundary..].fill(0);
    assert_eq!(log::decode_edits(&torn, &path).unwrap().len(), 2);
    // Zeros from inside the record's last sector, after a non-zero byte: a crash writes
    // sectors whole, so this is damage, not a tear.
    let last_sector = (full.len() - 1) / sector * sector;
    assert!(last_sector > last);
    let mut damaged = full.clone();
    damaged[last_sector + 1..].fill(0);
    damaged[last_sector] = 0xAB;
    match log::decode_edits(&damaged, &path) {
        Err(Error::Corruption { offset, .. }) => assert_eq!(offset, last as u64),
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn a_manifest_left_by_an_interrupted_open_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let current = {
        let mut m = Manifest::open(&os(), dir.path(), 2).unwrap();
        m.log_and_apply(&add(0, 7)).unwrap();
        m.path().to_path_buf()
    };
    // An open that crashed after creating its new manifest, before CURRENT named it, left
    // a file under the name the next open picks; leave one under every nearby name.
    for id in 1..40 {
        let path = dir.path().join(manifest_file_name(id));
        if path != current {
            fs::write(&path, b"left by a crash").unwrap();
        }
    }
    let m = Manifest::open(&os(), dir.path(), 2).unwrap();
    assert_eq!(m.state().levels[0], vec![meta(7)]);
}

#[test]
fn a_record_header_cut_at_a_sector_boundary_is_a_torn_tail() {
    // Edits of two sizes until a record's 12-byte header straddles a sector boundary; then
    // the sectors from that boundary on read as zeros: a torn tail, not corruption.
    let sector = crate::fsutil::TORN_WRITE_SECTOR as usize;
    let dir = tempfile::tempdir().unwrap();
    let mut m = Manifest::open(&os(), dir.path(), 2).unwrap();
    for i in 0..100 {
        m.log_and_apply(&add(0, 100 + i)).unwrap();
        m.log_and_apply(&VersionEdit {
            gc_horizon: Some(i),
            ..VersionEdit::default()
        })
        .unwrap();
    }
    let path = m.path().to_path_buf();
    drop(m);
    let full = fs::read(&path).unwrap();
    let offsets: Vec<usize> = log::read_edits(&OsFs, &path)
        .unwrap()
        .iter()
        .map(|(offset, _)| *offset as usize)
        .collect();
    let at = offsets
        .iter()
        .copied()
        .find(|&at| at / sector != (at + 11) / sector)
        .expect("some header straddles a sector boundary");
    let mut torn = full.clone();
    torn[(at / sector + 1) * sector..].fill(0);
    let kept = log::decode_edits(&torn, &path).unwrap();
    let kept_offsets: Vec<usize> = kept.iter().map(|(o, _)| *o as usize).collect();
    let before: Vec<usize> = offsets.iter().copied().filter(|&o| o < at).collect();
    assert_eq!(kept_offsets, before);
}
