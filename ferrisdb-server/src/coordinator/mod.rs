//! The transaction coordinator role: read versions, the sequencer (commit versions), the
//! resolver (conflicts), the durable commit log and the commit pipeline that ties them
//! together, plus the `TransactionCoordinator` gRPC service. See `docs/commit-path.md`.
//!
//! Layers, innermost first: [`clock`], [`sequencer`], [`resolver`] and [`clip`] (pure logic),
//! [`log`] (the durable commit log on the WAL), [`commit`] (the batching pipeline), [`handle`]
//! (the in-process API), [`service`] (gRPC), [`worker`] (controller membership), [`kv`] (the
//! public `KV` service, a client of the cluster) and [`server`].

pub mod clip;
pub mod clock;
pub mod commit;
pub mod handle;
pub mod kv;
pub mod log;
pub mod resolver;
pub mod sequencer;
pub mod server;
pub mod service;
pub mod worker;

pub use clock::{Clock, ManualClock, SystemClock};
pub use handle::{Coordinator, CoordinatorHandle, CoordinatorOptions, MutationFeed, Pull, Pulled};
pub use resolver::{ResolveError, Resolver, ResolverConfig, TxnConflicts};
pub use sequencer::Sequencer;
pub use server::{CoordinatorConfig, serve, serve_on};
pub use service::CoordinatorService;
