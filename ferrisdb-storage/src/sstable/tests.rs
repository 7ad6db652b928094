//! Whole-table tests: model comparisons, many versions of one key, corruption and truncation.

use crate::vfs::{OsFs, os};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use ferrisdb_core::Error;
use proptest::prelude::*;

use super::{Compression, Table, TableBuilder, TableEntry, TableIterator, TableOptions};
use crate::iterator::InternalIterator;
use crate::key::{InternalKey, ValueKind};
use crate::sstable::cache::BlockCache;

type Model = BTreeMap<InternalKey, (ValueKind, Vec<u8>)>;
type Row = (InternalKey, ValueKind, Vec<u8>);

/// Small LZ4-compressed blocks (a block that does not shrink by an eighth stays plain, so
/// tables mix both kinds).
fn small_blocks() -> TableOptions {
    TableOptions {
        block_size: 128,
        restart_interval: 4,
        bloom_bits_per_key: 10,
        compression: Compression::Lz4,
    }
}

fn write_table(path: &Path, model: &Model, opts: TableOptions) -> super::TableProperties {
    let mut builder = TableBuilder::create(&os(), path, opts).unwrap();
    for (key, (kind, value)) in model {
        builder.add(&key.key, key.version, *kind, value).unwrap();
    }
    builder.finish().unwrap()
}

fn model_get(model: &Model, key: &[u8], read_version: u64) -> Option<TableEntry> {
    model
        .range(InternalKey::new(key, read_version)..)
        .next()
        .filter(|(k, _)| k.key == key)
        .map(|(k, (kind, value))| TableEntry {
            kind: *kind,
            value: bytes::Bytes::copy_from_slice(value),
            version: k.version,
        })
}

fn row(iter: &TableIterator) -> Option<Row> {
    iter.valid().then(|| {
        (
            InternalKey::new(iter.key(), iter.version()),
            iter.kind(),
            iter.value().to_vec(),
        )
    })
}

fn model_row((key, (kind, value)): (&InternalKey, &(ValueKind, Vec<u8>))) -> Row {
    (key.clone(), *kind, value.clone())
}

fn scan_forward(iter: &mut TableIterator) -> ferrisdb_core::Result<Vec<Row>> {
    let mut rows = Vec::new();
    iter.seek_to_first()?;
    while let Some(r) = row(iter) {
        rows.push(r);
        iter.next()?;
    }
    Ok(rows)
}

fn scan_backward(iter: &mut TableIterator) -> ferrisdb_core::Result<Vec<Row>> {
    let mut rows = Vec::new();
    iter.seek_to_last()?;
    while let Some(r) = row(iter) {
        rows.push(r);
        iter.prev()?;
    }
    rows.reverse();
    Ok(rows)
}

fn model_strategy() -> impl Strategy<Value = Model> {
    let entry = (
        "[a-d]{1,3}",
        0u64..60,
        prop::bool::weighted(0.8),
        proptest::collection::vec(any::<u8>(), 0..300),
    );
    proptest::collection::vec(entry, 1..120).prop_map(|entries| {
        entries
            .into_iter()
            .map(|(key, version, put, value)| {
                let (kind, value) = if put {
                    (ValueKind::Put, value)
                } else {
                    (ValueKind::Tombstone, Vec::new())
                };
                (InternalKey::new(key, version), (kind, value))
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn table_matches_model(
        model in model_strategy(),
        restart_interval in 1usize..17,
        codec in 0usize..3,
        lookups in proptest::collection::vec(("[a-d]{1,3}", 0u64..64), 1..40),
        seeks in proptest::collection::vec(("[a-d]{0,3}", 0u64..64, 0usize..8), 1..12),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sst");
        let compression = [Compression::None, Compression::Lz4, Compression::Zstd][codec];
        let opts = TableOptions { restart_interval, compression, ..small_blocks() };
        let props = write_table(&path, &model, opts);
        let table = Table::open(&OsFs, &path, 1, BlockCache::new(64 * 1024)).unwrap();
        prop_assert_eq!(table.properties(), &props);
        prop_assert_eq!(props.entry_count, model.len() as u64);

        for (key, read_version) in &lookups {
            let got = table.get(key.as_bytes(), *read_version).unwrap();
            prop_assert_eq!(got, model_get(&model, key.as_bytes(), *read_version));
        }
        for key in model.keys() {
            prop_assert!(table.may_contain(&key.key));
        }

        let all: Vec<Row> = model.iter().map(model_row).collect();
        let mut iter = table.iter();
        prop_assert_eq!(&scan_forward(&mut iter).unwrap(), &all);
        prop_assert_eq!(&scan_backward(&mut iter).unwrap(), &all);

        for (key, version, steps) in seeks {
            let target = InternalKey::new(key.as_bytes(), version);
            iter.seek(&target.key, version).unwrap();
            let mut expected = model.range(target.clone()..).map(model_row);
            prop_assert_eq!(row(&iter), expected.next());
            for _ in 0..steps {
                iter.next().unwrap();
                prop_assert_eq!(row(&iter), expected.next());
            }

            iter.seek_for_prev(&target.key, version).unwrap();
            let mut expected = model.range(..=target).rev().map(model_row);
            prop_assert_eq!(row(&iter), expected.next());
            for _ in 0..steps {
                iter.prev().unwrap();
                prop_assert_eq!(row(&iter), expected.next());
            }
        }
    }
}

#[test]
fn one_key_with_many_versions_spanning_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("versions.sst");
    let mut model = Model::new();
    model.insert(
        InternalKey::new("a", 7),
        (ValueKind::Put, b"before".to_vec()),
    );
    for i in 1..=2_000u64 {
        let kind = if i % 10 == 0 {
            ValueKind::Tombstone
        } else {
            ValueKind::Put
        };
        let value = if kind == ValueKind::Put {
            format!("value-{i}").into_bytes()
        } else {
            vec![]
        };
        model.insert(InternalKey::new("key", i * 2), (kind, value));
    }
    model.insert(
        InternalKey::new("zz", 1),
        (ValueKind::Put, b"after".to_vec()),
    );
    let props = write_table(
        &path,
        &model,
        TableOptions {
            block_size: 256,
            ..Default::default()
        },
    );
    assert!(
        props.data_block_count > 50,
        "only {} blocks",
        props.data_block_count
    );
    assert_eq!(props.distinct_key_count, 3);
    assert_eq!(props.tombstone_count, 200);

    let cache = BlockCache::new(1 << 20);
    let table = Table::open(&OsFs, &path, 9, cache.clone()).unwrap();
    for read_version in 0..=4_001u64 {
        let got = table.get(b"key", read_version).unwrap();
        assert_eq!(
            got,
            model_get(&model, b"key", read_version),
            "read version {read_version}"
        );
    }
    assert!(cache.hits() > 0);
    assert_eq!(
        table.get(b"a", 100).unwrap().unwrap().value.as_ref(),
        b"before"
    );
    assert_eq!(table.get(b"zz", 0).unwrap(), None);
}

#[test]
fn bloom_filter_skips_data_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bloom.sst");
    let model: Model = (0..500u32)
        .map(|i| {
            (
                InternalKey::new(format!("k{i:05}"), 1),
                (ValueKind::Put, vec![1; 10]),
            )
        })
        .collect();
    write_table(&path, &model, TableOptions::default());
    let cache = BlockCache::new(1 << 20);
    let table = Table::open(&OsFs, &path, 1, cache.clone()).unwrap();
    let mut answered_without_io = 0;
    for i in 0..500u32 {
        let key = format!("k{i:05}x");
        let before = cache.hits() + cache.misses();
        assert_eq!(table.get(key.as_bytes(), 5).unwrap(), None);
        answered_without_io += usize::from(cache.hits() + cache.misses() == before);
    }
    assert!(
        answered_without_io > 480,
        "bloom filter rejected only {answered_without_io}"
    );
}

#[test]
fn rejects_out_of_order_entries_and_empty_tables() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("order.sst");
    let mut builder = TableBuilder::create(&os(), &path, TableOptions::default()).unwrap();
    builder.add(b"b", 5, ValueKind::Put, b"x").unwrap();
    assert!(matches!(
        builder.add(b"b", 5, ValueKind::Put, b"x"),
        Err(Error::Internal(_))
    ));
    assert!(matches!(
        builder.add(b"b", 6, ValueKind::Put, b"x"),
        Err(Error::Internal(_))
    ));
    assert!(matches!(
        builder.add(b"a", 1, ValueKind::Put, b"x"),
        Err(Error::Internal(_))
    ));
    builder.add(b"b", 4, ValueKind::Put, b"x").unwrap();
    drop(builder);

    let builder = TableBuilder::create(&os(), &path, TableOptions::default()).unwrap();
    assert!(builder.is_empty());
    assert!(matches!(builder.finish(), Err(Error::Internal(_))));
    assert!(!path.exists());
}

fn corruption_model() -> Model {
    (0..40u32)
        .map(|i| {
            let kind = if i % 7 == 3 {
                ValueKind::Tombstone
            } else {
                ValueKind::Put
            };
            let value = if kind == ValueKind::Put {
                vec![i as u8; (i % 5) as usize * 9]
            } else {
                vec![]
            };
            (
                InternalKey::new(format!("key{:02}", i / 3), 100 - u64::from(i)),
                (kind, value),
            )
        })
        .collect()
}

/// Opens, scans both ways and reads every key; Ok only if everything succeeded.
fn read_everything(path: &Path, id: u64, model: &Model) -> ferrisdb_core::Result<()> {
    let all: Vec<Row> = model.iter().map(model_row).collect();
    let table = Table::open(&OsFs, path, id, BlockCache::new(1 << 20))?;
    let mut iter = table.iter();
    let forward = scan_forward(&mut iter);
    if let Ok(rows) = &forward {
        assert_eq!(rows, &all, "forward scan returned wrong data");
    }
    let backward = scan_backward(&mut iter);
    if let Ok(rows) = &backward {
        assert_eq!(rows, &all, "reverse scan returned wrong data");
    }
    let mut lookup_error = None;
    for key in model.keys() {
        for read_version in [key.version, key.version + 1, u64::MAX] {
            match table.get(&key.key, read_version) {
                Ok(got) => assert_eq!(got, model_get(model, &key.key, read_version)),
                Err(e) => lookup_error = Some(e),
            }
        }
    }
    forward?;
    backward?;
    lookup_error.map_or(Ok(()), Err)
}

#[test]
fn every_flipped_bit_is_detected_or_harmless() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("good.sst");
    let model = corruption_model();
    write_table(&path, &model, small_blocks());
    read_everything(&path, 0, &model).unwrap();
    let original = std::fs::read(&path).unwrap();

    let damaged_path = dir.path().join("damaged.sst");
    for offset in 0..original.len() {
        let mut bytes = original.clone();
        bytes[offset] ^= 1 << (offset % 8);
        std::fs::write(&damaged_path, &bytes).unwrap();
        match read_everything(&damaged_path, offset as u64 + 1, &model) {
            Err(Error::Corruption { file, .. }) => assert_eq!(file, damaged_path),
            Err(other) => panic!("flip at {offset}: unexpected error {other}"),
            // Every byte is covered by a checksum or the magic number, and a full scan reads
            // every block, so no flip may go unnoticed.
            Ok(()) => panic!("flip at {offset} went undetected"),
        }
    }
}

#[test]
fn a_damaged_block_read_ahead_is_reported_at_its_own_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ra.sst");
    let model: Model = (0..2_000u32)
        .map(|i| {
            let key = InternalKey::new(format!("key{i:05}"), 7);
            (key, (ValueKind::Put, vec![(i % 251) as u8; 40]))
        })
        .collect();
    write_table(&path, &model, small_blocks());
    // Clean: a forward scan through many consecutive blocks (read ahead) sees every entry,
    // with and without a cache.
    for cache_bytes in [0, 1 << 20] {
        let table = Table::open(&OsFs, &path, 1, BlockCache::new(cache_bytes)).unwrap();
        let rows = scan_forward(&mut table.iter()).unwrap();
        assert_eq!(rows, model.iter().map(model_row).collect::<Vec<_>>());
    }
    // Damage one byte deep in the data region, far past the point where the scan switches to
    // reading ahead: the scan fails there, naming the file and an offset at or after it.
    let mut bytes = std::fs::read(&path).unwrap();
    // The data region is most of the file (the index and bloom blocks are at its end).
    let damaged_at = bytes.len() / 4;
    bytes[damaged_at] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let table = Table::open(&OsFs, &path, 2, BlockCache::new(1 << 20)).unwrap();
    match scan_forward(&mut table.iter()) {
        Err(Error::Corruption { file, offset, .. }) => {
            assert_eq!(file, path);
            assert!(offset >= damaged_at as u64 - 200 && offset <= damaged_at as u64 + 200);
        }
        other => panic!("expected a corruption error, got {other:?}"),
    }
}

#[test]
fn truncated_files_fail_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.sst");
    write_table(&path, &corruption_model(), small_blocks());
    let original = std::fs::read(&path).unwrap();
    let cut_path = dir.path().join("cut.sst");
    for len in [
        0,
        1,
        63,
        64,
        65,
        original.len() / 2,
        original.len() - 65,
        original.len() - 1,
    ] {
        std::fs::write(&cut_path, &original[..len]).unwrap();
        let result = Table::open(&OsFs, &cut_path, 1, BlockCache::new(0));
        assert!(
            matches!(result, Err(Error::Corruption { .. })),
            "truncation to {len} bytes: {result:?}"
        );
    }
}

#[test]
fn works_without_a_cache_and_shares_blocks_with_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.sst");
    let model = corruption_model();
    write_table(&path, &model, small_blocks());
    read_everything(&path, 1, &model).unwrap();

    let no_cache = BlockCache::new(0);
    let table = Table::open(&OsFs, &path, 1, no_cache.clone()).unwrap();
    assert_eq!(scan_forward(&mut table.iter()).unwrap().len(), model.len());
    assert_eq!(no_cache.usage_bytes(), 0);

    let cache = BlockCache::new(1 << 20);
    let table: Arc<Table> = Table::open(&OsFs, &path, 2, cache.clone()).unwrap();
    scan_forward(&mut table.iter()).unwrap();
    let misses = cache.misses();
    scan_forward(&mut table.iter()).unwrap();
    assert_eq!(
        cache.misses(),
        misses,
        "second scan should be served from the cache"
    );
    assert!(cache.usage_bytes() > 0);
}

#[test]
fn tables_are_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Table>();
    assert_send_sync::<BlockCache>();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.sst");
    let model = corruption_model();
    write_table(&path, &model, small_blocks());
    let table = Table::open(&OsFs, &path, 1, BlockCache::new(2_000)).unwrap();
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..20 {
                    for (key, (kind, value)) in &model {
                        let got = table.get(&key.key, key.version).unwrap().unwrap();
                        assert_eq!((got.kind, got.value.as_ref()), (*kind, value.as_slice()));
                    }
                }
            });
        }
    });
}

/// The worked example of `docs/sstable.md` is exactly the file the builder writes, and opens.
#[test]
fn doc_example_is_what_the_builder_writes() {
    let rows: [Row; 3] = [
        (
            InternalKey::new("apple", 5),
            ValueKind::Put,
            b"red".to_vec(),
        ),
        (
            InternalKey::new("apricot", 7),
            ValueKind::Put,
            b"orange".to_vec(),
        ),
        (
            InternalKey::new("apricot", 3),
            ValueKind::Tombstone,
            Vec::new(),
        ),
    ];
    let opts = TableOptions {
        block_size: 4096,
        restart_interval: 2,
        bloom_bits_per_key: 10,
        compression: Compression::None,
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("000002.sst");
    let mut builder = TableBuilder::create(&os(), &path, opts).unwrap();
    for (key, kind, value) in &rows {
        builder.add(&key.key, key.version, *kind, value).unwrap();
    }
    let props = builder.finish().unwrap();
    let file = std::fs::read(&path).unwrap();
    crate::doc_hex::assert_doc_bytes(&file, "sstable.md", "sstable-example");

    let table = Table::open(&OsFs, &path, 1, BlockCache::new(1 << 20)).unwrap();
    assert_eq!(table.properties(), &props);
    assert_eq!(scan_forward(&mut table.iter()).unwrap(), rows);
    assert!(table.may_contain(b"apple") && table.may_contain(b"apricot"));
}
