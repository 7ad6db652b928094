//! Atomic operations through the client, applied by the storage servers: concurrent `add`s sum
//! exactly, and every operation's stored result equals both the client's read-your-writes view
//! before the commit and [`AtomicOp::apply`] folded locally.

use bytes::Bytes;
use ferrisdb_client::AtomicOp;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{cluster, key};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_adds_sum_exactly() {
    let (_cluster, db) = cluster(2).await;
    let counter = key(0x99, "counter");
    const TASKS: u64 = 8;
    const PER_TASK: u64 = 25;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (db, counter) = (db.clone(), counter.clone());
        tasks.push(tokio::spawn(async move {
            for n in 0..PER_TASK {
                let amount = t * 1000 + n;
                let counter = counter.clone();
                db.run(|tx| {
                    let counter = counter.clone();
                    async move { tx.add(&counter, amount.to_le_bytes()) }
                })
                .await
                .expect("add");
            }
        }));
    }
    for t in tasks {
        t.await.expect("adder");
    }
    let want: u64 = (0..TASKS)
        .flat_map(|t| (0..PER_TASK).map(move |n| t * 1000 + n))
        .sum();
    let got = db
        .run(|tx| {
            let counter = counter.clone();
            async move { tx.get(&counter).await }
        })
        .await
        .expect("read the counter")
        .expect("the counter exists");
    assert_eq!(got[..], want.to_le_bytes());
}

const OPS: [AtomicOp; 9] = AtomicOp::ALL;

/// A random operand: usually 1–4 bytes from a small alphabet so comparisons tie sometimes.
fn operand(rng: &mut StdRng) -> Vec<u8> {
    let len = rng.random_range(0..=4);
    (0..len)
        .map(|_| [0u8, 1, 7, 0x80, 0xff][rng.random_range(0..5)])
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atomic_ops_applied_by_storage_match_local_folding() {
    let (_cluster, db) = cluster(2).await;
    let mut rng = StdRng::seed_from_u64(7);
    // One key per (shard, slot); the model is what the client computes locally.
    let keys: Vec<Bytes> = (0..12u8)
        .map(|i| key(i * 21, &format!("atom{i}")))
        .collect();
    let mut model: Vec<Option<Vec<u8>>> = vec![None; keys.len()];
    for round in 0..30 {
        // Each round: per touched key, an optional starting write and 1–3 operations, in one
        // transaction. The RYW value read before the commit must equal the stored one after.
        let tx = db.create_transaction();
        let mut touched = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            if !rng.random_bool(0.5) {
                continue;
            }
            let mut value = model[i].clone();
            match rng.random_range(0..6) {
                0 => {
                    let v = operand(&mut rng);
                    tx.set(k, &v).unwrap();
                    value = Some(v);
                }
                1 => {
                    tx.clear(k).unwrap();
                    value = None;
                }
                _ => {}
            }
            for _ in 0..rng.random_range(1..=3) {
                let op = OPS[rng.random_range(0..OPS.len())];
                let arg = if op == AtomicOp::CompareAndClear && rng.random_bool(0.5) {
                    value.clone().unwrap_or_default()
                } else {
                    operand(&mut rng)
                };
                tx.atomic_op(op, k, &arg).unwrap();
                value = op.apply(value.as_deref(), &arg);
            }
            let seen = tx.snapshot().get(k).await.unwrap();
            assert_eq!(
                seen.as_deref(),
                value.as_deref(),
                "round {round}: read-your-writes of key {i}"
            );
            model[i] = value;
            touched.push(i);
        }
        tx.commit().await.unwrap();
        let check = db.create_transaction();
        for i in touched {
            let stored = check.get(&keys[i]).await.unwrap();
            assert_eq!(
                stored.as_deref(),
                model[i].as_deref(),
                "round {round}: key {i} as applied by the storage server"
            );
        }
    }
}
