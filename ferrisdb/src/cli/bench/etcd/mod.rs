//! The etcd side of `ferrisdb bench --store etcd`: a client for a wire-compatible subset of
//! etcd v3's KV API (`proto/etcd/`, compiled by this crate's `build.rs`), used only by the
//! benchmark.
//!
//! Like an etcd client, every client task shares one gRPC channel (one HTTP/2 connection) to
//! the member. Point reads and scans are `Range` requests (linearizable unless
//! `--etcd-serializable`), writes are `Put`s, read-modify-writes are a linearizable read
//! followed by a `Txn` guarded by the keys' `mod_revision`s, retried while the guard fails
//! (see [`request`]). Every operation, retries included, is bounded by `--timeout`.

pub mod request;

use std::time::Duration;

use bytes::Bytes;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use self::pb::kv_client::KvClient;
use super::store::{Outcome, Request};
use super::workload::{KEY_END, Op};

/// Generated `mvccpb` (etcd's stored key-value pair).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod mvccpb {
    include!(concat!(env!("OUT_DIR"), "/mvccpb.rs"));
}

/// Generated `etcdserverpb` messages and the KV client stub.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod etcdserverpb {
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.rs"));
}

use self::etcdserverpb as pb;

/// How long connecting to the member may take before the benchmark gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A connection to one etcd member, cheap to clone (clones share the channel).
#[derive(Clone)]
pub struct EtcdStore {
    kv: KvClient<Channel>,
    endpoint: String,
    serializable: bool,
    timeout: Duration,
}

impl EtcdStore {
    /// Connects to `endpoint` (`HOST:PORT`, plain HTTP/2) and checks that it answers etcd's
    /// KV API. `serializable` makes point and range reads serializable; `timeout` bounds each
    /// operation, retries included.
    pub async fn connect(
        endpoint: &str,
        serializable: bool,
        timeout: Duration,
    ) -> Result<EtcdStore, String> {
        let url = if endpoint.contains("://") {
            endpoint.to_owned()
        } else {
            format!("http://{endpoint}")
        };
        let channel = Endpoint::from_shared(url)
            .map_err(|e| format!("--etcd-endpoint {endpoint:?} is not HOST:PORT: {e}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| {
                format!(
                    "cannot connect to etcd at {endpoint}: {} (is etcd running there? see \
                     --etcd-endpoint)",
                    source_chain(&e)
                )
            })?;
        let store = EtcdStore {
            kv: KvClient::new(channel),
            endpoint: endpoint.to_owned(),
            serializable,
            timeout,
        };
        // One cheap read proves this is an etcd member answering the KV API.
        store
            .kv
            .clone()
            .range(request::get(Bytes::from_static(KEY_END), true))
            .await
            .map_err(|s| store.describe(&s))?;
        Ok(store)
    }

    /// `HOST:PORT` of the member.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Writes `puts` in one unconditional transaction (at most
    /// [`request::MAX_TXN_OPS`] of them).
    pub async fn put_all(&self, puts: &[(Bytes, Bytes)]) -> Result<(), String> {
        self.kv
            .clone()
            .txn(request::put_all(puts))
            .await
            .map(drop)
            .map_err(|s| self.describe(&s))
    }

    /// Runs one operation to completion, retrying failed guards, within the timeout.
    pub async fn execute(&self, req: &Request) -> Outcome {
        let mut retries = 0;
        let result = tokio::time::timeout(self.timeout, self.attempt_all(req, &mut retries)).await;
        let error = match result {
            Ok(Ok(())) => None,
            Ok(Err(status)) => Some(self.describe(&status)),
            Err(_) => Some(format!(
                "etcd operation timed out after {:.1} s ({retries} retries; see --timeout)",
                self.timeout.as_secs_f64()
            )),
        };
        Outcome { retries, error }
    }

    /// Runs `req`, counting in `retries` the read-modify-write attempts whose guard failed.
    async fn attempt_all(&self, req: &Request, retries: &mut u64) -> Result<(), Status> {
        let mut kv = self.kv.clone();
        match req.op {
            Op::Read => {
                kv.range(request::get(req.key.clone(), self.serializable))
                    .await?;
            }
            Op::Update | Op::Insert => {
                kv.put(request::put(req.key.clone(), req.value.clone()))
                    .await?;
            }
            Op::Scan => {
                kv.range(request::scan(
                    req.key.clone(),
                    req.scan_end.clone(),
                    req.scan_len,
                    self.serializable,
                ))
                .await?;
            }
            Op::ReadModifyWrite => loop {
                let read = kv.range(request::get(req.key.clone(), false)).await?;
                let rev = request::mod_revision(read.get_ref());
                let write = request::write_if_unchanged(
                    &[(req.key.clone(), rev)],
                    &[(req.key.clone(), req.value.clone())],
                );
                if kv.txn(write).await?.get_ref().succeeded {
                    break;
                }
                *retries += 1;
            },
            Op::ReadModifyWrite2 => loop {
                let keys = [req.key.clone(), req.key2.clone()];
                let read = kv.txn(request::read_all(&keys)).await?;
                let revs =
                    request::mod_revisions(read.get_ref(), keys.len()).map_err(Status::internal)?;
                let reads: Vec<(Bytes, i64)> = keys.iter().cloned().zip(revs).collect();
                let write = request::write_if_unchanged(
                    &reads,
                    &[
                        (req.key.clone(), req.value.clone()),
                        (req.key2.clone(), req.value2.clone()),
                    ],
                );
                if kv.txn(write).await?.get_ref().succeeded {
                    break;
                }
                *retries += 1;
            },
        }
        Ok(())
    }

    /// A message a user can act on for an etcd error.
    fn describe(&self, status: &Status) -> String {
        let endpoint = &self.endpoint;
        match status.code() {
            Code::Unavailable => format!(
                "etcd at {endpoint} is unavailable: {} (did the member stop?)",
                status.message()
            ),
            Code::Unimplemented => format!(
                "{endpoint} does not serve etcd's KV API ({}): is it an etcd member's client \
                 port?",
                status.message()
            ),
            Code::ResourceExhausted => format!(
                "etcd at {endpoint} refused the request: {} (database quota reached? raise \
                 --quota-backend-bytes, or compact and defragment)",
                status.message()
            ),
            code => format!("etcd at {endpoint}: {} ({code:?})", status.message()),
        }
    }
}

/// An error and its sources, `: `-separated (transport errors hide the cause in a source),
/// skipping a source whose text is already included.
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(&format!(": {part}"));
        }
        source = s.source();
    }
    text
}
