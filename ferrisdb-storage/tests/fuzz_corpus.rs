//! Smoke run of the storage fuzz targets in the normal test suite: every file of
//! `fuzz/corpus/{wal_segment,sstable_block,manifest}/` plus deterministic mutations of each goes
//! through the matching `ferrisdb_storage::fuzzing` entry point, which must not panic.
//!
//! The corpus is generated from real engine files by
//! `FERRISDB_WRITE_FUZZ_CORPUS=1 cargo test -p ferrisdb-storage --test fuzz_corpus`
//! (valid encodings plus a few hand-mutated ones); without the variable the committed corpus
//! is only read.

use std::path::{Path, PathBuf};

use ferrisdb_core::fuzzing::{Rng, mutate, run_corpus};
use ferrisdb_storage::engine::{Engine, EngineOptions, WriteBatch};
use ferrisdb_storage::fuzzing;

/// Mutations per corpus file (a few thousand inputs per target in total).
const MUTATIONS_PER_FILE: usize = 1000;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

fn read_corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = corpus_dir(target);
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| std::fs::read(p).expect("corpus file"))
        .collect()
}

fn smoke(target: &str, entry: fn(&[u8])) {
    let seeds = read_corpus(target);
    assert!(seeds.len() >= 3, "{target}: corpus too small");
    let run = run_corpus(&seeds, MUTATIONS_PER_FILE, entry);
    eprintln!("{target}: {} files, {} mutations", run.files, run.mutations);
}

#[test]
fn wal_segment_corpus_and_mutations() {
    write_corpus_if_asked();
    smoke("wal_segment", fuzzing::wal_segment);
}

#[test]
fn sstable_block_corpus_and_mutations() {
    write_corpus_if_asked();
    smoke("sstable_block", fuzzing::sstable_block);
}

#[test]
fn manifest_corpus_and_mutations() {
    write_corpus_if_asked();
    smoke("manifest", fuzzing::manifest);
}

/// Regenerates the corpus when `FERRISDB_WRITE_FUZZ_CORPUS` is set (once per process).
fn write_corpus_if_asked() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    if std::env::var_os("FERRISDB_WRITE_FUZZ_CORPUS").is_some() {
        ONCE.call_once(write_corpus);
    }
}

fn write_corpus() {
    let dir = tempfile::tempdir().expect("temp dir");
    let opts = EngineOptions {
        memtable_bytes: 16 << 10,
        background_threads: false,
        ..EngineOptions::default()
    };
    let engine = Engine::open(dir.path(), opts).expect("open engine");
    let mut version = 0;
    let mut apply = |batch: &WriteBatch| {
        version += 10;
        engine.apply(version, batch).expect("apply");
    };
    for round in 0..3u32 {
        let mut batch = WriteBatch::new();
        for i in 0..40u32 {
            batch.put(
                format!("key{:03}", i * 7 % 97),
                format!("value {round} {i}").repeat(1 + i as usize % 5),
            );
        }
        batch.delete(format!("key{round:03}"));
        apply(&batch);
    }
    let mut ranged = WriteBatch::new();
    ranged.delete_range("key010", "key020");
    ranged.put("z", "");
    apply(&ranged);
    let wal_files = files_with(&dir.path().join("wal"), ".wal");
    let seeds_wal: Vec<Vec<u8>> = wal_files
        .iter()
        .map(|p| std::fs::read(p).expect("wal"))
        .collect();
    engine.flush().expect("flush");
    let mut more = WriteBatch::new();
    more.put("after-flush", "x");
    apply(&more);
    engine.flush().expect("flush");
    let tables = files_with(dir.path(), ".sst");
    let manifests = files_with(dir.path(), "MANIFEST-");
    let seeds_sst: Vec<Vec<u8>> = tables
        .iter()
        .map(|p| std::fs::read(p).expect("sst"))
        .collect();
    let seeds_manifest: Vec<Vec<u8>> = manifests
        .iter()
        .map(|p| std::fs::read(p).expect("manifest"))
        .collect();
    engine.close().expect("close");

    let entries: [(&[u8], u64, bool, &[u8]); 5] = [
        (b"apple", 30, true, b"red"),
        (b"apple", 20, false, b""),
        (b"apricot", 25, true, b"orange"),
        (b"banana", 10, true, b"yellow"),
        (b"cherry", 5, true, b""),
    ];
    let mut blocks = vec![fuzzing::encode_block(&[], 16)];
    for interval in [1, 2, 16] {
        blocks.push(fuzzing::encode_block(&entries, interval));
    }
    blocks.push(fuzzing::with_trailer(&blocks[2]));

    write_target("wal_segment", &seeds_wal);
    write_target("sstable_block", &[seeds_sst, blocks].concat());
    write_target("manifest", &seeds_manifest);
}

/// Writes `seeds` as `seed-N` plus two hand-picked mutations of each as `mutated-N-M`.
fn write_target(target: &str, seeds: &[Vec<u8>]) {
    assert!(!seeds.is_empty(), "{target}: no seeds generated");
    let dir = corpus_dir(target);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("corpus dir");
    for (i, seed) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i}")), seed).expect("write seed");
        let mut rng = Rng::new(1000 + i as u64);
        for m in 0..2 {
            let mutated = mutate(seed, &mut rng);
            std::fs::write(dir.join(format!("mutated-{i}-{m}")), mutated).expect("write");
        }
    }
}

fn files_with(dir: &Path, pattern: &str) -> Vec<PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.contains(pattern))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}
