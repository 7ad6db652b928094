//! The cluster file: how a client finds a cluster.
//!
//! `ferrisdb cluster up` writes it; [`crate::Database::from_cluster_file`] reads it. Two forms
//! are accepted:
//!
//! ```text
//! {"cluster_id": "3f2a…", "controllers": ["127.0.0.1:4500"]}
//! ```
//!
//! (JSON, `cluster_id` optional; the form [`ClusterFile::to_json`] writes), or plain text:
//! the cluster id, `@`, then the controller replicas' addresses separated by commas or
//! newlines (`ferrisdb cluster up` writes this form; the id and `@` may be left out), `#`
//! starting a comment:
//!
//! ```text
//! # ferrisdb cluster
//! 3f2a9c…@127.0.0.1:4500,127.0.0.1:4505,127.0.0.1:4506
//! ```
//!
//! Every address must be `host:port`. Parsing never panics on bad input.

use std::path::Path;

use ferrisdb_core::Error;
use serde::{Deserialize, Serialize};

/// The contents of a cluster file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterFile {
    /// The cluster's id, when known (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// Cluster controller addresses (`host:port`), tried in order.
    pub controllers: Vec<String>,
}

impl ClusterFile {
    /// A cluster file naming these controllers.
    pub fn new(controllers: impl IntoIterator<Item = impl Into<String>>) -> Result<Self, Error> {
        let file = ClusterFile {
            cluster_id: None,
            controllers: controllers.into_iter().map(Into::into).collect(),
        };
        file.validate()?;
        Ok(file)
    }

    /// Parses either form (see the module documentation).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let trimmed = text.trim_start();
        let file = if trimmed.starts_with('{') {
            serde_json::from_str::<ClusterFile>(trimmed)
                .map_err(|e| Error::InvalidArgument(format!("cluster file is not valid: {e}")))?
        } else {
            let mut cluster_id = None;
            let mut controllers = Vec::new();
            for line in text.lines() {
                let mut line = line.split('#').next().unwrap_or("").trim();
                if let Some((id, rest)) = line.split_once('@') {
                    let id = id.trim();
                    if id.is_empty()
                        || !id
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                    {
                        return Err(Error::InvalidArgument(format!(
                            "cluster file: {id:?} before '@' is not a cluster id"
                        )));
                    }
                    if cluster_id.replace(id.to_string()).is_some() {
                        return Err(Error::InvalidArgument(
                            "cluster file names a cluster id twice".into(),
                        ));
                    }
                    line = rest;
                }
                controllers.extend(
                    line.split(',')
                        .map(str::trim)
                        .filter(|a| !a.is_empty())
                        .map(String::from),
                );
            }
            ClusterFile {
                cluster_id,
                controllers,
            }
        };
        file.validate()?;
        Ok(file)
    }

    /// Reads and parses a cluster file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading cluster file {}", path.display()), e))?;
        Self::parse(&text).map_err(|e| match e {
            Error::InvalidArgument(m) => Error::InvalidArgument(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// The text form `ferrisdb cluster up` writes: a comment line, then
    /// `<cluster id>@host:port,host:port,...` (no `id@` while the id is unknown).
    pub fn to_text(&self) -> String {
        let id = self
            .cluster_id
            .as_ref()
            .map(|id| format!("{id}@"))
            .unwrap_or_default();
        format!(
            "# FerrisDB cluster file: the cluster id and its controller replicas\n{id}{}\n",
            self.controllers.join(",")
        )
    }

    /// Writes the text form to `path` atomically (temporary file, fsync, rename).
    pub fn store(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        self.validate()?;
        let path = path.as_ref();
        let tmp = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut f, self.to_text().as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| Error::io(format!("writing cluster file {}", path.display()), e))
    }

    /// The JSON form.
    pub fn to_json(&self) -> String {
        // Serializing strings and a vector of strings cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks there is at least one controller and every address is `host:port`.
    pub fn validate(&self) -> Result<(), Error> {
        if self.controllers.is_empty() {
            return Err(Error::InvalidArgument(
                "cluster file names no controller address".into(),
            ));
        }
        for addr in &self.controllers {
            check_address(addr)?;
        }
        Ok(())
    }
}

/// Checks an address is `host:port` with a non-empty host and a numeric port.
pub(crate) fn check_address(addr: &str) -> Result<(), Error> {
    let bad = || {
        Error::InvalidArgument(format!(
            "controller address {addr:?} is not host:port (for example 127.0.0.1:4500)"
        ))
    };
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty()
        || host.contains("://")
        || host.contains(['@', ','])
        || host.chars().any(char::is_whitespace)
        || port.parse::<u16>().is_err()
    {
        return Err(bad());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_form_round_trips_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferrisdb.cluster");
        let mut f = ClusterFile::new(["127.0.0.1:4500", "127.0.0.1:4505"]).unwrap();
        f.store(&path).unwrap();
        assert_eq!(ClusterFile::load(&path).unwrap(), f);
        f.cluster_id = Some("c0ffee".into());
        f.store(&path).unwrap();
        assert_eq!(ClusterFile::load(&path).unwrap(), f);
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .contains("c0ffee@127.0.0.1:4500,127.0.0.1:4505")
        );
    }

    #[test]
    fn parses_the_id_at_addresses_form_and_rejects_bad_ids() {
        let f = ClusterFile::parse("# c\nab12@127.0.0.1:4500,127.0.0.1:4505\n127.0.0.1:4506\n")
            .unwrap();
        assert_eq!(f.cluster_id.as_deref(), Some("ab12"));
        assert_eq!(
            f.controllers,
            ["127.0.0.1:4500", "127.0.0.1:4505", "127.0.0.1:4506"]
        );
        for bad in [
            "@127.0.0.1:1",
            "a b@127.0.0.1:1",
            "x@y@127.0.0.1:1",
            "a@1:2\nb@1:3",
            "id@",
        ] {
            assert!(ClusterFile::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parses_json_and_text_forms() {
        let json = r#"{"cluster_id": "abc", "controllers": ["127.0.0.1:4500", "h:1"]}"#;
        let f = ClusterFile::parse(json).unwrap();
        assert_eq!(f.cluster_id.as_deref(), Some("abc"));
        assert_eq!(f.controllers, ["127.0.0.1:4500", "h:1"]);
        assert_eq!(ClusterFile::parse(&f.to_json()).unwrap(), f);
        let text = "# cluster\n127.0.0.1:4500, [::1]:4501\n\n";
        let f = ClusterFile::parse(text).unwrap();
        assert_eq!(f.controllers, ["127.0.0.1:4500", "[::1]:4501"]);
    }

    #[test]
    fn rejects_empty_and_malformed_files() {
        for bad in [
            "",
            "# nothing\n",
            "localhost",
            "http://h:1",
            "h:port",
            ":1",
            "{\"controllers\": []}",
            "{not json",
        ] {
            assert!(
                matches!(ClusterFile::parse(bad), Err(Error::InvalidArgument(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster");
        std::fs::write(&path, "nope").unwrap();
        let err = ClusterFile::load(&path).unwrap_err().to_string();
        assert!(err.contains("cluster"), "{err}");
        assert!(matches!(
            ClusterFile::load(dir.path().join("missing")),
            Err(Error::Io { .. })
        ));
    }
}
