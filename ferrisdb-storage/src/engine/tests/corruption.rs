//! Damaged files of a closed engine give `Corruption` naming the file, or correct data.

use std::fs;
use std::path::PathBuf;

use ferrisdb_core::Error;

use super::*;
use crate::engine::WriteBatch;

/// Builds a closed database with tables, a manifest and WAL data; returns the expected
/// contents at version 200.
fn build(dir: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let engine = open(dir, small_options(false));
    for v in 1..=200u64 {
        let mut batch = WriteBatch::new();
        batch.put(format!("k{:03}", v % 60), format!("value-{v}"));
        engine.apply(v, &batch).unwrap();
        if v == 150 {
            engine.flush().unwrap();
            engine.compact().unwrap();
        }
    }
    let all = scan_all(&engine, b"", b"", 200, false, 0);
    engine.close().unwrap();
    all
}

fn files(dir: &Path, pred: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| pred(p.file_name().unwrap().to_str().unwrap()))
        .collect();
    out.sort();
    out
}

/// Flips a byte at each of several offsets of `victim` in a copy of the database and checks
/// that opening and reading everything gives the right data or a `Corruption` naming a file.
fn check_flips(victim_of: impl Fn(&Path) -> PathBuf) {
    let base = tempfile::tempdir().unwrap();
    let expected = build(base.path());
    let victim = victim_of(base.path());
    let len = fs::metadata(&victim).unwrap().len() as usize;
    let step = (len / 40).max(1);
    for at in (0..len).step_by(step) {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(base.path(), copy.path());
        let target = copy.path().join(victim.strip_prefix(base.path()).unwrap());
        let mut bytes = fs::read(&target).unwrap();
        bytes[at] ^= 0x5a;
        fs::write(&target, &bytes).unwrap();
        let outcome = Engine::open(copy.path(), small_options(false)).and_then(|engine| {
            let got: Result<Vec<_>, _> = engine
                .scan(ScanOptions {
                    read_version: 200,
                    ..ScanOptions::default()
                })?
                .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
                .collect();
            got
        });
        match outcome {
            Ok(got) => assert_eq!(got, expected, "{} byte {at}: wrong data", target.display()),
            Err(Error::Corruption { file, .. }) => {
                assert!(file.starts_with(copy.path()), "{}", file.display())
            }
            Err(other) => panic!("{} byte {at}: unexpected error {other}", target.display()),
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            fs::create_dir_all(&dest).unwrap();
            copy_dir(&entry.path(), &dest);
        } else if entry.file_name() != "LOCK" {
            fs::copy(entry.path(), dest).unwrap();
        }
    }
}

#[test]
fn damaged_table_is_detected() {
    check_flips(|dir| {
        files(dir, |n| n.ends_with(".sst"))
            .into_iter()
            .next()
            .unwrap()
    });
}

#[test]
fn damaged_manifest_is_detected() {
    check_flips(|dir| {
        files(dir, |n| n.starts_with("MANIFEST-"))
            .into_iter()
            .next()
            .unwrap()
    });
}

#[test]
fn damaged_wal_is_detected() {
    check_flips(|dir| {
        files(&dir.join("wal"), |n| n.ends_with(".wal"))
            .into_iter()
            .max_by_key(|p| fs::metadata(p).unwrap().len())
            .unwrap()
    });
}
