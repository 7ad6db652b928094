//! What every FerrisDB process serves besides its own role: `grpc.health.v1` and gRPC
//! reflection (both `v1` and `v1alpha`, since common grpcurl builds only speak `v1alpha`).

use tonic::service::RoutesBuilder;

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

/// The connections accepted on `listener`, with `TCP_NODELAY` set on each.
///
/// Small replies must leave at once: with Nagle's algorithm on, an answer written while the
/// connection has unacknowledged data in flight (the normal state of a channel shared by
/// concurrent requests) waits for the peer's delayed ACK, about 40 ms on Linux. The server
/// builder's own `tcp_nodelay` applies only to listeners it binds itself, not to an incoming
/// stream handed to it, so the option is set here.
pub fn incoming(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// How long a shutdown waits for open connections before the server stops regardless.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// Serves `routes` on `listener` until `shutdown` completes, then waits at most
/// [`SHUTDOWN_GRACE`] for open connections (a stuck client must not keep a process alive).
pub async fn serve_until(
    routes: RoutesBuilder,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ferrisdb_core::Error> {
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        shutdown.await;
        let _ = stopping_tx.send(());
    };
    let server = tonic::transport::Server::builder()
        .add_routes(routes.routes())
        .serve_with_incoming_shutdown(incoming(listener), shutdown);
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
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

#[cfg(test)]
mod tests {
    use tokio_stream::StreamExt;

    use super::*;

    #[tokio::test]
    async fn accepted_connections_have_nodelay_set() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut accepted = incoming(listener);
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let server_side = accepted.next().await.unwrap().unwrap();
        assert!(server_side.nodelay().unwrap(), "TCP_NODELAY not set");
    }
}
