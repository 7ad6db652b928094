//! [`Subspace`]: a key prefix under which an application keeps packed tuples.

use ferrisdb_core::Error;

use super::{Element, pack_into, unpack};

/// Keys that start with a fixed prefix, followed by a packed tuple (FoundationDB's
/// subspace). Nest them with [`Subspace::subspace`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Subspace {
    prefix: Vec<u8>,
}

impl Subspace {
    /// The subspace of keys starting with the raw bytes `prefix`.
    pub fn from_bytes(prefix: impl Into<Vec<u8>>) -> Self {
        Subspace {
            prefix: prefix.into(),
        }
    }

    /// The subspace of keys starting with the packed `tuple`.
    pub fn new(tuple: &[Element]) -> Result<Self, Error> {
        Self::from_bytes(Vec::new()).subspace(tuple)
    }

    /// The prefix.
    pub fn bytes(&self) -> &[u8] {
        &self.prefix
    }

    /// A subspace inside this one: this prefix followed by the packed `tuple`.
    pub fn subspace(&self, tuple: &[Element]) -> Result<Subspace, Error> {
        Ok(Subspace {
            prefix: self.pack(tuple)?,
        })
    }

    /// The key for `tuple`: the prefix followed by the packed tuple.
    pub fn pack(&self, tuple: &[Element]) -> Result<Vec<u8>, Error> {
        let mut key = self.prefix.clone();
        pack_into(tuple, &mut key)?;
        Ok(key)
    }

    /// The tuple of a key in this subspace; an error if the key has another prefix or what
    /// follows is not a packed tuple.
    pub fn unpack(&self, key: &[u8]) -> Result<Vec<Element>, Error> {
        let rest = key.strip_prefix(self.prefix.as_slice()).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "key {} is not in the subspace {}",
                ferrisdb_core::keys::escape(key),
                ferrisdb_core::keys::escape(&self.prefix)
            ))
        })?;
        unpack(rest)
    }

    /// Whether `key` starts with the prefix.
    pub fn contains(&self, key: &[u8]) -> bool {
        key.starts_with(&self.prefix)
    }

    /// `[prefix + 00, prefix + ff)`: every key of a packed tuple in this subspace (not the
    /// bare prefix), for a range read or clear.
    pub fn range(&self) -> (Vec<u8>, Vec<u8>) {
        let with = |b: u8| {
            let mut k = self.prefix.clone();
            k.push(b);
            k
        };
        (with(0x00), with(0xff))
    }
}
