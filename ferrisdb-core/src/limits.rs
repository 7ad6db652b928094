//! Size limits, the same as FoundationDB's. Clients check them before any network call and
//! servers check them again on every request.

use crate::error::Error;

/// Largest key, in bytes.
pub const MAX_KEY_BYTES: usize = 10_000;
/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 100_000;
/// Largest transaction: bytes of mutations plus conflict ranges.
pub const MAX_TRANSACTION_BYTES: usize = 10_000_000;

/// Longest idempotency id, in bytes (FoundationDB's limit).
pub const MAX_IDEMPOTENCY_ID_BYTES: usize = 255;

/// Checks an idempotency id: 1 to [`MAX_IDEMPOTENCY_ID_BYTES`] bytes.
pub fn check_idempotency_id(id: &[u8]) -> Result<(), Error> {
    if id.is_empty() || id.len() > MAX_IDEMPOTENCY_ID_BYTES {
        return Err(Error::InvalidArgument(format!(
            "an idempotency id must be 1 to {MAX_IDEMPOTENCY_ID_BYTES} bytes, got {}",
            id.len()
        )));
    }
    Ok(())
}

/// Most transactions in one `ferrisdb.v1.TransactionCoordinator/CommitBatch` request.
pub const MAX_COMMIT_BATCH: usize = 1024;

/// Most reads in one `ferrisdb.v1.StorageServer/GetBatch` request.
pub const MAX_READ_BATCH: usize = 1024;

/// Most compares, and most operations per branch, in one `ferrisdb.v1.KV/Txn` request.
pub const MAX_TXN_OPS: usize = 10_000;

/// Largest row limit of one range read (`limit` of `KV/Range` and `StorageServer/GetRange`).
pub const MAX_RANGE_LIMIT: u64 = u32::MAX as u64;

/// Checks a range read's row limit from the wire: 0 means no limit (`None`); a limit above
/// [`MAX_RANGE_LIMIT`] is refused rather than truncated into a different one.
pub fn check_range_limit(limit: u64) -> Result<Option<usize>, Error> {
    if limit > MAX_RANGE_LIMIT {
        return Err(Error::InvalidArgument(format!(
            "range limit {limit} is too large: at most {MAX_RANGE_LIMIT} (0 means no limit)"
        )));
    }
    Ok((limit > 0).then(|| usize::try_from(limit).unwrap_or(usize::MAX)))
}

/// Checks the number of requests in a batch call (`what` names them, e.g. "reads") against
/// its limit.
pub fn check_batch_len(len: usize, max: usize, what: &str) -> Result<(), Error> {
    if len > max {
        return Err(Error::InvalidArgument(format!(
            "a batch holds at most {max} {what}, got {len}"
        )));
    }
    Ok(())
}

/// Checks a key against [`MAX_KEY_BYTES`].
pub fn check_key(key: &[u8]) -> Result<(), Error> {
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::KeyTooLarge {
            len: key.len(),
            max: MAX_KEY_BYTES,
        });
    }
    Ok(())
}

/// Checks the exclusive end of a range: one byte longer than [`MAX_KEY_BYTES`] is allowed, so
/// `key_after(k)` of the longest key `k` (the end of the range holding only `k`, as in a
/// conflict range) is a valid end.
pub fn check_range_end(end: &[u8]) -> Result<(), Error> {
    if end.len() > MAX_KEY_BYTES + 1 {
        return Err(Error::KeyTooLarge {
            len: end.len(),
            max: MAX_KEY_BYTES + 1,
        });
    }
    Ok(())
}

/// Checks the inclusive begin of a range read. As for an end, one byte longer than
/// [`MAX_KEY_BYTES`] is allowed: a read that continues just past the longest key `k` begins at
/// `key_after(k)`.
pub fn check_range_begin(begin: &[u8]) -> Result<(), Error> {
    check_range_end(begin)
}

/// Checks a value against [`MAX_VALUE_BYTES`].
pub fn check_value(value: &[u8]) -> Result<(), Error> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(Error::ValueTooLarge {
            len: value.len(),
            max: MAX_VALUE_BYTES,
        });
    }
    Ok(())
}

/// Checks a transaction's total size against [`MAX_TRANSACTION_BYTES`].
pub fn check_transaction_size(bytes: usize) -> Result<(), Error> {
    if bytes > MAX_TRANSACTION_BYTES {
        return Err(Error::TransactionTooLarge {
            len: bytes,
            max: MAX_TRANSACTION_BYTES,
        });
    }
    Ok(())
}

/// Checks the length of one list of a `KV/Txn` request (`what` names it) against
/// [`MAX_TXN_OPS`].
pub fn check_txn_ops(what: &str, count: usize) -> Result<(), Error> {
    if count > MAX_TXN_OPS {
        return Err(Error::InvalidArgument(format!(
            "too many {what}: {count} (limit {MAX_TXN_OPS})"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_accept_the_maximum_and_reject_one_more() {
        assert!(check_key(&vec![0; MAX_KEY_BYTES]).is_ok());
        assert!(matches!(
            check_key(&vec![0; MAX_KEY_BYTES + 1]),
            Err(Error::KeyTooLarge {
                len: 10_001,
                max: 10_000
            })
        ));
        assert!(check_range_end(&vec![0; MAX_KEY_BYTES + 1]).is_ok());
        assert!(check_range_end(&vec![0; MAX_KEY_BYTES + 2]).is_err());
        assert!(check_value(&vec![0; MAX_VALUE_BYTES]).is_ok());
        assert!(check_value(&vec![0; MAX_VALUE_BYTES + 1]).is_err());
        assert!(check_transaction_size(MAX_TRANSACTION_BYTES).is_ok());
        assert!(check_transaction_size(MAX_TRANSACTION_BYTES + 1).is_err());
        assert_eq!(check_range_limit(0).unwrap(), None);
        assert_eq!(check_range_limit(7).unwrap(), Some(7));
        assert_eq!(
            check_range_limit(MAX_RANGE_LIMIT).unwrap(),
            Some(u32::MAX as usize)
        );
        let err = check_range_limit(MAX_RANGE_LIMIT + 1).unwrap_err();
        assert!(err.to_string().contains("4294967296"), "{err}");
        assert!(check_txn_ops("compares", MAX_TXN_OPS).is_ok());
        let err = check_txn_ops("compares", MAX_TXN_OPS + 1).unwrap_err();
        assert!(
            err.to_string().contains("too many compares: 10001"),
            "{err}"
        );
    }
}
