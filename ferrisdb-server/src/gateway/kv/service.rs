//! The gRPC handlers of `ferrisdb.v1.KV`: validate with `ferrisdb_proto::convert`, run one
//! transaction, map errors with `ferrisdb_proto::status::to_status`.

use std::sync::Arc;

use ferrisdb_client::Database;
use ferrisdb_proto::convert::{KvTxn, RangeQuery, kv_key, kv_range, kv_value};
use ferrisdb_proto::status::to_status;
use ferrisdb_proto::v1;
use ferrisdb_proto::v1::kv_server::Kv;
use tonic::{Request, Response, Status};

use super::range::{self, PairStream};
use super::run::run_versioned;
use super::txn;

/// The `KV` service: every call is a transaction of the gateway's client of the cluster.
#[derive(Debug, Clone)]
pub struct KvService {
    db: Database,
}

impl KvService {
    /// Serves KV calls as transactions of `db` (see [`super::super::connect`]).
    pub fn new(db: Database) -> Self {
        KvService { db }
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    type RangeStream = PairStream;

    async fn get(
        &self,
        request: Request<v1::GetRequest>,
    ) -> Result<Response<v1::GetResponse>, Status> {
        let key = kv_key(request.into_inner().key).map_err(to_status)?;
        let done = run_versioned(&self.db, |tx| {
            let key = key.clone();
            async move { tx.get(&key).await }
        })
        .await
        .map_err(to_status)?;
        Ok(Response::new(v1::GetResponse {
            found: done.value.is_some(),
            value: done.value.unwrap_or_default(),
            version: done.read_version.get(),
        }))
    }

    async fn put(
        &self,
        request: Request<v1::PutRequest>,
    ) -> Result<Response<v1::PutResponse>, Status> {
        let req = request.into_inner();
        let key = kv_key(req.key).map_err(to_status)?;
        let value = kv_value(req.value).map_err(to_status)?;
        let done = run_versioned(&self.db, |tx| {
            let (key, value) = (key.clone(), value.clone());
            async move { tx.set(&key, &value) }
        })
        .await
        .map_err(to_status)?;
        Ok(Response::new(v1::PutResponse {
            version: done.version.get(),
        }))
    }

    async fn delete(
        &self,
        request: Request<v1::DeleteRequest>,
    ) -> Result<Response<v1::DeleteResponse>, Status> {
        let key = kv_key(request.into_inner().key).map_err(to_status)?;
        let done = run_versioned(&self.db, |tx| {
            let key = key.clone();
            async move { tx.clear(&key) }
        })
        .await
        .map_err(to_status)?;
        Ok(Response::new(v1::DeleteResponse {
            version: done.version.get(),
        }))
    }

    async fn delete_range(
        &self,
        request: Request<v1::DeleteRangeRequest>,
    ) -> Result<Response<v1::DeleteResponse>, Status> {
        let req = request.into_inner();
        let range = kv_range(req.begin, req.end).map_err(to_status)?;
        let done = run_versioned(&self.db, |tx| {
            let range = range.clone();
            async move { tx.clear_range(&range.begin, &range.end) }
        })
        .await
        .map_err(to_status)?;
        Ok(Response::new(v1::DeleteResponse {
            version: done.version.get(),
        }))
    }

    async fn range(
        &self,
        request: Request<v1::RangeRequest>,
    ) -> Result<Response<Self::RangeStream>, Status> {
        let query = RangeQuery::try_from(request.into_inner()).map_err(to_status)?;
        Ok(Response::new(range::stream(self.db.clone(), query)))
    }

    async fn txn(
        &self,
        request: Request<v1::TxnRequest>,
    ) -> Result<Response<v1::TxnResponse>, Status> {
        let request = Arc::new(KvTxn::try_from(request.into_inner()).map_err(to_status)?);
        let done = run_versioned(&self.db, |tx| {
            let request = request.clone();
            async move { txn::evaluate(&tx, &request).await }
        })
        .await
        .map_err(to_status)?;
        Ok(Response::new(txn::response(done)))
    }
}
