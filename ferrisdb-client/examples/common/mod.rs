//! Shared by the examples: which cluster to connect to.

/// The cluster named by `--controller host:port` / `--cluster-file path` on the command line,
/// or the `FERRISDB_CONTROLLER` / `FERRISDB_CLUSTER_FILE` environment variables, or
/// `127.0.0.1:4500`.
pub fn database() -> ferrisdb_client::Result<ferrisdb_client::Database> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    if let Some(path) =
        flag("--cluster-file").or_else(|| std::env::var("FERRISDB_CLUSTER_FILE").ok())
    {
        return ferrisdb_client::Database::from_cluster_file(path);
    }
    let controller = flag("--controller")
        .or_else(|| std::env::var("FERRISDB_CONTROLLER").ok())
        .unwrap_or_else(|| "127.0.0.1:4500".to_owned());
    ferrisdb_client::Database::open(&controller)
}
