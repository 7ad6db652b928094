//! The `StorageServer` gRPC service: point and range reads at a read version.
//!
//! A read at a version the server has not applied yet waits up to [`FUTURE_VERSION_WAIT`],
//! then fails with `future_version`; a version below the engine's GC horizon fails with
//! `transaction_too_old`; a key outside this server's shards gets `wrong_shard`.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ferrisdb_core::{Error, limits};
use ferrisdb_proto::status::to_status;
use ferrisdb_proto::v1;
use ferrisdb_proto::v1::storage_server_server::StorageServer;
use ferrisdb_storage::engine::{Engine, ScanOptions};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::progress::Progress;

/// How long a read waits for the server to catch up to its version.
pub const FUTURE_VERSION_WAIT: Duration = Duration::from_secs(1);
/// Pairs per streamed range message.
const RANGE_BATCH_PAIRS: usize = 512;
/// Bytes per streamed range message (soft).
const RANGE_BATCH_BYTES: usize = 256 << 10;

/// Serves reads from one engine.
pub struct StorageService {
    engine: Arc<Engine>,
    progress: Arc<Progress>,
}

impl StorageService {
    /// A service over `engine`, gated by `progress`.
    pub fn new(engine: Arc<Engine>, progress: Arc<Progress>) -> Self {
        StorageService { engine, progress }
    }

    async fn ready_at(&self, version: u64) -> Result<(), Error> {
        if version == 0 {
            return Err(Error::InvalidArgument(
                "read version 0 is not a valid version".into(),
            ));
        }
        if !self.progress.wait_for(version, FUTURE_VERSION_WAIT).await {
            return Err(Error::FutureVersion {
                read_version: version,
                applied: self.progress.applied(),
            });
        }
        Ok(())
    }
}

type RangeStream = Pin<Box<dyn Stream<Item = Result<v1::StorageGetRangeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl StorageServer for StorageService {
    async fn get(
        &self,
        request: Request<v1::StorageGetRequest>,
    ) -> Result<Response<v1::StorageGetResponse>, Status> {
        let req = request.into_inner();
        limits::check_key(&req.key).map_err(to_status)?;
        if !self.progress.owns_key(&req.key) {
            return Err(to_status(Error::WrongShard(format!(
                "key {} is not on this storage server",
                ferrisdb_core::keys::escape(&req.key)
            ))));
        }
        self.ready_at(req.version).await.map_err(to_status)?;
        let value = self.engine.get(&req.key, req.version).map_err(to_status)?;
        Ok(Response::new(v1::StorageGetResponse {
            found: value.is_some(),
            value: value.unwrap_or_default(),
        }))
    }

    type GetRangeStream = RangeStream;

    async fn get_range(
        &self,
        request: Request<v1::StorageGetRangeRequest>,
    ) -> Result<Response<Self::GetRangeStream>, Status> {
        let req = request.into_inner();
        limits::check_key(&req.begin).map_err(to_status)?;
        limits::check_range_end(&req.end).map_err(to_status)?;
        let range =
            ferrisdb_core::KeyRange::new(req.begin.clone(), req.end.clone()).map_err(to_status)?;
        if !self.progress.owns_range(&range.begin, &range.end) {
            return Err(to_status(Error::WrongShard(format!(
                "range [{}, {}) is not wholly on this storage server",
                ferrisdb_core::keys::escape(&range.begin),
                ferrisdb_core::keys::escape(&range.end)
            ))));
        }
        self.ready_at(req.version).await.map_err(to_status)?;
        let options = ScanOptions {
            begin: range.begin,
            end: range.end,
            read_version: req.version,
            reverse: req.reverse,
            limit: req.limit as usize,
        };
        // Opening the scan validates the version against the GC horizon before streaming.
        let scan = self.engine.scan(options).map_err(to_status)?;
        let (tx, rx) = mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            let mut pairs = Vec::new();
            let mut bytes = 0;
            for item in scan {
                match item {
                    Ok((key, value)) => {
                        bytes += key.len() + value.len();
                        pairs.push(v1::KeyValue { key, value });
                        if pairs.len() >= RANGE_BATCH_PAIRS || bytes >= RANGE_BATCH_BYTES {
                            let msg = v1::StorageGetRangeResponse {
                                pairs: std::mem::take(&mut pairs),
                            };
                            bytes = 0;
                            if tx.blocking_send(Ok(msg)).is_err() {
                                return; // The client went away.
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Err(to_status(e)));
                        return;
                    }
                }
            }
            if !pairs.is_empty() {
                let _ = tx.blocking_send(Ok(v1::StorageGetRangeResponse { pairs }));
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
