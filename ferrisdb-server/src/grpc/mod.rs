//! How every FerrisDB process serves gRPC: besides its own role, `grpc.health.v1` and gRPC
//! reflection (both `v1` and `v1alpha`, since common grpcurl builds only speak `v1alpha`);
//! connections within a budget ([`connections`]); `UNIMPLEMENTED` answers that name the
//! method ([`unknown_method`]); at most [`MAX_CONCURRENT_STREAMS`] calls in flight per
//! connection; a bounded shutdown.

pub mod connections;
pub mod fixed_date;
pub mod session;
pub mod unknown_method;

use std::sync::Arc;

use ferrisdb_client::Priority;
use ferrisdb_core::Error;
use ferrisdb_proto::status::to_status;
use ferrisdb_proto::v1;
use tonic::Status;
use tonic::service::RoutesBuilder;

pub use connections::ConnectionLimit;

/// Largest gRPC message a FerrisDB process accepts or sends on the commit path: a commit may
/// carry 10 MB of mutations, and a log pull returns up to 32 MiB plus one whole commit. Both
/// ends must raise tonic's 4 MiB default decoding limit (servers and the clients they use).
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// The services reflection advertises on every process besides its role's own.
const COMMON_SERVICES: [&str; 3] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// Adds reflection (v1 and v1alpha) over FerrisDB's, health's and reflection's descriptor sets
/// to `routes`. `list` shows exactly `served` (fully-qualified names such as
/// `ferrisdb.v1.KV`) plus health and reflection, so a process never advertises a FerrisDB
/// service it does not serve; `describe` works for every FerrisDB message.
pub fn add_reflection(
    routes: &mut RoutesBuilder,
    served: &[&str],
) -> Result<(), tonic_reflection::server::Error> {
    let configure = || {
        let builder = tonic_reflection::server::Builder::configure()
            .include_reflection_service(false)
            .register_encoded_file_descriptor_set(ferrisdb_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            );
        served
            .iter()
            .chain(COMMON_SERVICES.iter())
            .fold(builder, |b, name| b.with_service_name(*name))
    };
    routes.add_service(configure().build_v1()?);
    routes.add_service(configure().build_v1alpha()?);
    Ok(())
}

/// How long a shutdown waits for open connections before the server stops regardless.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// The connection budget of a process: `configured` (`--max-connections`) within what its
/// open-file limit allows (see [`crate::resources::max_connections`]), logged once.
pub fn connection_limit(
    configured: Option<usize>,
    health: &crate::health::RoleHealth,
) -> Arc<ConnectionLimit> {
    let files = crate::resources::open_file_limit();
    let (max, origin) = crate::resources::max_connections(configured, files.map(|f| f.soft));
    tracing::info!(max_connections = max, "{origin}");
    ConnectionLimit::new(max, origin, health.clone())
}

/// Most calls in flight on one HTTP/2 connection (the server's `SETTINGS_MAX_CONCURRENT_STREAMS`:
/// a client opening more waits for one to finish).
pub const MAX_CONCURRENT_STREAMS: u32 = 1024;

/// Serves `routes` on `listener`, within the connection budget `limit`, until `shutdown`
/// completes, then waits at most [`SHUTDOWN_GRACE`] for open connections (a stuck client must
/// not keep a process alive).
pub async fn serve_until(
    routes: RoutesBuilder,
    listener: ferrisdb_proto::transport::Listener,
    limit: Arc<ConnectionLimit>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ferrisdb_core::Error> {
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        shutdown.await;
        let _ = stopping_tx.send(());
    };
    let server = tonic::transport::Server::builder()
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .layer(unknown_method::NameUnknownMethods)
        .layer(fixed_date::FixedDateInSimulation)
        .add_routes(routes.routes())
        .serve_with_incoming_shutdown(connections::accept(listener, limit), shutdown);
    let grace_expired = async move {
        if stopping_rx.await.is_ok() {
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        r = server => r.map_err(|e| ferrisdb_core::Error::Unavailable(format!("gRPC server failed: {e}"))),
        () = grace_expired => {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "connections still open after the grace period; stopping anyway");
            Ok(())
        }
    }
}

/// Completes on SIGINT or SIGTERM (the shutdown signal of every FerrisDB process).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, shutting down"),
        _ = term => tracing::info!("SIGTERM received, shutting down"),
    }
}

/// Installs the tracing subscriber every FerrisDB binary uses: stderr, `RUST_LOG` filter
/// (default `info`), colours only on a terminal.
pub fn init_tracing() {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn")),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

/// The read-version priority a request names (unknown numbers are refused).
pub fn priority_from_proto(n: i32) -> Result<Priority, Status> {
    match v1::Priority::try_from(n) {
        Ok(v1::Priority::Default) => Ok(Priority::Default),
        Ok(v1::Priority::Batch) => Ok(Priority::Batch),
        Ok(v1::Priority::Immediate) => Ok(Priority::Immediate),
        Err(_) => Err(to_status(Error::InvalidArgument(format!(
            "unknown priority {n}: 0 (default), 1 (batch) or 2 (immediate)"
        )))),
    }
}
