//! A contention-free counter: many concurrent increments with atomic `add`, which adds no read
//! conflict, so none of them retries for conflicts.
//!
//! `cargo run -p ferrisdb-client --example counter -- --controller 127.0.0.1:4500`
//!
//! The logic lives in [`increments`] so the end-to-end tests can run it against a real cluster.

#[path = "common/mod.rs"]
mod common;

use ferrisdb_client::{Database, Error, Result};

/// The counter's key.
pub const KEY: &str = "example/counter";
/// Concurrent tasks.
pub const TASKS: u64 = 16;
/// Increments per task.
pub const PER_TASK: u64 = 10;

fn decode(v: Option<bytes::Bytes>) -> u64 {
    v.map(|v| {
        let mut le = [0u8; 8];
        let n = v.len().min(8);
        le[..n].copy_from_slice(&v[..n]);
        u64::from_le_bytes(le)
    })
    .unwrap_or(0)
}

/// Reads the counter, runs `TASKS × PER_TASK` concurrent increments, reads it again; returns
/// `(before, after)`. Fails unless every increment counted exactly once (no other writer
/// assumed).
pub async fn increments(db: &Database) -> Result<(u64, u64)> {
    let before = decode(db.run(|tx| async move { tx.get(KEY).await }).await?);
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..PER_TASK {
                db.run(|tx| async move { tx.add(KEY, 1u64.to_le_bytes()) })
                    .await?;
            }
            Ok::<_, Error>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| Error::Internal(e.to_string()))??;
    }
    let after = decode(db.run(|tx| async move { tx.get(KEY).await }).await?);
    if after.wrapping_sub(before) != TASKS * PER_TASK {
        return Err(Error::Internal(format!(
            "{KEY} went from {before} to {after}, expected +{}",
            TASKS * PER_TASK
        )));
    }
    Ok((before, after))
}

#[tokio::main]
async fn main() {
    match async { increments(&common::database()?).await }.await {
        Ok((before, after)) => println!("{KEY}: {before} -> {after}"),
        Err(e) => {
            eprintln!("counter: {e}");
            std::process::exit(1);
        }
    }
}
