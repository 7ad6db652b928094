//! Bank transfers: concurrent transactions move money between accounts; conflicts make some
//! of them retry, and the total never changes.
//!
//! `cargo run -p ferrisdb-client --example bank -- --controller 127.0.0.1:4500`

#[path = "common/mod.rs"]
mod common;

use ferrisdb_client::{Error, RangeOptions, Result, Transaction};

const ACCOUNTS: u64 = 10;
const START: i64 = 100;

fn account(i: u64) -> String {
    format!("bank/account/{i:04}")
}

async fn balance(tx: &Transaction, i: u64) -> Result<i64> {
    match tx.get(account(i)).await? {
        None => Ok(0),
        Some(v) => {
            let bytes: [u8; 8] = v[..]
                .try_into()
                .map_err(|_| Error::InvalidArgument(format!("bad balance for {}", account(i))))?;
            Ok(i64::from_le_bytes(bytes))
        }
    }
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("bank: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<()> {
    let db = common::database()?;
    db.run(|tx| async move {
        tx.clear_range("bank/", "bank0")?;
        for i in 0..ACCOUNTS {
            tx.set(account(i), START.to_le_bytes())?;
        }
        Ok(())
    })
    .await?;

    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..20u64 {
                let (from, to) = ((t + n) % ACCOUNTS, (t * 3 + n + 1) % ACCOUNTS);
                if from == to {
                    continue;
                }
                db.run(|tx| async move {
                    let a = balance(&tx, from).await?;
                    if a < 10 {
                        return Ok(());
                    }
                    let b = balance(&tx, to).await?;
                    tx.set(account(from), (a - 10).to_le_bytes())?;
                    tx.set(account(to), (b + 10).to_le_bytes())?;
                    Ok(())
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
                let bytes: [u8; 8] = kv.value[..]
                    .try_into()
                    .map_err(|_| Error::InvalidArgument("bad balance".into()))?;
                sum += i64::from_le_bytes(bytes);
            }
            Ok(sum)
        })
        .await?;
    println!("total = {total} (expected {})", START * ACCOUNTS as i64);
    if total != START * ACCOUNTS as i64 {
        return Err(Error::Internal("money was created or destroyed".into()));
    }
    Ok(())
}
