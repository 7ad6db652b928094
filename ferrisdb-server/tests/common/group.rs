//! Helpers for controller-group tests: asking a replica who it is or for the cluster state,
//! and writing and reading back keys through the client.

use std::net::SocketAddr;
use std::time::Duration;

use ferrisdb_client::Database;
use ferrisdb_proto::v1;
use ferrisdb_proto::v1::cluster_controller_client::ClusterControllerClient;
use ferrisdb_proto::v1::controller_group_client::ControllerGroupClient;
use tonic::transport::Channel;

/// A lazily connecting channel with short timeouts (a dead replica answers fast).
pub fn channel(addr: impl std::fmt::Display) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("valid uri")
        .connect_timeout(Duration::from_millis(300))
        .timeout(Duration::from_secs(3))
        .connect_lazy()
}

/// The replica at `addr` as it sees itself, if it answers.
pub async fn identify(addr: SocketAddr) -> Option<v1::ControllerReplica> {
    ControllerGroupClient::new(channel(addr))
        .identify(v1::IdentifyRequest {})
        .await
        .ok()
        .map(|r| r.into_inner())
}

/// `GetClusterState` of the replica at `addr` (only a leader answers).
pub async fn state(addr: SocketAddr) -> Result<v1::GetClusterStateResponse, tonic::Status> {
    ClusterControllerClient::new(channel(addr))
        .get_cluster_state(v1::GetClusterStateRequest {})
        .await
        .map(|r| r.into_inner())
}

/// Sets `key` to itself, retrying as the client does; panics if it cannot.
pub async fn write(db: &Database, key: &str) {
    db.run(|tx| {
        let key = key.to_string();
        async move { tx.set(key.as_bytes(), key.as_bytes()) }
    })
    .await
    .unwrap_or_else(|e| panic!("writing {key}: {e}"));
}

/// Asserts every key in `keys` reads back as itself.
pub async fn read_all(db: &Database, keys: &[String]) {
    for key in keys {
        let got = db
            .run(|tx| {
                let key = key.clone();
                async move { tx.get(key.as_bytes()).await }
            })
            .await
            .unwrap_or_else(|e| panic!("reading {key}: {e}"));
        assert_eq!(
            got.as_deref(),
            Some(key.as_bytes()),
            "acknowledged write {key} lost"
        );
    }
}
