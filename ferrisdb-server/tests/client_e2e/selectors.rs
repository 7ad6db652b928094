//! Key selectors against a real cluster: resolution across shard boundaries, with the
//! transaction's own writes, and range reads between selectors and over a prefix.

use bytes::Bytes;
use ferrisdb_client::{KeySelector, RangeOptions, prefix_range};

use super::{cluster, key};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selectors_resolve_across_shards_and_see_local_writes() {
    let (_cluster, db) = cluster(2).await;
    // One key in each shard (split at 0x55 and 0xaa).
    let (a, b, c) = (key(0x10, "sel"), key(0x60, "sel"), key(0xb0, "sel"));
    let keys = [a.clone(), b.clone(), c.clone()];
    db.run(|tx| {
        let keys = keys.clone();
        async move {
            for k in &keys {
                tx.set(k, "v")?;
            }
            Ok(())
        }
    })
    .await
    .expect("write");
    let (next_of_a, prev_of_c, third, local) = db
        .run(|tx| {
            let (a, c) = (a.clone(), c.clone());
            async move {
                let next_of_a = tx.get_key(&KeySelector::first_greater_than(&a)).await?;
                let prev_of_c = tx.get_key(&KeySelector::last_less_than(&c)).await?;
                let third = tx
                    .get_key(&KeySelector::first_greater_or_equal(&a).offset_by(2))
                    .await?;
                // A key written by this transaction between b and c is found at once (and
                // commits with it).
                tx.set(key(0xa0, "mine"), "x")?;
                let local = tx.get_key(&KeySelector::last_less_than(&c)).await?;
                Ok((next_of_a, prev_of_c, third, local))
            }
        })
        .await
        .expect("resolve");
    assert_eq!(
        (next_of_a, prev_of_c.clone(), third),
        (b.clone(), b.clone(), c.clone())
    );
    assert_eq!(local, key(0xa0, "mine"));

    let (between, prefixed) = db
        .run(|tx| {
            let (a, c) = (a.clone(), c.clone());
            async move {
                let between = tx
                    .get_range_selected(
                        &KeySelector::first_greater_than(&a),
                        &KeySelector::first_greater_or_equal(&c),
                        RangeOptions::default(),
                    )
                    .await?
                    .collect_vec()
                    .await?;
                let (begin, end) = prefix_range([0x60u8])?;
                let prefixed = tx
                    .get_range(begin, end, RangeOptions::default())
                    .collect_vec()
                    .await?;
                Ok((between, prefixed))
            }
        })
        .await
        .expect("ranges");
    let keys_of = |v: Vec<ferrisdb_client::KeyValue>| -> Vec<Bytes> {
        v.into_iter().map(|kv| kv.key).collect()
    };
    assert_eq!(keys_of(between), vec![b.clone(), key(0xa0, "mine")]);
    assert_eq!(keys_of(prefixed), vec![b]);
}
