//! The operating-system resources a server process claims for itself at start.
//!
//! Every server binary raises its open-file soft limit to the hard limit (a common default soft
//! limit of 1,024 is far below what a busy server needs) and logs both, then budgets its
//! connections from what it got: [`max_connections`] keeps a reserve of descriptors for the
//! process's own files (commit-log segments, a storage engine's tables and WAL) that client
//! sockets can never take (`grpc::connections`).

/// Connections a process serves at once unless `--max-connections` says otherwise.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Fewest descriptors kept for a process's own files, whatever its limit.
pub const MIN_FILE_RESERVE: u64 = 64;

/// The open-file limits of this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFileLimit {
    /// The limit in force.
    pub soft: u64,
    /// The most the soft limit may be raised to without privileges.
    pub hard: u64,
}

/// Raises the open-file soft limit to the hard limit; returns the limits now in force.
pub fn raise_open_file_limit() -> std::io::Result<OpenFileLimit> {
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    let soft = rlimit::increase_nofile_limit(hard)?;
    Ok(OpenFileLimit { soft, hard })
}

/// The open-file limits in force (`None` if they cannot be read).
pub fn open_file_limit() -> Option<OpenFileLimit> {
    rlimit::getrlimit(rlimit::Resource::NOFILE)
        .ok()
        .map(|(soft, hard)| OpenFileLimit { soft, hard })
}

/// Descriptors kept for the process's own files under an open-file limit of `soft`: a
/// quarter of it, at least [`MIN_FILE_RESERVE`].
pub fn file_reserve(soft: u64) -> u64 {
    (soft / 4).max(MIN_FILE_RESERVE)
}

/// How many connections to serve at once: `configured` (default
/// [`DEFAULT_MAX_CONNECTIONS`]), but never more than the open-file limit `soft` leaves after
/// [`file_reserve`]; at least one. Returns the figure and a phrase saying where it comes from.
pub fn max_connections(configured: Option<usize>, soft: Option<u64>) -> (usize, String) {
    let wanted = configured.unwrap_or(DEFAULT_MAX_CONNECTIONS).max(1);
    let Some(soft) = soft else {
        return (wanted, format!("at most {wanted}"));
    };
    let room = soft.saturating_sub(file_reserve(soft));
    let room = usize::try_from(room).unwrap_or(usize::MAX).max(1);
    if room < wanted {
        (
            room,
            format!(
                "the open-file limit of {soft} leaves room for {room} after {} kept for files",
                file_reserve(soft)
            ),
        )
    } else {
        (wanted, format!("--max-connections {wanted}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_keeps_a_reserve_for_files() {
        assert_eq!(max_connections(None, Some(1_000_000)).0, 10_000);
        assert_eq!(max_connections(Some(50), Some(1_000_000)).0, 50);
        let (n, origin) = max_connections(None, Some(1024));
        assert_eq!(n, 768);
        assert!(
            origin.contains("1024") && origin.contains("768"),
            "{origin}"
        );
        assert_eq!(max_connections(Some(5_000), Some(200)).0, 136);
        assert_eq!(max_connections(None, Some(10)).0, 1, "never zero");
        assert_eq!(max_connections(Some(0), None).0, 1);
        assert_eq!(max_connections(Some(7), None).0, 7);
    }

    #[test]
    fn the_limit_is_raised_to_the_hard_limit() {
        let raised = raise_open_file_limit().expect("getrlimit/setrlimit");
        assert_eq!(raised.soft, raised.hard);
        assert_eq!(open_file_limit(), Some(raised));
    }
}
