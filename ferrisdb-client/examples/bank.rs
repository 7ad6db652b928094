//! Bank transfers: concurrent transactions move money between accounts; conflicts make some
//! of them retry, and the total never changes.
//!
//! `cargo run -p ferrisdb-client --example bank -- --controller 127.0.0.1:4500`
//!
//! The logic lives in [`transfers`] so the end-to-end tests can run it against a real cluster.

#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use ferrisdb_client::{Database, Error, RangeOptions, Result, Transaction};

/// Number of accounts.
pub const ACCOUNTS: u64 = 10;
/// Starting balance of each account.
pub const START: i64 = 100;

fn account(i: u64) -> String {
    format!("bank/account/{i:04}")
}

fn decode(key: &str, v: &[u8]) -> Result<i64> {
    let bytes: [u8; 8] = v
        .try_into()
        .map_err(|_| Error::InvalidArgument(format!("bad balance for {key}")))?;
    Ok(i64::from_le_bytes(bytes))
}

async fn balance(tx: &Transaction, i: u64) -> Result<i64> {
    match tx.get(account(i)).await? {
        None => Ok(0),
        Some(v) => decode(&account(i), &v),
    }
}

/// What one run of the example saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Sum of the balances at the end.
    pub total: i64,
    /// Sum of the balances at the start.
    pub expected: i64,
    /// Transfers that ran more than once (conflicts and other retryable errors).
    pub retries: u32,
}

/// Resets the accounts, runs 8 concurrent tasks of 20 transfers each, and sums the balances.
/// Fails if money was created or destroyed.
pub async fn transfers(db: &Database) -> Result<Outcome> {
    db.run(|tx| async move {
        tx.clear_range("bank/", "bank0")?;
        for i in 0..ACCOUNTS {
            tx.set(account(i), START.to_le_bytes())?;
        }
        Ok(())
    })
    .await?;

    let retries = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let db = db.clone();
        let retries = retries.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..20u64 {
                let (from, to) = ((t + n) % ACCOUNTS, (t * 3 + n + 1) % ACCOUNTS);
                if from == to {
                    continue;
                }
                let attempts = AtomicU32::new(0);
                db.run(|tx| {
                    if attempts.fetch_add(1, Ordering::Relaxed) > 0 {
                        retries.fetch_add(1, Ordering::Relaxed);
                    }
                    async move {
                        let a = balance(&tx, from).await?;
                        if a < 10 {
                            return Ok(());
                        }
                        let b = balance(&tx, to).await?;
                        tx.set(account(from), (a - 10).to_le_bytes())?;
                        tx.set(account(to), (b + 10).to_le_bytes())?;
                        Ok(())
                    }
                })
                .await?;
            }
            Ok::<_, Error>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| Error::Internal(e.to_string()))??;
    }

    let total = db
        .run(|tx| async move {
            let all = tx
                .get_range("bank/account/", "bank/account0", RangeOptions::default())
                .collect_vec()
                .await?;
            let mut sum = 0i64;
            for kv in all {
                sum += decode(&String::from_utf8_lossy(&kv.key), &kv.value)?;
            }
            Ok(sum)
        })
        .await?;
    let outcome = Outcome {
        total,
        expected: START * ACCOUNTS as i64,
        retries: retries.load(Ordering::Relaxed),
    };
    if outcome.total != outcome.expected {
        return Err(Error::Internal(format!(
            "money was created or destroyed: {outcome:?}"
        )));
    }
    Ok(outcome)
}

#[tokio::main]
async fn main() {
    let result = async { transfers(&common::database()?).await }.await;
    match result {
        Ok(o) => println!(
            "total = {} (expected {}), {} transfers retried",
            o.total, o.expected, o.retries
        ),
        Err(e) => {
            eprintln!("bank: {e}");
            std::process::exit(1);
        }
    }
}
