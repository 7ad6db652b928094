//! The tuple layer: order-preserving encoding of typed tuples into keys, byte for byte the
//! encoding of FoundationDB's tuple layer (`design/tuple.md` in apple/foundationdb), so keys
//! written by FoundationDB bindings and by FerrisDB read the same.
//!
//! [`pack`] turns a tuple (`&[Element]`) into bytes whose lexicographic order is the tuples'
//! order: element by element, a shorter tuple before any longer one it prefixes; within one
//! type, integers numerically, strings and byte strings by their bytes, floats by IEEE total
//! order, `false` before `true`, nested tuples recursively. Across types the type code decides
//! (null < bytes < string < nested < integers < float < double < false < true < UUID <
//! versionstamp). [`unpack`] reverses it and refuses any byte string that is not a canonical
//! encoding, naming the offset. [`Subspace`] prefixes keys and gives the range a prefix covers.
//!
//! Type codes written here: `0x00` null, `0x01` bytes, `0x02` string, `0x05` nested tuple,
//! `0x0c`-`0x1c` integers of up to 8 bytes (so any value in ±(2^64 - 1)), `0x20` float,
//! `0x21` double, `0x26`/`0x27` false/true, `0x30` UUID, `0x33` 96-bit versionstamp. The
//! reserved arbitrary-precision integer codes (`0x0b`, `0x1d`) and the others are refused.

mod decode;
mod encode;
mod subspace;

pub use decode::unpack;
pub use encode::{pack, pack_into, pack_with_versionstamp};
pub use subspace::Subspace;

/// Largest magnitude an [`Element::Int`] may have: integers are encoded in at most 8 bytes.
pub const MAX_INT_MAGNITUDE: i128 = u64::MAX as i128;

/// One element of a tuple.
#[derive(Debug, Clone, PartialEq)]
pub enum Element {
    /// The null value (`0x00`).
    Null,
    /// A byte string (`0x01`).
    Bytes(Vec<u8>),
    /// A Unicode string, encoded as UTF-8 (`0x02`).
    String(String),
    /// A nested tuple (`0x05`).
    Nested(Vec<Element>),
    /// An integer with magnitude at most [`MAX_INT_MAGNITUDE`] (`0x0c`-`0x1c`).
    Int(i128),
    /// A 32-bit IEEE float (`0x20`).
    Float(f32),
    /// A 64-bit IEEE float (`0x21`).
    Double(f64),
    /// A boolean (`0x26` false, `0x27` true).
    Bool(bool),
    /// An RFC 4122 UUID in network byte order (`0x30`).
    Uuid([u8; 16]),
    /// A 96-bit versionstamp (`0x33`): 10 bytes of commit version and batch order assigned
    /// by the database, then 2 bytes of order within the transaction.
    Versionstamp(Versionstamp),
}

/// A 96-bit versionstamp: the 10 bytes the database assigns at commit (8 bytes of commit
/// version, 2 of order in its batch, big-endian) and the 2 the writer chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Versionstamp {
    /// Commit version and batch order, big-endian.
    pub transaction: [u8; 10],
    /// Order within the transaction.
    pub user: u16,
}

impl Versionstamp {
    /// A versionstamp whose first 10 bytes the database fills in at commit (they are all
    /// `0xff` until then, as in FoundationDB): pack it with
    /// [`pack_with_versionstamp`]. `user` orders several stamps of one transaction.
    pub fn incomplete(user: u16) -> Self {
        Versionstamp {
            transaction: [0xff; 10],
            user,
        }
    }

    /// Whether the database has yet to fill this stamp in.
    pub fn is_incomplete(&self) -> bool {
        self.transaction == [0xff; 10]
    }

    /// The complete stamp a transaction committed with `stamp` gave this one.
    pub fn complete(self, stamp: ferrisdb_core::Versionstamp) -> Self {
        Versionstamp {
            transaction: stamp.bytes(),
            user: self.user,
        }
    }
}

impl From<&str> for Element {
    fn from(s: &str) -> Self {
        Element::String(s.to_owned())
    }
}

impl From<String> for Element {
    fn from(s: String) -> Self {
        Element::String(s)
    }
}

impl From<&[u8]> for Element {
    fn from(b: &[u8]) -> Self {
        Element::Bytes(b.to_vec())
    }
}

impl From<Vec<u8>> for Element {
    fn from(b: Vec<u8>) -> Self {
        Element::Bytes(b)
    }
}

impl From<i64> for Element {
    fn from(n: i64) -> Self {
        Element::Int(i128::from(n))
    }
}

impl From<u64> for Element {
    fn from(n: u64) -> Self {
        Element::Int(i128::from(n))
    }
}

impl From<bool> for Element {
    fn from(b: bool) -> Self {
        Element::Bool(b)
    }
}

impl From<f64> for Element {
    fn from(x: f64) -> Self {
        Element::Double(x)
    }
}

impl From<Vec<Element>> for Element {
    fn from(t: Vec<Element>) -> Self {
        Element::Nested(t)
    }
}

#[cfg(test)]
mod tests;
