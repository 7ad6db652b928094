//! Shared vocabulary of FerrisDB.
//!
//! Every other crate speaks in these types: [`Version`] (the MVCC timestamp),
//! [`KeyRange`] (a half-open range of keys), [`Mutation`] (one write of a transaction),
//! the size [`limits`], the [`ShardMap`] (which storage servers hold which keys), and the [`Error`] type whose variants mirror FoundationDB's error codes.
//! This crate does no I/O and owns no state.

#![deny(missing_docs)]

pub mod buggify;
pub mod commit;
#[doc(hidden)]
pub mod doc_hex;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod keys;
pub mod limits;
pub mod mutation;
pub mod random;
pub mod shard_map;
pub mod system_keys;
pub mod version;
pub mod versionstamp;

pub use commit::{Commit, Committed, IdempotencyId, VersionedMutations};
pub use error::{Error, ErrorCode, Result};
pub use keys::{KeyRange, key_after};
pub use mutation::{AtomicOp, Mutation};
pub use shard_map::{Shard, ShardMap};
pub use version::Version;
pub use versionstamp::Versionstamp;
