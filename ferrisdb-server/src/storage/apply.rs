//! Turns the mutations of one committed version into one atomic engine batch.
//!
//! Mutations apply in order. Atomic operations read the value as it stands after the
//! earlier mutations of the same version (or in the engine, at the latest applied version),
//! exactly as FoundationDB's storage servers apply them. The result is one [`WriteBatch`]:
//! the version's range clears first, then the final value of every key it touched.

use std::collections::BTreeMap;

use bytes::Bytes;
use ferrisdb_core::{Error, KeyRange, Mutation};
use ferrisdb_storage::engine::{Engine, WriteBatch};

/// Builds the batch for one version's mutations (already clipped to this server's shards).
pub fn build_batch(engine: &Engine, mutations: &[Mutation]) -> Result<WriteBatch, Error> {
    // Final state per touched key: Some(value) = set, None = cleared.
    let mut points: BTreeMap<Bytes, Option<Bytes>> = BTreeMap::new();
    let mut cleared: Vec<KeyRange> = Vec::new();
    for m in mutations {
        match m {
            Mutation::Set { key, value } => {
                points.insert(key.clone(), Some(value.clone()));
            }
            Mutation::Clear { key } => {
                points.insert(key.clone(), None);
            }
            Mutation::ClearRange { begin, end } => {
                let range = KeyRange::new(begin.clone(), end.clone())?;
                points.retain(|k, _| !range.contains(k));
                cleared.push(range);
            }
            Mutation::Atomic { op, key, operand } => {
                let current = match points.get(key) {
                    Some(v) => v.clone(),
                    None if cleared.iter().any(|r| r.contains(key)) => None,
                    None => engine.get(key, u64::MAX)?,
                };
                let next = op.apply(current.as_deref(), operand).map(Bytes::from);
                points.insert(key.clone(), next);
            }
            Mutation::SetVersionstampedKey { .. } | Mutation::SetVersionstampedValue { .. } => {
                return Err(Error::Internal(
                    "a versionstamped set reached a storage server; the coordinator fills \
                     stamps in before logging"
                        .into(),
                ));
            }
        }
    }
    let mut batch = WriteBatch::default();
    for range in &cleared {
        batch.delete_range(&range.begin, &range.end);
    }
    for (key, value) in &points {
        match value {
            Some(v) => batch.put(key, v),
            None => batch.delete(key),
        }
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrisdb_core::AtomicOp;
    use ferrisdb_storage::engine::EngineOptions;

    fn engine() -> (tempfile::TempDir, std::sync::Arc<Engine>) {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path(), EngineOptions::default()).unwrap();
        (dir, engine)
    }

    fn set(k: &str, v: &[u8]) -> Mutation {
        Mutation::Set {
            key: Bytes::copy_from_slice(k.as_bytes()),
            value: Bytes::copy_from_slice(v),
        }
    }

    fn add(k: &str, n: u64) -> Mutation {
        Mutation::Atomic {
            op: AtomicOp::Add,
            key: Bytes::copy_from_slice(k.as_bytes()),
            operand: Bytes::copy_from_slice(&n.to_le_bytes()),
        }
    }

    #[test]
    fn atomic_ops_see_earlier_mutations_of_the_same_version_and_the_engine() {
        let (_dir, engine) = engine();
        let b = build_batch(&engine, &[set("c", &5u64.to_le_bytes())]).unwrap();
        engine.apply(1, &b).unwrap();
        let b = build_batch(&engine, &[add("c", 2), add("c", 3), add("new", 7)]).unwrap();
        engine.apply(2, &b).unwrap();
        assert_eq!(
            engine.get(b"c", 2).unwrap().unwrap().as_ref(),
            &10u64.to_le_bytes()
        );
        assert_eq!(
            engine.get(b"new", 2).unwrap().unwrap().as_ref(),
            &7u64.to_le_bytes()
        );
        assert_eq!(
            engine.get(b"c", 1).unwrap().unwrap().as_ref(),
            &5u64.to_le_bytes()
        );
    }

    #[test]
    fn clear_range_then_set_keeps_the_set_and_hides_the_rest() {
        let (_dir, engine) = engine();
        let b = build_batch(&engine, &[set("a", b"1"), set("b", b"2"), set("c", b"3")]).unwrap();
        engine.apply(1, &b).unwrap();
        let clear = Mutation::ClearRange {
            begin: "a".into(),
            end: "c".into(),
        };
        let b = build_batch(
            &engine,
            &[set("a", b"x"), clear, set("b", b"new"), add("a", 1)],
        )
        .unwrap();
        engine.apply(2, &b).unwrap();
        // "a" was cleared, then an add on a missing key yields the operand.
        assert_eq!(
            engine.get(b"a", 2).unwrap().unwrap().as_ref(),
            &1u64.to_le_bytes()
        );
        assert_eq!(engine.get(b"b", 2).unwrap().unwrap().as_ref(), b"new");
        assert_eq!(engine.get(b"c", 2).unwrap().unwrap().as_ref(), b"3");
        assert_eq!(engine.get(b"b", 1).unwrap().unwrap().as_ref(), b"2");
    }

    #[test]
    fn compare_and_clear_clears_only_on_match() {
        let (_dir, engine) = engine();
        engine
            .apply(
                1,
                &build_batch(&engine, &[set("k", b"v"), set("j", b"w")]).unwrap(),
            )
            .unwrap();
        let cac = |k: &str| Mutation::Atomic {
            op: AtomicOp::CompareAndClear,
            key: Bytes::copy_from_slice(k.as_bytes()),
            operand: Bytes::from_static(b"v"),
        };
        engine
            .apply(2, &build_batch(&engine, &[cac("k"), cac("j")]).unwrap())
            .unwrap();
        assert_eq!(engine.get(b"k", 2).unwrap(), None);
        assert_eq!(engine.get(b"j", 2).unwrap().unwrap().as_ref(), b"w");
    }
}
