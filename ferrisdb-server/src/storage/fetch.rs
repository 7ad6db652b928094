//! Fetching a range this server takes over (`storage/handoff.rs`) from one of its current
//! replicas: one streamed `GetRange` of the whole range at a version the take-over's buffer
//! covers. A replica that fails or cannot serve that version (it lags, or the MVCC window
//! passed) is followed by the next; after a round of failures the fetch retries at the newest
//! applied version (still covered by the buffer). It ends once the snapshot is handed in or
//! the take-over is abandoned.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferrisdb_core::{Error, KeyRange};
use ferrisdb_proto::v1;
use ferrisdb_proto::v1::storage_server_client::StorageServerClient;
use tokio::sync::watch;

use super::handoff::{Fetch, Handoff, Snapshot};
use super::progress::Progress;
use crate::worker::ClusterView;

/// Longest a fetch of one range may take before it is retried (at a newer version).
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest pause between rounds of failed fetches.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Fetches `fetch` until its snapshot is handed in or the take-over is abandoned.
pub async fn run(
    fetch: Fetch,
    handoff: Arc<Handoff>,
    progress: Arc<Progress>,
    view: watch::Receiver<ClusterView>,
) {
    let mut version = fetch.start;
    let mut backoff = Duration::from_millis(100);
    while let Some(start) = handoff.wants_snapshot(fetch.ticket) {
        // A restarted take-over buffers only after its new start.
        version = version.max(start);
        let replicas = sources(&view.borrow(), &fetch.range);
        for (id, address) in replicas {
            let started = tokio::time::Instant::now();
            let read = read_range(&address, &fetch.range, version, |bytes| {
                handoff.note_fetched(fetch.ticket, bytes)
            });
            match tokio::time::timeout(FETCH_TIMEOUT, read).await {
                Ok(Ok(pairs)) => {
                    let bytes: usize = pairs.iter().map(|(k, v)| k.len() + v.len()).sum();
                    tracing::info!(
                        range = ?fetch.range,
                        source = %id,
                        version,
                        pairs = pairs.len(),
                        bytes,
                        ms = started.elapsed().as_millis() as u64,
                        "fetched a range being taken over"
                    );
                    if let Err(e) = handoff.set_snapshot(fetch.ticket, Snapshot { version, pairs })
                    {
                        tracing::error!("handing in a fetched range: {e}");
                    }
                    return;
                }
                Ok(Err(e)) => {
                    tracing::warn!(range = ?fetch.range, source = %id, version, "fetching a range: {e}")
                }
                Err(_) => tracing::warn!(
                    range = ?fetch.range,
                    source = %id,
                    version,
                    "fetching a range took longer than {FETCH_TIMEOUT:?}"
                ),
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        // Everything up to the applied version is buffered: a fresher snapshot is as good.
        version = progress.applied().max(fetch.start);
    }
}

/// The current replicas of the shard `range` is, with their addresses.
fn sources(view: &ClusterView, range: &KeyRange) -> Vec<(String, String)> {
    view.shard_map
        .shards
        .iter()
        .filter(|s| s.range == *range)
        .flat_map(|s| s.storage_ids.iter())
        .filter_map(|id| {
            view.storage_addresses
                .get(id)
                .map(|a| (id.clone(), a.clone()))
        })
        .collect()
}

/// Reads all of `range` at `version` from the storage server at `address`, telling
/// `progress` the bytes read so far after each streamed batch.
async fn read_range(
    address: &str,
    range: &KeyRange,
    version: u64,
    progress: impl Fn(u64),
) -> Result<Vec<(Bytes, Bytes)>, Error> {
    let channel = ferrisdb_proto::transport::channel(&crate::worker::endpoint(address)?);
    let mut client =
        StorageServerClient::new(channel).max_decoding_message_size(crate::grpc::MAX_MESSAGE_BYTES);
    let mut stream = client
        .get_range(v1::StorageGetRangeRequest {
            begin: range.begin.clone(),
            end: range.end.clone(),
            version,
            limit: 0,
            reverse: false,
            newest: false,
        })
        .await
        .map_err(|s| ferrisdb_proto::status::from_status(&s))?
        .into_inner();
    let mut pairs = Vec::new();
    let mut bytes = 0u64;
    progress(0);
    while let Some(batch) = stream
        .message()
        .await
        .map_err(|s| ferrisdb_proto::status::from_status(&s))?
    {
        bytes += batch
            .pairs
            .iter()
            .map(|p| (p.key.len() + p.value.len()) as u64)
            .sum::<u64>();
        pairs.extend(batch.pairs.into_iter().map(|p| (p.key, p.value)));
        progress(bytes);
    }
    Ok(pairs)
}
