//! Idempotency ids: one id per logical transaction, kept across retries, so the coordinator
//! can answer the retry of a commit that did land "already committed" (see
//! `ferrisdb-server/src/coordinator/idempotency.rs`).

use bytes::Bytes;
use ferrisdb_core::{Result, Version, limits};

use super::Transaction;

/// A transaction's idempotency id and what the coordinator needs with it (kept across
/// retries).
#[derive(Debug, Clone, Default)]
pub(super) struct Idempotency {
    /// The id (from [`Transaction::set_idempotency_id`], or generated at the first commit
    /// under [`crate::TransactionOption::AutomaticIdempotency`]).
    id: Option<Bytes>,
    /// Generate an id at the first commit if none is set.
    automatic: bool,
    /// The read version of the earliest attempt whose commit may have happened (its result
    /// was unknown): the coordinator looks for the id from there.
    unknown_since: Option<Version>,
}

impl Idempotency {
    /// [`crate::TransactionOption::AutomaticIdempotency`].
    pub(super) fn set_automatic(&mut self) {
        self.automatic = true;
    }

    /// The id a commit carries now: the one set, or a random 16-byte one generated (once)
    /// under automatic idempotency.
    pub(super) fn id_for_commit(&mut self) -> Option<Bytes> {
        if self.id.is_none() && self.automatic {
            self.id = Some(Bytes::copy_from_slice(&ferrisdb_core::random::bytes16()));
        }
        self.id.clone()
    }

    /// The first-attempt read version a commit at `read_version` sends: that of the earliest
    /// attempt whose result was unknown, else its own.
    pub(super) fn first_read(&self, read_version: Version) -> Version {
        self.unknown_since.unwrap_or(read_version)
    }

    /// An attempt that sent `sent_first_read` ended with an unknown result: from now on every
    /// attempt names the earliest such one.
    pub(super) fn commit_unknown(&mut self, sent_first_read: Option<Version>) {
        if self.unknown_since.is_none() {
            self.unknown_since = sent_first_read;
        }
    }
}

impl Transaction {
    /// Gives the transaction an idempotency id (1 to 255 bytes, unique to this logical
    /// transaction), kept across retries until [`reset`](Self::reset). The coordinator
    /// records the id with the commit; when an attempt's result is unknown (the coordinator
    /// or the connection failed mid-commit) the retry carries the same id, and if the earlier
    /// attempt did commit the retry is answered "already committed"
    /// ([`already_committed`](Self::already_committed)) instead of applying the transaction
    /// a second time. Ids are remembered for the coordinator's retention (60 s by default)
    /// after the earliest attempt whose result was unknown; a retry later than that fails
    /// with `CommitUnknownResultFatal`, which is not retried.
    ///
    /// A transaction with an id always sends its read version with the commit (a blind
    /// write then fetches one). [`crate::TransactionOption::AutomaticIdempotency`] picks a
    /// random id.
    pub fn set_idempotency_id(&self, id: impl Into<Bytes>) -> Result<()> {
        let id = id.into();
        limits::check_idempotency_id(&id)?;
        self.lock().retry.idempotency.id = Some(id);
        Ok(())
    }

    /// The transaction's idempotency id, if it has one yet.
    pub fn idempotency_id(&self) -> Option<Bytes> {
        self.lock().retry.idempotency.id.clone()
    }
}
