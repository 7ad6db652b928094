//! The shard map: which storage servers hold which key ranges. The type and its bootstrap
//! rule live in `ferrisdb_core::shard_map` (shared with the client); this module re-exports
//! them under the controller's module tree.

pub use ferrisdb_core::shard_map::{MAX_BOOTSTRAP_SHARDS, Shard, ShardMap, check_layout};
