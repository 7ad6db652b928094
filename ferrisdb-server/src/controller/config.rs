//! The controller's settings (filled from the `ferrisdb-controller` flags).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ferrisdb_core::Error;

use super::membership::Liveness;
use super::shard_map::check_layout;

/// Settings of a cluster controller process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerConfig {
    /// Address the gRPC server binds.
    pub listen: SocketAddr,
    /// Directory holding the metadata file.
    pub data_dir: PathBuf,
    /// Storage servers to wait for before bootstrapping the shard map (first start only).
    pub storage_servers: u32,
    /// Replicas per shard.
    pub replication: u32,
    /// How often workers heartbeat.
    pub heartbeat_interval: Duration,
    /// Missed heartbeat intervals after which a worker is unhealthy.
    pub missed_heartbeats: u32,
    /// Most connections served at once (default from the open-file limit; see
    /// [`crate::resources::max_connections`]).
    pub max_connections: Option<usize>,
}

impl ControllerConfig {
    /// Checks that the shard layout is possible and the heartbeat settings are usable.
    pub fn validate(&self) -> Result<(), Error> {
        check_layout(self.storage_servers as usize, self.replication as usize)?;
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
            data_dir: "/tmp/x".into(),
            storage_servers: 3,
            replication: 2,
            heartbeat_interval: Duration::from_millis(500),
            missed_heartbeats: 4,
            max_connections: None,
        }
    }

    #[test]
    fn validation() {
        assert!(config().validate().is_ok());
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
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
        }
    }
}
