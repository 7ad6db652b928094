//! The bank workload: [`ACCOUNTS`] accounts spread over every shard start with
//! [`INITIAL`] each; transfer clients move a random amount (never more than the source holds)
//! between two random accounts; reader clients read every account in one transaction. Every
//! read must sum to the same total with no negative balance (`ferrisdb_check::bank`).

use std::time::Duration;

use bytes::Bytes;
use ferrisdb_check::OpType;
use ferrisdb_check::bank::BankRead;
use ferrisdb_client::{Database, Transaction};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use super::attempt::{Ended, run_once};
use super::{Counts, spread};

/// Number of accounts.
pub const ACCOUNTS: usize = 8;
/// Each account's opening balance.
pub const INITIAL: i64 = 100;
const TXN_DEADLINE: Duration = Duration::from_secs(20);

fn key(account: usize) -> Bytes {
    let mut key = vec![spread(account as u64), b'b', b'/'];
    key.extend_from_slice(&(account as u32).to_be_bytes());
    Bytes::from(key)
}

async fn balance(tx: &Transaction, account: usize) -> ferrisdb_client::Result<Option<i64>> {
    Ok(tx
        .get(key(account))
        .await?
        .map(|v| match <[u8; 8]>::try_from(&v[..]) {
            Ok(b) => i64::from_le_bytes(b),
            // A torn balance cannot sum to the total: make sure the checker sees it.
            Err(_) => i64::MIN,
        }))
}

/// Opens every account (before any fault).
pub async fn open_accounts(db: &Database) {
    db.run(|tx| async move {
        for a in 0..ACCOUNTS {
            tx.set(key(a), INITIAL.to_le_bytes())?;
        }
        Ok(())
    })
    .await
    .expect("open the accounts");
}

/// Reads every account in one transaction.
pub async fn read_all(db: &Database, deadline: Instant) -> Ended<BankRead> {
    run_once(db, deadline, |tx| async move {
        let mut balances = Vec::with_capacity(ACCOUNTS);
        for a in 0..ACCOUNTS {
            balances.push(balance(&tx, a).await?);
        }
        Ok(balances)
    })
    .await
}

/// A transfer client until `until`.
pub async fn transfers(db: Database, seed: u64, until: Instant) -> Counts {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xba4c);
    let mut counts = Counts::default();
    while Instant::now() < until {
        let from = rng.random_range(0..ACCOUNTS);
        let to = (from + rng.random_range(1..ACCOUNTS)) % ACCOUNTS;
        let fraction = rng.random_range(0.0..1.0f64);
        let ended = run_once(&db, Instant::now() + TXN_DEADLINE, |tx| async move {
            let (Some(a), Some(b)) = (balance(&tx, from).await?, balance(&tx, to).await?) else {
                return Ok(());
            };
            let amount = ((a.max(0) as f64) * fraction).ceil() as i64;
            if amount > 0 {
                tx.set(key(from), (a - amount).to_le_bytes())?;
                tx.set(key(to), (b + amount).to_le_bytes())?;
            }
            Ok(())
        })
        .await;
        counts.add(kind(&ended));
    }
    counts
}

/// A reader client until `until`: returns every read that committed.
pub async fn reader(db: Database, until: Instant) -> (Counts, Vec<BankRead>) {
    let mut counts = Counts::default();
    let mut reads = Vec::new();
    while Instant::now() < until {
        let ended = read_all(&db, Instant::now() + TXN_DEADLINE).await;
        counts.add(kind(&ended));
        if let Ended::Ok(read) = ended {
            reads.push(read);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (counts, reads)
}

/// The history type of an ending.
pub fn kind<T>(ended: &Ended<T>) -> OpType {
    match ended {
        Ended::Ok(_) => OpType::Ok,
        Ended::Fail(_) => OpType::Fail,
        Ended::Unknown(_) => OpType::Info,
    }
}
