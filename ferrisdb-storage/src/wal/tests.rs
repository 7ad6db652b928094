//! Tests of the WAL: round trips, group commit, rotation, torn tails, corruption and poisoning.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferrisdb_core::Error;
use proptest::prelude::*;

use super::format::{RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use super::*;
use crate::vfs::{OsFs, os};

fn options(sync: SyncPolicy) -> WalOptions {
    WalOptions {
        sync,
        ..WalOptions::default()
    }
}

fn open(dir: &Path, first_live: u64) -> (Wal, Vec<RecoveredRecord>) {
    Wal::open(&os(), dir, options(SyncPolicy::Always), first_live).unwrap()
}

fn payloads(records: &[RecoveredRecord]) -> Vec<Vec<u8>> {
    records.iter().map(|r| r.payload.clone()).collect()
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(segment_file_name(id))
}

fn segment_ids(dir: &Path) -> Vec<u64> {
    list_segments(&OsFs, dir)
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect()
}

fn payload(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 31 + j * 7) as u8).collect()
}

/// Writes `payloads` into a fresh log in `dir` (one segment, id 1) and closes it.
fn write_log(dir: &Path, payloads: &[Vec<u8>]) {
    let (wal, recovered) = open(dir, 1);
    assert!(recovered.is_empty());
    assert_eq!(wal.current_segment(), 1);
    for p in payloads {
        wal.append(p).unwrap();
    }
}

/// Byte offsets of each record in a single-segment log holding `payloads`.
fn record_offsets(payloads: &[Vec<u8>]) -> Vec<u64> {
    let mut offset = SEGMENT_HEADER_LEN as u64;
    payloads
        .iter()
        .map(|p| {
            let at = offset;
            offset += (RECORD_HEADER_LEN + p.len()) as u64;
            at
        })
        .collect()
}

fn expect_corruption(err: Error, file: &Path, offset: u64) {
    let message = err.to_string();
    match err {
        Error::Corruption {
            file: f, offset: o, ..
        } => {
            assert_eq!((f.as_path(), o), (file, offset), "{message}");
        }
        other => panic!("expected corruption, got {other}"),
    }
    assert!(message.contains(&file.display().to_string()), "{message}");
    assert!(message.contains(&format!("offset {offset}")), "{message}");
}

fn flip_byte(path: &Path, at: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[at as usize] ^= 0x01;
    fs::write(path, bytes).unwrap();
}

#[test]
fn wal_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Wal>();
}

#[test]
fn round_trip_of_many_sizes_including_empty() {
    let dir = tempfile::tempdir().unwrap();
    let mut sizes = vec![0, 1, 7, 8, 9, 0, 100, 4096, 70_000, 0];
    sizes.extend((0..200).map(|i| (i * 37) % 700));
    let written: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| payload(i, n))
        .collect();
    {
        let (wal, _) = Wal::open(&os(), dir.path(), options(SyncPolicy::Never), 1).unwrap();
        let mut last = 0;
        for (i, p) in written.iter().enumerate() {
            last = wal.submit(p).unwrap();
            assert_eq!(last, i as u64 + 1);
            if i % 13 == 0 {
                wal.sync_to(last).unwrap();
            }
        }
        wal.sync_to(last).unwrap();
        let stats = wal.stats();
        assert_eq!(stats.records_written, written.len() as u64);
        assert_eq!(stats.fsyncs, 0);
        assert!(stats.write_calls < written.len() as u64);
    }
    let (_wal, recovered) = open(dir.path(), 1);
    assert_eq!(payloads(&recovered), written);
    let offsets: Vec<u64> = recovered.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, record_offsets(&written));
    assert!(recovered.iter().all(|r| r.segment == 1));
}

#[test]
fn unsynced_records_are_written_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, _) = open(dir.path(), 1);
        wal.submit(b"a").unwrap();
        wal.submit(b"b").unwrap();
    }
    let (_wal, recovered) = open(dir.path(), 1);
    assert_eq!(payloads(&recovered), vec![b"a".to_vec(), b"b".to_vec()]);
}

#[test]
fn reopening_twice_keeps_records_and_continues_segment_ids() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, _) = open(dir.path(), 1);
        assert_eq!(wal.current_segment(), 1);
        assert_eq!(wal.append(b"one").unwrap(), 1);
    }
    {
        let (wal, recovered) = open(dir.path(), 1);
        assert_eq!(payloads(&recovered), vec![b"one".to_vec()]);
        assert_eq!(wal.current_segment(), 2);
        assert_eq!(
            wal.append(b"two").unwrap(),
            1,
            "sequence numbers restart at 1"
        );
    }
    let (wal, recovered) = open(dir.path(), 1);
    assert_eq!(wal.current_segment(), 3);
    assert_eq!(payloads(&recovered), vec![b"one".to_vec(), b"two".to_vec()]);
    assert_eq!(
        recovered.iter().map(|r| r.segment).collect::<Vec<_>>(),
        vec![1, 2]
    );
    drop(wal);
    let (wal, recovered) = open(dir.path(), 1);
    assert_eq!(wal.current_segment(), 4);
    assert_eq!(recovered.len(), 2);
}

#[test]
fn group_commit_shares_fsyncs_and_keeps_every_threads_order() {
    const THREADS: u8 = 8;
    const PER_THREAD: u32 = 200;
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open(dir.path(), 1);
    let wal = Arc::new(wal);
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let wal = Arc::clone(&wal);
            std::thread::spawn(move || {
                let mut seqs = Vec::new();
                for i in 0..PER_THREAD {
                    let mut record = vec![t];
                    record.extend_from_slice(&i.to_le_bytes());
                    seqs.push((wal.append(&record).unwrap(), record));
                }
                seqs
            })
        })
        .collect();
    let mut by_seq: Vec<(u64, Vec<u8>)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    by_seq.sort();
    let total = u64::from(THREADS) * u64::from(PER_THREAD);
    assert_eq!(
        by_seq.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>()
    );
    let stats = wal.stats();
    assert_eq!(stats.records_written, total);
    assert!(stats.fsyncs < total, "no grouping: {stats:?}");
    eprintln!("group commit: {stats:?}");
    assert!(stats.write_calls <= stats.fsyncs, "{stats:?}");
    drop(wal);

    let (_wal, recovered) = open(dir.path(), 1);
    // The log order is exactly the sequence order, hence each thread's own order.
    let expected: Vec<Vec<u8>> = by_seq.into_iter().map(|(_, r)| r).collect();
    assert_eq!(payloads(&recovered), expected);
    let mut next = [0u32; THREADS as usize];
    for record in &recovered {
        let t = record.payload[0] as usize;
        let i = u32::from_le_bytes(record.payload[1..5].try_into().unwrap());
        assert_eq!(i, next[t]);
        next[t] += 1;
    }
    assert!(next.iter().all(|&n| n == PER_THREAD));
}

#[test]
fn rotations_racing_with_appends_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(&os(), dir.path(), options(SyncPolicy::Never), 1).unwrap();
    let wal = Arc::new(wal);
    let writers: Vec<_> = (0..4u8)
        .map(|t| {
            let wal = Arc::clone(&wal);
            std::thread::spawn(move || {
                for i in 0..300u32 {
                    let mut record = vec![t];
                    record.extend_from_slice(&i.to_le_bytes());
                    if i % 3 == 0 {
                        wal.append(&record).unwrap();
                    } else {
                        wal.submit(&record).unwrap();
                    }
                }
            })
        })
        .collect();
    for _ in 0..20 {
        wal.rotate().unwrap();
    }
    for handle in writers {
        handle.join().unwrap();
    }
    assert_eq!(wal.current_segment(), 21);
    drop(wal);
    let (_wal, recovered) = open(dir.path(), 1);
    assert_eq!(recovered.len(), 1200);
    assert!(recovered.windows(2).all(|w| w[0].segment <= w[1].segment));
    let mut next = [0u32; 4];
    for record in &recovered {
        let t = record.payload[0] as usize;
        assert_eq!(
            u32::from_le_bytes(record.payload[1..5].try_into().unwrap()),
            next[t]
        );
        next[t] += 1;
    }
}

#[test]
fn torn_tail_at_every_byte_of_the_last_record_is_truncated() {
    let src = tempfile::tempdir().unwrap();
    let written: Vec<Vec<u8>> = (0..5).map(|i| payload(i, 10 + i * 9)).collect();
    write_log(src.path(), &written);
    let original = fs::read(segment_path(src.path(), 1)).unwrap();
    let last_start = *record_offsets(&written).last().unwrap();
    assert_eq!(
        original.len() as u64,
        last_start + 8 + written[4].len() as u64
    );
    for cut in last_start..original.len() as u64 {
        let dir = tempfile::tempdir().unwrap();
        let path = segment_path(dir.path(), 1);
        fs::write(&path, &original[..cut as usize]).unwrap();
        let (wal, recovered) = Wal::open(&os(), dir.path(), options(SyncPolicy::Never), 1)
            .unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_eq!(payloads(&recovered), written[..4], "cut at {cut}");
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            last_start,
            "cut at {cut}"
        );
        assert_eq!(wal.current_segment(), 2);
    }
}

#[test]
fn zero_filled_tail_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let written: Vec<Vec<u8>> = (0..3).map(|i| payload(i, 50)).collect();
    write_log(dir.path(), &written);
    let path = segment_path(dir.path(), 1);
    let good_len = fs::metadata(&path).unwrap().len();
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(good_len + 4096).unwrap();
    drop(file);
    let (_wal, recovered) = open(dir.path(), 1);
    assert_eq!(payloads(&recovered), written);
    assert_eq!(fs::metadata(&path).unwrap().len(), good_len);
}

#[test]
fn zeroed_last_record_in_place_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let written: Vec<Vec<u8>> = (0..3).map(|i| payload(i, 50)).collect();
    write_log(dir.path(), &written);
    let path = segment_path(dir.path(), 1);
    let last_start = record_offsets(&written)[2] as usize;
    let mut bytes = fs::read(&path).unwrap();
    bytes[last_start..].fill(0);
    bytes.extend_from_slice(&[0; 100]);
    fs::write(&path, bytes).unwrap();
    let (_wal, recovered) = open(dir.path(), 1);
    assert_eq!(payloads(&recovered), written[..2]);
    assert_eq!(fs::metadata(&path).unwrap().len(), last_start as u64);
}

#[test]
fn last_record_cut_at_a_sector_boundary_then_zeros_is_a_torn_tail() {
    // A crash persisted the first sector of a 2,000-byte record; the rest of the write
    // reached the file size but not the disk, so it reads as zeros.
    let dir = tempfile::tempdir().unwrap();
    let written = vec![payload(0, 20), payload(1, 2000)];
    write_log(dir.path(), &written);
    let path = segment_path(dir.path(), 1);
    let last_start = record_offsets(&written)[1];
    let mut bytes = fs::read(&path).unwrap();
    let boundary = crate::fsutil::TORN_WRITE_SECTOR as usize;
    assert!(last_start < boundary as u64 && bytes.len() > 2 * boundary);
    bytes[boundary..].fill(0);
    fs::write(&path, &bytes).unwrap();
    let (_wal, recovered) = open(dir.path(), 1);
    assert_eq!(payloads(&recovered), written[..1]);
    assert_eq!(fs::metadata(&path).unwrap().len(), last_start);
}

#[test]
fn last_record_zeroed_from_inside_its_last_sector_is_corruption() {
    // Zeros that start inside a sector, after a non-zero byte, are not what a crash leaves
    // (a sector is written whole or not at all) when the damaged record does not reach
    // end of file.
    let dir = tempfile::tempdir().unwrap();
    let written = vec![payload(0, 20), payload(1, 2000)];
    write_log(dir.path(), &written);
    let path = segment_path(dir.path(), 1);
    let last_start = record_offsets(&written)[1];
    let mut bytes = fs::read(&path).unwrap();
    let sector = crate::fsutil::TORN_WRITE_SECTOR as usize;
    let last_sector = (bytes.len() - 1) / sector * sector;
    bytes[last_sector + 1..].fill(0);
    bytes[last_sector] = 0xAB;
    bytes.extend_from_slice(&[0; 100]);
    fs::write(&path, &bytes).unwrap();
    let err = Wal::open(&os(), dir.path(), WalOptions::default(), 1)
        .map(|_| ())
        .unwrap_err();
    expect_corruption(err, &path, last_start);
}

#[test]
fn flipped_byte_anywhere_in_a_middle_record_is_corruption_at_its_offset() {
    let src = tempfile::tempdir().unwrap();
    let written = vec![
        payload(0, 20),
        payload(1, 40),
        payload(2, 2000),
        payload(3, 5),
    ];
    {
        let opts = WalOptions {
            sync: SyncPolicy::Always,
            max_record_bytes: 4096,
        };
        let (wal, _) = Wal::open(&os(), src.path(), opts, 1).unwrap();
        for p in &written {
            wal.append(p).unwrap();
        }
    }
    let original = fs::read(segment_path(src.path(), 1)).unwrap();
    let start = record_offsets(&written)[1];
    for at in start..start + 8 + 40 {
        let dir = tempfile::tempdir().unwrap();
        let path = segment_path(dir.path(), 1);
        fs::write(&path, &original).unwrap();
        flip_byte(&path, at);
        let opts = WalOptions {
            sync: SyncPolicy::Never,
            max_record_bytes: 4096,
        };
        let err = Wal::open(&os(), dir.path(), opts, 1)
            .map(|_| ())
            .unwrap_err();
        expect_corruption(err, &path, start);
        assert_eq!(
            fs::read(&path).unwrap().len(),
            original.len(),
            "file must stay untouched"
        );
    }
}

#[test]
fn flipped_byte_in_the_last_record_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let written: Vec<Vec<u8>> = (0..4).map(|i| payload(i, 30)).collect();
    write_log(dir.path(), &written);
    let path = segment_path(dir.path(), 1);
    let last_start = record_offsets(&written)[3];
    flip_byte(&path, last_start + 8 + 15);
    let (_wal, recovered) = open(dir.path(), 1);
    assert_eq!(payloads(&recovered), written[..3]);
    assert_eq!(fs::metadata(&path).unwrap().len(), last_start);
}

#[test]
fn declared_length_over_the_limit_is_corruption_without_allocating() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), &[b"ok".to_vec()]);
    let path = segment_path(dir.path(), 1);
    let bad_at = fs::metadata(&path).unwrap().len();
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes.extend_from_slice(&u32::MAX.to_le_bytes());
    bytes.extend_from_slice(&[7; 16]);
    fs::write(&path, bytes).unwrap();
    let err = Wal::open(&os(), dir.path(), WalOptions::default(), 1)
        .map(|_| ())
        .unwrap_err();
    assert!(err.to_string().contains("exceeds the limit"), "{err}");
    expect_corruption(err, &path, bad_at);
}

#[test]
fn bad_segment_headers_are_corruption_at_offset_zero() {
    for damage in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        {
            let (wal, _) = open(dir.path(), 1);
            wal.append(b"first").unwrap();
            wal.rotate().unwrap();
            wal.append(b"second").unwrap();
        }
        let first = segment_path(dir.path(), 1);
        let second = segment_path(dir.path(), 2);
        let damaged = match damage {
            // Bad magic in a sealed segment.
            0 => {
                flip_byte(&first, 0);
                first
            }
            // Bad header checksum in the newest segment (which holds records).
            1 => {
                flip_byte(&second, 20);
                second
            }
            // Header id does not match the file name.
            _ => {
                let renamed = segment_path(dir.path(), 5);
                fs::rename(&second, &renamed).unwrap();
                renamed
            }
        };
        let err = Wal::open(&os(), dir.path(), WalOptions::default(), 1)
            .map(|_| ())
            .unwrap_err();
        expect_corruption(err, &damaged, 0);
    }
}

#[test]
fn damage_in_a_sealed_segment_is_never_treated_as_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, _) = open(dir.path(), 1);
        wal.append(b"first record").unwrap();
        wal.append(b"second record").unwrap();
        wal.rotate().unwrap();
        wal.append(b"third").unwrap();
    }
    let first = segment_path(dir.path(), 1);
    let len = fs::metadata(&first).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&first)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let err = Wal::open(&os(), dir.path(), WalOptions::default(), 1)
        .map(|_| ())
        .unwrap_err();
    expect_corruption(
        err,
        &first,
        record_offsets(&[b"first record".to_vec()])[0] + 20,
    );
}

#[test]
fn torn_header_of_the_newest_segment_counts_as_empty() {
    for torn in [vec![], b"FDBWA".to_vec(), vec![0; 32], vec![0; 100]] {
        let dir = tempfile::tempdir().unwrap();
        {
            let (wal, _) = open(dir.path(), 1);
            wal.append(b"kept").unwrap();
        }
        let torn_path = segment_path(dir.path(), 2);
        fs::write(&torn_path, &torn).unwrap();
        let (wal, recovered) = open(dir.path(), 1);
        assert_eq!(
            payloads(&recovered),
            vec![b"kept".to_vec()],
            "torn header {torn:?}"
        );
        assert!(!torn_path.exists());
        assert_eq!(wal.current_segment(), 3, "ids are not reused");
    }
}

#[test]
fn rotation_moves_later_records_to_the_new_segment() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, _) = Wal::open(&os(), dir.path(), options(SyncPolicy::Never), 7).unwrap();
        assert_eq!(wal.current_segment(), 7);
        wal.submit(b"a").unwrap();
        let before = wal.stats().fsyncs;
        assert_eq!(wal.rotate().unwrap(), 8);
        assert_eq!(
            wal.stats().fsyncs,
            before + 1,
            "rotation syncs even under Never"
        );
        assert_eq!(wal.current_segment(), 8);
        wal.append(b"b").unwrap();
        assert_eq!(wal.rotate().unwrap(), 9);
    }
    let (wal, recovered) = open(dir.path(), 7);
    let got: Vec<(u64, Vec<u8>)> = recovered
        .into_iter()
        .map(|r| (r.segment, r.payload))
        .collect();
    assert_eq!(got, vec![(7, b"a".to_vec()), (8, b"b".to_vec())]);
    assert_eq!(wal.current_segment(), 10);
}

#[test]
fn remove_segments_before_deletes_only_older_segments() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("OTHER"), b"x").unwrap();
    let (wal, _) = open(dir.path(), 1);
    for _ in 0..3 {
        wal.append(b"r").unwrap();
        wal.rotate().unwrap();
    }
    assert_eq!(segment_ids(dir.path()), vec![1, 2, 3, 4]);
    wal.remove_segments_before(3).unwrap();
    assert_eq!(segment_ids(dir.path()), vec![3, 4]);
    wal.remove_segments_before(100).unwrap();
    assert_eq!(
        segment_ids(dir.path()),
        vec![4],
        "the current segment is never removed"
    );
    assert!(dir.path().join("OTHER").exists());
    wal.append(b"after").unwrap();
    drop(wal);
    let (_wal, recovered) = open(dir.path(), 1);
    assert_eq!(payloads(&recovered), vec![b"after".to_vec()]);
}

#[test]
fn open_deletes_segments_before_first_live() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, _) = open(dir.path(), 1);
        wal.append(b"old").unwrap();
        wal.rotate().unwrap();
        wal.append(b"older-but-live").unwrap();
        wal.rotate().unwrap();
        wal.append(b"new").unwrap();
    }
    let (wal, recovered) = open(dir.path(), 2);
    assert_eq!(
        payloads(&recovered),
        vec![b"older-but-live".to_vec(), b"new".to_vec()]
    );
    assert_eq!(segment_ids(dir.path()), vec![2, 3, 4]);
    drop(wal);
    let (wal, recovered) = open(dir.path(), 50);
    assert!(recovered.is_empty());
    assert_eq!(wal.current_segment(), 50);
    assert_eq!(segment_ids(dir.path()), vec![50]);
}

#[test]
fn invalid_arguments_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        sync: SyncPolicy::Always,
        max_record_bytes: 16,
    };
    let (wal, _) = Wal::open(&os(), dir.path(), opts, 1).unwrap();
    assert!(matches!(
        wal.submit(&[0; 17]),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(wal.submit(&[0; 16]).unwrap(), 1);
    assert!(matches!(wal.sync_to(2), Err(Error::InvalidArgument(_))));
    wal.sync_to(0).unwrap();
    wal.sync_to(1).unwrap();
}

#[test]
fn an_io_failure_poisons_the_log() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, _) = open(dir.path(), 1);
        wal.append(b"durable").unwrap();
        wal.writer.inject_io_failure();
        assert!(matches!(wal.append(b"lost"), Err(Error::Io { .. })));
        assert!(wal.submit(b"later").is_err());
        assert!(wal.sync_to(1).is_err());
        assert!(wal.rotate().is_err());
        assert_eq!(wal.stats().records_written, 1);
    }
    let (_wal, recovered) = open(dir.path(), 1);
    assert_eq!(payloads(&recovered), vec![b"durable".to_vec()]);
}

#[test]
fn a_failed_leader_fails_its_waiting_followers() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open(dir.path(), 1);
    let wal = Arc::new(wal);
    wal.writer.inject_io_failure();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let wal = Arc::clone(&wal);
            std::thread::spawn(move || wal.append(b"x").is_err())
        })
        .collect();
    let failures = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|&failed| failed)
        .count();
    assert_eq!(failures, 4);
    assert!(wal.append(b"y").is_err());
}

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<u8>),
    Submit(Vec<u8>),
    Rotate,
    RemoveBeforeCurrent,
    Reopen,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => proptest::collection::vec(any::<u8>(), 0..64).prop_map(Op::Append),
        3 => proptest::collection::vec(any::<u8>(), 0..64).prop_map(Op::Submit),
        1 => Just(Op::Rotate),
        1 => Just(Op::RemoveBeforeCurrent),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn log_matches_a_model_across_rotations_and_reopens(
        ops in proptest::collection::vec(op_strategy(), 1..30)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let opts = options(SyncPolicy::Never);
        let (mut wal, recovered) = Wal::open(&os(), dir.path(), opts, 1).unwrap();
        prop_assert!(recovered.is_empty());
        let mut model: Vec<(u64, Vec<u8>)> = Vec::new();
        for op in ops {
            match op {
                Op::Append(p) => {
                    wal.append(&p).unwrap();
                    model.push((wal.current_segment(), p));
                }
                Op::Submit(p) => {
                    wal.submit(&p).unwrap();
                    model.push((wal.current_segment(), p));
                }
                Op::Rotate => {
                    let old = wal.current_segment();
                    prop_assert_eq!(wal.rotate().unwrap(), old + 1);
                }
                Op::RemoveBeforeCurrent => {
                    let current = wal.current_segment();
                    wal.remove_segments_before(current).unwrap();
                    model.retain(|(segment, _)| *segment >= current);
                }
                Op::Reopen => {
                    drop(wal);
                    let (reopened, recovered) = Wal::open(&os(), dir.path(), opts, 1).unwrap();
                    let got: Vec<(u64, Vec<u8>)> =
                        recovered.into_iter().map(|r| (r.segment, r.payload)).collect();
                    prop_assert_eq!(&got, &model);
                    wal = reopened;
                }
            }
        }
        drop(wal);
        let (_wal, recovered) = Wal::open(&os(), dir.path(), opts, 1).unwrap();
        let got: Vec<(u64, Vec<u8>)> =
            recovered.into_iter().map(|r| (r.segment, r.payload)).collect();
        prop_assert_eq!(got, model);
    }
}
