//! A contention-free counter: many concurrent increments with atomic `add`, which adds no read
//! conflict, so none of them retries for conflicts.
//!
//! `cargo run -p ferrisdb-client --example counter -- --controller 127.0.0.1:4500`

#[path = "common/mod.rs"]
mod common;

use ferrisdb_client::Result;

const KEY: &str = "example/counter";

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("counter: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<()> {
    let db = common::database()?;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                db.run(|tx| async move { tx.add(KEY, 1u64.to_le_bytes()) })
                    .await?;
            }
            Ok::<_, ferrisdb_client::Error>(())
        }));
    }
    for t in tasks {
        t.await
            .map_err(|e| ferrisdb_client::Error::Internal(e.to_string()))??;
    }
    let value = db.run(|tx| async move { tx.get(KEY).await }).await?;
    let count = value
        .map(|v| {
            let mut le = [0u8; 8];
            let n = v.len().min(8);
            le[..n].copy_from_slice(&v[..n]);
            u64::from_le_bytes(le)
        })
        .unwrap_or(0);
    println!("{KEY} = {count}");
    Ok(())
}
