//! The tuple layer against a real cluster: keys packed under subspaces come back from range
//! reads in tuple order (integers numerically, negatives first), across shard boundaries, and
//! a subspace's range clears exactly its keys.

use ferrisdb_client::RangeOptions;
use ferrisdb_client::tuple::{Element, Subspace};

use super::{cluster, read_range};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packed_keys_read_back_in_tuple_order_across_shards() {
    let (_cluster, db) = cluster(2).await;
    // Three subspaces whose raw prefixes fall in the three shards (split at 0x55 and 0xaa).
    let spaces: Vec<Subspace> = [0x10u8, 0x60, 0xb0]
        .map(|p| Subspace::from_bytes(vec![p]))
        .to_vec();
    let numbers: Vec<i64> = (-20..20).map(|i| i * 977 - i * i * 3_001).collect();
    for space in &spaces {
        let space = space.clone();
        let numbers = numbers.clone();
        db.run(|tx| {
            let (space, numbers) = (space.clone(), numbers.clone());
            async move {
                for n in numbers {
                    let key = space.pack(&[Element::from(n), "event".into()])?;
                    tx.set(key, n.to_be_bytes())?;
                }
                Ok(())
            }
        })
        .await
        .expect("write");
    }
    let mut sorted = numbers.clone();
    sorted.sort_unstable();
    for space in &spaces {
        let (begin, end) = space.range();
        let pairs = db
            .run(|tx| {
                let (begin, end) = (begin.clone(), end.clone());
                async move {
                    tx.get_range(begin, end, RangeOptions::default())
                        .collect_vec()
                        .await
                }
            })
            .await
            .expect("range read");
        let got: Vec<i64> = pairs
            .iter()
            .map(
                |kv| match space.unpack(&kv.key).expect("a packed key").as_slice() {
                    [Element::Int(n), Element::String(s)] if s == "event" => {
                        i64::try_from(*n).expect("an i64")
                    }
                    other => panic!("unexpected tuple {other:?}"),
                },
            )
            .collect();
        assert_eq!(got, sorted, "subspace {:?}", space.bytes());
    }

    // The last three of the middle subspace, newest first; then its range cleared.
    let (begin, end) = spaces[1].range();
    let last = read_range(
        &db,
        &begin,
        &end,
        RangeOptions::default().limit(3).reverse(),
    )
    .await;
    let last: Vec<Vec<Element>> = last
        .iter()
        .map(|(key, _)| spaces[1].unpack(key).expect("packed"))
        .collect();
    let want: Vec<Vec<Element>> = sorted
        .iter()
        .rev()
        .take(3)
        .map(|&n| vec![Element::from(n), "event".into()])
        .collect();
    assert_eq!(last, want);
    db.run(|tx| {
        let (begin, end) = (begin.clone(), end.clone());
        async move { tx.clear_range(begin, end) }
    })
    .await
    .expect("clear");
    for (i, space) in spaces.iter().enumerate() {
        let (begin, end) = space.range();
        let left = read_range(&db, &begin, &end, RangeOptions::default()).await;
        let want = if i == 1 { 0 } else { numbers.len() };
        assert_eq!(left.len(), want, "subspace {i}");
    }
}
