//! The transaction coordinator role: read versions, the sequencer (commit versions), the
//! resolver (conflicts), the durable commit log and the commit pipeline that ties them
//! together, plus the `TransactionCoordinator` gRPC service. See `docs/commit-path.md`.
//!
//! Layers, innermost first: [`clock`] (the wall clock, shared with the controller), [`sequencer`], and [`resolver`] (pure logic),
//! [`commit`] (the batching pipeline, which also stamps versionstamps), [`replicated_log`]
//! (the pipeline's log in a cluster: the generation's log servers), [`idempotency`] (recognising retried commits), [`handle`] (the
//! in-process API), [`service`] (gRPC), [`worker`] (controller membership) and [`server`].
//! The public APIs clients call live in [`crate::gateway`].

pub use crate::clock;
pub mod commit;
pub mod handle;
pub mod idempotency;
pub mod replicated_log;
pub mod resolver;
pub mod sequencer;
pub mod server;
pub mod service;
pub mod worker;

pub use clock::{Clock, ManualClock, SystemClock};
pub use handle::{
    ClusterCoordinatorOptions, Coordinator, CoordinatorHandle, CoordinatorOptions, GenerationStart,
    MutationFeed, Pull, Pulled,
};
pub use resolver::{ResolveError, Resolver, ResolverConfig, TxnConflicts};
pub use sequencer::Sequencer;
pub use server::{CoordinatorConfig, serve, serve_on};
pub use service::CoordinatorService;
