//! The crate's one error type.

use crate::types::{LeaseId, Revision};

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a `cairn-meta` operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A watch asked for history the store no longer has. Re-read the state and watch from
    /// `oldest_available` or later.
    #[error(
        "watch from revision {requested} is impossible: history before revision {oldest_available} is compacted"
    )]
    Compacted {
        /// The revision asked for.
        requested: Revision,
        /// The oldest revision a watch may start from now.
        oldest_available: Revision,
    },
    /// The watcher did not keep up and its stream was closed; no event was skipped before this
    /// error. Watch again from `resume_revision` (which may itself be compacted).
    #[error("watcher fell behind; resume from revision {resume_revision}")]
    WatchLagged {
        /// First revision the watcher has not seen.
        resume_revision: Revision,
    },
    /// The lease does not exist (never granted, expired or revoked).
    #[error("lease {0} not found (expired or revoked)")]
    LeaseNotFound(LeaseId),
    /// A writer lease is no longer held by the caller: it expired, was stolen or released.
    #[error("writer lease {name:?} at epoch {epoch} is lost")]
    WriterLeaseLost {
        /// The writer lease's name.
        name: String,
        /// The epoch the caller held.
        epoch: u64,
    },
    /// The caller broke a documented bound or rule.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A bounded resource is full (watchers, leases).
    #[error("limit reached: {0}")]
    LimitReached(&'static str),
    /// A call to the backend did not finish in time.
    #[error("{operation} timed out after {timeout_ms} ms")]
    Timeout {
        /// What timed out.
        operation: &'static str,
        /// The timeout.
        timeout_ms: u64,
    },
    /// The embedded database failed. After a failed commit the store refuses further work
    /// ([`Error::Poisoned`]) rather than retrying a write whose durability is unknown.
    #[error("embedded database: {0}")]
    Database(#[source] Box<redb::Error>),
    /// A previous commit failed; the embedded store must be reopened.
    #[error("embedded store is poisoned by an earlier failed commit; reopen it")]
    Poisoned,
    /// A stored record does not decode.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The store was shut down.
    #[error("store is closed")]
    Closed,
    /// etcd returned an error.
    #[cfg(feature = "etcd")]
    #[error("etcd: {0}")]
    Etcd(#[source] Box<etcd_client::Error>),
    /// The backend answered something this crate does not understand.
    #[error("unexpected backend response: {0}")]
    Protocol(String),
    /// I/O outside the database (creating directories, spawning threads).
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Converts any redb error (they all convert into `redb::Error`).
pub(crate) fn dberr<E: Into<redb::Error>>(e: E) -> Error {
    Error::Database(Box::new(e.into()))
}

#[cfg(feature = "etcd")]
impl From<etcd_client::Error> for Error {
    fn from(e: etcd_client::Error) -> Self {
        Error::Etcd(Box::new(e))
    }
}
