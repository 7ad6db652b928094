//! The end-of-run checks of a simulated cluster: the storage servers holding the same shard
//! hold the same pairs ([`agree`]), the log servers of the generation hold the same
//! committed batches ([`logs_agree`]), and each storage server holds, version by version,
//! what the log's batches say ([`storage_follows_log`]). A client reads each key from one
//! replica only, and a storage server follows one log server at a time, so a replica that
//! lost a write, or applied one twice, would otherwise go unseen.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use ferrisdb_client::Database;
use ferrisdb_core::Mutation;
use ferrisdb_proto::v1;
use tokio::time::Instant;

use super::boot::server_addr;
use super::process::ProcessId;

/// How long the replicas have, after the faults, to answer at one read version.
const CHECK_LIMIT: Duration = Duration::from_secs(60);

/// Every pair a storage server holds at `version`, read straight from it (not through a
/// client, which reads each key from one replica).
async fn pairs_at(process: ProcessId, version: u64) -> Result<Vec<(Bytes, Bytes)>, String> {
    pairs_or_error_at(process, version)
        .await
        .map_err(|e| e.to_string())
}

/// [`pairs_at`], keeping the server's error as FerrisDB's.
async fn pairs_or_error_at(
    process: ProcessId,
    version: u64,
) -> Result<Vec<(Bytes, Bytes)>, ferrisdb_core::Error> {
    let channel = channel_to(process).map_err(ferrisdb_core::Error::Unavailable)?;
    let mut client = v1::storage_server_client::StorageServerClient::new(channel);
    let request = v1::StorageGetRangeRequest {
        begin: Bytes::new(),
        end: Bytes::new(),
        version,
        limit: 0,
        reverse: false,
        newest: false,
    };
    let from_status = |s: tonic::Status| ferrisdb_proto::status::from_status(&s);
    let mut stream = client
        .get_range(request)
        .await
        .map_err(from_status)?
        .into_inner();
    let mut pairs = Vec::new();
    while let Some(batch) = stream.message().await.map_err(from_status)? {
        pairs.extend(batch.pairs.into_iter().map(|kv| (kv.key, kv.value)));
    }
    Ok(pairs)
}

/// The index of the first element where `a` and `b` differ (the shorter one's length if one
/// is a prefix of the other).
fn first_difference<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()))
}

/// A channel to `process`'s server, through the simulated network.
fn channel_to(process: ProcessId) -> Result<tonic::transport::Channel, String> {
    let endpoint =
        tonic::transport::Endpoint::from_shared(format!("http://{}", server_addr(process)))
            .map_err(|e| e.to_string())?;
    Ok(ferrisdb_proto::transport::channel(&endpoint))
}

/// Every pair each of `replicas` holds at one fresh read version.
async fn contents_at_one_version(
    db: &Database,
    replicas: [ProcessId; 2],
) -> Result<(u64, Vec<Vec<(Bytes, Bytes)>>), String> {
    let version = db
        .read_version(ferrisdb_client::Priority::Default)
        .await
        .map_err(|e| format!("no read version: {e}"))?
        .0;
    let mut contents = Vec::new();
    for process in replicas {
        let pairs = pairs_at(process, version).await.map_err(|e| {
            format!("storage server {process} did not answer a read of everything at version {version}: {e}")
        })?;
        contents.push(pairs);
    }
    Ok((version, contents))
}

/// After the faults: both storage replicas hold exactly the same pairs at one read version.
/// Each may need a while to catch up; one that took the shard over after the read version
/// (a server rebuilt with an empty disk) cannot answer at it, so every attempt takes a fresh
/// read version.
pub async fn agree(db: Database, replicas: [ProcessId; 2]) -> Result<(), String> {
    let (version, contents) = within_check_limit("the storage replicas were not read", || {
        contents_at_one_version(&db, replicas)
    })
    .await?;
    let (a, b) = (&contents[0], &contents[1]);
    if a != b {
        let first = first_difference(a, b);
        let show = |pairs: &[(Bytes, Bytes)]| {
            pairs
                .get(first)
                .map_or("nothing".to_string(), |(k, v)| format!("{k:?} = {v:?}"))
        };
        return Err(format!(
            "the storage replicas differ at version {version}: {} holds {} pairs, {} holds {}; \
             pair {first}: {} against {}",
            replicas[0],
            a.len(),
            replicas[1],
            b.len(),
            show(a),
            show(b)
        ));
    }
    if a.is_empty() {
        return Err(format!(
            "both storage replicas are empty at version {version}"
        ));
    }
    Ok(())
}

/// One committed batch as a log server holds it.
pub type Batch = (u64, Vec<Mutation>);

/// The batches of versions in `(after, through]` that log server `process` holds, read as
/// generation `epoch` (a recovery that moves the log to a newer one fails the read).
async fn batches(
    process: ProcessId,
    epoch: u64,
    mut after: u64,
    through: u64,
) -> Result<Vec<Batch>, String> {
    let mut client = v1::log_server_client::LogServerClient::new(channel_to(process)?);
    let mut out = Vec::new();
    while after < through {
        let request = v1::ReadRecordsRequest {
            epoch,
            after_version: after,
            through_version: through,
            max_bytes: 1 << 20,
        };
        let records = client
            .read_records(request)
            .await
            .map_err(|e| e.to_string())?
            .into_inner()
            .records;
        if records.is_empty() {
            break;
        }
        for payload in records {
            let record = ferrisdb_server::log::record::decode(&payload)
                .map_err(|e| format!("log server {process}: an undecodable record: {e}"))?;
            after = record.version.get();
            out.push((after, record.mutations));
        }
    }
    Ok(out)
}

/// The state of log server `process`.
async fn log_state(process: ProcessId) -> Result<v1::LogState, String> {
    let mut client = v1::log_server_client::LogServerClient::new(channel_to(process)?);
    client
        .get_log_state(v1::GetLogStateRequest {})
        .await
        .map(tonic::Response::into_inner)
        .map_err(|e| e.to_string())
}

/// The committed batches a log server holds: those of versions in `(after, through]`, read
/// as generation `epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTail {
    /// The generation the log server is locked at.
    pub epoch: u64,
    /// The version just before the tail (the log server dropped what came before).
    pub after: u64,
    /// The batches, in version order.
    pub batches: Vec<Batch>,
}

/// Runs `attempt` every 200 ms until it succeeds or [`CHECK_LIMIT`] passes; then the last
/// error, after `what`.
async fn within_check_limit<T, F>(what: &str, mut attempt: impl FnMut() -> F) -> Result<T, String>
where
    F: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + CHECK_LIMIT;
    loop {
        match attempt().await {
            Ok(done) => return Ok(done),
            Err(problem) if Instant::now() >= deadline => {
                return Err(format!("{what} within {CHECK_LIMIT:?}: {problem}"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// After the faults: the committed tail log server `log` holds.
pub async fn log_tail(log: ProcessId) -> Result<LogTail, String> {
    within_check_limit("the log server's tail could not be read", || async {
        let state = log_state(log).await?;
        let (after, through) = (state.retained_from, state.known_committed);
        let batches = batches(log, state.locked_epoch, after, through).await?;
        Ok(LogTail {
            epoch: state.locked_epoch,
            after,
            batches,
        })
    })
    .await
}

/// After the faults: the two log servers, locked at the same generation, hold the same
/// batches — versions and mutations — over every version both still hold and know to be
/// committed (each drops what the storage servers made durable on its own schedule, so only
/// the overlap is compared). Returns that overlap.
pub async fn logs_agree(logs: [ProcessId; 2]) -> Result<LogTail, String> {
    let (after, first, second) =
        within_check_limit("the log servers could not be compared", || async {
            let (a, b) = (log_state(logs[0]).await?, log_state(logs[1]).await?);
            if a.locked_epoch != b.locked_epoch {
                return Err(format!(
                    "the log servers are locked at different generations: {} at {}, {} at {}",
                    logs[0], a.locked_epoch, logs[1], b.locked_epoch
                ));
            }
            let after = a.retained_from.max(b.retained_from);
            let through = a.known_committed.min(b.known_committed);
            let first = batches(logs[0], a.locked_epoch, after, through).await?;
            let second = batches(logs[1], a.locked_epoch, after, through).await?;
            Ok((after, (a.locked_epoch, first), second))
        })
        .await?;
    let (epoch, first) = first;
    if first != second {
        let at = first_difference(&first, &second);
        let show = |batches: &[Batch]| {
            batches.get(at).map_or("nothing".to_string(), |(v, m)| {
                format!("version {v} with {} mutations", m.len())
            })
        };
        return Err(format!(
            "the log servers differ over the versions after {after}: {} holds {} batches, {} \
             holds {}; batch {at}: {} against {}",
            logs[0],
            first.len(),
            logs[1],
            second.len(),
            show(&first),
            show(&second)
        ));
    }
    Ok(LogTail {
        epoch,
        after,
        batches: first,
    })
}

/// Everything storage server `process` holds at `version`; `None` if it does not keep that
/// version: its window of versions moved on (`TransactionTooOld`), or it took its shards
/// over after it (the storage server says so in an `Unavailable` error, which carries no
/// code of its own: its message is matched).
async fn contents_at(
    process: ProcessId,
    version: u64,
) -> Result<Option<BTreeMap<Bytes, Bytes>>, String> {
    if version == 0 {
        // Not a version a storage server reads at (the log holds every version from the
        // first commit on): the check starts at the first batch instead.
        return Ok(None);
    }
    within_check_limit(
        &format!(
            "storage server {process} did not answer a read of everything at version {version}"
        ),
        || async {
            match pairs_or_error_at(process, version).await {
                Ok(pairs) => Ok(Some(pairs.into_iter().collect())),
                Err(ferrisdb_core::Error::TransactionTooOld { .. }) => Ok(None),
                Err(ferrisdb_core::Error::Unavailable(m)) if m.contains("complete only from") => {
                    Ok(None)
                }
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await
}

/// After the faults: each of `storage` holds what the log's `tail` says, version by version —
/// its contents at the version before each batch, with the batch's mutations applied in
/// order as a storage server applies them (`Mutation::apply_to`), equal its contents at the
/// batch's version (a write lost, applied twice, applied at another version or not logged
/// breaks it). Versions a server does not keep (below its window, or before it took its
/// shards over; the window may move on while the check runs) are skipped: the check starts
/// again from the next version it keeps. Returns the batches checked, over all the servers.
pub async fn storage_follows_log(tail: &LogTail, storage: &[ProcessId]) -> Result<u64, String> {
    let mut checked = 0;
    for &process in storage {
        // The server's contents at the version before the next batch, if it keeps it.
        let mut before = contents_at(process, tail.after).await?;
        for (version, mutations) in &tail.batches {
            let held = contents_at(process, *version).await?;
            if let (Some(mut expected), Some(held)) = (before, held.as_ref()) {
                for mutation in mutations {
                    mutation.apply_to(&mut expected).map_err(|e| {
                        format!("the log's batch at version {version} does not apply: {e}")
                    })?;
                }
                if *held != expected {
                    let differs = expected
                        .keys()
                        .chain(held.keys())
                        .find(|k| expected.get(*k) != held.get(*k))
                        .cloned()
                        .unwrap_or_default();
                    return Err(format!(
                        "storage server {process} does not hold what the log says at version \
                         {version} (epoch {}, {} mutations in the batch): key {differs:?} is \
                         {:?}, the log makes it {:?}",
                        tail.epoch,
                        mutations.len(),
                        held.get(&differs),
                        expected.get(&differs)
                    ));
                }
                checked += 1;
            }
            before = held;
        }
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::first_difference;

    #[test]
    fn first_difference_finds_the_first_unequal_element_or_the_shorter_length() {
        assert_eq!(first_difference(&[1, 2, 3], &[1, 5, 3]), 1);
        assert_eq!(first_difference(&[1, 2], &[1, 2, 3]), 2);
        assert_eq!(first_difference::<u8>(&[], &[7]), 0);
    }
}
