//! The error type shared by every FerrisDB crate.
//!
//! Variants follow FoundationDB's error codes where one exists ([`ErrorCode`]), so users who
//! know FoundationDB's retry rules find the same ones here: [`Error::is_retryable`] is true for
//! exactly the errors a retry loop may retry.

use std::path::PathBuf;

/// Result alias using [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// FoundationDB-compatible numeric error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ErrorCode {
    /// 1007: the read version is older than the MVCC window.
    TransactionTooOld = 1007,
    /// 1009: a storage server has not caught up to the read version yet.
    FutureVersion = 1009,
    /// 1011: a log server refused a write from a generation of the transaction system that a
    /// newer one has replaced (FoundationDB's `tlog_stopped`).
    Fenced = 1011,
    /// 1020: a conflict with a transaction that committed after the read version.
    NotCommitted = 1020,
    /// 1021: the commit may or may not have happened.
    CommitUnknownResult = 1021,
    /// 1025: the transaction was cancelled.
    TransactionCancelled = 1025,
    /// 1031: the operation timed out.
    TimedOut = 1031,
    /// 1036: a read of a key this transaction set with a versionstamped value, which is not
    /// known before the commit.
    AccessedUnreadable = 1036,
    /// 1037: a storage server is too far behind to serve the read.
    ProcessBehind = 1037,
    /// 1041: the commit's outcome is unknown and can no longer be learned (its idempotency id
    /// was forgotten); unlike 1021, retrying is not safe.
    CommitUnknownResultFatal = 1041,
    /// 1038: the request reached a process that does not own the key.
    WrongShard = 1038,
    /// 1200: the transaction system is recovering; retry shortly.
    Recovering = 1200,
    /// 1202: the request reached a controller replica that is not the group's leader; ask
    /// the leader (named in the error when known).
    NotLeader = 1202,
    /// 1500: a process could not be reached.
    Unavailable = 1500,
    /// 2004: an invalid key range (empty or inverted).
    InvalidRange = 2004,
    /// 2006: any other invalid argument.
    InvalidArgument = 2006,
    /// 2101: the transaction exceeds the size limit.
    TransactionTooLarge = 2101,
    /// 2102: a key exceeds the size limit.
    KeyTooLarge = 2102,
    /// 2103: a value exceeds the size limit.
    ValueTooLarge = 2103,
    /// 4000: stored data failed a checksum or format check.
    Corruption = 4000,
    /// 4100: an operating-system I/O error.
    Io = 4100,
    /// 4200: an internal invariant was violated.
    Internal = 4200,
}

/// Every error FerrisDB reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A conflicting transaction committed after this transaction's read version.
    #[error("transaction not committed: conflict on a key read by this transaction")]
    NotCommitted,
    /// The read version lies before the oldest version still kept.
    #[error("transaction too old: read version {read_version} is older than {oldest}")]
    TransactionTooOld {
        /// The version asked for.
        read_version: u64,
        /// The oldest version that can still be read.
        oldest: u64,
    },
    /// The server has not applied the read version yet.
    #[error("future version: asked for {read_version}, server has applied {applied}")]
    FutureVersion {
        /// The version asked for.
        read_version: u64,
        /// The newest version the server has applied.
        applied: u64,
    },
    /// The commit's outcome is unknown (for example the coordinator failed mid-commit).
    #[error("commit result unknown: {0}")]
    CommitUnknownResult(String),
    /// The commit's outcome is unknown and cannot be learned any more: the idempotency id
    /// it carried is older than the coordinator's retention. Not retryable.
    #[error("commit result unknown and no longer checkable: {0}")]
    CommitUnknownResultFatal(String),
    /// The transaction was cancelled ([`Error::is_retryable`] is false).
    #[error("transaction cancelled")]
    TransactionCancelled,
    /// A read of a key whose value this transaction set with a versionstamp, which exists
    /// only once the transaction commits.
    #[error("accessed unreadable: {0}")]
    AccessedUnreadable(String),
    /// The operation timed out.
    #[error("timed out: {0}")]
    TimedOut(String),
    /// A storage server is too far behind.
    #[error("process behind: {0}")]
    ProcessBehind(String),
    /// The server does not hold this key; the caller should refresh its shard map.
    #[error("wrong shard: {0}")]
    WrongShard(String),
    /// The transaction system is recovering.
    #[error("recovering: {0}")]
    Recovering(String),
    /// A log server refused a write (or a read meant for recovery) from a generation of the
    /// transaction system that a newer generation has locked it against; the caller's
    /// generation is over.
    #[error("fenced: {0}")]
    Fenced(String),
    /// The request reached a controller replica that is not the leader of its group. The
    /// field is the leader's address, empty when no leader is known (an election is under
    /// way, or the group has lost its quorum).
    #[error("this controller replica is not the leader{}", leader_hint(.0))]
    NotLeader(String),
    /// A process could not be reached.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// An empty or inverted key range.
    #[error("invalid range: {0}")]
    InvalidRange(String),
    /// Any other malformed argument.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The transaction is larger than the limit.
    #[error("transaction too large: {len} bytes (limit {max})")]
    TransactionTooLarge {
        /// Size of the transaction.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The key is larger than the limit.
    #[error("key too large: {len} bytes (limit {max})")]
    KeyTooLarge {
        /// Size of the key.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The value is larger than the limit.
    #[error("value too large: {len} bytes (limit {max})")]
    ValueTooLarge {
        /// Size of the value.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Stored data is damaged; names the file and the byte offset.
    #[error("corruption in {}: at offset {offset}: {reason}", file.display())]
    Corruption {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset of the damage in the file.
        offset: u64,
        /// What check failed.
        reason: String,
    },
    /// An I/O error, with what was being done.
    #[error("I/O error while {context}: {source}")]
    Io {
        /// What FerrisDB was doing.
        context: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// An internal invariant was violated; a bug.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Builds an [`Error::Io`] with a description of what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Builds an [`Error::Corruption`].
    pub fn corruption(file: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        Error::Corruption {
            file: file.into(),
            offset,
            reason: reason.into(),
        }
    }

    /// The FoundationDB-compatible code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::NotCommitted => ErrorCode::NotCommitted,
            Error::TransactionTooOld { .. } => ErrorCode::TransactionTooOld,
            Error::FutureVersion { .. } => ErrorCode::FutureVersion,
            Error::CommitUnknownResult(_) => ErrorCode::CommitUnknownResult,
            Error::CommitUnknownResultFatal(_) => ErrorCode::CommitUnknownResultFatal,
            Error::TransactionCancelled => ErrorCode::TransactionCancelled,
            Error::AccessedUnreadable(_) => ErrorCode::AccessedUnreadable,
            Error::TimedOut(_) => ErrorCode::TimedOut,
            Error::ProcessBehind(_) => ErrorCode::ProcessBehind,
            Error::WrongShard(_) => ErrorCode::WrongShard,
            Error::Recovering(_) => ErrorCode::Recovering,
            Error::Fenced(_) => ErrorCode::Fenced,
            Error::NotLeader(_) => ErrorCode::NotLeader,
            Error::Unavailable(_) => ErrorCode::Unavailable,
            Error::InvalidRange(_) => ErrorCode::InvalidRange,
            Error::InvalidArgument(_) => ErrorCode::InvalidArgument,
            Error::TransactionTooLarge { .. } => ErrorCode::TransactionTooLarge,
            Error::KeyTooLarge { .. } => ErrorCode::KeyTooLarge,
            Error::ValueTooLarge { .. } => ErrorCode::ValueTooLarge,
            Error::Corruption { .. } => ErrorCode::Corruption,
            Error::Io { .. } => ErrorCode::Io,
            Error::Internal(_) => ErrorCode::Internal,
        }
    }

    /// True for errors after which running the whole transaction again may succeed.
    ///
    /// `CommitUnknownResult` is retryable too, but only safe for idempotent transactions;
    /// callers that care check [`Error::is_commit_unknown`] first.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::NotCommitted
                | Error::TransactionTooOld { .. }
                | Error::FutureVersion { .. }
                | Error::ProcessBehind(_)
                | Error::WrongShard(_)
                | Error::Recovering(_)
                | Error::NotLeader(_)
                | Error::Unavailable(_)
                | Error::CommitUnknownResult(_)
        )
    }

    /// True if the commit's outcome is unknown.
    pub fn is_commit_unknown(&self) -> bool {
        matches!(self, Error::CommitUnknownResult(_))
    }
}

/// " (the leader is at ADDR)" or " (no leader is known)".
fn leader_hint(leader: &str) -> String {
    if leader.is_empty() {
        " (no leader is known)".to_string()
    } else {
        format!(" (the leader is at {leader})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_foundationdb() {
        assert_eq!(Error::NotCommitted.code() as u32, 1020);
        assert_eq!(
            Error::TransactionTooOld {
                read_version: 1,
                oldest: 2
            }
            .code() as u32,
            1007
        );
        assert_eq!(Error::KeyTooLarge { len: 1, max: 0 }.code() as u32, 2102);
    }

    #[test]
    fn retryable_set_is_the_documented_one() {
        assert!(Error::NotCommitted.is_retryable());
        assert!(
            Error::FutureVersion {
                read_version: 2,
                applied: 1
            }
            .is_retryable()
        );
        assert!(Error::CommitUnknownResult("x".into()).is_retryable());
        assert!(!Error::TimedOut("x".into()).is_retryable());
        assert!(!Error::KeyTooLarge { len: 1, max: 0 }.is_retryable());
        assert!(!Error::corruption("/tmp/f", 7, "bad crc").is_retryable());
    }

    #[test]
    fn corruption_message_names_file_and_offset() {
        let e = Error::corruption("/data/000001.wal", 4096, "record checksum mismatch");
        let msg = e.to_string();
        assert!(msg.contains("/data/000001.wal"), "{msg}");
        assert!(msg.contains("4096"), "{msg}");
    }
}
