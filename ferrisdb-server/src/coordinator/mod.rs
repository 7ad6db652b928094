//! The transaction coordinator role's building blocks.
//!
//! Phase 1 provides the pure, in-memory parts of the commit path: the [`Sequencer`] that hands
//! out versions and the [`Resolver`] that detects conflicts. The gRPC service, the commit
//! batching and the durable commit log come with the coordinator role.

pub mod clock;
pub mod resolver;
pub mod sequencer;

pub use clock::{Clock, ManualClock, SystemClock};
pub use resolver::{ResolveError, Resolver, ResolverConfig, TxnConflicts};
pub use sequencer::Sequencer;
