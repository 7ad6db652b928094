//! Key selectors: keys named by their position relative to another key, as in FoundationDB.
//!
//! A [`KeySelector`] is `(key, or_equal, offset)`: take the last key `< key` (`<= key` when
//! `or_equal`), then move `offset` keys forward (a negative offset moves backward). The four
//! usual ones have constructors: [`KeySelector::first_greater_or_equal`] `(k, false, 1)`,
//! [`first_greater_than`](KeySelector::first_greater_than) `(k, true, 1)`,
//! [`last_less_than`](KeySelector::last_less_than) `(k, false, 0)` and
//! [`last_less_or_equal`](KeySelector::last_less_or_equal) `(k, true, 0)`.
//! [`Transaction::get_key`] resolves one with a bounded range read at the transaction's read
//! version (so it sees the transaction's own writes and adds the read conflict range that read
//! adds). Past the last key it resolves to the end of the key space the transaction may use
//! (`\xff`, or `\xff\xff` with system-key access); before the first, to the empty key.
//! [`prefix_range`] gives the range of every key starting with a prefix.

use bytes::Bytes;
use ferrisdb_core::{Error, Result, key_after};

use crate::key_space::SYSTEM_KEYS_BEGIN;
use crate::{RangeOptions, Transaction};

/// A key named by its position relative to `key` (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeySelector {
    /// The reference key.
    pub key: Bytes,
    /// Whether `key` itself counts as "before" (`<=` instead of `<`).
    pub or_equal: bool,
    /// Keys to move forward from the last key before the reference (negative: backward).
    pub offset: i32,
}

impl KeySelector {
    /// `(key, or_equal, offset)`.
    pub fn new(key: impl AsRef<[u8]>, or_equal: bool, offset: i32) -> Self {
        KeySelector {
            key: Bytes::copy_from_slice(key.as_ref()),
            or_equal,
            offset,
        }
    }

    /// The first key `>= key`.
    pub fn first_greater_or_equal(key: impl AsRef<[u8]>) -> Self {
        Self::new(key, false, 1)
    }

    /// The first key `> key`.
    pub fn first_greater_than(key: impl AsRef<[u8]>) -> Self {
        Self::new(key, true, 1)
    }

    /// The last key `< key`.
    pub fn last_less_than(key: impl AsRef<[u8]>) -> Self {
        Self::new(key, false, 0)
    }

    /// The last key `<= key`.
    pub fn last_less_or_equal(key: impl AsRef<[u8]>) -> Self {
        Self::new(key, true, 0)
    }

    /// The same selector moved `by` more keys.
    pub fn offset_by(mut self, by: i32) -> Self {
        self.offset = self.offset.saturating_add(by);
        self
    }
}

/// `[prefix, the first key after every key starting with prefix)`: the range of keys that
/// start with `prefix`. Fails for an empty prefix or one of only `\xff` bytes (no key follows
/// all of them).
pub fn prefix_range(prefix: impl AsRef<[u8]>) -> Result<(Vec<u8>, Vec<u8>)> {
    let prefix = prefix.as_ref();
    let stem_len = prefix.iter().rposition(|&b| b != 0xff).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "no key range holds exactly the keys starting with \"{}\": it is empty or only \\xff bytes",
            ferrisdb_core::keys::escape(prefix)
        ))
    })?;
    let mut end = prefix[..=stem_len].to_vec();
    end[stem_len] += 1;
    Ok((prefix.to_vec(), end))
}

impl Transaction {
    /// The keys from the one `begin` selects (included) to the one `end` selects (excluded),
    /// read as [`get_range`](Transaction::get_range) reads; empty when `end` resolves at or
    /// before `begin`.
    pub async fn get_range_selected(
        &self,
        begin: &KeySelector,
        end: &KeySelector,
        options: RangeOptions,
    ) -> Result<crate::RangeStream> {
        let begin = self.get_key(begin).await?;
        let end = self.get_key(end).await?;
        let end = if end <= begin { begin.clone() } else { end };
        Ok(self.get_range(begin, end, options))
    }

    /// Resolves `selector` to a key at the transaction's read version, seeing its own writes
    /// (see the module docs for the ends of the key space).
    pub async fn get_key(&self, selector: &KeySelector) -> Result<Bytes> {
        let system = self.system_keys();
        let key = &selector.key;
        if selector.offset >= 1 {
            // Forward: keys from `key` on (`key` itself skipped when it counts as before).
            let wanted = usize::try_from(selector.offset).unwrap_or(usize::MAX);
            let limit = wanted.saturating_add(usize::from(selector.or_equal));
            let pairs = self
                .get_range(key, b"", RangeOptions::default().limit(limit))
                .collect_vec()
                .await?;
            let after: Vec<&Bytes> = pairs
                .iter()
                .map(|kv| &kv.key)
                .filter(|k| !(selector.or_equal && *k == key))
                .collect();
            Ok(after.get(wanted - 1).map_or_else(
                || {
                    if system {
                        Bytes::from_static(b"\xff\xff")
                    } else {
                        Bytes::from_static(SYSTEM_KEYS_BEGIN)
                    }
                },
                |k| (*k).clone(),
            ))
        } else {
            // Backward: keys before `key` (or up to it), last first.
            let wanted = usize::try_from(1i64 - i64::from(selector.offset)).unwrap_or(usize::MAX);
            let end = if selector.or_equal {
                key_after(key)
            } else {
                key.to_vec()
            };
            if end.is_empty() {
                return Ok(Bytes::new());
            }
            let pairs = self
                .get_range(b"", &end, RangeOptions::default().limit(wanted).reverse())
                .collect_vec()
                .await?;
            Ok(pairs
                .get(wanted - 1)
                .map_or_else(Bytes::new, |kv| kv.key.clone()))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::DatabaseOptions;
    use crate::testing::MemBackend;

    fn db(keys: &[&str]) -> crate::Database {
        let data: BTreeMap<Bytes, Bytes> = keys
            .iter()
            .map(|k| {
                (
                    Bytes::copy_from_slice(k.as_bytes()),
                    Bytes::from_static(b"v"),
                )
            })
            .collect();
        MemBackend::new(data, 3).database(DatabaseOptions::default())
    }

    async fn resolve(tx: &Transaction, s: KeySelector) -> String {
        String::from_utf8_lossy(&tx.get_key(&s).await.unwrap()).into_owned()
    }

    #[tokio::test]
    async fn the_four_selectors_and_offsets_resolve_as_in_foundationdb() {
        let db = db(&["b", "d", "f", "h"]);
        let tx = db.create_transaction();
        type S = KeySelector;
        for (selector, want) in [
            (S::first_greater_or_equal("d"), "d"),
            (S::first_greater_or_equal("c"), "d"),
            (S::first_greater_than("d"), "f"),
            (S::first_greater_than("c"), "d"),
            (S::last_less_than("d"), "b"),
            (S::last_less_than("e"), "d"),
            (S::last_less_or_equal("d"), "d"),
            (S::last_less_or_equal("c"), "b"),
            (S::first_greater_or_equal("b").offset_by(2), "f"),
            (S::last_less_or_equal("h").offset_by(-2), "d"),
            (S::first_greater_or_equal("a"), "b"),
            (S::last_less_than("b"), ""),
            (S::last_less_or_equal("h").offset_by(-9), ""),
            (S::first_greater_than("h"), "\u{fffd}"),
            (S::first_greater_or_equal("b").offset_by(9), "\u{fffd}"),
        ] {
            assert_eq!(resolve(&tx, selector.clone()).await, want, "{selector:?}");
        }
        // Past the end: the end of the user key space, \xff.
        let end = tx.get_key(&S::first_greater_than("h")).await.unwrap();
        assert_eq!(&end[..], b"\xff");
    }

    #[tokio::test]
    async fn selectors_see_the_transactions_own_writes() {
        let db = db(&["b", "d"]);
        let tx = db.create_transaction();
        tx.set("c", "new").unwrap();
        tx.clear("d").unwrap();
        let s = |k| KeySelector::first_greater_than(k);
        assert_eq!(resolve(&tx, s("b")).await, "c");
        assert_eq!(resolve(&tx, s("c")).await, "\u{fffd}", "d is cleared");
        assert_eq!(resolve(&tx, KeySelector::last_less_than("z")).await, "c");
    }

    #[tokio::test]
    async fn a_selector_on_a_longest_key_resolves_without_a_too_long_range() {
        let long = "k".repeat(ferrisdb_core::limits::MAX_KEY_BYTES);
        let db = db(&[&long, "z"]);
        let tx = db.create_transaction();
        assert_eq!(
            resolve(&tx, KeySelector::first_greater_than(&long)).await,
            "z"
        );
        assert_eq!(
            resolve(&tx, KeySelector::last_less_or_equal(&long)).await,
            long
        );
    }

    #[tokio::test]
    async fn ranges_between_selectors() {
        let db = db(&["b", "d", "f", "h"]);
        let tx = db.create_transaction();
        let between = |begin: KeySelector, end: KeySelector| {
            let tx = tx.clone();
            async move {
                let pairs = tx
                    .get_range_selected(&begin, &end, RangeOptions::default())
                    .await
                    .unwrap()
                    .collect_vec()
                    .await
                    .unwrap();
                pairs.into_iter().map(|kv| kv.key).collect::<Vec<Bytes>>()
            }
        };
        let got = between(
            KeySelector::first_greater_than("b"),
            KeySelector::first_greater_or_equal("h"),
        )
        .await;
        assert_eq!(got, vec![Bytes::from("d"), Bytes::from("f")]);
        let none = between(
            KeySelector::first_greater_or_equal("f"),
            KeySelector::last_less_than("f"),
        )
        .await;
        assert!(none.is_empty());
    }

    #[test]
    fn prefix_ranges_end_after_every_key_with_the_prefix() {
        assert_eq!(
            prefix_range(b"ab").unwrap(),
            (b"ab".to_vec(), b"ac".to_vec())
        );
        assert_eq!(
            prefix_range(b"a\xff\xff").unwrap(),
            (b"a\xff\xff".to_vec(), b"b".to_vec())
        );
        assert!(prefix_range(b"").is_err());
        assert!(prefix_range(b"\xff\xff").is_err());
    }
}
