//! Crash test: a child process applies fsynced batches as fast as it can (small memtables so
//! flushes and compactions run all the time) and reports every acknowledged version on
//! stdout; the parent kills it with SIGKILL at a random moment, reopens the engine and checks
//! that every acknowledged batch is present and every batch is atomic. Repeated on the same
//! directory, so recovery of a recovered engine is exercised too.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ferrisdb_storage::engine::{Engine, EngineOptions, SyncPolicy, WriteBatch};

const CHILD_ENV: &str = "FERRISDB_CRASH_CHILD_DIR";
const KEYS_PER_BATCH: u64 = 4;
const KEY_SPACE: u64 = 64;
const CYCLES: usize = 6;

fn options() -> EngineOptions {
    EngineOptions {
        sync: SyncPolicy::Always,
        memtable_bytes: 16 << 10,
        target_file_bytes: 16 << 10,
        level1_bytes: 64 << 10,
        l0_compaction_trigger: 2,
        ..EngineOptions::default()
    }
}

/// The keys batch `v` writes; every batch writes all of them with the value `v`, except that
/// every 7th batch deletes them instead.
fn batch_keys(v: u64) -> Vec<Vec<u8>> {
    (0..KEYS_PER_BATCH)
        .map(|j| format!("key-{:03}", (v * 13 + j * 17) % KEY_SPACE).into_bytes())
        .collect()
}

fn batch_for(v: u64) -> WriteBatch {
    let mut b = WriteBatch::default();
    for k in batch_keys(v) {
        if v.is_multiple_of(7) {
            b.delete(&k);
        } else {
            // A value big enough to make flushes frequent, tagged with its version.
            let mut value = v.to_le_bytes().to_vec();
            value.resize(200, b'x');
            b.put(&k, &value);
        }
    }
    b
}

/// Checks batch `v` at read version `v`: all its keys hold exactly what it wrote.
fn batch_is_whole(engine: &Engine, v: u64) -> bool {
    batch_keys(v).iter().all(|k| {
        let got = engine.get(k, v).expect("read after recovery");
        if v.is_multiple_of(7) {
            got.is_none()
        } else {
            got.is_some_and(|val| val.len() == 200 && val[..8] == v.to_le_bytes())
        }
    })
}

/// The child: applies batches from the engine's last version on, printing each acknowledged
/// version. Runs only when the parent sets CHILD_ENV.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let engine = Engine::open(Path::new(&dir), options()).expect("child opens the engine");
    let mut v = engine.last_applied_version() + 1;
    let stdout = std::io::stdout();
    loop {
        engine.apply(v, &batch_for(v)).expect("child applies");
        let mut out = stdout.lock();
        writeln!(out, "ack {v}").expect("child writes to the parent");
        out.flush().expect("child flushes");
        v += 1;
    }
}

#[test]
fn acknowledged_batches_survive_sigkill() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut highest_acked = 0;
    let mut rng_state = 0x9e37_79b9_7f4a_7c15u64;
    for cycle in 0..CYCLES {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(v) = line
                    .strip_prefix("ack ")
                    .and_then(|v| v.parse::<u64>().ok())
                {
                    let _ = tx.send(v);
                }
            }
        });
        // Let it run for a random while (after its first acknowledgement), then SIGKILL.
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        let run_for = Duration::from_millis(150 + rng_state % 600);
        let first = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("child acknowledges a batch");
        let start = Instant::now();
        let mut acked = first;
        while start.elapsed() < run_for {
            if let Ok(v) = rx.recv_timeout(Duration::from_millis(10)) {
                acked = acked.max(v);
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        // Acknowledgements printed before the kill are still in the pipe.
        while let Ok(v) = rx.try_recv() {
            acked = acked.max(v);
        }
        highest_acked = highest_acked.max(acked);

        let engine = Engine::open(dir.path(), options()).expect("reopen after SIGKILL");
        let recovered = engine.last_applied_version();
        assert!(
            recovered >= highest_acked,
            "cycle {cycle}: acknowledged version {highest_acked} lost (recovered {recovered})"
        );
        assert!(engine.durable_version() >= highest_acked);
        // Every batch is whole at its version, the latest few and a sample of older ones.
        let from = recovered.saturating_sub(200).max(1);
        for v in (from..=recovered).chain((1..from).step_by(97)) {
            assert!(
                batch_is_whole(&engine, v),
                "cycle {cycle}: batch {v} is not whole"
            );
        }
        engine.close().unwrap();
    }
    assert!(highest_acked > 0);
}
