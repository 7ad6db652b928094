//! Versionstamps: writes holding the commit's 10-byte stamp (commit version + order in its
//! batch), filled in by the coordinator, and the stamp a commit got.

use bytes::Bytes;
use ferrisdb_core::{Error, Result, Versionstamp, limits, versionstamp};

use super::{Transaction, point_write_size};
use crate::key_space::checked_key;

/// The error of a read of `key` after this transaction set it with a versionstamped value.
pub(super) fn unreadable_error(key: &[u8]) -> Error {
    Error::AccessedUnreadable(format!(
        "\"{}\" was set with a versionstamped value in this transaction; its value exists \
         only once the transaction commits (read it in a later transaction)",
        ferrisdb_core::keys::escape(key)
    ))
}

impl Transaction {
    /// The transaction's versionstamp once it committed: its commit version and its order in
    /// the coordinator's commit batch, unique across the cluster and ordered like the commits.
    /// It is what the placeholders of [`set_versionstamped_key`](Self::set_versionstamped_key)
    /// and [`set_versionstamped_value`](Self::set_versionstamped_value) became. `None` before
    /// the commit and for read-only transactions.
    pub fn versionstamp(&self) -> Option<Versionstamp> {
        self.lock().receipt.map(|r| r.stamp)
    }

    /// True when the commit was answered from the transaction's idempotency id: an earlier
    /// attempt, whose result was unknown, had committed, and this attempt's writes were not
    /// applied. [`committed_version`](Self::committed_version) and
    /// [`versionstamp`](Self::versionstamp) are then that attempt's.
    pub fn already_committed(&self) -> bool {
        self.lock().receipt.is_some_and(|r| r.already_committed)
    }

    /// Sets a key that contains the transaction's versionstamp: `key` holds a 10-byte
    /// placeholder and ends with the placeholder's offset as 4 little-endian bytes
    /// (FoundationDB's encoding; [`crate::tuple::pack_with_versionstamp`] builds such keys).
    /// At commit the placeholder becomes the [`versionstamp`](Self::versionstamp) and the
    /// offset is dropped, so keys written this way sort in commit order (a queue, an event
    /// log). The key is not visible to this transaction's reads; its write conflict range
    /// covers every key the stamp could give.
    pub fn set_versionstamped_key(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<()> {
        let (key, value) = (key.as_ref(), value.as_ref());
        self.write(|st| {
            let range = versionstamp::key_range(key)?;
            // The key as stored: the system-key rule and size limit apply to it.
            checked_key(
                &key[..key.len() - versionstamp::OFFSET_LEN],
                st.access_system_keys,
            )?;
            limits::check_value(value)?;
            st.admit(key.len() + value.len() + range.begin.len() + range.end.len())?;
            st.writes.set_versionstamped_key(
                Bytes::copy_from_slice(key),
                Bytes::copy_from_slice(value),
                range,
            );
            Ok(())
        })
    }

    /// Sets `key` to a value that contains the transaction's versionstamp: `value` holds a
    /// 10-byte placeholder and ends with its offset as 4 little-endian bytes. Reading `key`
    /// in this transaction afterwards fails with `AccessedUnreadable` (the value exists only
    /// once committed), until the key is written again.
    pub fn set_versionstamped_value(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<()> {
        let (key, value) = (key.as_ref(), value.as_ref());
        self.write(|st| {
            let key = checked_key(key, st.access_system_keys)?;
            versionstamp::placeholder_offset(value, "value")?;
            limits::check_value(&value[..value.len() - versionstamp::OFFSET_LEN])?;
            st.admit(point_write_size(&key, value.len()))?;
            st.writes
                .set_versionstamped_value(key, Bytes::copy_from_slice(value));
            Ok(())
        })
    }
}
