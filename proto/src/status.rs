//! [`ferrisdb_core::Error`] ↔ [`tonic::Status`], the single error mapping of every service.
//!
//! Servers return [`to_status`] of their error; the status carries the gRPC code that best
//! matches the error (so generic gRPC tooling behaves sensibly), the error's display text as
//! the message, and the FoundationDB-style code in the `ferrisdb-error-code` metadata entry plus
//! the variant's fields in further entries, so [`from_status`] rebuilds the same `Error` on the
//! client. Statuses without that metadata (a dropped connection, a proxy, a foreign server) fall
//! back to an error chosen from the gRPC code.
//!
//! | Error | gRPC code |
//! |---|---|
//! | `InvalidArgument`, `InvalidRange`, `KeyTooLarge`, `ValueTooLarge`, `TransactionTooLarge` | `INVALID_ARGUMENT` |
//! | `NotCommitted` | `ABORTED` |
//! | `TransactionTooOld`, `WrongShard`, `Fenced` | `FAILED_PRECONDITION` |
//! | `FutureVersion`, `ProcessBehind`, `Unavailable`, `Recovering`, `NotLeader` | `UNAVAILABLE` |
//! | `Corruption` | `DATA_LOSS` |
//! | `Internal`, `Io` | `INTERNAL` |
//! | `TimedOut` | `DEADLINE_EXCEEDED` |
//! | `CommitUnknownResult`, `CommitUnknownResultFatal` | `UNKNOWN` |
//! | `TransactionCancelled` | `CANCELLED` |
//! | `AccessedUnreadable` | `FAILED_PRECONDITION` |

use std::path::PathBuf;

use ferrisdb_core::{Error, ErrorCode};
use tonic::metadata::{AsciiMetadataValue, BinaryMetadataValue, MetadataMap};
use tonic::{Code, Status};

/// Metadata key holding the numeric FoundationDB-style error code.
pub const ERROR_CODE_KEY: &str = "ferrisdb-error-code";
/// Binary metadata key holding the variant's text payload (message, context or reason).
const DETAIL_KEY: &str = "ferrisdb-error-detail-bin";
/// Binary metadata key holding a corruption's file path.
const FILE_KEY: &str = "ferrisdb-error-file-bin";
/// Binary metadata key holding an I/O error's operating-system message.
const SOURCE_KEY: &str = "ferrisdb-error-source-bin";
/// First and second numeric fields of the variant (versions, lengths, offsets).
const ARG1_KEY: &str = "ferrisdb-error-arg1";
const ARG2_KEY: &str = "ferrisdb-error-arg2";

/// The gRPC code an error is reported with (see the module table).
pub fn grpc_code(err: &Error) -> Code {
    match err {
        Error::InvalidArgument(_)
        | Error::InvalidRange(_)
        | Error::KeyTooLarge { .. }
        | Error::ValueTooLarge { .. }
        | Error::TransactionTooLarge { .. } => Code::InvalidArgument,
        Error::NotCommitted => Code::Aborted,
        Error::TransactionTooOld { .. }
        | Error::WrongShard(_)
        | Error::AccessedUnreadable(_)
        | Error::Fenced(_) => Code::FailedPrecondition,
        Error::FutureVersion { .. }
        | Error::ProcessBehind(_)
        | Error::Unavailable(_)
        | Error::NotLeader(_)
        | Error::Recovering(_) => Code::Unavailable,
        Error::Corruption { .. } => Code::DataLoss,
        Error::Internal(_) | Error::Io { .. } => Code::Internal,
        Error::TimedOut(_) => Code::DeadlineExceeded,
        Error::CommitUnknownResult(_) | Error::CommitUnknownResultFatal(_) => Code::Unknown,
        Error::TransactionCancelled => Code::Cancelled,
    }
}

/// Converts an error into the status a server returns.
pub fn to_status(err: Error) -> Status {
    let mut meta = MetadataMap::new();
    meta.insert(ERROR_CODE_KEY, AsciiMetadataValue::from(err.code() as u32));
    let (arg1, arg2): (Option<u64>, Option<u64>) = match &err {
        Error::TransactionTooOld {
            read_version,
            oldest,
        } => (Some(*read_version), Some(*oldest)),
        Error::FutureVersion {
            read_version,
            applied,
        } => (Some(*read_version), Some(*applied)),
        Error::TransactionTooLarge { len, max }
        | Error::KeyTooLarge { len, max }
        | Error::ValueTooLarge { len, max } => (Some(*len as u64), Some(*max as u64)),
        Error::Corruption { offset, .. } => (Some(*offset), None),
        _ => (None, None),
    };
    if let Some(a) = arg1 {
        meta.insert(ARG1_KEY, AsciiMetadataValue::from(a));
    }
    if let Some(b) = arg2 {
        meta.insert(ARG2_KEY, AsciiMetadataValue::from(b));
    }
    let detail = match &err {
        Error::CommitUnknownResult(s)
        | Error::CommitUnknownResultFatal(s)
        | Error::AccessedUnreadable(s)
        | Error::TimedOut(s)
        | Error::ProcessBehind(s)
        | Error::WrongShard(s)
        | Error::Recovering(s)
        | Error::Fenced(s)
        | Error::NotLeader(s)
        | Error::Unavailable(s)
        | Error::InvalidRange(s)
        | Error::InvalidArgument(s)
        | Error::Internal(s) => Some(s.as_str()),
        Error::Corruption { reason, .. } => Some(reason.as_str()),
        Error::Io { context, .. } => Some(context.as_str()),
        _ => None,
    };
    if let Some(d) = detail {
        meta.insert_bin(DETAIL_KEY, BinaryMetadataValue::from_bytes(d.as_bytes()));
    }
    if let Error::Corruption { file, .. } = &err {
        let path = file.to_string_lossy();
        meta.insert_bin(FILE_KEY, BinaryMetadataValue::from_bytes(path.as_bytes()));
    }
    if let Error::Io { source, .. } = &err {
        let text = source.to_string();
        meta.insert_bin(SOURCE_KEY, BinaryMetadataValue::from_bytes(text.as_bytes()));
    }
    Status::with_metadata(grpc_code(&err), err.to_string(), meta)
}

/// Rebuilds the error a FerrisDB server sent, or picks one from the gRPC code for statuses
/// that did not come from a FerrisDB server (see [`fallback`]).
pub fn from_status(status: &Status) -> Error {
    let meta = status.metadata();
    let code = meta
        .get(ERROR_CODE_KEY)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<u32>().ok())
        .and_then(error_code);
    let Some(code) = code else {
        return fallback(status);
    };
    let detail = || bin(meta, DETAIL_KEY).unwrap_or_else(|| status.message().to_owned());
    let arg = |key: &str| {
        meta.get(key)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let usize_arg = |key: &str| usize::try_from(arg(key)).unwrap_or(usize::MAX);
    match code {
        ErrorCode::NotCommitted => Error::NotCommitted,
        ErrorCode::TransactionTooOld => Error::TransactionTooOld {
            read_version: arg(ARG1_KEY),
            oldest: arg(ARG2_KEY),
        },
        ErrorCode::FutureVersion => Error::FutureVersion {
            read_version: arg(ARG1_KEY),
            applied: arg(ARG2_KEY),
        },
        ErrorCode::CommitUnknownResult => Error::CommitUnknownResult(detail()),
        ErrorCode::CommitUnknownResultFatal => Error::CommitUnknownResultFatal(detail()),
        ErrorCode::TransactionCancelled => Error::TransactionCancelled,
        ErrorCode::AccessedUnreadable => Error::AccessedUnreadable(detail()),
        ErrorCode::TimedOut => Error::TimedOut(detail()),
        ErrorCode::ProcessBehind => Error::ProcessBehind(detail()),
        ErrorCode::WrongShard => Error::WrongShard(detail()),
        ErrorCode::Recovering => Error::Recovering(detail()),
        ErrorCode::Fenced => Error::Fenced(detail()),
        ErrorCode::NotLeader => Error::NotLeader(detail()),
        ErrorCode::Unavailable => Error::Unavailable(detail()),
        ErrorCode::InvalidRange => Error::InvalidRange(detail()),
        ErrorCode::InvalidArgument => Error::InvalidArgument(detail()),
        ErrorCode::TransactionTooLarge => Error::TransactionTooLarge {
            len: usize_arg(ARG1_KEY),
            max: usize_arg(ARG2_KEY),
        },
        ErrorCode::KeyTooLarge => Error::KeyTooLarge {
            len: usize_arg(ARG1_KEY),
            max: usize_arg(ARG2_KEY),
        },
        ErrorCode::ValueTooLarge => Error::ValueTooLarge {
            len: usize_arg(ARG1_KEY),
            max: usize_arg(ARG2_KEY),
        },
        ErrorCode::Corruption => Error::Corruption {
            file: PathBuf::from(bin(meta, FILE_KEY).unwrap_or_default()),
            offset: arg(ARG1_KEY),
            reason: detail(),
        },
        ErrorCode::Io => Error::Io {
            context: detail(),
            source: std::io::Error::other(bin(meta, SOURCE_KEY).unwrap_or_default()),
        },
        ErrorCode::Internal => Error::Internal(detail()),
    }
}

/// A status carried inside a reply (one outcome of a batch call): code, message and every
/// metadata entry, so [`status_from_error_status`] rebuilds the same status.
pub fn to_error_status(status: &Status) -> crate::v1::ErrorStatus {
    use tonic::metadata::KeyAndValueRef;
    let mut metadata = std::collections::BTreeMap::new();
    for entry in status.metadata().iter() {
        match entry {
            KeyAndValueRef::Ascii(key, value) => {
                metadata.insert(
                    key.as_str().to_owned(),
                    bytes::Bytes::copy_from_slice(value.as_bytes()),
                );
            }
            KeyAndValueRef::Binary(key, value) => {
                if let Ok(bytes) = value.to_bytes() {
                    metadata.insert(key.as_str().to_owned(), bytes);
                }
            }
        }
    }
    crate::v1::ErrorStatus {
        grpc_code: status.code() as i32,
        message: status.message().to_owned(),
        metadata,
    }
}

/// The status a [`crate::v1::ErrorStatus`] carries; entries that are not valid metadata
/// are skipped (the error then falls back to its gRPC code, see [`from_status`]).
pub fn status_from_error_status(err: &crate::v1::ErrorStatus) -> Status {
    use tonic::metadata::{AsciiMetadataKey, BinaryMetadataKey};
    let mut meta = MetadataMap::new();
    for (key, value) in &err.metadata {
        if key.ends_with("-bin") {
            if let Ok(key) = BinaryMetadataKey::from_bytes(key.as_bytes()) {
                meta.insert_bin(key, BinaryMetadataValue::from_bytes(value));
            }
        } else if let (Ok(key), Ok(value)) = (
            AsciiMetadataKey::from_bytes(key.as_bytes()),
            AsciiMetadataValue::try_from(value.as_ref()),
        ) {
            meta.insert(key, value);
        }
    }
    Status::with_metadata(Code::from(err.grpc_code), err.message.clone(), meta)
}

/// A status in words: its code, its message and the chain of errors under it (a transport
/// failure's message alone is a bare "transport error"; its sources say what failed, e.g.
/// "Connection refused (os error 111)").
pub fn describe(status: &Status) -> String {
    let mut text = format!("{}: {}", status.code(), status.message());
    let mut source = std::error::Error::source(status);
    while let Some(err) = source {
        let part = err.to_string();
        if !part.is_empty() && !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = err.source();
    }
    text
}

/// The error for a status without FerrisDB metadata, chosen from its gRPC code.
///
/// Transport failures (connection refused or reset, a cancelled call) become `Unavailable`,
/// which is retryable. A caller that sent a `Commit` must treat such an error as
/// `CommitUnknownResult` itself: only it knows the request may have been applied.
pub fn fallback(status: &Status) -> Error {
    let msg = describe(status);
    match status.code() {
        Code::InvalidArgument | Code::OutOfRange => Error::InvalidArgument(msg),
        Code::DeadlineExceeded => Error::TimedOut(msg),
        Code::Unavailable | Code::Cancelled | Code::Unknown | Code::ResourceExhausted => {
            Error::Unavailable(msg)
        }
        _ => Error::Internal(msg),
    }
}

/// Maps a numeric code back to [`ErrorCode`].
fn error_code(n: u32) -> Option<ErrorCode> {
    use ErrorCode::*;
    let all = [
        TransactionTooOld,
        FutureVersion,
        NotCommitted,
        CommitUnknownResult,
        CommitUnknownResultFatal,
        TransactionCancelled,
        AccessedUnreadable,
        TimedOut,
        ProcessBehind,
        WrongShard,
        Recovering,
        Fenced,
        NotLeader,
        Unavailable,
        InvalidRange,
        InvalidArgument,
        TransactionTooLarge,
        KeyTooLarge,
        ValueTooLarge,
        Corruption,
        Io,
        Internal,
    ];
    all.into_iter().find(|c| *c as u32 == n)
}

/// A binary metadata entry decoded as (lossy) UTF-8.
fn bin(meta: &MetadataMap, key: &str) -> Option<String> {
    let value = meta.get_bin(key)?.to_bytes().ok()?;
    Some(String::from_utf8_lossy(&value).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transport_failure_says_what_failed_not_just_transport_error() {
        let mut status = Status::unavailable("transport error");
        let cause = std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        );
        status.set_source(std::sync::Arc::new(cause));
        let err = from_status(&status);
        assert!(matches!(err, Error::Unavailable(_)), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("transport error") && text.contains("Connection refused"),
            "{text}"
        );
    }

    fn samples() -> Vec<Error> {
        vec![
            Error::NotCommitted,
            Error::TransactionTooOld {
                read_version: 5,
                oldest: 9,
            },
            Error::FutureVersion {
                read_version: 12,
                applied: 10,
            },
            Error::CommitUnknownResult("coordinator lost".into()),
            Error::CommitUnknownResultFatal("idempotency id expired".into()),
            Error::TransactionCancelled,
            Error::AccessedUnreadable("key k".into()),
            Error::TimedOut("5s".into()),
            Error::ProcessBehind("lag 3s".into()),
            Error::WrongShard("key \\x55 not held".into()),
            Error::Recovering("epoch 3".into()),
            Error::Fenced("locked by generation 4".into()),
            Error::NotLeader("127.0.0.1:4510".into()),
            Error::Unavailable("storage-1 down".into()),
            Error::InvalidRange("b > a".into()),
            Error::InvalidArgument("no kind".into()),
            Error::TransactionTooLarge { len: 11, max: 10 },
            Error::KeyTooLarge {
                len: 10_001,
                max: 10_000,
            },
            Error::ValueTooLarge {
                len: 100_001,
                max: 100_000,
            },
            Error::corruption("/data/päth/000001.wal", 4096, "bad crc"),
            Error::io("writing metadata", std::io::Error::other("disk full")),
            Error::Internal("ünïcode invariant".into()),
        ]
    }

    #[test]
    fn every_error_round_trips_with_code_and_text() {
        // `Error` is not `Clone` (it holds an `io::Error`): build the list twice.
        for (err, sent) in samples().into_iter().zip(samples()) {
            let status = to_status(sent);
            assert_eq!(status.code(), grpc_code(&err));
            assert_eq!(status.message(), err.to_string());
            let back = from_status(&status);
            assert_eq!(back.code(), err.code(), "{err}");
            assert_eq!(back.to_string(), err.to_string());
        }
    }

    #[test]
    fn every_error_round_trips_inside_a_reply() {
        for (err, sent) in samples().into_iter().zip(samples()) {
            let carried = to_error_status(&to_status(sent));
            // Through the wire format too.
            let carried = <crate::v1::ErrorStatus as prost::Message>::decode(
                prost::Message::encode_to_vec(&carried).as_slice(),
            )
            .expect("decodes");
            let status = status_from_error_status(&carried);
            assert_eq!(status.code(), grpc_code(&err));
            let back = from_status(&status);
            assert_eq!(back.code(), err.code(), "{err}");
            assert_eq!(back.to_string(), err.to_string());
        }
    }

    #[test]
    fn a_garbled_carried_error_falls_back_to_its_code() {
        let carried = crate::v1::ErrorStatus {
            grpc_code: Code::Aborted as i32,
            message: "conflict".into(),
            metadata: [
                (
                    "bad key with spaces".to_owned(),
                    bytes::Bytes::from_static(b"x"),
                ),
                (
                    ERROR_CODE_KEY.to_owned(),
                    bytes::Bytes::from_static(b"\xff\x00"),
                ),
            ]
            .into_iter()
            .collect(),
        };
        let status = status_from_error_status(&carried);
        assert_eq!(status.code(), Code::Aborted);
        assert!(matches!(from_status(&status), Error::Internal(_)));
    }

    #[test]
    fn codes_follow_the_table() {
        assert_eq!(to_status(Error::NotCommitted).code(), Code::Aborted);
        assert_eq!(
            to_status(Error::KeyTooLarge { len: 2, max: 1 }).code(),
            Code::InvalidArgument
        );
        let too_old = Error::TransactionTooOld {
            read_version: 1,
            oldest: 2,
        };
        assert_eq!(to_status(too_old).code(), Code::FailedPrecondition);
        assert_eq!(
            to_status(Error::Recovering(String::new())).code(),
            Code::Unavailable
        );
        assert_eq!(
            to_status(Error::corruption("f", 0, "x")).code(),
            Code::DataLoss
        );
        assert_eq!(
            to_status(Error::TimedOut(String::new())).code(),
            Code::DeadlineExceeded
        );
        let unknown = Error::CommitUnknownResult(String::new());
        assert_eq!(to_status(unknown).code(), Code::Unknown);
        let status = to_status(Error::NotCommitted);
        assert_eq!(status.metadata().get(ERROR_CODE_KEY).unwrap(), "1020");
    }

    #[test]
    fn foreign_statuses_fall_back_on_the_grpc_code() {
        let dropped = Status::unavailable("connection reset");
        assert!(matches!(from_status(&dropped), Error::Unavailable(_)));
        assert!(from_status(&dropped).is_retryable());
        let deadline = Status::deadline_exceeded("slow");
        assert!(matches!(from_status(&deadline), Error::TimedOut(_)));
        let bad = Status::invalid_argument("nope");
        assert!(matches!(from_status(&bad), Error::InvalidArgument(m) if m.contains("nope")));
        assert!(matches!(
            from_status(&Status::permission_denied("x")),
            Error::Internal(_)
        ));
        let mut odd = Status::aborted("x");
        odd.metadata_mut()
            .insert(ERROR_CODE_KEY, AsciiMetadataValue::from(7u32));
        assert!(matches!(from_status(&odd), Error::Internal(_)));
    }
}
