//! An in-memory [`Backend`] for unit tests: one snapshot of data served through the same
//! shard routing as the gRPC backend, commits recorded (and optionally applied), errors
//! injectable, network calls counted.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use ferrisdb_core::{Commit, Committed};
use ferrisdb_core::{Error, Mutation, ShardMap, Version, Versionstamp};
use futures_util::future::BoxFuture;
use parking_lot::Mutex;

use crate::backend::{Backend, RangeChunk, RangeRead};
use crate::routing::{locate, resume_after};
use crate::{Database, DatabaseOptions, KeyValue, Priority};

/// See the module documentation.
pub(crate) struct MemBackend {
    pub data: Mutex<BTreeMap<Bytes, Bytes>>,
    pub map: ShardMap,
    pub read_version: Mutex<Version>,
    pub commits: Mutex<Vec<Commit>>,
    /// Every commit request, failed ones included.
    pub sent: Mutex<Vec<Commit>>,
    pub commit_errors: Mutex<VecDeque<Error>>,
    pub read_errors: Mutex<VecDeque<Error>>,
    pub invalidated: Mutex<Vec<Error>>,
    pub apply_commits: bool,
    pub calls: AtomicUsize,
}

impl MemBackend {
    pub fn new(data: BTreeMap<Bytes, Bytes>, shards: usize) -> Arc<Self> {
        let ids: Vec<String> = (0..shards).map(|i| format!("ss-{i}")).collect();
        Arc::new(MemBackend {
            data: Mutex::new(data),
            map: ShardMap::bootstrap(&ids, 1, 1).expect("valid layout"),
            read_version: Mutex::new(Version(100)),
            commits: Mutex::new(Vec::new()),
            sent: Mutex::new(Vec::new()),
            commit_errors: Mutex::new(VecDeque::new()),
            read_errors: Mutex::new(VecDeque::new()),
            invalidated: Mutex::new(Vec::new()),
            apply_commits: false,
            calls: AtomicUsize::new(0),
        })
    }

    pub fn applying(data: BTreeMap<Bytes, Bytes>) -> Arc<Self> {
        let mut b = Arc::into_inner(Self::new(data, 3)).expect("sole owner");
        b.apply_commits = true;
        Arc::new(b)
    }

    pub fn database(self: &Arc<Self>, options: DatabaseOptions) -> Database {
        Database::from_backend(self.clone(), options)
    }

    fn call(&self) -> Result<(), Error> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match self.read_errors.lock().pop_front() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Applies a commit's mutations, filling versionstamps in with `stamp`.
    fn apply(&self, mutations: &[Mutation], stamp: Versionstamp) {
        let mut data = self.data.lock();
        for m in mutations {
            let m = &m
                .clone()
                .with_versionstamp(stamp)
                .expect("validated versionstamped mutation");
            m.apply_to(&mut data)
                .expect("a validated mutation with its versionstamp filled in");
        }
    }
}

impl Backend for MemBackend {
    fn read_version(&self, _priority: Priority) -> BoxFuture<'_, Result<Version, Error>> {
        Box::pin(async move {
            self.call()?;
            Ok(*self.read_version.lock())
        })
    }

    fn get(&self, key: Bytes, _version: Version) -> BoxFuture<'_, Result<Option<Bytes>, Error>> {
        Box::pin(async move {
            self.call()?;
            Ok(self.data.lock().get(&key).cloned())
        })
    }

    fn get_range(&self, read: RangeRead) -> BoxFuture<'_, Result<RangeChunk, Error>> {
        Box::pin(async move {
            self.call()?;
            let piece = locate(&self.map, &read.begin, &read.end, read.reverse)?;
            assert!(
                piece.shard.range.contains(&piece.begin),
                "piece outside its shard"
            );
            let upper = if piece.end.is_empty() {
                Bound::Unbounded
            } else {
                Bound::Excluded(piece.end.clone())
            };
            let data = self.data.lock();
            let iter = data.range((Bound::Included(piece.begin.clone()), upper));
            let all: Box<dyn Iterator<Item = (&Bytes, &Bytes)>> = if read.reverse {
                Box::new(iter.rev())
            } else {
                Box::new(iter)
            };
            let take = if read.limit == 0 {
                usize::MAX
            } else {
                read.limit
            };
            let kvs: Vec<KeyValue> = all
                .take(take)
                .map(|(k, v)| KeyValue {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect();
            let resume = resume_after(
                &piece,
                &kvs,
                read.limit,
                &read.begin,
                &read.end,
                read.reverse,
            );
            Ok(RangeChunk { kvs, resume })
        })
    }

    fn commit(&self, commit: Commit) -> BoxFuture<'_, Result<Committed, Error>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.sent.lock().push(commit.clone());
            if let Some(e) = self.commit_errors.lock().pop_front() {
                return Err(e);
            }
            let version = {
                let mut rv = self.read_version.lock();
                *rv = Version(rv.get() + 10);
                *rv
            };
            let committed = Committed::new(version, 0);
            if self.apply_commits {
                self.apply(&commit.mutations, committed.stamp);
            }
            self.commits.lock().push(commit);
            Ok(committed)
        })
    }

    fn recovered(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::pending())
    }

    fn invalidate(&self, err: &Error) {
        self.invalidated.lock().push(match err {
            Error::WrongShard(m) => Error::WrongShard(m.clone()),
            other => Error::Internal(other.to_string()),
        });
    }
}
