//! Atomic operations: read-modify-writes applied by the storage servers at commit, on the
//! value current then, adding no read conflict (see `ferrisdb_core::AtomicOp` for each one's
//! semantics).

use bytes::Bytes;
use ferrisdb_core::{AtomicOp, Error, Result, limits};

use super::{Transaction, point_write_size};
use crate::key_space::checked_key;

impl Transaction {
    /// Applies an atomic operation to `key` at commit, on the value current then. Adds no read
    /// conflict; reading the key in this transaction shows the operation applied.
    pub fn atomic_op(
        &self,
        op: AtomicOp,
        key: impl AsRef<[u8]>,
        operand: impl AsRef<[u8]>,
    ) -> Result<()> {
        let (key, operand) = (key.as_ref(), operand.as_ref());
        self.write(|st| {
            let key = checked_key(key, st.access_system_keys)?;
            limits::check_value(operand)?;
            if st.writes.unreadable(&key) {
                return Err(Error::InvalidArgument(format!(
                    "an atomic operation on \"{}\", which this transaction set with a \
                     versionstamped value, is not supported: set the key's final value instead",
                    ferrisdb_core::keys::escape(&key)
                )));
            }
            st.admit(point_write_size(&key, operand.len()))?;
            st.writes.atomic(op, key, Bytes::copy_from_slice(operand));
            Ok(())
        })
    }

    /// Adds `operand` to the little-endian integer at `key` ([`AtomicOp::Add`]).
    pub fn add(&self, key: impl AsRef<[u8]>, operand: impl AsRef<[u8]>) -> Result<()> {
        self.atomic_op(AtomicOp::Add, key, operand)
    }

    /// Bitwise AND into `key` ([`AtomicOp::BitAnd`]).
    pub fn bit_and(&self, key: impl AsRef<[u8]>, operand: impl AsRef<[u8]>) -> Result<()> {
        self.atomic_op(AtomicOp::BitAnd, key, operand)
    }

    /// Bitwise OR into `key` ([`AtomicOp::BitOr`]).
    pub fn bit_or(&self, key: impl AsRef<[u8]>, operand: impl AsRef<[u8]>) -> Result<()> {
        self.atomic_op(AtomicOp::BitOr, key, operand)
    }

    /// Bitwise XOR into `key` ([`AtomicOp::BitXor`]).
    pub fn bit_xor(&self, key: impl AsRef<[u8]>, operand: impl AsRef<[u8]>) -> Result<()> {
        self.atomic_op(AtomicOp::BitXor, key, operand)
    }

    /// Keeps the larger little-endian integer ([`AtomicOp::Max`]).
    pub fn max(&self, key: impl AsRef<[u8]>, operand: impl AsRef<[u8]>) -> Result<()> {
        self.atomic_op(AtomicOp::Max, key, operand)
    }

    /// Keeps the smaller little-endian integer ([`AtomicOp::Min`]).
    pub fn min(&self, key: impl AsRef<[u8]>, operand: impl AsRef<[u8]>) -> Result<()> {
        self.atomic_op(AtomicOp::Min, key, operand)
    }

    /// Keeps the lexicographically larger value ([`AtomicOp::ByteMax`]).
    pub fn byte_max(&self, key: impl AsRef<[u8]>, operand: impl AsRef<[u8]>) -> Result<()> {
        self.atomic_op(AtomicOp::ByteMax, key, operand)
    }

    /// Keeps the lexicographically smaller value ([`AtomicOp::ByteMin`]).
    pub fn byte_min(&self, key: impl AsRef<[u8]>, operand: impl AsRef<[u8]>) -> Result<()> {
        self.atomic_op(AtomicOp::ByteMin, key, operand)
    }

    /// Clears `key` if its value equals `operand` ([`AtomicOp::CompareAndClear`]).
    pub fn compare_and_clear(
        &self,
        key: impl AsRef<[u8]>,
        operand: impl AsRef<[u8]>,
    ) -> Result<()> {
        self.atomic_op(AtomicOp::CompareAndClear, key, operand)
    }
}
