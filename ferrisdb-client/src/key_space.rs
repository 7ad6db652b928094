//! Which keys a transaction may touch: every key and range end within the size limits, and
//! nothing in the system key space — keys from `\xff` on, reserved for the database's own
//! metadata as in FoundationDB — unless the transaction has
//! [`TransactionOption::AccessSystemKeys`](crate::TransactionOption::AccessSystemKeys).
//!
//! Without the option a point key starting with `\xff` is refused, a range starting there is
//! refused, and a range end past `\xff` (the empty end, "to the end of the key space",
//! included) is clamped to `\xff`: a range read or clear of "everything" covers every user
//! key and no system key. The empty key is an ordinary key.

use bytes::Bytes;
use ferrisdb_core::{Error, KeyRange, Result, keys::escape, limits};

/// The first key of the system key space.
pub const SYSTEM_KEYS_BEGIN: &[u8] = b"\xff";

/// A checked point key: within the size limit, and not a system key unless `system`.
pub fn checked_key(key: &[u8], system: bool) -> Result<Bytes> {
    limits::check_key(key)?;
    if !system && key >= SYSTEM_KEYS_BEGIN {
        return Err(system_key_error(key));
    }
    Ok(Bytes::copy_from_slice(key))
}

/// A checked `[begin, end)` (empty end: to the end of the key space, which is `\xff` without
/// system-key access).
pub fn checked_range(begin: &[u8], end: &[u8], system: bool) -> Result<KeyRange> {
    limits::check_key(begin)?;
    limits::check_range_end(end)?;
    if system {
        return KeyRange::new(Bytes::copy_from_slice(begin), Bytes::copy_from_slice(end));
    }
    if begin >= SYSTEM_KEYS_BEGIN {
        return Err(system_key_error(begin));
    }
    let end = if end.is_empty() || end > SYSTEM_KEYS_BEGIN {
        SYSTEM_KEYS_BEGIN
    } else {
        end
    };
    KeyRange::new(Bytes::copy_from_slice(begin), Bytes::copy_from_slice(end))
}

fn system_key_error(key: &[u8]) -> Error {
    Error::InvalidArgument(format!(
        "key \"{}\" is in the system key space (keys from \\xff are reserved); set \
         TransactionOption::AccessSystemKeys to use it",
        escape(key)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_keys_need_the_option() {
        assert!(
            checked_key(b"", false).is_ok(),
            "the empty key is a user key"
        );
        assert!(checked_key(b"\xfe\xff", false).is_ok());
        let err = checked_key(b"\xff/config", false).unwrap_err();
        assert!(err.to_string().contains("\\xff/config"), "{err}");
        assert!(checked_key(b"\xff/config", true).is_ok());
    }

    #[test]
    fn ranges_stop_at_the_system_key_space_without_the_option() {
        let all = checked_range(b"", b"", false).unwrap();
        assert_eq!(
            (&all.begin[..], &all.end[..]),
            (&b""[..], SYSTEM_KEYS_BEGIN)
        );
        let past = checked_range(b"a", b"\xff\x01", false).unwrap();
        assert_eq!(&past.end[..], SYSTEM_KEYS_BEGIN);
        let inside = checked_range(b"a", b"b", false).unwrap();
        assert_eq!(&inside.end[..], b"b");
        assert!(checked_range(b"\xff", b"", false).is_err());
        let system = checked_range(b"", b"", true).unwrap();
        assert!(
            system.end.is_empty(),
            "with the option, empty still means the very end"
        );
        assert!(checked_range(b"z", b"a", false).is_err(), "inverted");
    }
}
