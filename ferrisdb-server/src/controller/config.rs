//! The controller's settings (filled from the `ferrisdb-controller` flags).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ferrisdb_core::Error;

use super::group::RaftTimings;
use super::membership::Liveness;
use super::shard_map::check_layout;

/// Settings of a cluster controller process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerConfig {
    /// Address the gRPC server binds.
    pub listen: SocketAddr,
    /// Where the other controller replicas, workers and clients reach this one (`host:port`;
    /// `None`: the listen address).
    pub advertise: Option<String>,
    /// Directory holding the replica's Raft state.
    pub data_dir: PathBuf,
    /// Every replica of the group when it is first formed, this one included (`host:port`,
    /// the same list in the same order on every replica). Empty: a group of one.
    pub peers: Vec<String>,
    /// Never form a new group: wait to join an existing one (through `peers`, or an
    /// explicit `ferrisdb cluster controllers add`).
    pub join_only: bool,
    /// Raft heartbeat and election timings.
    pub raft: RaftTimings,
    /// The local IP address connections to the other replicas leave from (`None`: the
    /// system's choice), for hosts with several interfaces.
    pub peer_source_ip: Option<std::net::IpAddr>,
    /// Storage servers to wait for before bootstrapping the shard map (first start only).
    pub storage_servers: u32,
    /// Replicas per shard.
    pub replication: u32,
    /// Log servers per generation of the transaction system (first start only).
    pub log_replication: u32,
    /// How often workers heartbeat.
    pub heartbeat_interval: Duration,
    /// Missed heartbeat intervals after which a worker is unhealthy.
    pub missed_heartbeats: u32,
    /// Most connections served at once (default from the open-file limit; see
    /// [`crate::resources::max_connections`]).
    pub max_connections: Option<usize>,
    /// How long a storage server may stay silent before the data distributor re-replicates
    /// its shards elsewhere.
    pub storage_failure_timeout: Duration,
    /// Shards larger than this are split (`None`: a limit that grows with the database, see
    /// `distributor::max_shard_bytes`).
    pub max_shard_bytes: Option<u64>,
    /// Shards written faster than this many bytes per second are split.
    pub max_shard_write_bytes_per_second: u64,
}

impl ControllerConfig {
    /// Where the other replicas reach this one.
    pub fn advertised_address(&self) -> String {
        self.advertise
            .clone()
            .unwrap_or_else(|| self.listen.to_string())
    }

    /// Checks that the shard layout is possible, the heartbeat and Raft settings are usable
    /// and the peer list names this replica.
    pub fn validate(&self) -> Result<(), Error> {
        check_layout(self.storage_servers as usize, self.replication as usize)?;
        if !(1..=super::recovery::MAX_LOG_REPLICATION).contains(&self.log_replication) {
            return Err(Error::InvalidArgument(format!(
                "log replication must be 1 to {}, got {}",
                super::recovery::MAX_LOG_REPLICATION,
                self.log_replication
            )));
        }
        let me = self.advertised_address();
        super::membership::check_address(&me).map_err(|_| {
            Error::InvalidArgument(format!("advertised address {me:?} is not host:port"))
        })?;
        for peer in &self.peers {
            super::membership::check_address(peer).map_err(|_| {
                Error::InvalidArgument(format!("peer address {peer:?} is not host:port"))
            })?;
        }
        if !self.join_only && !self.peers.is_empty() && !self.peers.contains(&me) {
            return Err(Error::InvalidArgument(format!(
                "the peer list ({}) does not name this replica's address {me}",
                self.peers.join(",")
            )));
        }
        let mut sorted = self.peers.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != self.peers.len() {
            return Err(Error::InvalidArgument(format!(
                "the peer list names an address twice: {}",
                self.peers.join(",")
            )));
        }
        if self.raft.heartbeat.is_zero() || self.raft.election_min <= self.raft.heartbeat * 2 {
            return Err(Error::InvalidArgument(format!(
                "the Raft election timeout ({:?}) must exceed twice the Raft heartbeat ({:?})",
                self.raft.election_min, self.raft.heartbeat
            )));
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval > Duration::from_secs(3600)
        {
            return Err(Error::InvalidArgument(format!(
                "heartbeat interval must be between 1 ms and 1 h, got {:?}",
                self.heartbeat_interval
            )));
        }
        if self.missed_heartbeats == 0 {
            return Err(Error::InvalidArgument(
                "missed heartbeats must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// The failure-detection settings.
    pub fn liveness(&self) -> Liveness {
        Liveness {
            heartbeat_interval: self.heartbeat_interval,
            missed_heartbeats: self.missed_heartbeats,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ControllerConfig {
        ControllerConfig {
            listen: ([127, 0, 0, 1], 4500).into(),
            advertise: None,
            data_dir: "/tmp/x".into(),
            peers: vec![],
            join_only: false,
            raft: RaftTimings::default(),
            peer_source_ip: None,
            storage_servers: 3,
            storage_failure_timeout: Duration::from_secs(30),
            max_shard_bytes: None,
            max_shard_write_bytes_per_second: 1_000_000,
            replication: 2,
            log_replication: 2,
            heartbeat_interval: Duration::from_millis(500),
            missed_heartbeats: 4,
            max_connections: None,
        }
    }

    #[test]
    fn validation() {
        assert!(config().validate().is_ok());
        for bad in [0, 6] {
            let err = ControllerConfig {
                log_replication: bad,
                ..config()
            }
            .validate()
            .unwrap_err();
            assert!(err.to_string().contains("log replication"), "{err}");
        }
        assert_eq!(config().liveness().timeout(), Duration::from_secs(2));
        let bad = [
            ControllerConfig {
                replication: 4,
                ..config()
            },
            ControllerConfig {
                storage_servers: 0,
                ..config()
            },
            ControllerConfig {
                heartbeat_interval: Duration::ZERO,
                ..config()
            },
            ControllerConfig {
                missed_heartbeats: 0,
                ..config()
            },
            ControllerConfig {
                peers: vec!["127.0.0.1:4600".into()],
                ..config()
            },
            ControllerConfig {
                peers: vec!["127.0.0.1:4500".into(), "127.0.0.1:4500".into()],
                ..config()
            },
            ControllerConfig {
                peers: vec!["127.0.0.1:4500".into(), "nonsense".into()],
                ..config()
            },
            ControllerConfig {
                raft: RaftTimings {
                    election_min: Duration::from_millis(150),
                    ..RaftTimings::default()
                },
                ..config()
            },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
        }
    }
}
