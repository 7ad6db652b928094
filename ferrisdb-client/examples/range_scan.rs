//! Range reads: writes 100 keys, then scans them forward in small batches, backward with a
//! limit, and through a snapshot (no read conflicts) while also seeing the transaction's own
//! uncommitted writes.
//!
//! `cargo run -p ferrisdb-client --example range_scan -- --controller 127.0.0.1:4500`

#[path = "common/mod.rs"]
mod common;

use ferrisdb_client::{RangeOptions, Result};

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("range_scan: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<()> {
    let db = common::database()?;
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
        let mut n = 0;
        while let Some(kv) = stream.try_next().await? {
            n += 1;
            if n <= 3 {
                println!("forward: {:?} = {:?}", kv.key, kv.value);
            }
        }
        println!("forward: {n} keys");

        let last = tx
            .get_range("scan/", "scan0", RangeOptions::default().reverse().limit(3))
            .collect_vec()
            .await?;
        for kv in &last {
            println!("reverse: {:?}", kv.key);
        }

        // Own writes are visible, committed or not.
        tx.clear_range("scan/050", "scan/060")?;
        tx.set("scan/050x", "new")?;
        let seen = tx
            .snapshot()
            .get_range("scan/049", "scan/061", RangeOptions::default())
            .collect_vec()
            .await?;
        println!(
            "snapshot of scan/049..scan/061 after local writes: {:?}",
            seen.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>()
        );
        // Drop the local changes instead of committing them.
        tx.reset();
        Ok(())
    })
    .await?;
    Ok(())
}
