//! The `TransactionCoordinator` gRPC service: validates every request through
//! `ferrisdb_proto::convert`, calls the [`Coordinator`](super::handle::Coordinator) handle,
//! and maps errors to statuses with `ferrisdb_proto::status::to_status`. Nothing here panics
//! on input.

use std::pin::Pin;
use std::time::Duration;

use futures_util::Stream;

use ferrisdb_core::Commit;
use ferrisdb_core::{Error, Version, limits};
use ferrisdb_proto::convert::ranges_from_proto;
use ferrisdb_proto::status::{to_error_status, to_status};
use ferrisdb_proto::v1;
use ferrisdb_proto::v1::transaction_coordinator_server::TransactionCoordinator;
use tonic::{Request, Response, Status, Streaming};

use super::handle::{CoordinatorHandle, GenerationStart, Pull};
use super::replicated_log::LogMember;
use crate::grpc::priority_from_proto;
use crate::log::service::{check_storage_id, pulled_to_proto};

/// The gRPC face of a [`super::Coordinator`].
#[derive(Debug, Clone)]
pub struct CoordinatorService {
    coordinator: CoordinatorHandle,
}

impl CoordinatorService {
    /// Serves `coordinator`.
    pub fn new(coordinator: CoordinatorHandle) -> Self {
        CoordinatorService { coordinator }
    }
}

/// Turns "log no longer holds these versions" into a status that says what to do.
fn pull_status(err: Error) -> Status {
    match err {
        Error::TransactionTooOld {
            read_version,
            oldest,
        } => {
            let status = to_status(Error::TransactionTooOld {
                read_version,
                oldest,
            });
            Status::with_metadata(
                status.code(),
                format!(
                    "the commit log no longer holds versions after {read_version}: it was \
                     truncated through {oldest} after every storage server reported it durable; \
                     this storage server must restore from a replica ({})",
                    status.message()
                ),
                status.metadata().clone(),
            )
        }
        other => to_status(other),
    }
}

/// The messages of one `StreamMutations` call.
pub type MutationStream =
    Pin<Box<dyn Stream<Item = Result<v1::PullMutationsResponse, Status>> + Send + 'static>>;

/// The answers of one `CommitSession` call.
pub type CommitSessionStream = crate::grpc::session::Answers<v1::CommitSessionResponse>;

impl CoordinatorService {
    /// Answers a `GetReadVersion` request.
    async fn answer_read_version(
        &self,
        request: v1::GetReadVersionRequest,
    ) -> Result<v1::GetReadVersionResponse, Status> {
        let priority = priority_from_proto(request.priority)?;
        let version = self
            .coordinator
            .read_version_for(priority)
            .await
            .map_err(to_status)?;
        Ok(v1::GetReadVersionResponse {
            version: version.get(),
        })
    }

    /// Answers a `CommitBatch` request: every commit enters the pipeline at once (in request
    /// order) and is answered on its own, so one bad or conflicting transaction does not
    /// affect the others. Fails only for a malformed batch (too many commits).
    async fn answer_batch(
        &self,
        request: v1::CommitBatchRequest,
    ) -> Result<v1::CommitBatchResponse, Status> {
        let commits = request.commits;
        limits::check_batch_len(commits.len(), limits::MAX_COMMIT_BATCH, "commits")
            .map_err(to_status)?;
        let outcomes = futures_util::future::join_all(commits.into_iter().map(|c| async move {
            let result = match Commit::try_from(c) {
                Ok(commit) => self.coordinator.commit(commit).await,
                Err(e) => Err(e),
            };
            let outcome = match result {
                Ok(committed) => {
                    v1::commit_outcome::Outcome::Committed(v1::CommitResponse::from(committed))
                }
                Err(e) => v1::commit_outcome::Outcome::Error(to_error_status(&to_status(e))),
            };
            v1::CommitOutcome {
                outcome: Some(outcome),
            }
        }))
        .await;
        Ok(v1::CommitBatchResponse { outcomes })
    }
}

#[tonic::async_trait]
impl TransactionCoordinator for CoordinatorService {
    async fn get_read_version(
        &self,
        request: Request<v1::GetReadVersionRequest>,
    ) -> Result<Response<v1::GetReadVersionResponse>, Status> {
        self.answer_read_version(request.into_inner())
            .await
            .map(Response::new)
    }

    type ReadVersionSessionStream = crate::grpc::session::Answers<v1::ReadVersionSessionResponse>;

    async fn read_version_session(
        &self,
        request: Request<Streaming<v1::ReadVersionSessionRequest>>,
    ) -> Result<Response<Self::ReadVersionSessionStream>, Status> {
        let service = self.clone();
        Ok(Response::new(crate::grpc::session::serve(
            request.into_inner(),
            move |request: v1::ReadVersionSessionRequest| {
                let service = service.clone();
                async move {
                    use v1::read_version_session_response::Answer;
                    let asked = request.request.unwrap_or_default();
                    let answer = match service.answer_read_version(asked).await {
                        Ok(version) => Answer::Version(version),
                        Err(status) => Answer::Error(to_error_status(&status)),
                    };
                    v1::ReadVersionSessionResponse {
                        id: request.id,
                        answer: Some(answer),
                    }
                }
            },
        )))
    }

    async fn commit(
        &self,
        request: Request<v1::CommitRequest>,
    ) -> Result<Response<v1::CommitResponse>, Status> {
        let commit = Commit::try_from(request.into_inner()).map_err(to_status)?;
        let committed = self.coordinator.commit(commit).await.map_err(to_status)?;
        Ok(Response::new(v1::CommitResponse::from(committed)))
    }

    async fn commit_batch(
        &self,
        request: Request<v1::CommitBatchRequest>,
    ) -> Result<Response<v1::CommitBatchResponse>, Status> {
        self.answer_batch(request.into_inner())
            .await
            .map(Response::new)
    }

    type CommitSessionStream = CommitSessionStream;

    async fn commit_session(
        &self,
        request: Request<Streaming<v1::CommitSessionRequest>>,
    ) -> Result<Response<Self::CommitSessionStream>, Status> {
        let service = self.clone();
        Ok(Response::new(crate::grpc::session::serve(
            request.into_inner(),
            move |request: v1::CommitSessionRequest| {
                let service = service.clone();
                async move {
                    use v1::commit_session_response::Answer;
                    let answer = match service
                        .answer_batch(request.batch.unwrap_or_default())
                        .await
                    {
                        Ok(batch) => Answer::Batch(batch),
                        Err(status) => Answer::Error(to_error_status(&status)),
                    };
                    v1::CommitSessionResponse {
                        id: request.id,
                        answer: Some(answer),
                    }
                }
            },
        )))
    }

    async fn pull_mutations(
        &self,
        request: Request<v1::PullMutationsRequest>,
    ) -> Result<Response<v1::PullMutationsResponse>, Status> {
        let req = request.into_inner();
        check_storage_id(&req.storage_id)?;
        let ranges = ranges_from_proto(req.ranges).map_err(to_status)?;
        let pulled = self
            .coordinator
            .pull(Pull {
                after: Version(req.after_version),
                ranges,
                max_bytes: req.max_bytes,
                wait: Duration::from_millis(u64::from(req.wait_ms)),
            })
            .await
            .map_err(pull_status)?;
        Ok(Response::new(pulled_to_proto(pulled)))
    }

    type StreamMutationsStream = MutationStream;

    async fn stream_mutations(
        &self,
        request: Request<v1::StreamMutationsRequest>,
    ) -> Result<Response<Self::StreamMutationsStream>, Status> {
        let req = request.into_inner();
        check_storage_id(&req.storage_id)?;
        let ranges = ranges_from_proto(req.ranges).map_err(to_status)?;
        let feed = self
            .coordinator
            .mutation_feed(Version(req.after_version), ranges, req.max_bytes)
            .map_err(to_status)?;
        let stream = futures_util::stream::unfold(feed, |mut feed| async move {
            let next = feed.next().await?;
            Some((next.map(pulled_to_proto).map_err(pull_status), feed))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn start_generation(
        &self,
        request: Request<v1::StartGenerationRequest>,
    ) -> Result<Response<v1::StartGenerationResponse>, Status> {
        let req = request.into_inner();
        if req.epoch == 0 || req.logs.is_empty() || req.start_version <= req.recovery_version {
            return Err(to_status(Error::InvalidArgument(format!(
                "a generation needs an epoch, log servers and a start version after its recovery \
                 version (got epoch {}, {} log servers, start {} after {})",
                req.epoch,
                req.logs.len(),
                req.start_version,
                req.recovery_version
            ))));
        }
        let logs = req
            .logs
            .into_iter()
            .map(|l| LogMember {
                id: l.log_id,
                address: l.address,
            })
            .collect();
        self.coordinator
            .start_generation(GenerationStart {
                epoch: req.epoch,
                logs,
                recovery_version: Version(req.recovery_version),
                start_version: Version(req.start_version),
            })
            .await
            .map_err(to_status)?;
        Ok(Response::new(v1::StartGenerationResponse {}))
    }

    async fn report_durable(
        &self,
        request: Request<v1::ReportDurableRequest>,
    ) -> Result<Response<v1::ReportDurableResponse>, Status> {
        let req = request.into_inner();
        check_storage_id(&req.storage_id)?;
        self.coordinator
            .report_durable(&req.storage_id, Version(req.durable_version))
            .await
            .map_err(to_status)?;
        Ok(Response::new(v1::ReportDurableResponse {}))
    }
}
