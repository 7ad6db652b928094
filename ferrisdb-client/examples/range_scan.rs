//! Range reads: writes 100 keys, then scans them forward in small batches, backward with a
//! limit, and through a snapshot (no read conflicts) while also seeing the transaction's own
//! uncommitted writes.
//!
//! `cargo run -p ferrisdb-client --example range_scan -- --controller 127.0.0.1:4500`
//!
//! The logic lives in [`scans`] so the end-to-end tests can run it against a real cluster.

#[path = "common/mod.rs"]
mod common;

use bytes::Bytes;
use ferrisdb_client::{Database, RangeOptions, Result};

/// What the scans returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scans {
    /// Keys of the forward scan (batches of 16).
    pub forward: Vec<Bytes>,
    /// Keys of the reverse scan limited to 3.
    pub last_three: Vec<Bytes>,
    /// Keys a snapshot read of `scan/049..scan/061` saw after local uncommitted writes
    /// (`scan/050..scan/060` cleared, `scan/050x` set).
    pub with_local_writes: Vec<Bytes>,
}

/// Writes `scan/000..scan/099`, then runs the scans (the local writes are discarded).
pub async fn scans(db: &Database) -> Result<Scans> {
    db.run(|tx| async move {
        tx.clear_range("scan/", "scan0")?;
        for i in 0..100u32 {
            tx.set(format!("scan/{i:03}"), i.to_string())?;
        }
        Ok(())
    })
    .await?;

    db.run(|tx| async move {
        let mut stream = tx.get_range("scan/", "scan0", RangeOptions::default().batch_size(16));
        let mut forward = Vec::new();
        while let Some(kv) = stream.try_next().await? {
            forward.push(kv.key);
        }
        let last_three = tx
            .get_range("scan/", "scan0", RangeOptions::default().reverse().limit(3))
            .collect_vec()
            .await?
            .into_iter()
            .map(|kv| kv.key)
            .collect();

        // Own writes are visible, committed or not.
        tx.clear_range("scan/050", "scan/060")?;
        tx.set("scan/050x", "new")?;
        let with_local_writes = tx
            .snapshot()
            .get_range("scan/049", "scan/061", RangeOptions::default())
            .collect_vec()
            .await?
            .into_iter()
            .map(|kv| kv.key)
            .collect();
        // Drop the local changes instead of committing them.
        tx.reset();
        Ok(Scans {
            forward,
            last_three,
            with_local_writes,
        })
    })
    .await
}

#[tokio::main]
async fn main() {
    match async { scans(&common::database()?).await }.await {
        Ok(s) => {
            println!(
                "forward: {} keys, first {:?}",
                s.forward.len(),
                s.forward.first()
            );
            println!("reverse, limit 3: {:?}", s.last_three);
            println!(
                "snapshot of scan/049..scan/061 after local writes: {:?}",
                s.with_local_writes
            );
        }
        Err(e) => {
            eprintln!("range_scan: {e}");
            std::process::exit(1);
        }
    }
}
