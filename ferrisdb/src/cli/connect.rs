//! Which cluster a command talks to: `--controller ADDR[,ADDR…]` if given, otherwise the
//! cluster file (`--cluster-file PATH`, default `./ferrisdb-data/ferrisdb.cluster`, the file
//! `ferrisdb cluster up` writes). Opening does no network I/O.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ferrisdb_client::{ClusterFile, Database, DatabaseOptions};

use super::cluster_up::CLUSTER_FILE_NAME;

/// The data directory `cluster up` uses by default.
pub const DEFAULT_DATA_DIR: &str = "./ferrisdb-data";

/// The global connection flags.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// `--cluster-file`.
    pub cluster_file: Option<PathBuf>,
    /// `--controller`: one or more comma-separated addresses.
    pub controller: Option<String>,
    /// `--timeout`: bound on each transaction's retry loop.
    pub timeout: Duration,
}

/// An opened cluster: the client handle plus the controller addresses (for `status`).
#[derive(Debug, Clone)]
pub struct Connection {
    /// The client handle.
    pub db: Database,
    /// Controller addresses, tried in order.
    pub controllers: Vec<String>,
}

/// The cluster file used when no flag names one.
pub fn default_cluster_file() -> PathBuf {
    Path::new(DEFAULT_DATA_DIR).join(CLUSTER_FILE_NAME)
}

impl Target {
    /// Resolves the controller addresses and opens a client handle (no network I/O).
    pub fn connect(&self) -> Result<Connection, String> {
        let controllers = match &self.controller {
            Some(list) => {
                ClusterFile::new(
                    list.split(',')
                        .map(str::trim)
                        .filter(|a| !a.is_empty())
                        .map(String::from),
                )
                .map_err(|e| format!("--controller {list:?}: {e}"))?
                .controllers
            }
            None => {
                let path = self
                    .cluster_file
                    .clone()
                    .unwrap_or_else(default_cluster_file);
                if !path.is_file() {
                    return Err(format!(
                        "cluster file {} not found: start a local cluster with `ferrisdb \
                         cluster up`, or pass --cluster-file PATH or --controller HOST:PORT",
                        path.display()
                    ));
                }
                ClusterFile::load(&path)
                    .map_err(|e| e.to_string())?
                    .controllers
            }
        };
        let db = Database::connect_all(controllers.clone())
            .map_err(|e| e.to_string())?
            .with_options(DatabaseOptions {
                timeout: Some(self.timeout),
                ..DatabaseOptions::default()
            });
        Ok(Connection { db, controllers })
    }
}
