//! FerrisDB's server roles. Each role runs as its own binary and talks gRPC:
//! the cluster controller, the transaction coordinator and the storage server (see DESIGN.md).

pub mod grpc;
