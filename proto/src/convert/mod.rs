//! Conversions between the generated `ferrisdb.v1` messages and `ferrisdb-core` types.
//!
//! This is the only place that maps wire messages to domain types. Every conversion from the
//! wire validates what it receives (key and value size limits, inverted ranges, unknown enum
//! values, missing fields, transaction size) and reports problems as [`ferrisdb_core::Error`],
//! which [`crate::status`] turns into a gRPC status. Conversions to the wire are infallible.

mod commit;
mod kv;
mod mutation;
mod range;
mod shard_map;

pub use commit::idempotency_from_proto;
pub use kv::{CompareTarget, KvCompare, KvOp, KvTxn, RangeQuery, kv_key, kv_range, kv_value};
pub use range::{ranges_from_proto, ranges_to_proto};

use ferrisdb_core::Error;

/// Unwraps an optional sub-message, or names the missing field in an `InvalidArgument`.
pub fn required<T>(field: Option<T>, name: &str) -> Result<T, Error> {
    field.ok_or_else(|| Error::InvalidArgument(format!("missing required field `{name}`")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_names_the_missing_field() {
        let err = required::<u8>(None, "range").unwrap_err();
        assert!(err.to_string().contains("`range`"), "{err}");
        assert_eq!(required(Some(3), "x").unwrap(), 3);
    }
}
